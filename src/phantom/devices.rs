//! Metal in the field: 13-gauge transpedicular needles and the thermocouple wire, and the streak and
//! beam-hardening artefacts they cause in each reconstructed slice.

use super::anatomy::{seg_dist, Anatomy};
use super::spec::ThermocouplePlace;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Internal attenuation of steel before the scanner clips it (partial volume of a 2.4 mm needle still
/// saturates, as on real scanners).
pub const METAL_HU: f32 = 9000.0;

/// A straight metal rod, in anatomy-frame mm.
#[derive(Clone, Debug, Serialize)]
pub struct Rod {
    pub a: [f64; 3],
    pub b: [f64; 3],
    pub radius: f64,
}

impl Rod {
    pub fn contains(&self, p: [f64; 3]) -> bool {
        seg_dist(p, self.a, self.b).0 < self.radius
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Devices {
    /// Needles: `a` is the tip, `b` the hub end outside the patient.
    pub needles: Vec<Rod>,
    /// Thermocouple wire as a polyline of rods.
    pub wire: Vec<Rod>,
}

impl Devices {
    pub fn is_metal(&self, p: [f64; 3]) -> bool {
        self.needles.iter().chain(self.wire.iter()).any(|r| r.contains(p))
    }

    pub fn tips(&self) -> Vec<[f64; 3]> {
        self.needles.iter().map(|n| n.a).collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &Rod> {
        self.needles.iter().chain(self.wire.iter())
    }
}

/// Places the needles (transpedicular, tip in the anterior third of the body) and the optional wire.
pub fn place(
    anat: &Anatomy,
    bilateral: bool,
    wire: Option<ThermocouplePlace>,
    rng: &mut ChaCha8Rng,
) -> Devices {
    let v = anat.target();
    let first_side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    let sides: Vec<f64> = if bilateral { vec![first_side, -first_side] } else { vec![first_side] };
    let mut needles = Vec::new();
    for side in sides {
        let tip_x = if bilateral {
            side * v.a * rng.random_range(0.1..0.3)
        } else {
            -side * v.a * rng.random_range(0.0..0.12)
        };
        let tip = [tip_x, -v.b * rng.random_range(0.4..0.6), rng.random_range(-0.25..0.25) * v.h_top];
        let ped = [side * (v.ped_x + v.ped_flare * v.ped_len * 0.5), v.yw0 + v.ped_len * 0.5, v.ped_z * 0.8];
        let d = [ped[0] - tip[0], ped[1] - tip[1], ped[2] - tip[2]];
        let n = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt().max(1e-6);
        let len = 190.0;
        let hub = [tip[0] + d[0] / n * len, tip[1] + d[1] / n * len, tip[2] + d[2] / n * len];
        needles.push(Rod { a: anat.target_to_anat(tip), b: anat.target_to_anat(hub), radius: 1.2 });
    }
    let mut wires = Vec::new();
    if let Some(place) = wire {
        let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let r = 0.45;
        match place {
            ThermocouplePlace::Canal => {
                let cy = v.canal_centre_y() + v.canal_d * 0.3;
                let x = side * v.canal_hw * 0.55;
                let p0 = [x, cy, -v.h_bot * 0.9];
                let p1 = [x, cy, v.h_top + 4.0];
                let p2 = [side * 22.0, cy + 70.0, v.h_top + 40.0];
                wires.push(Rod { a: anat.target_to_anat(p0), b: anat.target_to_anat(p1), radius: r });
                wires.push(Rod { a: anat.target_to_anat(p1), b: anat.target_to_anat(p2), radius: r });
            }
            ThermocouplePlace::Foramen => {
                let z = v.ped_z - v.ped_rz - 3.0;
                let p0 = [side * (v.canal_hw + 2.5), v.yw0 + v.ped_len * 0.5, z];
                let p1 = [side * 70.0, v.yw0 + 80.0, z + 12.0];
                wires.push(Rod { a: anat.target_to_anat(p0), b: anat.target_to_anat(p1), radius: r });
            }
        }
    }
    Devices { needles, wire: wires }
}

/// One metal object's footprint in a slice: a segment in image (column, row) pixel coordinates.
#[derive(Clone, Copy, Debug)]
pub struct Footprint {
    pub p0: [f64; 2],
    pub p1: [f64; 2],
    /// Amount of metal (mm of rod in the slab times its radius): scales the artefact.
    pub strength: f64,
}

/// Adds streaks and beam-hardening shadows to one slice `img` (row-major, `n` x `n`).
/// Bright and dark streaks radiate from the metal, strongest along the rod's long axis; between two
/// metal objects a dark band appears (photon starvation / beam hardening).
pub fn add_streaks(img: &mut [f32], n: usize, feet: &[Footprint], pixel_mm: f64, rng: &mut ChaCha8Rng) {
    if feet.is_empty() {
        return;
    }
    struct Ray {
        o: [f64; 2],
        d: [f64; 2],
        amp: f64,
        w: f64,
    }
    let mut rays = Vec::new();
    for f in feet {
        let axis = [f.p1[0] - f.p0[0], f.p1[1] - f.p0[1]];
        let al = (axis[0] * axis[0] + axis[1] * axis[1]).sqrt();
        let base_ang =
            if al > 1e-6 { axis[1].atan2(axis[0]) } else { rng.random_range(0.0..std::f64::consts::PI) };
        let s = f.strength.min(40.0) / 40.0;
        let count = 10 + (s * 14.0) as usize;
        for k in 0..count {
            let t: f64 = rng.random_range(0.0..1.0);
            let o = [f.p0[0] + axis[0] * t, f.p0[1] + axis[1] * t];
            let ang = if k < 3 {
                base_ang + rng.random_range(-0.08..0.08)
            } else {
                rng.random_range(0.0..std::f64::consts::PI)
            };
            let sign = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
            let amp = sign * rng.random_range(60.0..260.0) * (0.4 + s) * if k < 3 { 1.6 } else { 1.0 };
            rays.push(Ray {
                o,
                d: [ang.cos(), ang.sin()],
                amp,
                w: rng.random_range(0.6..1.6) / pixel_mm.max(0.3),
            });
        }
    }
    // Dark band between pairs of metal objects.
    let mut bands = Vec::new();
    for i in 0..feet.len() {
        for j in i + 1..feet.len() {
            let a = mid(&feet[i]);
            let b = mid(&feet[j]);
            bands.push((a, b, -rng.random_range(80.0..220.0)));
        }
    }
    let decay = 60.0 / pixel_mm.max(0.3);
    // Streaks vary slowly along their length: evaluate on a half-resolution grid and interpolate.
    let m = n.div_ceil(2) + 1;
    let mut field = vec![0f32; m * m];
    for (r, row) in field.chunks_mut(m).enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            let p = [c as f64 * 2.0, r as f64 * 2.0];
            let mut add = 0.0;
            for ray in &rays {
                let q = [p[0] - ray.o[0], p[1] - ray.o[1]];
                let along = q[0] * ray.d[0] + q[1] * ray.d[1];
                let perp = q[0] * ray.d[1] - q[1] * ray.d[0];
                let e = perp * perp / (2.0 * ray.w * ray.w);
                if e < 6.0 {
                    add += ray.amp * (-e).exp() * (-along.abs() / decay).exp();
                }
            }
            for (a, b, amp) in &bands {
                let (d, t) = seg2(p, *a, *b);
                if t > 0.0 && t < 1.0 {
                    let w = 3.0 / pixel_mm.max(0.3);
                    add += amp * (-(d * d) / (2.0 * w * w)).exp();
                }
            }
            *v = add as f32;
        }
    }
    for (r, row) in img.chunks_mut(n).enumerate() {
        let (r0, fr) = (r / 2, (r % 2) as f32 * 0.5);
        for (c, v) in row.iter_mut().enumerate() {
            let (c0, fc) = (c / 2, (c % 2) as f32 * 0.5);
            let f = |rr: usize, cc: usize| field[rr.min(m - 1) * m + cc.min(m - 1)];
            let top = f(r0, c0) * (1.0 - fc) + f(r0, c0 + 1) * fc;
            let bot = f(r0 + 1, c0) * (1.0 - fc) + f(r0 + 1, c0 + 1) * fc;
            *v += top * (1.0 - fr) + bot * fr;
        }
    }
}

fn mid(f: &Footprint) -> [f64; 2] {
    [(f.p0[0] + f.p1[0]) / 2.0, (f.p0[1] + f.p1[1]) / 2.0]
}

fn seg2(p: [f64; 2], a: [f64; 2], b: [f64; 2]) -> (f64, f64) {
    let ab = [b[0] - a[0], b[1] - a[1]];
    let l2 = (ab[0] * ab[0] + ab[1] * ab[1]).max(1e-9);
    let t = ((p[0] - a[0]) * ab[0] + (p[1] - a[1]) * ab[1]) / l2;
    let tc = t.clamp(0.0, 1.0);
    let c = [a[0] + ab[0] * tc, a[1] + ab[1] * tc];
    (((p[0] - c[0]).powi(2) + (p[1] - c[1]).powi(2)).sqrt(), t)
}
