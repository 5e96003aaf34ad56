//! One hybrid scan on the real CT's own grid: the real image (moved rigidly after the baseline), with cement
//! and metal inserted by partial volume, blurred like the scanner, and the phantom's metal streaks.
//!
//! Voxels that receive nothing keep their real value bit for bit in the baseline (no motion): only voxels
//! touched by cement, metal or a streak field are recomputed and clipped to the scanner range.

use super::masks::trilinear;
use crate::phantom::acquisition::{
    blur, cement_hu, seg2d, Acquired, Motion, Scanner, SliceOut, HU_MAX, HU_MIN,
};
use crate::phantom::devices::{add_streaks, Devices, Footprint, METAL_HU};
use crate::phantom::grid::FineGrid;
use crate::phantom::injection::{Injection, NONE};
use crate::phantom::noise;
use crate::volume::{labels, CtVolume, Lps};
use rayon::prelude::*;

pub struct Insertion<'a> {
    pub real: &'a CtVolume,
    pub fine: &'a FineGrid,
    pub inj: &'a Injection,
    pub devices: &'a Devices,
    pub scanner: &'a Scanner,
    pub seed: u64,
}

/// Runs `f` on an `nr` x `nc` image embedded in a zero square of side max(nr, nc) (the blur and streak
/// models work on square slices) and adds the result back.
fn on_square(img: &mut [f32], nr: usize, nc: usize, f: impl FnOnce(&mut [f32], usize)) -> Vec<f32> {
    let n = nr.max(nc);
    let mut sq = vec![0f32; n * n];
    for r in 0..nr {
        sq[r * n..r * n + nc].copy_from_slice(&img[r * nc..(r + 1) * nc]);
    }
    f(&mut sq, n);
    let mut out = vec![0f32; nr * nc];
    for r in 0..nr {
        out[r * nc..(r + 1) * nc].copy_from_slice(&sq[r * n..r * n + nc]);
    }
    out
}

