//! Volumes: voxel arrays on a patient geometry.
//!
//! CT intensities are stored as `i16` Hounsfield units, as scanners store them: 2 bytes a voxel (31 MB for
//! a 512 x 512 x 60 series) against 4 for `f32`. Measured on that series (`cargo bench --bench load`,
//! DEVELOPERS.md "load"): with `f32` the kernel's zeroing of the fresh volume alone cost 1.6-2.3 times
//! reading the files, and the load sat at 4.3-6x that I/O floor; 16-bit samples now land in the volume
//! in their final size and are rescaled in place. The stages compute in `f32` on the values they read
//! (`f32::from`), which is exact for every `i16`. What `i16` gives up: a fractional rescale slope or
//! intercept, a lossy decode and a partial-volume phantom are rounded to the nearest HU (half a HU, far
//! below CT noise), and values beyond -32768..32767 HU saturate (metal beyond that is beyond any
//! threshold here).
//! Label volumes are `u8` with the codes of the report spec.

pub mod flat;
pub mod geometry;
pub mod huge;
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
pub type CtVolume = Volume<i16>;

/// Hounsfield units rounded to the nearest integer and saturated to the `i16` range: how computed
/// intensities (rescales, interpolation, phantoms) are stored in a [`CtVolume`].
#[inline]
pub fn hu_i16(hu: f32) -> i16 {
    // `as` saturates and maps NaN to 0.
    hu.round() as i16
}
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
                    // Most rows hold nothing: a fold without early exit over the row is vectorised.
                    if let Some(r) = row.as_slice() {
                        if !r.iter().fold(false, |a, v| a | keep(v)) {
                            continue;
                        }
                    }
                    let Some(first) = row.iter().position(&keep) else { continue };
                    let last = row.len() - 1 - row.iter().rev().position(&keep).unwrap_or(0);
                    found = merge(found, Some(([z, y, first], [z, y, last])));
                }
                found
            })
            .reduce(|| None, merge)
    }
}

impl CtVolume {
    /// A CT volume from computed HU (phantoms, tests), each rounded and saturated by [`hu_i16`].
    pub fn from_hu(hu: &Array3<f32>, geometry: Geometry) -> CtVolume {
        Volume::new(hu.mapv(hu_i16), geometry)
    }

    /// HU at a voxel, if it is inside the volume.
    pub fn hu(&self, v: [usize; 3]) -> Option<f32> {
        self.data.get(v).map(|h| f32::from(*h))
    }

    /// HU at the voxel nearest to an LPS point, if it is inside the volume.
    pub fn hu_at_lps(&self, p: Lps) -> Option<f32> {
        self.at_lps(p).map(|h| f32::from(*h))
    }
}

impl LabelVolume {
    /// Where the label map holds `label`, on the same grid. In parallel: the maps are scan-sized, and the
    /// callers wait for them.
    pub fn mask_of(&self, label: u8) -> Mask {
        let mut out = huge::zeroed(self.shape());
        ndarray::Zip::from(&mut out).and(&self.data).par_for_each(|o, &l| *o = l == label);
        Volume::new(out, self.geometry)
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
