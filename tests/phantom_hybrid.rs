//! Hybrid mode on the real series of ../shared/data/real: truth volumes, leak regions, determinism, and the
//! real CT left untouched away from the inserted objects.

mod common;

use cementleak::leaks::Site;
use cementleak::load::{load_scan, LoadOptions};
use cementleak::phantom::hybrid::{generate_hybrid, HybridInputs, HybridSpec};
use cementleak::phantom::{PhantomCase, ThermocouplePlace};
use cementleak::volume::{labels, CtVolume};

fn trunk_inputs() -> Option<HybridInputs> {
    let d = common::shared_data("real/totalseg-trunk")?;
    let o = LoadOptions::default();
    Some(HybridInputs {
        ct: load_scan(&d.join("ct.nii.gz"), &o).ok()?,
        vertebra: load_scan(&d.join("vertebrae.nii.gz"), &o).ok()?.volume,
        body: Some(load_scan(&d.join("vertebral_bodies_and_discs.nii.gz"), &o).ok()?.volume),
    })
}

fn t12_inputs() -> Option<HybridInputs> {
    let d = common::shared_data("real/totalseg-t12")?;
    let o = LoadOptions::default();
    Some(HybridInputs {
        ct: load_scan(&d.join("dicom"), &o).ok()?,
        vertebra: load_scan(&d.join("segmentation.nii.gz"), &o).ok()?.volume,
        body: None,
    })
}

fn spec(seed: u64, label: u32, sites: &[Site]) -> HybridSpec {
    let mut s = HybridSpec::new(seed, label);
    s.leak_sites = Some(sites.to_vec());
    s.thermocouple = Some(None);
    // A coarser model keeps the test quick; the CLI default is 0.5 mm.
    s.model_mm = 0.8;
    s
}

fn check_truth_volumes(case: &PhantomCase) {
    for scan in &case.scans {
        let t = &scan.truth;
        let vml = scan.ct.geometry.spacing.voxel_volume_ml();
        assert!((t.voxel_volume_ml - vml).abs() < 1e-12);
        let intra = scan.labels.data.iter().filter(|&&l| l == labels::CEMENT).count();
        assert!((t.intravertebral_cement_ml - intra as f64 * vml).abs() < 1e-3, "step {}", t.step);
        for l in &t.leaks {
            let n = scan.labels.data.iter().filter(|&&v| v == l.site.label()).count();
            assert!(n >= l.voxels, "leak voxels {} > label count {n}", l.voxels);
            assert!((l.volume_ml - l.voxels as f64 * vml).abs() < 1e-3);
        }
        // Leak voxels of one site summed over leaks equal that label's voxel count.
        for site in [Site::Canal, Site::PosteriorVein, Site::Disc, Site::Paraspinal] {
            let n = scan.labels.data.iter().filter(|&&v| v == site.label()).count();
            let sum: usize = t.leaks.iter().filter(|l| l.site == site).map(|l| l.voxels).sum();
            assert_eq!(n, sum, "step {} site {site}", t.step);
        }
    }
}

/// Fraction of a site's leak voxels lying in (or next to, within one voxel) the site's anatomical region.
fn in_region_fraction(case: &PhantomCase, site: Site) -> Option<f64> {
    let scan = case.scans.last()?;
    let lab = &scan.labels.data;
    let ana = &scan.anatomy.data;
    let [ns, nr, nc] = scan.labels.shape();
    let (mut inside, mut n) = (0usize, 0usize);
    for ((z, r, c), &l) in lab.indexed_iter() {
        if l != site.label() {
            continue;
        }
        n += 1;
        let mut ok = false;
        for dz in -1i64..=1 {
            for dr in -1i64..=1 {
                for dc in -1i64..=1 {
                    let (zz, rr, cc) = (z as i64 + dz, r as i64 + dr, c as i64 + dc);
                    if zz < 0 || rr < 0 || cc < 0 || zz >= ns as i64 || rr >= nr as i64 || cc >= nc as i64 {
                        continue;
                    }
                    let a = ana[[zz as usize, rr as usize, cc as usize]];
                    ok |= match site {
                        Site::Canal | Site::PosteriorVein => a == labels::CANAL,
                        Site::Disc => a == labels::DISC,
                        Site::Paraspinal => a == labels::BACKGROUND,
                    };
                }
            }
        }
        // Paraspinal cement must not sit in the body, canal or disc at its own voxel.
        if site == Site::Paraspinal {
            ok &= !matches!(ana[[z, r, c]], labels::VERTEBRAL_BODY | labels::CANAL | labels::DISC);
        }
        inside += ok as usize;
    }
    (n > 0).then(|| inside as f64 / n as f64)
}

fn check_sites(case: &PhantomCase, name: &str) {
    let last = case.scans.last().expect("scans");
    for l in &last.truth.leaks {
        let f = in_region_fraction(case, l.site).unwrap_or(0.0);
        println!(
            "{name}: {} leak {:.3} mL, {:.0}% of voxels in or next to its region",
            l.site,
            l.volume_ml,
            f * 100.0
        );
        assert!(f >= 0.9, "{name}: {} leak only {:.2} in its region", l.site, f);
    }
}

