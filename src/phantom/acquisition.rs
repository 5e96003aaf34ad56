//! Sampling the patient onto the scanner grid: axial slices in the patient's position, partial volume
//! (sub-samples averaged over each voxel and the slice thickness), scanner blur, metal streaks and
//! correlated noise, with the patient slightly moved between scans.

use super::anatomy::{mat_mul_vec, rotation, transpose};
use super::devices::{add_streaks, Devices, Footprint, Rod, METAL_HU};
use super::grid::{CoarseGrid, FineGrid};
use super::injection::{Injection, NONE};
use super::noise;
use crate::volume::{labels, CtVolume, Geometry, LabelVolume, Lps, PatientPosition, Spacing, Vec3, Volume};
use ndarray::Array3;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

/// Scanner clipping range (12-bit CT).
pub const HU_MIN: f32 = -1024.0;
pub const HU_MAX: f32 = 3071.0;

#[derive(Clone, Debug)]
pub struct Scanner {
    pub geometry: Geometry,
    pub matrix: usize,
    pub slices: usize,
    pub thickness: f64,
    pub pixel: f64,
    pub noise_sd: f64,
    pub blur_px: f64,
    pub position: PatientPosition,
    /// LPS position of the anatomy-frame origin (the treated body's centre) at baseline.
    pub offset: [f64; 3],
}

/// Rigid patient motion relative to baseline: `lps = offset + R a + t`.
#[derive(Clone, Debug)]
pub struct Motion {
    pub r: [[f64; 3]; 3],
    pub t: [f64; 3],
}

impl Motion {
    pub fn identity() -> Motion {
        Motion { r: rotation(0.0, 0.0, 0.0), t: [0.0; 3] }
    }
    pub fn random(rng: &mut ChaCha8Rng) -> Motion {
        let deg = std::f64::consts::PI / 180.0;
        let r = rotation(
            rng.random_range(-1.0..1.0) * deg,
            rng.random_range(-1.0..1.0) * deg,
            rng.random_range(-1.0..1.0) * deg,
        );
        let mut t: [f64; 3] =
            [rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0)];
        let n = (t[0] * t[0] + t[1] * t[1] + t[2] * t[2]).sqrt();
        if n > 1.0 {
            t = t.map(|v| v / n);
        }
        Motion { r, t }
    }
}

/// HU, labels, anatomy, leak ids and tissue of one slice.
/// One slice's HU, labels, anatomy, leak ids and tissue, as produced slice by slice in parallel.
pub(crate) type SliceOut = (Vec<f32>, Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

/// One acquired scan before truth bookkeeping.
pub struct Acquired {
    pub ct: CtVolume,
    pub labels: LabelVolume,
    pub anatomy: LabelVolume,
    /// 1 + leak index per voxel.
    pub leak_ids: Volume<u8>,
    /// Tissue class (`anatomy::Tissue as u8`) at each voxel centre.
    pub tissue: Volume<u8>,
}

impl Acquired {
    /// Stacks per-slice outputs (in slice order) into volumes of `shape` = (slices, rows, columns).
    pub(crate) fn from_slices(
        per_slice: Vec<SliceOut>,
        shape: (usize, usize, usize),
        g: Geometry,
    ) -> Acquired {
        let len = shape.0 * shape.1 * shape.2;
        let mut ct = Vec::with_capacity(len);
        let mut lab = Vec::with_capacity(len);
        let mut ana = Vec::with_capacity(len);
        let mut lid = Vec::with_capacity(len);
        let mut tis = Vec::with_capacity(len);
        for (a, b, c, d, e) in per_slice {
            ct.extend(a.into_iter().map(crate::volume::hu_i16));
            lab.extend(b);
            ana.extend(c);
            lid.extend(d);
            tis.extend(e);
        }
        let mk = |v: Vec<u8>| {
            Volume::new(Array3::from_shape_vec(shape, v).unwrap_or_else(|_| Array3::zeros(shape)), g)
        };
        Acquired {
            ct: Volume::new(Array3::from_shape_vec(shape, ct).unwrap_or_else(|_| Array3::zeros(shape)), g),
            labels: mk(lab),
            anatomy: mk(ana),
            leak_ids: mk(lid),
            tissue: mk(tis),
        }
    }
}

pub struct Model<'a> {
    pub fine: &'a FineGrid,
    pub coarse: &'a CoarseGrid,
    pub inj: &'a Injection,
    pub devices: &'a Devices,
    pub seed: u64,
    /// Half extent (mm) of the patient along each LPS axis from the torso model, for the table.
    pub torso: (f64, f64, f64),
}

