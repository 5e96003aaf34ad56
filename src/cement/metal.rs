//! Metal: the bone needle and thermocouple wires. Steel saturates the scanner (3071 HU on 12-bit scanners)
//! even at partial volume, and these objects are thin and straight; cement may also saturate but forms
//! masses. So metal is found as *thin straight lines* of saturated voxels:
//!
//! 1. 26-connected components of voxels >= `metal_hu`;
//! 2. in each, RANSAC lines scored by voxels within the needle radius minus voxels in the ring just outside
//!    it (a thin line scores high, a line through a cement mass scores low), refined by PCA;
//! 3. a line is accepted where it is thin (ring mostly empty) over at least `min_line_length_mm`, and then
//!    followed through saturated voxels into a mass (the needle tip inside cement) — with a baseline only as
//!    far as the baseline was already saturated there, so new cement beyond the tip stays cement;
//! 4. `core` = voxels within `needle_radius_mm` of the accepted segments, plus voxels saturated now where
//!    the baseline was saturated in any stored voxel the resampled value was interpolated from (an oblique
//!    needle grazing a thick slice is far from linear between slices); `band` = the further `metal_margin_mm` of blooming plus half the voxel's extent toward the axis
//!    (steel saturates a voxel it only grazes), where a 1-2 voxel misregistration of a
//!    3000 HU edge fakes a large rise. Band voxels never seed cement but cement may grow into them (cement
//!    around the needle tip), so cement touching the needle is kept.

use super::grid::Grid;
use super::morph;
use crate::volume::{Lps, Vec3};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// A straight metal segment (LPS end points).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Segment {
    pub a: Lps,
    pub b: Lps,
}

impl Segment {
    /// Vector from the nearest point of the segment to `p`.
    fn offset(&self, p: Lps) -> Vec3 {
        let ab = self.b - self.a;
        let l2 = ab.dot(ab);
        let t = if l2 > 0.0 { ((p - self.a).dot(ab) / l2).clamp(0.0, 1.0) } else { 0.0 };
        p - (self.a + ab * t)
    }

    fn distance(&self, p: Lps) -> f64 {
        self.offset(p).norm()
    }
}

#[derive(Clone, Copy)]
pub(crate) struct MetalSettings<'a> {
    pub metal_hu: f32,
    pub needle_radius_mm: f64,
    pub margin_mm: f64,
    pub min_line_length_mm: f64,
    /// Without a baseline: thin straight lines of dense voxels outside the body are devices too (an
    /// unsaturated wire), when no thicker than `WIRE_ACROSS_MM`. See [`ShapeOnly`].
    pub shape_only: Option<ShapeOnly<'a>>,
}

/// Where lines are looked for by shape alone: groups of voxels at least `grow_hu` outside `region` (the
/// body) that hold a voxel of at least `seed_hu` — the leak candidates of the density rule, before any
/// device is removed.
#[derive(Clone, Copy)]
pub(crate) struct ShapeOnly<'a> {
    pub seed_hu: f32,
    pub grow_hu: f32,
    pub region: &'a [bool],
}

/// How the points of a line are judged (see [`thin_run`]).
#[derive(Clone, Copy, Debug, PartialEq)]
enum LineRule {
    /// Saturated or baseline lines: thin against the ring, followed on into masses.
    Device,
    /// Lines found by shape alone on the current scan: the points' spread around the axis must be that of
    /// an object at most `WIRE_ACROSS_MM` across, and the line is not followed into masses (without a
    /// baseline there is nothing to say the mass was metal).
    ShapeOnly,
}

/// Thin straight lines at least this dense on the baseline (above cortex, up to ~1500 HU, and bone islands,
/// 1200-1300 HU) are devices even when they do not saturate.
const BASELINE_DEVICE_HU: f32 = 1800.0;

/// Longest empty stretch a line may bridge, mm.
const MAX_GAP_MM: f64 = 5.0;

