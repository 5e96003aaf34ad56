//! The README demo's case (`scripts/demo.sh`: phantom seed 7, L2, prone, a canal leak appearing in the
//! fifth injection scan) through `Analyzer`: the 0.07 mL foraminal canal leak lies between the two needles'
//! streaks, where the cement stage's clutter test once dismissed it (the scan said `reduce`, not `stop`).
//! Rules only (no model), so the test does not depend on ONNX Runtime being installed.
//! `cargo test --test analyze_demo`

use cementleak::alert::{AlertLevel, AlertPolicy};
use cementleak::analyze::{AnalyzeInputs, Analyzer};
use cementleak::anatomy::TargetHint;
use cementleak::eval::as_scan;
use cementleak::leaks::Site;
use cementleak::phantom::{generate_case, Level, PhantomSpec};
use cementleak::volume::PatientPosition;

#[test]
fn demo_foraminal_canal_leak_beside_the_needles_stops() {
    let mut spec = PhantomSpec::from_seed(7);
    spec.level = Some(Level::L2);
    spec.position = PatientPosition::Hfp;
    spec.leak_sites = Some(vec![Site::Canal]);
    spec.steps = Some(5);
    let case = match generate_case(&spec) {
        Ok(c) => c,
        Err(e) => panic!("demo phantom: {e}"),
    };
    let last = case.scans.len() - 1;
    let truth = &case.scans[last].truth;
    let leak =
        truth.leaks.iter().find(|l| l.site == Site::Canal).expect("the demo's last scan has a canal leak");
    let pos = case.summary.position;
    let scan = |k: usize| as_scan(&case.scans[k].ct, &format!("demo/scan{k}"), pos);
    let (now, base, prev) = (scan(last), scan(0), scan(last - 1));
    let mut analyzer = Analyzer::new(AlertPolicy::default(), None);
    let a = analyzer
        .run(&AnalyzeInputs {
            scan: &now,
            baseline: Some(&base),
            previous: Some(&prev),
            hint: TargetHint::Auto,
        })
        .expect("analysis runs");
    let r = &a.report;
    println!(
        "demo scan {last}: {:?}, leaks {:?}; truth {:?} {:.3} mL at {}",
        r.alert.level,
        r.leaks.iter().map(|l| (l.site, l.volume_ml, l.centroid_lps_mm)).collect::<Vec<_>>(),
        truth.expected_alert,
        leak.volume_ml,
        leak.centroid_lps_mm
    );
    assert_eq!(r.alert.level, AlertLevel::Stop, "the canal leak must stop the procedure");
    assert!(
        a.leaks
            .iter()
            .any(|l| l.verdict.site == Site::Canal
                && l.component.centroid.distance(leak.centroid_lps_mm) < 6.0),
        "no canal leak reported within 6 mm of the true one"
    );
}
