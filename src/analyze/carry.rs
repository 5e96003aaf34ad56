//! Anatomy segmented on the baseline, carried onto the scan's grid through a rigid map.
//!
//! Why: the baseline has the needle in place and no cement, so its vertebral body cannot swallow a leak and
//! its canal is not made to look like bone by cement. Every label and every point of the anatomy is moved
//! with the patient (the cement stage's baseline registration), so sites and the wall distance are judged
//! where the anatomy is on the scan.

use crate::anatomy::morphology::fill_holes;
use crate::anatomy::{Anatomy, Endplates, Plane, PosteriorWall};
use crate::cement::RigidTransform;
use crate::volume::{labels, Geometry, IndexBox, LabelVolume, Lps, Vec3, Volume};
use ndarray::{s, Axis, Zip};
use rayon::prelude::*;

/// `base` (on the baseline's grid) on the scan grid (`geometry`, `shape`). `scan_to_base` maps a scan LPS
/// point to the same anatomy in the baseline (the direction of the cement stage's registrations).
/// Labels are taken nearest-neighbour; points and directions are moved by the inverse map.
pub fn carry(
    base: &Anatomy,
    geometry: Geometry,
    shape: [usize; 3],
    scan_to_base: &RigidTransform,
) -> Anatomy {
    let to_scan = scan_to_base.inverse();
    let point = |p: Lps| to_scan.apply(p);
    let origin = to_scan.apply(Lps([0.0; 3]));
    let dir = |v: Vec3| to_scan.apply(Lps(v.0)) - origin;
    let plane = |p: &Plane| Plane { point: point(p.point), normal: dir(p.normal) };
    // Field by field rather than `base.clone()` and overwrite: the label volume is the size of the scan.
    Anatomy {
        labels: carry_labels(&base.labels, geometry, shape, scan_to_base),
        body_centroid: point(base.body_centroid),
        body_volume_ml: base.body_volume_ml,
        posterior_wall: PosteriorWall {
            points: base.posterior_wall.points.iter().map(|p| point(*p)).collect(),
            normal: dir(base.posterior_wall.normal),
            point: point(base.posterior_wall.point),
            ..base.posterior_wall
        },
        posterior_wall_intact: base.posterior_wall_intact,
        endplates: Endplates {
            superior: plane(&base.endplates.superior),
            inferior: plane(&base.endplates.inferior),
            ..base.endplates
        },
        level: base.level.clone(),
        target_source: base.target_source,
        needle_tip: base.needle_tip.map(point),
        spine_axis: dir(base.spine_axis),
        timings: base.timings.clone(),
        warnings: base.warnings.clone(),
    }
}

/// Nearest-neighbour resampling of a label map, restricted to the scan voxels that can map into the
/// labelled box (the rest of a scan is background: a few hundred thousand voxels instead of millions).
pub fn carry_labels(
    src: &LabelVolume,
    geometry: Geometry,
    shape: [usize; 3],
    scan_to_base: &RigidTransform,
) -> LabelVolume {
    // The usual case: baseline and scan on one grid, no motion. Then every voxel maps onto itself.
    // Scan-sized: huge-page backed, and the copy made in parallel (`volume::huge`). Zero is background.
    let mut out: LabelVolume = Volume::new(crate::volume::huge::zeroed(shape), geometry);
    if *scan_to_base == RigidTransform::identity() && src.geometry == geometry && src.shape() == shape {
        Zip::from(&mut out.data).and(&src.data).par_for_each(|o, &l| *o = l);
        return out;
    }
    let Some((lo, hi)) = labelled_box(src) else { return out };
    // The box's corners on the scan grid, grown by a voxel for rounding.
    let to_scan = scan_to_base.inverse();
    let (mut slo, mut shi) = ([f64::MAX; 3], [f64::MIN; 3]);
    for k in 0..8 {
        let c = [0, 1, 2].map(|a| if k >> a & 1 == 1 { hi[a] as f64 + 0.5 } else { lo[a] as f64 - 0.5 });
        let idx = geometry.lps_to_index(to_scan.apply(src.geometry.index_to_lps(c)));
        for a in 0..3 {
            slo[a] = slo[a].min(idx[a]);
            shi[a] = shi[a].max(idx[a]);
        }
    }
    if slo.iter().chain(&shi).any(|v| !v.is_finite()) {
        return out;
    }
    let range = |a: usize| {
        let l = (slo[a].floor() - 1.0).max(0.0) as usize;
        let h = ((shi[a].ceil() + 1.0).max(-1.0) as i64 + 1).clamp(0, shape[a] as i64) as usize;
        l.min(h)..h
    };
    let (rz, ry, rx) = (range(0), range(1), range(2));
    let src_shape = src.shape();
    out.data.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(z, mut plane)| {
        if !rz.contains(&z) {
            return;
        }
        for y in ry.clone() {
            for x in rx.clone() {
                let p = scan_to_base.apply(geometry.voxel_to_lps([z, y, x]));
                if let Some(v) = src.geometry.lps_to_voxel(p, src_shape) {
                    plane[[y, x]] = src.data[v];
                }
            }
        }
    });
    out
}

