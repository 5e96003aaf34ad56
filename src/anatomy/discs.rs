//! Along the spine, bodies and discs alternate: the core profile (mean HU in a cylinder on the body axis)
//! is high in bodies (marrow, endplates) and low in discs. The target body is the high run containing (or
//! nearest) the level of interest; its endplates are then refined column by column and fitted with planes,
//! which follow disc wedging and residual tilt. The discs are the low runs just above and below.

use super::body::BodyAxis;
use super::context::{quantile, Fine, KPlane};
use super::AnatomyError;
use ndarray::{Array3, Axis};

/// Runs shorter than this are not bodies (a vertebral body is 15–35 mm tall, even when compressed).
const MIN_BODY_MM: f64 = 6.0;
/// Lower dips shorter than this inside a body are lesions or noise, not discs.
const MIN_DISC_MM: f64 = 2.5;
/// Discs are at most this thick (lumbar discs 8–15 mm).
const MAX_DISC_MM: f64 = 20.0;
/// Endplate refinement window around the profile's boundary.
const REFINE_MM: f64 = 5.0;

#[derive(Clone, Copy, Debug)]
pub struct Levels {
    /// Body lower and upper endplate planes (body between them).
    pub bottom: KPlane,
    pub top: KPlane,
    /// Far side of the disc below (top of the next body down) and of the disc above.
    pub below_disc_end: Option<KPlane>,
    pub above_disc_end: Option<KPlane>,
    /// Threshold between body and disc on the core profile.
    pub threshold: f32,
    pub body_hu: f32,
}

pub fn levels(
    f: &Fine,
    ax: &BodyAxis,
    profile: &[Option<f32>],
    kc: f64,
    foot: &Array3<bool>,
) -> Result<Levels, AnatomyError> {
    let mut vals: Vec<f32> = profile.iter().flatten().copied().collect();
    let (Some(hb), Some(hd)) = (quantile(&mut vals, 0.75), quantile(&mut vals, 0.08)) else {
        return Err(AnatomyError::NoBody("the body axis lies outside the scan".into()));
    };
    let t = (hb + hd) / 2.0;
    let nk = profile.len();
    let high: Vec<bool> = profile.iter().map(|p| p.is_some_and(|v| v >= t)).collect();
    // Runs of high, with short dips merged.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut k = 0;
    while k < nk {
        if !high[k] {
            k += 1;
            continue;
        }
        let s = k;
        while k < nk && high[k] {
            k += 1;
        }
        runs.push((s, k)); // [s, k)
    }
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for r in runs {
        if let Some(last) = merged.last_mut() {
            let gap = (r.0 - last.1) as f64 * f.step;
            let gap_inside = profile[last.1..r.0].iter().all(|p| p.is_some());
            if gap < MIN_DISC_MM && gap_inside {
                last.1 = r.1;
                continue;
            }
        }
        merged.push(r);
    }
    merged.retain(|r| (r.1 - r.0) as f64 * f.step >= MIN_BODY_MM);
    let kci = kc.round() as usize;
    let Some(&target) = merged.iter().min_by_key(|r| {
        if kci >= r.0 && kci < r.1 {
            0
        } else {
            (r.0 as isize - kci as isize).abs().min((r.1 as isize - 1 - kci as isize).abs()) as usize
        }
    }) else {
        return Err(AnatomyError::NoBody(
            "no vertebral body along the spine near the level of interest".into(),
        ));
    };
    let bottom0 = target.0 as f64 - 0.5;
    let top0 = target.1 as f64 - 0.5;
    // Far ends of the adjacent discs: the next run's start (or end of data, capped).
    let max_disc = f.px(MAX_DISC_MM);
    let next_up = merged.iter().find(|r| r.0 >= target.1).map(|r| r.0 as f64 - 0.5);
    let next_dn = merged.iter().rev().find(|r| r.1 <= target.0).map(|r| r.1 as f64 - 0.5);
    let valid_up = profile[target.1.min(nk)..].iter().take_while(|p| p.is_some()).count() as f64;
    let valid_dn = profile[..target.0].iter().rev().take_while(|p| p.is_some()).count() as f64;
    let up_end = next_up
        .filter(|&e| e - top0 <= max_disc)
        .or_else(|| (valid_up > 0.0).then(|| top0 + valid_up.min(max_disc * 0.6)));
    let dn_end = next_dn
        .filter(|&e| bottom0 - e <= max_disc)
        .or_else(|| (valid_dn > 0.0).then(|| bottom0 - valid_dn.min(max_disc * 0.6)));

    // Column-wise refinement within the body's mid-height cross-section.
    let mid = ((target.0 + target.1) / 2).min(nk - 1);
    let cols: Vec<(usize, usize)> = foot
        .index_axis(Axis(0), mid)
        .indexed_iter()
        .filter(|(_, &b)| b)
        .map(|(p, _)| p)
        .filter(|&(j, i)| {
            ((j as f64 - ax.j).powi(2) + (i as f64 - ax.i).powi(2)).sqrt() * f.step < ax.depth_mm * 0.6
        })
        .collect();
    let w = f.px(REFINE_MM);
    let crossing = |j: usize, i: usize, start: f64, stop: f64, dir: isize, want_high: bool| -> Option<f64> {
        // Walk from `start` toward `dir` and report where the column changes side of `t`.
        let start = start.round() as isize;
        let stop = stop.round() as isize;
        let mut k = start;
        while (dir > 0 && k <= stop) || (dir < 0 && k >= stop) {
            if k < 0 || k >= nk as isize {
                return None;
            }
            let v = f.hu[(k as usize, j, i)];
            if (v >= t) == want_high {
                return Some(k as f64 - dir as f64 * 0.5);
            }
            k += dir;
        }
        None
    };
    // `from` is the profile's boundary; `start` where the walk begins (inside the structure being left).
    let fit = |from: f64, start: f64, dir: isize, want_high: bool| -> KPlane {
        let stop = from + dir as f64 * w;
        let samples: Vec<(f64, f64, f64)> = cols
            .iter()
            .filter_map(|&(j, i)| {
                crossing(j, i, start, stop, dir, want_high).map(|k| (j as f64, i as f64, k))
            })
            .collect();
        KPlane::fit(&samples, KPlane::flat(from), f.px(2.0), 0.3)
    };
    // Body top: going up from inside, first low voxel. Body bottom: going down, first low voxel.
    let top = fit(top0, top0 - w, 1, false);
    let bottom = fit(bottom0, bottom0 + w, -1, false);
    let above_disc_end = up_end.map(|e| {
        if next_up.is_some() {
            fit(e, (e - w).max(top0 + 1.0), 1, true)
        } else {
            KPlane::flat(e)
        }
    });
    let below_disc_end = dn_end.map(|e| {
        if next_dn.is_some() {
            fit(e, (e + w).min(bottom0 - 1.0), -1, true)
        } else {
            KPlane::flat(e)
        }
    });
    Ok(Levels { bottom, top, below_disc_end, above_disc_end, threshold: t, body_hu: hb })
}
