//! Real NIfTI files from the shared data: geometry against the header's own affine (parsed here by hand),
//! voxel layout against the raw bytes, and load time.

mod common;

use cementleak::load::{load_scan, LoadOptions};
use cementleak::volume::{Direction, Lps};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    GzDecoder::new(std::fs::File::open(path).expect("open")).read_to_end(&mut out).expect("gunzip");
    out
}

fn f32_at(b: &[u8], o: usize) -> f32 {
    f32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

#[test]
fn trunk_ct_geometry_matches_its_sform_and_voxels_match_the_bytes() {
    let Some(path) = common::shared_data("real/totalseg-trunk/ct.nii.gz") else { return };
    let t = std::time::Instant::now();
    let scan = load_scan(&path, &LoadOptions::default()).expect("load trunk CT");
    println!("load_scan(ct.nii.gz) took {:.3} s", t.elapsed().as_secs_f64());

    let b = gunzip(&path);
    let dim: Vec<usize> =
        (0..4).map(|i| i16::from_le_bytes([b[40 + 2 * i], b[41 + 2 * i]]) as usize).collect();
    assert_eq!(dim[0], 3);
    let (ni, nj, nk) = (dim[1], dim[2], dim[3]);
    assert_eq!(scan.volume.shape(), [nk, nj, ni], "array is [k, j, i]");
    let sform_code = i16::from_le_bytes([b[254], b[255]]);
    assert!(sform_code > 0, "this file has an sform");
    let srow: [[f64; 4]; 3] =
        std::array::from_fn(|r| std::array::from_fn(|c| f32_at(&b, 280 + 16 * r + 4 * c) as f64));

    // Every corner: the RAS affine applied to (i, j, k), flipped to LPS, is where the geometry puts it.
    for &i in &[0, ni - 1] {
        for &j in &[0, nj - 1] {
            for &k in &[0, nk - 1] {
                let ras: [f64; 3] = std::array::from_fn(|r| {
                    srow[r][0] * i as f64 + srow[r][1] * j as f64 + srow[r][2] * k as f64 + srow[r][3]
                });
                let lps = Lps([-ras[0], -ras[1], ras[2]]);
                let got = scan.volume.geometry.voxel_to_lps([k, j, i]);
                assert!(got.distance(lps) < 1e-4, "corner ({i},{j},{k}): {got} vs {lps}");
            }
        }
    }
    // This file is RAS: i toward the patient's left is false (i runs to the right), j toward anterior.
    let g = scan.volume.geometry;
    assert_eq!(g.axis_toward(Direction::Right).axis, 2);
    assert_eq!(g.axis_toward(Direction::Anterior).axis, 1);
    assert_eq!(g.axis_toward(Direction::Superior).axis, 0);

    // Voxel values against the raw int32 bytes in Fortran order, scaled by the header's slope/intercept.
    assert_eq!(i16::from_le_bytes([b[70], b[71]]), 8, "int32");
    let (slope, inter) = (f32_at(&b, 112), f32_at(&b, 116));
    let off = f32_at(&b, 108) as usize;
    let raw = |i: usize, j: usize, k: usize| {
        let o = off + 4 * (i + ni * (j + nj * k));
        i32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as f32
    };
    let scale = |v: f32| if slope == 0.0 { v } else { v * slope + inter };
    for (i, j, k) in [(0, 0, 0), (ni - 1, 0, 0), (0, nj - 1, 0), (0, 0, nk - 1), (61, 50, 56), (30, 70, 90)] {
        assert_eq!(
            f32::from(scan.volume.data[[k, j, i]]),
            scale(raw(i, j, k)).round(),
            "voxel ({i},{j},{k})"
        );
    }
    // A plausible CT: air and bone both present.
    let (lo, hi) = scan.volume.data.iter().fold((i16::MAX, i16::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    assert!(lo <= -900 && hi >= 700, "HU range {lo}..{hi}");
    assert_eq!(scan.info.encoding, "nifti");
}

#[test]
fn same_file_same_series_id_different_file_different_id() {
    let Some(a) = common::shared_data("real/totalseg-trunk/ct.nii.gz") else { return };
    let Some(b) = common::shared_data("real/totalseg-trunk/vertebrae.nii.gz") else { return };
    let id = |p: &Path| load_scan(p, &LoadOptions::default()).expect("load").info.series_instance_uid;
    assert_eq!(id(&a), id(&a));
    assert_ne!(id(&a), id(&b));
}
