//! Along the spine, bodies and discs alternate: the core profile (mean HU in a cylinder on the body axis)
//! is high in bodies (marrow, endplates) and low in discs. The target body is the high run containing (or
//! nearest) the level of interest; its endplates are then refined column by column and fitted with planes,
//! which follow disc wedging and residual tilt. The discs are the low runs just above and below.

use super::body::BodyAxis;
use super::context::{quantile, Fine, KPlane};
use super::frame::OUTSIDE_HU;
use super::AnatomyError;
use ndarray::Array2;

/// Vertebral bodies are 15–30 mm tall along their core (a compression fracture wedges the front, the core
/// rarely falls under 14 mm); a shorter "body" is a marrow dip misread as a disc. A body tilted 20° against
/// the frame measures up to about 32 mm, plus endplate partial volume; a longer run has swallowed a disc.
const MIN_BODY_MM: f64 = 14.0;
const MAX_BODY_MM: f64 = 36.0;
/// Discs are 3 mm (upper thoracic, degenerated) to 15 mm thick.
const MIN_DISC_MM: f64 = 3.0;
/// Half-width of the step-edge detector for endplates.
const EDGE_HALF_MM: f64 = 4.5;
/// Discs are at most this thick (lumbar discs 8–15 mm).
const MAX_DISC_MM: f64 = 18.0;
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
    shell: &[f64],
    foot_at: &(dyn Fn(usize) -> Array2<bool> + Sync),
) -> Result<Levels, AnatomyError> {
    let mut vals: Vec<f32> = profile.iter().flatten().copied().collect();
    let (Some(hb), Some(hd)) = (quantile(&mut vals, 0.75), quantile(&mut vals, 0.08)) else {
        return Err(AnatomyError::NoBody("the body axis lies outside the scan".into()));
    };
    let nk = profile.len();
    // Alternating body/disc segmentation of the profile with anatomical lengths. Bodies fill most of the
    // spine's length, so the profile's median is marrow; its low tail is disc. Marrow can be barely denser
    // than disc (osteoporosis), hence the midpoint of the two rather than a fixed HU.
    let med = quantile(&mut vals, 0.5).unwrap_or(hb);
    let t = (med + hd) / 2.0;
    // Only the stretch of the spine inside the scan is segmented; its two end segments may be cut short.
    let first = profile.iter().position(|p| p.is_some()).unwrap_or(0);
    let last = profile.iter().rposition(|p| p.is_some()).map_or(0, |l| l + 1);
    let segs: Vec<(usize, usize, bool)> =
        alternate(&profile[first..last.max(first)], &shell[first..last.max(first)], t, f.step)
            .into_iter()
            .map(|(a, b, s)| (a + first, b + first, s))
            .collect();
    tracing::debug!("body/disc threshold {t}, segments {segs:?}, level index {kc}");
    let kci = kc.round().max(0.0) as usize;
    let bodies: Vec<usize> = (0..segs.len()).filter(|&s| segs[s].2).collect();
    let Some(&ti) = bodies.iter().min_by_key(|&&s| {
        let (a, b, _) = segs[s];
        if kci >= a && kci < b {
            0
        } else {
            (a as isize - kci as isize).unsigned_abs().min((b as isize - 1 - kci as isize).unsigned_abs())
        }
    }) else {
        return Err(AnatomyError::NoBody(
            "no vertebral body along the spine near the level of interest".into(),
        ));
    };
    let target = (segs[ti].0, segs[ti].1);
    let bottom0 = target.0 as f64 - 0.5;
    let top0 = target.1 as f64 - 0.5;
    let body_level = {
        let mut v: Vec<f32> = profile[target.0..target.1].iter().flatten().copied().collect();
        quantile(&mut v, 0.5).unwrap_or(hb)
    };
    // Adjacent discs: the disc segments next to the target, when inside the scan.
    let disc_seg = |idx: Option<usize>| idx.and_then(|d| segs.get(d)).filter(|s| !s.2).copied();
    let up = disc_seg(Some(ti + 1));
    let dn = disc_seg(ti.checked_sub(1));
    let up_end = up.map(|(_, b, _)| b as f64 - 0.5);
    let dn_end = dn.map(|(a, _, _)| a as f64 - 0.5);
    let next_up = up.is_some_and(|(_, b, _)| b < last);
    let next_dn = dn.is_some_and(|(a, _, _)| a > first);

    // Column-wise refinement within the body's mid-height cross-section: in a window around the profile's
    // boundary, the step edge (mean on one side minus the other) is strongest at the endplate.
    let mid = ((target.0 + target.1) / 2).min(nk - 1);
    let cols: Vec<(usize, usize)> = foot_at(mid)
        .indexed_iter()
        .filter(|(_, &b)| b)
        .map(|(p, _)| p)
        .filter(|&(j, i)| {
            ((j as f64 - ax.j).powi(2) + (i as f64 - ax.i).powi(2)).sqrt() * f.step < ax.depth_mm * 0.6
        })
        .collect();
    let w = f.px(REFINE_MM).round() as isize;
    let half = f.px(EDGE_HALF_MM).round().max(1.0) as isize;
    let min_step = 0.2 * (body_level - hd).max(10.0);
    // `high_below`: the dense side is below the boundary (body top, or disc's lower end seen from above).
    let edge = |j: usize, i: usize, from: f64, high_below: bool| -> Option<f64> {
        let b0 = (from + 0.5).round() as isize;
        let mut best: Option<(f32, isize)> = None;
        for b in (b0 - w)..=(b0 + w) {
            if b - half < 0 || b + half > nk as isize {
                continue;
            }
            // Windows reaching outside the scan have no edge to offer.
            if ((b - half)..(b + half)).any(|k| f.raw[(k as usize, j, i)] <= OUTSIDE_HU + 1.0) {
                continue;
            }
            let mean = |a: isize, c: isize| -> f32 {
                (a..c).map(|k| f.hu[(k as usize, j, i)].clamp(hd - 50.0, body_level + 150.0)).sum::<f32>()
                    / (c - a) as f32
            };
            let below = mean(b - half, b);
            let above = mean(b, b + half);
            let step = if high_below { below - above } else { above - below };
            if best.is_none_or(|(s, _)| step > s) {
                best = Some((step, b));
            }
        }
        best.filter(|(s, _)| *s >= min_step).map(|(_, b)| b as f64 - 0.5)
    };
    let fit = |from: f64, high_below: bool| -> KPlane {
        let samples: Vec<(f64, f64, f64)> = cols
            .iter()
            .filter_map(|&(j, i)| edge(j, i, from, high_below).map(|k| (j as f64, i as f64, k)))
            .collect();
        let p = KPlane::fit(&samples, KPlane::flat(from), f.px(2.0), 0.3);
        // The refinement may tilt and shift the boundary, not move it to another structure.
        if (p.at(ax.j, ax.i) - from).abs() > w as f64 {
            KPlane::flat(from)
        } else {
            p
        }
    };
    let top = fit(top0, true);
    let bottom = fit(bottom0, false);
    // A disc's far side must stay a disc's thickness away from the body's endplate.
    let min_disc = f.px(MIN_DISC_MM);
    let (top_c, bottom_c) = (top.at(ax.j, ax.i), bottom.at(ax.j, ax.i));
    let above_disc_end = up_end.map(|e| {
        let p = if next_up { fit(e, false) } else { KPlane::flat(e) };
        if p.at(ax.j, ax.i) < top_c + min_disc {
            KPlane::flat(e.max(top_c + min_disc))
        } else {
            p
        }
    });
    let below_disc_end = dn_end.map(|e| {
        let p = if next_dn { fit(e, true) } else { KPlane::flat(e) };
        if p.at(ax.j, ax.i) > bottom_c - min_disc {
            KPlane::flat(e.min(bottom_c - min_disc))
        } else {
            p
        }
    });
    Ok(Levels { bottom, top, below_disc_end, above_disc_end, threshold: t, body_hu: body_level })
}

