//! Vertebral body: the bony cylinder in front of the canal. Its axis comes from the run of bone met when
//! walking anterior from the canal; its cross-section per slice from a threshold between the body's own
//! marrow and soft tissue, closed and filled (so lytic holes and cement inside stay body), cut at the
//! posterior wall, opened to detach ribs, aorta and psoas, and bounded by an ellipse of the body's size.

use super::canal::Canal;
use super::context::{median, Fine, CEMENT_HU};
use super::frame::OUTSIDE_HU;
use super::morphology::{close, component_at, dilate, fill_holes, open};
use super::AnatomyError;
use ndarray::{Array2, Array3, Axis};
use rayon::prelude::*;

/// Cancellous bone is 100–300 HU, muscle 40–60, disc 60–110: a first, anatomy-level cut for finding the body.
const FIRST_BONE_HU: f32 = 100.0;
/// Muscle and other soft tissue around the body.
pub const SOFT_HU: f32 = 40.0;
/// The body begins within this distance in front of the canal.
const MAX_WALL_GAP_MM: f64 = 12.0;
/// Lytic gaps inside the body tolerated along the anterior walk.
const MAX_INNER_GAP_MM: f64 = 6.0;

/// Where the body sits in the slice plane.
#[derive(Clone, Copy, Debug)]
pub struct BodyAxis {
    /// Index j (posterior axis) of the body centre.
    pub j: f64,
    /// Index i (left axis) of the body centre.
    pub i: f64,
    /// Anterior-posterior depth, mm.
    pub depth_mm: f64,
}

pub fn axis(f: &Fine, canal: &Canal) -> Result<BodyAxis, AnatomyError> {
    let [nk, nj, _] = f.dims();
    let band = f.px(4.0).round() as isize;
    let ci = canal.center_i.round() as isize;
    let mut centres = Vec::new();
    let mut depths = Vec::new();
    for k in 0..nk {
        let sl = f.hu.index_axis(Axis(0), k);
        let front = canal.front_j[k];
        let max_d = (front / 1.0).floor() as usize;
        let prof: Vec<f32> = (0..max_d.min(nj))
            .map(|d| {
                let j = (front as isize - d as isize).max(0) as usize;
                let mut s = 0.0f32;
                let mut n = 0.0f32;
                for i in (ci - band).max(0)..=(ci + band).min(sl.ncols() as isize - 1) {
                    s += sl[(j, i as usize)];
                    n += 1.0;
                }
                s / n.max(1.0)
            })
            .collect();
        if prof.iter().any(|&v| v <= OUTSIDE_HU + 1.0) && prof.len() < 10 {
            continue;
        }
        let Some(start) =
            prof.iter().take(f.px(MAX_WALL_GAP_MM) as usize + 1).position(|&v| v >= FIRST_BONE_HU)
        else {
            continue;
        };
        let mut end = start;
        let mut gap = 0usize;
        for (d, &v) in prof.iter().enumerate().skip(start) {
            if v >= FIRST_BONE_HU {
                end = d;
                gap = 0;
            } else {
                gap += 1;
                if gap as f64 > f.px(MAX_INNER_GAP_MM) {
                    break;
                }
            }
        }
        let depth = (end - start + 1) as f64 * f.step;
        if depth >= 12.0 {
            centres.push((front - (start + end) as f64 / 2.0) as f32);
            depths.push(depth as f32);
        }
    }
    let (Some(j), Some(d)) = (median(&mut centres), median(&mut depths)) else {
        return Err(AnatomyError::NoBody("no bone in front of the spinal canal".into()));
    };
    Ok(BodyAxis { j: j as f64, i: canal.center_i, depth_mm: d as f64 })
}

/// Mean HU in a core cylinder along the body axis, per slice (`None` outside the scan).
pub fn core_profile(f: &Fine, ax: &BodyAxis) -> Vec<Option<f32>> {
    let r = f.px((ax.depth_mm / 3.0).clamp(4.0, 9.0));
    let [nk, _, _] = f.dims();
    (0..nk)
        .map(|k| {
            let sl = f.hu.index_axis(Axis(0), k);
            let mut s = 0.0f64;
            let mut n = 0usize;
            let (j0, j1) = ((ax.j - r).floor().max(0.0) as usize, (ax.j + r).ceil() as usize);
            let (i0, i1) = ((ax.i - r).floor().max(0.0) as usize, (ax.i + r).ceil() as usize);
            for j in j0..=j1.min(sl.nrows() - 1) {
                for i in i0..=i1.min(sl.ncols() - 1) {
                    if (j as f64 - ax.j).powi(2) + (i as f64 - ax.i).powi(2) <= r * r {
                        let v = sl[(j, i)];
                        if v <= OUTSIDE_HU + 1.0 {
                            return None;
                        }
                        s += v.min(CEMENT_HU) as f64;
                        n += 1;
                    }
                }
            }
            (n > 0).then(|| (s / n as f64) as f32)
        })
        .collect()
}

/// Body cross-section of each slice (empty where there is none), before the endplate cut.
pub fn footprints(f: &Fine, canal: &Canal, ax: &BodyAxis, edge_hu: f32) -> Array3<bool> {
    let [nk, nj, ni] = f.dims();
    let canal_wide: Vec<Array2<bool>> = (0..nk)
        .into_par_iter()
        .map(|k| dilate(&canal.mask.index_axis(Axis(0), k).to_owned(), f.px(1.0) as f32))
        .collect();
    // Body size bounds: the vertebral body is wider than deep (ratio about 1.2–1.7).
    let semi_ap = ax.depth_mm / 2.0 + 6.0;
    let semi_lr = 0.9 * ax.depth_mm + 8.0;
    let mut out = Array3::<bool>::from_elem((nk, nj, ni), false);
    out.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(k, mut o)| {
        let sl = f.hu.index_axis(Axis(0), k);
        let wall = canal.front_j[k] + f.px(1.0);
        let d = Array2::from_shape_fn((nj, ni), |(j, i)| {
            let v = sl[(j, i)];
            let inside_ellipse = ((j as f64 - ax.j) * f.step / semi_ap).powi(2)
                + ((i as f64 - ax.i) * f.step / semi_lr).powi(2)
                <= 1.0;
            v >= edge_hu && v < CEMENT_HU && !canal_wide[k][(j, i)] && (j as f64) <= wall && inside_ellipse
        });
        let d = fill_holes(&close(&d, f.px(1.5) as f32));
        let d = open(&d, f.px(2.5) as f32);
        let comp = component_at(&d, (ax.j, ax.i), f.px(10.0));
        let comp = fill_holes(&close(&comp, f.px(2.0) as f32));
        let comp = ndarray::Zip::from(&comp).and(&canal_wide[k]).map_collect(|&c, &w| c && !w);
        o.assign(&comp);
    });
    out
}
