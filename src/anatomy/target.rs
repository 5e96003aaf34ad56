//! Finding the treated vertebra: the needle (a straight thin metal line) if there is one, and the spinal
//! canal's centre line near the level of interest on a coarse patient-aligned grid.

use super::frame::Frame;
use super::morphology::{gaussian3, label2};
use super::AnatomyError;
use crate::volume::{CtVolume, Direction, Lps, Vec3};
use ndarray::{Array2, Axis};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Steel needles and thermocouples saturate the scanner (3071 HU on 12-bit scanners); 2500 HU is above any
/// bone (cortex 700–1500) and most cement, so what passes it is metal or dense cement.
const METAL_HU: f32 = 2500.0;
/// A 13-gauge needle is 2.4 mm wide; allow blur and streaks. On coarse grids the voxel centres of a thin
/// oblique line stray from it by up to about a voxel, so the radius grows with the voxel size.
const NEEDLE_RADIUS_MM: f64 = 2.0;
/// Largest gap along a needle between metal-bright voxels: partial volume where the needle crosses from one
/// slice into the next dims it under `METAL_HU` (on the 3 mm trunk CT the bright runs of a hybrid needle
/// at 11 degrees to the slices are 9-10 mm apart), so on coarse grids the gap grows with the voxel size.
const NEEDLE_GAP_MM: f64 = 5.0;
const NEEDLE_GAP_VOXELS: f64 = 3.5;
/// A needle is visible over at least this length inside the scan.
const NEEDLE_MIN_LENGTH_MM: f64 = 20.0;
/// RANSAC line hypotheses.
const RANSAC_TRIES: usize = 300;

/// A detected needle: the line through it and its deep end (the tip, in the vertebra).
#[derive(Clone, Copy, Debug)]
pub struct Needle {
    pub tip: Lps,
    pub entry: Lps,
}

