//! Measurements on the findings: distance of the cement to the posterior wall, centres, the output label map.

use super::LeakFinding;
use crate::anatomy::PosteriorWall;
use crate::cement::CementFindings;
use crate::volume::{labels, LabelVolume, Lps, Mask};

/// Indices `[slice, row, column]` of the set voxels of a mask, in storage order. Walks the flat buffer a
/// block at a time (`volume::flat`): the masks of a scan are mostly empty.
pub fn mask_voxels(mask: &Mask) -> Vec<[usize; 3]> {
    let [_, ny, nx] = mask.shape();
    let to_index = |i: usize| [i / (ny * nx), (i / nx) % ny, i % nx];
    match mask.data.as_slice() {
        Some(flat) => {
            let mut out = Vec::new();
            crate::volume::flat::for_each_set(flat, |i, _| out.push(to_index(i)));
            out
        }
        None => mask.data.indexed_iter().filter(|(_, &c)| c).map(|((z, y, x), _)| [z, y, x]).collect(),
    }
}

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
    mask_voxels(cement)
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
    let voxels = mask_voxels(mask);
    let mut sum = [0.0f64; 3];
    for v in &voxels {
        for (s, c) in sum.iter_mut().zip(g.voxel_to_lps(*v).0) {
            *s += c;
        }
    }
    (!voxels.is_empty()).then(|| Lps(sum.map(|s| s / voxels.len() as f64)))
}

/// The spec label map: anatomy (1-4), then intravertebral cement (10), metal (20) and each reported leak by
/// its fused site (11-14), later ones over earlier ones. Suppressed components stay unlabelled cement-free.
pub fn label_map(anatomy: &LabelVolume, findings: &CementFindings, leaks: &[LeakFinding]) -> LabelVolume {
    // One parallel pass that builds the map (rather than a copy of the anatomy and a pass over it).
    let mut out = LabelVolume::new(crate::volume::huge::zeroed(anatomy.shape()), anatomy.geometry);
    ndarray::Zip::from(&mut out.data)
        .and(&anatomy.data)
        .and(&findings.intravertebral.data)
        .and(&findings.metal.data)
        .par_for_each(|l, &a, &c, &m| {
            *l = if c {
                labels::CEMENT
            } else if m {
                labels::NEEDLE
            } else {
                a
            }
        });
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