/// Slices two or more slices away from any metal are the real CT bit for bit in the baseline.
fn check_untouched(case: &PhantomCase, real: &CtVolume) -> usize {
    let base = &case.scans[0];
    assert_eq!(base.ct.shape(), real.shape());
    let ns = real.shape()[0];
    let metal: Vec<bool> = (0..ns)
        .map(|z| base.labels.data.index_axis(ndarray::Axis(0), z).iter().any(|&l| l == labels::NEEDLE))
        .collect();
    assert!(metal.iter().any(|&m| m), "no needle in the baseline");
    let mut same = 0;
    for z in 0..ns {
        if (z.saturating_sub(2)..(z + 3).min(ns)).any(|s| metal[s]) {
            continue;
        }
        let a = base.ct.data.index_axis(ndarray::Axis(0), z);
        let b = real.data.index_axis(ndarray::Axis(0), z);
        assert!(a == b, "baseline slice {z} differs from the real CT away from metal");
        same += 1;
    }
    same
}

#[test]
fn trunk_l1_hybrid_truth_regions_untouched() {
    let Some(inp) = trunk_inputs() else { return };
    let s = spec(11, 31, &[Site::Canal, Site::Disc, Site::Paraspinal, Site::PosteriorVein]);
    let case = generate_hybrid(&inp, &s).expect("hybrid case");
    let last = &case.scans.last().expect("scans").truth;
    println!(
        "trunk L1: {} scans, intravertebral {:.2} mL, leaks {:?}",
        case.scans.len(),
        last.intravertebral_cement_ml,
        last.leaks.iter().map(|l| (l.site, l.volume_ml)).collect::<Vec<_>>()
    );
    assert!(case.summary.hybrid);
    assert!(last.intravertebral_cement_ml > 1.0);
    assert_eq!(last.leaks.len(), 4, "every requested site leaks");
    check_truth_volumes(&case);
    check_sites(&case, "trunk L1");
    let same = check_untouched(&case, &inp.ct.volume);
    println!("trunk L1: {same} of {} baseline slices identical to the real CT", inp.ct.volume.shape()[0]);
    assert!(same * 2 > inp.ct.volume.shape()[0]);
    // Cement is where the body is: every intravertebral voxel lies in the body (anatomy label).
    let scan = case.scans.last().expect("scans");
    let (mut inb, mut n) = (0, 0);
    for (l, a) in scan.labels.data.iter().zip(scan.anatomy.data.iter()) {
        if *l == labels::CEMENT {
            n += 1;
            inb += (*a == labels::VERTEBRAL_BODY) as usize;
        }
    }
    assert!(inb as f64 >= 0.9 * n as f64, "{inb} of {n} cement voxels in the body");
}

#[test]
fn t12_hybrid_body_anterior_of_canal() {
    let Some(inp) = t12_inputs() else { return };
    let mut s = spec(5, 32, &[Site::Canal, Site::Disc]);
    s.thermocouple = Some(Some(ThermocouplePlace::Canal));
    let case = generate_hybrid(&inp, &s).expect("hybrid case");
    let last = case.scans.last().expect("scans");
    println!(
        "t12: {} scans, intravertebral {:.2} mL, leaks {:?}",
        case.scans.len(),
        last.truth.intravertebral_cement_ml,
        last.truth.leaks.iter().map(|l| (l.site, l.volume_ml)).collect::<Vec<_>>()
    );
    check_truth_volumes(&case);
    check_sites(&case, "t12");
    // Body anterior of canal in patient coordinates: every body voxel's y (LPS, posterior +) is below the
    // canal's mean y.
    let g = last.anatomy.geometry;
    let mean_y = |code: u8| {
        let (mut s, mut n) = (0.0, 0usize);
        for ((z, r, c), &a) in last.anatomy.data.indexed_iter() {
            if a == code {
                s += g.voxel_to_lps([z, r, c]).y();
                n += 1;
            }
        }
        (n > 0).then(|| s / n as f64)
    };
    let (Some(body), Some(canal)) = (mean_y(labels::VERTEBRAL_BODY), mean_y(labels::CANAL)) else {
        panic!("body and canal labelled")
    };
    println!("t12: body mean y {body:.1} mm, canal mean y {canal:.1} mm (LPS)");
    assert!(body + 15.0 < canal);
}

#[test]
fn hybrid_is_deterministic_by_seed() {
    let Some(inp) = trunk_inputs() else { return };
    let mut s = spec(3, 30, &[Site::Disc]);
    s.steps = Some(2);
    let a = generate_hybrid(&inp, &s).expect("case a");
    let b = generate_hybrid(&inp, &s).expect("case b");
    assert_eq!(a.scans.len(), b.scans.len());
    for (x, y) in a.scans.iter().zip(&b.scans) {
        assert!(x.ct.data == y.ct.data);
        assert!(x.labels.data == y.labels.data);
        assert_eq!(x.truth, y.truth);
    }
    let dir = tempfile::tempdir().expect("tmp");
    cementleak::phantom::write_case(&a, &dir.path().join("a")).expect("write a");
    cementleak::phantom::write_case(&b, &dir.path().join("b")).expect("write b");
    for entry in walkdir::WalkDir::new(dir.path().join("a")) {
        let e = entry.expect("walk");
        if e.file_type().is_file() {
            let rel = e.path().strip_prefix(dir.path().join("a")).expect("prefix");
            let other = std::fs::read(dir.path().join("b").join(rel)).expect("same file in b");
            assert!(std::fs::read(e.path()).expect("read") == other, "{} differs", rel.display());
        }
    }
    s.seed = 4;
    let c = generate_hybrid(&inp, &s).expect("case c");
    assert!(c.scans.last().map(|x| &x.ct.data) != a.scans.last().map(|x| &x.ct.data));
}

#[test]
fn hybrid_refuses_unknown_label() {
    let Some(inp) = trunk_inputs() else { return };
    let s = spec(1, 45, &[]);
    let e = generate_hybrid(&inp, &s).expect_err("no such vertebra");
    println!("{e}");
}