fn add(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

impl Scanner {
    /// Anatomy-frame point of an LPS point for a scan with motion `m`.
    pub fn to_anat(&self, m: &Motion, p: Lps) -> [f64; 3] {
        let d = [
            p.0[0] - self.offset[0] - m.t[0],
            p.0[1] - self.offset[1] - m.t[1],
            p.0[2] - self.offset[2] - m.t[2],
        ];
        // R is orthonormal: R^T d without forming the transpose.
        let r = &m.r;
        [
            r[0][0] * d[0] + r[1][0] * d[1] + r[2][0] * d[2],
            r[0][1] * d[0] + r[1][1] * d[1] + r[2][1] * d[2],
            r[0][2] * d[0] + r[1][2] * d[1] + r[2][2] * d[2],
        ]
    }
    pub fn to_lps(&self, m: &Motion, a: [f64; 3]) -> Lps {
        let r = mat_mul_vec(&m.r, a);
        Lps(add(add(r, self.offset), m.t))
    }

    /// Acquires scan `k` (0 = baseline) of the model with patient motion `m`.
    pub fn acquire(&self, model: &Model, k: usize, m: &Motion) -> Acquired {
        let n = self.matrix;
        let g = self.geometry;
        let rt = transpose(&m.r);
        // Sub-sample offsets (anatomy frame) covering the voxel in-plane and the slice thickness.
        let ns = if self.pixel > 0.6 { 2 } else { 1 };
        let nz = ((self.thickness / 0.5).ceil() as usize).max(1);
        let mut offs = Vec::new();
        for iz in 0..nz {
            let fz = (iz as f64 + 0.5) / nz as f64 - 0.5;
            for ir in 0..ns {
                for ic in 0..ns {
                    let fr = (ir as f64 + 0.5) / ns as f64 - 0.5;
                    let fc = (ic as f64 + 0.5) / ns as f64 - 0.5;
                    let v = g.axes[0] * (fz * self.thickness)
                        + g.axes[1] * (fr * self.pixel)
                        + g.axes[2] * (fc * self.pixel);
                    offs.push(mat_mul_vec(&rt, v.0));
                }
            }
        }
        let down = g.axes[1];
        let lateral = g.axes[2];
        // Table top: just beyond the patient's skin on the table side.
        let (hw, cy, hd) = model.torso;
        let dx = down.0[0];
        let dy = down.0[1];
        let table_top = dx * self.offset[0]
            + dy * (self.offset[1] + cy)
            + ((hw * dx).powi(2) + (hd * dy).powi(2)).sqrt()
            + 1.0;
        let fine = model.fine;
        let coarse = model.coarse;
        let inj = model.inj;
        let rods: Vec<_> = model.devices.all().cloned().collect();
        let per_slice: Vec<SliceOut> = (0..self.slices)
            .into_par_iter()
            .map(|z| {
                let mut hu = vec![0f32; n * n];
                let mut lab = vec![0u8; n * n];
                let mut ana = vec![0u8; n * n];
                let mut lid = vec![0u8; n * n];
                let mut tis = vec![0u8; n * n];
                let feet = self.footprints(m, &rods, z);
                // Positions advance linearly along a row: step once instead of mapping every voxel.
                let step_p = g.axes[2] * g.spacing.column;
                let step_q = mat_mul_vec(&rt, step_p.0);
                for r in 0..n {
                    let p0 = g.index_to_lps([z as f64, r as f64, 0.0]);
                    let q0 = self.to_anat(m, p0);
                    for c in 0..n {
                        let cf = c as f64;
                        let p = p0 + step_p * cf;
                        let q = [q0[0] + step_q[0] * cf, q0[1] + step_q[1] * cf, q0[2] + step_q[2] * cf];
                        let i = r * n + c;
                        // Metal: only near a footprint.
                        let near_metal = feet
                            .iter()
                            .any(|(f, rad)| seg2d([c as f64, r as f64], f.p0, f.p1) < rad / self.pixel + 1.5);
                        let in_fine = fine.spec.contains(q, 1.0);
                        let mut acc = 0.0f32;
                        let mut metal = 0usize;
                        let mut samples = 0usize;
                        // Cement sub-samples and the code/leak of the first one.
                        let mut cem = 0usize;
                        let mut cem_code = 0u8;
                        let mut cem_leak = 0u8;
                        if in_fine || near_metal {
                            for o in &offs {
                                let s = add(q, *o);
                                samples += 1;
                                if near_metal && rods.iter().any(|rd| rd.contains(s)) {
                                    metal += 1;
                                    acc += METAL_HU;
                                    continue;
                                }
                                acc += match fine.spec.nearest(s) {
                                    Some(fi) => {
                                        if inj.step[fi] != NONE && inj.step[fi] as usize <= k {
                                            if cem == 0 {
                                                cem_code = inj.code[fi];
                                                cem_leak = inj.leak_of[fi];
                                            }
                                            cem += 1;
                                            cement_hu(inj.cement_hu, s, model.seed)
                                        } else {
                                            fine.hu[fi]
                                        }
                                    }
                                    None => coarse.sample(s),
                                };
                            }
                        } else {
                            samples = 1;
                            acc = coarse.sample(q);
                        }
                        let mut v = acc / samples as f32;
                        // Table (fixed in the scanner, not moved with the patient).
                        let dn = p.0[0] * down.0[0] + p.0[1] * down.0[1] + p.0[2] * down.0[2];
                        let lt = (p - Lps(self.offset)).dot(lateral).abs();
                        let depth = dn - table_top;
                        if depth > 0.0 && depth < 45.0 && lt < 240.0 && v < -900.0 {
                            v = if !(3.0..=42.0).contains(&depth) { 250.0 } else { -960.0 };
                        }
                        hu[i] = v;
                        // Labels from the voxel centre.
                        if metal * 2 >= samples && metal > 0 {
                            lab[i] = labels::NEEDLE;
                        }
                        tis[i] = match fine.spec.nearest(q) {
                            Some(fi) => fine.tissue[fi] as u8,
                            None => coarse.spec.nearest(q).map(|ci| coarse.tissue[ci] as u8).unwrap_or(0),
                        };
                        if let Some(fi) = fine.spec.nearest(q) {
                            ana[i] = fine.label[fi];
                            if lab[i] == 0 {
                                // Intravertebral cement by majority; leaks (small, high contrast, often thin
                                // sheets or tubes) from a third of the voxel on.
                                let need = if cem_code == labels::CEMENT {
                                    samples.div_ceil(2)
                                } else {
                                    samples.div_ceil(3)
                                };
                                if cem >= need && cem > 0 {
                                    lab[i] = cem_code;
                                    lid[i] = cem_leak;
                                } else {
                                    lab[i] = fine.label[fi];
                                }
                            }
                        }
                    }
                }
                blur(&mut hu, n, self.blur_px);
                let mut rng = noise::stream(self.seed_for(model.seed), 0x5EED + k as u64, z as u64);
                let f: Vec<Footprint> = feet.iter().map(|x| x.0).collect();
                add_streaks(&mut hu, n, &f, self.pixel, &mut rng);
                add_noise(&mut hu, n, self.noise_sd, &mut rng);
                for v in hu.iter_mut() {
                    *v = v.round().clamp(HU_MIN, HU_MAX);
                }
                (hu, lab, ana, lid, tis)
            })
            .collect();
        Acquired::from_slices(per_slice, (self.slices, n, n), g)
    }

    /// Metal footprints of `rods` (anatomy frame) in the slab of slice `z`, in pixel coordinates, each with
    /// its rod's radius.
    pub fn footprints(&self, m: &Motion, rods: &[Rod], z: usize) -> Vec<(Footprint, f64)> {
        let g = self.geometry;
        let mut feet = Vec::new();
        let zc = g.index_to_lps([z as f64, 0.0, 0.0]);
        for rod in rods {
            let a = self.to_lps(m, rod.a);
            let b = self.to_lps(m, rod.b);
            let za = (a - zc).dot(g.axes[0]);
            let zb = (b - zc).dot(g.axes[0]);
            let half = self.thickness / 2.0 + rod.radius;
            let (t0, t1) = clip(za, zb, -half, half);
            if t0 < t1 {
                let pa = a + (b - a) * t0;
                let pb = a + (b - a) * t1;
                let ia = g.lps_to_index(pa);
                let ib = g.lps_to_index(pb);
                let len = (pb - pa).norm();
                feet.push((
                    Footprint { p0: [ia[2], ia[1]], p1: [ib[2], ib[1]], strength: len * rod.radius },
                    rod.radius,
                ));
            }
        }
        feet
    }

    fn seed_for(&self, s: u64) -> u64 {
        s ^ 0xA5A5_0000
    }

    /// Builds the scanner grid for a position: the same patient (anatomy at `offset`) in every position.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        position: PatientPosition,
        matrix: usize,
        slices: usize,
        thickness: f64,
        pixel: f64,
        offset: [f64; 3],
        fov_centre: [f64; 3],
        noise_sd: f64,
        blur_px: f64,
    ) -> Scanner {
        let axes = position.axial_axes();
        let spacing = Spacing { slice: thickness, row: pixel, column: pixel };
        let half = (matrix as f64 - 1.0) / 2.0;
        let zhalf = (slices as f64 - 1.0) / 2.0;
        let c = Lps(fov_centre);
        let origin =
            c + axes[1] * (-half * pixel) + axes[2] * (-half * pixel) + axes[0] * (-zhalf * thickness);
        let geometry = Geometry { origin, spacing, axes };
        Scanner { geometry, matrix, slices, thickness, pixel, noise_sd, blur_px, position, offset }
    }
}

