//! Which cement the split counts as intravertebral: the body grown by `body_tolerance_mm`, except where
//! that margin reaches into the spinal canal under cement that goes on beyond it.
//!
//! Why: the margin is there for the body mask's edge (partial volume, a cortex drawn a voxel short), and it
//! is as wide as a wall that is a voxel off. Behind the posterior wall, a canal leak spreads as a sheet of
//! cement one to three voxels thick against the wall; the margin took its front row, and a wall segmented
//! a sub-millimetre further back took the next one. What was left of the leak fell apart into small
//! pieces, the denser front among the intravertebral cement, the rest without a seed voxel of its own in
//! the canal, dismissed as streak clutter (README demo, phantom seed 7 L2 prone: a wall 0.7 mm further
//! back turned its 0.07 mL foraminal canal leak into intravertebral cement and clutter).
//!
//! So inside the canal label the margin holds only cement that ends there: the partial-volume rim of
//! intravertebral cement against the wall stays intravertebral, while margin voxels touching (26-) cement
//! beyond the margin belong with it, and the leak keeps its canal part whole, when the registered
//! baseline shows the wall's cortex in front of them (the label alone is not enough: where it reaches into
//! a lytic body it handed intravertebral cement to false canal leaks). Without a baseline the margin stays
//! the body's. Outside the canal
//! (discs, paraspinal tissue) the margin is unchanged: no stage there tells a leak from the body's own rim
//! a voxel off, and those sites do not stop the procedure.

use super::grid::Grid;
use super::morph;
use crate::volume::Vec3;

/// `region` (the body grown by the tolerance) with its canal margin given to the cement beyond it: voxels
/// of `region` that are in `canal` but not in `body` are taken out when they are cement with a 26-neighbour
/// of cement outside `region` and `behind_wall` holds for them. One voxel and no further: the margin is as
/// wide as the wall's uncertainty, and a margin taken along the wall as far as it is connected would hand
/// a leak the whole rim of the intravertebral cement against the wall (and join leaks that only share
/// that rim). `behind_wall` is the baseline's word (the cortex in front of the voxel, [`cortex_in_front`]):
/// where the canal label reaches into a lytic body, the label alone handed intravertebral cement to false
/// canal leaks. `canal` empty = unknown (the region is returned as it is).
pub(crate) fn with_canal_margin(
    region: &[bool],
    body: &[bool],
    canal: &[bool],
    cement: &[bool],
    shape: [usize; 3],
    behind_wall: impl Fn(usize) -> bool,
) -> Vec<bool> {
    let mut out = region.to_vec();
    if canal.len() != region.len() {
        return out;
    }
    let offsets: Vec<[isize; 3]> = morph::neighbours26().collect();
    for i in 0..region.len() {
        if !(cement[i] && region[i] && !body[i] && canal[i]) {
            continue;
        }
        let c = morph::coords(shape, i);
        let beyond =
            offsets.iter().any(|&d| morph::offset(shape, c, d).is_some_and(|j| cement[j] && !region[j]));
        if beyond && behind_wall(i) {
            out[i] = false;
        }
    }
    out
}

/// How far the baseline's cortex is looked for on either side, mm (here and in `analyze::escape`).
pub(crate) const CORTEX_SEARCH_MM: f64 = 6.0;
/// The wall on the baseline, as the scanner blurs it: a thin (about 1 mm) cortex thinned by lesions reads
/// only 200-400 HU at 2.5 mm slices (phantom seed 7: 248 HU), so the test is relative: the densest point in
/// front must be at least this dense and this much denser than the densest point behind (canal contents
/// stay under about 100 HU; marrow and cortex in front of intravertebral cement are not denser than the
/// wall behind it).
const CORTEX_HU: f32 = 150.0;
const CORTEX_STEP_HU: f32 = 100.0;