/// Width of the ring outside the line used to tell thin lines from masses, mm.
const RING_MM: f64 = 3.0;

/// Thickest line taken for a device by its shape alone, mm across: a thermocouple wire is 0.9 mm and a
/// 13 G needle 2.4 mm; a vein filled with cement is usually thicker, and curved.
const WIRE_ACROSS_MM: f64 = 2.5;

pub(crate) struct Metal {
    pub core: Vec<bool>,
    pub band: Vec<bool>,
    pub segments: Vec<Segment>,
}

impl Metal {
    /// Metal as reported next to `cement`: the core, and the blooming band where it did not turn out to be
    /// cement.
    pub(crate) fn reported(&self, cement: &[bool]) -> Vec<bool> {
        self.core.iter().zip(&self.band).zip(cement).map(|((&c, &b), &cem)| c || (b && !cem)).collect()
    }
}

/// `base` is the largest baseline value each crop voxel was interpolated from (`Resampled::support_max`).
pub(crate) fn detect_metal(img: &[f32], base: Option<&[f32]>, grid: &Grid, s: &MetalSettings) -> Metal {
    let sat: Vec<bool> = img.iter().map(|&v| v >= s.metal_hu).collect();
    // Three independent searches, each with its own seeded random sequence: side by side, their lines kept
    // in this order.
    let ((saturated, bright), shaped) = rayon::join(
        || rayon::join(|| saturated_lines(&sat, base, grid, s), || baseline_device_lines(base, grid, s)),
        || s.shape_only.map_or_else(Vec::new, |so| shape_only_lines(img, &sat, base, grid, s, &so)),
    );
    let mut segments = saturated;
    segments.extend(bright);
    segments.extend(shaped);
    let mut core = vec![false; grid.len()];
    let mut band = vec![false; grid.len()];
    if let Some(b) = base {
        for i in 0..core.len() {
            core[i] = sat[i] && b[i] >= s.metal_hu;
        }
    }
    let r_core = s.needle_radius_mm;
    let r_all = s.needle_radius_mm + s.margin_mm;
    let sp = grid.geometry.spacing.zyx();
    let edges = [0, 1, 2].map(|a| grid.geometry.axes[a] * sp[a]);
    let max_half = sp.iter().copied().fold(0.0, f64::max) / 2.0;
    for seg in &segments {
        let (lo, hi) = segment_box(seg, r_all + max_half, grid);
        for z in lo[0]..=hi[0] {
            for y in lo[1]..=hi[1] {
                for x in lo[2]..=hi[2] {
                    let i = grid.idx([z, y, x]);
                    let off = seg.offset(grid.geometry.voxel_to_lps([z, y, x]));
                    let d = off.norm();
                    // A voxel is touched by the metal when the metal reaches into its extent toward the
                    // axis: half its size along that direction (1.25 mm across 2.5 mm slices).
                    let half = off
                        .normalized()
                        .map_or(0.0, |u| edges.iter().map(|e| u.dot(*e).abs()).sum::<f64>() / 2.0);
                    if d <= r_core {
                        core[i] = true;
                    } else if d <= r_all + half {
                        band[i] = true;
                    }
                }
            }
        }
    }
    for i in 0..band.len() {
        band[i] &= !core[i];
    }
    Metal { core, band, segments }
}

/// Lines through the groups of saturated voxels: the needles, and wires where they saturate.
fn saturated_lines(sat: &[bool], base: Option<&[f32]>, grid: &Grid, s: &MetalSettings) -> Vec<Segment> {
    let mut segments = Vec::new();
    for pts in groups(sat, grid) {
        tracing::trace!(voxels = pts.len(), at = %pts[0], "saturated group");
        segments.extend(fit_lines(&pts, &[], base, grid, s, LineRule::Device));
    }
    segments
}

