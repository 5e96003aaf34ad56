//! Matching detected leaks to true leaks by mask overlap.
//!
//! The rule (also printed by the evaluation):
//! - A leak object is a set of voxels of one site label (11..14) on the scan grid. Several leaks of the same
//!   site share a label code, so each voxel of that code goes to the leak (of that site) with the nearest
//!   centroid: truth leaks from truth.json, detected leaks from report.json.
//! - A detected leak *touches* a true leak when one of its voxels lies within the true leak dilated by
//!   `dilation_mm` (a box of `max(1, ceil(dilation_mm / spacing))` voxels along each axis): a small
//!   tolerance for partial volume and registration, never more than a voxel or two.
//! - True leaks are matched one to one, greedily by the number of touching voxels (largest first). A true
//!   leak is detected when it is matched; the site is right when the matched detection's site equals the
//!   truth's.
//! - A detection is *false* when it touches no true leak at all (so a true leak split in two detections is
//!   not penalised twice, and a detection of a true leak below the reporting size is not false).

use crate::leaks::Site;
use crate::volume::{LabelVolume, Lps};
use serde::Serialize;
use std::collections::HashSet;

/// One leak's voxels.
#[derive(Clone, Debug)]
pub struct LeakObject {
    pub site: Site,
    pub volume_ml: f64,
    pub voxels: Vec<[usize; 3]>,
}

/// Splits the site labels of `labels` into one voxel list per leak of `leaks` (site, centroid): each voxel
/// of a site code goes to the nearest-centroid leak of that site; voxels of a site no leak claims are
/// dropped.
pub fn split_by_centroid(labels: &LabelVolume, leaks: &[(Site, Lps)]) -> Vec<Vec<[usize; 3]>> {
    let mut out = vec![Vec::new(); leaks.len()];
    let g = labels.geometry;
    for ((z, r, c), &l) in labels.data.indexed_iter() {
        let Some(site) = Site::from_label(l) else { continue };
        let p = g.voxel_to_lps([z, r, c]);
        let best = leaks
            .iter()
            .enumerate()
            .filter(|(_, (s, _))| *s == site)
            .min_by(|a, b| a.1 .1.distance(p).total_cmp(&b.1 .1.distance(p)));
        if let Some((j, _)) = best {
            out[j].push([z, r, c]);
        }
    }
    out
}

