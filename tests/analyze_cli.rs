//! `cementleak analyze` as a process: outputs on a phantom written to disk (report, masks with the scan's
//! affine, key images) and exit status 2 with no report for unusable input.

use cementleak::load::{load_scan, LoadOptions};
use cementleak::phantom::{generate_case, PhantomSpec};
use cementleak::volume::{labels, PatientPosition};
use cementleak::write::nifti::write_ct_nifti;
use std::path::Path;
use std::process::{Command, Output};

fn cementleak(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cementleak")).args(args).output().expect("cementleak runs")
}

fn schema_errors(report: &serde_json::Value) -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema/report.schema.json"))
        .expect("schema readable");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    match jsonschema::validator_for(&schema) {
        Ok(v) => v.iter_errors(report).map(|e| format!("{e} at {}", e.instance_path)).collect(),
        Err(e) => vec![format!("schema does not compile: {e}")],
    }
}

#[test]
fn outputs_on_a_phantom_sequence() {
    let mut spec = PhantomSpec::from_seed(12);
    // Supine, so the scan's storage is not the default prone one the masks might accidentally share.
    spec.position = PatientPosition::Hfs;
    spec.matrix = 160;
    spec.pixel_mm = Some(0.9);
    spec.slices = Some(20);
    spec.slice_thickness_mm = Some(2.5);
    spec.model_mm = 1.0;
    spec.leak_sites = Some(vec![cementleak::leaks::Site::Canal]);
    spec.steps = Some(2);
    let case = generate_case(&spec).expect("phantom");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = |k: usize| dir.path().join(format!("scan_{k}.nii.gz"));
    for (k, s) in case.scans.iter().enumerate() {
        write_ct_nifti(&s.ct, &path(k)).expect("write scan");
    }
    let out = dir.path().join("out");
    // Key images of an earlier run with more leaks must not sit beside this run's report.
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::write(out.join("key_leak9_paraspinal_axial.png"), b"stale").expect("stale image");
    std::fs::write(out.join("notes.txt"), b"the user's").expect("user file");
    let p = |x: &Path| x.to_string_lossy().into_owned();
    let o = cementleak(&[
        "analyze",
        "--scan",
        &p(&path(2)),
        "--baseline",
        &p(&path(0)),
        "--previous",
        &p(&path(1)),
        "--out",
        &p(&out),
        "--masks",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "exit {:?}: {stderr}", o.status.code());
    println!("{}", String::from_utf8_lossy(&o.stdout));

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json"))
            .expect("JSON");
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    assert!(report["input"]["previous"].is_object() && report["input"]["baseline"].is_object());
    for key in ["load", "anatomy", "cement", "leaks", "total"] {
        assert!(report["timing_ms"][key].as_f64().is_some_and(|v| v >= 0.0), "timing {key}");
    }
    assert!(report["timing_ms"]["total"].as_f64() >= report["timing_ms"]["analysis"].as_f64());

    // Masks: on the scan's grid with its affine, holding the spec's codes.
    let scan = load_scan(&path(2), &LoadOptions::default()).expect("scan");
    let masks = load_scan(&out.join("labels.nii.gz"), &LoadOptions::default()).expect("labels.nii.gz");
    assert_eq!(masks.volume.shape(), scan.volume.shape());
    let (a, b) = (masks.volume.geometry, scan.volume.geometry);
    assert!(a.origin.distance(b.origin) < 1e-3, "origin {:?} vs {:?}", a.origin, b.origin);
    for k in 0..3 {
        assert!((a.axes[k] - b.axes[k]).norm() < 1e-4, "axis {k}");
    }
    assert!((a.spacing.slice - b.spacing.slice).abs() < 1e-4 && (a.spacing.row - b.spacing.row).abs() < 1e-4);
    let count = |code: u8| masks.volume.data.iter().filter(|v| **v == i16::from(code)).count();
    assert!(count(labels::VERTEBRAL_BODY) > 1000, "body labelled");
    assert!(count(labels::CEMENT) > 100, "cement labelled");
    assert!(masks
        .volume
        .data
        .iter()
        .all(|v| [0u8, 1, 2, 3, 4, 10, 11, 12, 13, 14, 20].contains(&(*v as u8))));
    // The body label sits where the phantom's body is (patient space, not array order).
    let truth = &case.scans[2].anatomy.data;
    let both = ndarray::Zip::from(&masks.volume.data)
        .and(truth)
        .fold(0usize, |n, &m, &t| n + usize::from(m == 1 && t == labels::VERTEBRAL_BODY));
    assert!(both * 2 > count(labels::VERTEBRAL_BODY), "labelled body mostly inside the true body");

    let pngs: Vec<String> = std::fs::read_dir(&out)
        .expect("out")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("key_") && n.ends_with(".png"))
        .collect();
    assert!(
        pngs.iter().any(|n| n.contains("axial")) && pngs.iter().any(|n| n.contains("sagittal")),
        "{pngs:?}"
    );
    let leaks = report["leaks"].as_array().map_or(0, |l| l.len());
    assert_eq!(pngs.len(), 3 + 2 * leaks, "{pngs:?}");
    for name in &pngs {
        let img = image::open(out.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!((img.width(), img.height()), (600, 600), "{name}");
    }
    let left: Vec<String> = std::fs::read_dir(&out)
        .expect("out")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
    assert!(out.join("notes.txt").is_file(), "only our own stale outputs are removed");
}

#[test]
fn unusable_input_exits_2_without_a_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let junk = dir.path().join("junk");
    std::fs::create_dir_all(&junk).expect("mkdir");
    std::fs::write(junk.join("a.dcm"), b"this is not a DICOM file").expect("write");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    // A report from an earlier run must not survive a refused input.
    std::fs::write(out.join("report.json"), b"{}").expect("stale");
    let p = |x: &Path| x.to_string_lossy().into_owned();
    let missing = dir.path().join("missing");
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, "reduce_within_mm = -3\n").expect("policy");
    let cases: Vec<Vec<String>> = vec![
        vec!["--scan".into(), p(&junk)],
        vec!["--scan".into(), p(&missing)],
        vec!["--scan".into(), p(&junk), "--baseline".into(), p(&missing)],
        vec!["--scan".into(), p(&junk), "--policy".into(), p(&policy)],
    ];
    for args in cases {
        let mut full = vec!["analyze".to_string(), "--out".into(), p(&out)];
        full.extend(args.iter().cloned());
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let o = cementleak(&refs);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one error line, got {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out.join("report.json").exists(), "{args:?}: report.json left behind");
    }
}

