//! Patient position requirement: the same anatomy stored as supine (HFS), prone (HFP) and decubitus
//! (HFDL, HFDR) acquisitions gives the same LPS positions for the same voxels of anatomy, and the
//! posterior/superior/left helpers agree.
//!
//! The real `totalseg-t12` series (HFS) is rewritten as the scanner would have stored the same patient in each
//! position: pixel arrays rotated in-plane (HFP 180 degrees, decubitus 90 degrees), ImageOrientationPatient
//! from `PatientPosition::axial_axes()`, each slice's ImagePositionPatient chosen so that every voxel of
//! anatomy keeps its LPS coordinates. The rewritten series are written with our DICOM writer and read back,
//! once with an independent reader (dicom-object directly) and once with `load_scan`.

mod common;
#[path = "dicom_write_support/mod.rs"]
mod support;

use cementleak::load::nifti::load_nifti;
use cementleak::load::{load_scan, LoadOptions};
use cementleak::volume::{CtVolume, Direction, Geometry, Lps, PatientPosition, Spacing, Vec3, Volume};
use cementleak::write::dicom::{write_ct_series, CtSeriesMeta};
use ndarray::Array3;
use std::path::Path;

const POSITIONS: [PatientPosition; 4] =
    [PatientPosition::Hfs, PatientPosition::Hfp, PatientPosition::Hfdl, PatientPosition::Hfdr];

/// What the scanner stores for the patient of `orig` (an HFS series) lying in `position`: the in-plane array
/// rotated so that rows/columns follow `position.axial_axes()`, and the origin at the LPS point of the
/// original voxel that lands at the new index [0, 0, 0].
fn as_acquired_in(orig: &CtVolume, position: PatientPosition) -> CtVolume {
    let new_axes = position.axial_axes();
    let g = &orig.geometry;
    let shape = orig.shape();
    // For each new array axis: which original axis it runs along, and in which direction.
    let map: [(usize, bool); 3] = std::array::from_fn(|n| {
        (0..3)
            .find_map(|m| {
                let d = new_axes[n].dot(g.axes[m]);
                (d.abs() > 0.99).then_some((m, d > 0.0))
            })
            .expect("axis-aligned")
    });
    let new_shape: [usize; 3] = std::array::from_fn(|n| shape[map[n].0]);
    let orig_index = |new: [usize; 3]| {
        let mut o = [0usize; 3];
        for n in 0..3 {
            let (m, same) = map[n];
            o[m] = if same { new[n] } else { shape[m] - 1 - new[n] };
        }
        o
    };
    let data = Array3::from_shape_fn(new_shape, |(k, r, c)| orig.data[orig_index([k, r, c])]);
    let s = g.spacing.zyx();
    let geometry = Geometry {
        origin: g.voxel_to_lps(orig_index([0, 0, 0])),
        spacing: Spacing::from_zyx(std::array::from_fn(|n| s[map[n].0])),
        axes: new_axes,
    };
    Volume::new(data, geometry)
}

/// LPS centroid of the voxels of `vol` selected by `keep`.
fn centroid(vol: &CtVolume, keep: impl Fn([usize; 3], i16) -> bool) -> (Lps, usize) {
    let (mut sum, mut n) = (Vec3::ZERO, 0usize);
    for ((k, r, c), &v) in vol.data.indexed_iter() {
        if keep([k, r, c], v) {
            sum = sum + Vec3(vol.geometry.voxel_to_lps([k, r, c]).0);
            n += 1;
        }
    }
    (Lps((sum * (1.0 / n.max(1) as f64)).0), n)
}

fn slice_nearest_z(vol: &CtVolume, z: f64) -> usize {
    let shape = vol.shape();
    (0..shape[0])
        .min_by(|&a, &b| {
            let za = vol.geometry.voxel_to_lps([a, 0, 0]).z();
            let zb = vol.geometry.voxel_to_lps([b, 0, 0]).z();
            (za - z).abs().total_cmp(&(zb - z).abs())
        })
        .expect("slices")
}

