//! Synthetic vertebra scenes for the cement stage: partial-volume rendering of simple solids in an
//! anatomical frame (x toward the patient's left, y posterior, z superior, mm from the body's centre), placed
//! in patient space by a rigid pose and sampled on any `Geometry`, with exact ground truth.
#![allow(dead_code)]
// Index loops over the three axes and the solids read better than iterator chains here.
#![allow(clippy::needless_range_loop)]

use cementleak::cement::RigidTransform;
use cementleak::volume::{CtVolume, Geometry, Lps, Mask, PatientPosition, Spacing, Vec3, Volume};
use ndarray::Array3;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

#[derive(Clone, Copy, Debug)]
pub enum Solid {
    Sphere {
        c: [f64; 3],
        r: f64,
    },
    Capsule {
        a: [f64; 3],
        b: [f64; 3],
        r: f64,
    },
    /// Cylinder along z: centre, radius, half height.
    Column {
        c: [f64; 3],
        r: f64,
        h: f64,
    },
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

impl Solid {
    /// Signed distance (negative inside), exact for these solids.
    pub fn sdf(&self, p: [f64; 3]) -> f64 {
        match *self {
            Solid::Sphere { c, r } => norm(sub(p, c)) - r,
            Solid::Capsule { a, b, r } => {
                let ab = sub(b, a);
                let t = (dot(sub(p, a), ab) / dot(ab, ab)).clamp(0.0, 1.0);
                norm(sub(p, [a[0] + ab[0] * t, a[1] + ab[1] * t, a[2] + ab[2] * t])) - r
            }
            Solid::Column { c, r, h } => {
                let d = sub(p, c);
                let dr = (d[0] * d[0] + d[1] * d[1]).sqrt() - r;
                let dz = d[2].abs() - h;
                let out = (dr.max(0.0).powi(2) + dz.max(0.0).powi(2)).sqrt();
                out + dr.max(dz).min(0.0)
            }
        }
    }

    pub fn shrunk(&self, by: f64) -> Solid {
        match *self {
            Solid::Sphere { c, r } => Solid::Sphere { c, r: r - by },
            Solid::Capsule { a, b, r } => Solid::Capsule { a, b, r: r - by },
            Solid::Column { c, r, h } => Solid::Column { c, r: r - by, h: h - by },
        }
    }

    /// Analytic volume in mL.
    pub fn volume_ml(&self) -> f64 {
        use std::f64::consts::PI;
        match *self {
            Solid::Sphere { r, .. } => 4.0 / 3.0 * PI * r.powi(3) / 1000.0,
            Solid::Capsule { a, b, r } => {
                (PI * r * r * norm(sub(b, a)) + 4.0 / 3.0 * PI * r.powi(3)) / 1000.0
            }
            Solid::Column { r, h, .. } => PI * r * r * 2.0 * h / 1000.0,
        }
    }
}

pub const BODY: Solid = Solid::Column { c: [0.0, 0.0, 0.0], r: 20.0, h: 12.0 };
pub const CEMENT_HU: f64 = 2000.0;
/// Steel's CT number before the 12-bit scanner clips it to 3071 HU: a voxel only partly filled by a
/// needle or wire still reads at the maximum.
pub const METAL_HU: f64 = 15000.0;
pub const SCANNER_MAX_HU: f64 = 3071.0;
/// Needle: tip 3 mm inside the intravertebral cement, out through the left pedicle.
pub const NEEDLE: Solid = Solid::Capsule { a: [3.0, -4.0, 0.5], b: [21.0, 62.0, -0.5], r: 1.2 };
/// Thermocouple in the spinal canal, running cranio-caudally.
pub const WIRE: Solid = Solid::Capsule { a: [-6.0, 29.0, -60.0], b: [-5.0, 29.5, 60.0], r: 0.4 };

/// What is in one scan.
#[derive(Clone, Debug)]
pub struct Scene {
    pub needle: bool,
    pub wire: bool,
    /// The wire's own CT number: `METAL_HU` saturates; below ~2800 HU it reads like cement (a thin
    /// thermocouple at partial volume on a real scanner).
    pub wire_hu: f64,
    /// Blastic lesion (800 HU) and bone island (1300 HU) in the body.
    pub lesions: bool,
    pub intravertebral: Vec<Solid>,
    pub leaks: Vec<Solid>,
    pub noise_hu: f64,
}

impl Scene {
    /// Needle in place, no cement.
    pub fn baseline() -> Scene {
        Scene {
            needle: true,
            wire: false,
            wire_hu: METAL_HU,
            lesions: true,
            intravertebral: vec![],
            leaks: vec![],
            noise_hu: 12.0,
        }
    }

