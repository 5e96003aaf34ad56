//! Stage 5: the alert policy — turns the findings of one scan into what the operator should do next.
//!
//! The policy is data (`config/alert_policy.toml`, documented there and compiled in as the default) so a
//! site can tighten it without a new build. Rules never look at model confidence: a leak that reaches this
//! stage has already been given its most dangerous plausible site by the classifier.

use crate::leaks::Site;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// What the operator should do next, from least to most urgent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertLevel {
    Continue,
    Reduce,
    Pause,
    Stop,
}

impl AlertLevel {
    pub fn name(self) -> &'static str {
        match self {
            AlertLevel::Continue => "continue",
            AlertLevel::Reduce => "reduce",
            AlertLevel::Pause => "pause",
            AlertLevel::Stop => "stop",
        }
    }
}

/// Levels for one leak site.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteRule {
    pub present: AlertLevel,
    pub new: AlertLevel,
    pub growing: AlertLevel,
}

/// The alert policy. `Default` is the policy shipped in `config/alert_policy.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertPolicy {
    pub reduce_within_mm: f64,
    pub standard_aliquot_ml: [f64; 2],
    pub reduced_aliquot_ml: [f64; 2],
    pub growth_threshold_ml: f64,
    pub sites: BTreeMap<Site, SiteRule>,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        use AlertLevel::*;
        let rule = |present, new, growing| SiteRule { present, new, growing };
        AlertPolicy {
            reduce_within_mm: 5.0,
            standard_aliquot_ml: [1.0, 1.0],
            reduced_aliquot_ml: [0.3, 0.5],
            growth_threshold_ml: 0.02,
            sites: BTreeMap::from([
                (Site::Canal, rule(Stop, Stop, Stop)),
                (Site::PosteriorVein, rule(Continue, Pause, Pause)),
                (Site::Paraspinal, rule(Continue, Pause, Pause)),
                (Site::Disc, rule(Continue, Continue, Pause)),
            ]),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot read alert policy ({reason})")]
    Read { path: String, reason: String },
    #[error("{path}: invalid alert policy: {reason}")]
    Invalid { path: String, reason: String },
}

impl AlertPolicy {
    /// Parse a policy file; fields left out keep their defaults, unknown fields are refused (typos).
    pub fn from_toml(text: &str, origin: &str) -> Result<AlertPolicy, PolicyError> {
        let mut policy: AlertPolicy = toml::from_str(text).map_err(|e| PolicyError::Invalid {
            path: origin.to_string(),
            reason: e.message().to_string(),
        })?;
        // Sites left out of the file keep their default rule rather than silently never alerting.
        for (site, rule) in AlertPolicy::default().sites {
            policy.sites.entry(site).or_insert(rule);
        }
        policy.validate().map_err(|reason| PolicyError::Invalid { path: origin.to_string(), reason })?;
        Ok(policy)
    }

    pub fn load(path: &Path) -> Result<AlertPolicy, PolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PolicyError::Read { path: path.display().to_string(), reason: e.to_string() })?;
        AlertPolicy::from_toml(&text, &path.display().to_string())
    }

    fn validate(&self) -> Result<(), String> {
        let ok_range = |r: [f64; 2]| r[0] > 0.0 && r[0] <= r[1] && r[1] <= 10.0;
        if !(self.reduce_within_mm.is_finite() && self.reduce_within_mm >= 0.0) {
            return Err("reduce_within_mm must be a distance of 0 mm or more".into());
        }
        if !ok_range(self.standard_aliquot_ml) || !ok_range(self.reduced_aliquot_ml) {
            return Err("aliquots must be [min, max] with 0 < min <= max <= 10 mL".into());
        }
        if !(self.growth_threshold_ml.is_finite() && self.growth_threshold_ml >= 0.0) {
            return Err("growth_threshold_ml must be 0 or more".into());
        }
        Ok(())
    }
}

/// One leak as the policy sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct LeakObservation {
    pub id: u32,
    pub site: Site,
    pub foraminal: bool,
    pub volume_ml: f64,
    /// `None` without a previous scan.
    pub new: Option<bool>,
    /// Volume change since the previous scan; `None` without a previous scan or for a new leak.
    pub grew_ml: Option<f64>,
}

/// The decision for one scan.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alert {
    pub level: AlertLevel,
    /// Next aliquot [min, max] mL; `None` when the operator must not inject (pause, stop).
    pub next_aliquot_ml: Option<[f64; 2]>,
    pub reasons: Vec<String>,
}