pub(crate) fn cement_hu(base: f32, p: [f64; 3], seed: u64) -> f32 {
    base + 150.0 * noise::scaled(seed as u32 ^ 0xCE, p, [1.5; 3])
}

/// Parameter range [t0, t1] of the segment where the signed slab coordinate lies in [lo, hi].
fn clip(za: f64, zb: f64, lo: f64, hi: f64) -> (f64, f64) {
    let dz = zb - za;
    if dz.abs() < 1e-9 {
        return if za >= lo && za <= hi { (0.0, 1.0) } else { (1.0, 0.0) };
    }
    let ta = (lo - za) / dz;
    let tb = (hi - za) / dz;
    let (t0, t1) = if ta < tb { (ta, tb) } else { (tb, ta) };
    (t0.max(0.0), t1.min(1.0))
}

pub(crate) fn seg2d(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    let ab = [b[0] - a[0], b[1] - a[1]];
    let l2 = (ab[0] * ab[0] + ab[1] * ab[1]).max(1e-9);
    let t = (((p[0] - a[0]) * ab[0] + (p[1] - a[1]) * ab[1]) / l2).clamp(0.0, 1.0);
    ((p[0] - a[0] - ab[0] * t).powi(2) + (p[1] - a[1] - ab[1] * t).powi(2)).sqrt()
}

