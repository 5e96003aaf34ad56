//! Volumes: voxel arrays on a patient geometry.
//!
//! CT intensities are stored as `f32` Hounsfield units. Measured on this project's 512 x 512 x 60 benchmark
//! series (see `benches/` and DEVELOPERS.md): `f32` costs 4 bytes a voxel (63 MB) against 2 for `i16` (31 MB),
//! both far below the machine's memory, while every later stage (registration, partial-volume phantoms,
//! thresholds, model patches) computes in floating point. Storing `i16` would force a conversion at every
//! stage and would round non-integer rescale slopes and lossy decodes; storing `f32` converts once, at load.
//! Load speed is the one place `i16` wins: the i16 sketch in `benches/load.rs` loads the uncompressed series in
//! about 0.55-0.7x the f32 time (half the fresh memory to zero and write); see DEVELOPERS.md "load".
//! Label volumes are `u8` with the codes of the report spec.

pub mod geometry;
pub mod position;

pub use geometry::{AxisToward, Direction, Geometry, Lps, Spacing, Vec3};
pub use position::PatientPosition;

use ndarray::Array3;

/// A voxel array indexed `[slice, row, column]` with the geometry that places it in patient space.
#[derive(Clone, Debug)]
pub struct Volume<T> {
    pub data: Array3<T>,
    pub geometry: Geometry,
}

/// CT intensities in Hounsfield units.
pub type CtVolume = Volume<f32>;
/// Label map with the codes of [`labels`].
pub type LabelVolume = Volume<u8>;
/// Binary mask (true = inside).
pub type Mask = Volume<bool>;

/// An inclusive index box `(lowest, highest)` per axis `[slice, row, column]`.
pub type IndexBox = ([usize; 3], [usize; 3]);

impl<T: Sync> Volume<T> {
    /// Inclusive index box of the voxels where `keep` holds, `None` when there are none. Slices are scanned
    /// in parallel, each row from both ends: this runs on whole scans (tens of millions of voxels).
    pub fn bounding_box(&self, keep: impl Fn(&T) -> bool + Sync) -> Option<IndexBox> {
        use ndarray::Axis;
        use rayon::prelude::*;
        let merge = |a: Option<IndexBox>, b: Option<IndexBox>| match (a, b) {
            (Some((alo, ahi)), Some((blo, bhi))) => {
                Some(([0, 1, 2].map(|k| alo[k].min(blo[k])), [0, 1, 2].map(|k| ahi[k].max(bhi[k]))))
            }
            (a, None) => a,
            (None, b) => b,
        };
        self.data
            .axis_iter(Axis(0))
            .into_par_iter()
            .enumerate()
            .map(|(z, plane)| {
                let mut found = None;
                for (y, row) in plane.outer_iter().enumerate() {
                    let Some(first) = row.iter().position(&keep) else { continue };
                    let last = row.len() - 1 - row.iter().rev().position(&keep).unwrap_or(0);
                    found = merge(found, Some(([z, y, first], [z, y, last])));
                }
                found
            })
            .reduce(|| None, merge)
    }
}

impl LabelVolume {
    /// Where the label map holds `label`, on the same grid.
    pub fn mask_of(&self, label: u8) -> Mask {
        Volume::new(self.data.mapv(|l| l == label), self.geometry)
    }
}

impl<T> Volume<T> {
    pub fn new(data: Array3<T>, geometry: Geometry) -> Self {
        Volume { data, geometry }
    }

    /// `[slices, rows, columns]`.
    pub fn shape(&self) -> [usize; 3] {
        let s = self.data.shape();
        [s[0], s[1], s[2]]
    }

    pub fn voxel_count(&self) -> usize {
        self.data.len()
    }

    /// A new volume on the same grid.
    pub fn same_grid<U: Clone>(&self, fill: U) -> Volume<U> {
        Volume { data: Array3::from_elem(self.data.raw_dim(), fill), geometry: self.geometry }
    }

    /// Value at the voxel nearest to an LPS point, if it is inside the volume.
    pub fn at_lps(&self, p: Lps) -> Option<&T> {
        let v = self.geometry.lps_to_voxel(p, self.shape())?;
        self.data.get(v)
    }
}

/// Label codes shared by `labels.nii.gz`, phantom truth and DICOM SEG (see the report spec).
pub mod labels {
    pub const BACKGROUND: u8 = 0;
    pub const VERTEBRAL_BODY: u8 = 1;
    pub const CANAL: u8 = 2;
    pub const DISC: u8 = 3;
    pub const POSTERIOR_ELEMENTS: u8 = 4;
    pub const CEMENT: u8 = 10;
    pub const LEAK_CANAL: u8 = 11;
    pub const LEAK_POSTERIOR_VEIN: u8 = 12;
    pub const LEAK_DISC: u8 = 13;
    pub const LEAK_PARASPINAL: u8 = 14;
    pub const NEEDLE: u8 = 20;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounding_box_and_mask_of_a_label() {
        let mut v: LabelVolume = Volume::new(
            Array3::zeros((4, 5, 6)),
            Geometry::axial_hfs(Lps([0.0; 3]), Spacing { slice: 1.0, row: 1.0, column: 1.0 }),
        );
        assert_eq!(v.bounding_box(|l| *l != 0), None);
        v.data[[1, 3, 2]] = labels::VERTEBRAL_BODY;
        v.data[[2, 1, 5]] = labels::VERTEBRAL_BODY;
        v.data[[3, 4, 0]] = labels::DISC;
        assert_eq!(v.bounding_box(|l| *l == labels::VERTEBRAL_BODY), Some(([1, 1, 2], [2, 3, 5])));
        assert_eq!(v.bounding_box(|l| *l != 0), Some(([1, 1, 0], [3, 4, 5])));
        let body = v.mask_of(labels::VERTEBRAL_BODY);
        assert_eq!(body.data.iter().filter(|b| **b).count(), 2);
        assert_eq!(body.bounding_box(|b| *b), v.bounding_box(|l| *l == labels::VERTEBRAL_BODY));
    }
}
