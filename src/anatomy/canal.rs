//! Spinal canal and foramina: the hole enclosed by the body's posterior wall, the pedicles and the laminae.
//!
//! At pedicle level the canal is a hole in the (slightly closed) bone ring, whatever fills it (CSF, cord, fat,
//! leaked cement). At disc and foramen level the ring is open; there the canal keeps the cross-section seen
//! in the enclosed slices and is extended sideways into the foramina up to the pedicles' lateral reach.

use super::context::{Fine, CEMENT_HU};
use super::morphology::{close, component_at, dilate, fill_holes, gaussian3};
use ndarray::{s, Array2, Array3, Axis};
use rayon::prelude::*;

/// Canal cross-sections range from about 100 mm² (thoracic) to 350 mm² (lumbar); allow lesions and blur.
const MIN_AREA_MM2: f64 = 40.0;
const MAX_AREA_MM2: f64 = 900.0;
/// The canal's anterior-posterior diameter stays under this (thoracic 14–17 mm, lumbar 15–20 mm): a deeper
/// hole has merged with something else.
const MAX_DEPTH_MM: f64 = 25.0;
/// Gaps of the bone ring under 2 x this are bridged (streaks, thin cortex, partial volume).
const RING_CLOSE_MM: f64 = 2.0;
/// The body's posterior cortex is 0.5–1 mm thin: isotropic smoothing drops it under the ring threshold
/// next to lytic marrow and epidural fat. Smoothed only within its own plane (along the spine and
/// sideways, not across it), it keeps its contrast while the noise is still averaged down.
const SHEET_SIGMA_MM: f64 = 1.5;
/// The posterior wall has a gap at the basivertebral foramen (about 4–5 mm wide) and, in lytic bodies, wider
/// thinned stretches: gaps of the ring along the wall's own direction (sideways) up to this are bridged.
const WALL_GAP_MM: f64 = 7.0;
/// An enclosed section smaller than this fraction of the typical one is not the canal.
const MIN_TYPICAL_FRACTION: f64 = 0.4;
/// The canal's back (the laminae) moves less than this between its enclosed sections.
const MAX_BACK_SHIFT_MM: f64 = 6.0;
/// Foramina reach this far beyond the canal's side walls.
const FORAMEN_REACH_MM: f64 = 10.0;

pub struct Canal {
    pub mask: Array3<bool>,
    /// Per slice: the canal was enclosed by bone there.
    pub enclosed: Vec<bool>,
    /// Per slice: index `j` of the canal's anterior edge (the posterior wall of the body), middle columns.
    pub front_j: Vec<f64>,
    /// Typical canal half-width, pixels.
    pub half_width: f64,
    pub center_i: f64,
}

