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
/// Slices within this of a needle's tip are body (see [`levels`]).
const TIP_BODY_MM: f64 = 3.0;
/// Discs are at most this thick (lumbar discs 8–15 mm).
const MAX_DISC_MM: f64 = 18.0;
/// Endplate refinement window around the profile's boundary.
const REFINE_MM: f64 = 5.0;
/// The endplate's cortex is the peak of the profile next to the disc. Blurred by the slice thickness and
/// the smoothing, it spreads into the disc, so the body/disc transition (where the profile crosses the
/// threshold, or its steepest step) lies 2–4 mm outside the body; the peak is searched this far inward from
/// the transition.
const ENDPLATE_REACH_MM: f64 = 4.0;
/// Where no disc is seen next to an endplate (the scan ends), the boundary goes between the steepest step
/// (outside the body) and the endplate's peak (inside it: the cortex is the body's outer layer): halfway. The phantoms' truth sits near the peak, the trunk
/// CT's reference masks about a slice beyond it; the peak itself cut L1 of the trunk CT to Dice 0.82.
const TOWARD_PEAK: f64 = 0.5;
/// Values within this of the window's maximum count as the peak (the first one from the disc side: cement
/// or a blastic focus next to the endplate makes a plateau, not a peak).
const PEAK_TOL_HU: f32 = 10.0;
/// A disc is a dip between two endplates: the profile's closing over this window (valleys narrower than it
/// filled) minus the profile measures how far a slice lies under both its neighbours. Wider than a
/// thoracic disc with its blurred endplates, narrower than a body, so the dark marrow of an osteoporotic or
/// lytic neighbour (a long low run, with no higher ground on both sides within reach) is not a dip.
const VALLEY_MM: f64 = 8.0;

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
    tip_at_kc: bool,
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
    // A needle's tip lies in the treated body (or its pedicle, level with it), never in a disc; the metal's
    // dark streaks between two tips can drop the core there below any disc (hybrid L1 and L5: 54 HU against
    // marrow at 115), which split the body in two at the tip.
    let r = (TIP_BODY_MM / f.step).round() as usize;
    let kci = kc.round().max(0.0) as usize;
    let known_body = tip_at_kc.then(|| {
        let lo = kci.saturating_sub(r).max(first);
        let hi = (kci + r + 1).min(last).max(lo);
        lo - first..hi - first
    });
    let segs: Vec<(usize, usize, bool)> =
        alternate(&profile[first..last.max(first)], &shell[first..last.max(first)], t, f.step, known_body)
            .into_iter()
            .map(|(a, b, s)| (a + first, b + first, s))
            .collect();
    tracing::debug!("body/disc threshold {t}, segments {segs:?}, level index {kc}");
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
    let raw = (segs[ti].0, segs[ti].1);
    let reach = (ENDPLATE_REACH_MM / f.step).round().max(1.0) as usize;
    let target = endplate_peaks(profile, raw.0, raw.1, reach);
    let (bottom0, top0) = (raw.0 as f64 - 0.5, raw.1 as f64 - 0.5);
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
    // The neighbours' endplates, like the target's, end at their peaks (see `half_height` below).
    let up_peak_k = up
        .filter(|_| next_up)
        .and_then(|(_, b, _)| first_peak(profile, (b..=(b + reach).min(last - 1)).collect()));
    let dn_peak_k = dn.filter(|_| next_dn).and_then(|(a, _, _)| {
        first_peak(profile, (a.saturating_sub(reach + 1).max(first)..a).rev().collect())
    });
    // Each disc's lowest point, from which the endplates on both sides are found at half height.
    let up_valley = up.and_then(|(a, b, _)| lowest(profile, a..b));
    let dn_valley = dn.and_then(|(a, b, _)| lowest(profile, a..b));
    let half_height = |peak: Option<usize>, valley: Option<usize>| {
        peak.zip(valley).and_then(|(p, v)| half_way(profile, p, v))
    };
    let up_peak = half_height(up_peak_k, up_valley).or(up_peak_k.map(|k| k as f64 - 0.5));
    let dn_peak = half_height(dn_peak_k, dn_valley).or(dn_peak_k.map(|k| k as f64 + 0.5));

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
    // The columns' steepest steps give the endplates' tilt; the step and the profile's peak together give
    // where they cross the axis.
    let recentre = |p: KPlane, at: f64| KPlane { a: p.a + at - p.at(ax.j, ax.i), ..p };
    let toward = |edge: f64, peak: f64| edge + TOWARD_PEAK * (peak - edge);
    let snap = |p: KPlane, peak: f64| recentre(p, toward(p.at(ax.j, ax.i), peak));
    // Where the disc next to it is seen, the endplate lies where the profile is halfway between the
    // endplate's peak and the disc's lowest point: the blur spreads the edge evenly about it whatever the
    // disc's thickness, while the step detector's window, wider than a thin disc, lands inside it (a 5 mm
    // thoracic disc: 2 mm in, and disc leaks next to the endplate were counted as intravertebral).
    let top_half = half_height(Some(target.1.saturating_sub(1)), up_valley);
    let bottom_half = half_height(Some(target.0), dn_valley);
    let top = match top_half {
        Some(k) => recentre(fit(top0, true), k),
        None => snap(fit(top0, true), target.1 as f64 - 0.5),
    };
    let bottom = match bottom_half {
        Some(k) => recentre(fit(bottom0, false), k),
        None => snap(fit(bottom0, false), target.0 as f64 - 0.5),
    };
    // A disc's far side must stay a disc's thickness away from the body's endplate.
    let min_disc = f.px(MIN_DISC_MM);
    let (top_c, bottom_c) = (top.at(ax.j, ax.i), bottom.at(ax.j, ax.i));
    let above_disc_end = up_end.map(|e| {
        let p = if next_up { fit(e, false) } else { KPlane::flat(e) };
        let p = up_peak.map_or(p, |k| snap(p, k));
        if p.at(ax.j, ax.i) < top_c + min_disc {
            KPlane::flat(e.max(top_c + min_disc))
        } else {
            p
        }
    });
    let below_disc_end = dn_end.map(|e| {
        let p = if next_dn { fit(e, true) } else { KPlane::flat(e) };
        let p = dn_peak.map_or(p, |k| snap(p, k));
        if p.at(ax.j, ax.i) > bottom_c - min_disc {
            KPlane::flat(e.min(bottom_c - min_disc))
        } else {
            p
        }
    });
    Ok(Levels { bottom, top, below_disc_end, above_disc_end, threshold: t, body_hu: body_level })
}

