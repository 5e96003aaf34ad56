//! Per-scan evaluation records and the issue-5 metrics over a set of them.

use super::diagnose::{Diagnosis, FalseCause, MissCause};
use super::matching::ScanMatch;
use crate::alert::AlertLevel;
use crate::leaks::Site;
use serde::Serialize;

/// Which population a scan belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Injection scans of synthetic phantoms (held-out seeds).
    Phantom,
    /// Injection scans inserted into the real series.
    Hybrid,
    /// Baselines with a needle and no thermocouple, analysed on their own (no cement anywhere).
    NeedleOnly,
    /// Baselines with a needle and a thermocouple, analysed on their own.
    Thermocouple,
    /// The unmodified real CTs.
    Real,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Phantom => "phantom",
            Group::Hybrid => "hybrid",
            Group::NeedleOnly => "needle_only",
            Group::Thermocouple => "thermocouple",
            Group::Real => "real",
        }
    }
}

/// Everything measured on one analysed scan.
#[derive(Clone, Debug, Serialize)]
pub struct ScanRecord {
    pub group: Group,
    /// Case name (seed, position, level...) and step.
    pub case: String,
    pub step: usize,
    /// `None` when analyze failed (then `error` says why).
    pub matched: Option<ScanMatch>,
    pub reported_leaks: usize,
    pub reported_sites: Vec<Site>,
    /// A true canal (or foraminal) leak of any size is present.
    pub truth_canal: bool,
    pub alert: Option<AlertLevel>,
    pub expected_alert: Option<AlertLevel>,
    pub truth_intravertebral_ml: Option<f64>,
    pub reported_intravertebral_ml: Option<f64>,
    pub analyze_ms: f64,
    pub error: Option<String>,
    /// Why true leaks were missed and false ones reported (generated scans only).
    pub diagnosis: Option<Diagnosis>,
}

/// A ratio with its counts, so a reader sees how many cases stand behind it.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct Ratio {
    pub num: usize,
    pub den: usize,
    pub value: Option<f64>,
}