/// `dense` is the bone-ring threshold (HU).
pub fn segment(f: &Fine, dense_hu: f32) -> Canal {
    let [nk, nj, ni] = f.dims();
    let px_area = f.step * f.step;
    // Per slice, the enclosed hole nearest the canal line.
    let seed = (f.center[1], f.center[2]);
    let sheet = gaussian3(&f.raw, [f.px(SHEET_SIGMA_MM), 0.0, f.px(SHEET_SIGMA_MM)]);
    let holes: Vec<Option<Array2<bool>>> = (0..nk)
        .into_par_iter()
        .map(|k| {
            let sl = f.hu.index_axis(Axis(0), k);
            let sh = sheet.index_axis(Axis(0), k);
            let is_bone = |v: f32| v >= dense_hu && v < CEMENT_HU;
            let ring = ndarray::Zip::from(&sl).and(&sh).map_collect(|&v, &w| is_bone(v) || is_bone(w));
            let c0 = close(&ring, f.px(RING_CLOSE_MM) as f32);
            let c = &c0 | &close_across(&ring, f.px(WALL_GAP_MM));
            let hole_of = |c: &Array2<bool>| {
                let filled = fill_holes(c);
                ndarray::Zip::from(&filled).and(c).map_collect(|&a, &b| a && !b)
            };
            let comp = component_at(&hole_of(&c), seed, f.px(8.0));
            // The sideways bridges that matter close the wall in front of the canal; any that fall inside the
            // canal (its narrow back or corners) are given back: behind the canal's front, the hole of the
            // ring closed the usual way is canal too.
            let comp = if comp.iter().any(|&b| b) {
                let front = extent(&comp, 0).0 as usize;
                let behind = hole_of(&c0)
                    .indexed_iter()
                    .map(|((j, i), &h)| comp[(j, i)] || (h && j >= front))
                    .collect::<Vec<bool>>();
                let behind = Array2::from_shape_vec(comp.dim(), behind).unwrap_or(comp.clone());
                component_at(&behind, seed, f.px(8.0))
            } else {
                comp
            };
            let n = comp.iter().filter(|&&b| b).count() as f64 * px_area;
            // A hole deeper than any canal is the canal merged with a dark (lytic, osteoporotic) body
            // through a thin or breached posterior wall: that slice takes the canal's usual shape instead.
            let (j0, j1) = extent(&comp, 0);
            let deep = (j1 - j0 + 1.0) * f.step > MAX_DEPTH_MM;
            ((MIN_AREA_MM2..=MAX_AREA_MM2).contains(&n) && !deep).then_some(comp)
        })
        .collect();
    // Reject enclosed holes much larger than the typical one (canal merged with a lytic body or a breach).
    let mut areas: Vec<f32> =
        holes.iter().flatten().map(|h| h.iter().filter(|&&b| b).count() as f32).collect();
    let typical = super::context::median(&mut areas).unwrap_or(0.0) as f64;
    // The laminae bound every enclosed section of the canal behind at nearly the same depth; a hole whose
    // back lies well in front of theirs, or that is a fraction of the typical section, is a cavity of the
    // body (basivertebral channel, lytic pocket) that happened to lie nearest the canal line.
    let mut backs: Vec<f32> = holes.iter().flatten().map(|h| extent(h, 0).1 as f32).collect();
    let typical_back = super::context::median(&mut backs).unwrap_or(0.0) as f64;
    let holes: Vec<Option<Array2<bool>>> = holes
        .into_iter()
        .map(|h| {
            h.filter(|m| {
                let a = m.iter().filter(|&&b| b).count() as f64;
                a <= 1.8 * typical.max(1.0)
                    && a >= MIN_TYPICAL_FRACTION * typical
                    && extent(m, 0).1 >= typical_back - f.px(MAX_BACK_SHIFT_MM)
            })
        })
        .collect();
    let n_ok = holes.iter().flatten().count();
    // Template: pixels inside the canal in at least half the enclosed slices.
    let mut votes = Array2::<u32>::zeros((nj, ni));
    for h in holes.iter().flatten() {
        ndarray::Zip::from(&mut votes).and(h).for_each(|v, &b| *v += b as u32);
    }
    let template = if n_ok > 0 {
        votes.mapv(|v| 2 * v as usize >= n_ok)
    } else {
        // Nothing enclosed anywhere: a disc of typical canal radius around the canal line.
        let r = f.px(7.0);
        Array2::from_shape_fn((nj, ni), |(j, i)| {
            ((j as f64 - seed.0).powi(2) + (i as f64 - seed.1).powi(2)).sqrt() <= r
        })
    };
    let (tmin_i, tmax_i) = extent(&template, 1);
    let half_width = ((tmax_i - tmin_i) / 2.0).max(f.px(4.0));
    let center_i = (tmax_i + tmin_i) / 2.0;
    let (tmin_j, tmax_j) = extent(&template, 0);
    let tpl_wide = dilate(&template, f.px(1.0) as f32);

    let mut mask = Array3::<bool>::from_elem((nk, nj, ni), false);
    let enclosed: Vec<bool> = holes.iter().map(|h| h.is_some()).collect();
    mask.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(k, mut out)| {
        if let Some(h) = &holes[k] {
            out.assign(h);
            return;
        }
        let sl = f.hu.index_axis(Axis(0), k);
        let not_bone = sl.mapv(|v| !(v >= dense_hu && v < CEMENT_HU));
        // Canal proper: the template where there is no bone.
        let canal = ndarray::Zip::from(&tpl_wide).and(&not_bone).map_collect(|&t, &nb| t && nb);
        // Foramina: soft tissue reaching sideways from the canal within the canal's AP band.
        let reach = f.px(FORAMEN_REACH_MM);
        let band = Array2::from_shape_fn((nj, ni), |(j, i)| {
            (j as f64) >= tmin_j
                && (j as f64) <= tmax_j
                && (i as f64 - center_i).abs() <= half_width + reach
                && not_bone[(j, i)]
        });
        let grown = component_at(&(&band | &canal), seed, f.px(8.0));
        out.assign(&(&canal | &grown));
    });
    // Anterior edge (smallest j) of the canal in the middle columns, per slice.
    let band_i = f.px(4.0);
    let global_front = tmin_j;
    let front_j: Vec<f64> = (0..nk)
        .map(|k| {
            let m = mask.slice(s![k, .., ..]);
            let mut best: Option<usize> = None;
            for ((j, i), &b) in m.indexed_iter() {
                if b && (i as f64 - center_i).abs() <= band_i && best.is_none_or(|bj| j < bj) {
                    best = Some(j);
                }
            }
            best.map(|j| j as f64).unwrap_or(global_front)
        })
        .collect();
    tracing::debug!(
        "canal: {n_ok} enclosed slices, template j {:.1}..{:.1} mm from the canal line",
        (tmin_j - f.center[1]) * f.step,
        (tmax_j - f.center[1]) * f.step
    );
    Canal { mask, enclosed, front_j, half_width, center_i }
}

