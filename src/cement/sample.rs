//! Trilinear sampling of a volume at LPS positions, Gaussian smoothing, and resampling another scan onto the
//! crop through a rigid transform. Volumes are always compared by patient position, never by array index.

use super::grid::Grid;
use super::register::RigidTransform;
use crate::volume::{Geometry, Lps};
use rayon::prelude::*;

/// Reads a flat `[slice, row, column]` array (stored HU, or smoothed HU) at continuous positions.
pub(crate) struct Sampler<'a, T = f32> {
    data: &'a [T],
    shape: [usize; 3],
    geometry: Geometry,
    /// Rows: d(index a)/d(LPS), the inverse of the index-to-LPS matrix.
    inv: [[f64; 3]; 3],
}

impl<'a, T: Copy + Into<f32>> Sampler<'a, T> {
    /// `None` when the geometry is degenerate (zero spacing or parallel axes).
    pub fn new(data: &'a [T], shape: [usize; 3], geometry: Geometry) -> Option<Sampler<'a, T>> {
        let s = geometry.spacing.zyx();
        let m = [0, 1, 2].map(|a| geometry.axes[a] * s[a]);
        // Inverse of the matrix with columns m[a]: rows are the reciprocal basis.
        let det = m[0].dot(m[1].cross(m[2]));
        if det.is_nan() || det.abs() <= 1e-12 || data.len() != shape[0] * shape[1] * shape[2] {
            return None;
        }
        let r = [m[1].cross(m[2]), m[2].cross(m[0]), m[0].cross(m[1])].map(|v| (v * (1.0 / det)).0);
        Some(Sampler { data, shape, geometry, inv: r })
    }

    /// Continuous index of an LPS point.
    pub fn index_of(&self, p: Lps) -> [f64; 3] {
        let d = p - self.geometry.origin;
        self.inv.map(|row| row[0] * d.0[0] + row[1] * d.0[1] + row[2] * d.0[2])
    }

    /// Interpolation cell along one axis: lower index, upper index, weight of the upper one.
    fn cell(u: f64, n: usize) -> Option<(usize, usize, f64)> {
        // Half a voxel beyond the outer centres still belongs to the volume (clamped).
        if !(u >= -0.5 && u <= n as f64 - 0.5) {
            return None;
        }
        if n == 1 {
            return Some((0, 0, 0.0));
        }
        let u = u.clamp(0.0, (n - 1) as f64);
        let i0 = (u.floor() as usize).min(n - 2);
        Some((i0, i0 + 1, u - i0 as f64))
    }

    /// The 8 stored values of the interpolation cell around a continuous index, corner `k` taking the upper
    /// index along z when bit 2 is set, along y for bit 1, along x for bit 0; and the upper corners' weights
    /// `[fz, fy, fx]`. `None` outside the volume.
    fn corners(&self, u: [f64; 3]) -> Option<([f32; 8], [f64; 3])> {
        let (z0, z1, fz) = Self::cell(u[0], self.shape[0])?;
        let (y0, y1, fy) = Self::cell(u[1], self.shape[1])?;
        let (x0, x1, fx) = Self::cell(u[2], self.shape[2])?;
        let (ny, nx) = (self.shape[1], self.shape[2]);
        let corner = |k: usize| {
            let z = if k & 4 == 0 { z0 } else { z1 };
            let y = if k & 2 == 0 { y0 } else { y1 };
            let x = if k & 1 == 0 { x0 } else { x1 };
            self.data[(z * ny + y) * nx + x].into()
        };
        Some((std::array::from_fn(corner), [fz, fy, fx]))
    }

    /// Interpolated value and its gradient in HU per LPS millimetre.
    pub fn value_grad(&self, p: Lps) -> Option<(f64, [f64; 3])> {
        let (c, [fz, fy, fx]) = self.corners(self.index_of(p))?;
        let [c000, c001, c010, c011, c100, c101, c110, c111] = c.map(f64::from);
        let c00 = c000 + (c001 - c000) * fx;
        let c01 = c010 + (c011 - c010) * fx;
        let c10 = c100 + (c101 - c100) * fx;
        let c11 = c110 + (c111 - c110) * fx;
        let c0 = c00 + (c01 - c00) * fy;
        let c1 = c10 + (c11 - c10) * fy;
        let v = c0 + (c1 - c0) * fz;
        let dz = c1 - c0;
        let dy = (c01 - c00) * (1.0 - fz) + (c11 - c10) * fz;
        let dx = ((c001 - c000) * (1.0 - fy) + (c011 - c010) * fy) * (1.0 - fz)
            + ((c101 - c100) * (1.0 - fy) + (c111 - c110) * fy) * fz;
        let du = [dz, dy, dx];
        let mut g = [0.0; 3];
        for (a, row) in self.inv.iter().enumerate() {
            for k in 0..3 {
                g[k] += du[a] * row[k];
            }
        }
        Some((v, g))
    }

    pub fn value(&self, p: Lps) -> Option<f32> {
        self.value_at_index(self.index_of(p))
    }

    /// Trilinear value at a continuous index, and the largest stored value among the corners that carry
    /// more than 2% of the weight.
    pub fn value_and_max_at_index(&self, u: [f64; 3]) -> Option<(f32, f32)> {
        let (k, [fz, fy, fx]) = self.corners(u)?;
        let (fx, fy, fz) = (fx as f32, fy as f32, fz as f32);
        let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
        let c = [k[0], k[1], k[2], k[3]];
        let d = [k[4], k[5], k[6], k[7]];
        let c0 = lerp(lerp(c[0], c[1], fx), lerp(c[2], c[3], fx), fy);
        let c1 = lerp(lerp(d[0], d[1], fx), lerp(d[2], d[3], fx), fy);
        const MIN_W: f32 = 0.02;
        let mut m = f32::NEG_INFINITY;
        for (k, (&a, &b)) in c.iter().zip(d.iter()).enumerate() {
            let wx = if k & 1 == 1 { fx } else { 1.0 - fx };
            let wy = if k & 2 == 2 { fy } else { 1.0 - fy };
            let w = wx * wy;
            if w * (1.0 - fz) > MIN_W {
                m = m.max(a);
            }
            if w * fz > MIN_W {
                m = m.max(b);
            }
        }
        Some((lerp(c0, c1, fz), m))
    }

    /// Trilinear value at a continuous index of this volume.
    pub fn value_at_index(&self, u: [f64; 3]) -> Option<f32> {
        let (c, [fz, fy, fx]) = self.corners(u)?;
        let (fx, fy, fz) = (fx as f32, fy as f32, fz as f32);
        let lerp = |a: f32, b: f32, t: f32| a + (b - a) * t;
        let c0 = lerp(lerp(c[0], c[1], fx), lerp(c[2], c[3], fx), fy);
        let c1 = lerp(lerp(c[4], c[5], fx), lerp(c[6], c[7], fx), fy);
        Some(lerp(c0, c1, fz))
    }
}

/// Another scan sampled on the crop's voxels.
pub(crate) struct Resampled {
    /// Trilinear value at `t(p)` for each crop voxel position `p`, NaN where `t(p)` falls outside that scan.
    pub value: Vec<f32>,
    /// Largest of the stored voxels the interpolation drew on (weight above 2%), NaN outside. Between thick
    /// slices a thin object (a needle grazing a slice, an endplate) is not linear, so the interpolated
    /// value can be far below what the earlier scan really had there; only a rise above this bound is
    /// certain to be new.
    pub support_max: Vec<f32>,
}

/// Sample `moving` at `t(p)` for every crop voxel `p`.
pub(crate) fn resample<T: Copy + Into<f32> + Sync>(
    moving: &Sampler<T>,
    t: &RigidTransform,
    grid: &Grid,
) -> Resampled {
    let plane = grid.shape[1] * grid.shape[2];
    let mut value = vec![f32::NAN; grid.len()];
    let mut support_max = vec![f32::NAN; grid.len()];
    // Index positions advance linearly along a row: one affine map from crop index to moving index.
    let at = |u: [f64; 3]| moving.index_of(t.apply(grid.geometry.index_to_lps(u)));
    let o = at([0.0; 3]);
    let steps = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]].map(|e| {
        let p = at(e);
        [p[0] - o[0], p[1] - o[1], p[2] - o[2]]
    });
    value.par_chunks_mut(plane.max(1)).zip(support_max.par_chunks_mut(plane.max(1))).enumerate().for_each(
        |(z, (vals, maxs))| {
            for y in 0..grid.shape[1] {
                for x in 0..grid.shape[2] {
                    let u = [0, 1, 2].map(|a| {
                        o[a] + steps[0][a] * z as f64 + steps[1][a] * y as f64 + steps[2][a] * x as f64
                    });
                    if let Some((v, m)) = moving.value_and_max_at_index(u) {
                        let k = y * grid.shape[2] + x;
                        vals[k] = v;
                        maxs[k] = m;
                    }
                }
            }
        },
    );
    Resampled { value, support_max }
}

