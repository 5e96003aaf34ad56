//! Why a true leak was missed and why a false leak was reported: the stage that lost or made it.
//!
//! A missed true leak is put down to the first of these that holds for most of its voxels:
//! - `not_in_cement_mask`: under half of its voxels are in the cement stage's mask (density or rise below the
//!   thresholds, removed as an artefact, or part of a component under the smallest leak size);
//! - of its voxels in the cement mask, the largest share decides among
//!   - `inside_body`: counted as intravertebral cement (the body mask, grown by the cement stage's tolerance,
//!     covers it);
//!   - `suppressed_by_model`: in a component the model's `not_cement` removed;
//!   - `merged_with_other_leak`: in a reported leak that was matched to another true leak (one-to-one
//!     matching: the detection covers both);
//!   - `in_cement_no_component`: in the mask but in no component (should not happen; kept to see it).
//!
//! A false detection (touching no true leak) is put down to what its voxels are in the truth:
//! - `true_intravertebral_cement`: most of its voxels are true intravertebral cement (label 10): the split
//!   put body cement outside the body (body mask too small or misplaced);
//! - `no_true_cement`: the cement mask found cement where there is none (streaks, registration residue,
//!   dense bone).
//!
//! A matched leak with a wrong site is counted by (true site, reported site).

use super::matching::{LeakObject, ScanMatch};
use crate::analyze::Analysis;
use crate::leaks::Site;
use crate::volume::{labels, LabelVolume};
use serde::Serialize;
use std::collections::HashSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MissCause {
    NotInCementMask,
    InsideBody,
    SuppressedByModel,
    MergedWithOtherLeak,
    InCementNoComponent,
}

impl MissCause {
    pub const ALL: [MissCause; 5] = [
        MissCause::NotInCementMask,
        MissCause::InsideBody,
        MissCause::SuppressedByModel,
        MissCause::MergedWithOtherLeak,
        MissCause::InCementNoComponent,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MissCause::NotInCementMask => "not in cement mask",
            MissCause::InsideBody => "inside the body (intravertebral)",
            MissCause::SuppressedByModel => "suppressed by the model",
            MissCause::MergedWithOtherLeak => "merged with another true leak",
            MissCause::InCementNoComponent => "in cement, no component",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FalseCause {
    TrueIntravertebralCement,
    NoTrueCement,
}

impl FalseCause {
    pub const ALL: [FalseCause; 2] = [FalseCause::TrueIntravertebralCement, FalseCause::NoTrueCement];

    pub fn name(self) -> &'static str {
        match self {
            FalseCause::TrueIntravertebralCement => "on true intravertebral cement",
            FalseCause::NoTrueCement => "no true cement there",
        }
    }
}

/// One missed true leak.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Miss {
    pub site: Site,
    pub volume_ml: f64,
    pub cause: MissCause,
    /// Share of its voxels in the cement mask.
    pub in_cement: f64,
}

/// One false detection.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FalseLeak {
    pub site: Site,
    pub volume_ml: f64,
    pub cause: FalseCause,
    pub centroid_lps_mm: crate::volume::Lps,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Diagnosis {
    /// True leaks missed, every size (the summary filters by size).
    pub missed: Vec<Miss>,
    pub false_leaks: Vec<FalseLeak>,
}

fn share(voxels: &[[usize; 3]], f: impl Fn(&[usize; 3]) -> bool) -> f64 {
    if voxels.is_empty() {
        return 0.0;
    }
    voxels.iter().filter(|v| f(v)).count() as f64 / voxels.len() as f64
}

/// The causes for one scan. `truth` and `detected` are the objects `m` was computed from, in the same order;
/// `truth_labels` is the phantom's full label map on the scan grid.
pub fn diagnose(
    truth: &[LeakObject],
    detected: &[LeakObject],
    m: &ScanMatch,
    truth_labels: &LabelVolume,
    a: &Analysis,
) -> Diagnosis {
    let mut d = Diagnosis::default();
    let Some(f) = a.findings.as_ref() else { return d };
    let in_mask = |mask: &crate::volume::Mask, v: &[usize; 3]| mask.data.get(*v).copied().unwrap_or(false);
    let suppressed: HashSet<[usize; 3]> =
        a.suppressed.iter().flat_map(|c| c.voxels.iter().copied()).collect();
    let reported: HashSet<[usize; 3]> = detected.iter().flat_map(|c| c.voxels.iter().copied()).collect();
    for (t, outcome) in truth.iter().zip(&m.truth) {
        if outcome.detected_as.is_some() {
            continue;
        }
        let in_cement = share(&t.voxels, |v| in_mask(&f.cement, v));
        let cause = if in_cement < 0.5 {
            MissCause::NotInCementMask
        } else {
            let cem: Vec<[usize; 3]> = t.voxels.iter().copied().filter(|v| in_mask(&f.cement, v)).collect();
            let shares = [
                (share(&cem, |v| in_mask(&f.intravertebral, v)), MissCause::InsideBody),
                (share(&cem, |v| suppressed.contains(v)), MissCause::SuppressedByModel),
                (share(&cem, |v| reported.contains(v)), MissCause::MergedWithOtherLeak),
            ];
            shares
                .into_iter()
                .filter(|(s, _)| *s > 0.0)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map_or(MissCause::InCementNoComponent, |(_, c)| c)
        };
        d.missed.push(Miss { site: t.site, volume_ml: t.volume_ml, cause, in_cement });
    }
    for &k in &m.false_detections {
        let Some(det) = detected.get(k) else { continue };
        let intra = share(&det.voxels, |v| truth_labels.data.get(*v).copied() == Some(labels::CEMENT));
        let cause =
            if intra >= 0.5 { FalseCause::TrueIntravertebralCement } else { FalseCause::NoTrueCement };
        let g = truth_labels.geometry;
        let n = det.voxels.len().max(1) as f64;
        let mut c = [0.0; 3];
        for v in &det.voxels {
            for (s, x) in c.iter_mut().zip(g.voxel_to_lps(*v).0) {
                *s += x / n;
            }
        }
        d.false_leaks.push(FalseLeak {
            site: det.site,
            volume_ml: det.volume_ml,
            cause,
            centroid_lps_mm: crate::volume::Lps(c).rounded(),
        });
    }
    d
}