/// A thermocouple wire (0.9 mm) often does not saturate at partial volume, and how bright it reads depends
/// on where it falls between slices, which changes with every small motion. The baseline has no cement, so
/// there any thin straight line above cortex and bone-island density is a device; its place on the crop is
/// known from the registered baseline. None without a baseline.
fn baseline_device_lines(base: Option<&[f32]>, grid: &Grid, s: &MetalSettings) -> Vec<Segment> {
    let Some(b) = base else { return Vec::new() };
    let bright: Vec<bool> = b.iter().map(|&v| v >= BASELINE_DEVICE_HU).collect();
    let lower = MetalSettings { metal_hu: BASELINE_DEVICE_HU, ..*s };
    let mut segments = Vec::new();
    let mut loose = Vec::new();
    for pts in groups(&bright, grid) {
        let found = fit_lines(&pts, &[], None, grid, &lower, LineRule::Device);
        tracing::trace!(voxels = pts.len(), at = %pts[0], lines = found.len(), "bright baseline group");
        if found.is_empty() {
            loose.extend(pts);
        }
        segments.extend(found);
    }
    // Pieces too short for a line on their own may still line up.
    if loose.len() >= 4 {
        segments.extend(fit_lines(&loose, &[], None, grid, &lower, LineRule::Device));
    }
    segments
}

/// Without a baseline nothing tells an unsaturated wire from cement but its shape: a thin straight line of
/// dense voxels. Veins filled with cement are thicker or curved, blobs are neither. The pieces of one wire
/// (it dims where it falls between slices) are fitted together.
fn shape_only_lines(
    img: &[f32],
    sat: &[bool],
    base: Option<&[f32]>,
    grid: &Grid,
    s: &MetalSettings,
    so: &ShapeOnly,
) -> Vec<Segment> {
    // Cement that left the body through its wall is joined to the intravertebral cement by voxels of
    // cement density; a device lying near the body is not (cortex is below that density).
    let seedlike: Vec<bool> = (0..img.len()).map(|i| img[i] >= so.seed_hu && !sat[i]).collect();
    let mut attached = vec![false; img.len()];
    for comp in morph::components26(&seedlike, grid.shape) {
        if comp.iter().any(|&i| so.region[i]) {
            for i in comp {
                attached[i] = true;
            }
        }
    }
    let dense: Vec<bool> = (0..img.len()).map(|i| img[i] >= so.grow_hu && !sat[i] && !so.region[i]).collect();
    let mut pts = Vec::new();
    let mut weights = Vec::new();
    for comp in morph::components26(&dense, grid.shape) {
        if comp.iter().any(|&i| img[i] >= so.seed_hu) && !comp.iter().any(|&i| attached[i]) {
            for i in comp {
                pts.push(grid.lps(i));
                weights.push(img[i] - so.grow_hu);
            }
        }
    }
    let lower = MetalSettings { metal_hu: so.grow_hu, ..*s };
    let mut found = fit_lines(&pts, &weights, None, grid, &lower, LineRule::ShapeOnly);
    // With a baseline a device was already there (at whatever density its partial volume gave it); a thin
    // straight line that is new is cement in a vein.
    if let Some(b) = base {
        found.retain(|seg| on_baseline(seg, b, grid, so.grow_hu));
    }
    tracing::trace!(voxels = pts.len(), lines = found.len(), "shape-only lines");
    found
}

/// Whether most of the segment was at least `level` on the baseline (`base`: the largest baseline value
/// each crop voxel was interpolated from), looking one voxel around each 1 mm step for registration error.
fn on_baseline(seg: &Segment, base: &[f32], grid: &Grid, level: f32) -> bool {
    let len = seg.a.distance(seg.b);
    let steps = len.ceil().max(1.0) as usize;
    let (mut hit, mut n) = (0usize, 0usize);
    for k in 0..=steps {
        let p = seg.a + (seg.b - seg.a) * (k as f64 / steps as f64);
        let Some(c) = grid.geometry.lps_to_voxel(p, grid.shape) else { continue };
        n += 1;
        let dense = morph::neighbours26()
            .chain(std::iter::once([0, 0, 0]))
            .filter_map(|d| morph::offset(grid.shape, c, d))
            .any(|j| base[j] >= level);
        hit += dense as usize;
    }
    tracing::trace!(hit, n, "shape-only line on the baseline");
    n > 0 && hit * 2 >= n
}