/// Objects from a label map and a list of (site, volume mL, centroid).
pub fn objects(labels: &LabelVolume, leaks: &[(Site, f64, Lps)]) -> Vec<LeakObject> {
    let key: Vec<(Site, Lps)> = leaks.iter().map(|l| (l.0, l.2)).collect();
    split_by_centroid(labels, &key)
        .into_iter()
        .zip(leaks)
        .map(|(voxels, l)| LeakObject { site: l.0, volume_ml: l.1, voxels })
        .collect()
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct MatchRule {
    pub dilation_mm: f64,
}

impl Default for MatchRule {
    fn default() -> Self {
        MatchRule { dilation_mm: 2.0 }
    }
}

/// What became of one true leak.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TruthOutcome {
    pub site: Site,
    pub volume_ml: f64,
    /// Site of the matched detection, `None` when missed.
    pub detected_as: Option<Site>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ScanMatch {
    pub truth: Vec<TruthOutcome>,
    pub detected: usize,
    /// Detections touching no true leak.
    pub false_leaks: usize,
    /// Sites of the false detections.
    pub false_sites: Vec<Site>,
    /// Indices (into the detections) of the false detections.
    #[serde(skip)]
    pub false_detections: Vec<usize>,
}

fn dilated(voxels: &[[usize; 3]], shape: [usize; 3], r: [usize; 3]) -> HashSet<[usize; 3]> {
    let mut set = HashSet::with_capacity(voxels.len() * 4);
    for v in voxels {
        for z in v[0].saturating_sub(r[0])..(v[0] + r[0] + 1).min(shape[0]) {
            for y in v[1].saturating_sub(r[1])..(v[1] + r[1] + 1).min(shape[1]) {
                for x in v[2].saturating_sub(r[2])..(v[2] + r[2] + 1).min(shape[2]) {
                    set.insert([z, y, x]);
                }
            }
        }
    }
    set
}

/// Matches `detected` to `truth` on a grid of `shape` with voxel spacing `spacing_zyx` (mm).
pub fn match_leaks(
    truth: &[LeakObject],
    detected: &[LeakObject],
    shape: [usize; 3],
    spacing_zyx: [f64; 3],
    rule: MatchRule,
) -> ScanMatch {
    let r = spacing_zyx.map(|s| ((rule.dilation_mm / s.max(1e-6)).ceil() as usize).max(1));
    // touch[t][d] = detected voxels of d within true leak t grown by r.
    let grown: Vec<HashSet<[usize; 3]>> = truth.iter().map(|t| dilated(&t.voxels, shape, r)).collect();
    let touch: Vec<Vec<usize>> = grown
        .iter()
        .map(|g| detected.iter().map(|d| d.voxels.iter().filter(|v| g.contains(*v)).count()).collect())
        .collect();
    let mut pairs: Vec<(usize, usize, usize)> = Vec::new();
    for (t, row) in touch.iter().enumerate() {
        for (d, &n) in row.iter().enumerate() {
            if n > 0 {
                pairs.push((n, t, d));
            }
        }
    }
    // Largest overlap first; ties by index so the result does not depend on hashing.
    pairs.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut t_used = vec![None; truth.len()];
    let mut d_used = vec![false; detected.len()];
    for (_, t, d) in pairs {
        if t_used[t].is_none() && !d_used[d] {
            t_used[t] = Some(d);
            d_used[d] = true;
        }
    }
    let touches_any = |d: usize| touch.iter().any(|row| row[d] > 0);
    let false_detections: Vec<usize> = (0..detected.len()).filter(|&d| !touches_any(d)).collect();
    let false_sites: Vec<Site> = false_detections.iter().map(|&d| detected[d].site).collect();
    ScanMatch {
        truth: truth
            .iter()
            .zip(&t_used)
            .map(|(t, m)| TruthOutcome {
                site: t.site,
                volume_ml: t.volume_ml,
                detected_as: m.map(|d| detected[d].site),
            })
            .collect(),
        detected: detected.len(),
        false_leaks: false_sites.len(),
        false_sites,
        false_detections,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{labels, Geometry, Spacing, Volume};
    use ndarray::Array3;

    fn grid(shape: [usize; 3]) -> LabelVolume {
        let g = Geometry::axial_hfs(Lps([0.0; 3]), Spacing { slice: 1.0, row: 1.0, column: 1.0 });
        Volume::new(Array3::zeros((shape[0], shape[1], shape[2])), g)
    }

    fn paint(v: &mut LabelVolume, code: u8, lo: [usize; 3], hi: [usize; 3]) {
        for z in lo[0]..hi[0] {
            for y in lo[1]..hi[1] {
                for x in lo[2]..hi[2] {
                    v.data[[z, y, x]] = code;
                }
            }
        }
    }

    fn centre(lo: [usize; 3], hi: [usize; 3]) -> Lps {
        // HFS axial: LPS x = column, y = row, z = slice.
        Lps([
            (lo[2] + hi[2] - 1) as f64 / 2.0,
            (lo[1] + hi[1] - 1) as f64 / 2.0,
            (lo[0] + hi[0] - 1) as f64 / 2.0,
        ])
    }

    #[test]
    fn same_site_leaks_split_by_nearest_centroid() {
        let mut t = grid([10, 30, 30]);
        paint(&mut t, labels::LEAK_DISC, [1, 1, 1], [3, 4, 4]);
        paint(&mut t, labels::LEAK_DISC, [6, 20, 20], [8, 24, 24]);
        let leaks =
            [(Site::Disc, centre([6, 20, 20], [8, 24, 24])), (Site::Disc, centre([1, 1, 1], [3, 4, 4]))];
        let parts = split_by_centroid(&t, &leaks);
        assert_eq!(parts[0].len(), 2 * 4 * 4);
        assert_eq!(parts[1].len(), 2 * 3 * 3);
        assert!(parts[1].iter().all(|v| v[0] < 3));
    }

    #[test]
    fn overlap_within_dilation_matches_and_far_detection_is_false() {
        let shape = [12, 40, 40];
        let mut truth = grid(shape);
        let mut det = grid(shape);
        // True canal leak, detection shifted by 2 voxels (within 2 mm) and called posterior_vein.
        paint(&mut truth, labels::LEAK_CANAL, [2, 10, 10], [5, 14, 14]);
        paint(&mut det, labels::LEAK_POSTERIOR_VEIN, [2, 15, 10], [5, 18, 14]);
        // A far detection: false.
        paint(&mut det, labels::LEAK_PARASPINAL, [8, 30, 30], [10, 33, 33]);
        // A true disc leak nobody found.
        paint(&mut truth, labels::LEAK_DISC, [8, 2, 2], [9, 4, 4]);
        let t = objects(
            &truth,
            &[
                (Site::Canal, 0.048, centre([2, 10, 10], [5, 14, 14])),
                (Site::Disc, 0.004, centre([8, 2, 2], [9, 4, 4])),
            ],
        );
        let d = objects(
            &det,
            &[
                (Site::PosteriorVein, 0.036, centre([2, 15, 10], [5, 18, 14])),
                (Site::Paraspinal, 0.018, centre([8, 30, 30], [10, 33, 33])),
            ],
        );
        let m = match_leaks(&t, &d, shape, [1.0; 3], MatchRule::default());
        assert_eq!(m.truth[0].detected_as, Some(Site::PosteriorVein));
        assert_eq!(m.truth[1].detected_as, None);
        assert_eq!(m.false_leaks, 1);
        assert_eq!(m.false_sites, vec![Site::Paraspinal]);
        // Out of reach with a 1 mm tolerance: the shifted detection becomes false and the canal leak is missed.
        let m = match_leaks(&t, &d, shape, [1.0; 3], MatchRule { dilation_mm: 1.0 });
        assert_eq!(m.truth[0].detected_as, None);
        assert_eq!(m.false_leaks, 2);
    }

    #[test]
    fn one_detection_matches_one_truth_and_split_detection_is_not_false() {
        let shape = [6, 30, 30];
        let mut truth = grid(shape);
        let mut det = grid(shape);
        paint(&mut truth, labels::LEAK_DISC, [1, 5, 5], [3, 10, 10]);
        paint(&mut truth, labels::LEAK_DISC, [1, 5, 12], [3, 10, 17]);
        // One big detection covering both, plus a small piece next to the first.
        paint(&mut det, labels::LEAK_DISC, [1, 5, 5], [3, 10, 17]);
        paint(&mut det, labels::LEAK_CANAL, [3, 5, 5], [4, 6, 6]);
        let t = objects(
            &truth,
            &[
                (Site::Disc, 0.05, centre([1, 5, 5], [3, 10, 10])),
                (Site::Disc, 0.05, centre([1, 5, 12], [3, 10, 17])),
            ],
        );
        let d = objects(
            &det,
            &[
                (Site::Disc, 0.12, centre([1, 5, 5], [3, 10, 17])),
                (Site::Canal, 0.001, centre([3, 5, 5], [4, 6, 6])),
            ],
        );
        let m = match_leaks(&t, &d, shape, [1.0; 3], MatchRule::default());
        let found: Vec<_> = m.truth.iter().map(|o| o.detected_as).collect();
        // The big detection takes one truth only (equal overlaps: the first); the small canal piece touches
        // only the first truth, which is taken, so the second truth is missed — and neither detection is false.
        assert_eq!(found, vec![Some(Site::Disc), None]);
        assert_eq!(m.false_leaks, 0);
    }
}