/// Normalised Gaussian taps out to 3 sigma, for sigmas up to 2 voxels; wider ones are three box passes.
fn gaussian_taps(sigma: f64) -> Option<Vec<f32>> {
    (sigma <= 2.0).then(|| {
        let r = (3.0 * sigma).ceil() as isize;
        let k: Vec<f64> = (-r..=r).map(|i| (-0.5 * (i as f64 / sigma).powi(2)).exp()).collect();
        let sum: f64 = k.iter().sum();
        k.iter().map(|w| (w / sum) as f32).collect()
    })
}

/// Half-width of the three boxes that stand in for a Gaussian of `sigma`: three boxes of width w have
/// variance (w^2 - 1) / 4.
fn box_radius(sigma: f64) -> usize {
    ((((4.0 * sigma * sigma + 1.0).sqrt() - 1.0) / 2.0).round() as usize).max(1)
}

/// One axis `smooth` filters: its length and the exact kernel (sigma up to 2 voxels) or the box radius.
struct AxisPass {
    axis: usize,
    n: usize,
    kernel: Option<Vec<f32>>,
    r: usize,
}

/// The axes `smooth` filters, in order: those with a sigma of at least 0.2 voxels and 2 or more samples.
fn axis_passes(shape: [usize; 3], sigma: [f64; 3]) -> impl Iterator<Item = AxisPass> {
    (0..3).filter(move |&a| sigma[a] >= 0.2 && shape[a] >= 2).map(move |axis| AxisPass {
        axis,
        n: shape[axis],
        kernel: gaussian_taps(sigma[axis]),
        r: box_radius(sigma[axis]),
    })
}

