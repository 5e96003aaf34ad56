//! Resampling grids in patient millimetres: an LPS-aligned coarse grid for finding the spine, and the
//! vertebra-aligned frame (superior along the spine, posterior, left) in which every anatomical rule works.
//! Both are independent of how the scanner stored the array (prone, supine, decubitus, tilted gantry).

use crate::volume::{CtVolume, Lps, Vec3};
use ndarray::{Array3, Axis, Zip};
use rayon::prelude::*;

/// Value given to samples outside the scan: below any real HU (scanners pad with -1024 or -2048), so it
/// can never be mistaken for air.
pub const OUTSIDE_HU: f32 = -4000.0;

/// An orthonormal sampling grid: index `[k, j, i]` sits at `origin + k*step*axes[0] + j*step*axes[1] + i*step*axes[2]`.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub origin: Lps,
    /// Unit LPS vectors of index axes 0, 1, 2. For the vertebra frame: superior (along the spine), posterior,
    /// left.
    pub axes: [Vec3; 3],
    /// Step along each axis, mm.
    pub step: [f64; 3],
    pub dims: [usize; 3],
}

impl Frame {
    pub fn index_to_lps(&self, idx: [f64; 3]) -> Lps {
        let mut p = self.origin;
        for ((ax, i), s) in self.axes.iter().zip(idx).zip(self.step) {
            p = p + *ax * (i * s);
        }
        p
    }

    pub fn lps_to_index(&self, p: Lps) -> [f64; 3] {
        let d = p - self.origin;
        [0, 1, 2].map(|a| d.dot(self.axes[a]) / self.step[a])
    }

    /// Voxels of the frame, `[k, j, i]` continuous index, inside the grid.
    pub fn contains(&self, idx: [f64; 3]) -> bool {
        (0..3).all(|a| idx[a] >= -0.5 && idx[a] <= self.dims[a] as f64 - 0.5)
    }

    pub fn voxel_ml(&self) -> f64 {
        self.step[0] * self.step[1] * self.step[2] / 1000.0
    }

    /// Trilinear resampling of the CT onto this frame.
    pub fn resample(&self, ct: &CtVolume) -> Array3<f32> {
        let g = &ct.geometry;
        let base = g.lps_to_index(self.origin);
        let cols: [[f64; 3]; 3] = [0, 1, 2].map(|a| {
            let q = g.lps_to_index(self.origin + self.axes[a] * self.step[a]);
            [q[0] - base[0], q[1] - base[1], q[2] - base[2]]
        });
        let shape = ct.shape();
        // Every sample is written below.
        let mut out = crate::volume::huge::zeroed::<f32>(self.dims);
        let data = ct.data.as_slice();
        out.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(k, mut plane)| {
            for (j, mut line) in plane.outer_iter_mut().enumerate() {
                let (kf, jf) = (k as f64, j as f64);
                // The same left-to-right sum per sample, its first three terms shared along the line.
                let row = [0, 1, 2].map(|d| base[d] + kf * cols[0][d] + jf * cols[1][d]);
                for (i, o) in line.iter_mut().enumerate() {
                    let fi = i as f64;
                    let c = [0, 1, 2].map(|d| row[d] + fi * cols[2][d]);
                    *o = match data {
                        Some(d) => trilinear_flat(d, shape, c),
                        None => trilinear(&ct.data, shape, c),
                    };
                }
            }
        });
        out
    }

    /// For every voxel of the scan inside this frame's box, the frame voxel it falls in (nearest neighbour).
    /// Calls `f(scan_index, frame_index)`; work is limited to the scan's bounding box of the frame.
    pub fn scan_voxels_in_frame(&self, ct_geom: &crate::volume::Geometry, shape: [usize; 3]) -> ScanBox {
        let mut lo = [f64::MAX; 3];
        let mut hi = [f64::MIN; 3];
        for c in 0..8 {
            let idx = [0, 1, 2].map(|a| if c >> a & 1 == 1 { self.dims[a] as f64 } else { -1.0 });
            let q = ct_geom.lps_to_index(self.index_to_lps(idx));
            for a in 0..3 {
                lo[a] = lo[a].min(q[a]);
                hi[a] = hi[a].max(q[a]);
            }
        }
        let lo = [0, 1, 2].map(|a| lo[a].floor().max(0.0).min(shape[a] as f64) as usize);
        let hi = [0, 1, 2].map(|a| (hi[a].ceil() + 1.0).max(0.0).min(shape[a] as f64) as usize);
        ScanBox { lo, hi }
    }
}

/// A box of scan indices `[lo, hi)`.
#[derive(Clone, Copy, Debug)]
pub struct ScanBox {
    pub lo: [usize; 3],
    pub hi: [usize; 3],
}

/// `v.floor()` for finite `|v| < 2^52` (callers test the range first) without a libm call: the baseline
/// x86-64 target has no rounding instruction, and the resampling floors three coordinates per sample.
/// Same value (a zero may come out as +0.0 where `floor` gives -0.0; both index the same voxel).
#[inline]
fn floor_in_range(v: f64) -> f64 {
    let t = v as i64 as f64;
    if t > v {
        t - 1.0
    } else {
        t
    }
}