/// Apply `policy` to one scan's leaks and the intravertebral cement's distance to the posterior wall.
pub fn decide(
    policy: &AlertPolicy,
    leaks: &[LeakObservation],
    posterior_wall_distance_mm: Option<f64>,
) -> Alert {
    let mut level = AlertLevel::Continue;
    let mut reasons = Vec::new();
    let mut raise = |to: AlertLevel, why: String, level: &mut AlertLevel| {
        if to > AlertLevel::Continue {
            reasons.push(format!("{}: {why}", to.name()));
        }
        *level = (*level).max(to);
    };

    for leak in leaks {
        // A foraminal leak threatens a nerve root whatever else it touches: it takes the canal rule.
        let site = if leak.foraminal { Site::Canal } else { leak.site };
        let Some(rule) = policy.sites.get(&site) else { continue };
        let what = describe(leak);
        // One reason per leak: the most urgent rule it triggers.
        let mut verdict = (rule.present, format!("{what} present"));
        let change = match leak.new {
            Some(true) => Some((rule.new, format!("{what} is new since the previous scan"))),
            None => Some((rule.new, format!("{what}, no previous scan to tell whether it is new"))),
            Some(false) => leak
                .grew_ml
                .filter(|g| *g > policy.growth_threshold_ml)
                .map(|g| (rule.growing, format!("{what} grew by {g:.2} mL"))),
        };
        if let Some(c) = change.filter(|c| c.0 > verdict.0) {
            verdict = c;
        }
        raise(verdict.0, verdict.1, &mut level);
    }

    if let Some(d) = posterior_wall_distance_mm.filter(|d| *d <= policy.reduce_within_mm) {
        raise(
            AlertLevel::Reduce,
            format!("cement {d:.1} mm from the posterior wall (limit {:.1} mm)", policy.reduce_within_mm),
            &mut level,
        );
    }

    let next_aliquot_ml = match level {
        AlertLevel::Continue => Some(policy.standard_aliquot_ml),
        AlertLevel::Reduce => Some(policy.reduced_aliquot_ml),
        AlertLevel::Pause | AlertLevel::Stop => None,
    };
    Alert { level, next_aliquot_ml, reasons }
}

fn describe(leak: &LeakObservation) -> String {
    let site =
        if leak.foraminal { "canal (foraminal)".to_string() } else { leak.site.name().replace('_', " ") };
    format!("leak #{} {site} {:.2} mL", leak.id, leak.volume_ml)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leak(site: Site, new: Option<bool>, grew_ml: Option<f64>) -> LeakObservation {
        LeakObservation { id: 1, site, foraminal: false, volume_ml: 0.1, new, grew_ml }
    }

    #[test]
    fn shipped_file_is_the_default() {
        let shipped = include_str!("../../config/alert_policy.toml");
        assert_eq!(AlertPolicy::from_toml(shipped, "shipped").ok(), Some(AlertPolicy::default()));
    }

    #[test]
    fn default_levels_follow_the_clinical_rules() {
        let p = AlertPolicy::default();
        let level = |leaks: &[LeakObservation], d| decide(&p, leaks, d).level;
        use AlertLevel::*;
        assert_eq!(level(&[], None), Continue);
        assert_eq!(level(&[], Some(12.0)), Continue);
        assert_eq!(level(&[], Some(4.0)), Reduce);
        assert_eq!(level(&[leak(Site::Canal, Some(false), Some(0.0))], Some(20.0)), Stop);
        assert_eq!(level(&[leak(Site::PosteriorVein, Some(true), None)], None), Pause);
        assert_eq!(level(&[leak(Site::Paraspinal, None, None)], None), Pause);
        assert_eq!(level(&[leak(Site::Paraspinal, Some(false), Some(0.01))], None), Continue);
        assert_eq!(level(&[leak(Site::Disc, Some(true), None)], None), Continue);
        assert_eq!(level(&[leak(Site::Disc, Some(false), Some(0.3))], None), Pause);
        assert_eq!(
            level(&[leak(Site::Disc, Some(false), Some(0.3)), leak(Site::Canal, Some(true), None)], None),
            Stop
        );
    }

    #[test]
    fn aliquot_follows_level_and_reasons_name_the_rule() {
        let p = AlertPolicy::default();
        let a = decide(&p, &[], Some(3.0));
        assert_eq!(a.next_aliquot_ml, Some([0.3, 0.5]));
        assert!(a.reasons[0].contains("posterior wall"));
        assert_eq!(decide(&p, &[], None).next_aliquot_ml, Some([1.0, 1.0]));
        assert_eq!(decide(&p, &[leak(Site::Canal, Some(true), None)], None).next_aliquot_ml, None);
    }

    #[test]
    fn partial_and_bad_files() {
        let p = AlertPolicy::from_toml("reduce_within_mm = 7.5\n", "t").ok();
        assert_eq!(p.as_ref().map(|p| p.reduce_within_mm), Some(7.5));
        assert_eq!(p.map(|p| p.sites.len()), Some(4));
        assert!(AlertPolicy::from_toml("reduce_within_mm = -1\n", "t").is_err());
        assert!(AlertPolicy::from_toml("reduce_whithin_mm = 5\n", "t").is_err());
        assert!(AlertPolicy::from_toml(
            "[sites.canal]\npresent = \"panic\"\nnew=\"stop\"\ngrowing=\"stop\"\n",
            "t"
        )
        .is_err());
    }
}