fn kernel(sigma: f64) -> Vec<f32> {
    let r = (3.0 * sigma).ceil().max(1.0) as isize;
    let mut k: Vec<f32> = (-r..=r).map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32).collect();
    let s: f32 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= s);
    k
}

/// Separable Gaussian blur of an `n` x `n` image (edges clamped).
pub fn blur(img: &mut [f32], n: usize, sigma: f64) {
    if sigma <= 0.05 {
        return;
    }
    let k = kernel(sigma);
    let mut tmp = vec![0f32; img.len()];
    blur_pass(img, &mut tmp, n, &k, [1, n]);
    blur_pass(&tmp, img, n, &k, [n, 1]);
}

/// One 1-D pass of `k` over an `n` x `n` image: `step[0]` is the stride along the blurred axis, `step[1]`
/// along the other (edges clamped).
fn blur_pass(src: &[f32], dst: &mut [f32], n: usize, k: &[f32], step: [usize; 2]) {
    let r = (k.len() / 2) as isize;
    for line in 0..n {
        for i in 0..n {
            let mut s = 0.0;
            for (j, w) in k.iter().enumerate() {
                let ii = (i as isize + j as isize - r).clamp(0, n as isize - 1) as usize;
                s += w * src[line * step[1] + ii * step[0]];
            }
            dst[line * step[1] + i * step[0]] = s;
        }
    }
}

