//! Posterior wall of the body: its surface (the body's last voxels toward the canal, across the canal's
//! width), an outward posterior normal, a signed distance, and whether the cortex there is intact.
//!
//! "Intact" means: a cortical rim (markedly denser than the body's marrow) is found at nearly every point of
//! the wall, and the wall does not bulge back into the canal (retropulsed fragment). The flag is left
//! undecided (`None`) when the resolution cannot show a 1 mm cortex.

use super::canal::Canal;
use super::context::Fine;
use super::morphology::label2;
use crate::volume::{Lps, Vec3};
use ndarray::{Array2, Array3};
use serde::Serialize;

/// Cortex is 700–1500 HU; after resampling blur it still stands this far above the marrow.
const CORTEX_ABOVE_MARROW_HU: f32 = 100.0;
/// A defect of the wall larger than this (about 5 x 5 mm) is a breach; smaller gaps are vessels and noise.
const MAX_GAP_MM2: f64 = 25.0;
/// Posterior bulge beyond the wall's median position that counts as retropulsion.
const BULGE_MM: f64 = 3.0;
/// The wall surface is searched from this far inside the body mask's last voxel to this far behind it.
const EDGE_BEFORE_MM: f64 = 1.5;
const EDGE_AFTER_MM: f64 = 4.0;
/// Cortex after the frame's smoothing stays under this; cement above it is flattened for the wall search.
const WALL_CLIP_HU: f32 = 700.0;
/// Coarsest voxel (in-plane, slice) at which a cortex can be judged.
const MAX_JUDGE_VOXEL_MM: (f64, f64) = (1.2, 3.0);
/// A wall that reads as defect over more than this fraction is not resolved by the scan: a real intact
/// posterior cortex is 0.5-1 mm thin and stands only 14-90 HU above marrow on the real T12 and trunk CTs
/// (76-96% "defect"), while a breach is a patch of the wall. Such walls are undetermined, not breached.
const MAX_RESOLVED_DEFECT_FRACTION: f64 = 0.5;

#[derive(Clone, Debug, Serialize)]
pub struct PosteriorWall {
    /// Surface points (LPS mm), on the boundary between body and canal.
    pub points: Vec<Lps>,
    /// Unit vector pointing posterior, out of the body through the wall (LPS).
    pub normal: Vec3,
    /// A point on the wall's median plane.
    pub point: Lps,
    /// Fraction of wall points without a detectable cortex.
    pub defect_fraction: f64,
    /// Largest connected defect, mm².
    pub largest_defect_mm2: f64,
}

impl PosteriorWall {
    /// Signed distance to the wall plane, mm: positive inside the body (anterior of the wall), negative
    /// behind it (toward or in the canal).
    pub fn distance_mm(&self, p: Lps) -> f64 {
        (self.point - p).dot(self.normal)
    }
}

pub struct WallResult {
    pub wall: PosteriorWall,
    pub intact: Option<bool>,
}

