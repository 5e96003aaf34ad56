//! Which voxels hold PMMA: hysteresis on density (seed at clearly-cement HU, grow into the partial-volume
//! edge at lower HU, so 1-2 mm veins survive 2.5 mm slices), gated by the baseline when there is one.

use super::grid::Grid;
use super::morph;
use super::CementParams;

/// Cement voxels of `img` (crop of the scan, or an earlier scan resampled onto the crop).
///
/// With `base` (the baseline resampled onto the crop; NaN where it does not reach): a voxel is cement when
/// it is dense now *and* rose against the baseline — dense bone, blastic lesions, bone islands and the
/// needle's blooming were already there and do not rise. Without a baseline (or where it does not reach):
/// density alone, with the body's cortical shell (`cortex`) admitted only where it is part of a mass thick
/// enough not to be cortex (a 3x3x3 opening of the seed-level voxels). `metal` voxels are never cement;
/// `band` voxels (the needle's blooming) never seed and are grown into only at seed-level contrast.
pub(crate) fn cement_mask(
    img: &[f32],
    base: Option<Before>,
    metal: &[bool],
    band: &[bool],
    cortex: &[bool],
    grid: &Grid,
    t: &CementParams,
) -> CementMask {
    let n = grid.len();
    let needs_density_rule = base.is_none_or(|b| b.value.iter().any(|v| v.is_nan()));
    let thick = if needs_density_rule {
        let dense: Vec<bool> = (0..n).map(|i| img[i] >= t.no_baseline_seed_hu && !metal[i]).collect();
        let one = [1, 1, 1];
        morph::dilate(&morph::erode(&dense, grid.shape, one), grid.shape, one)
    } else {
        Vec::new()
    };
    let mut seed = vec![false; n];
    let mut grow = vec![false; n];
    for i in 0..n {
        let v = img[i];
        if metal[i] || v.is_nan() {
            continue;
        }
        match base.map(|b| (b.value[i], b.support_max[i])).filter(|b| !b.0.is_nan()) {
            Some((b, hi)) => {
                let rise = v - b;
                // Seeds must rise above everything the baseline had where this voxel was interpolated from,
                // and so must voxels next to the baseline's metal: a needle grazing a thick slice is not
                // linear between slices.
                let sure_rise = v - hi;
                seed[i] = !band[i] && v >= t.seed_hu && rise >= t.seed_rise_hu && sure_rise >= t.seed_rise_hu;
                grow[i] = v >= t.grow_hu
                    && rise >= if band[i] { t.seed_rise_hu } else { t.grow_rise_hu }
                    && (hi < t.metal_hu || sure_rise >= t.grow_rise_hu);
            }
            None => {
                let allowed = !cortex[i] || thick[i];
                seed[i] = allowed && !band[i] && v >= t.no_baseline_seed_hu;
                let grow_hu = if band[i] { t.no_baseline_seed_hu } else { t.no_baseline_grow_hu };
                grow[i] = allowed && v >= grow_hu;
            }
        }
    }
    let mut mask = morph::grow_from_seeds(&seed, &grow, grid.shape);
    // Isolated specks are noise, not cement.
    for comp in morph::components26(&mask, grid.shape) {
        if comp.len() < t.min_cement_voxels {
            for i in comp {
                mask[i] = false;
            }
        }
    }
    CementMask { mask, seed }
}

/// An earlier scan resampled onto the crop (see `sample::Resampled`).
#[derive(Clone, Copy)]
pub(crate) struct Before<'a> {
    pub value: &'a [f32],
    pub support_max: &'a [f32],
}

pub(crate) struct CementMask {
    pub mask: Vec<bool>,
    /// Voxels that are cement on their own evidence (the hysteresis seeds).
    pub seed: Vec<bool>,
}