/// Correlated noise like a filtered-back-projection reconstruction: white noise through a band-pass
/// (narrow Gaussian minus a fraction of a wide one), scaled to `sd`.
pub(crate) fn add_noise(img: &mut [f32], n: usize, sd: f64, rng: &mut ChaCha8Rng) {
    let mut w: Vec<f32> = (0..n * n).map(|_| StandardNormal.sample(rng)).collect();
    let mut wide = w.clone();
    blur(&mut w, n, 0.7);
    // Two box passes of radius 2 approximate a Gaussian of sigma ~2.5 at a fraction of the cost.
    box_blur(&mut wide, n, 2);
    box_blur(&mut wide, n, 2);
    let mut f: Vec<f32> = w.iter().zip(&wide).map(|(a, b)| a - 0.5 * b).collect();
    let mean = f.iter().map(|&v| v as f64).sum::<f64>() / f.len() as f64;
    let var = f.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / f.len() as f64;
    let scale = (sd / var.sqrt().max(1e-9)) as f32;
    for (v, nz) in img.iter_mut().zip(f.iter_mut()) {
        *v += (*nz - mean as f32) * scale;
    }
}

/// Unit LPS vector helper for callers.
pub fn vec3(v: [f64; 3]) -> Vec3 {
    Vec3(v)
}

/// Separable box blur of radius `r` (edges clamped), by running sums.
fn box_blur(img: &mut [f32], n: usize, r: usize) {
    let norm = 1.0 / (2 * r + 1) as f32;
    let mut line = vec![0f32; n];
    let clampi = |i: isize| i.clamp(0, n as isize - 1) as usize;
    for y in 0..n {
        let row = &mut img[y * n..(y + 1) * n];
        let mut acc: f32 = (-(r as isize)..=r as isize).map(|i| row[clampi(i)]).sum();
        for x in 0..n {
            line[x] = acc * norm;
            acc += row[clampi(x as isize + r as isize + 1)] - row[clampi(x as isize - r as isize)];
        }
        row.copy_from_slice(&line);
    }
    for x in 0..n {
        let mut acc: f32 = (-(r as isize)..=r as isize).map(|i| img[clampi(i) * n + x]).sum();
        for y in 0..n {
            line[y] = acc * norm;
            acc += img[clampi(y as isize + r as isize + 1) * n + x]
                - img[clampi(y as isize - r as isize) * n + x];
        }
        for y in 0..n {
            img[y * n + x] = line[y];
        }
    }
}
