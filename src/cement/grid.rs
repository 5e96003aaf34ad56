//! The region of interest: a box of the scan's voxels around the vertebral body, stored as flat
//! `[slice, row, column]` arrays, with its own geometry so every position stays in LPS millimetres.
//!
//! The stage works on this crop only (a 512 x 512 scan is ~100 times larger than the body's neighbourhood),
//! which is what keeps it within the pipeline's time budget.

use crate::volume::{Geometry, Lps, Mask, Volume};

/// A box of scan voxels: `lo` is its first voxel in the scan, `shape` its size.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub shape: [usize; 3],
    pub lo: [usize; 3],
    /// Geometry of the crop: voxel `[0, 0, 0]` is scan voxel `lo`.
    pub geometry: Geometry,
}

impl Grid {
    /// The box `lo..=hi` (inclusive) of a volume with geometry `g`.
    pub fn from_box(g: &Geometry, lo: [usize; 3], hi: [usize; 3]) -> Grid {
        let shape = [0, 1, 2].map(|a| hi[a] + 1 - lo[a]);
        let origin = g.index_to_lps(lo.map(|v| v as f64));
        Grid { shape, lo, geometry: Geometry { origin, ..*g } }
    }

    pub fn len(&self) -> usize {
        self.shape[0] * self.shape[1] * self.shape[2]
    }

    pub fn idx(&self, v: [usize; 3]) -> usize {
        (v[0] * self.shape[1] + v[1]) * self.shape[2] + v[2]
    }

    pub fn coords(&self, i: usize) -> [usize; 3] {
        let x = i % self.shape[2];
        let r = i / self.shape[2];
        [r / self.shape[1], r % self.shape[1], x]
    }

    pub fn lps(&self, i: usize) -> Lps {
        self.geometry.voxel_to_lps(self.coords(i))
    }

    /// The scan index of crop voxel `i`.
    pub fn scan_index(&self, i: usize) -> [usize; 3] {
        let c = self.coords(i);
        [c[0] + self.lo[0], c[1] + self.lo[1], c[2] + self.lo[2]]
    }

    /// Voxels per axis covering `mm` millimetres (rounded, at least `min`).
    pub fn radius_voxels(&self, mm: f64, min: usize) -> [usize; 3] {
        self.geometry.spacing.zyx().map(|s| ((mm / s).round().max(0.0) as usize).max(min))
    }

    pub fn voxel_ml(&self) -> f64 {
        self.geometry.spacing.voxel_volume_ml()
    }

    /// Copy this box out of a volume on the parent grid.
    pub fn crop<T: Copy>(&self, vol: &Volume<T>) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len());
        for z in 0..self.shape[0] {
            for y in 0..self.shape[1] {
                for x in 0..self.shape[2] {
                    out.push(vol.data[[z + self.lo[0], y + self.lo[1], x + self.lo[2]]]);
                }
            }
        }
        out
    }

    /// Write crop values back into a full-size mask of the parent grid.
    pub fn paste(&self, src: &[bool], dst: &mut Mask) {
        for (i, &v) in src.iter().enumerate() {
            if v {
                let s = self.scan_index(i);
                dst.data[s] = true;
            }
        }
    }
}

/// Grow an inclusive box by `margin` voxels per axis, clipped to `shape`.
pub(crate) fn grow_box(
    lo: [usize; 3],
    hi: [usize; 3],
    margin: [usize; 3],
    shape: [usize; 3],
) -> ([usize; 3], [usize; 3]) {
    (
        [0, 1, 2].map(|a| lo[a].saturating_sub(margin[a])),
        [0, 1, 2].map(|a| (hi[a] + margin[a]).min(shape[a].saturating_sub(1))),
    )
}
