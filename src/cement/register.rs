//! Rigid (6 degrees of freedom) registration of an earlier scan of the same patient onto the current scan,
//! for the small motion between injections (about 1 mm, 1 degree).
//!
//! Method: robust Gauss-Newton on intensity differences at a few thousand bone-edge points of the current
//! scan (strongest gradients among 150-1500 HU voxels near the body, away from metal and cement, which
//! differ between scans by design), coarse-to-fine over Gaussian-smoothed copies (sigma 2 mm then 0.7 mm)
//! so a 1-2 voxel misalignment is inside the capture range; at least one voxel of smoothing along thick
//! slices. A backtracking line search keeps each step downhill. Huber weights discount the residual cement and
//! streak differences. Everything is in LPS millimetres, so the two scans may have different grids.

use super::grid::{grow_box, Grid};
use super::morph;
use super::sample::{smooth, Sampler};
use crate::volume::{CtVolume, Lps, Vec3};
use rayon::prelude::*;
use serde::Serialize;

/// A rigid map of LPS points: `p -> rotation * p + translation`.
///
/// A registration result maps a point of the *current* scan to the same anatomy in the earlier scan (the
/// direction needed to sample the earlier scan on the current grid); [`RigidTransform::inverse`] gives the
/// motion the other way.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RigidTransform {
    /// Row-major 3x3 rotation matrix.
    pub rotation: [[f64; 3]; 3],
    /// Millimetres.
    pub translation: Vec3,
}

impl Default for RigidTransform {
    fn default() -> Self {
        RigidTransform::identity()
    }
}

impl RigidTransform {
    pub fn identity() -> RigidTransform {
        RigidTransform {
            rotation: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            translation: Vec3::ZERO,
        }
    }

    /// Rotation by the rotation vector `omega` (axis times angle, radians) about `center`, then a shift.
    pub fn about(center: Lps, omega: [f64; 3], shift: Vec3) -> RigidTransform {
        let r = rotation_matrix(omega);
        let c = Vec3(center.0);
        let rc = mat_vec(&r, c);
        RigidTransform { rotation: r, translation: c - rc + shift }
    }

    pub fn apply(&self, p: Lps) -> Lps {
        let v = mat_vec(&self.rotation, Vec3(p.0)) + self.translation;
        Lps(v.0)
    }

    pub fn inverse(&self) -> RigidTransform {
        let r = self.rotation;
        let rt = [0, 1, 2].map(|i| [0, 1, 2].map(|j| r[j][i]));
        let t = mat_vec(&rt, self.translation);
        RigidTransform { rotation: rt, translation: t * -1.0 }
    }

    /// `self` after `first`: `p -> self(first(p))`.
    pub fn after(&self, first: &RigidTransform) -> RigidTransform {
        let a = self.rotation;
        let b = first.rotation;
        let r = [0, 1, 2].map(|i| [0, 1, 2].map(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum::<f64>()));
        RigidTransform { rotation: r, translation: mat_vec(&a, first.translation) + self.translation }
    }

    /// Rotation angle in degrees.
    pub fn rotation_deg(&self) -> f64 {
        let tr = self.rotation[0][0] + self.rotation[1][1] + self.rotation[2][2];
        ((tr - 1.0) / 2.0).clamp(-1.0, 1.0).acos().to_degrees()
    }

    /// How far the point `p` moves, in mm.
    pub fn displacement_at(&self, p: Lps) -> f64 {
        self.apply(p).distance(p)
    }
}

fn mat_vec(m: &[[f64; 3]; 3], v: Vec3) -> Vec3 {
    Vec3(m.map(|row| row[0] * v.0[0] + row[1] * v.0[1] + row[2] * v.0[2]))
}

