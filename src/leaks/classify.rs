//! The site of each leak: the anatomical rules fused with the model's opinion, when there is a model.
//!
//! - Rules only: the rule's site, with the rule's confidence; `review` when that confidence is low.
//! - Model agrees with the rules: confidence rises (two independent readings: 1 - (1 - r)(1 - m)).
//! - Model names another site: `review: true`, and the **more dangerous** of the two sites
//!   ([`Site::danger_rank`]) is reported, because the alert must follow the worst plausible reading. The
//!   confidence is what both give that site (the mean of the rule's and the model's support).
//! - Model says `not_cement` with at least [`NOT_CEMENT_SUPPRESS`] probability:
//!   - when the rules put the component in the canal, it is **kept as a canal leak** with `review: true`:
//!     a canal leak must never be dropped on the model's word alone (a missed canal leak can paralyse);
//!   - otherwise the component is **suppressed** (not reported as a leak, not in the alert, mentioned in the
//!     warnings), because false leaks outside the canal stop procedures for nothing and streaks or
//!     registration residue are exactly what the model was trained to recognise. Components of
//!     [`SUPPRESS_MAX_ML`] or more are never suppressed: that much artefact is implausible.
//! - A less confident `not_cement` is a disagreement like any other (review, rule site kept).

use super::rules::RuleOpinion;
use super::{ModelClass, ModelOpinion, Site};

/// Model probability of `not_cement` above which a non-canal component is dropped.
pub const NOT_CEMENT_SUPPRESS: f32 = 0.9;
/// Components at least this large are never dropped as artefacts.
pub const SUPPRESS_MAX_ML: f64 = 0.2;
/// Below this confidence a leak is flagged for review even when nothing disagrees.
pub const REVIEW_BELOW: f64 = 0.6;

/// The fused verdict on one component.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    pub site: Site,
    pub foraminal: bool,
    pub confidence: f64,
    pub review: bool,
    /// False when the model's confident `not_cement` removed the component (see the module documentation).
    pub keep: bool,
}

/// Fuse the rule's opinion with the model's (if any) for a component of `volume_ml`.
pub fn fuse(rule: &RuleOpinion, model: Option<&ModelOpinion>, volume_ml: f64) -> Verdict {
    let base = Verdict {
        site: rule.site,
        foraminal: rule.foraminal,
        confidence: rule.confidence,
        review: rule.confidence < REVIEW_BELOW,
        keep: true,
    };
    let Some(m) = model else { return base };
    let (best, p) = m.best();
    match best {
        ModelClass::Site(s) if s == rule.site => {
            let c = 1.0 - (1.0 - rule.confidence) * (1.0 - f64::from(p));
            Verdict { confidence: c.clamp(0.0, 1.0), review: c < REVIEW_BELOW, ..base }
        }
        ModelClass::Site(s) => {
            let site = if s.danger_rank() < rule.site.danger_rank() { s } else { rule.site };
            let rule_support = if site == rule.site { rule.confidence } else { 1.0 - rule.confidence };
            let model_support = f64::from(m.probability(ModelClass::Site(site)));
            Verdict {
                site,
                // Foraminal is a rule finding; a canal site from the model alone is the central canal.
                foraminal: site == Site::Canal && rule.foraminal,
                confidence: (0.5 * (rule_support + model_support)).clamp(0.0, 1.0),
                review: true,
                keep: true,
            }
        }
        ModelClass::NotCement => {
            let suppress =
                p >= NOT_CEMENT_SUPPRESS && rule.site != Site::Canal && volume_ml < SUPPRESS_MAX_ML;
            let model_support = f64::from(m.probability(ModelClass::Site(rule.site)));
            Verdict {
                confidence: (0.5 * (rule.confidence + model_support)).clamp(0.0, 1.0),
                review: true,
                keep: !suppress,
                ..base
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leaks::rules::RuleEvidence;

    fn rule(site: Site, confidence: f64) -> RuleOpinion {
        RuleOpinion { site, foraminal: false, confidence, evidence: RuleEvidence::default() }
    }

    fn opinion(class: ModelClass, p: f32) -> ModelOpinion {
        let mut probabilities = [(1.0 - p) / 4.0; 5];
        probabilities[class.index()] = p;
        ModelOpinion { probabilities }
    }

    #[test]
    fn agreement_raises_confidence() {
        let r = rule(Site::Disc, 0.7);
        let v = fuse(&r, Some(&opinion(ModelClass::Site(Site::Disc), 0.8)), 0.1);
        assert!(v.confidence > 0.9 && !v.review && v.site == Site::Disc);
        assert_eq!(fuse(&r, None, 0.1).confidence, 0.7);
    }

    #[test]
    fn disagreement_takes_the_more_dangerous_site_and_asks_for_review() {
        let v = fuse(&rule(Site::Paraspinal, 0.9), Some(&opinion(ModelClass::Site(Site::Canal), 0.6)), 0.1);
        assert_eq!((v.site, v.review), (Site::Canal, true));
        let v = fuse(&rule(Site::Canal, 0.9), Some(&opinion(ModelClass::Site(Site::Disc), 0.99)), 0.1);
        assert_eq!((v.site, v.review), (Site::Canal, true));
    }

    #[test]
    fn confident_not_cement_never_drops_a_canal_leak() {
        let nc = opinion(ModelClass::NotCement, 0.97);
        let canal = fuse(&rule(Site::Canal, 0.9), Some(&nc), 0.05);
        assert!(canal.keep && canal.review && canal.site == Site::Canal);
        assert!(!fuse(&rule(Site::Paraspinal, 0.8), Some(&nc), 0.05).keep);
        assert!(fuse(&rule(Site::Paraspinal, 0.8), Some(&nc), 0.5).keep, "large components stay");
        let unsure = fuse(&rule(Site::Paraspinal, 0.8), Some(&opinion(ModelClass::NotCement, 0.6)), 0.05);
        assert!(unsure.keep && unsure.review);
    }
}