/// Positions of the `mask` voxels, grouped by 26-connectivity after a one-voxel dilation: a thin oblique
/// wire at partial volume is a chain of short pieces, one per slice, that only touch diagonally or not at
/// all. Groups of fewer than 4 voxels are dropped.
fn groups(mask: &[bool], grid: &Grid) -> Vec<Vec<Lps>> {
    let joined = morph::dilate(mask, grid.shape, [1, 1, 1]);
    morph::components26(&joined, grid.shape)
        .into_iter()
        .map(|comp| comp.into_iter().filter(|&i| mask[i]).map(|i| grid.lps(i)).collect::<Vec<Lps>>())
        .filter(|pts| pts.len() >= 4)
        .collect()
}

/// Crop-index box around a segment grown by `r` mm.
fn segment_box(seg: &Segment, r: f64, grid: &Grid) -> ([usize; 3], [usize; 3]) {
    let ua = grid.geometry.lps_to_index(seg.a);
    let ub = grid.geometry.lps_to_index(seg.b);
    let sp = grid.geometry.spacing.zyx();
    let mut lo = [0usize; 3];
    let mut hi = [0usize; 3];
    for a in 0..3 {
        let m = r / sp[a] + 1.0;
        let l = (ua[a].min(ub[a]) - m).floor().max(0.0);
        let h = (ua[a].max(ub[a]) + m).ceil().min((grid.shape[a] - 1) as f64).max(l);
        lo[a] = l as usize;
        hi[a] = h as usize;
    }
    (lo, hi)
}

struct Line {
    c: Lps,
    dir: Vec3,
}

impl Line {
    fn radial(&self, p: Lps) -> (f64, f64) {
        let d = p - self.c;
        let t = d.dot(self.dir);
        ((d - self.dir * t).norm(), t)
    }
}

/// Up to four lines (eight by shape alone) through the points; `weights` (empty, or one per point) weigh
/// the spread around a shape-only line.
fn fit_lines(
    all: &[Lps],
    weights: &[f32],
    base: Option<&[f32]>,
    grid: &Grid,
    s: &MetalSettings,
    rule: LineRule,
) -> Vec<Segment> {
    let r_in = s.needle_radius_mm + s.margin_mm;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed_3e7a1);
    let mut remaining: Vec<Lps> = all.to_vec();
    let mut out = Vec::new();
    let tries = if rule == LineRule::ShapeOnly { 8 } else { 4 };
    for _ in 0..tries {
        if remaining.len() < 4 {
            break;
        }
        // Score on at most 3000 points so a large saturated cement mass stays cheap.
        let stride = (all.len() / 3000).max(1);
        let score = |line: &Line| -> i64 {
            let mut sc = 0i64;
            for p in all.iter().step_by(stride) {
                let (r, _) = line.radial(*p);
                if r <= r_in {
                    sc += 1;
                } else if r <= r_in + RING_MM {
                    sc -= 1;
                }
            }
            sc
        };
        // The hypotheses drawn in order (the same random sequence), scored in parallel, the first best kept.
        let lines: Vec<Line> = (0..300)
            .filter_map(|_| {
                let i = rng.random_range(0..remaining.len());
                let j = rng.random_range(0..remaining.len());
                let dir = (remaining[j] - remaining[i]).normalized()?;
                if remaining[i].distance(remaining[j]) < 3.0 {
                    return None;
                }
                Some(Line { c: remaining[i], dir })
            })
            .collect();
        let scores: Vec<i64> = lines.par_iter().map(score).collect();
        let mut best: Option<(i64, Line)> = None;
        for (sc, line) in scores.into_iter().zip(lines) {
            if best.as_ref().is_none_or(|b| sc > b.0) {
                best = Some((sc, line));
            }
        }
        let Some((_, line)) = best else { break };
        let Some(line) = refine(&remaining, line, r_in) else { break };
        let Some(seg) = thin_run(all, weights, &line, r_in, base, grid, s, rule) else {
            if rule == LineRule::ShapeOnly {
                // Not a wire: look for one among the other points.
                remaining.retain(|p| line.radial(*p).0 > r_in);
                continue;
            }
            break;
        };
        out.push(seg);
        remaining.retain(|p| seg.distance(*p) > r_in);
    }
    out
}