/// Segments `[a, b)` of the profile, alternating body (true) and disc (false), maximising agreement with
/// the threshold under anatomical lengths (semi-Markov dynamic programming). Segments touching either end
/// of the profile may be shorter (partly outside the scan or frame).
fn alternate(profile: &[Option<f32>], shell: &[f64], t: f32, step: f64) -> Vec<(usize, usize, bool)> {
    let n = profile.len();
    let len_px = |mm: f64| (mm / step).round().max(1.0) as usize;
    let (bmin, bmax) = (len_px(MIN_BODY_MM), len_px(MAX_BODY_MM));
    let (dmin, dmax) = (len_px(MIN_DISC_MM), len_px(MAX_DISC_MM));
    // Scores clipped so that bright endplates or a cement mass do not dominate.
    let clip = 60.0f32;
    // The cortical shell decides where the core's HU cannot: a slice ringed by bone is body even where its
    // marrow is as dark as disc (the basivertebral centre, osteoporosis, lysis). The converse does not
    // hold: a thin cortex at mid-height (L1 on the 3 mm trunk CT) stays under the shell threshold in up to
    // half the directions, so a missing ring is no evidence of disc.
    let sc: Vec<f32> = profile
        .iter()
        .zip(shell)
        .map(|(p, &c)| {
            let s = p.map_or(0.0, |v| (v - t).clamp(-clip, clip));
            if c >= BODY_SHELL_COVERAGE {
                s.max(SHELL_SCORE * clip)
            } else {
                s
            }
        })
        .collect();
    let mut cum = vec![0.0f32; n + 1];
    for k in 0..n {
        cum[k + 1] = cum[k] + sc[k];
    }
    // best[k][s]: best score of [0, k) whose last segment is of kind s (0 disc, 1 body); back pointers.
    let mut best = vec![[f32::NEG_INFINITY; 2]; n + 1];
    let mut back = vec![[0usize; 2]; n + 1];
    for k in 1..=n {
        for s in 0..2 {
            let (lo, hi) = if s == 1 { (bmin, bmax) } else { (dmin, dmax) };
            for len in 1..=k.min(hi) {
                let a = k - len;
                let edge = a == 0 || k == n;
                if len < lo && !edge {
                    continue;
                }
                let prev = if a == 0 { 0.0 } else { best[a][1 - s] };
                if prev == f32::NEG_INFINITY {
                    continue;
                }
                let seg = cum[k] - cum[a];
                let v = prev + if s == 1 { seg } else { -seg };
                if v > best[k][s] {
                    best[k][s] = v;
                    back[k][s] = a;
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut s = if best[n][1] >= best[n][0] { 1 } else { 0 };
    let mut k = n;
    while k > 0 {
        if best[k][s] == f32::NEG_INFINITY {
            break;
        }
        let a = back[k][s];
        out.push((a, k, s == 1));
        k = a;
        s = 1 - s;
    }
    out.reverse();
    out
}

/// Shell coverage of a body slice: bone met in nearly every direction (discs on the trunk CT reach 0.3–0.65,
/// their annulus is under the shell's density); see [`shell_coverage`].
const BODY_SHELL_COVERAGE: f64 = 0.8;
/// The shell's vote, as a fraction of the largest score one slice can give.
const SHELL_SCORE: f32 = 0.25;
/// Rays cast around the body's axis for the shell coverage (10° apart), and how far beyond the body's
/// measured size they search, mm.
const SHELL_RAYS: usize = 36;
const SHELL_MARGIN_MM: f64 = 3.0;

/// Per slice, the fraction of directions around the body's axis in which bone at or above `shell_hu` is
/// met within the body's outline: near 1 in a body, whatever its marrow does (the cortical shell surrounds
/// it), lower in a disc (annulus under the shell's density). Only the anterior half is searched: behind
/// the body's centre the pedicles and, at thoracic levels, the rib heads (which articulate at the disc)
/// would ring a disc with bone too.
pub fn shell_coverage(f: &Fine, ax: &BodyAxis, shell_hu: f32) -> Vec<f64> {
    let [nk, nj, ni] = f.dims();
    // The body's outline, tighter than the footprint's bound so that the aorta, psoas and crura next to
    // it are not reached: depth as measured, width 1.2–1.7 times the depth.
    let semi_ap = f.px(ax.depth_mm / 2.0 + SHELL_MARGIN_MM);
    let semi_lr = f.px(0.75 * ax.depth_mm + SHELL_MARGIN_MM);
    let rays: Vec<(f64, f64, f64)> = (0..SHELL_RAYS)
        .map(|a| {
            let th = a as f64 * std::f64::consts::TAU / SHELL_RAYS as f64;
            (th.cos(), th.sin())
        })
        .filter(|&(dj, _)| dj < -0.05)
        .map(|(dj, di)| (dj, di, 1.0 / ((dj / semi_ap).powi(2) + (di / semi_lr).powi(2)).sqrt()))
        .collect();
    let n_rays = rays.len().max(1) as f64;
    (0..nk)
        .map(|k| {
            let hits = rays
                .iter()
                .filter(|&&(dj, di, rmax)| {
                    let mut t = 1.0;
                    while t <= rmax {
                        let (j, i) = ((ax.j + t * dj).round(), (ax.i + t * di).round());
                        if j < 0.0 || i < 0.0 || j as usize >= nj || i as usize >= ni {
                            return false;
                        }
                        let v = f.hu[(k, j as usize, i as usize)];
                        if v >= shell_hu && v < super::context::CEMENT_HU {
                            return true;
                        }
                        t += 0.5;
                    }
                    false
                })
                .count();
            hits as f64 / n_rays
        })
        .collect()
}
