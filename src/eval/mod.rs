//! Evaluation of `analyze` against phantom and hybrid truth (issue 5, "Done when"): the runner is
//! `examples/evaluate.rs` (`scripts/evaluate.sh`); this module holds what it measures.
//!
//! - [`matching`]: detections to true leaks by mask overlap (the rule is documented there);
//! - [`metrics`]: per-scan records, the summary metrics and their table;
//! - here: turning a phantom scan and an analysis into a record.

pub mod diagnose;
pub mod matching;
pub mod metrics;

use crate::analyze::Analysis;
use crate::leaks::Site;
use crate::load::{Scan, SeriesInfo};
use crate::phantom::PhantomScan;
use crate::volume::{CtVolume, PatientPosition};
use matching::{match_leaks, objects, LeakObject, MatchRule, ScanMatch};
use metrics::{Group, ScanRecord};

/// A generated scan as the loader would hand it over (the DICOM round trip keeps the same HU: phantom
/// volumes are already rounded and clipped to the 12-bit range).
pub fn as_scan(ct: &CtVolume, name: &str, position: PatientPosition) -> Scan {
    Scan {
        volume: ct.clone(),
        info: SeriesInfo {
            path: name.to_string(),
            series_instance_uid: name.to_string(),
            modality: "CT".into(),
            patient_position: Some(position.dicom_code().into()),
            encoding: "memory".into(),
            ..SeriesInfo::default()
        },
        warnings: Vec::new(),
    }
}

/// The true leaks of a phantom scan as voxel sets.
pub fn truth_objects(scan: &PhantomScan) -> Vec<LeakObject> {
    let leaks: Vec<(Site, f64, crate::volume::Lps)> =
        scan.truth.leaks.iter().map(|l| (l.site, l.volume_ml, l.centroid_lps_mm)).collect();
    objects(&scan.labels, &leaks)
}

/// The reported leaks of an analysis as voxel sets: each reported leak's own component (in report order);
/// when those are not available, the label map split by the report's centroids.
pub fn detected_objects(a: &Analysis) -> Vec<LeakObject> {
    if a.leaks.len() == a.report.leaks.len() {
        return a
            .leaks
            .iter()
            .zip(&a.report.leaks)
            .map(|(f, r)| LeakObject {
                site: r.site,
                volume_ml: r.volume_ml,
                voxels: f.component.voxels.clone(),
            })
            .collect();
    }
    let leaks: Vec<(Site, f64, crate::volume::Lps)> =
        a.report.leaks.iter().map(|l| (l.site, l.volume_ml, l.centroid_lps_mm)).collect();
    objects(&a.labels, &leaks)
}

/// One record from an analysis (or its failure) and, for generated scans, the truth.
pub fn record(
    group: Group,
    case: &str,
    step: usize,
    truth: Option<&PhantomScan>,
    result: Result<(&Analysis, f64), String>,
    rule: MatchRule,
) -> ScanRecord {
    let t = truth.map(|s| &s.truth);
    let mut r = ScanRecord {
        group,
        case: case.to_string(),
        step,
        matched: None,
        reported_leaks: 0,
        reported_sites: Vec::new(),
        truth_canal: t.is_some_and(|t| t.leaks.iter().any(|l| l.site == Site::Canal || l.foraminal)),
        alert: None,
        expected_alert: t.map(|t| t.expected_alert),
        truth_intravertebral_ml: t.map(|t| t.intravertebral_cement_ml),
        reported_intravertebral_ml: None,
        analyze_ms: 0.0,
        error: None,
        diagnosis: None,
    };
    match result {
        Err(e) => r.error = Some(e),
        Ok((a, ms)) => {
            let det = detected_objects(a);
            let m = match truth {
                Some(s) if s.labels.shape() == a.labels.shape() => {
                    let shape = s.labels.shape();
                    match_leaks(&truth_objects(s), &det, shape, s.labels.geometry.spacing.zyx(), rule)
                }
                Some(_) => {
                    r.error = Some("analysis label map is not on the scan grid".into());
                    return r;
                }
                None => ScanMatch {
                    truth: Vec::new(),
                    detected: det.len(),
                    false_leaks: det.len(),
                    false_sites: det.iter().map(|d| d.site).collect(),
                    false_detections: (0..det.len()).collect(),
                },
            };
            if let Some(s) = truth {
                r.diagnosis = Some(diagnose::diagnose(&truth_objects(s), &det, &m, &s.labels, a));
            }
            r.matched = Some(m);
            r.reported_leaks = a.report.leaks.len();
            r.reported_sites = a.report.leaks.iter().map(|l| l.site).collect();
            r.alert = Some(a.report.alert.level);
            r.reported_intravertebral_ml = Some(a.report.cement.intravertebral_volume_ml);
            r.analyze_ms = ms;
        }
    }
    r
}
