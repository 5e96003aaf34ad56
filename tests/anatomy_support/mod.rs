//! Test support for the anatomy tests: reading the real data and scoring masks.
//!
//! TEMPORARY SHIMS: `read_nifti` and `read_dicom_series` stand in for `cementleak::load::load_scan` until the
//! io and loader branches land; replace them with `load_scan` then. They only read what the test data needs.
#![allow(dead_code)]

use cementleak::volume::{Geometry, Lps, Vec3, Volume};
use ndarray::{Array3, Axis};
use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
use std::path::Path;

/// NIfTI file -> volume `[k, j, i]` with LPS geometry from the sform.
pub fn read_nifti(path: &Path) -> Volume<f32> {
    let obj = ReaderOptions::new().read_file(path).expect("readable NIfTI");
    let h = obj.header().clone();
    // The test files all carry an sform.
    assert!(h.sform_code > 0, "{}: no sform", path.display());
    let r = |v: [f32; 4]| v.map(|x| x as f64);
    let m = [r(h.srow_x), r(h.srow_y), r(h.srow_z), [0.0, 0.0, 0.0, 1.0]];
    let geometry = Geometry::from_nifti_ras_affine(&m).expect("valid affine");
    let arr = obj.into_volume().into_ndarray::<f32>().expect("numeric volume");
    let arr = arr.into_dimensionality::<ndarray::Ix3>().expect("3D volume");
    let data = arr.permuted_axes([2, 1, 0]).as_standard_layout().to_owned();
    Volume::new(data, geometry)
}

/// A folder of single-frame axial CT DICOM files -> HU volume with LPS geometry.
pub fn read_dicom_series(dir: &Path) -> Volume<f32> {
    use dicom_dictionary_std::tags;
    use dicom_pixeldata::PixelDecoder;
    let mut slices: Vec<(f64, ndarray::Array2<f32>, [f64; 3], [f64; 6], [f64; 2])> = Vec::new();
    for e in std::fs::read_dir(dir).expect("dicom dir") {
        let p = e.expect("entry").path();
        let Ok(obj) = dicom_object::open_file(&p) else { continue };
        let f64s =
            |t| -> Vec<f64> { obj.element(t).expect("tag").to_multi_float64().expect("numbers").to_vec() };
        let ipp = f64s(tags::IMAGE_POSITION_PATIENT);
        let iop = f64s(tags::IMAGE_ORIENTATION_PATIENT);
        let ps = f64s(tags::PIXEL_SPACING);
        let pix = obj.decode_pixel_data().expect("decodable");
        let a = pix.to_ndarray::<f32>().expect("ndarray");
        let img = a.index_axis(Axis(0), 0).index_axis(Axis(2), 0).to_owned();
        let r = Vec3([iop[0], iop[1], iop[2]]);
        let c = Vec3([iop[3], iop[4], iop[5]]);
        let n = r.cross(c);
        let pos = Vec3([ipp[0], ipp[1], ipp[2]]).dot(n);
        slices.push((
            pos,
            img,
            [ipp[0], ipp[1], ipp[2]],
            [iop[0], iop[1], iop[2], iop[3], iop[4], iop[5]],
            [ps[0], ps[1]],
        ));
    }
    slices.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (rows, cols) = slices[0].1.dim();
    let mut data = Array3::<f32>::zeros((slices.len(), rows, cols));
    for (k, s) in slices.iter().enumerate() {
        data.index_axis_mut(Axis(0), k).assign(&s.1);
    }
    let iop = slices[0].3;
    let r = Vec3([iop[0], iop[1], iop[2]]);
    let c = Vec3([iop[3], iop[4], iop[5]]);
    let n = r.cross(c);
    let dz = if slices.len() > 1 { slices[1].0 - slices[0].0 } else { 1.0 };
    let geometry = Geometry {
        origin: Lps(slices[0].2),
        spacing: cementleak::volume::Spacing { slice: dz.abs(), row: slices[0].4[0], column: slices[0].4[1] },
        axes: [n, c, r],
    };
    Volume::new(data, geometry)
}

/// `src` labels resampled onto `grid`'s voxels by LPS position (nearest neighbour).
pub fn labels_on_grid(src: &Volume<f32>, grid: &Geometry, shape: [usize; 3]) -> Array3<u8> {
    let mut out = Array3::<u8>::zeros(shape);
    for ((z, y, x), o) in out.indexed_iter_mut() {
        let p = grid.voxel_to_lps([z, y, x]);
        if let Some(&v) = src.at_lps(p) {
            *o = v.round().clamp(0.0, 255.0) as u8;
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
            for a in 0..3 {
                s[a] += p.0[a];
            }
            n += 1.0;
        }
    }
    Lps(s.map(|v| v / n))
}
