//! Loader policy on synthetic series: slice ordering, spacing (gaps, jitter, duplicates), gantry tilt,
//! padding, rescale, series selection, Enhanced CT and legacy multi-frame, geometry errors.

mod load_synth;

use cementleak::load::dicom::{load_dicom, load_dicom_bytes};
use cementleak::load::{LoadError, LoadOptions, Scan};
use cementleak::volume::{Direction, Lps};
use load_synth::{enhanced_ct, pattern, to_bytes, Slice};
use std::path::Path;

const N: u16 = 16;

fn write_series(dir: &Path, slices: &[Slice]) {
    for (k, s) in slices.iter().enumerate() {
        // Names and instance numbers deliberately disagree with the true order.
        let name = format!("img_{:03}.dcm", (k * 7919) % 1000);
        let mut s = s.clone();
        s.instance = 100 - k as i32;
        s.write(&dir.join(name));
    }
}

fn load(dir: &Path) -> Result<Scan, LoadError> {
    load_dicom(dir, &LoadOptions::default())
}

/// Mean stored value of the pattern at height z, to identify which slice ended up where.
fn pattern_mean(z: f64) -> f64 {
    let mut s = 0.0;
    for r in 0..N as usize {
        for c in 0..N as usize {
            s += pattern(z, r, c) as f64 - 1024.0;
        }
    }
    s / (N as f64 * N as f64)
}

fn slice_mean(scan: &Scan, k: usize) -> f64 {
    let s = scan.volume.data.index_axis(ndarray::Axis(0), k);
    s.iter().map(|v| *v as f64).sum::<f64>() / s.len() as f64
}

#[test]
fn slices_sorted_along_normal_not_by_name_or_instance() {
    let dir = tempfile::tempdir().unwrap();
    let zs = [6.0, 0.0, 10.0, 2.0, 8.0, 4.0];
    let slices: Vec<Slice> = zs.iter().map(|z| Slice::axial("1.9.1", *z, N)).collect();
    write_series(dir.path(), &slices);
    let scan = load(dir.path()).unwrap();
    assert_eq!(scan.volume.shape(), [6, N as usize, N as usize]);
    let g = scan.volume.geometry;
    assert_eq!(g.origin, Lps([-10.0, -20.0, 0.0]));
    assert!((g.spacing.slice - 2.0).abs() < 1e-9);
    assert_eq!((g.spacing.row, g.spacing.column), (0.5, 0.5));
    for k in 0..6 {
        assert!((slice_mean(&scan, k) - pattern_mean(2.0 * k as f64)).abs() < 1e-6, "slice {k}");
    }
    assert_eq!(g.axis_toward(Direction::Superior).axis, 0);
    assert_eq!(g.axis_toward(Direction::Posterior).axis, 1);
    assert!(scan.warnings.is_empty(), "{:?}", scan.warnings);
}

#[test]
fn prone_orientation_sorts_along_its_own_normal() {
    // HFP: row cosines (-1,0,0), column cosines (0,-1,0); normal = +z still.
    let dir = tempfile::tempdir().unwrap();
    let slices: Vec<Slice> = [4.0, 0.0, 2.0]
        .iter()
        .map(|z| Slice { iop: [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0], ..Slice::axial("1.9.2", *z, N) })
        .collect();
    write_series(dir.path(), &slices);
    let scan = load(dir.path()).unwrap();
    let g = scan.volume.geometry;
    assert_eq!(g.origin.z(), 0.0);
    let post = g.axis_toward(Direction::Posterior);
    assert_eq!((post.axis, post.sign), (1, -1));
    let left = g.axis_toward(Direction::Left);
    assert_eq!((left.axis, left.sign), (2, -1));
}

#[test]
fn gap_in_slices_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let slices: Vec<Slice> =
        [0.0, 2.0, 4.0, 8.0, 10.0].iter().map(|z| Slice::axial("1.9.3", *z, N)).collect();
    write_series(dir.path(), &slices);
    match load(dir.path()) {
        Err(LoadError::Inconsistent { reason, .. }) => assert!(reason.contains("spacing"), "{reason}"),
        other => panic!("expected Inconsistent, got {:?}", other.map(|s| s.volume.shape())),
    }
}