    /// Baseline plus intravertebral cement and four leaks: disc (through the endplate), a thin posterior
    /// vein, a tiny 0.05 mL paraspinal blob and an anterolateral segmental vein.
    pub fn injected() -> Scene {
        Scene {
            intravertebral: vec![Solid::Sphere { c: [0.0, -8.0, 0.0], r: 8.0 }],
            leaks: vec![
                Solid::Capsule { a: [-4.0, -7.0, 5.0], b: [-4.0, -7.0, 17.0], r: 2.5 },
                Solid::Capsule { a: [-3.0, 24.0, -6.0], b: [3.0, 26.0, 2.0], r: 1.0 },
                Solid::Sphere { c: [-30.0, 5.0, -4.0], r: 2.285 },
                Solid::Capsule { a: [15.0, -22.0, -3.0], b: [24.0, -28.0, -3.0], r: 1.5 },
            ],
            ..Scene::baseline()
        }
    }

    /// An earlier injection of the same scene: less cement, smaller disc leak, no other leaks yet.
    pub fn earlier() -> Scene {
        Scene {
            intravertebral: vec![Solid::Sphere { c: [0.0, -8.0, 0.0], r: 6.0 }],
            leaks: vec![Solid::Capsule { a: [-4.0, -7.0, 5.0], b: [-4.0, -7.0, 13.5], r: 2.5 }],
            ..Scene::baseline()
        }
    }
}

/// Ground truth of a rendered scan.
#[derive(Clone, Debug)]
pub struct Truth {
    /// Cement inside the body mask (mL).
    pub intravertebral_ml: f64,
    /// Per leak solid: its cement outside the body mask (mL) and the centre of that cement (LPS).
    pub leak_ml: Vec<f64>,
    pub leak_centroid: Vec<Lps>,
}

pub struct Rendered {
    pub ct: CtVolume,
    pub body: Mask,
    pub truth: Truth,
}

/// Scanner grid for a patient position: `n` slices x `rows` x `cols`, centred on `centre` (LPS).
pub fn grid(position: PatientPosition, dims: [usize; 3], spacing: [f64; 3], centre: Lps) -> Geometry {
    let axes = position.axial_axes();
    let sp = Spacing::from_zyx(spacing);
    let mut origin = centre;
    for a in 0..3 {
        origin = origin + axes[a] * (-(dims[a] as f64 - 1.0) / 2.0 * spacing[a]);
    }
    Geometry { origin, spacing: sp, axes }
}

/// Anatomy frame -> LPS: the body's centre at `centre`, rotated by `deg` degrees about `axis` (LPS).
pub fn pose(centre: Lps, axis: [f64; 3], deg: f64, shift: [f64; 3]) -> RigidTransform {
    let n = norm(axis).max(1e-12);
    let w = axis.map(|v| v / n * deg.to_radians());
    RigidTransform::about(centre, w, Vec3(shift)).after(&RigidTransform::about(
        Lps([0.0; 3]),
        [0.0; 3],
        Vec3(centre.0),
    ))
}

/// Fraction of a voxel inside a solid: the voxel's extent along the surface normal against the signed
/// distance (exact for a plane parallel to a voxel face, continuous everywhere, so the rendered edge
/// position is not quantised). `axes` are the voxel's edge vectors in the anatomy frame.
fn occupancy(s: &Solid, centre: [f64; 3], axes: &[[f64; 3]; 3], half_diag: f64) -> f64 {
    let d = s.sdf(centre);
    if d > half_diag {
        return 0.0;
    }
    if d < -half_diag {
        return 1.0;
    }
    let h = 1e-3;
    let mut n = [0.0; 3];
    for a in 0..3 {
        let mut p = centre;
        let mut q = centre;
        p[a] += h;
        q[a] -= h;
        n[a] = (s.sdf(p) - s.sdf(q)) / (2.0 * h);
    }
    let nn = norm(n).max(1e-12);
    let n = n.map(|v| v / nn);
    let w: f64 = axes.iter().map(|e| dot(n, *e).abs()).sum();
    (0.5 - d / w.max(1e-9)).clamp(0.0, 1.0)
}

/// [`occupancy`] refined over sub-cells of at most 0.6 mm per edge: small curved solids (a 0.05 mL leak is a
/// 2.3 mm sphere, as tall as one slice) are not plane-like within one voxel.
fn occupancy_fine(s: &Solid, centre: [f64; 3], axes: &[[f64; 3]; 3], half_diag: f64) -> f64 {
    let d = s.sdf(centre);
    if d > half_diag {
        return 0.0;
    }
    if d < -half_diag {
        return 1.0;
    }
    let n = axes.map(|e| (norm(e) / 0.6).ceil().max(2.0) as usize);
    let sub = [0, 1, 2].map(|a| axes[a].map(|v| v / n[a] as f64));
    let sub_half = 0.5 * sub.iter().map(|e| dot(*e, *e)).sum::<f64>().sqrt();
    let mut acc = 0.0;
    for i in 0..n[0] {
        for j in 0..n[1] {
            for k in 0..n[2] {
                let f = [
                    (i as f64 + 0.5) / n[0] as f64 - 0.5,
                    (j as f64 + 0.5) / n[1] as f64 - 0.5,
                    (k as f64 + 0.5) / n[2] as f64 - 0.5,
                ];
                let c =
                    [0, 1, 2].map(|b| centre[b] + f[0] * axes[0][b] + f[1] * axes[1][b] + f[2] * axes[2][b]);
                acc += occupancy(s, c, &sub, sub_half);
            }
        }
    }
    acc / (n[0] * n[1] * n[2]) as f64
}

/// Render `scene` on `geometry` (`dims` voxels) with the anatomy placed by `pose` (anatomy -> LPS).
pub fn render(
    scene: &Scene,
    geometry: Geometry,
    dims: [usize; 3],
    pose: &RigidTransform,
    seed: u64,
) -> Rendered {
    let inv = pose.inverse();
    let to_anat = |p: Lps| inv.apply(p).0;
    // Voxel edge vectors in the anatomy frame.
    let sp = geometry.spacing.zyx();
    let rot = |v: Vec3| -> [f64; 3] { sub(inv.apply(Lps(v.0)).0, inv.apply(Lps([0.0; 3])).0) };
    let offsets: [[f64; 3]; 3] = [0, 1, 2].map(|a| rot(geometry.axes[a] * sp[a]));
    let half_diag = 0.5 * (sp[0] * sp[0] + sp[1] * sp[1] + sp[2] * sp[2]).sqrt();

    // Bone, in painting order: later solids overwrite earlier ones. A voxel's value must stay a linear mix of
    // its tissue fractions (as the scanner's partial volume is), so the disc column goes under the bodies and
    // each body is a shell: cortex = outer fraction - inner fraction, cancellous = inner fraction.
    let mut bone: Vec<(Solid, Option<Solid>, f64, f64)> = Vec::new();
    bone.push((Solid::Column { c: [0.0, 0.0, 0.0], r: 20.0, h: 48.0 }, None, 90.0, 0.0));
    for zc in [-32.0, 0.0, 32.0] {
        let col = Solid::Column { c: [0.0, 0.0, zc], r: 20.0, h: 12.0 };
        bone.push((col, Some(col.shrunk(1.5)), 1000.0, 200.0));
    }
    for sx in [-1.0, 1.0] {
        let ped = Solid::Capsule { a: [sx * 10.0, 17.0, 0.0], b: [sx * 13.0, 30.0, 0.0], r: 4.5 };
        bone.push((ped, None, 750.0, 0.0));
        bone.push((
            Solid::Capsule { a: [sx * 13.0, 30.0, 0.0], b: [0.0, 39.0, 0.0], r: 3.5 },
            None,
            750.0,
            0.0,
        ));
    }
    bone.push((Solid::Capsule { a: [0.0, 39.0, 0.0], b: [2.0, 60.0, -8.0], r: 3.5 }, None, 750.0, 0.0));
    if scene.lesions {
        bone.push((Solid::Sphere { c: [-11.0, 4.0, 5.0], r: 5.0 }, None, 800.0, 0.0));
        bone.push((Solid::Sphere { c: [11.0, -9.0, -6.0], r: 2.5 }, None, 1300.0, 0.0));
    }
    let cements: Vec<Solid> = scene.intravertebral.iter().chain(scene.leaks.iter()).copied().collect();
    let n_int = scene.intravertebral.len();

    let [nz, ny, nx] = dims;
    let mut data = Array3::<f32>::zeros((nz, ny, nx));
    let mut body = Array3::<bool>::from_elem((nz, ny, nx), false);
    let mut int_ml = 0.0;
    let mut leak_ml = vec![0.0; scene.leaks.len()];
    let mut leak_w = vec![[0.0; 3]; scene.leaks.len()];
    let vml = geometry.spacing.voxel_volume_ml();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let noise = Normal::new(0.0, scene.noise_hu.max(1e-9)).ok();
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let p_lps = geometry.voxel_to_lps([z, y, x]);
                let p = to_anat(p_lps);
                let mut v = 40.0;
                for (outer, inner, hu, hu_inner) in &bone {
                    let o = occupancy(outer, p, &offsets, half_diag);
                    let i = inner.map_or(0.0, |s| occupancy(&s, p, &offsets, half_diag).min(o));
                    v = v * (1.0 - o) + (o - i) * hu + i * hu_inner;
                }
                let in_body = BODY.sdf(p) <= 0.0;
                body[[z, y, x]] = in_body;
                // Cement shares: each solid's own occupancy, less what later solids cover.
                let occ: Vec<f64> =
                    cements.iter().map(|s| occupancy_fine(s, p, &offsets, half_diag)).collect();
                let mut share = occ.clone();
                for k in 0..occ.len() {
                    for j in k + 1..occ.len() {
                        share[k] *= 1.0 - occ[j];
                    }
                }
                let total: f64 = share.iter().sum();
                v = v * (1.0 - total) + total * CEMENT_HU;
                let metal_occ = |s: &Solid| occupancy_fine(s, p, &offsets, half_diag);
                let mut keep = 1.0;
                for (on, s, hu) in [(scene.needle, NEEDLE, METAL_HU), (scene.wire, WIRE, scene.wire_hu)] {
                    if on {
                        let o = metal_occ(&s);
                        v = v * (1.0 - o) + o * hu;
                        keep *= 1.0 - o;
                    }
                }
                if scene.needle {
                    v += streak(p) * keep;
                }
                if let Some(n) = &noise {
                    v += n.sample(&mut rng);
                }
                data[[z, y, x]] = v.clamp(-1024.0, SCANNER_MAX_HU) as f32;
                for (k, sh) in share.iter().enumerate() {
                    let c = sh * keep * vml;
                    if c == 0.0 {
                        continue;
                    }
                    if in_body {
                        int_ml += c;
                    } else if k >= n_int {
                        leak_ml[k - n_int] += c;
                        for a in 0..3 {
                            leak_w[k - n_int][a] += c * p_lps.0[a];
                        }
                    } else {
                        // Intravertebral solids are built inside the body; any spill counts as intravertebral.
                        int_ml += c;
                    }
                }
            }
        }
    }
    let leak_centroid = leak_w.iter().zip(&leak_ml).map(|(w, m)| Lps(w.map(|v| v / m.max(1e-12)))).collect();
    Rendered {
        ct: CtVolume::from_hu(&data, geometry),
        body: Volume::new(body, geometry),
        truth: Truth { intravertebral_ml: int_ml, leak_ml, leak_centroid },
    }
}

