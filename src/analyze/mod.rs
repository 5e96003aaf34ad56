//! The whole analysis of one post-injection scan: anatomy -> cement -> leak sites -> alert -> report.
//!
//! ```text
//! let mut analyzer = Analyzer::new(policy, model);
//! let analysis = analyzer.run(&AnalyzeInputs { scan, baseline, previous, hint })?;
//! analysis.report   // report.json (schema cementleak.report/1); timing_ms.total is the analysis only,
//!                   // the CLI replaces it with process start to report written
//! analysis.labels   // spec label map on the scan grid: 1-4 anatomy, 10 cement, 11-14 leaks by site, 20 metal
//! ```
//!
//! Locating the cement (anatomy, cement, carry/resplit, reclaim/escape) is [`locate::locate`], a function of
//! its own because the training-patch export (`cementleak patches`) must call exactly the same code.
//!
//! Decisions:
//! - With a baseline, the anatomy is segmented on the **baseline** (needle in place, no cement), not on the
//!   scan: cement cannot be swallowed into the body or make the canal look like bone there. Its labels and
//!   points are carried onto the scan's grid (`carry`) first as they are (the cement stage only needs the
//!   body's rough place to crop and register), then through the baseline registration the cement stage
//!   computed, and the cement is split again on the carried body (`resplit`). This *replaces* the scan's
//!   segmentation (one segmentation per run, same time budget). Measured on development phantoms (seeds
//!   700000-700017): sensitivity 0.37 -> 0.89, 21 of 22 misses had been leaks the scan's body swallowed.
//!   Without a baseline (or when the baseline's anatomy fails) the scan is segmented, with a warning.
//! - The baseline's segmentation is only as good as the anatomy stage on a scan without cement: lytic
//!   lesions are dark there and the body can come out too small, or the canal label can reach into the
//!   body. Two checks against the baseline's own cortex soften this: leak components that have the nearest
//!   cortex *outside* them are intravertebral (`reclaim`), and intravertebral cement behind the posterior
//!   wall with the cortex in front of it is a leak (`escape`). Cavities the body encloses within a slice,
//!   and runs of up to 4 mm along the spine with body above and below (the needle's track, a dark slice),
//!   are body (`carry::fill_body`).
//! - A scan where no treated vertebra is found still gets a report (`vertebra.found: false`) with a `pause`
//!   alert: nothing can be said about leaks, so injection must not go on without a look at the images.
//!   Only an unusable image (empty, degenerate geometry) is an error.
//! - A leak is *new* when its region held less than the smallest reportable leak in the previous scan;
//!   otherwise `grew_ml` is its volume now minus then.

pub mod carry;
pub mod escape;
pub mod key_images;
pub mod locate;
pub mod measure;
pub mod reclaim;
pub mod resplit;
mod voxels;

use crate::alert::{decide, Alert, AlertLevel, AlertPolicy, LeakObservation};
use crate::anatomy::{Anatomy, AnatomyError, TargetHint};
use crate::cement::{CementComponent, CementError, CementFindings, CementParams};
use crate::leaks::classify::{fuse, Verdict};
use crate::leaks::model::LeakModel;
use crate::leaks::patch::extract_patch;
use crate::leaks::rules::RuleOpinion;
use crate::leaks::{ModelOpinion, Site};
use crate::load::Scan;
use crate::report::{
    CementReport, Generator, Inputs, LeakReport, Report, SeriesRef, VertebraReport, SCHEMA_ID,
};
use crate::volume::{labels, LabelVolume, Lps};
use locate::ms;
pub use locate::{locate, LocateInputs, Located, Location};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::time::Instant;

/// What to analyse. The earlier scans may be on other grids (they are registered onto the scan).
#[derive(Clone, Copy, Debug)]
pub struct AnalyzeInputs<'a> {
    pub scan: &'a Scan,
    /// After needle placement, before any cement.
    pub baseline: Option<&'a Scan>,
    /// After the previous injection.
    pub previous: Option<&'a Scan>,
    pub hint: TargetHint,
}

/// One reported leak with everything that decided it.
#[derive(Clone, Debug)]
pub struct LeakFinding {
    /// The id in the report.
    pub id: u32,
    pub component: CementComponent,
    pub rule: RuleOpinion,
    pub model: Option<ModelOpinion>,
    pub verdict: Verdict,
}

/// The result of [`Analyzer::run`].
#[derive(Clone, Debug)]
pub struct Analysis {
    pub report: Report,
    /// Spec label map on the scan grid.
    pub labels: LabelVolume,
    /// `None` when no treated vertebra was found.
    pub anatomy: Option<Anatomy>,
    pub findings: Option<CementFindings>,
    /// Reported leaks (suppressed components are left out), in report order.
    pub leaks: Vec<LeakFinding>,
    /// Leak components the model's `not_cement` suppressed (not reported, not in the label map).
    pub suppressed: Vec<CementComponent>,
    /// Partial-volume centre of the intravertebral cement, when there is some.
    pub cement_centroid: Option<Lps>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The image cannot be analysed at all (empty, degenerate geometry): the user must give another series.
    #[error("unusable scan: {0}")]
    BadInput(String),
    #[error("cement detection failed: {0}")]
    Cement(CementError),
}