/// `v.round()` (halves away from zero) without a libm call, for the nearest-neighbour index of every scan
/// voxel. Same value: `v - trunc(v)` is exact in floating point (a zero may come out as +0.0 where `round`
/// gives -0.0; both index the same voxel); NaN and huge values go to `round` itself.
#[inline]
fn round_half_away(v: f64) -> f64 {
    if v.is_nan() || v.abs() >= 4.0e15 {
        return v.round();
    }
    let t = v as i64 as f64;
    let frac = v - t;
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

/// `trilinear` on a standard-layout array's flat data: the same result without per-sample index checks
/// of the 3-D view (the resampling is the largest pass over the scan).
fn trilinear_flat(data: &[i16], shape: [usize; 3], c: [f64; 3]) -> f32 {
    let mut off = 0usize;
    let mut step = [0usize; 3];
    let mut t = [0f32; 3];
    let strides = [shape[1] * shape[2], shape[2], 1];
    for a in 0..3 {
        let n = shape[a];
        if !(c[a] > -0.5 && c[a] < n as f64 - 0.5) {
            return OUTSIDE_HU;
        }
        if n > 1 {
            let f = floor_in_range(c[a]).clamp(0.0, (n - 2) as f64);
            off += f as usize * strides[a];
            step[a] = strides[a];
            t[a] = (c[a] - f).clamp(0.0, 1.0) as f32;
        }
    }
    let get =
        |dz: usize, dy: usize, dx: usize| f32::from(data[off + dz * step[0] + dy * step[1] + dx * step[2]]);
    let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
    let c00 = lerp(get(0, 0, 0), get(0, 0, 1), t[2]);
    let c01 = lerp(get(0, 1, 0), get(0, 1, 1), t[2]);
    let c10 = lerp(get(1, 0, 0), get(1, 0, 1), t[2]);
    let c11 = lerp(get(1, 1, 0), get(1, 1, 1), t[2]);
    lerp(lerp(c00, c01, t[1]), lerp(c10, c11, t[1]), t[0])
}

fn trilinear(data: &Array3<i16>, shape: [usize; 3], c: [f64; 3]) -> f32 {
    let mut i0 = [0usize; 3];
    let mut t = [0f32; 3];
    for a in 0..3 {
        let n = shape[a];
        if !(c[a] > -0.5 && c[a] < n as f64 - 0.5) {
            return OUTSIDE_HU;
        }
        let f = c[a].floor().clamp(0.0, (n.max(2) - 2) as f64);
        if n == 1 {
            i0[a] = 0;
            t[a] = 0.0;
        } else {
            i0[a] = f as usize;
            t[a] = (c[a] - f).clamp(0.0, 1.0) as f32;
        }
    }
    let get = |dz: usize, dy: usize, dx: usize| {
        let z = (i0[0] + dz).min(shape[0] - 1);
        let y = (i0[1] + dy).min(shape[1] - 1);
        let x = (i0[2] + dx).min(shape[2] - 1);
        f32::from(data[(z, y, x)])
    };
    let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
    let c00 = lerp(get(0, 0, 0), get(0, 0, 1), t[2]);
    let c01 = lerp(get(0, 1, 0), get(0, 1, 1), t[2]);
    let c10 = lerp(get(1, 0, 0), get(1, 0, 1), t[2]);
    let c11 = lerp(get(1, 1, 0), get(1, 1, 1), t[2]);
    lerp(lerp(c00, c01, t[1]), lerp(c10, c11, t[1]), t[0])
}

/// The first `x` in `lo..hi` where `pred` holds, for a `pred` that is false and then true along the range;
/// `hi` when it never holds.
fn first(lo: usize, hi: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut a, mut b) = (lo, hi);
    while a < b {
        let m = a + (b - a) / 2;
        if pred(m) {
            b = m;
        } else {
            a = m + 1;
        }
    }
    a
}

/// The affine map from scan index to frame index: the frame index of scan voxel (0, 0, 0) and how it moves
/// per step along each scan axis.
fn scan_to_frame_affine(frame: &Frame, g: &crate::volume::Geometry) -> ([f64; 3], [[f64; 3]; 3]) {
    let base = frame.lps_to_index(g.index_to_lps([0.0; 3]));
    let cols: [[f64; 3]; 3] = [0, 1, 2].map(|a| {
        let mut e = [0.0; 3];
        e[a] = 1.0;
        let q = frame.lps_to_index(g.index_to_lps(e));
        [q[0] - base[0], q[1] - base[1], q[2] - base[2]]
    });
    (base, cols)
}