pub fn derive(
    f: &Fine,
    canal: &Canal,
    body: &Array3<bool>,
    k_lo: f64,
    k_hi: f64,
    marrow_hu: f32,
    voxel_mm: (f64, f64),
) -> Option<WallResult> {
    let [nk, nj, ni] = f.dims();
    let h = k_hi - k_lo;
    let k0 = (k_lo + 0.1 * h).ceil().max(0.0) as usize;
    let k1 = ((k_hi - 0.1 * h).floor().max(0.0) as usize).min(nk.saturating_sub(1));
    let i0 = (canal.center_i - canal.half_width).floor().max(0.0) as usize;
    let i1 = ((canal.center_i + canal.half_width).ceil() as usize).min(ni.saturating_sub(1));
    if k0 > k1 || i0 > i1 {
        return None;
    }
    let mut grid = Array2::<f64>::from_elem((k1 - k0 + 1, i1 - i0 + 1), f64::NAN);
    let (before, after) = (f.px(EDGE_BEFORE_MM).ceil() as usize, f.px(EDGE_AFTER_MM).ceil() as usize);
    for k in k0..=k1 {
        for i in i0..=i1 {
            if let Some(j) = (0..nj).rev().find(|&j| body[(k, j, i)]) {
                // The body mask stops short of the canal (threshold contour, canal margin): the wall is
                // the steepest fall from cortex to canal content near the mask's last voxel.
                let lo = j.saturating_sub(before);
                let hi = (j + after).min(nj - 1);
                // Cement against the wall makes a larger fall inside the body: the wall is the most
                // posterior of the strong falls.
                // Values are clipped to the range between canal content and cortex: the fall from an
                // epidural vein to fat, or from cement to marrow, counts no more than that range allows.
                let v = |q: usize| f.hu[(k, q, i)].clamp(0.0, WALL_CLIP_HU);
                let falls: Vec<(f32, usize)> = (lo..hi).map(|q| (v(q) - v(q + 1), q)).collect();
                let strongest = falls.iter().map(|d| d.0).fold(0.0f32, f32::max);
                let wall_q = falls
                    .iter()
                    .rev()
                    .find(|(d, _)| strongest > 0.0 && *d >= 0.5 * strongest)
                    .map(|&(_, q)| q);
                // `grid` holds the index of the body's last voxel before the wall surface.
                grid[(k - k0, i - i0)] = wall_q.map_or(j as f64, |q| q as f64);
            }
        }
    }
    let mut js: Vec<f32> = grid.iter().filter(|v| v.is_finite()).map(|&v| v as f32).collect();
    let med_j = super::context::median(&mut js)? as f64;
    let normal = f.frame.axes[1];
    let point = f.frame.index_to_lps([(k0 + k1) as f64 / 2.0, med_j + 0.5, canal.center_i]);
    let mut points = Vec::new();
    let cortex = marrow_hu + CORTEX_ABOVE_MARROW_HU;
    let mut defect = Array2::<bool>::from_elem(grid.dim(), false);
    let mut bulge = Array2::<bool>::from_elem(grid.dim(), false);
    let (mut n, mut nd) = (0usize, 0usize);
    // The cortex lies just in front of the surface.
    let back = f.px(2.5).ceil() as isize;
    let fwd = f.px(1.0).ceil() as isize;
    for ((a, b), &j) in grid.indexed_iter() {
        if !j.is_finite() {
            continue;
        }
        let (k, i) = (k0 + a, i0 + b);
        points.push(f.frame.index_to_lps([k as f64, j + 0.5, i as f64]));
        let jj = j as isize;
        let peak = ((jj - back).max(0)..=(jj + fwd).min(nj as isize - 1))
            .map(|q| f.raw[(k, q as usize, i)])
            .fold(f32::MIN, f32::max);
        n += 1;
        if peak < cortex {
            defect[(a, b)] = true;
            nd += 1;
        }
        if (j - med_j) * f.step > BULGE_MM {
            bulge[(a, b)] = true;
        }
    }
    if n == 0 {
        return None;
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        let mut peaks: Vec<f32> = Vec::new();
        for ((a, b), &j) in grid.indexed_iter() {
            if j.is_finite() {
                let jj = j as isize;
                peaks.push(
                    ((jj - back).max(0)..=(jj + fwd).min(nj as isize - 1))
                        .map(|q| f.raw[(k0 + a, q as usize, i0 + b)])
                        .fold(f32::MIN, f32::max),
                );
            }
        }
        peaks.sort_by(f32::total_cmp);
        let q = |x: f64| peaks[((peaks.len() - 1) as f64 * x) as usize];
        tracing::debug!(
            "wall: marrow {marrow_hu} cortex thr {cortex} peak quantiles {} {} {} {}",
            q(0.1),
            q(0.25),
            q(0.5),
            q(0.9)
        );
    }
    let px = f.step * f.step;
    let largest = |m: &Array2<bool>| label2(m).1.iter().skip(1).copied().max().unwrap_or(0) as f64 * px;
    let largest_defect = largest(&defect);
    let largest_bulge = largest(&bulge);
    let defect_fraction = nd as f64 / n as f64;
    let judgeable = voxel_mm.0 <= MAX_JUDGE_VOXEL_MM.0
        && voxel_mm.1 <= MAX_JUDGE_VOXEL_MM.1
        && defect_fraction <= MAX_RESOLVED_DEFECT_FRACTION;
    let intact = judgeable.then_some(largest_defect < MAX_GAP_MM2 && largest_bulge < MAX_GAP_MM2);
    Some(WallResult {
        wall: PosteriorWall { points, normal, point, defect_fraction, largest_defect_mm2: largest_defect },
        intact,
    })
}