/// Rodrigues' formula.
fn rotation_matrix(w: [f64; 3]) -> [[f64; 3]; 3] {
    let th = (w[0] * w[0] + w[1] * w[1] + w[2] * w[2]).sqrt();
    let mut r = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    if th < 1e-15 {
        return r;
    }
    let k = w.map(|v| v / th);
    let kx = [[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]];
    let (s, c) = th.sin_cos();
    for i in 0..3 {
        for j in 0..3 {
            let kk: f64 = (0..3).map(|m| kx[i][m] * kx[m][j]).sum();
            r[i][j] += s * kx[i][j] + (1.0 - c) * kk;
        }
    }
    r
}

const COARSE_SIGMA_MM: f64 = 2.0;
const MOVING_PAD_MM: f64 = 5.0;
const FINE_SIGMA_MM: f64 = 0.7;
/// Smoothing is at least this many voxels along every axis: between thick slices a planar edge (an endplate)
/// is otherwise interpolated with a bias that depends on where it falls between slices, which differs
/// between the two scans (measured on synthetic vertebrae at 2.5 mm slices: 0.4 mm error at 0.5 voxel,
/// under 0.1 mm at 1 voxel).
const MIN_SIGMA_VOXELS: f64 = 1.0;

/// Settings of [`register`] (taken from `CementParams`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RegSettings {
    pub points: usize,
    pub max_translation_mm: f64,
    pub max_rotation_deg: f64,
    /// Margin around the body's bounding box that still holds useful bone (pedicles, endplates), mm.
    pub margin_mm: f64,
}

/// Register `moving` onto the crop `fixed` (the current scan around the body). `body_box` is the body's
/// bounding box in crop coordinates. Returns the map from current-scan LPS to moving-scan LPS, or why not.
#[cfg(test)]
pub(crate) fn register(
    fixed: &[f32],
    grid: &Grid,
    body_box: ([usize; 3], [usize; 3]),
    moving: &CtVolume,
    s: &RegSettings,
) -> Result<RigidTransform, String> {
    register_onto(&Fixed::prepare(fixed, grid, body_box, s)?, moving, s)
}

/// The current scan's side of a registration (smoothed crops and the points), shared by every earlier scan
/// registered onto it.
pub(crate) struct Fixed {
    fg: Grid,
    /// Smoothed at the coarse and the fine level.
    levels: [Vec<f32>; 2],
    pts: Vec<Lps>,
    centre: Lps,
}