/// Gaussian smoothing with per-axis sigma in voxels; edges are clamped. Up to 2 voxels the exact kernel,
/// above it three box filters (running sums, cost independent of sigma, sigma within ~15%).
///
/// Lanes along the smoothed axis are filtered side by side, a row of the last axis at a time, so the
/// compiler vectorises across lanes; every sample is computed with the same operations in the same order as
/// filtering its lane alone (`convolve`, `box_pass`), so the result is the same to the bit.
pub(crate) fn smooth(data: &[f32], shape: [usize; 3], sigma: [f64; 3]) -> Vec<f32> {
    // Two buffers in turn, the input read in place: every sample of an axis's output is written below, so
    // the output buffer need not start as a copy of anything.
    let mut cur: Option<Vec<f32>> = None;
    let mut spare: Option<Vec<f32>> = None;
    for AxisPass { axis, n, kernel, r } in axis_passes(shape, sigma) {
        // `width` adjacent lanes of length `n`: lane e's sample x at `x * stride + e` in `inp` and `out`.
        let filter = |inp: &[f32], istride: usize, out: &mut [f32], ostride: usize, width: usize| {
            let lanes = Lanes { n, width, istride, ostride };
            match &kernel {
                Some(k) => lanes.convolve(inp, out, k),
                None => lanes.box3(inp, out, r),
            }
        };
        let inner: usize = shape[axis + 1..].iter().product();
        let block = n * inner;
        let src = cur.as_deref().unwrap_or(data);
        let mut next = spare.take().unwrap_or_else(|| vec![0.0f32; data.len()]);
        if block < src.len() || inner == 1 {
            next.par_chunks_mut(block)
                .zip(src.par_chunks(block))
                .for_each(|(o, i)| filter(i, inner, o, inner, inner));
        } else {
            // One block (the first axis): split its rows into column ranges instead.
            const COLUMNS: usize = 512;
            let starts: Vec<usize> = (0..inner).step_by(COLUMNS).collect();
            let parts: Vec<(usize, usize, Vec<f32>)> = starts
                .into_par_iter()
                .map(|c0| {
                    let width = COLUMNS.min(inner - c0);
                    let mut o = vec![0.0f32; n * width];
                    filter(&src[c0..], inner, &mut o, width, width);
                    (c0, width, o)
                })
                .collect();
            for (c0, width, o) in parts {
                for x in 0..n {
                    next[x * inner + c0..x * inner + c0 + width]
                        .copy_from_slice(&o[x * width..(x + 1) * width]);
                }
            }
        }
        spare = cur.replace(next);
    }
    cur.unwrap_or_else(|| data.to_vec())
}