/// Finds the longest straight thin run of metal voxels with RANSAC (deterministic seed).
pub fn find_needle(ct: &CtVolume) -> Option<Needle> {
    let g = &ct.geometry;
    let mut pts: Vec<Lps> = ct
        .data
        .axis_iter(Axis(0))
        .into_par_iter()
        .enumerate()
        .flat_map_iter(|(z, plane)| {
            let mut v = Vec::new();
            for (y, row) in plane.outer_iter().enumerate() {
                for (x, &h) in row.iter().enumerate() {
                    if f32::from(h) >= METAL_HU {
                        v.push(g.voxel_to_lps([z, y, x]));
                    }
                }
            }
            v
        })
        .collect();
    if pts.len() < 5 {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    if pts.len() > 4000 {
        let stride = pts.len() / 4000 + 1;
        pts = pts.into_iter().step_by(stride).collect();
    }
    let voxel = g.spacing.slice.max(g.spacing.row).max(g.spacing.column);
    let radius = NEEDLE_RADIUS_MM.max(0.9 * voxel);
    let max_gap = NEEDLE_GAP_MM.max(NEEDLE_GAP_VOXELS * voxel);
    let mut best: Option<(f64, Needle)> = None;
    for _ in 0..RANSAC_TRIES {
        let a = pts[rng.random_range(0..pts.len())];
        let b = pts[rng.random_range(0..pts.len())];
        if a.distance(b) < 8.0 {
            continue;
        }
        let Some(dir) = (b - a).normalized() else { continue };
        let mut along: Vec<f64> = Vec::new();
        let mut shell: Vec<f64> = Vec::new();
        for &p in &pts {
            let d = p - a;
            let t = d.dot(dir);
            let perp = (d - dir * t).norm();
            if perp <= radius {
                along.push(t);
            } else if perp <= 3.0 * radius {
                shell.push(t);
            }
        }
        along.sort_by(f64::total_cmp);
        if along.is_empty() {
            continue;
        }
        // Longest run without a gap over `max_gap`.
        let mut s0 = 0usize;
        let mut best_run = (0usize, 1usize);
        for i in 1..=along.len() {
            if i == along.len() || along[i] - along[i - 1] > max_gap {
                if along[i - 1] - along[s0] > along[best_run.1 - 1] - along[best_run.0] {
                    best_run = (s0, i);
                }
                s0 = i;
            }
        }
        let (t0, t1) = (along[best_run.0], along[best_run.1 - 1]);
        let len = t1 - t0;
        if len < NEEDLE_MIN_LENGTH_MM {
            continue;
        }
        // Thin: in most 5 mm segments of the run, fewer metal voxels around the line than on it.
        let nseg = (len / 5.0).ceil().max(1.0) as usize;
        let mut on = vec![0usize; nseg];
        let mut off = vec![0usize; nseg];
        for &t in &along[best_run.0..best_run.1] {
            on[(((t - t0) / 5.0) as usize).min(nseg - 1)] += 1;
        }
        for &t in shell.iter().filter(|&&t| t >= t0 && t <= t1) {
            off[(((t - t0) / 5.0) as usize).min(nseg - 1)] += 1;
        }
        let thin = (0..nseg).filter(|&s| off[s] <= on[s]).count();
        if (thin as f64) < 0.5 * nseg as f64 {
            continue;
        }
        if best.as_ref().is_none_or(|(bl, _)| len > *bl) {
            let e0 = a + dir * t0;
            let e1 = a + dir * t1;
            // The needle enters from the back: its deep end is the anterior one, whatever the position.
            let ant = Direction::Anterior.unit();
            let (tip, entry) = if (e0 - e1).dot(ant) > 0.0 { (e0, e1) } else { (e1, e0) };
            best = Some((len, Needle { tip, entry }));
        }
    }
    best.map(|(_, n)| n)
}

/// The canal's centre line near one level: a point on it and its unit direction (toward superior).
#[derive(Clone, Copy, Debug)]
pub struct CanalLine {
    pub point: Lps,
    pub direction: Vec3,
    /// Slices in which the canal was seen enclosed by bone.
    pub slices_seen: usize,
}

/// Coarse grid step, mm: fine enough for a 12 mm canal, coarse enough to be fast.
const COARSE_STEP_MM: f64 = 2.0;
/// Dense tissue around the canal (cortex, cancellous bone) on the smoothed coarse grid.
const DENSE_HU: f32 = 150.0;
/// Canal content (CSF, cord, epidural fat) is under about 60 HU; air is not canal.
const CANAL_MAX_HU: f32 = 70.0;
const CANAL_MIN_HU: f32 = -300.0;
/// From inside the canal, bone is met within this distance in every direction at pedicle level.
const ENCLOSURE_MM: f64 = 30.0;
/// Levels used around the point of interest to fit the canal line.
const LINE_HALF_SPAN_MM: f64 = 25.0;

/// LPS-aligned grid covering the scan, slices toward superior; only `z_range` (LPS z, mm) when given.
pub fn coarse_frame(ct: &CtVolume, z_range: Option<(f64, f64)>) -> Frame {
    let g = &ct.geometry;
    let s = ct.shape();
    let mut lo = [f64::MAX; 3];
    let mut hi = [f64::MIN; 3];
    for c in 0..8 {
        let idx = [0, 1, 2].map(|a| if c >> a & 1 == 1 { (s[a] as f64 - 1.0).max(0.0) } else { 0.0 });
        let p = g.index_to_lps(idx);
        for a in 0..3 {
            lo[a] = lo[a].min(p.0[a]);
            hi[a] = hi[a].max(p.0[a]);
        }
    }
    if let Some((z0, z1)) = z_range {
        lo[2] = lo[2].max(z0);
        hi[2] = hi[2].min(z1).max(lo[2]);
    }
    let sup = g.mm_per_index_toward(Direction::Superior).iter().map(|v| v.abs()).fold(0.0, f64::max);
    let zstep = COARSE_STEP_MM.max(sup.min(5.0));
    let step = [zstep, COARSE_STEP_MM, COARSE_STEP_MM];
    // Frame axes: superior, posterior, left; LPS coordinates 2, 1, 0.
    let extent = [hi[2] - lo[2], hi[1] - lo[1], hi[0] - lo[0]];
    let dims = [0, 1, 2].map(|a| (extent[a] / step[a]).floor() as usize + 1);
    Frame {
        origin: Lps([lo[0], lo[1], lo[2]]),
        axes: [Direction::Superior.unit(), Direction::Posterior.unit(), Direction::Left.unit()],
        step,
        dims,
    }
}

/// Pixels of one axial slice that look like canal: soft tissue with bone met within `ENCLOSURE_MM` along
/// all eight in-plane directions.
fn enclosed_soft(slice: ndarray::ArrayView2<f32>, step: f64) -> Array2<bool> {
    let (h, w) = slice.dim();
    let dense = slice.mapv(|v| v >= DENSE_HU);
    let max_steps = (ENCLOSURE_MM / step).ceil() as u32;
    let mut count = Array2::<u8>::zeros((h, w));
    let dirs: [(isize, isize); 8] = [(0, 1), (0, -1), (1, 0), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)];
    let mut dist = Array2::<u32>::zeros((h, w));
    for (dy, dx) in dirs {
        let diag = dy != 0 && dx != 0;
        let limit =
            if diag { (max_steps as f64 / std::f64::consts::SQRT_2).ceil() as u32 } else { max_steps };
        let ys: Vec<usize> = if dy > 0 { (0..h).rev().collect() } else { (0..h).collect() };
        let xs: Vec<usize> = if dx > 0 { (0..w).rev().collect() } else { (0..w).collect() };
        for &y in &ys {
            for &x in &xs {
                let v = if dense[(y, x)] {
                    0
                } else {
                    let ny = y as isize + dy;
                    let nx = x as isize + dx;
                    if ny < 0 || nx < 0 || ny >= h as isize || nx >= w as isize {
                        u32::MAX
                    } else {
                        dist[(ny as usize, nx as usize)].saturating_add(1)
                    }
                };
                dist[(y, x)] = v;
            }
        }
        ndarray::Zip::from(&mut count).and(&dist).for_each(|c, &d| {
            if d <= limit {
                *c += 1;
            }
        });
    }
    ndarray::Zip::from(&count)
        .and(&slice)
        .map_collect(|&c, &v| c == 8 && (CANAL_MIN_HU..CANAL_MAX_HU).contains(&v))
}

