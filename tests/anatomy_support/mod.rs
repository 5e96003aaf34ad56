//! Test support for the anatomy tests: reading the real data (through `load_scan`) and scoring masks.
#![allow(dead_code)]

use cementleak::load::{load_scan, LoadOptions};
use cementleak::volume::{Geometry, Lps, Volume};
use ndarray::Array3;
use std::path::Path;

/// A NIfTI file (CT or label map) as a volume with LPS geometry.
pub fn read_nifti(path: &Path) -> Volume<i16> {
    load_scan(path, &LoadOptions::default()).expect("readable NIfTI").volume
}

/// A DICOM series folder as an HU volume with LPS geometry.
pub fn read_dicom_series(dir: &Path) -> Volume<i16> {
    load_scan(dir, &LoadOptions::default()).expect("readable DICOM series").volume
}

/// `src` labels resampled onto `grid`'s voxels by LPS position (nearest neighbour).
pub fn labels_on_grid(src: &Volume<i16>, grid: &Geometry, shape: [usize; 3]) -> Array3<u8> {
    let mut out = Array3::<u8>::zeros(shape);
    for ((z, y, x), o) in out.indexed_iter_mut() {
        let p = grid.voxel_to_lps([z, y, x]);
        if let Some(&v) = src.at_lps(p) {
            *o = v.clamp(0, 255) as u8;
        }
    }
    out
}

pub fn dice(a: &Array3<bool>, b: &Array3<bool>) -> f64 {
    let (mut inter, mut na, mut nb) = (0usize, 0usize, 0usize);
    ndarray::Zip::from(a).and(b).for_each(|&x, &y| {
        inter += (x && y) as usize;
        na += x as usize;
        nb += y as usize;
    });
    if na + nb == 0 {
        return 1.0;
    }
    2.0 * inter as f64 / (na + nb) as f64
}

/// Mean LPS position of the voxels of a mask.
pub fn centroid(m: &Array3<bool>, g: &Geometry) -> Lps {
    let (mut s, mut n) = ([0.0; 3], 0.0);
    for ((z, y, x), &b) in m.indexed_iter() {
        if b {
            let p = g.voxel_to_lps([z, y, x]);
            for (acc, v) in s.iter_mut().zip(p.0) {
                *acc += v;
            }
            n += 1.0;
        }
    }
    Lps(s.map(|v| v / n))
}

/// Log output for debugging (`RUST_LOG=cementleak::anatomy=debug`); harmless when called twice.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