/// The body `[a, b)` of the split narrowed to its endplates' peaks: the first slice, from each end, within
/// [`PEAK_TOL_HU`] of the highest within `reach` slices.
fn endplate_peaks(profile: &[Option<f32>], a: usize, b: usize, reach: usize) -> (usize, usize) {
    if b < a + 2 * reach + 2 {
        return (a, b);
    }
    let lo = first_peak(profile, (a..=a + reach).collect()).unwrap_or(a);
    let hi = first_peak(profile, (b - 1 - reach..b).rev().collect()).map_or(b, |k| k + 1);
    (lo, hi)
}

/// The slice of `range` with the lowest profile value.
fn lowest(profile: &[Option<f32>], range: std::ops::Range<usize>) -> Option<usize> {
    range.filter_map(|k| Some((k, (*profile.get(k)?)?))).min_by(|a, b| a.1.total_cmp(&b.1)).map(|(k, _)| k)
}

/// Position (slice centres at whole numbers) where the profile, walked from the endplate's `peak` slice
/// toward the disc's `valley` slice, first falls to halfway between the two, interpolated between slices.
/// None when the peak is not above the valley or a slice between them lies outside the scan.
fn half_way(profile: &[Option<f32>], peak: usize, valley: usize) -> Option<f64> {
    let v = |k: usize| profile.get(k).copied().flatten();
    let (hp, hv) = (v(peak)?, v(valley)?);
    if hp <= hv {
        return None;
    }
    let level = (hp + hv) / 2.0;
    let dir: isize = if valley > peak { 1 } else { -1 };
    let mut prev = (peak, hp);
    while prev.0 != valley {
        let k = (prev.0 as isize + dir) as usize;
        let x = v(k)?;
        if x <= level {
            let frac = ((prev.1 - level) / (prev.1 - x)) as f64;
            return Some(prev.0 as f64 + dir as f64 * frac);
        }
        prev = (k, x);
    }
    None
}