/// Runs the pipeline with one policy (and later one model) over any number of scans.
#[derive(Debug)]
pub struct Analyzer {
    policy: AlertPolicy,
    model: Option<LeakModel>,
    params: CementParams,
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

impl Analyzer {
    pub fn new(policy: AlertPolicy, model: Option<LeakModel>) -> Analyzer {
        Analyzer { policy, model, params: CementParams::default() }
    }

    pub fn policy(&self) -> &AlertPolicy {
        &self.policy
    }

    pub fn run(&mut self, inputs: &AnalyzeInputs) -> Result<Analysis, AnalyzeError> {
        let t_all = Instant::now();
        let scan = inputs.scan;
        let mut timing = BTreeMap::new();
        let mut warnings: Vec<String> = scan.warnings.clone();
        for (what, s) in [("baseline", inputs.baseline), ("previous", inputs.previous)] {
            if let Some(s) = s {
                warnings.extend(s.warnings.iter().map(|w| format!("{what} scan: {w}")));
            }
        }
        if self.model.is_none() {
            warnings.push("site from anatomical rules only (no model)".into());
        }
        let generator = Generator::this(self.model.as_ref().map(LeakModel::reference));
        let input = Inputs {
            scan: SeriesRef::of(scan),
            baseline: inputs.baseline.map(SeriesRef::of),
            previous: inputs.previous.map(SeriesRef::of),
        };

        let (anatomy, findings, frame) = match locate(&LocateInputs::of(inputs), &self.params)? {
            Location::Found(l) => {
                let Located { anatomy, findings, frame, warnings: w, timing_ms } = *l;
                warnings.extend(w);
                timing.extend(timing_ms);
                (anatomy, findings, frame)
            }
            Location::NotFound { why, warnings: w, timing_ms } => {
                warnings.extend(w);
                timing.extend(timing_ms);
                timing.insert("total".to_string(), ms(t_all));
                return Ok(self.not_found(scan, generator, input, timing, warnings, &why));
            }
        };
        // The leak stage's time includes locate's reclaim/escape part.
        let t_leaks = Instant::now();
        let located_leaks_ms = timing.get("leaks").copied().unwrap_or(0.0);
        let models = self.model_opinions(&scan.volume, &anatomy, &findings, &mut warnings);
        let opinions: Vec<(RuleOpinion, Option<ModelOpinion>)> =
            findings.leaks.iter().zip(models).map(|(c, m)| (frame.classify(&anatomy.labels, c), m)).collect();
        let mut leaks = Vec::new();
        let mut suppressed = Vec::new();
        for (component, (rule, model)) in findings.leaks.iter().zip(opinions) {
            let verdict = fuse(&rule, model.as_ref(), component.volume_ml);
            if !verdict.keep {
                suppressed.push(component.clone());
                warnings.push(format!(
                    "a {:.3} mL component near {} was taken for an artefact by the model and not reported",
                    component.volume_ml, component.centroid
                ));
                continue;
            }
            let id = leaks.len() as u32 + 1;
            leaks.push(LeakFinding { id, component: component.clone(), rule, model, verdict });
        }
        timing.insert("leaks".to_string(), round(located_leaks_ms + ms(t_leaks), 2));

        let t = Instant::now();
        let wall_mm = measure::posterior_wall_distance_mm(&findings.intravertebral, &anatomy.posterior_wall);
        let cement_centroid = measure::centroid(&findings.intravertebral);
        timing.insert("measure".to_string(), ms(t));
        let t = Instant::now();
        let leak_reports: Vec<LeakReport> = leaks.iter().map(|l| self.leak_report(l)).collect();
        let observations: Vec<LeakObservation> = leak_reports.iter().map(LeakReport::observation).collect();
        let alert = decide(&self.policy, &observations, wall_mm);
        if inputs.previous.is_none() && !leak_reports.is_empty() {
            warnings.push("no previous scan: every leak is treated as possibly new".into());
        }
        timing.insert("alert".to_string(), ms(t));

        let t = Instant::now();
        let labels = measure::label_map(&anatomy.labels, &findings, &leaks);
        timing.insert("labels".to_string(), ms(t));

        let suppressed_ml: f64 = suppressed.iter().map(|c| c.volume_ml).sum();
        let total_ml = (findings.total_ml - suppressed_ml).max(0.0);
        let report = Report {
            schema: SCHEMA_ID,
            generator,
            input,
            vertebra: VertebraReport {
                found: true,
                level: scan.info.level.clone().or_else(|| anatomy.level.clone()),
                centroid_lps_mm: Some(anatomy.body_centroid.rounded()),
                body_volume_ml: Some(round(anatomy.body_volume_ml, 2)),
                posterior_wall_intact: anatomy.posterior_wall_intact,
            },
            cement: CementReport {
                total_volume_ml: round(total_ml, 3),
                intravertebral_volume_ml: round(findings.intravertebral_ml, 3),
                new_volume_ml: findings.new_since_previous_ml.map(|v| round(v, 3)),
                posterior_wall_distance_mm: wall_mm.map(|d| round(d, 1)),
                fill_fraction: (anatomy.body_volume_ml > 0.0)
                    .then(|| round((findings.intravertebral_ml / anatomy.body_volume_ml).clamp(0.0, 1.0), 3)),
            },
            leaks: leak_reports,
            alert,
            timing_ms: {
                timing.insert("total".to_string(), ms(t_all));
                timing
            },
            warnings,
        };
        Ok(Analysis {
            report,
            labels,
            anatomy: Some(anatomy),
            findings: Some(findings),
            leaks,
            suppressed,
            cement_centroid,
        })
    }

