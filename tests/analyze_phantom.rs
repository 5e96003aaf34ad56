//! `Analyzer` on phantom injection sequences generated here (small grids so the suite stays fast): every
//! report validates against the schema, a canal leak stops, a needle alone reports no leak, and the same
//! patient scanned prone or supine gets the same answer.

mod common;

use cementleak::alert::{decide, AlertLevel, AlertPolicy, LeakObservation};
use cementleak::analyze::{AnalyzeInputs, Analyzer};
use cementleak::anatomy::TargetHint;
use cementleak::leaks::Site;
use cementleak::load::{Scan, SeriesInfo};
use cementleak::phantom::{generate_case, PhantomCase, PhantomSpec, ScanTruth, ThermocouplePlace};
use cementleak::report::Report;
use cementleak::volume::PatientPosition;

fn spec(seed: u64, position: PatientPosition, sites: Vec<Site>, steps: usize) -> PhantomSpec {
    common::small_phantom(seed, position, sites, 24, steps)
}

fn case(spec: &PhantomSpec) -> PhantomCase {
    match generate_case(spec) {
        Ok(c) => c,
        Err(e) => panic!("phantom {}: {e}", spec.seed),
    }
}

fn as_scan(case: &PhantomCase, k: usize) -> Scan {
    let s = &case.scans[k];
    Scan {
        volume: s.ct.clone(),
        info: SeriesInfo {
            path: format!("phantom/{}/scan_{k:02}", case.spec.seed),
            series_instance_uid: format!("2.25.{}.{k}", case.spec.seed),
            modality: "CT".into(),
            patient_position: Some(case.summary.position.dicom_code().into()),
            ..Default::default()
        },
        warnings: Vec::new(),
    }
}

fn schema_errors(report: &Report) -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/report.schema.json"))
        .expect("schema readable");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    let json = serde_json::to_value(report).expect("report serialises");
    match jsonschema::validator_for(&schema) {
        Ok(v) => v.iter_errors(&json).map(|e| format!("{e} at {}", e.instance_path)).collect(),
        Err(e) => vec![format!("schema does not compile: {e}")],
    }
}

/// One line per scan, the same for a report and for the phantom's truth so the two read side by side.
fn line(
    level: &str,
    cement_ml: f64,
    wall: Option<f64>,
    leaks: impl Iterator<Item = (Site, bool, f64)>,
) -> String {
    let leaks: Vec<String> = leaks
        .map(|(site, foraminal, ml)| format!("{site}{} {ml:.3}", if foraminal { "(f)" } else { "" }))
        .collect();
    format!("{level:8} cement {cement_ml:.2} wall {:?} leaks [{}]", wall, leaks.join(", "))
}

fn describe(r: &Report) -> String {
    let leaks = r.leaks.iter().map(|l| (l.site, l.foraminal, l.volume_ml));
    line(r.alert.level.name(), r.cement.intravertebral_volume_ml, r.cement.posterior_wall_distance_mm, leaks)
}

fn truth_line(t: &ScanTruth) -> String {
    let leaks = t.leaks.iter().map(|l| (l.site, l.foraminal, l.volume_ml));
    let wall = t.posterior_wall_distance_mm.map(|d| (d * 10.0).round() / 10.0);
    line(t.expected_alert.name(), t.intravertebral_cement_ml, wall, leaks)
}

/// Analyse every injection scan of a case with the baseline and the previous scan; print result and truth.
fn analyse_sequence(case: &PhantomCase) -> Vec<(Report, ScanTruth)> {
    let mut analyzer = Analyzer::new(AlertPolicy::default(), None);
    let scans: Vec<Scan> = (0..case.scans.len()).map(|k| as_scan(case, k)).collect();
    let mut out = Vec::new();
    for k in 1..scans.len() {
        let inputs = AnalyzeInputs {
            scan: &scans[k],
            baseline: Some(&scans[0]),
            previous: (k > 1).then(|| &scans[k - 1]),
            hint: TargetHint::Auto,
        };
        let a = match analyzer.run(&inputs) {
            Ok(a) => a,
            Err(e) => panic!("seed {} scan {k}: {e}", case.spec.seed),
        };
        let t = case.scans[k].truth.clone();
        println!(
            "seed {} {:?} scan {k}: got  {}",
            case.spec.seed,
            case.summary.position,
            describe(&a.report)
        );
        println!("seed {} {:?} scan {k}: want {}", case.spec.seed, case.summary.position, truth_line(&t));
        let errors = schema_errors(&a.report);
        assert!(errors.is_empty(), "seed {} scan {k}: {errors:#?}", case.spec.seed);
        assert_eq!(a.labels.data.dim(), scans[k].volume.data.dim());
        out.push((a.report, t));
    }
    out
}

#[test]
fn canal_leak_stops_and_every_report_validates() {
    let mut missed = Vec::new();
    for seed in [12u64, 31] {
        let c = case(&spec(seed, PatientPosition::Hfp, vec![Site::Canal], 3));
        for (k, (report, truth)) in analyse_sequence(&c).into_iter().enumerate() {
            let has_canal = truth.leaks.iter().any(|l| l.site == Site::Canal || l.foraminal);
            if has_canal && report.alert.level != AlertLevel::Stop {
                missed.push(format!("seed {seed} scan {}: {}", k + 1, describe(&report)));
            }
        }
    }
    assert!(missed.is_empty(), "canal leaks without stop: {missed:#?}");
}

