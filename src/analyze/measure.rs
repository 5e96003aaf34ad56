//! Measurements on the findings: distance of the cement to the posterior wall, centres, the output label map.

use super::LeakFinding;
use crate::anatomy::PosteriorWall;
use crate::cement::CementFindings;
use crate::volume::{labels, LabelVolume, Lps, Mask};

/// Smallest distance (mm) from intravertebral cement to the posterior wall's outer surface (the wall points
/// across the canal's width); `None` without cement or without a wall.
///
/// Euclidean to the surface points rather than to the wall's plane: the wall is concave, and cement in a
/// pedicle (needle tract) lies behind the plane while being well away from the canal.
pub fn posterior_wall_distance_mm(cement: &Mask, wall: &PosteriorWall) -> Option<f64> {
    use rayon::prelude::*;
    if wall.points.is_empty() {
        return None;
    }
    let g = &cement.geometry;
    let voxels: Vec<[usize; 3]> =
        cement.data.indexed_iter().filter(|(_, &c)| c).map(|((z, y, x), _)| [z, y, x]).collect();
    voxels
        .par_iter()
        .map(|v| {
            let p = g.voxel_to_lps(*v);
            wall.points.iter().map(|w| w.distance(p)).fold(f64::MAX, f64::min)
        })
        .reduce_with(f64::min)
}

/// Centre of a mask's voxels, LPS mm.
pub fn centroid(mask: &Mask) -> Option<Lps> {
    let g = &mask.geometry;
    let (mut sum, mut n) = ([0.0f64; 3], 0usize);
    for ((z, y, x), &c) in mask.data.indexed_iter() {
        if c {
            let p = g.voxel_to_lps([z, y, x]);
            for (s, c) in sum.iter_mut().zip(p.0) {
                *s += c;
            }
            n += 1;
        }
    }
    (n > 0).then(|| Lps(sum.map(|s| s / n as f64)))
}

/// The spec label map: anatomy (1-4), then intravertebral cement (10), metal (20) and each reported leak by
/// its fused site (11-14), later ones over earlier ones. Suppressed components stay unlabelled cement-free.
pub fn label_map(anatomy: &LabelVolume, findings: &CementFindings, leaks: &[LeakFinding]) -> LabelVolume {
    let mut out = anatomy.clone();
    ndarray::Zip::from(&mut out.data).and(&findings.intravertebral.data).and(&findings.metal.data).for_each(
        |l, &c, &m| {
            if c {
                *l = labels::CEMENT;
            } else if m {
                *l = labels::NEEDLE;
            }
        },
    );
    for leak in leaks {
        let code = leak.verdict.site.label();
        for v in &leak.component.voxels {
            if let Some(l) = out.data.get_mut(*v) {
                *l = code;
            }
        }
    }
    out
}