impl Insertion<'_> {
    /// Scan `k` (0 = baseline) with patient motion `m`.
    pub fn acquire(&self, k: usize, m: &Motion) -> Acquired {
        let g = self.real.geometry;
        let [ns, nr, nc] = self.real.shape();
        let sc = self.scanner;
        let identity = m.t == [0.0; 3] && m.r == Motion::identity().r;
        let rods: Vec<_> = self.devices.all().cloned().collect();
        let offset = sc.offset;
        // Sub-samples per voxel: about 0.5 mm apart in each direction, up to 6.
        let sub = |len: f64| ((len / 0.5).ceil() as usize).clamp(1, 6);
        let (nzs, nrs, ncs) = (sub(g.spacing.slice), sub(g.spacing.row), sub(g.spacing.column));
        let rt = crate::phantom::anatomy::transpose(&m.r);
        let mut offs = Vec::new();
        for iz in 0..nzs {
            for ir in 0..nrs {
                for ic in 0..ncs {
                    let f = |i: usize, n: usize| (i as f64 + 0.5) / n as f64 - 0.5;
                    let v = g.axes[0] * (f(iz, nzs) * g.spacing.slice)
                        + g.axes[1] * (f(ir, nrs) * g.spacing.row)
                        + g.axes[2] * (f(ic, ncs) * g.spacing.column);
                    offs.push(crate::phantom::anatomy::mat_mul_vec(&rt, v.0));
                }
            }
        }
        let margin = g.spacing.slice.max(g.spacing.row).max(g.spacing.column);
        let pixel = g.spacing.row.min(g.spacing.column);
        let fine = self.fine;
        let inj = self.inj;
        let per_slice: Vec<SliceOut> = (0..ns)
            .into_par_iter()
            .map(|z| {
                let mut base = vec![0f32; nr * nc];
                let mut delta = vec![0f32; nr * nc];
                let mut lab = vec![0u8; nr * nc];
                let mut ana = vec![0u8; nr * nc];
                let mut lid = vec![0u8; nr * nc];
                let mut tis = vec![0u8; nr * nc];
                let feet = sc.footprints(m, &rods, z);
                for r in 0..nr {
                    for c in 0..nc {
                        let i = r * nc + c;
                        let p = g.voxel_to_lps([z, r, c]);
                        let q = sc.to_anat(m, p);
                        base[i] = if identity {
                            f32::from(self.real.data[[z, r, c]])
                        } else {
                            let src = Lps([q[0] + offset[0], q[1] + offset[1], q[2] + offset[2]]);
                            trilinear(self.real, src).map(|v| v.round()).unwrap_or(HU_MIN)
                        };
                        let near_metal = feet
                            .iter()
                            .any(|(f, rad)| seg2d([c as f64, r as f64], f.p0, f.p1) < rad / pixel + 1.5);
                        let in_fine = fine.spec.contains(q, margin);
                        if let Some(fi) = fine.spec.nearest(q) {
                            ana[i] = fine.label[fi];
                            lab[i] = fine.label[fi];
                            tis[i] = fine.tissue[fi] as u8;
                        }
                        if !(in_fine || near_metal) {
                            continue;
                        }
                        let (mut metal, mut cem, mut add) = (0usize, 0usize, 0f32);
                        let (mut cem_code, mut cem_leak) = (0u8, 0u8);
                        for o in &offs {
                            let s = [q[0] + o[0], q[1] + o[1], q[2] + o[2]];
                            if near_metal && rods.iter().any(|rd| rd.contains(s)) {
                                metal += 1;
                                add += METAL_HU - base[i];
                                continue;
                            }
                            if let Some(fi) = fine.spec.nearest(s) {
                                if inj.step[fi] != NONE && inj.step[fi] as usize <= k {
                                    if cem == 0 {
                                        cem_code = inj.code[fi];
                                        cem_leak = inj.leak_of[fi];
                                    }
                                    cem += 1;
                                    add += cement_hu(inj.cement_hu, s, self.seed) - base[i];
                                }
                            }
                        }
                        let samples = offs.len();
                        delta[i] = add / samples as f32;
                        // Same labelling rules as the synthetic acquisition.
                        if metal > 0 && metal * 2 >= samples {
                            lab[i] = labels::NEEDLE;
                        } else {
                            let need = if cem_code == labels::CEMENT {
                                samples.div_ceil(2)
                            } else {
                                samples.div_ceil(3)
                            };
                            if cem > 0 && cem >= need {
                                lab[i] = cem_code;
                                lid[i] = cem_leak;
                            }
                        }
                    }
                }
                let mut hu = base.clone();
                let mut touched = vec![false; nr * nc];
                if delta.iter().any(|&d| d != 0.0) {
                    let blurred = on_square(&mut delta, nr, nc, |img, n| blur(img, n, sc.blur_px));
                    for (i, d) in blurred.into_iter().enumerate() {
                        if d != 0.0 {
                            hu[i] += d;
                            touched[i] = true;
                        }
                    }
                }
                if !feet.is_empty() {
                    let mut rng = noise::stream(self.seed, 0x4859_0000 + k as u64, z as u64);
                    let f: Vec<Footprint> = feet.iter().map(|x| x.0).collect();
                    let mut zero = vec![0f32; nr * nc];
                    let streaks =
                        on_square(&mut zero, nr, nc, |img, n| add_streaks(img, n, &f, pixel, &mut rng));
                    for (i, d) in streaks.into_iter().enumerate() {
                        hu[i] += d;
                        touched[i] = true;
                    }
                }
                for (v, t) in hu.iter_mut().zip(&touched) {
                    if *t {
                        *v = v.round().clamp(HU_MIN, HU_MAX);
                    }
                }
                (hu, lab, ana, lid, tis)
            })
            .collect();
        Acquired::from_slices(per_slice, (ns, nr, nc), g)
    }
}