impl Fixed {
    pub(crate) fn prepare(
        fixed: &[f32],
        grid: &Grid,
        body_box: ([usize; 3], [usize; 3]),
        s: &RegSettings,
    ) -> Result<Fixed, String> {
        // The registration box: the body and its immediate bony surroundings.
        let m = grid.radius_voxels(s.margin_mm, 1);
        let (ilo, ihi) = grow_box(body_box.0, body_box.1, m, grid.shape);
        // Smoothing needs real neighbours: pad by three coarse sigmas, and take points only inside the box.
        let pad = grid
            .geometry
            .spacing
            .zyx()
            .map(|v| (3.0 * (COARSE_SIGMA_MM / v).max(MIN_SIGMA_VOXELS)).ceil() as usize + 1);
        let (lo, hi) = grow_box(ilo, ihi, pad, grid.shape);
        let fg = Grid::from_box(&grid.geometry, lo, hi);
        let inner = |i: usize| {
            let c = fg.coords(i);
            (0..3).all(|a| c[a] + lo[a] >= ilo[a] && c[a] + lo[a] <= ihi[a])
        };
        let mut fdata = Vec::with_capacity(fg.len());
        for z in lo[0]..=hi[0] {
            for y in lo[1]..=hi[1] {
                let row = grid.idx([z, y, lo[2]]);
                fdata.extend_from_slice(&fixed[row..row + fg.shape[2]]);
            }
        }

        // Points: strongest edges of bone near the body, away from anything >= 1800 HU (metal, cement).
        let hyper: Vec<bool> = fdata.iter().map(|&v| v >= 1800.0).collect();
        let near_hyper = morph::dilate(&hyper, fg.shape, fg.radius_voxels(3.0, 1));
        let fine_sigma = FINE_SIGMA_MM;
        let sig = |mm: f64, sp: [f64; 3]| sp.map(|v| (mm / v).max(MIN_SIGMA_VOXELS));
        // The two smoothings are independent.
        let (fsm_coarse, fsm_fine) = rayon::join(
            || smooth(&fdata, fg.shape, sig(COARSE_SIGMA_MM, fg.geometry.spacing.zyx())),
            || smooth(&fdata, fg.shape, sig(fine_sigma, fg.geometry.spacing.zyx())),
        );
        // Gradient magnitude by central differences on the array (mm from the spacing): only a ranking.
        let fsp = fg.geometry.spacing.zyx();
        let strides = [fg.shape[1] * fg.shape[2], fg.shape[2], 1];
        let mut cand: Vec<(f64, usize)> = (0..fg.len())
            .into_par_iter()
            .filter(|&i| (150.0..=1500.0).contains(&fdata[i]) && !near_hyper[i] && inner(i))
            .map(|i| {
                let c = fg.coords(i);
                let mut g2 = 0.0f64;
                for a in 0..3 {
                    let lo = if c[a] > 0 { i - strides[a] } else { i };
                    let hi = if c[a] + 1 < fg.shape[a] { i + strides[a] } else { i };
                    let steps = ((hi - lo) / strides[a]).max(1) as f64;
                    let d = (fsm_fine[hi] - fsm_fine[lo]) as f64 / (steps * fsp[a]);
                    g2 += d * d;
                }
                (g2.sqrt(), i)
            })
            .collect();
        if cand.len() < 200 {
            return Err(format!("only {} bone voxels near the body to register on", cand.len()));
        }
        let n = s.points.min(cand.len());
        cand.select_nth_unstable_by(n - 1, |a, b| b.0.total_cmp(&a.0));
        cand.truncate(n);
        let points: Vec<usize> = cand.iter().map(|c| c.1).collect();
        // Points sit at scattered sub-voxel positions, so both scans are interpolated at varied phases and the
        // interpolation error of a few planar edges (endplates between thick slices) averages out instead of
        // pulling the fit toward the current scan's slice grid.
        let pts: Vec<Lps> = points
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let c = fg.coords(i);
                let j = jitter(k as u64);
                fg.geometry.index_to_lps([0, 1, 2].map(|a| c[a] as f64 + j[a]))
            })
            .collect();
        let centre = {
            let mut c = [0.0; 3];
            for p in &pts {
                for a in 0..3 {
                    c[a] += p.0[a] / pts.len() as f64;
                }
            }
            Lps(c)
        };

        Ok(Fixed { fg, levels: [fsm_coarse, fsm_fine], pts, centre })
    }
}