/// The first of the slices `ks` (in order) within [`PEAK_TOL_HU`] of their highest value.
fn first_peak(profile: &[Option<f32>], ks: Vec<usize>) -> Option<usize> {
    let v = |k: usize| profile.get(k).copied().flatten();
    let m = ks.iter().filter_map(|&k| v(k)).fold(f32::MIN, f32::max);
    ks.into_iter().find(|&k| v(k).is_some_and(|x| x >= m - PEAK_TOL_HU))
}

/// Per slice, how far the profile lies under its closing over `w` slices (running maximum, then running
/// minimum): the depth of a valley narrower than the window; zero on plateaus and slopes. The ends are
/// extended with their own value, so a slope running out of the scan is no valley: only one side is seen.
fn valley_depth(p: &[f32], w: usize) -> Vec<f32> {
    let h = w / 2;
    let (Some(&first), Some(&last)) = (p.first(), p.last()) else { return Vec::new() };
    let ext: Vec<f32> = std::iter::repeat_n(first, 2 * h)
        .chain(p.iter().copied())
        .chain(std::iter::repeat_n(last, 2 * h))
        .collect();
    let n = ext.len();
    let window = |k: usize| k.saturating_sub(h)..(k + h + 1).min(n);
    let dil: Vec<f32> = (0..n).map(|k| ext[window(k)].iter().copied().fold(f32::MIN, f32::max)).collect();
    (2 * h..2 * h + p.len())
        .map(|k| dil[window(k)].iter().copied().fold(f32::MAX, f32::min) - ext[k])
        .collect()
}