/// The canal centre line at the level of `near` (its z is used; x, y only break ties).
pub fn canal_line(ct: &CtVolume, near: Lps) -> Result<CanalLine, AnatomyError> {
    // Only the levels used for the line are resampled (a trunk CT is ten times taller).
    let margin = LINE_HALF_SPAN_MM + 4.0;
    let t0 = std::time::Instant::now();
    let f = coarse_frame(ct, Some((near.z() - margin, near.z() + margin)));
    let vol = f.resample(ct);
    tracing::debug!("canal line: coarse resample {:?} {:?}", f.dims, t0.elapsed());
    let vol = gaussian3(&vol, [0.0, 1.0, 1.0]);
    tracing::debug!("canal line: smoothed {:?}", t0.elapsed());
    let kz = f.lps_to_index(near)[0];
    let half = LINE_HALF_SPAN_MM / f.step[0];
    let k0 = (kz - half).floor().max(0.0) as usize;
    let k1 = ((kz + half).ceil().max(0.0) as usize).min(f.dims[0].saturating_sub(1));
    if k0 > k1 {
        return Err(AnatomyError::NoSpine("the point of interest is outside the scan".into()));
    }
    let cands: Vec<(usize, Array2<bool>)> = (k0..=k1)
        .into_par_iter()
        .map(|k| (k, enclosed_soft(vol.index_axis(Axis(0), k), f.step[1])))
        .collect();
    tracing::debug!("canal line: candidates {:?}", t0.elapsed());
    let (h, w) = (f.dims[1], f.dims[2]);
    let mut votes = Array2::<f32>::zeros((h, w));
    for (_, c) in &cands {
        ndarray::Zip::from(&mut votes).and(c).for_each(|v, &b| {
            if b {
                *v += 1.0;
            }
        });
    }
    // Blur the votes by the canal's radius so that a column of canal outvotes isolated pockets.
    let r = (6.0 / f.step[1]).round() as isize;
    let mut sm = Array2::<f32>::zeros((h, w));
    // Rows in parallel; each sum in the same order as before.
    sm.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(y, mut row)| {
        let y = y as isize;
        for x in 0..w as isize {
            let mut s = 0.0;
            for yy in (y - r).max(0)..=(y + r).min(h as isize - 1) {
                for xx in (x - r).max(0)..=(x + r).min(w as isize - 1) {
                    s += votes[(yy as usize, xx as usize)];
                }
            }
            row[x as usize] = s;
        }
    });
    let near_idx = f.lps_to_index(near);
    let mut peak = None;
    for ((y, x), &v) in sm.indexed_iter() {
        if v <= 0.0 {
            continue;
        }
        // Ties go to the candidate nearest the point of interest.
        let d2 = (y as f64 - near_idx[1]).powi(2) + (x as f64 - near_idx[2]).powi(2);
        let score = v as f64 - 1e-6 * d2;
        if peak.is_none_or(|(s, _, _)| score > s) {
            peak = Some((score, y, x));
        }
    }
    let Some((_, py, px)) = peak else {
        return Err(AnatomyError::NoSpine(
            "no spinal canal enclosed by bone was found near the level of interest".into(),
        ));
    };
    tracing::debug!("canal line: votes {:?}", t0.elapsed());
    // Per slice, the candidate blob nearest the peak.
    let max_d = 12.0 / f.step[1];
    // Slices in parallel, kept in slice order.
    let samples: Vec<(f64, f64, f64)> = cands
        .par_iter()
        .filter_map(|(k, c)| {
            let (lab, sizes) = label2(c);
            let mut sums = vec![(0.0f64, 0.0f64, 0usize); sizes.len()];
            for ((y, x), &l) in lab.indexed_iter() {
                if l > 0 {
                    let s = &mut sums[l as usize];
                    s.0 += y as f64;
                    s.1 += x as f64;
                    s.2 += 1;
                }
            }
            let area_mm2 = |n: usize| n as f64 * f.step[1] * f.step[2];
            let best = sums
                .iter()
                .skip(1)
                .filter(|s| area_mm2(s.2) >= 20.0 && area_mm2(s.2) <= 1200.0)
                .map(|s| (s.0 / s.2 as f64, s.1 / s.2 as f64))
                .map(|(cy, cx)| (((cy - py as f64).powi(2) + (cx - px as f64).powi(2)).sqrt(), cy, cx))
                .filter(|(d, _, _)| *d <= max_d)
                .min_by(|a, b| a.0.total_cmp(&b.0));
            best.map(|(_, cy, cx)| (*k as f64, cy, cx))
        })
        .collect();
    if samples.is_empty() {
        return Err(AnatomyError::NoSpine("the spinal canal could not be followed".into()));
    }
    let (a_y, b_y, a_x, b_x) = fit_lines(&samples, 4.0 / f.step[1]);
    let p0 = f.index_to_lps([kz, a_y + b_y * kz, a_x + b_x * kz]);
    let p1 = f.index_to_lps([kz + 1.0, a_y + b_y * (kz + 1.0), a_x + b_x * (kz + 1.0)]);
    let direction = (p1 - p0).normalized().unwrap_or(Direction::Superior.unit());
    Ok(CanalLine { point: p0, direction, slices_seen: samples.len() })
}