/// Closing along axis 1 (sideways) only: runs of `false` no longer than `max_gap` pixels between two `true`
/// pixels of the same row are filled. Gaps across the wall (along the spine's AP axis) are left alone, so the
/// canal, whose side walls are farther apart than any such gap, stays open.
fn close_across(m: &Array2<bool>, max_gap: f64) -> Array2<bool> {
    let mut out = m.clone();
    for mut row in out.rows_mut() {
        let mut last: Option<usize> = None;
        for i in 0..row.len() {
            if row[i] {
                if let Some(l) = last {
                    if i > l + 1 && ((i - l - 1) as f64) <= max_gap {
                        for v in row.iter_mut().take(i).skip(l + 1) {
                            *v = true;
                        }
                    }
                }
                last = Some(i);
            }
        }
    }
    out
}

/// Min and max index of `true` along `axis` (0 = j, 1 = i) of a 2D mask; (0, 0) when empty.
fn extent(m: &Array2<bool>, axis: usize) -> (f64, f64) {
    let mut lo = usize::MAX;
    let mut hi = 0;
    for ((j, i), &b) in m.indexed_iter() {
        if b {
            let v = if axis == 0 { j } else { i };
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if lo == usize::MAX {
        (0.0, 0.0)
    } else {
        (lo as f64, hi as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sideways_closing_bridges_a_wall_gap_but_not_the_canal() {
        // Row 0: a wall with a 4-pixel gap (basivertebral foramen); row 1: the canal's side walls 12 apart.
        let mut m = Array2::<bool>::from_elem((2, 20), false);
        for i in (2..6).chain(10..14) {
            m[(0, i)] = true;
        }
        m[(1, 2)] = true;
        m[(1, 15)] = true;
        let c = close_across(&m, 7.0);
        assert!((2..14).all(|i| c[(0, i)]), "wall gap bridged");
        assert!(!c[(0, 1)] && !c[(0, 14)], "nothing added beyond the wall's ends");
        assert!((3..15).all(|i| !c[(1, i)]), "canal left open");
    }
}