/// Register `moving` onto the prepared current scan.
pub(crate) fn register_onto(
    fx: &Fixed,
    moving: &CtVolume,
    s: &RegSettings,
) -> Result<RigidTransform, String> {
    let fg = fx.fg;
    let pts = fx.pts.as_slice();
    let centre = fx.centre;
    let fine_sigma = FINE_SIGMA_MM;
    let sig = |mm: f64, sp: [f64; 3]| sp.map(|v| (mm / v).max(MIN_SIGMA_VOXELS));
    // The matching box of the moving scan, wide enough for the largest motion accepted.
    let mshape = moving.shape();
    if mshape.contains(&0) {
        return Err("the earlier scan is empty".into());
    }
    let mut mlo = [f64::INFINITY; 3];
    let mut mhi = [f64::NEG_INFINITY; 3];
    for corner in 0..8 {
        let c = [0, 1, 2].map(|a| if corner >> a & 1 == 1 { (fg.shape[a] - 1) as f64 } else { 0.0 });
        let u = moving.geometry.lps_to_index(fg.geometry.index_to_lps(c));
        for a in 0..3 {
            mlo[a] = mlo[a].min(u[a]);
            mhi[a] = mhi[a].max(u[a]);
        }
    }
    if mlo.iter().chain(mhi.iter()).any(|v| !v.is_finite()) {
        return Err("the earlier scan has a degenerate geometry".into());
    }
    let sp = moving.geometry.spacing.zyx();
    // Room for the motion actually expected between injections; larger motion fails on the cost instead.
    let pad = [0, 1, 2].map(|a| (s.max_translation_mm.min(MOVING_PAD_MM) / sp[a]).ceil() + 2.0);
    let mut blo = [0usize; 3];
    let mut bhi = [0usize; 3];
    for a in 0..3 {
        let l = (mlo[a] - pad[a]).floor().max(0.0);
        let h = (mhi[a] + pad[a]).ceil().min((mshape[a] - 1) as f64);
        if h < l {
            return Err("the earlier scan does not cover the vertebra".into());
        }
        blo[a] = l as usize;
        bhi[a] = h as usize;
    }
    let mg = Grid::from_box(&moving.geometry, blo, bhi);
    let mdata: Vec<f32> = mg.crop(moving).into_iter().map(f32::from).collect();

    let mut t = RigidTransform::identity();
    let mut iterations = [0usize; 2];
    let mut identity_cost = None;
    let mut final_cost = f64::INFINITY;
    for (level, sigma) in [COARSE_SIGMA_MM, fine_sigma].into_iter().enumerate() {
        let fsm = &fx.levels[level];
        let msm = smooth(&mdata, mg.shape, sig(sigma, mg.geometry.spacing.zyx()));
        let ms =
            Sampler::new(&msm, mg.shape, mg.geometry).ok_or("degenerate geometry of the earlier scan")?;
        let fsamp = Sampler::new(fsm, fg.shape, fg.geometry).ok_or("degenerate scan geometry")?;
        let fvals: Vec<f64> = pts.iter().map(|p| fsamp.value(*p).map_or(f64::NAN, |v| v as f64)).collect();
        if level == 1 {
            identity_cost = Some(median_abs_residual(pts, &fvals, &ms, &RigidTransform::identity()));
        }
        // Huber threshold fixed for the level, so each step is judged on one objective.
        let huber = 1.5 * 1.4826 * median_abs_residual(pts, &fvals, &ms, &t) + 1e-3;
        let mut cost = robust_cost(pts, &fvals, &ms, &t, huber);
        let (max_iter, tol_mm) = if level == 0 { (25, 5e-3) } else { (40, 1e-3) };
        for it in 0..max_iter {
            iterations[level] = it + 1;
            let step = gauss_newton_step(pts, &fvals, &ms, &t, centre, huber)?;
            // Backtracking: take the largest fraction of the step that lowers the cost.
            let mut accepted = None;
            for alpha in [1.0, 0.5, 0.25, 0.125] {
                let dw = [step[0] * alpha, step[1] * alpha, step[2] * alpha];
                let dt = Vec3([step[3] * alpha, step[4] * alpha, step[5] * alpha]);
                let cand = RigidTransform::about(t.apply(centre), dw, dt).after(&t);
                let c = robust_cost(pts, &fvals, &ms, &cand, huber);
                if c < cost {
                    accepted =
                        Some((cand, c, dt.norm(), (dw[0] * dw[0] + dw[1] * dw[1] + dw[2] * dw[2]).sqrt()));
                    break;
                }
            }
            let Some((cand, c, dt, dw)) = accepted else { break };
            t = cand;
            cost = c;
            if dt < tol_mm && dw < tol_mm / 50.0 {
                break;
            }
        }
        if level == 1 {
            final_cost = median_abs_residual(pts, &fvals, &ms, &t);
        }
    }
    let shift = t.displacement_at(centre);
    let angle = t.rotation_deg();
    if !shift.is_finite() || !angle.is_finite() {
        return Err("registration diverged".into());
    }
    if shift > s.max_translation_mm || angle > s.max_rotation_deg {
        return Err(format!(
            "registration found {shift:.1} mm / {angle:.1} degrees, beyond the {} mm / {} degrees expected",
            s.max_translation_mm, s.max_rotation_deg
        ));
    }
    if let Some(c0) = identity_cost {
        if final_cost > c0 * 1.05 + 1.0 {
            return Err(format!(
                "registration did not improve the match (median residual {final_cost:.0} HU vs {c0:.0} HU)"
            ));
        }
    }
    tracing::debug!(shift_mm = shift, angle_deg = angle, points = pts.len(), ?iterations, "registered");
    Ok(t)
}

