//! Leak components that are intravertebral cement the body mask left out: cement with the baseline's cortex
//! still *outside* it is inside the vertebral body, whatever the segmentation says.
//!
//! Why: a body mask cut short (an endplate placed inside the body, a lateral edge drawn inside the cortex)
//! leaves the edge of the intravertebral cement outside it, and those pieces were reported as disc or
//! paraspinal leaks (measured on development phantoms, seeds 700000-700017: about two thirds of the false
//! leaks lay on true intravertebral cement). The baseline shows where the cortex is, without cement: from a
//! voxel of intravertebral cement, the densest baseline point outward (through the nearer endplate, or
//! radially through the wall) is the cortex, and it is clearly denser than anything the same distance
//! inward; from leaked cement, the cortex lies inward. The test is the escape test's (`escape`) mirror and
//! uses the same probe, but looks further (a body cut short by a wrong endplate can miss several
//! millimetres) and asks for the *nearest* cortex: cement in a disc has the next vertebra's endplate
//! outward but its own endplate inward and nearer.
//!
//! A component is taken back when it touches the body and at least [`INSIDE_FRACTION`] of its judged voxels
//! have the cortex outward; a component the rules put in the canal needs [`CANAL_INSIDE_FRACTION`], because
//! a canal leak must never be missed. Without a baseline nothing is taken back (the scan's cortex cannot be
//! told from cement).

use super::escape::CortexProbe;
use crate::cement::CementFindings;
use crate::leaks::rules::SiteFrame;
use crate::leaks::Site;
use crate::volume::{CtVolume, LabelVolume};

pub const INSIDE_FRACTION: f64 = 0.7;
pub const CANAL_INSIDE_FRACTION: f64 = 0.9;
/// How far out the cortex is looked for: a body mask cut short by up to this much is recovered. Canal
/// components look only 8 mm out: cement against the wall has the laminae 12 mm or more behind it (adult
/// lumbar canals are 15-18 mm deep), and the laminae are denser than the wall and would otherwise read as
/// the body's own cortex.
pub const SEARCH_MM: f64 = 12.0;
pub const CANAL_SEARCH_MM: f64 = 8.0;
/// Voxels within this distance inside an endplate plane look out through the endplate.
const NEAR_ENDPLATE_MM: f64 = 3.0;
/// Fewer judged voxels cannot decide.
const MIN_JUDGED: usize = 4;
/// At most this many voxels are probed per component (evenly spread): enough to vote, bounded in time.
const MAX_PROBED: usize = 300;

/// Move components that lie inside the baseline's cortex into the intravertebral cement. Returns the volume
/// moved, mL.
pub fn reclaim(
    findings: &mut CementFindings,
    frame: &SiteFrame,
    anatomy_labels: &LabelVolume,
    baseline: Option<&CtVolume>,
) -> (usize, f64) {
    if baseline.is_none() {
        return (0, 0.0);
    }
    let g = findings.cement.geometry;
    let mut back = Vec::new();
    {
        let probe = CortexProbe::new(&findings.metal, findings.baseline_registration, baseline);
        for (k, c) in findings.leaks.iter().enumerate() {
            if !c.touches_body || c.voxels.is_empty() {
                continue;
            }
            let step = c.voxels.len().div_ceil(MAX_PROBED).max(1);
            let canal = frame.classify(anatomy_labels, c).site == Site::Canal;
            let (need, far) =
                if canal { (CANAL_INSIDE_FRACTION, CANAL_SEARCH_MM) } else { (INSIDE_FRACTION, SEARCH_MM) };
            let votes: Vec<bool> = c
                .voxels
                .iter()
                .step_by(step)
                .filter_map(|v| {
                    let p = g.voxel_to_lps(*v);
                    probe.nearest_cortex_toward(p, frame.outward(p, NEAR_ENDPLATE_MM), far)
                })
                .collect();
            let inside = votes.iter().filter(|b| **b).count();
            tracing::debug!(id = c.id, judged = votes.len(), inside, "reclaim candidate");
            if votes.len() >= MIN_JUDGED && inside as f64 >= need * votes.len() as f64 {
                back.push(k);
            }
        }
    }
    let mut ml = 0.0;
    for &k in back.iter().rev() {
        let c = findings.leaks.remove(k);
        tracing::info!(volume_ml = c.volume_ml, centroid = %c.centroid, "leak component inside the baseline cortex: intravertebral");
        for v in &c.voxels {
            if let Some(m) = findings.intravertebral.data.get_mut(*v) {
                *m = true;
            }
        }
        findings.intravertebral_ml += c.volume_ml;
        ml += c.volume_ml;
    }
    for (k, l) in findings.leaks.iter_mut().enumerate() {
        l.id = k as u32 + 1;
    }
    (back.len(), ml)
}
