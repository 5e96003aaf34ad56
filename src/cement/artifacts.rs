//! Leak candidates that are not cement. Two kinds survive the voxel rules on injection scans:
//!
//! - **Grown, not seeded**: a dense streak or the partial-volume rim that the hysteresis followed out of the
//!   intravertebral mass. A leak must show cement on its own evidence: at least one seed voxel outside the
//!   body.
//! - **Clutter**: near metal, the difference between two scans is full of streak residues, bright and dark,
//!   and of misregistered blooming. A detection there is believed only when it stands out from that
//!   clutter (a constant-false-alarm-rate rule): its median rise over the baseline must be several times
//!   the 90th percentile of |rise| in an in-plane ring 3-10 mm around it. Away from metal the ring holds only
//!   noise (p90 ~50-170 HU on the phantoms) and a 0.05 mL leak rising 500+ HU passes easily; beside the
//!   needle, streak residues rise no more than their surroundings (ratio 1.4-2 measured) and are removed.
//!   The price: a small, faint leak right in the needle's streaks needs about three times the local
//!   streak level to be reported.
//! - **Metal streaks**: bright streaks radiate from the needle and the thermocouple as straight lines across
//!   each reconstructed slice, and they differ from scan to scan (photon noise, patient and needle motion).
//!   Where a streak of this scan crosses bone (pedicle, lamina) the sum reaches cement density and rises
//!   over the baseline, which had its streaks elsewhere. Such a residue is a piece of a *line*: the rise
//!   over the baseline continues along the same in-plane direction beyond the piece, through soft tissue,
//!   at a similar level. Cement does not leave a faint trail of rise beyond its own edge, so a candidate
//!   whose in-plane axis carries on rising is a streak. The test looks at the residue (scan minus the
//!   registered baseline) along the candidate's principal in-plane axis, beyond each end, away from cement
//!   and metal; the median there must stay below a fraction of the candidate's own median rise.

use super::grid::Grid;
use super::morph;

/// Sampled from this far beyond a candidate's end, mm (past its partial-volume edge) ...
const GAP_MM: f64 = 1.5;
/// ... to this far, mm: long enough that a vein fading out of the threshold does not look like a streak.
const REACH_MM: f64 = 15.0;
/// A continuation this fraction of the candidate's own rise, or more, is a streak ...
const STREAK_RATIO: f32 = 0.3;
/// ... when also at least this high (twice the noise of a difference of two low-dose scans), HU.
const STREAK_MIN_HU: f32 = 120.0;
/// In-plane ring around a candidate where the clutter of rise over the baseline is measured, mm.
const RING_MM: [f64; 2] = [3.0, 10.0];
/// The clutter level: this quantile of |rise| in the ring ...
const CLUTTER_QUANTILE: f64 = 0.9;
/// ... which a candidate's median rise must exceed this many times.
const CLUTTER_RATIO: f32 = 3.0;
/// Fewest usable samples on one side for a verdict.
const MIN_SAMPLES: usize = 8;

/// Why a candidate was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Artifact {
    NoSeed,
    Clutter,
    Streak,
}

/// Remove leak candidates (cement outside `region`) that are artefacts; returns what was removed and how
/// many voxels each had. `base` is the registered baseline on the crop; `metal` the voxels to keep out of
/// the residue samples (needle, wire and their blooming).
pub(crate) fn reject(
    img: &[f32],
    base: Option<&[f32]>,
    mask: &mut [bool],
    seed: &[bool],
    region: &[bool],
    metal: &[bool],
    grid: &Grid,
) -> Vec<(Artifact, usize)> {
    let n = grid.len();
    let outside: Vec<bool> = (0..n).map(|i| mask[i] && !region[i]).collect();
    let comps = morph::components26(&outside, grid.shape);
    if comps.is_empty() {
        return Vec::new();
    }
    let near_cement = morph::dilate(mask, grid.shape, [1, 1, 1]);
    let mut out = Vec::new();
    let mut stamp = vec![false; n];
    for comp in comps {
        let clutter = base.and_then(|b| clutter(&comp, img, b, &near_cement, metal, grid, &mut stamp));
        let verdict = if !comp.iter().any(|&i| seed[i]) {
            Some(Artifact::NoSeed)
        } else if clutter.is_some_and(|(own, around)| own < CLUTTER_RATIO * around) {
            Some(Artifact::Clutter)
        } else if base.is_some_and(|b| is_streak(&comp, img, b, &near_cement, metal, grid)) {
            Some(Artifact::Streak)
        } else {
            None
        };
        tracing::debug!(voxels = comp.len(), at = %grid.lps(comp[0]), ?verdict, ?clutter, "leak candidate");
        if let Some(v) = verdict {
            for &i in &comp {
                mask[i] = false;
            }
            out.push((v, comp.len()));
        }
    }
    out
}

fn median(v: &mut [f32]) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let k = v.len() / 2;
    v.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    Some(v[k])
}

/// Whether most of the component (by voxels) lies in slices where it is a piece of a streak.
fn is_streak(
    comp: &[usize],
    img: &[f32],
    base: &[f32],
    cement: &[bool],
    metal: &[bool],
    grid: &Grid,
) -> bool {
    let mut by_slice: Vec<(usize, Vec<usize>)> = Vec::new();
    for &i in comp {
        let z = grid.coords(i)[0];
        match by_slice.iter_mut().find(|(s, _)| *s == z) {
            Some((_, v)) => v.push(i),
            None => by_slice.push((z, vec![i])),
        }
    }
    let streaky: usize = by_slice
        .iter()
        .filter(|(z, vox)| {
            let r = slice_is_streak(*z, vox, img, base, cement, metal, grid);
            tracing::trace!(z, voxels = vox.len(), streak = r, "slice of a leak candidate");
            r
        })
        .map(|(_, v)| v.len())
        .sum();
    streaky * 2 > comp.len()
}