/// Lines y(k), x(k) through the per-slice canal samples: least squares, then once more on the samples
/// within `inlier` pixels of that line (a rib pocket or lesion picked in one slice). Inliers that span
/// under half of the levels place the line but do not set its slope (three adjacent slices of a hybrid L4
/// baseline tilted it 49 degrees sideways): the line then runs along the grid's superior axis through
/// them, as it does through two. Alternatives measured on development phantoms 300..324 and lost there:
/// a Theil-Sen fit (median pairwise slope) in place of least squares (canal Dice 0.676 -> 0.601, lytic
/// bodies give many enclosed dark holes), and the first fit's slope in place of the vertical (0.669).
/// A vertical line when fewer than three levels are known.
fn fit_lines(s: &[(f64, f64, f64)], inlier: f64) -> (f64, f64, f64, f64) {
    let all: Vec<&(f64, f64, f64)> = s.iter().collect();
    let first = least_squares(&all);
    if s.len() < 4 {
        return first;
    }
    let (a_y, b_y, a_x, b_x) = first;
    let kept: Vec<&(f64, f64, f64)> = s
        .iter()
        .filter(|&&(k, y, x)| ((a_y + b_y * k - y).powi(2) + (a_x + b_x * k - x).powi(2)).sqrt() <= inlier)
        .collect();
    if kept.len() < 2 {
        return first;
    }
    if k_span(&kept) < 0.5 * k_span(&all) {
        // As with two inliers: they place the line but cannot set its slope.
        return vertical_through(&kept);
    }
    least_squares(&kept)
}

/// The line along k through the samples' mean.
fn vertical_through(s: &[&(f64, f64, f64)]) -> (f64, f64, f64, f64) {
    let n = s.len().max(1) as f64;
    (s.iter().map(|p| p.1).sum::<f64>() / n, 0.0, s.iter().map(|p| p.2).sum::<f64>() / n, 0.0)
}

fn k_span(v: &[&(f64, f64, f64)]) -> f64 {
    let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    hi - lo
}

