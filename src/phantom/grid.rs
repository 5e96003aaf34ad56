//! The patient model rasterised once per case: a fine grid (0.5 mm) around the spine, where cement,
//! leaks and partial volume matter, and a coarse grid (2 mm) over the whole trunk.

use super::anatomy::{Anatomy, Tissue};
use rayon::prelude::*;

/// An axis-aligned grid in the anatomy frame; data is `[z][y][x]`.
#[derive(Clone, Debug)]
pub struct GridSpec {
    /// Anatomy-frame position (x, y, z) of voxel (0, 0, 0).
    pub origin: [f64; 3],
    pub h: f64,
    /// (nz, ny, nx)
    pub dims: [usize; 3],
}

impl GridSpec {
    /// The grid of step `h` covering x in [-x_half, x_half], y in `y`, z in `z` (anatomy frame, mm).
    pub fn covering(x_half: f64, y: [f64; 2], z: [f64; 2], h: f64) -> GridSpec {
        let dims = [
            ((z[1] - z[0]) / h).ceil() as usize + 1,
            ((y[1] - y[0]) / h).ceil() as usize + 1,
            (2.0 * x_half / h).ceil() as usize + 1,
        ];
        GridSpec { origin: [-x_half, y[0], z[0]], h, dims }
    }

    pub fn len(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Anatomy-frame centre of linear index `i`.
    pub fn point(&self, i: usize) -> [f64; 3] {
        let nx = self.dims[2];
        let ny = self.dims[1];
        let x = i % nx;
        let y = (i / nx) % ny;
        let z = i / (nx * ny);
        self.point_zyx(z, y, x)
    }
    pub fn point_zyx(&self, z: usize, y: usize, x: usize) -> [f64; 3] {
        [
            self.origin[0] + x as f64 * self.h,
            self.origin[1] + y as f64 * self.h,
            self.origin[2] + z as f64 * self.h,
        ]
    }
    /// Linear index of the voxel nearest to `p`, if inside.
    pub fn nearest(&self, p: [f64; 3]) -> Option<usize> {
        let fx = ((p[0] - self.origin[0]) / self.h).round();
        let fy = ((p[1] - self.origin[1]) / self.h).round();
        let fz = ((p[2] - self.origin[2]) / self.h).round();
        if fx < 0.0 || fy < 0.0 || fz < 0.0 {
            return None;
        }
        let (x, y, z) = (fx as usize, fy as usize, fz as usize);
        if x >= self.dims[2] || y >= self.dims[1] || z >= self.dims[0] {
            return None;
        }
        Some((z * self.dims[1] + y) * self.dims[2] + x)
    }
    /// `(z, y, x)` of a linear index.
    pub fn zyx(&self, i: usize) -> [usize; 3] {
        let nx = self.dims[2];
        let ny = self.dims[1];
        [i / (nx * ny), (i / nx) % ny, i % nx]
    }
    pub fn index(&self, z: usize, y: usize, x: usize) -> usize {
        (z * self.dims[1] + y) * self.dims[2] + x
    }
    pub fn contains(&self, p: [f64; 3], margin: f64) -> bool {
        (0..3).all(|k| {
            let n = self.dims[2 - k] as f64;
            let lo = self.origin[k] - margin;
            let hi = self.origin[k] + (n - 1.0) * self.h + margin;
            p[k] >= lo && p[k] <= hi
        })
    }
}

/// Fine model around the spine: HU, tissue class and anatomy label per voxel.
pub struct FineGrid {
    pub spec: GridSpec,
    pub hu: Vec<f32>,
    pub tissue: Vec<Tissue>,
    pub label: Vec<u8>,
}

/// Coarse HU and tissue class over the trunk.
pub struct CoarseGrid {
    pub spec: GridSpec,
    pub hu: Vec<f32>,
    pub tissue: Vec<Tissue>,
}

pub fn build_fine(anat: &Anatomy, z_lo: f64, z_hi: f64, h: f64) -> FineGrid {
    let t = anat.target();
    let x_half = (t.a + 38.0).max(58.0);
    let y_lo = -t.b - 22.0;
    let y_hi = t.canal_centre_y() + t.canal_d / 2.0 + t.lam_t + t.sp_len + 12.0;
    let spec = GridSpec::covering(x_half, [y_lo, y_hi], [z_lo, z_hi], h);
    let dims = spec.dims;
    let plane = dims[1] * dims[2];
    let planes: Vec<(Vec<f32>, Vec<Tissue>, Vec<u8>)> = (0..dims[0])
        .into_par_iter()
        .map(|z| {
            let mut hu = Vec::with_capacity(plane);
            let mut ti = Vec::with_capacity(plane);
            let mut la = Vec::with_capacity(plane);
            for y in 0..dims[1] {
                for x in 0..dims[2] {
                    let s = anat.eval(spec.point_zyx(z, y, x));
                    hu.push(s.hu);
                    ti.push(s.tissue);
                    la.push(s.label);
                }
            }
            (hu, ti, la)
        })
        .collect();
    let mut hu = Vec::with_capacity(spec.len());
    let mut tissue = Vec::with_capacity(spec.len());
    let mut label = Vec::with_capacity(spec.len());
    for (a, b, c) in planes {
        hu.extend(a);
        tissue.extend(b);
        label.extend(c);
    }
    FineGrid { spec, hu, tissue, label }
}

pub fn build_coarse(anat: &Anatomy, z_lo: f64, z_hi: f64, h: f64) -> CoarseGrid {
    let tor = &anat.torso;
    let x_half = tor.half_width + 4.0;
    let y_lo = tor.centre_y - tor.half_depth - 4.0;
    let y_hi = tor.centre_y + tor.half_depth + 4.0;
    let spec = GridSpec::covering(x_half, [y_lo, y_hi], [z_lo, z_hi], h);
    let dims = spec.dims;
    let plane = dims[1] * dims[2];
    let planes: Vec<(Vec<f32>, Vec<Tissue>)> = (0..dims[0])
        .into_par_iter()
        .map(|z| {
            let mut hu = Vec::with_capacity(plane);
            let mut ti = Vec::with_capacity(plane);
            for y in 0..dims[1] {
                for x in 0..dims[2] {
                    let s = anat.eval(spec.point_zyx(z, y, x));
                    hu.push(s.hu);
                    ti.push(s.tissue);
                }
            }
            (hu, ti)
        })
        .collect();
    let mut hu = Vec::with_capacity(spec.len());
    let mut tissue = Vec::with_capacity(spec.len());
    for (a, b) in planes {
        hu.extend(a);
        tissue.extend(b);
    }
    CoarseGrid { spec, hu, tissue }
}

impl CoarseGrid {
    /// Trilinear HU at an anatomy-frame point; air outside.
    pub fn sample(&self, p: [f64; 3]) -> f32 {
        let s = &self.spec;
        let f = [(p[0] - s.origin[0]) / s.h, (p[1] - s.origin[1]) / s.h, (p[2] - s.origin[2]) / s.h];
        let n = [s.dims[2], s.dims[1], s.dims[0]];
        let mut i0 = [0usize; 3];
        let mut w = [0.0f32; 3];
        for k in 0..3 {
            if !(f[k] >= 0.0 && f[k] <= (n[k] - 1) as f64) {
                return -1000.0;
            }
            let fl = f[k].floor().min((n[k].max(2) - 2) as f64);
            i0[k] = fl as usize;
            w[k] = (f[k] - fl) as f32;
        }
        let mut acc = 0.0;
        for dz in 0..2 {
            for dy in 0..2 {
                for dx in 0..2 {
                    let (x, y, z) =
                        ((i0[0] + dx).min(n[0] - 1), (i0[1] + dy).min(n[1] - 1), (i0[2] + dz).min(n[2] - 1));
                    let wt = (if dx == 1 { w[0] } else { 1.0 - w[0] })
                        * (if dy == 1 { w[1] } else { 1.0 - w[1] })
                        * (if dz == 1 { w[2] } else { 1.0 - w[2] });
                    acc += wt * self.hu[s.index(z, y, x)];
                }
            }
        }
        acc
    }
}