#[test]
fn small_spacing_jitter_is_accepted_with_warning() {
    let dir = tempfile::tempdir().unwrap();
    let zs = [0.0, 2.05, 4.0, 6.06, 8.0];
    write_series(dir.path(), &zs.iter().map(|z| Slice::axial("1.9.4", *z, N)).collect::<Vec<_>>());
    let scan = load(dir.path()).unwrap();
    assert_eq!(scan.volume.shape()[0], 5);
    assert!(scan.warnings.iter().any(|w| w.contains("jitter")), "{:?}", scan.warnings);
    // Mean consecutive distance.
    assert!((scan.volume.geometry.spacing.slice - 2.0).abs() < 1e-9);
}

#[test]
fn identical_duplicate_is_dropped_different_duplicate_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut slices: Vec<Slice> = [0.0, 2.0, 4.0].iter().map(|z| Slice::axial("1.9.5", *z, N)).collect();
    slices.push(Slice::axial("1.9.5", 2.0, N));
    write_series(dir.path(), &slices);
    let scan = load(dir.path()).unwrap();
    assert_eq!(scan.volume.shape()[0], 3);
    assert!(scan.warnings.iter().any(|w| w.contains("duplicate")), "{:?}", scan.warnings);

    let dir = tempfile::tempdir().unwrap();
    let mut other = Slice::axial("1.9.6", 2.0, N);
    other.pixels[5] += 100;
    let mut slices: Vec<Slice> = [0.0, 2.0, 4.0].iter().map(|z| Slice::axial("1.9.6", *z, N)).collect();
    slices.push(other);
    write_series(dir.path(), &slices);
    match load(dir.path()) {
        Err(LoadError::Inconsistent { reason, .. }) => assert!(reason.contains("same position"), "{reason}"),
        other => panic!("expected Inconsistent, got {:?}", other.map(|s| s.volume.shape())),
    }
}

#[test]
fn gantry_tilt_keeps_sheared_axis_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let tilt = 15f64.to_radians();
    let slices: Vec<Slice> = (0..5)
        .map(|k| {
            let mut s = Slice::axial("1.9.7", 2.0 * k as f64, N);
            s.position[1] += 2.0 * k as f64 * tilt.tan();
            s
        })
        .collect();
    write_series(dir.path(), &slices);
    let scan = load(dir.path()).unwrap();
    let g = scan.volume.geometry;
    assert!(!g.is_orthogonal(1e-3));
    assert!(scan.warnings.iter().any(|w| w.contains("tilt of 15.0")), "{:?}", scan.warnings);
    for (k, s) in slices.iter().enumerate() {
        let p = g.voxel_to_lps([k, 3, 5]);
        let want = Lps([s.position[0] + 5.0 * 0.5, s.position[1] + 3.0 * 0.5, s.position[2]]);
        assert!(p.distance(want) < 1e-6, "slice {k}: {p} vs {want}");
        let back = g.lps_to_index(want);
        assert!(
            (back[0] - k as f64).abs() < 1e-6 && (back[1] - 3.0).abs() < 1e-6 && (back[2] - 5.0).abs() < 1e-6
        );
    }
}

#[test]
fn slices_off_a_line_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut slices: Vec<Slice> = (0..5).map(|k| Slice::axial("1.9.8", 2.0 * k as f64, N)).collect();
    slices[2].position[0] += 5.0;
    write_series(dir.path(), &slices);
    assert!(matches!(load(dir.path()), Err(LoadError::Inconsistent { .. })));
}

#[test]
fn padding_becomes_air_and_rescale_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let slices: Vec<Slice> = (0..3)
        .map(|k| {
            let mut s = Slice::axial("1.9.9", 2.0 * k as f64, N);
            s.padding = Some(-2000);
            s.pixels[0] = -2000;
            s.slope = 0.5;
            s.intercept = -1000.0;
            s
        })
        .collect();
    write_series(dir.path(), &slices);
    let scan = load(dir.path()).unwrap();
    let d = &scan.volume.data;
    assert_eq!(d[[1, 0, 0]], -1024);
    let stored = f64::from(pattern(2.0, 3, 4));
    assert_eq!(f64::from(d[[1, 3, 4]]), (0.5 * stored - 1000.0).round(), "fractional rescale, rounded");
}