#[test]
fn needle_only_reports_no_leak() {
    // The baseline analysed against itself, with a thermocouple in the canal: metal, no cement.
    let mut s = spec(21, PatientPosition::Hfp, vec![], 1);
    s.thermocouple = Some(Some(ThermocouplePlace::Canal));
    let c = case(&s);
    let base = as_scan(&c, 0);
    let mut analyzer = Analyzer::new(AlertPolicy::default(), None);
    let a = analyzer
        .run(&AnalyzeInputs { scan: &base, baseline: Some(&base), previous: None, hint: TargetHint::Auto })
        .expect("analysis");
    println!("needle only: {}", describe(&a.report));
    assert!(schema_errors(&a.report).is_empty());
    assert!(a.report.vertebra.found);
    assert!(a.report.leaks.is_empty(), "{}", describe(&a.report));
    assert!(a.report.cement.total_volume_ml < 0.05, "{}", describe(&a.report));
    assert_eq!(a.report.alert.level, AlertLevel::Continue);
}

#[test]
fn prone_and_supine_give_the_same_answer() {
    let sites = vec![Site::Disc];
    let prone = analyse_sequence(&case(&spec(13, PatientPosition::Hfp, sites.clone(), 2)));
    let supine = analyse_sequence(&case(&spec(13, PatientPosition::Hfs, sites, 2)));
    assert_eq!(prone.len(), supine.len());
    for ((p, _), (s, _)) in prone.iter().zip(&supine) {
        let context = format!("prone {} vs supine {}", describe(p), describe(s));
        // Resampling the same anatomy on another grid moves a component's volume by a few voxels: each
        // site's leak volume must agree within that, whatever the alert made of it.
        for site in Site::ALL {
            let (a, b) = (site_volume(p, site), site_volume(s, site));
            assert!((a - b).abs() <= 0.02 + 0.25 * a.max(b), "{site:?} {a:.3} vs {b:.3} mL: {context}");
        }
        // The alert must agree too, unless a component sits in the band where a few voxels decide whether
        // it counts (0.02-0.05 mL): there the volumes above are what can be compared.
        let undecided =
            p.leaks.iter().chain(&s.leaks).any(|l| (NOISE_FLOOR_ML..CLEAR_LEAK_ML).contains(&l.volume_ml));
        if undecided {
            println!("alert not compared (a leak within {NOISE_FLOOR_ML}-{CLEAR_LEAK_ML} mL): {context}");
        } else {
            assert_eq!(answer(p), answer(s), "{context}");
        }
        let (vp, vs) = (p.cement.intravertebral_volume_ml, s.cement.intravertebral_volume_ml);
        assert!((vp - vs).abs() <= 0.1 * vp.max(vs) + 0.05, "intravertebral {vp} vs {vs}");
        if let (Some(a), Some(b)) = (p.cement.posterior_wall_distance_mm, s.cement.posterior_wall_distance_mm)
        {
            assert!((a - b).abs() <= 2.0, "wall distance {a} vs {b}");
        }
    }
}

const NOISE_FLOOR_ML: f64 = 0.02;
const CLEAR_LEAK_ML: f64 = 0.05;

fn site_volume(r: &Report, site: Site) -> f64 {
    r.leaks.iter().filter(|l| l.site == site).map(|l| l.volume_ml).sum()
}

/// The alert and the sites of the leaks above the noise floor, recomputed with the shipped policy.
fn answer(r: &Report) -> (AlertLevel, Vec<Site>) {
    let leaks: Vec<LeakObservation> =
        r.leaks.iter().filter(|l| l.volume_ml >= NOISE_FLOOR_ML).map(|l| l.observation()).collect();
    let mut sites: Vec<Site> = leaks.iter().map(|l| l.site).collect();
    sites.sort();
    sites.dedup();
    (decide(&AlertPolicy::default(), &leaks, r.cement.posterior_wall_distance_mm).level, sites)
}

/// Issue 5's specificity and site goals on held-out seeds of the other sites: no `stop` without a canal
/// leak, and every true leak of 0.05 mL or more found at its site. Fails today because the anatomy stage
/// places the posterior wall and canal inside the body on these phantoms (false canal leaks, wall distances
/// near 0 mm); run with `cargo test --test analyze_phantom -- --include-ignored` to measure.
#[test]
#[ignore = "anatomy on phantoms puts the canal inside the body: false canal stops (see DEVELOPERS.md)"]
fn no_stop_without_a_canal_leak_and_sites_found() {
    let mut problems = Vec::new();
    let cases = [
        (41u64, PatientPosition::Hfp, Site::Disc),
        (42, PatientPosition::Hfs, Site::Paraspinal),
        (43, PatientPosition::Hfp, Site::PosteriorVein),
    ];
    for (seed, position, site) in cases {
        let c = case(&spec(seed, position, vec![site], 3));
        for (k, (report, truth)) in analyse_sequence(&c).into_iter().enumerate() {
            let canal = truth.leaks.iter().any(|l| l.site == Site::Canal || l.foraminal);
            if !canal && report.alert.level == AlertLevel::Stop {
                problems.push(format!("seed {seed} scan {}: false stop: {}", k + 1, describe(&report)));
            }
            for l in truth.leaks.iter().filter(|l| l.volume_ml >= 0.05) {
                let found = report
                    .leaks
                    .iter()
                    .any(|r| r.site == l.site && r.centroid_lps_mm.distance(l.centroid_lps_mm) < 15.0);
                if !found {
                    problems.push(format!(
                        "seed {seed} scan {}: {} {:.3} mL not found",
                        k + 1,
                        l.site,
                        l.volume_ml
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}