/// Segments `[a, b)` of the profile, alternating body (true) and disc (false), maximising agreement with
/// the threshold under anatomical lengths (semi-Markov dynamic programming). Segments touching either end
/// of the profile may be shorter (partly outside the scan or frame).
fn alternate(
    profile: &[Option<f32>],
    shell: &[f64],
    t: f32,
    step: f64,
    known_body: Option<std::ops::Range<usize>>,
) -> Vec<(usize, usize, bool)> {
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
    // The global threshold cannot tell a neighbour's dark marrow from disc; a disc is also a dip between two
    // endplates, which dark marrow (longer than the window) is not. Slices outside the scan are neutral.
    let filled: Vec<f32> = profile.iter().map(|p| p.unwrap_or(t)).collect();
    let valley = valley_depth(&filled, (VALLEY_MM / step).round() as usize | 1);
    let sc: Vec<f32> = profile
        .iter()
        .zip(shell)
        .zip(&valley)
        .map(|((p, &c), &d)| {
            let s = p.map_or(0.0, |v| (v - t).clamp(-clip, clip) - d.min(clip));
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
                if s == 0 && known_body.as_ref().is_some_and(|b| a < b.end && k > b.start) {
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

/// Development aid: dumps, per case, what the split reads (profile, shell coverage) with the truth body's
/// extent along the frame axis, as JSON lines for offline study of the split. Phantom seeds from
/// `$DISC_DUMP_SEEDS` ("300..325", positions in the phantom test's order); the trunk CT's L1–L5 when
/// `$DISC_DUMP_REAL` is set. Output: `$DISC_DUMP`.
#[cfg(test)]
mod dump {
    use crate::anatomy::{body, canal, context::Fine, fine_frame, level_inputs, target, TargetHint};
    use crate::volume::{labels, CtVolume, Lps, PatientPosition, Volume};
    use std::io::Write;

    fn dump_one(ct: &CtVolume, hint: TargetHint, truth: &CtVolume, name: &str) -> Option<String> {
        let p = match hint {
            TargetHint::AtPoint(p) => p,
            TargetHint::Auto => target::find_needle(ct)?.tip,
        };
        let line = target::canal_line(ct, p).ok()?;
        let f: Fine = fine_frame(ct, &line, p);
        let step = f.step;
        let canal = canal::segment(&f, super::super::RING_HU);
        let axis = body::axis(&f, &canal).ok()?;
        let li = level_inputs(&f, &axis);
        let needle_tip = matches!(hint, TargetHint::Auto);
        let ours = super::super::body_and_discs(&f, &canal, &axis, needle_tip).ok().map(|b| {
            let lv = b.levels;
            (lv.bottom.at(axis.j, axis.i), lv.top.at(axis.j, axis.i))
        });
        let tr = f.frame.resample(truth);
        let r = f.px((axis.depth_mm / 3.0).clamp(4.0, 9.0));
        let nk = f.dims()[0];
        let frac: Vec<f64> = (0..nk)
            .map(|k| {
                let (mut s, mut n) = (0.0f64, 0.0f64);
                for ((j, i), &v) in tr.index_axis(ndarray::Axis(0), k).indexed_iter() {
                    if (j as f64 - axis.j).powi(2) + (i as f64 - axis.i).powi(2) <= r * r {
                        s += (v > 500.0) as u8 as f64;
                        n += 1.0;
                    }
                }
                s / n.max(1.0)
            })
            .collect();
        Some(
            serde_json::json!({
                "name": name, "step": step, "kc": f.center[0],
                "profile": li.profile, "shell": li.shell, "truth": frac, "ours": ours,
            })
            .to_string(),
        )
    }

    #[test]
    #[ignore = "development aid"]
    fn dump_profiles() {
        let Some(out) = std::env::var_os("DISC_DUMP") else { return };
        let mut w = std::fs::File::create(out).expect("dump file");
        if let Some((a, b)) = std::env::var("DISC_DUMP_SEEDS").ok().and_then(|s| {
            let (a, b) = s.split_once("..")?;
            Some((a.trim().parse::<u64>().ok()?, b.trim().parse::<u64>().ok()?))
        }) {
            for (i, seed) in (a..b).enumerate() {
                let mut spec = crate::phantom::PhantomSpec::from_seed(seed);
                spec.position = PatientPosition::ALL[i % 4];
                spec.matrix = 256;
                spec.pixel_mm = Some(0.8);
                spec.model_mm = 1.0;
                spec.steps = Some(2);
                let case = crate::phantom::generate_case(&spec).expect("case");
                let Some(scan) = case.scans.last() else { continue };
                let truth = Volume::new(
                    scan.anatomy.data.mapv(|l| {
                        if l == labels::VERTEBRAL_BODY || l == labels::CEMENT {
                            1000
                        } else {
                            0
                        }
                    }),
                    scan.anatomy.geometry,
                );
                let name = format!("seed {seed} {:?} {:?}", case.summary.level, case.summary.lesion);
                if let Some(l) = dump_one(&scan.ct, TargetHint::Auto, &truth, &name) {
                    writeln!(w, "{l}").expect("write");
                }
            }
        }
        if std::env::var_os("DISC_DUMP_REAL").is_some() {
            let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../shared/data/real/totalseg-trunk");
            let load = |n: &str| {
                crate::load::load_scan(&dir.join(n), &crate::load::LoadOptions::default())
                    .expect("nifti")
                    .volume
            };
            let (ct, bd, vert) =
                (load("ct.nii.gz"), load("vertebral_bodies_and_discs.nii.gz"), load("vertebrae.nii.gz"));
            for (name, code) in [("L1", 31), ("L2", 30), ("L3", 29), ("L4", 28), ("L5", 27)] {
                let (mut s, mut n) = ([0.0f64; 3], 0.0);
                let ind = Volume::new(
                    ndarray::Array3::from_shape_fn(vert.data.dim(), |(z, y, x)| {
                        let q = vert.geometry.voxel_to_lps([z, y, x]);
                        let inside = vert.data[(z, y, x)] == code && bd.at_lps(q) == Some(&1);
                        if inside {
                            for (acc, v) in s.iter_mut().zip(q.0) {
                                *acc += v;
                            }
                            n += 1.0;
                            1000
                        } else {
                            0
                        }
                    }),
                    vert.geometry,
                );
                let p = Lps(s.map(|v| v / n));
                if let Some(l) = dump_one(&ct, TargetHint::AtPoint(p), &ind, name) {
                    writeln!(w, "{l}").expect("write");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endplate_at_half_height_between_peak_and_disc() {
        // Body marrow 200, endplate peak 400 at slice 4, disc 80 from slice 7; slice 9 outside the scan.
        let p: Vec<Option<f32>> = [200.0, 200.0, 220.0, 280.0, 400.0, 300.0, 150.0, 80.0, 90.0]
            .into_iter()
            .map(Some)
            .chain([None])
            .collect();
        // Halfway is 240: between slice 5 (300) and 6 (150), 60/150 of the way.
        let k = half_way(&p, 4, 7).expect("edge");
        assert!((k - 5.4).abs() < 1e-6, "{k}");
        // Walking down toward a lower point below works the same way: 300 between slice 4 and 3 (280).
        let k = half_way(&p, 4, 0).expect("edge");
        assert!((k - (4.0 - 100.0 / 120.0)).abs() < 1e-6, "{k}");
        assert_eq!(lowest(&p, 5..10), Some(7));
        assert_eq!(half_way(&p, 7, 4), None, "a peak below its valley");
        assert_eq!(half_way(&p, 8, 9), None, "the valley outside the scan");
    }

    /// A recorded profile (HU) and shell coverage (per cent) as the split reads them.
    fn recorded(hu: &[i32], cov: &[i32]) -> (Vec<Option<f32>>, Vec<f64>) {
        (hu.iter().map(|&v| Some(v as f32)).collect(), cov.iter().map(|&c| c as f64 / 100.0).collect())
    }

    /// The body containing `k` after the split and the endplate snap.
    fn body_at(profile: &[Option<f32>], shell: &[f64], k: usize) -> (usize, usize) {
        let mut vals: Vec<f32> = profile.iter().flatten().copied().collect();
        let (med, low) = (quantile(&mut vals, 0.5).unwrap(), quantile(&mut vals, 0.08).unwrap());
        let segs = alternate(profile, shell, (med + low) / 2.0, 1.25, None);
        let &(a, b, _) = segs.iter().find(|s| s.2 && s.0 <= k && k < s.1).expect("a body at k");
        endplate_peaks(profile, a, b, 3)
    }

    /// Core profile of development phantom 300 (T9, cement-filled target, 1.25 mm steps): a thin disc (the
    /// dip at 33–35) between the target and an upper neighbour whose marrow (96–133 HU) is under the
    /// global threshold. The target's truth is slices 14..32.
    #[test]
    fn a_dark_neighbour_is_not_swallowed() {
        let hu = [
            89, 91, 93, 94, 94, 99, 131, 206, 254, 202, 123, 91, 105, 171, 253, 251, 202, 230, 338, 400, 400,
            400, 400, 400, 400, 400, 400, 400, 400, 400, 400, 343, 175, 97, 85, 96, 116, 132, 133, 120, 105,
            98, 96, 96, 97, 98,
        ];
        let cov = [
            94, 94, 82, 82, 88, 94, 100, 100, 100, 100, 58, 0, 29, 100, 100, 100, 100, 94, 100, 100, 100,
            100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 0, 11, 100, 100, 100, 100, 70,
            70, 64, 58, 64, 70,
        ];
        let (profile, shell) = recorded(&hu, &cov);
        let (a, b) = body_at(&profile, &shell, 23);
        assert!((13..=15).contains(&a), "body starts at {a}");
        assert!((30..=33).contains(&b), "body ends at {b} (disc at 33-35)");
    }

    /// Trunk CT L3 (1.25 mm steps, normal marrow, 10 mm discs): the reference body is slices 24..41.
    #[test]
    fn a_lumbar_body_ends_at_its_endplates() {
        let hu = [
            147, 142, 132, 124, 121, 117, 113, 109, 107, 109, 115, 124, 140, 163, 176, 156, 115, 86, 73, 68,
            67, 72, 93, 141, 189, 194, 161, 130, 116, 114, 115, 113, 109, 109, 112, 115, 121, 134, 155, 171,
            163, 131, 96, 75, 67, 67, 75, 97, 136, 173, 182, 165, 140, 124, 121, 125, 126, 121, 115, 112,
            112, 116, 122, 131, 140,
        ];
        let cov = [
            100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 5, 0, 0, 0, 35,
            82, 94, 100, 100, 100, 100, 100, 100, 100, 100, 100, 94, 88, 88, 94, 100, 100, 100, 100, 100,
            100, 11, 0, 0, 0, 17, 100, 100, 100, 100, 100, 100, 94, 100, 100, 100, 100, 100, 94, 88, 88, 94,
            100, 100,
        ];
        let (profile, shell) = recorded(&hu, &cov);
        let (a, b) = body_at(&profile, &shell, 32);
        assert!((23..=25).contains(&a), "body starts at {a}");
        assert!((40..=42).contains(&b), "body ends at {b}");
    }

    #[test]
    fn a_dark_streak_at_the_needle_tip_does_not_split_the_body() {
        // 1.25 mm slices: body, disc, a 35 mm body with a 2.5 mm band as dark as disc at its middle (the
        // streak between two needle tips), disc, body.
        let hu = |k: usize| match k {
            20..27 | 55..62 => 60.0,
            40..42 => 50.0,
            _ => 150.0,
        };
        let profile: Vec<Option<f32>> = (0..80).map(|k| Some(hu(k))).collect();
        let shell = vec![0.5; 80];
        let body_with = |known: Option<std::ops::Range<usize>>| {
            let segs = alternate(&profile, &shell, 105.0, 1.25, known);
            segs.into_iter().find(|s| s.2 && s.0 <= 41 && 41 < s.1)
        };
        // Read from the profile alone, the band is a disc.
        assert!(body_with(None).is_none_or(|(a, b, _)| b - a < 20));
        // With the tip at slice 41, the body runs from disc to disc.
        let (a, b, _) = body_with(Some(39..44)).expect("a body at the tip");
        assert!(a.abs_diff(27) <= 1 && b.abs_diff(55) <= 1, "body {a}..{b}");
    }

    #[test]
    fn valleys_narrower_than_the_window_only() {
        let p = [200.0, 200.0, 90.0, 90.0, 200.0, 200.0, 90.0, 90.0, 90.0, 90.0, 90.0, 90.0, 90.0, 200.0];
        let d = valley_depth(&p, 5);
        assert_eq!(d[2], 110.0);
        assert_eq!(d[3], 110.0);
        assert_eq!(d[9], 0.0);
        // A slope out of the scan is not a valley.
        let d = valley_depth(&[77.0, 87.0, 109.0, 142.0, 175.0, 190.0], 7);
        assert!(d.iter().all(|&v| v == 0.0), "{d:?}");
    }
}