#[test]
fn two_ct_series_need_a_choice() {
    let dir = tempfile::tempdir().unwrap();
    let a: Vec<Slice> = (0..3).map(|k| Slice::axial("1.9.10.1", 2.0 * k as f64, N)).collect();
    let b: Vec<Slice> = (0..4)
        .map(|k| Slice { description: "second".into(), ..Slice::axial("1.9.10.2", 3.0 * k as f64, N) })
        .collect();
    std::fs::create_dir(dir.path().join("a")).unwrap();
    std::fs::create_dir(dir.path().join("b")).unwrap();
    write_series(&dir.path().join("a"), &a);
    write_series(&dir.path().join("b"), &b);
    match load(dir.path()) {
        Err(LoadError::MultipleSeries { choices, .. }) => {
            assert!(choices.contains("1.9.10.1") && choices.contains("1.9.10.2"), "{choices}");
            assert!(choices.contains("4 slices") && choices.contains("\"second\""), "{choices}");
        }
        other => panic!("expected MultipleSeries, got {:?}", other.map(|s| s.volume.shape())),
    }
    let scan = load_dicom(dir.path(), &LoadOptions { series_uid: Some("1.9.10.2".into()) }).unwrap();
    assert_eq!(scan.volume.shape()[0], 4);
    assert_eq!(scan.info.series_instance_uid, "1.9.10.2");
    assert!(matches!(
        load_dicom(dir.path(), &LoadOptions { series_uid: Some("9.9".into()) }),
        Err(LoadError::SeriesNotFound { .. })
    ));

    // The binary: exit 2, one line listing both; --series picks one.
    let exe = env!("CARGO_BIN_EXE_cementleak");
    let out = std::process::Command::new(exe).arg("info").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("1.9.10.1") && err.contains("1.9.10.2"), "{err}");
    let out = std::process::Command::new(exe)
        .args(["info", "--json", "--series", "1.9.10.1"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["shape"][0], 3);
    assert_eq!(v["series"]["series_instance_uid"], "1.9.10.1");
}

#[test]
fn enhanced_ct_frames_are_ordered_and_rescaled_per_frame() {
    // Frames stored out of order, each with its own intercept.
    let zs = [3.0, 0.0, 1.5, 4.5];
    let intercepts = [-1000.0, -1024.0, -1010.0, -990.0];
    let obj = enhanced_ct("1.9.11", &zs, &intercepts, N);
    let check = |scan: &Scan| {
        assert_eq!(scan.volume.shape(), [4, N as usize, N as usize]);
        let g = scan.volume.geometry;
        assert_eq!(g.origin, Lps([5.0, 6.0, 0.0]));
        assert!((g.spacing.slice - 1.5).abs() < 1e-9);
        assert_eq!((g.spacing.row, g.spacing.column), (0.7, 0.8));
        for (k, z) in [0.0, 1.5, 3.0, 4.5].iter().enumerate() {
            let i = zs.iter().position(|v| v == z).unwrap();
            let want = f64::from(pattern(*z, 2, 9)) + intercepts[i];
            assert_eq!(f64::from(scan.volume.data[[k, 2, 9]]), want, "slice {k}");
        }
        assert_eq!(scan.info.level.as_deref(), Some("L2"));
    };
    check(&load_dicom_bytes(&to_bytes(&obj)).unwrap());
    let dir = tempfile::tempdir().unwrap();
    obj.write_to_file(dir.path().join("enhanced")).unwrap();
    check(&load(dir.path()).unwrap());
}

#[test]
fn legacy_multiframe_without_positions_is_stacked_along_normal_with_warning() {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let s = Slice::axial("1.9.12", 10.0, N);
    let mut o = s.dataset();
    let frames: Vec<i16> = (0..3).flat_map(|k| s.pixels.iter().map(move |p| p + k as i16 * 100)).collect();
    load_synth::image_pixel(&mut o, N, N, 3, frames);
    o.put(DataElement::new(tags::SPACING_BETWEEN_SLICES, VR::DS, PrimitiveValue::from("2.5")));
    let scan = load_dicom_bytes(&to_bytes(&load_synth::with_meta(o, load_synth::CT_IMAGE))).unwrap();
    assert_eq!(scan.volume.shape()[0], 3);
    assert!((scan.volume.geometry.spacing.slice - 2.5).abs() < 1e-9);
    assert!(scan.warnings.iter().any(|w| w.contains("per-frame positions")), "{:?}", scan.warnings);
    assert_eq!(scan.volume.data[[2, 0, 0]] - scan.volume.data[[0, 0, 0]], 200);
}