/// Least-squares line (PCA) through the points within `r_in` of `line`.
fn refine(pts: &[Lps], line: Line, r_in: f64) -> Option<Line> {
    let mut cur = line;
    for _ in 0..3 {
        let inl: Vec<Lps> = pts.iter().copied().filter(|p| cur.radial(*p).0 <= r_in).collect();
        if inl.len() < 3 {
            return None;
        }
        let n = inl.len() as f64;
        let mut c = [0.0; 3];
        for p in &inl {
            for a in 0..3 {
                c[a] += p.0[a] / n;
            }
        }
        let mut cov = [[0.0; 3]; 3];
        for p in &inl {
            let d = [p.0[0] - c[0], p.0[1] - c[1], p.0[2] - c[2]];
            for i in 0..3 {
                for j in 0..3 {
                    cov[i][j] += d[i] * d[j];
                }
            }
        }
        // Power iteration from the current direction: the principal axis.
        let mut v = cur.dir;
        for _ in 0..30 {
            let w = Vec3(cov.map(|row| row[0] * v.0[0] + row[1] * v.0[1] + row[2] * v.0[2]));
            v = w.normalized()?;
        }
        cur = Line { c: Lps(c), dir: v };
    }
    Some(cur)
}

/// Whether the points within `r_in` of the line between `t` (along it) spread no more across the axis
/// than an object `WIRE_ACROSS_MM` across sampled on this grid. The spread is measured across the line
/// within the slice plane, where the scanner resolves best (a wire lying in-plane otherwise looks as thick
/// as a slice): weighted variance at most `r^2 / 4` (a filled disc of radius `r`, along one direction) plus
/// the pixel's own extent (`s^2 / 12`). A line running through the slices uses both in-plane directions.
fn thin_enough(all: &[Lps], weights: &[f32], line: &Line, r_in: f64, t: (f64, f64), grid: &Grid) -> bool {
    let normal = grid.geometry.axes[0];
    let across_plane = line.dir.cross(normal);
    // Unit vector across the line in the slice plane, or None when the line runs through the slices.
    let e = (across_plane.norm() > 0.5).then(|| across_plane.normalized()).flatten();
    let (mut sum, mut n) = (0.0, 0.0);
    for (k, p) in all.iter().enumerate() {
        let (r, tp) = line.radial(*p);
        if r <= r_in && (t.0..=t.1).contains(&tp) {
            let w = weights.get(k).map_or(1.0, |&w| w.max(0.0) as f64);
            let d = *p - line.c;
            let off = d - line.dir * d.dot(line.dir);
            let v = match e {
                Some(e) => off.dot(e).powi(2),
                None => (off - normal * off.dot(normal)).dot(off - normal * off.dot(normal)) / 2.0,
            };
            sum += w * v;
            n += w;
        }
    }
    if n <= 0.0 {
        return false;
    }
    let pixel = grid.geometry.spacing.row.max(grid.geometry.spacing.column);
    let r = WIRE_ACROSS_MM / 2.0;
    let limit = r * r / 4.0 + pixel * pixel / 12.0;
    let var = sum / n;
    tracing::trace!(
        sd = var.sqrt(),
        limit = limit.sqrt(),
        in_plane = e.is_some(),
        length = t.1 - t.0,
        at = %(line.c + line.dir * (0.5 * (t.0 + t.1))),
        "shape-only line"
    );
    var <= limit
}

