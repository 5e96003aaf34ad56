//! The real JPEG 2000 series `real/totalseg-t12/dicom` loads to exactly what pydicom reads
//! (`pydicom_reference.json`), also after renaming, shuffling and nesting its files beside a stray file.

mod common;

use cementleak::load::{load_scan, LoadOptions, Scan};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::path::Path;

fn reference() -> Option<(std::path::PathBuf, Value)> {
    let base = common::shared_data("real/totalseg-t12")?;
    let text = std::fs::read_to_string(base.join("pydicom_reference.json")).expect("reference json");
    Some((base.join("dicom"), serde_json::from_str(&text).expect("valid json")))
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

fn check(scan: &Scan, r: &Value) {
    let vol = &scan.volume;
    let shape: Vec<usize> =
        r["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(vol.shape().to_vec(), shape);
    let g = vol.geometry;
    assert_eq!(g.spacing.row, f(&r["pixel_spacing_mm"][0]));
    assert_eq!(g.spacing.column, f(&r["pixel_spacing_mm"][1]));
    assert!((g.spacing.slice - f(&r["slice_spacing_mm"])).abs() < 1e-9);
    let iop: Vec<f64> = r["image_orientation_patient"].as_array().unwrap().iter().map(f).collect();
    let got = [g.axes[2].0, g.axes[1].0].concat();
    for i in 0..6 {
        assert!((got[i] - iop[i]).abs() < 1e-9, "IOP {got:?} vs {iop:?}");
    }
    for i in 0..3 {
        assert_eq!(g.origin.0[i], f(&r["first_slice_position_patient"][i]));
    }
    assert_eq!(scan.info.patient_position.as_deref(), r["patient_position"].as_str());
    assert_eq!(Some(scan.info.encoding.as_str()), r["transfer_syntax"].as_str());
    let (mut lo, mut hi, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0.0f64);
    for v in vol.data.iter().map(|&v| f32::from(v)) {
        lo = lo.min(v);
        hi = hi.max(v);
        sum += v as f64;
    }
    assert_eq!(lo as f64, f(&r["hu_min"]));
    assert_eq!(hi as f64, f(&r["hu_max"]));
    // The reference rounds to 4 decimals.
    assert!((sum / vol.voxel_count() as f64 - f(&r["hu_mean"])).abs() < 1e-3);
    for (k, want) in r["slice_hu_mean"].as_array().unwrap().iter().enumerate() {
        let s = vol.data.index_axis(ndarray::Axis(0), k);
        let mean = s.iter().map(|v| *v as f64).sum::<f64>() / s.len() as f64;
        assert!((mean - f(want)).abs() < 1e-3, "slice {k}: {mean} vs {want}");
    }
    for (key, want) in r["hu_at"].as_object().unwrap() {
        let idx: Vec<usize> = key.split(',').map(|t| t.parse().unwrap()).collect();
        assert_eq!(vol.data[[idx[0], idx[1], idx[2]]] as f64, f(want), "voxel {key}");
    }
}

#[test]
fn t12_series_matches_pydicom_reference() {
    let Some((dir, r)) = reference() else { return };
    let scan = load_scan(&dir, &LoadOptions::default()).expect("loads");
    check(&scan, &r);
    assert!(scan.warnings.is_empty(), "{:?}", scan.warnings);
}

#[test]
fn t12_series_loads_the_same_renamed_shuffled_nested_with_stray_file() {
    let Some((dir, r)) = reference() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.shuffle(&mut rng);
    for (i, src) in files.iter().enumerate() {
        let sub = tmp.path().join(format!("d{}", i % 3)).join(if i % 2 == 0 { "x" } else { "y/z" });
        std::fs::create_dir_all(&sub).unwrap();
        let name: String = (0..12).map(|_| rng.random_range(b'a'..=b'z') as char).collect();
        std::fs::copy(src, sub.join(name)).unwrap();
    }
    std::fs::write(tmp.path().join("README"), "exported from PACS\n").unwrap();
    std::fs::write(tmp.path().join("d1").join(".DS_Store"), [0u8, 0, 0, 1, 66, 117, 100, 49]).unwrap();
    let scan = load_scan(tmp.path(), &LoadOptions::default()).expect("loads");
    check(&scan, &r);
    assert!(
        scan.warnings.iter().any(|w| w.contains("non-DICOM") && w.contains("README")),
        "{:?}",
        scan.warnings
    );
    assert!(!Path::new(&scan.info.path).as_os_str().is_empty());
}