/// Nearest-neighbour transfer of a frame label array to the scan grid (0 outside the frame).
pub fn labels_to_scan(frame: &Frame, labels: &Array3<u8>, ct: &CtVolume) -> Array3<u8> {
    let shape = ct.shape();
    let mut out = crate::volume::huge::zeroed::<u8>(shape);
    let bx = frame.scan_voxels_in_frame(&ct.geometry, shape);
    let (base, cols) = scan_to_frame_affine(frame, &ct.geometry);
    let d = frame.dims;
    Zip::indexed(out.axis_iter_mut(Axis(0))).par_for_each(|z, mut plane| {
        if z < bx.lo[0] || z >= bx.hi[0] {
            return;
        }
        for y in bx.lo[1]..bx.hi[1] {
            let row = [0, 1, 2].map(|a| base[a] + z as f64 * cols[0][a] + y as f64 * cols[1][a]);
            // Along the row each rounded frame index is monotonic in x (so is every rounding step of
            // `row + x * step`), so the voxels inside the frame form one run: found by bisection, the
            // voxels before and after it are skipped rather than tested.
            let (mut x0, mut x1) = (bx.lo[2], bx.hi[2]);
            for a in 0..3 {
                let at = |x: usize| round_half_away(row[a] + x as f64 * cols[2][a]);
                let top = d[a] as f64;
                let (enter, leave) = if cols[2][a] < 0.0 {
                    (first(bx.lo[2], bx.hi[2], |x| at(x) < top), first(bx.lo[2], bx.hi[2], |x| at(x) < 0.0))
                } else {
                    (first(bx.lo[2], bx.hi[2], |x| at(x) >= 0.0), first(bx.lo[2], bx.hi[2], |x| at(x) >= top))
                };
                x0 = x0.max(enter);
                x1 = x1.min(leave);
            }
            for x in x0..x1.max(x0) {
                let f = [0, 1, 2].map(|a| row[a] + x as f64 * cols[2][a]);
                let r = f.map(round_half_away);
                if (0..3).all(|a| r[a] >= 0.0 && r[a] < d[a] as f64) {
                    plane[(y, x)] = labels[(r[0] as usize, r[1] as usize, r[2] as usize)];
                }
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_transfer_skips_only_voxels_outside_the_frame() {
        use crate::volume::{Geometry, Spacing, Volume};
        let g = Geometry::axial_hfs(Lps([-20.0, -15.0, -8.0]), Spacing { slice: 2.5, row: 0.7, column: 0.7 });
        let ct: CtVolume = Volume::new(Array3::zeros((9, 50, 60)), g);
        // A tilted frame (axes turned about two axes) partly outside the scan.
        let (a, b) = (0.3f64, -0.5f64);
        let ax0 = Vec3([0.0, a.sin(), a.cos()]);
        let ax1 = Vec3([b.cos(), a.cos() * b.sin(), -a.sin() * b.sin()]).normalized().unwrap_or(ax0);
        let ax2 = ax0.cross(ax1);
        for (origin, dims) in
            [(Lps([-12.0, -9.0, -3.0]), [13, 21, 17]), (Lps([-40.0, -30.0, -20.0]), [30, 40, 50])]
        {
            let frame = Frame { origin, axes: [ax0, ax1, ax2], step: [1.25; 3], dims };
            let labels = Array3::from_shape_fn(dims, |(k, j, i)| ((k * 7 + j * 3 + i) % 5) as u8);
            let fast = labels_to_scan(&frame, &labels, &ct);
            // Every voxel of the scan tested, as before.
            let (base, cols) = scan_to_frame_affine(&frame, &g);
            let want = Array3::from_shape_fn(ct.shape(), |(z, y, x)| {
                let f = [0, 1, 2]
                    .map(|a| base[a] + z as f64 * cols[0][a] + y as f64 * cols[1][a] + x as f64 * cols[2][a]);
                let r = f.map(|v| v.round());
                if (0..3).all(|a| r[a] >= 0.0 && r[a] < dims[a] as f64) {
                    labels[(r[0] as usize, r[1] as usize, r[2] as usize)]
                } else {
                    0
                }
            });
            assert!(want.iter().filter(|&&l| l != 0).count() > 100);
            assert_eq!(fast, want);
        }
    }

    #[test]
    fn fast_floor_and_round_give_the_libm_values() {
        let mut vals =
            vec![0.0, -0.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999999999999994, -0.49999999999999994];
        vals.extend([1e-300, -1e-300, 511.5, 511.49999999999994, 4503599627370495.5, -4503599627370495.5]);
        let mut x = 0.1234f64;
        for _ in 0..2000 {
            x = (x * 7919.31).fract() * 1200.0 - 600.0;
            vals.extend([x, x.round(), x.floor() + 0.5]);
        }
        for v in vals {
            assert_eq!(round_half_away(v), v.round(), "round {v}");
            if v.abs() < 4.0e15 {
                assert_eq!(floor_in_range(v), v.floor(), "floor {v}");
            }
        }
        assert!(round_half_away(f64::NAN).is_nan());
        assert_eq!(round_half_away(1e300), 1e300);
    }
}