/// Adjacent lanes of one axis: `width` lanes of `n` samples, sample x of lane e at `x * stride + e`.
struct Lanes {
    n: usize,
    width: usize,
    istride: usize,
    ostride: usize,
}

impl Lanes {
    /// `convolve` on each lane.
    fn convolve(&self, inp: &[f32], out: &mut [f32], k: &[f32]) {
        let (n, w) = (self.n as isize, self.width);
        let r = (k.len() / 2) as isize;
        let mut acc = vec![0.0f32; w];
        for x in 0..n {
            acc.iter_mut().for_each(|a| *a = 0.0);
            for (j, kv) in k.iter().enumerate() {
                let row = (x + j as isize - r).clamp(0, n - 1) as usize * self.istride;
                for (a, v) in acc.iter_mut().zip(&inp[row..row + w]) {
                    *a += kv * v;
                }
            }
            let o = x as usize * self.ostride;
            out[o..o + w].copy_from_slice(&acc);
        }
    }

    /// Three `box_pass`es on each lane.
    fn box3(&self, inp: &[f32], out: &mut [f32], r: usize) {
        let (n, w) = (self.n, self.width);
        let (mut a, mut b) = (vec![0.0f32; n * w], vec![0.0f32; n * w]);
        let packed = |ostride| Lanes { n, width: w, istride: w, ostride };
        Lanes { ostride: w, ..*self }.box_pass(inp, &mut a, r);
        packed(w).box_pass(&a, &mut b, r);
        packed(self.ostride).box_pass(&b, out, r);
    }