/// Bright and dark streaks radiating from the needle shaft, fading over a few millimetres.
fn streak(p: [f64; 3]) -> f64 {
    let Solid::Capsule { a, b, r } = NEEDLE else { return 0.0 };
    let ab = sub(b, a);
    let l = norm(ab);
    let u = ab.map(|v| v / l);
    let d = sub(p, a);
    let t = dot(d, u);
    if !(0.0..=l).contains(&t) {
        return 0.0;
    }
    let radial = [d[0] - u[0] * t, d[1] - u[1] * t, d[2] - u[2] * t];
    let dist = norm(radial);
    if dist <= r {
        return 0.0;
    }
    // Angle around the shaft measured from the superior direction projected off the axis.
    let up = [0.0 - u[2] * u[0], 0.0 - u[2] * u[1], 1.0 - u[2] * u[2]];
    let side = [u[1] * up[2] - u[2] * up[1], u[2] * up[0] - u[0] * up[2], u[0] * up[1] - u[1] * up[0]];
    let phi = dot(radial, side).atan2(dot(radial, up));
    350.0 * (4.0 * phi).cos() * (-(dist - r) / 5.0).exp()
}

/// The standard test grid: 40 slices of 2.5 mm, 0.7 mm pixels, `n` x `n`, centred on the body.
pub fn standard_grid(position: PatientPosition, n: usize, centre: Lps) -> (Geometry, [usize; 3]) {
    let dims = [40, n, n];
    (grid(position, dims, [2.5, 0.7, 0.7], Lps([centre.x(), centre.y() + 10.0, centre.z()])), dims)
}