impl Ratio {
    pub fn new(num: usize, den: usize) -> Ratio {
        Ratio { num, den, value: (den > 0).then(|| num as f64 / den as f64) }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub scans: usize,
    pub failed: usize,
    /// True leaks >= `min_leak_ml` detected.
    pub sensitivity: Ratio,
    pub canal_sensitivity: Ratio,
    /// Sensitivity per true site (leaks >= `min_leak_ml`).
    pub sensitivity_by_site: Vec<(Site, Ratio)>,
    /// Matched true leaks (>= `min_leak_ml`) given the right site.
    pub site_accuracy: Ratio,
    pub false_leaks: usize,
    pub false_leaks_per_scan: Option<f64>,
    /// Scans without a true canal leak that got no `stop`.
    pub no_stop_without_canal: Ratio,
    /// Scans with a true canal leak that got `stop`.
    pub stop_with_canal: Ratio,
    /// Median of |reported - true| / true intravertebral volume over scans with at least 0.5 mL true.
    pub median_volume_error: Option<f64>,
    /// Median of (reported - true) / true, same scans (sign shows over- or under-estimation).
    pub median_volume_bias: Option<f64>,
    /// Leaks reported in total (for groups without any true leak).
    pub reported_leaks: usize,
    /// Scans with at least one reported leak.
    pub scans_with_reported_leak: usize,
    pub median_analyze_ms: Option<f64>,
    /// Missed true leaks (>= `min_leak_ml`) by cause, every cause listed.
    pub miss_causes: Vec<(MissCause, usize)>,
    /// Missed true leaks (>= `min_leak_ml`) by (site, cause), only those that occur.
    pub miss_causes_by_site: Vec<(Site, MissCause, usize)>,
    /// False detections by cause, and by (reported site, cause).
    pub false_causes: Vec<(FalseCause, usize)>,
    pub false_causes_by_site: Vec<(Site, FalseCause, usize)>,
    /// Matched true leaks (>= `min_leak_ml`) reported at another site: (true, reported, count).
    pub site_confusions: Vec<(Site, Site, usize)>,
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

pub fn summarize(records: &[&ScanRecord], min_leak_ml: f64) -> Summary {
    let ok: Vec<&&ScanRecord> = records.iter().filter(|r| r.matched.is_some()).collect();
    let outcomes: Vec<_> = ok
        .iter()
        .flat_map(|r| r.matched.iter().flat_map(|m| m.truth.iter()))
        .filter(|o| o.volume_ml >= min_leak_ml)
        .collect();
    let detected = outcomes.iter().filter(|o| o.detected_as.is_some()).count();
    let by_site: Vec<(Site, Ratio)> = [Site::Canal, Site::PosteriorVein, Site::Disc, Site::Paraspinal]
        .into_iter()
        .map(|s| {
            let of: Vec<_> = outcomes.iter().filter(|o| o.site == s).collect();
            (s, Ratio::new(of.iter().filter(|o| o.detected_as.is_some()).count(), of.len()))
        })
        .collect();
    let canal = by_site[0].1;
    let right = outcomes.iter().filter(|o| o.detected_as == Some(o.site)).count();
    let false_leaks: usize = ok.iter().filter_map(|r| r.matched.as_ref()).map(|m| m.false_leaks).sum();
    let no_canal: Vec<_> = ok.iter().filter(|r| !r.truth_canal).collect();
    let with_canal: Vec<_> = ok.iter().filter(|r| r.truth_canal).collect();
    let errs: Vec<(f64, f64)> = ok
        .iter()
        .filter_map(|r| match (r.truth_intravertebral_ml, r.reported_intravertebral_ml) {
            (Some(t), Some(p)) if t >= 0.5 => Some(((p - t).abs() / t, (p - t) / t)),
            _ => None,
        })
        .collect();
    let mut miss = std::collections::BTreeMap::<(Site, MissCause), usize>::new();
    let mut fals = std::collections::BTreeMap::<(Site, FalseCause), usize>::new();
    for d in ok.iter().filter_map(|r| r.diagnosis.as_ref()) {
        for m in d.missed.iter().filter(|m| m.volume_ml >= min_leak_ml) {
            *miss.entry((m.site, m.cause)).or_default() += 1;
        }
        for f in &d.false_leaks {
            *fals.entry((f.site, f.cause)).or_default() += 1;
        }
    }
    let mut confusions = std::collections::BTreeMap::<(Site, Site), usize>::new();
    for o in &outcomes {
        if let Some(d) = o.detected_as.filter(|d| *d != o.site) {
            *confusions.entry((o.site, d)).or_default() += 1;
        }
    }
    Summary {
        miss_causes: MissCause::ALL
            .into_iter()
            .map(|c| (c, miss.iter().filter(|((_, k), _)| *k == c).map(|(_, n)| n).sum()))
            .collect(),
        miss_causes_by_site: miss.iter().map(|((s, c), n)| (*s, *c, *n)).collect(),
        false_causes: FalseCause::ALL
            .into_iter()
            .map(|c| (c, fals.iter().filter(|((_, k), _)| *k == c).map(|(_, n)| n).sum()))
            .collect(),
        false_causes_by_site: fals.iter().map(|((s, c), n)| (*s, *c, *n)).collect(),
        site_confusions: confusions.iter().map(|((t, d), n)| (*t, *d, *n)).collect(),
        scans: records.len(),
        failed: records.len() - ok.len(),
        sensitivity: Ratio::new(detected, outcomes.len()),
        canal_sensitivity: canal,
        sensitivity_by_site: by_site,
        site_accuracy: Ratio::new(right, detected),
        false_leaks,
        false_leaks_per_scan: (!ok.is_empty()).then(|| false_leaks as f64 / ok.len() as f64),
        no_stop_without_canal: Ratio::new(
            no_canal.iter().filter(|r| r.alert != Some(AlertLevel::Stop)).count(),
            no_canal.len(),
        ),
        stop_with_canal: Ratio::new(
            with_canal.iter().filter(|r| r.alert == Some(AlertLevel::Stop)).count(),
            with_canal.len(),
        ),
        median_volume_error: median(errs.iter().map(|e| e.0).collect()),
        median_volume_bias: median(errs.iter().map(|e| e.1).collect()),
        reported_leaks: ok.iter().map(|r| r.reported_leaks).sum(),
        scans_with_reported_leak: ok.iter().filter(|r| r.reported_leaks > 0).count(),
        median_analyze_ms: median(ok.iter().map(|r| r.analyze_ms).collect()),
    }
}

fn fmt_ratio(r: Ratio) -> String {
    match r.value {
        Some(v) => format!("{v:.3} ({}/{})", r.num, r.den),
        None => "n/a (0/0)".into(),
    }
}

fn fmt_opt(v: Option<f64>, places: usize) -> String {
    v.map(|x| format!("{x:.places$}")).unwrap_or_else(|| "n/a".into())
}

/// Issue-5 goals for the synthetic and hybrid populations.
pub struct Goals {
    pub sensitivity: f64,
    pub canal_sensitivity: f64,
    pub site_accuracy: f64,
    pub false_per_scan: f64,
    pub no_stop: f64,
    pub volume_error: f64,
}

pub const PHANTOM_GOALS: Goals = Goals {
    sensitivity: 0.97,
    canal_sensitivity: 1.0,
    site_accuracy: 0.95,
    false_per_scan: 0.1,
    no_stop: 0.98,
    volume_error: 0.10,
};

pub const HYBRID_GOALS: Goals = Goals { sensitivity: 0.9, ..PHANTOM_GOALS };

fn mark(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "NOT MET",
        None => "-",
    }
}

/// A plain-text table of one population's summary against its goals.
pub fn table(title: &str, s: &Summary, goals: Option<&Goals>, min_leak_ml: f64) -> String {
    let mut out = format!("{title}: {} scans ({} failed)\n", s.scans, s.failed);
    let mut row = |name: &str, value: String, goal: String, ok: Option<bool>| {
        out.push_str(&format!("  {name:<44} {value:<22} {goal:<10} {}\n", mark(ok)));
    };
    let ge = |r: Ratio, g: f64| r.value.map(|v| v >= g - 1e-12);
    match goals {
        Some(g) => {
            row(
                &format!("leak sensitivity (true leaks >= {min_leak_ml} mL)"),
                fmt_ratio(s.sensitivity),
                format!(">= {}", g.sensitivity),
                ge(s.sensitivity, g.sensitivity),
            );
            for (site, r) in &s.sensitivity_by_site {
                row(&format!("  sensitivity, {site}"), fmt_ratio(*r), String::new(), None);
            }
            row(
                "canal sensitivity",
                fmt_ratio(s.canal_sensitivity),
                format!(">= {}", g.canal_sensitivity),
                ge(s.canal_sensitivity, g.canal_sensitivity),
            );
            row(
                "site accuracy (matched leaks)",
                fmt_ratio(s.site_accuracy),
                format!(">= {}", g.site_accuracy),
                ge(s.site_accuracy, g.site_accuracy),
            );
            row(
                "false leaks per scan",
                format!("{} ({} false)", fmt_opt(s.false_leaks_per_scan, 3), s.false_leaks),
                format!("<= {}", g.false_per_scan),
                s.false_leaks_per_scan.map(|v| v <= g.false_per_scan),
            );
            row(
                "no stop on scans without canal leak",
                fmt_ratio(s.no_stop_without_canal),
                format!(">= {}", g.no_stop),
                ge(s.no_stop_without_canal, g.no_stop),
            );
            row("stop on scans with a canal leak", fmt_ratio(s.stop_with_canal), String::new(), None);
            row(
                "median intravertebral volume error",
                format!("{} (bias {})", fmt_opt(s.median_volume_error, 3), fmt_opt(s.median_volume_bias, 3)),
                format!("<= {}", g.volume_error),
                s.median_volume_error.map(|v| v <= g.volume_error),
            );
        }
        None => {
            row(
                "leaks reported",
                format!("{} on {} scan(s)", s.reported_leaks, s.scans_with_reported_leak),
                "0".into(),
                (s.scans > s.failed).then_some(s.reported_leaks == 0),
            );
        }
    }
    row("median analyze time, ms", fmt_opt(s.median_analyze_ms, 0), String::new(), None);
    if goals.is_some() {
        let missed: usize = s.miss_causes.iter().map(|c| c.1).sum();
        if missed > 0 {
            out.push_str(&format!("  missed true leaks >= {min_leak_ml} mL by cause ({missed}):\n"));
            for (c, n) in s.miss_causes.iter().filter(|c| c.1 > 0) {
                let sites: Vec<String> = s
                    .miss_causes_by_site
                    .iter()
                    .filter(|x| x.1 == *c)
                    .map(|x| format!("{} {}", x.0, x.2))
                    .collect();
                out.push_str(&format!("    {:<40} {n:<5} {}\n", c.name(), sites.join(", ")));
            }
        }
        if s.false_leaks > 0 {
            out.push_str(&format!("  false leaks by cause ({}):\n", s.false_leaks));
            for (c, n) in s.false_causes.iter().filter(|c| c.1 > 0) {
                let sites: Vec<String> = s
                    .false_causes_by_site
                    .iter()
                    .filter(|x| x.1 == *c)
                    .map(|x| format!("as {} {}", x.0, x.2))
                    .collect();
                out.push_str(&format!("    {:<40} {n:<5} {}\n", c.name(), sites.join(", ")));
            }
        }
        if !s.site_confusions.is_empty() {
            let c: Vec<String> = s.site_confusions.iter().map(|(t, d, n)| format!("{t}->{d} {n}")).collect();
            out.push_str(&format!("  wrong sites (true->reported): {}\n", c.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::matching::TruthOutcome;

    fn rec(
        truth: Vec<TruthOutcome>,
        false_leaks: usize,
        canal: bool,
        alert: AlertLevel,
        vol: (f64, f64),
    ) -> ScanRecord {
        ScanRecord {
            group: Group::Phantom,
            case: "t".into(),
            step: 1,
            matched: Some(ScanMatch {
                detected: 0,
                false_leaks,
                false_sites: vec![],
                false_detections: vec![],
                truth,
            }),
            reported_leaks: 0,
            reported_sites: vec![],
            truth_canal: canal,
            alert: Some(alert),
            expected_alert: None,
            truth_intravertebral_ml: Some(vol.0),
            reported_intravertebral_ml: Some(vol.1),
            analyze_ms: 100.0,
            error: None,
            diagnosis: None,
        }
    }

    fn o(site: Site, ml: f64, det: Option<Site>) -> TruthOutcome {
        TruthOutcome { site, volume_ml: ml, detected_as: det }
    }

    #[test]
    fn metrics_on_hand_made_outcomes() {
        let a = rec(
            vec![o(Site::Canal, 0.2, Some(Site::Canal)), o(Site::Disc, 0.01, None)],
            0,
            true,
            AlertLevel::Stop,
            (2.0, 2.2),
        );
        let b = rec(
            vec![o(Site::Disc, 0.3, Some(Site::Paraspinal)), o(Site::Paraspinal, 0.1, None)],
            1,
            false,
            AlertLevel::Stop,
            (4.0, 3.0),
        );
        let c = rec(vec![], 1, false, AlertLevel::Continue, (1.0, 1.05));
        let mut failed = rec(vec![], 0, false, AlertLevel::Continue, (1.0, 1.0));
        failed.matched = None;
        let s = summarize(&[&a, &b, &c, &failed], 0.05);
        assert_eq!(s.scans, 4);
        assert_eq!(s.failed, 1);
        // The 0.01 mL disc leak is below the reporting size: 3 true leaks count, 2 found.
        assert_eq!(s.sensitivity, Ratio::new(2, 3));
        assert_eq!(s.canal_sensitivity, Ratio::new(1, 1));
        assert_eq!(s.site_accuracy, Ratio::new(1, 2));
        assert_eq!(s.false_leaks, 2);
        assert!((s.false_leaks_per_scan.unwrap_or(0.0) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.no_stop_without_canal, Ratio::new(1, 2));
        assert_eq!(s.stop_with_canal, Ratio::new(1, 1));
        // Errors 0.1, 0.25, 0.05 -> median 0.1; biases 0.1, -0.25, 0.05 -> 0.05.
        assert!((s.median_volume_error.unwrap_or(0.0) - 0.1).abs() < 1e-9);
        assert!((s.median_volume_bias.unwrap_or(0.0) - 0.05).abs() < 1e-9);
        let t = table("phantom", &s, Some(&PHANTOM_GOALS), 0.05);
        assert!(t.contains("NOT MET"));
    }
}