    /// `box_pass` on each lane.
    fn box_pass(&self, src: &[f32], dst: &mut [f32], r: usize) {
        let (n, w) = (self.n as isize, self.width);
        let r = r as isize;
        let at = |i: isize, e: usize| src[i.clamp(0, n - 1) as usize * self.istride + e] as f64;
        let mut acc: Vec<f64> = (0..w).map(|e| (-r..=r).map(|i| at(i, e)).sum()).collect();
        let width = (2 * r + 1) as f64;
        for k in 0..n {
            let o = k as usize * self.ostride;
            for (d, a) in dst[o..o + w].iter_mut().zip(&acc) {
                *d = (a / width) as f32;
            }
            let add = (k + r + 1).clamp(0, n - 1) as usize * self.istride;
            let sub = (k - r).clamp(0, n - 1) as usize * self.istride;
            for ((a, p), m) in acc.iter_mut().zip(&src[add..add + w]).zip(&src[sub..sub + w]) {
                *a += *p as f64 - *m as f64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Lps, Spacing, Vec3};

    /// Convolution with an odd, centred kernel; clamped edges.
    fn convolve(src: &[f32], dst: &mut [f32], k: &[f32]) {
        let n = src.len() as isize;
        let r = (k.len() / 2) as isize;
        for (i, d) in dst.iter_mut().enumerate() {
            let mut acc = 0.0f32;
            for (j, w) in k.iter().enumerate() {
                acc += w * src[(i as isize + j as isize - r).clamp(0, n - 1) as usize];
            }
            *d = acc;
        }
    }

    /// Mean over `[k - r, k + r]` with clamped edges.
    fn box_pass(src: &[f32], dst: &mut [f32], r: usize) {
        let n = src.len() as isize;
        let r = r as isize;
        let at = |i: isize| src[i.clamp(0, n - 1) as usize] as f64;
        let mut acc: f64 = (-r..=r).map(at).sum();
        let w = (2 * r + 1) as f64;
        for k in 0..n {
            dst[k as usize] = (acc / w) as f32;
            acc += at(k + r + 1) - at(k - r);
        }
    }

    /// The lane-at-a-time smoothing that `smooth` must reproduce to the bit.
    fn smooth_reference(data: &[f32], shape: [usize; 3], sigma: [f64; 3]) -> Vec<f32> {
        let mut cur = data.to_vec();
        let strides = [shape[1] * shape[2], shape[2], 1];
        for AxisPass { axis, n, kernel, r } in axis_passes(shape, sigma) {
            let st = strides[axis];
            let others: Vec<usize> = (0..3).filter(|&a| a != axis).collect();
            let src = cur.clone();
            for i in 0..shape[others[0]] {
                for j in 0..shape[others[1]] {
                    let base = i * strides[others[0]] + j * strides[others[1]];
                    let mut line: Vec<f32> = (0..n).map(|k| src[base + k * st]).collect();
                    let mut tmp = vec![0.0f32; n];
                    match &kernel {
                        Some(k) => {
                            convolve(&line, &mut tmp, k);
                            std::mem::swap(&mut line, &mut tmp);
                        }
                        None => {
                            for _ in 0..3 {
                                box_pass(&line, &mut tmp, r);
                                std::mem::swap(&mut line, &mut tmp);
                            }
                        }
                    }
                    for (k, v) in line.into_iter().enumerate() {
                        cur[base + k * st] = v;
                    }
                }
            }
        }
        cur
    }

    #[test]
    fn smooth_is_bitwise_the_lane_at_a_time_filter() {
        let mut next = crate::test_rng(99);
        for shape in [[7, 11, 13], [1, 5, 600], [3, 2, 700], [9, 1, 1], [700, 2, 1]] {
            let len = shape.iter().product::<usize>();
            let data: Vec<f32> = (0..len).map(|_| (next() % 4000) as f32 - 1000.0 + 0.25).collect();
            for sigma in
                [[1.0, 2.86, 2.86], [0.3, 1.0, 1.0], [3.5, 0.0, 1.7], [0.0, 0.0, 5.0], [2.5, 0.1, 0.0]]
            {
                let a = smooth(&data, shape, sigma);
                let b = smooth_reference(&data, shape, sigma);
                assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "{shape:?} {sigma:?}");
            }
        }
    }

    #[test]
    fn linear_ramp_is_exact_with_lps_gradient() {
        // A ramp of 2 HU/mm toward the patient's left on a prone (HFP) grid, whose columns run to the right.
        let g = Geometry {
            origin: Lps([10.0, 0.0, 0.0]),
            spacing: Spacing { slice: 2.0, row: 0.5, column: 0.5 },
            axes: [Vec3([0.0, 0.0, 1.0]), Vec3([0.0, -1.0, 0.0]), Vec3([-1.0, 0.0, 0.0])],
        };
        let shape = [3, 4, 5];
        let mut d = vec![0.0f32; 60];
        for (i, v) in d.iter_mut().enumerate() {
            let x = (i % 5) as f64;
            *v = (2.0 * g.index_to_lps([0.0, 0.0, x]).x()) as f32;
        }
        let s = Sampler::new(&d, shape, g).expect("valid geometry");
        let p = g.index_to_lps([1.3, 2.2, 2.7]);
        let (v, grad) = s.value_grad(p).expect("inside");
        assert!((v - 2.0 * p.x()).abs() < 1e-4);
        assert!((grad[0] - 2.0).abs() < 1e-6 && grad[1].abs() < 1e-9 && grad[2].abs() < 1e-9);
        assert!(s.value(g.index_to_lps([0.0, 0.0, 6.0])).is_none());
    }
}
