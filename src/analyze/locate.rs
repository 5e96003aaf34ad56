//! Where the cement is, relative to the treated vertebra: anatomy (on the baseline when there is one),
//! cement detection, the baseline anatomy carried through the registration (`carry`, `resplit`), then the
//! corrections against the baseline's cortex (`reclaim`, `escape`). The leak components it returns are the
//! ones the leak-site model and the rules judge.
//!
//! ```text
//! match locate(&LocateInputs::of(&analyze_inputs), &CementParams::default())? {
//!     Location::Found(l) => (l.anatomy, l.findings, l.frame, l.warnings, l.timing_ms),
//!     Location::NotFound { why, warnings, timing_ms } => ...,   // no treated vertebra: nothing to judge
//! }
//! ```
//!
//! One function for every caller on purpose: `Analyzer::run` and the training-patch export
//! (`cementleak patches`) both call it, so the model is trained on exactly the components and anatomy
//! channels inference hands it. The reasons behind each step are in the `analyze` module documentation.

use super::{carry, escape, reclaim, resplit, AnalyzeError};
use crate::anatomy::{segment, Anatomy, AnatomyError, TargetHint};
use crate::cement::{detect, CementError, CementFindings, CementInputs, CementParams, RigidTransform};
use crate::leaks::rules::SiteFrame;
use crate::volume::{labels, CtVolume, Volume};
use std::collections::BTreeMap;
use std::time::Instant;

/// The images [`locate`] needs; the earlier scans may be on other grids.
#[derive(Clone, Copy, Debug)]
pub struct LocateInputs<'a> {
    pub scan: &'a CtVolume,
    /// After needle placement, before any cement.
    pub baseline: Option<&'a CtVolume>,
    /// After the previous injection.
    pub previous: Option<&'a CtVolume>,
    pub hint: TargetHint,
}

impl<'a> LocateInputs<'a> {
    pub fn of(inputs: &super::AnalyzeInputs<'a>) -> LocateInputs<'a> {
        LocateInputs {
            scan: &inputs.scan.volume,
            baseline: inputs.baseline.map(|s| &s.volume),
            previous: inputs.previous.map(|s| &s.volume),
            hint: inputs.hint,
        }
    }
}

/// The cement located in a scan where the treated vertebra was found.
#[derive(Clone, Debug)]
pub struct Located {
    /// On the scan's grid (carried from the baseline when there is one).
    pub anatomy: Anatomy,
    /// After `reclaim` and `escape`: `leaks` are the components to judge.
    pub findings: CementFindings,
    pub frame: SiteFrame,
    /// In the order they arose, for the report.
    pub warnings: Vec<String>,
    /// Milliseconds: `anatomy`, `cement`, and `leaks` (the reclaim/escape part of the leak stage).
    pub timing_ms: BTreeMap<String, f64>,
}

/// What [`locate`] found.
#[derive(Debug)]
pub enum Location {
    Found(Box<Located>),
    /// No treated vertebra: nothing can be said about leaks.
    NotFound {
        why: AnatomyError,
        warnings: Vec<String>,
        timing_ms: BTreeMap<String, f64>,
    },
}

pub(super) fn ms(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e5).round() / 100.0
}

fn body_of(a: &Anatomy) -> Volume<bool> {
    a.labels.mask_of(labels::VERTEBRAL_BODY)
}

