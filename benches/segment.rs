//! `cargo bench --bench segment`: anatomy on a 512 x 512 x 40 scan (0.7 mm pixels, 2.5 mm slices) built from
//! the real trunk CT resampled onto that grid, target given as a point in L3.

use cementleak::anatomy::{segment, TargetHint};
use cementleak::volume::{CtVolume, Geometry, Lps, Spacing, Vec3, Volume};
use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array3;
use std::path::PathBuf;

fn trunk() -> Option<CtVolume> {
    use nifti::{IntoNdArray, NiftiObject, ReaderOptions};
    let base = std::env::var_os("CEMENTLEAK_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let obj = ReaderOptions::new().read_file(base.join("real/totalseg-trunk/ct.nii.gz")).ok()?;
    let h = obj.header().clone();
    let r = |v: [f32; 4]| v.map(|x| x as f64);
    let g = Geometry::from_nifti_ras_affine(&[r(h.srow_x), r(h.srow_y), r(h.srow_z), [0.0, 0.0, 0.0, 1.0]])?;
    let a = obj.into_volume().into_ndarray::<f32>().ok()?.into_dimensionality::<ndarray::Ix3>().ok()?;
    Some(CtVolume::from_hu(&a.permuted_axes([2, 1, 0]).as_standard_layout().to_owned(), g))
}

fn bench(c: &mut Criterion) {
    let Some(src) = trunk() else {
        eprintln!("SKIP: real/totalseg-trunk not found");
        return;
    };
    // L3 level of the trunk CT (reference body centroid, LPS mm).
    let target = Lps([4.86, -141.34, 315.69]);
    let spacing = Spacing { slice: 2.5, row: 0.7, column: 0.7 };
    let origin = Lps([target.x() - 255.5 * 0.7, target.y() - 255.5 * 0.7, target.z() - 19.5 * 2.5]);
    let g = Geometry {
        origin,
        spacing,
        axes: [Vec3([0.0, 0.0, 1.0]), Vec3([0.0, 1.0, 0.0]), Vec3([1.0, 0.0, 0.0])],
    };
    let data = Array3::from_shape_fn((40, 512, 512), |(z, y, x)| {
        *src.at_lps(g.voxel_to_lps([z, y, x])).unwrap_or(&-1024)
    });
    let ct: CtVolume = Volume::new(data, g);
    if let Ok(a) = segment(&ct, TargetHint::AtPoint(target)) {
        eprintln!("one run: {:?}", a.timings);
    }
    let mut group = c.benchmark_group("segment");
    group.sample_size(20);
    group.bench_function("512x512x40", |b| {
        b.iter(|| segment(&ct, TargetHint::AtPoint(target)).map(|a| a.body_volume_ml))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
