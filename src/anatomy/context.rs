//! The vertebra-aligned working volume shared by the segmentation steps.

use super::frame::Frame;
use ndarray::Array3;

/// Anything at or above this is cement or metal, not bone: cortex is 700–1500 HU and is blurred further by
/// the resampling, cement 1500–3000+. Such voxels are left out of bone masks so that hole filling puts them
/// back inside whatever structure encloses them (cement in the body stays body, cement in the canal stays
/// canal).
pub const CEMENT_HU: f32 = 1800.0;

/// CT resampled on the vertebra frame: index `[k, j, i]` = (toward superior along the spine, toward
/// posterior, toward the patient's left), isotropic step.
pub struct Fine {
    pub frame: Frame,
    /// Smoothed HU (noise of low-dose and thin-slice scans would otherwise break thresholds).
    pub hu: Array3<f32>,
    /// Resampled HU without smoothing (cortex checks).
    pub raw: Array3<f32>,
    /// Index of the canal centre at the level of interest.
    pub center: [f64; 3],
    /// Step, mm.
    pub step: f64,
}

impl Fine {
    pub fn px(&self, mm: f64) -> f64 {
        mm / self.step
    }
    pub fn dims(&self) -> [usize; 3] {
        self.frame.dims
    }
}

/// A plane `k = a + b*j + c*i` in frame indices (endplates are nearly perpendicular to the spine).
#[derive(Clone, Copy, Debug)]
pub struct KPlane {
    pub a: f64,
    pub b: f64,
    pub c: f64,
}

impl KPlane {
    pub fn flat(k: f64) -> KPlane {
        KPlane { a: k, b: 0.0, c: 0.0 }
    }
    pub fn at(&self, j: f64, i: f64) -> f64 {
        self.a + self.b * j + self.c * i
    }

    /// Robust least-squares fit to `(j, i, k)` samples: fit, drop residuals over `tol`, refit. Tilts are
    /// limited to `max_slope` (index units per index), beyond which the flat fallback is kept.
    pub fn fit(samples: &[(f64, f64, f64)], fallback: KPlane, tol: f64, max_slope: f64) -> KPlane {
        let solve = |s: &[(f64, f64, f64)]| -> Option<KPlane> {
            if s.len() < 12 {
                return None;
            }
            let n = s.len() as f64;
            let (mj, mi, mk) =
                s.iter().fold((0.0, 0.0, 0.0), |a, p| (a.0 + p.0 / n, a.1 + p.1 / n, a.2 + p.2 / n));
            let (mut sjj, mut sii, mut sji, mut sjk, mut sik) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for &(j, i, k) in s {
                let (dj, di, dk) = (j - mj, i - mi, k - mk);
                sjj += dj * dj;
                sii += di * di;
                sji += dj * di;
                sjk += dj * dk;
                sik += di * dk;
            }
            let det = sjj * sii - sji * sji;
            if det.abs() < 1e-9 {
                return Some(KPlane { a: mk, b: 0.0, c: 0.0 });
            }
            let b = (sjk * sii - sik * sji) / det;
            let c = (sik * sjj - sjk * sji) / det;
            Some(KPlane { a: mk - b * mj - c * mi, b, c })
        };
        let Some(p) = solve(samples) else { return fallback };
        let kept: Vec<_> =
            samples.iter().copied().filter(|&(j, i, k)| (p.at(j, i) - k).abs() <= tol).collect();
        let p = solve(&kept).unwrap_or(p);
        if p.b.abs() > max_slope || p.c.abs() > max_slope {
            return fallback;
        }
        p
    }
}

/// Median of a slice (NaN-free input); `None` when empty.
pub fn median(v: &mut [f32]) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let m = v.len() / 2;
    v.select_nth_unstable_by(m, f32::total_cmp);
    Some(v[m])
}

/// Value at quantile `q` in [0, 1].
pub fn quantile(v: &mut [f32], q: f64) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let m = ((v.len() - 1) as f64 * q).round() as usize;
    v.select_nth_unstable_by(m, f32::total_cmp);
    Some(v[m])
}