/// Locates anatomy, cement and leak components in `inputs.scan`. An unusable image is an error; a scan
/// without a findable vertebra is [`Location::NotFound`].
pub fn locate(inputs: &LocateInputs, params: &CementParams) -> Result<Location, AnalyzeError> {
    let scan = inputs.scan;
    let mut timing = BTreeMap::new();
    let mut warnings = Vec::new();

    let t = Instant::now();
    // Anatomy on the baseline when there is one (see the module documentation), else on the scan.
    let on_baseline = match inputs.baseline {
        Some(b) => match segment(b, inputs.hint) {
            Ok(a) => Some(a),
            Err(e) => {
                warnings.push(format!("anatomy not found on the baseline ({e}); segmented on the scan"));
                None
            }
        },
        None => {
            warnings.push(
                "no baseline scan: anatomy segmented on the scan itself, where cement can make a leak look \
                 like part of the vertebral body"
                    .into(),
            );
            None
        }
    };
    let shape = scan.shape();
    let mut anatomy = match on_baseline.as_ref() {
        Some(base) => carry::carry(base, scan.geometry, shape, &RigidTransform::identity()),
        None => match segment(scan, inputs.hint) {
            Ok(a) => a,
            Err(AnatomyError::BadInput(why)) => return Err(AnalyzeError::BadInput(why)),
            Err(e @ (AnatomyError::NoSpine(_) | AnatomyError::NoBody(_))) => {
                timing.insert("anatomy".to_string(), ms(t));
                warnings.push(format!("{e}; leaks could not be assessed"));
                return Ok(Location::NotFound { why: e, warnings, timing_ms: timing });
            }
        },
    };
    let (filled, bridged) = carry::fill_body(&mut anatomy.labels, anatomy.spine_axis);
    if filled + bridged > 0 {
        tracing::debug!(filled, bridged, "cavities and thin gaps inside the vertebral body taken as body");
    }
    timing.insert("anatomy".to_string(), ms(t));
    warnings.extend(anatomy.warnings.iter().cloned());
    tracing::info!(centroid = %anatomy.body_centroid, volume_ml = anatomy.body_volume_ml, "anatomy");

    let t = Instant::now();
    let body = body_of(&anatomy);
    // The canal as the anatomy sees it: leak candidates with a seed there are never dismissed as streak
    // clutter (the demo's foraminal leak beside the needle was).
    let canal = anatomy.labels.mask_of(labels::CANAL);
    let cement_inputs = CementInputs {
        scan,
        baseline: inputs.baseline,
        previous: inputs.previous,
        body: &body,
        canal: Some(&canal),
    };
    let mut findings = detect(&cement_inputs, params).map_err(|e| match e {
        CementError::BadGeometry => AnalyzeError::BadInput(e.to_string()),
        e => AnalyzeError::Cement(e),
    })?;
    // The baseline's anatomy moved with the patient: carried through the registration, and the cement
    // split again on the body where it now is. The site frame measured on the carried anatomy is the one
    // the leak stage uses (the anatomy does not change after).
    let mut site_frame = None;
    if let (Some(base), Some(reg)) = (on_baseline.as_ref(), findings.baseline_registration) {
        let motion = carry::largest_motion_mm(&base.labels, &reg);
        let min_spacing = scan.geometry.spacing.zyx().into_iter().fold(f64::MAX, f64::min);
        if motion > 0.25 * min_spacing {
            anatomy = carry::carry(base, scan.geometry, shape, &reg);
            carry::fill_body(&mut anatomy.labels, anatomy.spine_axis);
            // The cement stage's canal margin rule, judged by the same baseline cortex as `escape`.
            let frame = SiteFrame::new(&anatomy);
            let post = frame.posterior();
            site_frame = Some(frame);
            // Lent out, not copied, while the split changes the other findings (see `escape`).
            let metal = escape::take_metal(&mut findings);
            let probe = escape::CortexProbe::new(&metal, findings.baseline_registration, inputs.baseline);
            let g = scan.geometry;
            let behind_wall =
                |v: [usize; 3]| probe.cortex_toward(g.voxel_to_lps(v), post * -1.0) == Some(true);
            let canal = anatomy.labels.mask_of(labels::CANAL);
            let r = resplit::resplit(
                &mut findings,
                &body_of(&anatomy),
                Some(resplit::CanalMargin { canal: &canal, behind_wall: &behind_wall }),
                params.body_tolerance_mm,
                params.min_leak_ml,
                scan,
                inputs.previous,
            );
            findings.metal = metal;
            tracing::info!(motion, ?r, "baseline anatomy carried through the registration");
        }
    }
    timing.insert("cement".to_string(), ms(t));
    warnings.extend(findings.warnings.iter().cloned());
    tracing::info!(intravertebral_ml = findings.intravertebral_ml, leaks = findings.leaks.len(), "cement");

    let t = Instant::now();
    let frame = site_frame.unwrap_or_else(|| SiteFrame::new(&anatomy));
    let (reclaimed, reclaimed_ml) = reclaim::reclaim(&mut findings, &frame, &anatomy.labels, inputs.baseline);
    if reclaimed > 0 {
        warnings.push(format!(
            "{reclaimed} cement component(s) ({reclaimed_ml:.3} mL) outside the body mask but inside the \
             baseline's cortex were counted as intravertebral; the body outline may be too small there"
        ));
    }
    let escaped = escape::split_escaped(
        &mut findings,
        &frame,
        scan,
        inputs.baseline,
        inputs.previous,
        params.min_leak_ml,
    );
    if escaped > 0 {
        warnings.push(format!(
            "{escaped} cement component(s) inside the body mask but behind the posterior wall were reported \
             as leaks; the vertebral body outline may include the canal there"
        ));
    }
    timing.insert("leaks".to_string(), ms(t));
    Ok(Location::Found(Box::new(Located { anatomy, findings, frame, warnings, timing_ms: timing })))
}