/// Labels the vertebral body encloses within a slice (lesion cavities, marrow darker than the body's edge
/// threshold on a baseline without cement) become body: the body is a solid, and the canal or a disc is never
/// surrounded by the body alone within one plane. Returns how many voxels changed.
pub fn fill_body_holes(labels: &mut LabelVolume) -> usize {
    let Some(body_box) = labels.bounding_box(|l| *l == labels::VERTEBRAL_BODY) else { return 0 };
    let (lo, hi) = body_box;
    let mut changed = 0;
    for z in lo[0]..=hi[0] {
        let mut plane = labels.data.slice_mut(s![z, lo[1]..=hi[1], lo[2]..=hi[2]]);
        let body = plane.mapv(|l| l == labels::VERTEBRAL_BODY);
        let filled = fill_holes(&body);
        Zip::from(&mut plane).and(&body).and(&filled).for_each(|l, &was, &now| {
            if now && !was {
                *l = labels::VERTEBRAL_BODY;
                changed += 1;
            }
        });
    }
    changed
}

/// The body label's holes ([`fill_body_holes`]) and thin gaps along the spine axis ([`fill_body_gaps`])
/// taken as body, as every anatomy `locate` uses gets them. Returns how many voxels each changed.
pub fn fill_body(labels: &mut LabelVolume, spine_axis: Vec3) -> (usize, usize) {
    let filled = fill_body_holes(labels);
    (filled, fill_body_gaps(labels, spine_axis))
}

/// Longest unlabelled run along the spine axis, between body above and body below, taken as body by
/// [`fill_body_gaps`]: a needle (8-13 G, 2.4-4.2 mm across) or one dark slice of marrow, never a disc (discs
/// are labelled and lie between two vertebrae, not inside one body label).
pub const BODY_GAP_MM: f64 = 4.0;

/// Unlabelled voxels with the vertebral body both above and below them along `axis` (the spine), the
/// unlabelled run no longer than [`BODY_GAP_MM`], become body. The baseline's body leaves out the needle
/// that lies in it (metal is not marrow) and, on thick slices, a slice whose marrow reads darker than the
/// body's edge threshold; where the needle runs within a slice, or the notch opens to the body's front, the
/// hole is open within its plane and [`fill_body_holes`] cannot close it, so cement filling it after the
/// injection was reported as a leak (hybrid L2 on the 3 mm trunk CT: 0.01-0.05 mL "paraspinal" leaks on
/// the needle's track in three scans; hybrid L1: a notch across the front of one slice). Returns how many
/// voxels changed.
pub fn fill_body_gaps(labels: &mut LabelVolume, axis: Vec3) -> usize {
    let Some(axis) = axis.normalized() else { return 0 };
    let Some((lo, hi)) = labels.bounding_box(|l| *l == labels::VERTEBRAL_BODY) else { return 0 };
    let g = labels.geometry;
    let sp = g.spacing.zyx();
    // One voxel along the axis: stepping by it visits each voxel of a straight line through the grid.
    let step: f64 = (0..3).map(|a| g.axes[a].dot(axis).abs() * sp[a]).sum::<f64>().max(0.1);
    let src = &*labels;
    // Distance to the body along `dir`, over unlabelled voxels only, within the gap limit.
    let body_within = |p: Lps, dir: f64| -> Option<f64> {
        let mut d = step;
        while d <= BODY_GAP_MM + step + 1e-9 {
            match src.at_lps(p + axis * (dir * d)) {
                Some(&labels::VERTEBRAL_BODY) => return Some(d),
                Some(&labels::BACKGROUND) => d += step,
                _ => return None,
            }
        }
        None
    };
    let mut fill = Vec::new();
    for z in lo[0]..=hi[0] {
        for y in lo[1]..=hi[1] {
            for x in lo[2]..=hi[2] {
                if src.data[[z, y, x]] != labels::BACKGROUND {
                    continue;
                }
                let p = g.voxel_to_lps([z, y, x]);
                if let (Some(up), Some(down)) = (body_within(p, 1.0), body_within(p, -1.0)) {
                    if up + down - step <= BODY_GAP_MM + 1e-9 {
                        fill.push([z, y, x]);
                    }
                }
            }
        }
    }
    for v in &fill {
        labels.data[*v] = labels::VERTEBRAL_BODY;
    }
    fill.len()
}

/// Inclusive index box of the non-background labels.
fn labelled_box(v: &LabelVolume) -> Option<IndexBox> {
    v.bounding_box(|l| *l != labels::BACKGROUND)
}