/// Deterministic offsets in [-0.5, 0.5) voxel (a 64-bit mix of the point number).
fn jitter(k: u64) -> [f64; 3] {
    let mut x = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    [0, 1, 2].map(|_| {
        x ^= x >> 33;
        x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        x ^= x >> 29;
        (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    })
}

fn median_abs_residual(pts: &[Lps], fvals: &[f64], ms: &Sampler, t: &RigidTransform) -> f64 {
    let mut r: Vec<f64> = pts
        .par_iter()
        .zip(fvals.par_iter())
        .filter_map(|(p, f)| ms.value(t.apply(*p)).map(|m| (m as f64 - f).abs()))
        .collect();
    if r.is_empty() {
        return f64::INFINITY;
    }
    let k = r.len() / 2;
    r.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    r[k]
}

/// Mean Huber loss; points that leave the earlier scan cost as much as a gross outlier.
fn robust_cost(pts: &[Lps], fvals: &[f64], ms: &Sampler, t: &RigidTransform, huber: f64) -> f64 {
    let total: f64 = pts
        .par_iter()
        .zip(fvals.par_iter())
        .map(|(p, f)| match ms.value(t.apply(*p)) {
            Some(m) => {
                let r = (m as f64 - f).abs();
                if r <= huber {
                    0.5 * r * r
                } else {
                    huber * (r - 0.5 * huber)
                }
            }
            None => 4.0 * huber * huber,
        })
        .sum();
    total / pts.len().max(1) as f64
}

/// One robust Gauss-Newton step `[rotation vector (rad); shift (mm)]` for the update applied on the moving
/// side about the moved centre.
fn gauss_newton_step(
    pts: &[Lps],
    fvals: &[f64],
    ms: &Sampler,
    t: &RigidTransform,
    centre: Lps,
    huber: f64,
) -> Result<[f64; 6], String> {
    let cm = t.apply(centre);
    let terms: Vec<(f64, [f64; 6])> = pts
        .par_iter()
        .zip(fvals.par_iter())
        .filter_map(|(p, f)| {
            let q = t.apply(*p);
            let (m, g) = ms.value_grad(q)?;
            let d = q - cm;
            let gv = Vec3(g);
            let dxg = d.cross(gv);
            Some((m - f, [dxg.0[0], dxg.0[1], dxg.0[2], g[0], g[1], g[2]]))
        })
        .collect();
    if terms.len() < pts.len() / 5 || terms.len() < 50 {
        return Err("the earlier scan does not overlap the vertebra".into());
    }
    let mut h = [[0.0f64; 6]; 6];
    let mut b = [0.0f64; 6];
    for (r, j) in &terms {
        let w = if r.abs() <= huber { 1.0 } else { huber / r.abs() };
        for a in 0..6 {
            b[a] += w * j[a] * r;
            for c in 0..6 {
                h[a][c] += w * j[a] * j[c];
            }
        }
    }
    for (a, row) in h.iter_mut().enumerate() {
        row[a] *= 1.0 + 1e-3;
        row[a] += 1e-9;
    }
    solve6(h, b.map(|v| -v))
        .ok_or_else(|| "registration is ill-conditioned (too little bone structure)".into())
}

/// Gaussian elimination with partial pivoting.
fn solve6(mut a: [[f64; 6]; 6], mut b: [f64; 6]) -> Option<[f64; 6]> {
    for col in 0..6 {
        let piv = (col..6).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs().is_nan() || a[piv][col].abs() <= 1e-12 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        for row in col + 1..6 {
            let f = a[row][col] / a[col][col];
            for k in col..6 {
                a[row][k] -= f * a[col][k];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0.0; 6];
    for row in (0..6).rev() {
        let s: f64 = (row + 1..6).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transform_algebra() {
        let t = RigidTransform::about(Lps([10.0, 20.0, 30.0]), [0.01, -0.02, 0.015], Vec3([1.0, -0.5, 0.3]));
        let p = Lps([3.0, -7.0, 12.0]);
        assert!(t.inverse().apply(t.apply(p)).distance(p) < 1e-9);
        assert!(t.inverse().after(&t).apply(p).distance(p) < 1e-9);
        let deg = (0.01f64 * 0.01 + 0.02 * 0.02 + 0.015 * 0.015).sqrt().to_degrees();
        assert!((t.rotation_deg() - deg).abs() < 1e-6);
        // The centre of rotation only moves by the shift.
        assert!((t.displacement_at(Lps([10.0, 20.0, 30.0])) - Vec3([1.0, -0.5, 0.3]).norm()).abs() < 1e-9);
    }

    /// Smooth asymmetric "bone" made of Gaussian blobs: registration of a known motion must be exact up to
    /// interpolation, which isolates the optimiser from rendering effects.
    #[test]
    fn recovers_motion_of_smooth_volume() {
        use crate::volume::{Geometry, Spacing, Volume};
        let blobs: [([f64; 3], f64); 6] = [
            ([5.0, 3.0, -4.0], 5.0),
            ([-8.0, 6.0, 2.0], 4.0),
            ([2.0, -9.0, 6.0], 3.5),
            ([-4.0, -3.0, -8.0], 4.5),
            ([10.0, -5.0, 9.0], 3.0),
            ([-2.0, 12.0, -1.0], 4.0),
        ];
        let f = |p: Lps| -> f32 {
            blobs
                .iter()
                .map(|(c, s)| {
                    let d2 = (p.0[0] - c[0]).powi(2) + (p.0[1] - c[1]).powi(2) + (p.0[2] - c[2]).powi(2);
                    1400.0 * (-0.5 * d2 / (s * s)).exp()
                })
                .sum::<f64>() as f32
        };
        let n = 48;
        let g =
            Geometry::axial_hfs(Lps([-24.0, -24.0, -24.0]), Spacing { slice: 1.0, row: 1.0, column: 1.0 });
        let truth = RigidTransform::about(Lps([0.0; 3]), [0.008, -0.012, 0.01], Vec3([0.6, -0.5, 0.62]));
        let fixed = Volume::new(
            ndarray::Array3::from_shape_fn((n, n, n), |(z, y, x)| f(g.voxel_to_lps([z, y, x]))),
            g,
        );
        let inv = truth.inverse();
        let moving = CtVolume::from_hu(
            &ndarray::Array3::from_shape_fn((n, n, n), |(z, y, x)| f(inv.apply(g.voxel_to_lps([z, y, x])))),
            g,
        );
        let grid = Grid { shape: [n, n, n], lo: [0; 3], geometry: g };
        let data: Vec<f32> = fixed.data.iter().copied().collect();
        let s = RegSettings { points: 6000, max_translation_mm: 10.0, max_rotation_deg: 8.0, margin_mm: 0.0 };
        let t = register(&data, &grid, ([14; 3], [34; 3]), &moving, &s).expect("registers");
        let err = truth.inverse().after(&t);

        assert!(err.displacement_at(Lps([0.0; 3])) < 0.05 && err.rotation_deg() < 0.05);
    }

    #[test]
    fn solves_linear_system() {
        let mut a = [[0.0; 6]; 6];
        for i in 0..6 {
            a[i][i] = 2.0 + i as f64;
            if i > 0 {
                a[i][i - 1] = 0.5;
            }
        }
        let x = [1.0, -2.0, 3.0, 0.5, 0.0, 4.0];
        let b = [0, 1, 2, 3, 4, 5].map(|i| (0..6).map(|k| a[i][k] * x[k]).sum::<f64>());
        let got = solve6(a, b).expect("regular");
        for i in 0..6 {
            assert!((got[i] - x[i]).abs() < 1e-9);
        }
    }
}