/// Whether `there`, the densest baseline HU one way from a point, reads as the wall's cortex against
/// `back`, the densest the other way: the one cortex test of the cement split and `analyze::escape`.
pub(crate) fn reads_as_cortex(there: f32, back: f32) -> bool {
    there >= CORTEX_HU && there >= back + CORTEX_STEP_HU
}

/// Whether the registered baseline `base` (on the crop) has the cortex in front of crop voxel `i`: the
/// densest point within `CORTEX_SEARCH_MM` anteriorly (LPS -y, from 1 mm on) is cortex-dense and clearly
/// denser than anything the same distance posteriorly. Cement in the canal has the wall in front of it;
/// cement in the body has it behind.
pub(crate) fn cortex_in_front(base: &[f32], g: &Grid, i: usize) -> bool {
    let p = g.lps(i);
    let densest = |sign: f64| {
        (2..=(CORTEX_SEARCH_MM / 0.5) as usize)
            .filter_map(|k| {
                let q = p + Vec3([0.0, sign * 0.5 * k as f64, 0.0]);
                g.geometry.lps_to_voxel(q, g.shape).map(|v| base[g.idx(v)]).filter(|h| !h.is_nan())
            })
            .fold(f32::MIN, f32::max)
    };
    reads_as_cortex(densest(-1.0), densest(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Region, body, canal, cement and shape.
    type Scene = (Vec<bool>, Vec<bool>, Vec<bool>, Vec<bool>, [usize; 3]);

    /// One row of voxels along x: body x < 4, region x < 6 (two voxels of margin), canal x >= 4.
    fn scene(cement_to: usize) -> Scene {
        let shape = [1, 1, 12];
        let body: Vec<bool> = (0..12).map(|x| x < 4).collect();
        let region: Vec<bool> = (0..12).map(|x| x < 6).collect();
        let canal: Vec<bool> = (0..12).map(|x| x >= 4).collect();
        let cement: Vec<bool> = (0..12).map(|x| (2..cement_to).contains(&x)).collect();
        (region, body, canal, cement, shape)
    }

    #[test]
    fn the_rim_of_intravertebral_cement_stays_in_the_margin() {
        let (region, body, canal, cement, shape) = scene(6);
        assert_eq!(with_canal_margin(&region, &body, &canal, &cement, shape, |_| true), region);
    }

    #[test]
    fn cement_going_on_into_the_canal_takes_the_margin_beside_it() {
        let (region, body, canal, cement, shape) = scene(9);
        let out = with_canal_margin(&region, &body, &canal, &cement, shape, |_| true);
        assert!((0..4).all(|x| out[x]), "the body itself stays");
        assert!(!out[5] && (6..12).all(|x| !out[x]), "the margin voxel touching the leak goes with it");
        assert!(out[4], "one voxel and no further along the margin");
    }

    #[test]
    fn the_cortex_is_in_front_of_cement_behind_the_wall_only() {
        use crate::volume::{Geometry, Lps, Spacing};
        // Supine axial: rows run toward posterior (LPS +y). A 1000 HU plate on rows 10-11 over 40 HU.
        let geo = Geometry::axial_hfs(Lps([0.0; 3]), Spacing { slice: 1.0, row: 0.8, column: 0.8 });
        let g = Grid::from_box(&geo, [0, 0, 0], [2, 24, 4]);
        let base: Vec<f32> =
            (0..g.len()).map(|i| if (10..12).contains(&g.coords(i)[1]) { 1000.0 } else { 40.0 }).collect();
        assert!(cortex_in_front(&base, &g, g.idx([1, 13, 2])), "behind the plate");
        assert!(!cortex_in_front(&base, &g, g.idx([1, 8, 2])), "in front of the plate");
    }

    #[test]
    fn the_margin_outside_the_canal_is_unchanged() {
        let (region, body, _, cement, shape) = scene(9);
        let no_canal = vec![false; 12];
        assert_eq!(with_canal_margin(&region, &body, &no_canal, &cement, shape, |_| true), region);
        assert_eq!(with_canal_margin(&region, &body, &[], &cement, shape, |_| true), region);
    }
}