    /// The model's opinion of each leak component, in order; all `None` without a model. A patch or an
    /// inference that fails leaves those components to the rules, with a warning: the rules are the safety
    /// net, the model only refines them.
    fn model_opinions(
        &mut self,
        ct: &crate::volume::CtVolume,
        anatomy: &Anatomy,
        findings: &CementFindings,
        warnings: &mut Vec<String>,
    ) -> Vec<Option<ModelOpinion>> {
        let n = findings.leaks.len();
        let Some(model) = self.model.as_mut() else { return vec![None; n] };
        let mut patches = Vec::new();
        let mut slots = Vec::new();
        // Patches in parallel, taken in leak order.
        let extracted: Vec<_> =
            findings.leaks.par_iter().map(|c| extract_patch(ct, anatomy, findings, c)).collect();
        for (i, (c, patch)) in findings.leaks.iter().zip(extracted).enumerate() {
            match patch {
                Ok(p) => {
                    patches.push(p);
                    slots.push(i);
                }
                Err(e) => {
                    warnings.push(format!("leak near {}: no model patch ({e}); site from rules", c.centroid))
                }
            }
        }
        let mut out = vec![None; n];
        match model.predict(&patches) {
            Ok(opinions) => {
                for (i, o) in slots.into_iter().zip(opinions) {
                    out[i] = Some(o);
                }
            }
            Err(e) => {
                warnings.push(format!("leak-site model failed ({e}); sites from anatomical rules only"))
            }
        }
        out
    }

    fn leak_report(&self, l: &LeakFinding) -> LeakReport {
        let c = &l.component;
        // Smaller than the smallest reportable leak in the previous scan: it was not there.
        let new = c.previous_ml.map(|p| p < self.params.min_leak_ml);
        let grew_ml = match (new, c.previous_ml) {
            (Some(false), Some(p)) => Some(round(c.volume_ml - p, 4)),
            _ => None,
        };
        let model_probabilities = l.model.map(|m| {
            crate::leaks::ModelClass::ALL
                .iter()
                .map(|k| (k.name().to_string(), round(f64::from(m.probability(*k)), 4)))
                .collect()
        });
        LeakReport {
            id: l.id,
            site: l.verdict.site,
            foraminal: l.verdict.foraminal,
            volume_ml: round(c.volume_ml, 4),
            centroid_lps_mm: c.centroid.rounded(),
            max_hu: f64::from(c.max_hu).round(),
            new,
            grew_ml,
            confidence: round(l.verdict.confidence, 3),
            model_site: l.model.map(|m| m.best().0.name().to_string()),
            model_probabilities,
            rule_site: Some(l.rule.site.name().to_string()),
            review: l.verdict.review,
        }
    }

    fn not_found(
        &self,
        scan: &Scan,
        generator: Generator,
        input: Inputs,
        timing_ms: BTreeMap<String, f64>,
        warnings: Vec<String>,
        why: &AnatomyError,
    ) -> Analysis {
        let report = Report {
            schema: SCHEMA_ID,
            generator,
            input,
            vertebra: VertebraReport {
                found: false,
                level: scan.info.level.clone(),
                centroid_lps_mm: None,
                body_volume_ml: None,
                posterior_wall_intact: None,
            },
            cement: CementReport {
                total_volume_ml: 0.0,
                intravertebral_volume_ml: 0.0,
                new_volume_ml: None,
                posterior_wall_distance_mm: None,
                fill_fraction: None,
            },
            leaks: Vec::new(),
            alert: Alert {
                level: AlertLevel::Pause,
                next_aliquot_ml: None,
                reasons: vec![format!("pause: the treated vertebra was not found ({why}); check the images")],
            },
            timing_ms,
            warnings,
        };
        Analysis {
            report,
            labels: scan.volume.same_grid(labels::BACKGROUND),
            anatomy: None,
            findings: None,
            leaks: Vec::new(),
            suppressed: Vec::new(),
            cement_centroid: None,
        }
    }
}

/// Site names in report order, for callers that print a summary.
pub fn site_summary(report: &Report) -> String {
    if report.leaks.is_empty() {
        return "no leak".into();
    }
    report
        .leaks
        .iter()
        .map(|l| {
            let site: &str = if l.foraminal { "canal (foraminal)" } else { Site::name(l.site) };
            format!("{site} {:.3} mL", l.volume_ml)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
