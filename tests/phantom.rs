//! Phantom generator: truth bookkeeping, leak placement per patient position, determinism, DICOM read-back.
//! Cases here are small (128 x 128, few slices, 1 mm model) so each test stays within seconds in debug.

use cementleak::leaks::Site;
use cementleak::load::{load_scan, LoadOptions};
use cementleak::phantom::{generate_case, write_case, Level, PhantomCase, PhantomSpec};
use cementleak::volume::{labels, PatientPosition};
use std::collections::BTreeMap;
use std::path::Path;

fn small(seed: u64, position: PatientPosition, sites: Vec<Site>) -> PhantomSpec {
    let mut s = PhantomSpec::from_seed(seed);
    s.position = position;
    s.matrix = 160;
    s.pixel_mm = Some(0.9);
    s.slices = Some(12);
    s.slice_thickness_mm = Some(2.5);
    s.model_mm = 1.0;
    s.leak_sites = Some(sites);
    s.steps = Some(2);
    s
}

fn count(v: &cementleak::volume::LabelVolume, code: u8) -> usize {
    v.data.iter().filter(|&&l| l == code).count()
}

fn check_volumes(case: &PhantomCase) {
    for scan in &case.scans {
        let t = &scan.truth;
        let vv = scan.labels.geometry.spacing.voxel_volume_ml();
        assert!((t.voxel_volume_ml - vv).abs() < 1e-12);
        let intra = count(&scan.labels, labels::CEMENT) as f64 * vv;
        assert!(
            (t.intravertebral_cement_ml - intra).abs() < 1e-3,
            "step {}: {} vs {}",
            t.step,
            t.intravertebral_cement_ml,
            intra
        );
        for site in Site::ALL {
            let truth: f64 = t.leaks.iter().filter(|l| l.site == site).map(|l| l.volume_ml).sum();
            let labelled = count(&scan.labels, site.label()) as f64 * vv;
            assert!(
                (truth - labelled).abs() < 1e-3,
                "step {} {site}: truth {truth} labels {labelled}",
                t.step
            );
        }
        for l in &t.leaks {
            assert!((l.volume_ml - l.voxels as f64 * vv).abs() < 1e-3);
        }
        // The anatomy map never holds cement or metal codes.
        assert!(scan.anatomy.data.iter().all(|&l| l <= labels::POSTERIOR_ELEMENTS));
        if t.step == 0 {
            assert_eq!(intra, 0.0, "baseline has no cement");
            assert!(t.leaks.is_empty());
            assert!(count(&scan.labels, labels::NEEDLE) > 0, "needle present at baseline");
        }
    }
    // Injected volume never decreases; intravertebral volume follows injected minus leaked (voxelisation
    // tolerance: a few percent plus a handful of voxels).
    for w in case.scans.windows(2) {
        assert!(w[1].truth.injected_ml >= w[0].truth.injected_ml);
    }
    for scan in case.scans.iter().skip(1) {
        let t = &scan.truth;
        let rel = (t.intravertebral_cement_ml - t.planned_intravertebral_ml).abs()
            / t.planned_intravertebral_ml.max(0.05);
        assert!(
            rel < 0.25,
            "step {}: labelled {} vs planned {}",
            t.step,
            t.intravertebral_cement_ml,
            t.planned_intravertebral_ml
        );
    }
}

#[test]
fn truth_volumes_equal_label_counts() {
    let case =
        generate_case(&small(11, PatientPosition::Hfp, vec![Site::Disc, Site::Paraspinal])).expect("case");
    assert!(case.scans.len() >= 2);
    check_volumes(&case);
    let last = &case.scans[case.scans.len() - 1].truth;
    assert!(!last.leaks.is_empty(), "requested leaks appear by the last scan");
}

/// The anatomy label nearest to an LPS point.
fn anatomy_at(case: &PhantomCase, k: usize, p: cementleak::volume::Lps) -> u8 {
    case.scans[k].anatomy.at_lps(p).copied().unwrap_or(255)
}

#[test]
fn leak_centroids_lie_in_their_site_region_for_every_position() {
    for (i, pos) in PatientPosition::ALL.into_iter().enumerate() {
        let mut spec =
            small(40 + i as u64, pos, vec![Site::PosteriorVein, Site::Disc, Site::Paraspinal, Site::Canal]);
        spec.level = Some(Level::L2);
        // Cover the body and both discs.
        spec.slices = Some(18);
        let case = generate_case(&spec).expect("case");
        check_volumes(&case);
        let k = case.scans.len() - 1;
        let scan = &case.scans[k];
        let body =
            cementleak::phantom::write::centroid(&scan.anatomy, &[labels::VERTEBRAL_BODY]).expect("body");
        let mut seen = BTreeMap::new();
        for l in &scan.truth.leaks {
            seen.insert(l.site, true);
            let c = l.centroid_lps_mm;
            let lab = anatomy_at(&case, k, c);
            match l.site {
                Site::Canal => {
                    assert_eq!(lab, labels::CANAL, "{pos} canal leak centroid {c} in label {lab}");
                    assert!(c.y() > body.y(), "{pos}: canal leak posterior of the body");
                }
                Site::PosteriorVein => {
                    assert!(
                        lab == labels::CANAL || lab == labels::VERTEBRAL_BODY,
                        "{pos} vein leak centroid in label {lab}"
                    );
                    assert!(c.y() > body.y(), "{pos}: vein leak at the posterior wall");
                    assert!((c.x() - body.x()).abs() < 8.0, "{pos}: vein leak near the midline");
                }
                Site::Disc => {
                    assert_eq!(lab, labels::DISC, "{pos} disc leak centroid {c} in label {lab}");
                    assert!((c.z() - body.z()).abs() > 5.0, "{pos}: disc leak above or below the body");
                }
                Site::Paraspinal => {
                    assert_eq!(lab, 0, "{pos} paraspinal leak centroid {c} in label {lab}");
                }
            }
            assert_eq!(
                scan.truth.expected_alert,
                cementleak::alert::AlertLevel::Stop,
                "canal leak means stop"
            );
        }
        assert_eq!(seen.len(), 4, "{pos}: all four sites present, got {:?}", scan.truth.leaks);
    }
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.expect("walk");
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(dir).expect("prefix").to_string_lossy().to_string();
            m.insert(rel, std::fs::read(e.path()).expect("read"));
        }
    }
    m
}