/// Largest displacement (mm) the map gives any corner of the labelled box: whether carrying is needed.
pub fn largest_motion_mm(src: &LabelVolume, t: &RigidTransform) -> f64 {
    let Some((lo, hi)) = labelled_box(src) else { return 0.0 };
    (0..8)
        .map(|k| {
            let c = [0, 1, 2].map(|a| if k >> a & 1 == 1 { hi[a] as f64 } else { lo[a] as f64 });
            t.displacement_at(src.geometry.index_to_lps(c))
        })
        .fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::Spacing;
    use ndarray::Array3;

    /// `slices` slices of 12 x 12 voxels of 1 mm, body in rows and columns 2..10 of the slices `body`.
    fn body_block(slices: usize, body: std::ops::Range<usize>) -> LabelVolume {
        let g = Geometry::axial_hfs(Lps([0.0; 3]), Spacing { slice: 1.0, row: 1.0, column: 1.0 });
        let mut v: LabelVolume = Volume::new(Array3::zeros((slices, 12, 12)), g);
        v.data.slice_mut(s![body, 2..10, 2..10]).fill(labels::VERTEBRAL_BODY);
        v
    }

    #[test]
    fn enclosed_cavity_becomes_body_open_notch_does_not() {
        let mut v = body_block(2, 0..2);
        // Slice 0: a closed cavity labelled canal; slice 1: a notch open to the outside.
        v.data[[0, 5, 5]] = labels::CANAL;
        v.data[[0, 5, 6]] = 0;
        for y in 5..7 {
            for x in 5..10 {
                v.data[[1, y, x]] = 0;
            }
        }
        assert_eq!(fill_body_holes(&mut v), 2);
        assert_eq!(v.data[[0, 5, 5]], labels::VERTEBRAL_BODY);
        assert_eq!(v.data[[1, 5, 6]], 0);
    }

    #[test]
    fn thin_gap_along_the_spine_becomes_body_thick_one_and_labels_do_not() {
        // Slices 1 mm apart along LPS z (the spine axis here).
        let mut v = body_block(20, 2..18);
        let g = v.geometry;
        // A needle-like hole 3 slices high, open to the side in its slices (x 5..12).
        for z in 5..8 {
            for y in 5..7 {
                for x in 5..12 {
                    v.data[[z, y, x]] = 0;
                }
            }
        }
        // A 6-slice notch (too thick) and a disc-labelled slab (never body).
        for z in 10..16 {
            v.data[[z, 3, 3]] = 0;
        }
        v.data[[12, 8, 8]] = labels::DISC;
        let n = fill_body_gaps(&mut v, g.axes[0]);
        assert_eq!(n, 3 * 2 * 5, "the hole inside the body's box, not beyond it");
        assert_eq!(v.data[[6, 5, 8]], labels::VERTEBRAL_BODY);
        assert_eq!(v.data[[6, 5, 10]], 0, "outside the body's box");
        assert_eq!(v.data[[12, 3, 3]], 0, "a gap longer than BODY_GAP_MM stays");
        assert_eq!(v.data[[12, 8, 8]], labels::DISC);
    }

    #[test]
    fn labels_move_with_the_patient() {
        let g = Geometry::axial_hfs(Lps([0.0; 3]), Spacing { slice: 1.0, row: 1.0, column: 1.0 });
        let mut src: LabelVolume = Volume::new(Array3::zeros((10, 20, 20)), g);
        src.data[[5, 5, 5]] = labels::VERTEBRAL_BODY;
        // The patient moved 3 mm toward +x (LPS left) between baseline and scan: a scan point maps to the
        // baseline 3 mm to the right.
        let t = RigidTransform::about(Lps([0.0; 3]), [0.0; 3], Vec3([-3.0, 0.0, 0.0]));
        let out = carry_labels(&src, g, [10, 20, 20], &t);
        assert_eq!(out.data[[5, 5, 8]], labels::VERTEBRAL_BODY);
        assert_eq!(out.data.iter().filter(|l| **l != 0).count(), 1);
        assert!((largest_motion_mm(&src, &t) - 3.0).abs() < 1e-9);
        // No motion on the same grid is a copy; on another grid it is still a resampling.
        let same = carry_labels(&src, g, [10, 20, 20], &RigidTransform::identity());
        assert_eq!(same.data, src.data);
        let g2 = Geometry::axial_hfs(Lps([0.0; 3]), Spacing { slice: 2.0, row: 1.0, column: 1.0 });
        let mut src4 = src.clone();
        src4.data[[4, 5, 5]] = labels::VERTEBRAL_BODY;
        let coarse = carry_labels(&src4, g2, [5, 20, 20], &RigidTransform::identity());
        assert_eq!(coarse.data[[2, 5, 5]], labels::VERTEBRAL_BODY);
        assert_eq!(coarse.data.iter().filter(|l| **l != 0).count(), 1);
    }
}
