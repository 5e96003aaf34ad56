//! The same anatomy stored as another patient position gives the same masks in patient space.

mod anatomy_support;
mod common;

use anatomy_support::*;
use cementleak::anatomy::{segment, TargetHint};
use cementleak::volume::{labels, Geometry, Volume};
use ndarray::{s, Array3};

/// The trunk CT re-stored as a prone scan: array rotated 180 degrees in-plane, geometry axes flipped so
/// every voxel keeps its LPS position.
#[test]
fn trunk_supine_and_prone_storage_agree() {
    let Some(dir) = common::shared_data("real/totalseg-trunk") else { return };
    let ct = read_nifti(&dir.join("ct.nii.gz"));
    let [_, ny, nx] = ct.shape();
    let rot = ct.data.slice(s![.., ..;-1, ..;-1]).to_owned();
    let g = ct.geometry;
    let prone_geom = Geometry {
        origin: g.voxel_to_lps([0, ny - 1, nx - 1]),
        spacing: g.spacing,
        axes: [g.axes[0], g.axes[1] * -1.0, g.axes[2] * -1.0],
    };
    let prone = Volume::new(rot, prone_geom);
    assert!(prone.geometry.voxel_to_lps([3, 4, 5]).distance(g.voxel_to_lps([3, ny - 5, nx - 6])) < 1e-6);
    let shape = ct.shape();
    let vert = labels_on_grid(&read_nifti(&dir.join("vertebrae.nii.gz")), &ct.geometry, shape);
    let bd = labels_on_grid(&read_nifti(&dir.join("vertebral_bodies_and_discs.nii.gz")), &ct.geometry, shape);
    for code in [29u8, 31u8] {
        let ref_body = Array3::from_shape_fn(shape, |p| bd[p] == 1 && vert[p] == code);
        let p = centroid(&ref_body, &ct.geometry);
        let a = segment(&ct, TargetHint::AtPoint(p)).expect("supine");
        let b = segment(&prone, TargetHint::AtPoint(p)).expect("prone");
        let back = b.labels.data.slice(s![.., ..;-1, ..;-1]).to_owned();
        let mut worst = 1.0f64;
        for (name, l) in [
            ("body", labels::VERTEBRAL_BODY),
            ("canal", labels::CANAL),
            ("disc", labels::DISC),
            ("posterior", labels::POSTERIOR_ELEMENTS),
        ] {
            let d = dice(&a.labels.data.mapv(|v| v == l), &back.mapv(|v| v == l));
            println!("vertebra {code}: {name} Dice supine vs prone storage {d:.4}");
            worst = worst.min(d);
        }
        println!("centroids {} vs {}", a.body_centroid, b.body_centroid);
        assert!(worst >= 0.98, "labels differ between storages (worst Dice {worst:.4})");
    }
}