#[test]
fn missing_geometry_and_wrong_modality_are_refused() {
    use dicom_dictionary_std::tags;
    let s = Slice::axial("1.9.13", 0.0, N);
    let mut o = s.dataset();
    o.remove_element(tags::IMAGE_ORIENTATION_PATIENT);
    let r = load_dicom_bytes(&to_bytes(&load_synth::with_meta(o, load_synth::CT_IMAGE)));
    assert!(
        matches!(&r, Err(LoadError::MissingTag { tag, .. }) if tag == "ImageOrientationPatient"),
        "{:?}",
        r.err()
    );
    let mr = Slice { modality: "MR".into(), ..Slice::axial("1.9.14", 0.0, N) };
    assert!(matches!(load_dicom_bytes(&to_bytes(&mr.object())), Err(LoadError::NotCt { .. })));
}

#[test]
fn localizer_in_series_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut slices: Vec<Slice> = (0..3).map(|k| Slice::axial("1.9.15", 2.0 * k as f64, N)).collect();
    slices.push(Slice {
        image_type: "ORIGINAL\\PRIMARY\\LOCALIZER".into(),
        iop: [1.0, 0.0, 0.0, 0.0, 0.0, -1.0],
        ..Slice::axial("1.9.15", 0.0, N)
    });
    write_series(dir.path(), &slices);
    let scan = load(dir.path()).unwrap();
    assert_eq!(scan.volume.shape()[0], 3);
    assert!(scan.warnings.iter().any(|w| w.contains("LOCALIZER")));
}

/// Regenerates the small synthetic fuzz seeds in fixtures/fuzz-seeds (run with `--ignored`).
#[test]
#[ignore]
fn write_fuzz_seeds() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fuzz-seeds");
    std::fs::create_dir_all(&dir).unwrap();
    let mut s = Slice::axial("1.9.99", 0.0, 8);
    s.padding = Some(-2000);
    s.write(&dir.join("ct_8x8.dcm"));
    let e = enhanced_ct("1.9.98", &[2.0, 0.0, 1.0], &[-1024.0, -1000.0, -1024.0], 4);
    std::fs::write(dir.join("enhanced_4x4x3.dcm"), to_bytes(&e)).unwrap();
}

/// Writes an uncompressed 512 x 512 x 60 series to $CEMENTLEAK_SERIES_OUT (run with `--ignored`), e.g. to
/// measure the loader's peak memory with `/usr/bin/time -v cementleak info DIR`.
#[test]
#[ignore]
fn write_large_series() {
    let Some(out) = std::env::var_os("CEMENTLEAK_SERIES_OUT") else { return };
    let dir = Path::new(&out);
    std::fs::create_dir_all(dir).unwrap();
    for k in 0..60 {
        Slice::axial("1.9.97", 1.25 * k as f64, 512).write(&dir.join(format!("s{k:03}.dcm")));
    }
}

/// An Icon Image Sequence holds a small PixelData of its own; the uncompressed fast path must take the
/// top-level one.
#[test]
fn icon_image_sequence_does_not_replace_the_image() {
    use dicom_core::value::C;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let dir = tempfile::tempdir().unwrap();
    for k in 0..3 {
        let s = Slice::axial("1.9.16", 2.0 * k as f64, N);
        let mut o = s.dataset();
        let icon = load_synth::item(vec![
            DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(2_u16)),
            DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(2_u16)),
            DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::I16(C::from_vec(vec![9999; 4]))),
        ]);
        o.put(load_synth::seq(tags::ICON_IMAGE_SEQUENCE, vec![icon]));
        load_synth::with_meta(o, load_synth::CT_IMAGE)
            .write_to_file(dir.path().join(format!("i{k}")))
            .unwrap();
    }
    let scan = load(dir.path()).unwrap();
    for k in 0..3 {
        assert_eq!(scan.volume.data[[k, 3, 4]], pattern(2.0 * k as f64, 3, 4) - 1024);
    }
}