/// Every check of the requirement, for volumes read back by `read`.
fn check_positions(read: &dyn Fn(&Path) -> CtVolume, reader_name: &str) {
    let Some(dicom_dir) = common::shared_data("real/totalseg-t12/dicom") else { return };
    let Some(seg_path) = common::shared_data("real/totalseg-t12/segmentation.nii.gz") else { return };
    let orig = read(&dicom_dir);
    assert_eq!(orig.shape(), [20, 512, 512]);
    for a in 0..3 {
        assert!(
            (orig.geometry.axes[a] - PatientPosition::Hfs.axial_axes()[a]).norm() < 1e-9,
            "input is axial HFS"
        );
    }

    let work = tempfile::tempdir().expect("tempdir");
    let mut loaded: Vec<(PatientPosition, CtVolume)> = Vec::new();
    for position in POSITIONS {
        let acquired = as_acquired_in(&orig, position);
        let mut meta = CtSeriesMeta::synthetic(&format!("positions/{position}"), position);
        meta.slice_thickness_mm = orig.geometry.spacing.slice;
        let dir = work.path().join(position.dicom_code());
        write_ct_series(&acquired, &meta, &dir).expect("write rotated series");
        let back = read(&dir);
        // The stored arrays really differ (rotated), except for HFS.
        let same_array = back.data == orig.data;
        assert_eq!(same_array, position == PatientPosition::Hfs, "{position}: array should be rotated");
        loaded.push((position, back));
    }

    // 1. Landmarks: bright voxels and a spread of others keep their LPS position and HU.
    // The 200 brightest voxels (dense cortical bone), then a regular spread over three slices.
    let mut bright: Vec<(i16, [usize; 3])> =
        orig.data.indexed_iter().filter(|(_, &v)| v >= 1000).map(|(i, &v)| (v, [i.0, i.1, i.2])).collect();
    assert!(bright.len() >= 20, "bright voxels present: {}", bright.len());
    bright.sort_by_key(|b| std::cmp::Reverse(b.0));
    let mut landmarks: Vec<[usize; 3]> = bright.iter().take(200).map(|b| b.1).collect();
    for k in [0, 7, 19] {
        for r in (0..512).step_by(37) {
            for c in (0..512).step_by(41) {
                landmarks.push([k, r, c]);
            }
        }
    }
    for (position, vol) in &loaded {
        for &idx in &landmarks {
            let p = orig.geometry.voxel_to_lps(idx);
            let v = vol
                .geometry
                .lps_to_voxel(p, vol.shape())
                .unwrap_or_else(|| panic!("{position}: {p} outside"));
            let d = vol.geometry.voxel_to_lps(v).distance(p);
            assert!(d < 1e-3, "{reader_name} {position}: voxel {idx:?} at {p} found {d} mm away");
            assert_eq!(vol.data[v], orig.data[idx], "{reader_name} {position}: HU at {p}");
        }
    }

    // 2. Centroid of bone (> 300 HU) on the middle slice, computed in each acquisition's own array.
    let z_mid = orig.geometry.voxel_to_lps([10, 0, 0]).z();
    let (c_ref, n_ref) = centroid(&orig, |[k, _, _], v| k == 10 && v > 300);
    assert!(n_ref > 500, "bone on the middle slice: {n_ref} voxels");
    for (position, vol) in &loaded {
        let k_mid = slice_nearest_z(vol, z_mid);
        let (c, n) = centroid(vol, |[k, _, _], v| k == k_mid && v > 300);
        assert_eq!(n, n_ref, "{reader_name} {position}: bone voxel count");
        assert!(c.distance(c_ref) < 1e-3, "{reader_name} {position}: bone centroid {c} vs {c_ref}");
    }

    // 3. The segmentation (NIfTI, LAS) sits on the DICOM grid: (i, j, k) = (column, 511 - row, slice).
    let seg = load_nifti(&seg_path).expect("segmentation").volume;
    assert_eq!(seg.shape(), orig.shape());
    for (k, j, i) in [(0, 0, 0), (19, 511, 511), (7, 100, 300), (12, 400, 20)] {
        let d = seg.geometry.voxel_to_lps([k, j, i]).distance(orig.geometry.voxel_to_lps([k, 511 - j, i]));
        assert!(
            d < 1e-3,
            "seg voxel ({i},{j},{k}) is {d} mm from DICOM (column {i}, row {}, slice {k})",
            511 - j
        );
    }
    // Cord (79) and T12 (32) centroids from the NIfTI, and the HU the DICOM has there, in every position.
    let (cord, n_cord) = centroid(&seg, |_, v| v == 79);
    let (t12, n_t12) = centroid(&seg, |_, v| v == 32);
    assert!(n_cord > 100 && n_t12 > 1000, "labels present: cord {n_cord}, T12 {n_t12}");
    let mean_hu_of_label = |vol: &CtVolume, label: i16| {
        let (mut sum, mut n) = (0.0f64, 0usize);
        for ((k, j, i), &l) in seg.data.indexed_iter() {
            if l == label {
                let p = seg.geometry.voxel_to_lps([k, j, i]);
                let v = vol.geometry.lps_to_voxel(p, vol.shape()).expect("inside");
                assert!(vol.geometry.voxel_to_lps(v).distance(p) < 1e-3, "label voxel off the DICOM grid");
                sum += vol.data[v] as f64;
                n += 1;
            }
        }
        sum / n as f64
    };
    let (cord_hu, t12_hu) = (mean_hu_of_label(&orig, 79), mean_hu_of_label(&orig, 32));
    println!(
        "{reader_name}: cord centroid {cord} mean HU {cord_hu:.1}; T12 centroid {t12} mean HU {t12_hu:.1}"
    );
    // The label structure matches the HU structure: cord is soft tissue, the vertebra is bone, and the cord
    // lies posterior to the vertebra's centroid (the canal is behind the body).
    assert!((-50.0..120.0).contains(&cord_hu), "cord mean HU {cord_hu}");
    assert!(t12_hu > 150.0, "T12 mean HU {t12_hu}");
    assert!(cord.y() > t12.y(), "cord {cord} should be posterior (+y) of T12 {t12}");
    // Negative control: the same labels read without the row flip (j taken as the DICOM row) miss the bone.
    let (mut wrong_sum, mut wrong_n) = (0.0f64, 0usize);
    for ((k, j, i), &l) in seg.data.indexed_iter() {
        if l == 32 {
            wrong_sum += orig.data[[k, j, i]] as f64;
            wrong_n += 1;
        }
    }
    let wrong_hu = wrong_sum / wrong_n as f64;
    println!("{reader_name}: T12 labels without the LAS row flip would cover mean HU {wrong_hu:.1}");
    assert!(t12_hu > wrong_hu + 100.0, "flipped labels would give {wrong_hu} HU, correct {t12_hu}");
    for (position, vol) in &loaded {
        assert_eq!(mean_hu_of_label(vol, 79), cord_hu, "{reader_name} {position}: cord HU");
        assert_eq!(mean_hu_of_label(vol, 32), t12_hu, "{reader_name} {position}: T12 HU");
        let v = vol.geometry.lps_to_voxel(cord, vol.shape()).expect("cord inside");
        let o = orig.geometry.lps_to_voxel(cord, orig.shape()).expect("cord inside");
        assert!(vol.geometry.voxel_to_lps(v).distance(orig.geometry.voxel_to_lps(o)) < 1e-3);
        assert_eq!(vol.data[v], orig.data[o]);
    }

    // 4. Direction helpers: different array axes per position, the same LPS step.
    for dir in [Direction::Posterior, Direction::Superior, Direction::Left] {
        let mut axes_used = Vec::new();
        for (position, vol) in &loaded {
            let at = vol.geometry.axis_toward(dir);
            let step = vol.geometry.axes[at.axis] * f64::from(at.sign);
            assert!((step - dir.unit()).norm() < 1e-6, "{reader_name} {position} {dir:?}: step {:?}", step.0);
            let mm = vol.geometry.mm_per_index_toward(dir)[at.axis] * f64::from(at.sign);
            assert!(
                (mm - orig.geometry.mm_per_index_toward(dir).iter().map(|v| v.abs()).fold(0.0, f64::max))
                    .abs()
                    < 1e-6
            );
            axes_used.push((at.axis, at.sign));
        }
        if dir != Direction::Superior {
            // Supine and decubitus store posterior/left along different array axes: the helper is what
            // makes them agree.
            axes_used.sort();
            axes_used.dedup();
            assert!(axes_used.len() >= 3, "{dir:?}: {axes_used:?}");
        }
    }
}

#[test]
fn positions_agree_in_lps_independent_reader() {
    check_positions(&|p: &Path| support::read_series_direct(p).volume, "direct reader");
}

#[test]
fn positions_agree_in_lps_via_load_scan() {
    check_positions(
        &|p: &Path| load_scan(p, &LoadOptions::default()).unwrap_or_else(|e| panic!("load_scan: {e}")).volume,
        "load_scan",
    );
}