/// With a model (`$CEMENTLEAK_MODEL`, else the project's `models/leak_site.onnx`) the report names it and
/// every leak carries the model's probabilities; skipped when no model or no ONNX Runtime is installed.
#[test]
fn model_is_named_in_the_report() {
    let model = std::env::var_os("CEMENTLEAK_MODEL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models/leak_site.onnx"));
    if !model.is_file() {
        eprintln!("SKIP: no leak-site model at {}", model.display());
        return;
    }
    if let Err(e) = cementleak::leaks::model::LeakModel::load(&model) {
        eprintln!("SKIP: the model does not load here ({e})");
        return;
    }
    let mut spec = PhantomSpec::from_seed(31);
    spec.matrix = 160;
    spec.pixel_mm = Some(0.9);
    spec.slices = Some(20);
    spec.slice_thickness_mm = Some(2.5);
    spec.model_mm = 1.0;
    spec.leak_sites = Some(vec![cementleak::leaks::Site::Paraspinal]);
    spec.steps = Some(1);
    let case = generate_case(&spec).expect("phantom");
    let dir = tempfile::tempdir().expect("temp dir");
    let p = |x: &Path| x.to_string_lossy().into_owned();
    for (k, s) in case.scans.iter().enumerate() {
        write_ct_nifti(&s.ct, &dir.path().join(format!("scan_{k}.nii.gz"))).expect("write scan");
    }
    let out = dir.path().join("out");
    let o = cementleak(&[
        "analyze",
        "--scan",
        &p(&dir.path().join("scan_1.nii.gz")),
        "--baseline",
        &p(&dir.path().join("scan_0.nii.gz")),
        "--out",
        &p(&out),
        "--model",
        &p(&model),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json"))
            .expect("JSON");
    assert_eq!(schema_errors(&report), Vec::<String>::new());
    assert_eq!(report["generator"]["model"]["sha256"].as_str().map(str::len), Some(64));
    for leak in report["leaks"].as_array().into_iter().flatten() {
        let probs = leak["model_probabilities"].as_object().expect("probabilities");
        let sum: f64 = probs.values().filter_map(|v| v.as_f64()).sum();
        assert!((sum - 1.0).abs() < 0.01, "{probs:?}");
        assert!(leak["rule_site"].is_string() && leak["model_site"].is_string());
    }
}