#[test]
fn same_seed_gives_byte_identical_output_and_loader_reads_geometry() {
    let spec = small(7, PatientPosition::Hfdl, vec![Site::Disc]);
    let a = tempfile::tempdir().expect("tmp");
    let b = tempfile::tempdir().expect("tmp");
    let case = generate_case(&spec).expect("case");
    write_case(&case, a.path()).expect("write a");
    let case2 = generate_case(&spec).expect("case again");
    write_case(&case2, b.path()).expect("write b");
    let fa = files(a.path());
    let fb = files(b.path());
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (k, v) in &fa {
        assert!(v == &fb[k], "{k} differs between runs");
    }
    assert!(fa.keys().any(|k| k.starts_with("scan_00_baseline/dicom/")));
    assert!(fa.contains_key("case.json"));
    // A different seed differs.
    let other = generate_case(&small(8, PatientPosition::Hfdl, vec![])).expect("case");
    assert_ne!(other.scans[0].ct.data, case.scans[0].ct.data);
}

#[test]
fn loader_reads_back_geometry_for_every_position() {
    for pos in PatientPosition::ALL {
        let mut spec = small(21, pos, vec![]);
        spec.steps = Some(1);
        let case = generate_case(&spec).expect("case");
        let dir = tempfile::tempdir().expect("tmp");
        write_case(&case, dir.path()).expect("write");
        for scan in &case.scans {
            let sd = dir.path().join(cementleak::phantom::write::scan_dir_name(scan)).join("dicom");
            let loaded = load_scan(&sd, &LoadOptions::default()).expect("load");
            let g = loaded.volume.geometry;
            let w = scan.ct.geometry;
            assert_eq!(loaded.volume.shape(), scan.ct.shape(), "{pos}");
            for a in 0..3 {
                assert!((g.axes[a] - w.axes[a]).norm() < 1e-6, "{pos} axis {a}");
            }
            assert!(g.origin.distance(w.origin) < 1e-3, "{pos} origin {} vs {}", g.origin, w.origin);
            assert!((g.spacing.slice - w.spacing.slice).abs() < 1e-4);
            assert!((g.spacing.row - w.spacing.row).abs() < 1e-6);
            assert_eq!(loaded.info.patient_position.as_deref(), Some(pos.dicom_code()));
            assert!(loaded.volume.data == scan.ct.data, "{pos}: HU round trip");
            // The needle tip is where truth says, in patient coordinates.
            let tip = scan.truth.needle_tips_lps_mm[0];
            let hu = loaded.volume.hu_at_lps(tip).unwrap_or(0.0);
            assert!(hu > 1500.0, "{pos}: needle tip {tip} reads {hu} HU");
        }
    }
}

#[test]
fn anatomy_is_the_same_patient_in_every_position() {
    // Same seed, no motion: the body centroid in LPS does not depend on the position.
    let mut cents = Vec::new();
    for pos in PatientPosition::ALL {
        let mut spec = small(5, pos, vec![]);
        spec.steps = Some(1);
        spec.motion = false;
        let case = generate_case(&spec).expect("case");
        let c = cementleak::phantom::write::centroid(&case.scans[0].anatomy, &[labels::VERTEBRAL_BODY])
            .expect("body");
        cents.push(c);
    }
    for c in &cents[1..] {
        assert!(c.distance(cents[0]) < 1.5, "{c} vs {}", cents[0]);
    }
}

#[test]
fn bad_spec_is_a_typed_error() {
    let mut s = small(1, PatientPosition::Hfp, vec![]);
    s.slice_thickness_mm = Some(-1.0);
    assert!(matches!(generate_case(&s), Err(cementleak::phantom::PhantomError::InvalidSpec(_))));
    let mut s = small(1, PatientPosition::Hfp, vec![]);
    s.matrix = 4;
    assert!(generate_case(&s).is_err());
}

/// Timing of a full-size 6-scan case; run with `cargo test --release --test phantom -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_six_scan_case() {
    let mut s = PhantomSpec::from_seed(2024);
    s.steps = Some(5);
    s.total_ml = Some(6.0);
    s.slices = Some(40);
    s.slice_thickness_mm = Some(1.25);
    s.leak_sites = Some(vec![Site::Disc]);
    let t = std::time::Instant::now();
    let case = generate_case(&s).expect("case");
    println!(
        "TIMING: {} scans of {:?} generated in {:.2} s",
        case.scans.len(),
        case.scans[0].ct.shape(),
        t.elapsed().as_secs_f64()
    );
}
