//! Analytic patient model: the treated vertebra with its neighbours, canal, discs, veins, ribs, muscles, fat
//! and skin, defined once in millimetres.
//!
//! Frames: the *anatomy frame* has LPS axes with its origin at the centre of the treated vertebral body (the
//! patient's LPS position is this plus a fixed offset; motion between scans is applied outside). The spine
//! itself may be rotated (axial rotation, scoliotic tilt): vertebrae live in the *spine frame*
//! `s = R_spine * a`. All shape functions return a signed depth in mm (positive inside) so that cortical
//! shells and partial volume come from one number.

use super::noise;
use super::spec::{LesionType, Level};
use crate::volume::labels;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Tissue classes; the realism check and the leak regions work on these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Tissue {
    Air = 0,
    Lung,
    Fat,
    Skin,
    Muscle,
    Viscera,
    Blood,
    Csf,
    Cord,
    EpiduralFat,
    NerveRoot,
    Disc,
    Cortical,
    Cancellous,
    Lytic,
    Blastic,
    BasiVein,
    Gas,
}

impl Tissue {
    pub fn is_bone(self) -> bool {
        matches!(self, Tissue::Cortical | Tissue::Cancellous | Tissue::Blastic)
    }
}

/// Mean HU of each tissue for this patient.
#[derive(Clone, Debug)]
pub struct HuTable {
    pub fat: f32,
    pub muscle: f32,
    pub disc: f32,
    pub csf: f32,
    pub cord: f32,
    pub blood: f32,
    pub lung: f32,
    pub cancellous: f32,
    pub trabecular_sd: f32,
    pub cortical: f32,
    pub lytic: f32,
    pub blastic: f32,
    pub viscera: f32,
}

/// One vertebra, in its own local frame (origin at the body centre, LPS axes).
#[derive(Clone, Debug)]
pub struct Vertebra {
    pub level_index: isize,
    /// Body centre in the spine frame.
    pub centre: [f64; 3],
    /// Extra axial rotation of this vertebra (radians).
    pub rot: f64,
    /// Cached (sin, cos) of `rot`.
    pub rot_sc: (f64, f64),
    /// Half width (left-right) and half depth (antero-posterior) of the body.
    pub a: f64,
    pub b: f64,
    /// Distances from the centre to the upper and lower endplates.
    pub h_top: f64,
    pub h_bot: f64,
    /// Anterior height loss of a wedge fracture (mm) and endplate concavity (mm).
    pub wedge: f64,
    pub concavity: f64,
    pub waist: f64,
    /// Posterior wall at the midline (local y), and how much it is concave.
    pub yw0: f64,
    pub wall_conc: f64,
    pub t_side: f64,
    pub t_wall: f64,
    pub t_end: f64,
    pub ped_x: f64,
    pub ped_rx: f64,
    pub ped_rz: f64,
    pub ped_z: f64,
    pub ped_len: f64,
    pub ped_flare: f64,
    pub canal_hw: f64,
    pub canal_d: f64,
    pub lam_t: f64,
    pub sp_len: f64,
    pub sp_slope: f64,
    pub sp_h: f64,
    pub sp_t: f64,
    pub tp_len: f64,
    pub tp_r: f64,
    pub tp_back: f64,
    pub disc_above: f64,
    pub disc_below: f64,
    pub cord: bool,
    pub thoracic: bool,
    pub bv_z: f64,
}

/// Which surface bounds the body at a point (for cortical thickness).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyPart {
    Side,
    Wall,
    Top,
    Bottom,
}

#[derive(Clone, Debug)]
pub struct Lesion {
    pub kind: LesionType,
    pub centre: [f64; 3],
    pub radii: [f64; 3],
    /// Posterior cortical breach (local x, z, half width, half height) when the wall is not intact.
    pub breach: Option<[f64; 4]>,
}

#[derive(Clone, Debug)]
pub struct Torso {
    pub half_width: f64,
    pub half_depth: f64,
    pub centre_y: f64,
    pub fat_post: f64,
    pub fat_lat: f64,
    pub fat_ant: f64,
    pub wall: f64,
}

#[derive(Clone, Debug)]
struct Rib {
    pts: Vec<[f64; 3]>,
    r: f64,
    lo: [f64; 3],
    hi: [f64; 3],
}

/// One evaluated point.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub tissue: Tissue,
    /// Anatomy label of the treated level (0 elsewhere).
    pub label: u8,
    pub hu: f32,
}

#[derive(Clone, Debug)]
pub struct Anatomy {
    pub level: Level,
    pub spine_rot: [[f64; 3]; 3],
    pub verts: Vec<Vertebra>,
    /// Index of the treated vertebra in `verts`.
    pub target: usize,
    pub torso: Torso,
    pub hu: HuTable,
    pub lesion: Option<Lesion>,
    pub osteoporotic: bool,
    pub compression: bool,
    ribs: Vec<Rib>,
    tex: u32,
}

fn lerp(a: f64, b: f64, t: f64) -> f64 {
    a + (b - a) * t
}

/// Interpolates an anatomical size from T5 (index 0) through T12 (7) to L5 (12).
fn by_level(i: isize, t5: f64, t12: f64, l5: f64) -> f64 {
    let i = i.clamp(-2, 14) as f64;
    if i <= 7.0 {
        lerp(t5, t12, i / 7.0)
    } else {
        lerp(t12, l5, (i - 7.0) / 5.0)
    }
}

pub fn mat_mul_vec(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [
        m[0][0] * v[0] + m[0][1] * v[1] + m[0][2] * v[2],
        m[1][0] * v[0] + m[1][1] * v[1] + m[1][2] * v[2],
        m[2][0] * v[0] + m[2][1] * v[1] + m[2][2] * v[2],
    ]
}