/// The part of the line that is a thin saturated cylinder, followed on into masses where allowed.
#[allow(clippy::too_many_arguments)]
fn thin_run(
    all: &[Lps],
    weights: &[f32],
    line: &Line,
    r_in: f64,
    base: Option<&[f32]>,
    grid: &Grid,
    s: &MetalSettings,
    rule: LineRule,
) -> Option<Segment> {
    let sp = grid.geometry.spacing.zyx();
    let w = sp.iter().copied().fold(1.0, f64::max);
    let mut tmin = f64::INFINITY;
    let mut tmax = f64::NEG_INFINITY;
    for p in all {
        let (r, t) = line.radial(*p);
        if r <= r_in {
            tmin = tmin.min(t);
            tmax = tmax.max(t);
        }
    }
    if tmax.partial_cmp(&tmin) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    let nb = ((tmax - tmin) / w).floor() as usize + 1;
    let mut cyl = vec![0u32; nb];
    let mut ring = vec![0u32; nb];
    for p in all {
        let (r, t) = line.radial(*p);
        if t < tmin || t > tmax {
            continue;
        }
        let b = (((t - tmin) / w) as usize).min(nb - 1);
        if r <= r_in {
            cyl[b] += 1;
        } else if r <= r_in + RING_MM {
            ring[b] += 1;
        }
    }
    let thin: Vec<bool> = (0..nb).map(|b| cyl[b] > 0 && ring[b] * 2 <= cyl[b]).collect();
    // Longest run of thin bins, bridging short empty stretches (a wire dimmed where it falls between
    // slices); a thick bin (a mass) ends the run.
    let max_gap = (MAX_GAP_MM / w).floor() as usize;
    let (mut best, mut start, mut last) = ((0usize, 0usize), None::<usize>, 0usize);
    for b in 0..=nb {
        let end_run = b == nb || (cyl[b] > 0 && !thin[b]) || (cyl[b] == 0 && b - last > max_gap);
        if end_run {
            if let Some(st) = start {
                if last + 1 - st > best.1 - best.0 {
                    best = (st, last + 1);
                }
            }
            start = None;
            continue;
        }
        if thin[b] {
            start.get_or_insert(b);
            last = b;
        }
    }
    let (mut lo, mut hi) = best;
    if ((hi - lo) as f64) * w < s.min_line_length_mm {
        return None;
    }
    if rule == LineRule::ShapeOnly {
        let (t0, t1) = (tmin + lo as f64 * w, tmin + hi as f64 * w);
        return thin_enough(all, weights, line, r_in, (t0, t1), grid)
            .then(|| Segment { a: line.c + line.dir * t0, b: line.c + line.dir * t1.min(tmax) });
    }
    let was_metal = |b: usize| -> bool {
        let Some(bv) = base else { return true };
        let p = line.c + line.dir * (tmin + (b as f64 + 0.5) * w);
        match grid.geometry.lps_to_voxel(p, grid.shape) {
            Some(v) => {
                let x = bv[grid.idx(v)];
                x.is_nan() || x >= s.metal_hu * 0.5
            }
            None => false,
        }
    };
    while lo > 0 && cyl[lo - 1] > 0 && was_metal(lo - 1) {
        lo -= 1;
    }
    while hi < nb && cyl[hi] > 0 && was_metal(hi) {
        hi += 1;
    }
    let t0 = tmin + lo as f64 * w;
    let t1 = (tmin + hi as f64 * w).min(tmax);
    Some(Segment { a: line.c + line.dir * t0, b: line.c + line.dir * t1 })
}