/// Least-squares lines y(k), x(k); a vertical line through the mean when fewer than three levels are known.
fn least_squares(s: &[&(f64, f64, f64)]) -> (f64, f64, f64, f64) {
    let n = s.len() as f64;
    let mk = s.iter().map(|p| p.0).sum::<f64>() / n;
    let skk: f64 = s.iter().map(|p| (p.0 - mk).powi(2)).sum();
    if skk < 1e-9 || s.len() < 3 {
        return vertical_through(s);
    }
    let (my, _, mx, _) = vertical_through(s);
    let by = s.iter().map(|p| (p.0 - mk) * (p.1 - my)).sum::<f64>() / skk;
    let bx = s.iter().map(|p| (p.0 - mk) * (p.2 - mx)).sum::<f64>() / skk;
    (my - by * mk, by, mx - bx * mk, bx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Geometry, Spacing};
    use ndarray::Array3;

    #[test]
    fn canal_line_fit_is_not_set_by_a_few_adjacent_levels() {
        // Per-level canal samples (level, row, column; 3 mm levels, 2 mm pixels) recorded on the hybrid L4
        // baseline (trunk CT, seed 200003): the rows wander by +-5 px, the columns stay within 93-97. The
        // second least-squares pass kept three adjacent levels and tilted the line 49 degrees sideways.
        let s = [
            (1.0, 101.6, 93.2),
            (3.0, 96.0, 92.5),
            (4.0, 97.625, 92.75),
            (5.0, 97.0, 96.0),
            (7.0, 94.5, 96.95),
            (8.0, 91.22, 95.02),
            (9.0, 91.65, 94.24),
            (15.0, 98.33, 94.5),
            (16.0, 97.73, 94.27),
        ];
        let (_, b_y, a_x, b_x) = fit_lines(&s, 2.0);
        // Slopes in pixels per level: 0.3 is 11 degrees.
        assert!(b_y.abs() < 0.3 && b_x.abs() < 0.3, "slopes {b_y} {b_x}");
        assert!((a_x - 94.5).abs() < 2.0, "column {a_x}");
        // Too few levels: a vertical line through their mean.
        let (a_y, b_y, a_x, b_x) = fit_lines(&[(3.0, 90.0, 94.0), (4.0, 92.0, 96.0)], 2.0);
        assert!(a_y == 91.0 && b_y == 0.0 && a_x == 95.0 && b_x == 0.0);
    }

    /// Steel attenuates like ~9,000 HU; the scanner saturates at 3071 (12 bits).
    const STEEL_HU: f32 = 9_000.0;

    /// A 2.4 mm needle on a grid of `mm` voxels, at 11 degrees to the slices, steel blended with soft
    /// tissue by the fraction of each voxel it fills (4 x 4 x 4 samples, as the hybrid generator draws it)
    /// and saturated, beside a block of saturated voxels four times the needle's count (an implant lower in
    /// the scan).
    fn scan_with_needle(mm: f64) -> (CtVolume, Lps) {
        let n = (150.0 / mm) as usize;
        let g = Geometry::axial_hfs(Lps([0.0; 3]), Spacing { slice: mm, row: mm, column: mm });
        let entry = Lps([75.3, 130.0, 100.0]);
        let tip = Lps([75.3, 40.0, 100.0 + 90.0 * (11f64).to_radians().tan()]);
        let dir = (tip - entry).normalized().unwrap_or(Vec3([0.0, -1.0, 0.0]));
        let len = entry.distance(tip);
        let sub: Vec<f64> = (0..4).map(|k| (k as f64 + 0.5) / 4.0 - 0.5).collect();
        let mut data = Array3::<f32>::from_elem((n, n, n), 40.0);
        for ((z, y, x), v) in data.indexed_iter_mut() {
            let c = g.voxel_to_lps([z, y, x]);
            if (c - entry).dot(dir) < -mm || (c - entry).dot(dir) > len + mm {
                continue;
            }
            let mut inside = 0usize;
            for a in &sub {
                for b in &sub {
                    for d in &sub {
                        let p = c + Vec3([a * mm, b * mm, d * mm]);
                        let t = (p - entry).dot(dir);
                        inside +=
                            ((0.0..=len).contains(&t) && (p - (entry + dir * t)).norm() <= 1.2) as usize;
                    }
                }
            }
            let f = inside as f32 / 64.0;
            *v = (*v * (1.0 - f) + STEEL_HU * f).min(3071.0);
        }
        let bright = data.iter().filter(|&&v| v >= METAL_HU).count();
        let side = ((4 * bright) as f64).cbrt().ceil() as usize;
        data.slice_mut(ndarray::s![2..2 + side, 2..2 + side, 2..2 + side]).fill(3071.0);
        (CtVolume::from_hu(&data, g), tip)
    }

    #[test]
    fn needle_found_on_fine_and_coarse_grids_beside_a_dense_block() {
        for mm in [0.8, 1.5, 3.0] {
            let (ct, tip) = scan_with_needle(mm);
            let found = find_needle(&ct).unwrap_or_else(|| panic!("no needle found on {mm} mm voxels"));
            assert!(found.tip.distance(tip) < 2.0 * mm + 2.0, "{mm} mm: tip {:?} vs {:?}", found.tip, tip);
        }
    }
}