pub fn transpose(m: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    [[m[0][0], m[1][0], m[2][0]], [m[0][1], m[1][1], m[2][1]], [m[0][2], m[1][2], m[2][2]]]
}

pub fn mat_mul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

/// Rotation about z, then y, then x (radians), as a matrix.
pub fn rotation(rx: f64, ry: f64, rz: f64) -> [[f64; 3]; 3] {
    let (sx, cx) = rx.sin_cos();
    let (sy, cy) = ry.sin_cos();
    let (sz, cz) = rz.sin_cos();
    let mx = [[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]];
    let my = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
    let mz = [[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]];
    mat_mul(&mx, &mat_mul(&my, &mz))
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Distance from `p` to the segment `a`–`b`, and the position along it (0..1).
pub fn seg_dist(p: [f64; 3], a: [f64; 3], b: [f64; 3]) -> (f64, f64) {
    let ab = sub(b, a);
    let l2 = dot(ab, ab).max(1e-12);
    let t = (dot(sub(p, a), ab) / l2).clamp(0.0, 1.0);
    let c = [a[0] + ab[0] * t, a[1] + ab[1] * t, a[2] + ab[2] * t];
    let d = sub(p, c);
    (dot(d, d).sqrt(), t)
}

/// Approximate signed distance (positive inside) to the ellipse x²/a² + y²/b² = 1.
fn ellipse_depth(x: f64, y: f64, a: f64, b: f64) -> f64 {
    let ex = x / a;
    let ey = y / b;
    let r = (ex * ex + ey * ey).sqrt();
    if r < 0.35 {
        return a.min(b) * (1.0 - r);
    }
    let g = ((ex / a).powi(2) + (ey / b).powi(2)).sqrt() / r;
    (1.0 - r) / g.max(1e-9)
}

impl Vertebra {
    fn new(level_index: isize, rng: &mut ChaCha8Rng, scale: f64) -> Vertebra {
        let li = level_index;
        let a = by_level(li, 15.0, 20.5, 25.5) * scale;
        let b = by_level(li, 13.5, 16.0, 17.5) * scale;
        let h = by_level(li, 9.2, 12.0, 13.5) * scale;
        let thoracic = li <= 7;
        let canal_hw = by_level(li, 7.8, 9.0, 12.0) * scale;
        let canal_d = by_level(li, 14.5, 15.5, 17.0) * scale;
        let ped_rx = by_level(li, 3.3, 4.0, 7.0) * scale;
        let ped_x = canal_hw + ped_rx * 0.9;
        let yw0 = b * 0.62;
        Vertebra {
            level_index,
            centre: [0.0; 3],
            rot: 0.0,
            rot_sc: (0.0, 1.0),
            a,
            b,
            h_top: h,
            h_bot: h,
            wedge: 0.0,
            concavity: rng.random_range(0.5..1.5),
            waist: rng.random_range(0.04..0.09),
            yw0,
            wall_conc: rng.random_range(1.0..3.0),
            t_side: rng.random_range(0.5..1.0),
            t_wall: rng.random_range(0.5..1.0),
            t_end: rng.random_range(0.7..1.5),
            ped_x,
            ped_rx,
            ped_rz: by_level(li, 6.0, 7.5, 7.5) * scale,
            ped_z: h * 0.3,
            ped_len: by_level(li, 9.0, 10.0, 9.0) * scale,
            ped_flare: if thoracic { 0.15 } else { 0.3 },
            canal_hw,
            canal_d,
            lam_t: by_level(li, 6.0, 7.0, 7.5) * scale,
            sp_len: by_level(li, 34.0, 30.0, 26.0) * scale,
            sp_slope: by_level(li, 0.95, 0.5, 0.1),
            sp_h: by_level(li, 4.5, 6.5, 9.0) * scale,
            sp_t: by_level(li, 2.6, 3.2, 4.0),
            tp_len: by_level(li, 18.0, 10.0, 22.0) * scale,
            tp_r: by_level(li, 4.5, 3.5, 4.0),
            tp_back: by_level(li, 0.6, 0.35, 0.1),
            disc_above: by_level(li, 4.0, 6.0, 10.0) * scale,
            disc_below: by_level(li - 1, 4.0, 6.0, 10.0) * scale,
            cord: li <= 9,
            thoracic,
            bv_z: rng.random_range(-2.0..2.0),
        }
    }

    /// Body-frame coordinates of a spine-frame point.
    pub fn local(&self, s: [f64; 3]) -> [f64; 3] {
        let d = sub(s, self.centre);
        let (sn, cs) = (-self.rot_sc.0, self.rot_sc.1);
        [cs * d[0] - sn * d[1], sn * d[0] + cs * d[1], d[2]]
    }

    /// Spine-frame point of body-frame coordinates.
    pub fn to_spine(&self, l: [f64; 3]) -> [f64; 3] {
        let (sn, cs) = self.rot_sc;
        [
            cs * l[0] - sn * l[1] + self.centre[0],
            sn * l[0] + cs * l[1] + self.centre[1],
            l[2] + self.centre[2],
        ]
    }

    fn waist_scale(&self, z: f64) -> f64 {
        let zn = (z / self.h_top.max(self.h_bot)).clamp(-1.0, 1.0);
        1.0 - self.waist * (1.0 - zn * zn)
    }

    /// Outer posterior wall (local y) at local x, z.
    pub fn wall_y(&self, x: f64, z: f64) -> f64 {
        let s = self.waist_scale(z);
        self.yw0 * (0.5 + 0.5 * s) + self.wall_conc * (x / self.a).powi(2)
    }

    fn top_z(&self, x: f64, y: f64) -> f64 {
        let r2 = (x / self.a).powi(2) + ((y + 0.1 * self.b) / self.b).powi(2);
        let ant = ((self.yw0 - y) / (self.yw0 + self.b * 1.1)).clamp(0.0, 1.0);
        self.h_top - self.wedge * ant - self.concavity * (1.0 - r2).max(0.0)
    }

    fn bot_z(&self, x: f64, y: f64) -> f64 {
        let r2 = (x / self.a).powi(2) + ((y + 0.1 * self.b) / self.b).powi(2);
        -self.h_bot + self.concavity * (1.0 - r2).max(0.0)
    }

    /// Signed depth inside the vertebral body and the nearest bounding surface.
    pub fn body_depth(&self, l: [f64; 3]) -> (f64, BodyPart) {
        let [x, y, z] = l;
        let s = self.waist_scale(z);
        let de = ellipse_depth(x, y + 0.1 * self.b, self.a * s, self.b * s);
        let dw = self.wall_y(x, z) - y;
        let dt = self.top_z(x, y) - z;
        let db = z - self.bot_z(x, y);
        let mut best = (de, BodyPart::Side);
        for c in [(dw, BodyPart::Wall), (dt, BodyPart::Top), (db, BodyPart::Bottom)] {
            if c.0 < best.0 {
                best = c;
            }
        }
        best
    }

    fn cortex(&self, part: BodyPart) -> f64 {
        match part {
            BodyPart::Side => self.t_side,
            BodyPart::Wall => self.t_wall,
            BodyPart::Top | BodyPart::Bottom => self.t_end,
        }
    }

    /// Canal centre (local y) and its half depth.
    pub fn canal_centre_y(&self) -> f64 {
        self.yw0 + 0.4 + self.canal_d / 2.0
    }

    /// Depth inside the canal cross-section (lumbar canals narrow posteriorly: trefoil-ish).
    pub fn canal_depth(&self, x: f64, y: f64) -> f64 {
        let cy = self.canal_centre_y();
        let taper = if self.thoracic { 0.0 } else { 0.25 };
        let hw = self.canal_hw * (1.0 - taper * ((y - cy) / (self.canal_d / 2.0)).clamp(0.0, 1.0));
        ellipse_depth(x, y - cy, hw, self.canal_d / 2.0)
    }

    /// End of the pedicle (local y), where it joins lamina and processes.
    pub fn ped_end_y(&self) -> f64 {
        self.yw0 + self.ped_len
    }

    fn pedicle_depth(&self, l: [f64; 3]) -> f64 {
        let ax = l[0].abs();
        let y0 = self.yw0 - 3.0;
        let y1 = self.ped_end_y() + 2.0;
        let xc = self.ped_x + self.ped_flare * (l[1] - y0).max(0.0);
        let dy = (l[1] - y0).min(y1 - l[1]);
        let de = ellipse_depth(ax - xc, l[2] - self.ped_z, self.ped_rx, self.ped_rz);
        de.min(dy + 1.0)
    }

    /// Depth inside the posterior elements (pedicles, laminae, spinous, transverse and articular processes).
    pub fn posterior_depth(&self, l: [f64; 3]) -> f64 {
        let [x, y, z] = l;
        let ax = x.abs();
        if y < self.yw0 - 4.0 || ax > self.ped_x + self.tp_len + self.tp_r + 4.0 {
            return -1.0;
        }
        let mut d = self.pedicle_depth(l);
        let cy = self.canal_centre_y();
        let ye = self.ped_end_y();
        // Laminae: a ring around the posterior canal, slanting downward.
        let zl_top = self.ped_z + self.ped_rz * 0.6;
        let zl_bot = -self.h_bot - 0.5 * self.disc_below;
        if z < zl_top + 1.0 && z > zl_bot - 1.0 && y > ye - 4.0 {
            let outer = ellipse_depth(x, y - cy, self.canal_hw + self.lam_t, self.canal_d / 2.0 + self.lam_t);
            let inner = -self.canal_depth(x, y);
            let dz = (zl_top - z).min(z - zl_bot);
            d = d.max(outer.min(inner).min(dz));
        }
        // Spinous process: a plate from the laminar junction backward and down.
        let y_s0 = cy + self.canal_d / 2.0 + self.lam_t * 0.3;
        let dir = [self.sp_slope.cos(), -self.sp_slope.sin()];
        let (py, pz) = (y - y_s0, z - (self.ped_z - 2.0));
        let along = py * dir[0] + pz * dir[1];
        let perp = -py * dir[1] + pz * dir[0];
        if along > -4.0 && along < self.sp_len + 2.0 {
            let taper = 1.0 - 0.3 * (along / self.sp_len).clamp(0.0, 1.0);
            let ds = (self.sp_t * taper - ax)
                .min(self.sp_h * (0.7 + 0.3 * taper) - perp.abs())
                .min(self.sp_len - along);
            d = d.max(ds.min(along + 4.0));
        }
        // Transverse processes: capsules out to the side (and back in the thorax).
        let tp0 = [self.ped_x + 1.0, ye + 1.0, self.ped_z];
        let tp1 = [
            self.ped_x + 1.0 + self.tp_len * self.tp_back.cos(),
            ye + 1.0 + self.tp_len * self.tp_back.sin(),
            self.ped_z,
        ];
        let (dt, _) = seg_dist([ax, y, z], tp0, tp1);
        d = d.max(self.tp_r - dt);
        // Articular processes: short vertical pillars behind the pedicles.
        let sup_a = [self.canal_hw + 4.0, ye + 2.5, self.ped_z];
        let sup_b = [self.canal_hw + 4.0, ye + 2.5, self.h_top + self.disc_above * 0.7];
        let (dsa, _) = seg_dist([ax, y, z], sup_a, sup_b);
        d = d.max(3.8 - dsa);
        let inf_a = [self.canal_hw + 1.5, ye + 7.0, -self.h_bot * 0.2];
        let inf_b = [self.canal_hw + 1.5, ye + 7.0, -self.h_bot - self.disc_below * 0.6];
        let (dia, _) = seg_dist([ax, y, z], inf_a, inf_b);
        d.max(3.3 - dia)
    }

    /// Local z of this vertebra's upper endplate at the body centre (used for discs).
    pub fn top_at(&self, x: f64, y: f64) -> f64 {
        self.top_z(x, y)
    }
    pub fn bot_at(&self, x: f64, y: f64) -> f64 {
        self.bot_z(x, y)
    }

    /// Whether local (x, y) lies in the body's axial outline (no waist), for discs.
    pub fn disc_xy_depth(&self, x: f64, y: f64) -> f64 {
        ellipse_depth(x, y + 0.1 * self.b, self.a * 1.02, self.b * 1.02).min(self.yw0 + 0.6 - y)
    }

    /// Lateral limit of the foramen (local |x|).
    pub fn foramen_outer_x(&self) -> f64 {
        self.ped_x + self.ped_rx + 3.0
    }
}

impl Anatomy {
    /// Draws a patient for `level` from the stream.
    pub fn generate(
        level: Level,
        rng: &mut ChaCha8Rng,
        lesion_kind: LesionType,
        wall_intact: bool,
        span_mm: f64,
    ) -> Anatomy {
        let li = level.index() as isize;
        let scale = rng.random_range(0.88..1.12);
        let osteoporotic = rng.random_bool(0.35);
        let compression = rng.random_bool(0.4);
        let mut verts = Vec::new();
        let mut tv = Vertebra::new(li, rng, scale);
        if compression {
            let h = tv.h_top + tv.h_bot;
            if rng.random_bool(0.7) {
                tv.wedge = h * rng.random_range(0.12..0.4);
            } else {
                tv.concavity += h * rng.random_range(0.06..0.15);
                tv.h_top -= h * rng.random_range(0.03..0.1);
            }
        }
        // Neighbours above and below until the scan span is covered.
        let half = span_mm / 2.0 + 15.0;
        let mut above = Vec::new();
        let mut z = tv.h_top;
        let mut k = 1;
        while z < half + 30.0 && k < 8 {
            let mut v = Vertebra::new(li - k, rng, scale);
            let prev_disc = above.last().map(|p: &Vertebra| p.disc_below).unwrap_or(tv.disc_above);
            z += prev_disc + v.h_bot;
            v.centre = [0.0, 0.0, z];
            z += v.h_top;
            v.disc_below = prev_disc;
            above.push(v);
            k += 1;
        }
        let mut below = Vec::new();
        let mut z = -tv.h_bot;
        let mut k = 1;
        while z > -half - 30.0 && k < 8 {
            let mut v = Vertebra::new(li + k, rng, scale);
            let d = below.last().map(|p: &Vertebra| p.disc_below).unwrap_or(tv.disc_below);
            v.disc_above = d;
            z -= d + v.h_top;
            v.centre = [0.0, 0.0, z];
            z -= v.h_bot;
            below.push(v);
            k += 1;
        }
        // Curvature and scoliosis shift neighbours; small individual rotations.
        let kyph = rng.random_range(-0.004..0.004);
        let scol = rng.random_range(-0.06..0.06);
        for v in above.iter_mut().chain(below.iter_mut()) {
            let zc = v.centre[2];
            v.centre[0] = scol * zc + rng.random_range(-0.5..0.5);
            v.centre[1] = kyph * zc * zc;
            v.rot = rng.random_range(-0.03..0.03);
            v.rot_sc = v.rot.sin_cos();
        }
        below.reverse();
        let target = below.len();
        verts.extend(below);
        verts.push(tv);
        verts.extend(above);

        let spine_rot = rotation(0.0, rng.random_range(-0.07..0.07), rng.random_range(-0.12..0.12));

        let t = &verts[target];
        let sp_tip = t.canal_centre_y() + t.canal_d / 2.0 + t.lam_t + t.sp_len * t.sp_slope.cos() * 0.9;
        let thoracic = level.is_thoracic();
        let fat_post = rng.random_range(4.0..25.0);
        let half_depth = if thoracic { rng.random_range(95.0..125.0) } else { rng.random_range(95.0..135.0) };
        let torso = Torso {
            half_width: if thoracic {
                rng.random_range(140.0..170.0)
            } else {
                rng.random_range(135.0..175.0)
            },
            half_depth,
            centre_y: sp_tip + 8.0 + fat_post - half_depth,
            fat_post,
            fat_lat: fat_post * rng.random_range(1.0..2.0),
            fat_ant: fat_post * rng.random_range(1.0..2.5),
            wall: rng.random_range(7.0..13.0),
        };

        let hu = HuTable {
            fat: rng.random_range(-110.0..-80.0),
            muscle: rng.random_range(32.0..50.0),
            disc: rng.random_range(58.0..88.0),
            csf: rng.random_range(2.0..15.0),
            cord: rng.random_range(25.0..38.0),
            blood: rng.random_range(35.0..55.0),
            lung: rng.random_range(-880.0..-800.0),
            cancellous: if osteoporotic {
                rng.random_range(60.0..110.0)
            } else {
                rng.random_range(90.0..160.0)
            },
            trabecular_sd: rng.random_range(35.0..70.0),
            cortical: rng.random_range(700.0..1200.0),
            lytic: rng.random_range(20.0..60.0),
            blastic: rng.random_range(550.0..950.0),
            viscera: rng.random_range(25.0..45.0),
        };

        let tv = &verts[target];
        let r = [
            rng.random_range(6.0..tv.a * 0.55),
            rng.random_range(5.0..tv.b * 0.55),
            rng.random_range(4.0..(tv.h_top.min(tv.h_bot) * 0.8).max(4.5)),
        ];
        let mut centre = [
            rng.random_range(-tv.a * 0.3..tv.a * 0.3),
            rng.random_range(-tv.b * 0.3..tv.b * 0.2),
            rng.random_range(-2.0..2.0),
        ];
        let breach = if wall_intact {
            None
        } else {
            // The lesion reaches the posterior wall and destroys a patch of it.
            centre[1] = tv.yw0 - r[1] * 0.8;
            let bx = rng.random_range(-tv.canal_hw * 0.5..tv.canal_hw * 0.5);
            centre[0] = bx;
            Some([bx, centre[2], rng.random_range(2.5..5.0), rng.random_range(2.0..4.0)])
        };
        let lesion = Some(Lesion { kind: lesion_kind, centre, radii: r, breach });

        let ribs = if thoracic { make_ribs(&verts, &torso) } else { Vec::new() };
        Anatomy {
            level,
            spine_rot,
            verts,
            target,
            torso,
            hu,
            lesion,
            osteoporotic,
            compression,
            ribs,
            tex: rng.random(),
        }
    }

    pub fn target(&self) -> &Vertebra {
        &self.verts[self.target]
    }

    pub fn to_spine(&self, a: [f64; 3]) -> [f64; 3] {
        mat_mul_vec(&self.spine_rot, a)
    }

    pub fn from_spine(&self, s: [f64; 3]) -> [f64; 3] {
        mat_mul_vec(&transpose(&self.spine_rot), s)
    }

    /// Anatomy-frame point of the treated vertebra's local coordinates.
    pub fn target_to_anat(&self, l: [f64; 3]) -> [f64; 3] {
        self.from_spine(self.target().to_spine(l))
    }

    /// Treated vertebra's local coordinates of an anatomy-frame point.
    pub fn anat_to_target(&self, a: [f64; 3]) -> [f64; 3] {
        self.target().local(self.to_spine(a))
    }

    /// The z-span of the canal label (treated body plus the discs above and below), local.
    pub fn canal_label_z(&self) -> (f64, f64) {
        let t = self.target();
        (-t.h_bot - t.disc_below, t.h_top + t.disc_above)
    }

    /// Whether a local point of the treated vertebra lies in one of its foramina (lateral to the canal).
    pub fn in_foramen(&self, l: [f64; 3]) -> bool {
        let t = self.target();
        let (z0, z1) = self.canal_label_z();
        l[2] >= z0
            && l[2] <= z1
            && t.canal_depth(l[0], l[1]) <= 0.0
            && l[0].abs() < t.foramen_outer_x()
            && l[1] > t.yw0 - 1.0
            && l[1] < t.ped_end_y()
    }

    /// Evaluates tissue, label and HU at an anatomy-frame point.
    pub fn eval(&self, a: [f64; 3]) -> Sample {
        let s = self.to_spine(a);
        if s[0].abs() < 85.0 && s[1] > -70.0 && s[1] < 120.0 {
            if let Some(x) = self.eval_spine(s) {
                return x;
            }
        }
        if let Some(x) = self.eval_ribs(s) {
            return x;
        }
        self.eval_torso(a)
    }

    fn tissue_hu(&self, t: Tissue, p: [f64; 3]) -> f32 {
        let h = &self.hu;
        let n = |k: u32, size: f64| noise::scaled(self.tex.wrapping_add(k), p, [size; 3]);
        match t {
            Tissue::Air => -1000.0 + 5.0 * n(1, 20.0),
            Tissue::Gas => -950.0 + 20.0 * n(1, 3.0),
            Tissue::Lung => {
                let v = noise::fbm2(self.tex.wrapping_add(2), p, [3.0; 3]);
                if v > 0.55 {
                    h.lung + (v - 0.55) * 2000.0
                } else {
                    h.lung + 30.0 * v
                }
            }
            Tissue::Fat | Tissue::EpiduralFat => h.fat + 10.0 * n(3, 5.0),
            Tissue::Skin => h.muscle - 10.0 + 5.0 * n(4, 4.0),
            Tissue::Muscle => {
                let m = noise::fbm2(self.tex.wrapping_add(5), p, [6.0, 6.0, 14.0]);
                if m > 0.62 {
                    h.fat * 0.6 + 6.0 * n(6, 3.0)
                } else {
                    h.muscle + 7.0 * n(6, 3.0)
                }
            }
            Tissue::Viscera => {
                let m = noise::fbm2(self.tex.wrapping_add(7), p, [9.0; 3]);
                if m < -0.5 {
                    h.fat + 10.0 * n(8, 4.0)
                } else if m > 0.72 {
                    -940.0 + 20.0 * n(8, 3.0)
                } else {
                    h.viscera + 10.0 * n(8, 5.0)
                }
            }
            Tissue::Blood | Tissue::BasiVein => h.blood + 4.0 * n(9, 5.0),
            Tissue::Csf => h.csf + 3.0 * n(10, 5.0),
            Tissue::Cord | Tissue::NerveRoot => h.cord + 3.0 * n(11, 5.0),
            Tissue::Disc => h.disc + 8.0 * n(12, 3.0),
            Tissue::Cortical => h.cortical * (0.85 + 0.15 * n(13, 4.0)),
            Tissue::Cancellous => {
                let v = noise::fbm2(self.tex.wrapping_add(14), p, [1.1, 1.1, 1.8]);
                h.cancellous + h.trabecular_sd * 1.8 * v + 15.0 * n(15, 8.0)
            }
            Tissue::Lytic => h.lytic + 10.0 * n(16, 3.0),
            Tissue::Blastic => h.blastic * (0.85 + 0.2 * n(17, 2.5)),
        }
    }

    fn sample(&self, t: Tissue, label: u8, p: [f64; 3]) -> Sample {
        Sample { tissue: t, label, hu: self.tissue_hu(t, p) }
    }

    fn eval_spine(&self, s: [f64; 3]) -> Option<Sample> {
        // Vertebrae, most relevant first: the target, then by distance in z.
        for (i, v) in self.verts.iter().enumerate() {
            let dz = s[2] - v.centre[2];
            if dz > v.h_top + v.disc_above + 8.0 || dz < -v.h_bot - v.disc_below - 40.0 {
                continue;
            }
            let l = v.local(s);
            let is_t = i == self.target;
            let (db, part) = if dz > v.h_top + 1.0 || dz < -v.h_bot - 1.0 {
                (-1.0, BodyPart::Side)
            } else {
                v.body_depth(l)
            };
            if db > 0.0 {
                let label = if is_t { labels::VERTEBRAL_BODY } else { 0 };
                return Some(self.body_tissue(v, is_t, l, db, part, label, s));
            }
            let dp = v.posterior_depth(l);
            if dp > 0.0 {
                let label = if is_t { labels::POSTERIOR_ELEMENTS } else { 0 };
                let t = if dp < 1.1 { Tissue::Cortical } else { Tissue::Cancellous };
                let mut smp = self.sample(t, label, s);
                if t == Tissue::Cancellous {
                    smp.hu += 60.0;
                }
                return Some(smp);
            }
        }
        // Discs.
        for (i, v) in self.verts.iter().enumerate() {
            let Some(up) = self.verts.get(i + 1) else { continue };
            if s[2] < v.centre[2] || s[2] > up.centre[2] {
                continue;
            }
            let l = v.local(s);
            let top = v.top_at(l[0], l[1]);
            let lu = up.local(s);
            let bot_up = up.bot_at(lu[0], lu[1]) + up.centre[2] - v.centre[2];
            if l[2] > top && l[2] < bot_up && v.disc_xy_depth(l[0], l[1]) > 0.0 {
                let label = if i == self.target || i + 1 == self.target { labels::DISC } else { 0 };
                return Some(self.sample(Tissue::Disc, label, s));
            }
        }
        // Canal, foramina and their contents: owned by the nearest segment.
        let v = self
            .verts
            .iter()
            .min_by(|a, b| (s[2] - a.centre[2]).abs().total_cmp(&(s[2] - b.centre[2]).abs()))?;
        let l = v.local(s);
        let tl = self.target().local(s);
        let (z0, z1) = self.canal_label_z();
        let in_label_z = tl[2] >= z0 && tl[2] <= z1;
        let cdepth = v.canal_depth(l[0], l[1]);
        let canal_label = if in_label_z { labels::CANAL } else { 0 };
        if cdepth > 0.0 {
            let cy = v.canal_centre_y();
            let sac = ellipse_depth(l[0], l[1] - cy - 0.8, v.canal_hw * 0.72, v.canal_d * 0.39);
            if sac > 0.0 {
                if v.cord && ellipse_depth(l[0], l[1] - cy - 0.5, 4.6, 3.9) > 0.0 {
                    return Some(self.sample(Tissue::Cord, canal_label, s));
                }
                if !v.cord && noise::scaled(self.tex.wrapping_add(40), l, [1.2, 1.2, 30.0]) > 0.55 {
                    return Some(self.sample(Tissue::NerveRoot, canal_label, s));
                }
                return Some(self.sample(Tissue::Csf, canal_label, s));
            }
            // Anterior internal venous plexus: two longitudinal channels behind the posterior wall.
            let vx = l[0].abs() - v.canal_hw * 0.45;
            let vy = l[1] - (v.wall_y(l[0], l[2]) + 1.4);
            if vx * vx + vy * vy < 1.2 * 1.2 {
                return Some(self.sample(Tissue::Blood, canal_label, s));
            }
            // Tumour extension through a breached posterior wall.
            if let (true, Some(les)) = (self.is_target(v), &self.lesion) {
                if let Some([bx, bz, bw, bh]) = les.breach {
                    if (l[0] - bx).abs() < bw && (l[2] - bz).abs() < bh && l[1] < v.wall_y(l[0], l[2]) + 2.0 {
                        return Some(self.sample(Tissue::Lytic, canal_label, s));
                    }
                }
            }
            return Some(self.sample(Tissue::EpiduralFat, canal_label, s));
        }
        // Foramen: lateral to the canal, between pedicles, behind the body.
        let ax = l[0].abs();
        if ax < v.foramen_outer_x() && l[1] > v.yw0 - 1.0 && l[1] < v.ped_end_y() {
            let label = if in_label_z { labels::CANAL } else { 0 };
            let root_z = v.ped_z - v.ped_rz - 2.5;
            let (dr, _) = seg_dist(
                [ax, l[1], l[2]],
                [v.canal_hw - 1.0, v.yw0 + 3.0, root_z + 1.0],
                [v.foramen_outer_x() + 6.0, v.yw0 + 1.0, root_z - 4.0],
            );
            if dr < 2.4 {
                return Some(self.sample(Tissue::NerveRoot, label, s));
            }
            return Some(self.sample(Tissue::EpiduralFat, label, s));
        }
        // Segmental veins hugging the waist of each body.
        for v in &self.verts {
            if (s[2] - v.centre[2]).abs() > 4.0 {
                continue;
            }
            let l = v.local(s);
            if l[2].abs() > 4.0 || ellipse_depth(l[0], l[1] + 0.1 * v.b, v.a + 6.0, v.b + 6.0) < 0.0 {
                continue;
            }
            let d = segmental_vein_dist(v, l);
            if d < 1.6 {
                return Some(self.sample(Tissue::Blood, 0, s));
            }
        }
        None
    }

    fn is_target(&self, v: &Vertebra) -> bool {
        std::ptr::eq(v, self.target())
    }

    #[allow(clippy::too_many_arguments)]
    fn body_tissue(
        &self,
        v: &Vertebra,
        is_t: bool,
        l: [f64; 3],
        depth: f64,
        part: BodyPart,
        label: u8,
        s: [f64; 3],
    ) -> Sample {
        // Basivertebral foramen and vein.
        let bv = basivertebral_dist(v, l);
        let in_foramen = l[0].abs() < 2.2 && (l[2] - v.bv_z).abs() < 1.8 && part == BodyPart::Wall;
        if in_foramen || bv < 1.0 {
            return self.sample(Tissue::BasiVein, label, s);
        }
        let lesion_here =
            if is_t { self.lesion.as_ref().and_then(|les| lesion_tissue(les, l, self.tex)) } else { None };
        if depth < v.cortex(part) {
            if let (Some(les), true) = (self.lesion.as_ref().filter(|_| is_t), part == BodyPart::Wall) {
                if let Some([bx, bz, bw, bh]) = les.breach {
                    if (l[0] - bx).abs() < bw && (l[2] - bz).abs() < bh {
                        return self.sample(Tissue::Lytic, label, s);
                    }
                }
            }
            return self.sample(Tissue::Cortical, label, s);
        }
        if let Some(t) = lesion_here {
            return self.sample(t, label, s);
        }
        self.sample(Tissue::Cancellous, label, s)
    }

    fn eval_ribs(&self, s: [f64; 3]) -> Option<Sample> {
        for r in &self.ribs {
            if (0..3).any(|k| s[k] < r.lo[k] || s[k] > r.hi[k]) {
                continue;
            }
            let mut best = f64::MAX;
            for w in r.pts.windows(2) {
                best = best.min(seg_dist(s, w[0], w[1]).0);
            }
            if best < r.r {
                let t = if best > r.r - 1.2 { Tissue::Cortical } else { Tissue::Cancellous };
                return Some(self.sample(t, 0, s));
            }
        }
        None
    }

    /// Depth under the skin (mm) at an anatomy-frame point; negative outside the patient.
    pub fn skin_depth(&self, a: [f64; 3]) -> f64 {
        let t = &self.torso;
        ellipse_depth(a[0], a[1] - t.centre_y, t.half_width, t.half_depth)
    }

    fn eval_torso(&self, a: [f64; 3]) -> Sample {
        let t = &self.torso;
        let d = self.skin_depth(a);
        if d <= 0.0 {
            return self.sample(Tissue::Air, 0, a);
        }
        if d < 2.0 {
            return self.sample(Tissue::Skin, 0, a);
        }
        // Fat thickness varies around the circumference.
        let ang = (a[1] - t.centre_y).atan2(a[0].abs() + 1e-9); // +pi/2 posterior
        let post = ang.sin().max(0.0);
        let ant = (-ang.sin()).max(0.0);
        let lat = ang.cos().abs();
        let fat = t.fat_post * post + t.fat_ant * ant + t.fat_lat * lat * (1.0 - post.max(ant));
        if d < 2.0 + fat {
            return self.sample(Tissue::Fat, 0, a);
        }
        let tv = self.target();
        let thoracic = self.level.is_thoracic();
        let ax = a[0].abs();
        // Erector spinae and multifidus beside the spinous processes.
        let ey = tv.canal_centre_y() + 16.0;
        let ex = 24.0 + tv.a * 0.2;
        if ellipse_depth(ax - ex, a[1] - ey, 19.0 + tv.a * 0.2, 22.0) > 0.0 {
            return self.sample(Tissue::Muscle, 0, a);
        }
        if d < 2.0 + fat + t.wall {
            return self.sample(Tissue::Muscle, 0, a);
        }
        let li = self.level.index() as f64;
        if thoracic {
            // Descending aorta left-anterolateral of the body, azygos right.
            let aorta = [tv.a * 0.55 + 10.0, -tv.b * 0.7 - 6.0];
            if (a[0] - aorta[0]).hypot(a[1] - aorta[1]) < 12.0 {
                return self.sample(Tissue::Blood, 0, a);
            }
            if (a[0] + tv.a * 0.4).hypot(a[1] + tv.b * 0.9) < 4.0 {
                return self.sample(Tissue::Blood, 0, a);
            }
            let med = ellipse_depth(a[0] - 10.0, a[1] - (-tv.b - 55.0), 55.0, 60.0);
            if med > 0.0 {
                return self.sample(if med > 8.0 { Tissue::Viscera } else { Tissue::Fat }, 0, a);
            }
            let near_spine = ax < tv.a + 10.0 && a[1] > -tv.b - 20.0 && a[1] < tv.yw0 + 30.0;
            if !near_spine {
                return self.sample(Tissue::Lung, 0, a);
            }
            return self.sample(Tissue::Fat, 0, a);
        }
        // Lumbar: psoas growing caudally, quadratus lumborum, great vessels, kidneys, bowel.
        let ps = ((li - 7.0) / 5.0).clamp(0.1, 1.0);
        if ellipse_depth(ax - (tv.a + 6.0 + 8.0 * ps), a[1] + tv.b * 0.15, 8.0 + 14.0 * ps, 7.0 + 11.0 * ps)
            > 0.0
        {
            return self.sample(Tissue::Muscle, 0, a);
        }
        if ellipse_depth(ax - (tv.a + 45.0), a[1] - (tv.yw0 + 12.0), 14.0, 8.0) > 0.0 {
            return self.sample(Tissue::Muscle, 0, a);
        }
        if (a[0] - 14.0).hypot(a[1] + tv.b + 12.0) < 11.0 {
            return self.sample(Tissue::Blood, 0, a);
        }
        if ellipse_depth(a[0] + 22.0, a[1] + tv.b + 10.0, 12.0, 8.0) > 0.0 {
            return self.sample(Tissue::Blood, 0, a);
        }
        if li <= 9.5 && ellipse_depth(ax - (tv.a + 55.0), a[1] + 5.0, 26.0, 20.0) > 0.0 {
            return self.sample(Tissue::Viscera, 0, a);
        }
        if a[1] < -tv.b - 5.0 || ax > tv.a + 70.0 {
            return self.sample(Tissue::Viscera, 0, a);
        }
        self.sample(Tissue::Fat, 0, a)
    }
}

fn lesion_tissue(les: &Lesion, l: [f64; 3], tex: u32) -> Option<Tissue> {
    let q = [
        (l[0] - les.centre[0]) / les.radii[0],
        (l[1] - les.centre[1]) / les.radii[1],
        (l[2] - les.centre[2]) / les.radii[2],
    ];
    let r2 = q[0] * q[0] + q[1] * q[1] + q[2] * q[2];
    let lump = 0.35 * noise::scaled(tex.wrapping_add(30), l, [4.0; 3]) as f64;
    if r2 > 1.0 + lump {
        return None;
    }
    let spots = noise::scaled(tex.wrapping_add(31), l, [2.5; 3]);
    match les.kind {
        LesionType::Lytic => Some(Tissue::Lytic),
        LesionType::Blastic => (spots > -0.35).then_some(Tissue::Blastic),
        LesionType::Mixed => Some(if spots > 0.3 { Tissue::Blastic } else { Tissue::Lytic }),
        LesionType::Absent => None,
    }
}

/// Distance to the basivertebral vein channel (local coordinates): from the posterior foramen forward,
/// branching left and right.
pub fn basivertebral_dist(v: &Vertebra, l: [f64; 3]) -> f64 {
    let f = [0.0, v.yw0, v.bv_z];
    let c = [0.0, v.yw0 - v.b * 0.45, v.bv_z];
    let (d0, _) = seg_dist(l, f, c);
    let (d1, _) = seg_dist(l, c, [v.a * 0.45, v.yw0 - v.b * 0.9, v.bv_z + 1.0]);
    let (d2, _) = seg_dist(l, c, [-v.a * 0.45, v.yw0 - v.b * 0.9, v.bv_z - 1.0]);
    d0.min(d1 + 0.3).min(d2 + 0.3)
}

/// Points of the segmental vein on one side (sign +1 left, -1 right), local coordinates.
pub fn segmental_vein_points(v: &Vertebra, side: f64) -> Vec<[f64; 3]> {
    let s = 1.0 - v.waist;
    (0..=8)
        .map(|i| {
            let th = (-60.0 + 105.0 * i as f64 / 8.0f64).to_radians();
            [side * (v.a * s + 4.0) * th.cos(), (v.b * s + 4.0) * th.sin() - 0.1 * v.b, 0.0]
        })
        .collect()
}

fn segmental_vein_dist(v: &Vertebra, l: [f64; 3]) -> f64 {
    let side = if l[0] >= 0.0 { 1.0 } else { -1.0 };
    let pts = segmental_vein_points(v, side);
    pts.windows(2).map(|w| seg_dist(l, w[0], w[1]).0).fold(f64::MAX, f64::min)
}

fn make_ribs(verts: &[Vertebra], torso: &Torso) -> Vec<Rib> {
    let mut ribs = Vec::new();
    for v in verts.iter().filter(|v| v.thoracic) {
        for side in [1.0, -1.0] {
            let z0 = v.centre[2] + v.h_top * 0.8;
            let head = [side * v.a * 0.9, v.yw0 - 3.0, z0];
            let tub =
                [side * (v.ped_x + v.tp_len * 0.9), v.ped_end_y() + v.tp_len * 0.45, v.ped_z + v.centre[2]];
            let mut pts = vec![head, tub];
            let ax = torso.half_width - torso.fat_lat - 12.0;
            let by = torso.half_depth - torso.fat_post - 12.0;
            let start = ((tub[1] - torso.centre_y) / by).clamp(-1.0, 1.0).asin();
            for k in 1..=10 {
                let th = start - (start + 1.3) * k as f64 / 10.0;
                pts.push([side * ax * th.cos(), torso.centre_y + by * th.sin(), tub[2] - 2.5 * k as f64]);
            }
            let r = 4.2;
            let mut lo = [f64::MAX; 3];
            let mut hi = [f64::MIN; 3];
            for p in &pts {
                for k in 0..3 {
                    lo[k] = lo[k].min(p[k] - r);
                    hi[k] = hi[k].max(p[k] + r);
                }
            }
            ribs.push(Rib { pts, r, lo, hi });
        }
    }
    ribs
}