fn slice_is_streak(
    z: usize,
    vox: &[usize],
    img: &[f32],
    base: &[f32],
    cement: &[bool],
    metal: &[bool],
    grid: &Grid,
) -> bool {
    let mut rise: Vec<f32> = vox.iter().filter(|&&i| !base[i].is_nan()).map(|&i| img[i] - base[i]).collect();
    let Some(own) = median(&mut rise) else { return false };
    // In-plane coordinates in mm: rows and columns are orthogonal within a slice.
    let sp = [grid.geometry.spacing.row, grid.geometry.spacing.column];
    let pts: Vec<[f64; 2]> = vox
        .iter()
        .map(|&i| {
            let c = grid.coords(i);
            [c[1] as f64 * sp[0], c[2] as f64 * sp[1]]
        })
        .collect();
    let m = pts.len() as f64;
    let c = [pts.iter().map(|p| p[0]).sum::<f64>() / m, pts.iter().map(|p| p[1]).sum::<f64>() / m];
    let (mut syy, mut sxx, mut sxy) = (0.0, 0.0, 0.0);
    for p in &pts {
        let (dy, dx) = (p[0] - c[0], p[1] - c[1]);
        syy += dy * dy;
        sxx += dx * dx;
        sxy += dy * dx;
    }
    // Principal axis of the 2x2 covariance.
    let theta = 0.5 * (2.0 * sxy).atan2(syy - sxx);
    let d = [theta.cos(), theta.sin()];
    let perp = [-d[1], d[0]];
    let proj: Vec<f64> = pts.iter().map(|p| (p[0] - c[0]) * d[0] + (p[1] - c[1]) * d[1]).collect();
    let ends = [
        proj.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        proj.iter().copied().fold(f64::INFINITY, f64::min),
    ];
    let step = sp[0].min(sp[1]) * 0.7;
    let [ny, nx] = [grid.shape[1], grid.shape[2]];
    let at = |q: [f64; 2]| -> Option<usize> {
        let (y, x) = ((q[0] / sp[0]).round(), (q[1] / sp[1]).round());
        if y < 0.0 || x < 0.0 || y >= ny as f64 || x >= nx as f64 {
            return None;
        }
        let i = grid.idx([z, y as usize, x as usize]);
        (!cement[i] && !metal[i] && !base[i].is_nan()).then_some(i)
    };
    let threshold = STREAK_MIN_HU.max(STREAK_RATIO * own);
    for (side, end) in [(1.0, ends[0]), (-1.0, ends[1])] {
        let mut along = Vec::new();
        let mut t = GAP_MM;
        while t <= REACH_MM {
            let s = end + side * t;
            // The strongest of three neighbouring lines: the axis of a short piece is a few degrees off.
            let best = [-1.0, 0.0, 1.0]
                .iter()
                .filter_map(|o| {
                    let q = [c[0] + d[0] * s + perp[0] * o * sp[0], c[1] + d[1] * s + perp[1] * o * sp[1]];
                    at(q).map(|i| img[i] - base[i])
                })
                .fold(f32::NAN, f32::max);
            if !best.is_nan() {
                along.push(best);
            }
            t += step;
        }
        let med = median(&mut along);
        tracing::trace!(own, ?med, samples = along.len(), "continuation");
        if along.len() >= MIN_SAMPLES && med.is_some_and(|v| v >= threshold) {
            return true;
        }
    }
    false
}

/// The component's median rise over the baseline, and the `CLUTTER_QUANTILE` of |rise| over the baseline in
/// the in-plane ring `RING_MM` around it (away from cement and metal). `stamp` is scratch space of the crop's
/// size, zero on entry and left zero.
fn clutter(
    comp: &[usize],
    img: &[f32],
    base: &[f32],
    cement: &[bool],
    metal: &[bool],
    grid: &Grid,
    stamp: &mut [bool],
) -> Option<(f32, f32)> {
    let mut own: Vec<f32> = comp.iter().filter(|&&i| !base[i].is_nan()).map(|&i| img[i] - base[i]).collect();
    let own = median(&mut own)?;
    let sp = [grid.geometry.spacing.row, grid.geometry.spacing.column];
    let r = [(RING_MM[1] / sp[0]).ceil() as isize, (RING_MM[1] / sp[1]).ceil() as isize];
    let offsets: Vec<[isize; 3]> = (-r[0]..=r[0])
        .flat_map(|dy| (-r[1]..=r[1]).map(move |dx| [0, dy, dx]))
        .filter(|d| {
            let mm = ((d[1] as f64 * sp[0]).powi(2) + (d[2] as f64 * sp[1]).powi(2)).sqrt();
            (RING_MM[0]..=RING_MM[1]).contains(&mm)
        })
        .collect();
    let mut ring = Vec::new();
    let mut touched = Vec::new();
    for &i in comp {
        let c = grid.coords(i);
        for &d in &offsets {
            let Some(j) = morph::offset(grid.shape, c, d) else { continue };
            if stamp[j] {
                continue;
            }
            stamp[j] = true;
            touched.push(j);
            if !cement[j] && !metal[j] && !base[j].is_nan() {
                ring.push((img[j] - base[j]).abs());
            }
        }
    }
    for j in touched {
        stamp[j] = false;
    }
    if ring.len() < MIN_SAMPLES {
        return None;
    }
    let k = ((ring.len() - 1) as f64 * CLUTTER_QUANTILE) as usize;
    ring.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    Some((own, ring[k]))
}
