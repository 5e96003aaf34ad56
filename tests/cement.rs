//! Stage 3 on synthetic vertebrae: cement volumes, leaks, needle and wire removal, motion, patient position.

mod cement_support;

use cement_support::{pose, render, standard_grid, Rendered, Scene, Solid, NEEDLE, WIRE};
use cementleak::cement::{detect, CementError, CementFindings, CementInputs, CementParams, RigidTransform};
use cementleak::volume::{Lps, PatientPosition};

const N: usize = 160;
const CENTRE: Lps = Lps([12.0, -30.0, 410.0]);

fn still() -> RigidTransform {
    pose(CENTRE, [0.0, 0.0, 1.0], 0.0, [0.0; 3])
}

/// 1 mm and 1 degree about an oblique axis: the motion between two scans of a patient lying still.
fn moved() -> RigidTransform {
    pose(CENTRE, [0.3, -0.5, 1.0], 1.0, [0.6, -0.5, 0.62])
}

fn scan(scene: &Scene, position: PatientPosition, placement: &RigidTransform, seed: u64) -> Rendered {
    let (g, dims) = standard_grid(position, N, CENTRE);
    render(scene, g, dims, placement, seed)
}

fn run(s: &Rendered, base: Option<&Rendered>, prev: Option<&Rendered>) -> CementFindings {
    let inputs = CementInputs {
        scan: &s.ct,
        baseline: base.map(|b| &b.ct),
        previous: prev.map(|p| &p.ct),
        body: &s.body,
        canal: None,
    };
    match detect(&inputs, &CementParams::default()) {
        Ok(f) => f,
        Err(e) => panic!("detection failed: {e}"),
    }
}

fn rel_err(got: f64, truth: f64) -> f64 {
    (got - truth).abs() / truth
}

/// Every true leak is found once (centroid within 1 mm, volume within 10%), and nothing else.
fn check_leaks(f: &CementFindings, truth: &cement_support::Truth, which: &[usize]) {
    for &k in which {
        let (tv, tc) = (truth.leak_ml[k], truth.leak_centroid[k]);
        let found = f.leaks.iter().find(|l| l.centroid.distance(tc) < 5.0);
        let Some(l) = found else {
            panic!("leak {k} ({tv:.3} mL at {tc}) not found; leaks: {:?}", summary(f))
        };
        println!(
            "leak {k}: truth {tv:.4} mL, found {:.4} mL ({:+.1}%), centroid off by {:.2} mm",
            l.volume_ml,
            100.0 * (l.volume_ml - tv) / tv,
            l.centroid.distance(tc)
        );
        assert!(rel_err(l.volume_ml, tv) <= 0.10, "leak {k}: {:.4} mL vs truth {tv:.4}", l.volume_ml);
        assert!(l.centroid.distance(tc) <= 1.0, "leak {k} centroid {} vs {tc}", l.centroid);
    }
    assert_eq!(f.leaks.len(), which.len(), "unexpected leaks: {:?}", summary(f));
}

fn summary(f: &CementFindings) -> Vec<(f64, String)> {
    f.leaks.iter().map(|l| (l.volume_ml, l.centroid.to_string())).collect()
}

fn lps_of(s: &Rendered, v: [usize; 3]) -> Lps {
    s.ct.geometry.voxel_to_lps(v)
}

/// Voxels of `mask` whose centre lies within `r` mm of `solid` placed by `placement`.
fn count_near(mask: &cementleak::volume::Mask, solid: &Solid, placement: &RigidTransform, r: f64) -> usize {
    let inv = placement.inverse();
    mask.data
        .indexed_iter()
        .filter(|(_, v)| **v)
        .filter(|((z, y, x), _)| solid.sdf(inv.apply(mask.geometry.voxel_to_lps([*z, *y, *x])).0) <= r)
        .count()
}

#[test]
fn registration_recovers_1mm_1deg_and_motion_makes_no_false_cement() {
    let base = scan(&Scene::baseline(), PatientPosition::Hfp, &still(), 1);
    let now = scan(&Scene::baseline(), PatientPosition::Hfp, &moved(), 2);
    let f = run(&now, Some(&base), None);
    let t = f.baseline_registration.unwrap_or_default();
    // The true map from the current scan to the baseline: back to anatomy, then to where it was.
    let truth = still().after(&moved().inverse());
    let err = truth.inverse().after(&t);
    println!(
        "registration error: {:.3} mm at the body centre, {:.3} degrees (motion {:.2} mm, {:.2} deg)",
        err.displacement_at(CENTRE),
        err.rotation_deg(),
        truth.displacement_at(CENTRE),
        truth.rotation_deg()
    );
    assert!(truth.displacement_at(CENTRE) > 0.9 && truth.rotation_deg() > 0.99);
    assert!(err.displacement_at(CENTRE) <= 0.2);
    assert!(err.rotation_deg() <= 0.2);
    // Corners of the body move less than 0.2 mm off too.
    for c in [[20.0, 20.0, 12.0], [-20.0, -20.0, -12.0], [0.0, 40.0, 0.0]] {
        let p = moved().apply(Lps(c));
        assert!(err.displacement_at(p) <= 0.25, "error {:.3} mm at {p}", err.displacement_at(p));
    }
    // Needle-only scan, moved: no cement anywhere (bone edges, needle, streaks, lesions all pre-existing).
    println!("needle only, moved: total {:.4} mL, leaks {:?}", f.total_ml, summary(&f));
    assert!(f.total_ml < 0.01, "false cement {:.4} mL", f.total_ml);
    assert!(f.leaks.is_empty());
    assert!(f.warnings.is_empty(), "{:?}", f.warnings);
    // The needle is found as metal.
    assert!(count_near(&f.metal, &NEEDLE, &moved(), 0.0) > 50);
}

#[test]
fn injected_scene_with_baseline_and_motion() {
    let base = scan(&Scene::baseline(), PatientPosition::Hfp, &still(), 3);
    let now = scan(&Scene::injected(), PatientPosition::Hfp, &moved(), 4);
    let f = run(&now, Some(&base), None);
    let t = &now.truth;
    println!(
        "intravertebral: truth {:.3} mL, found {:.3} mL ({:+.1}%)",
        t.intravertebral_ml,
        f.intravertebral_ml,
        100.0 * (f.intravertebral_ml - t.intravertebral_ml) / t.intravertebral_ml
    );
    assert!(rel_err(f.intravertebral_ml, t.intravertebral_ml) <= 0.10);
    // All four leaks, including the 0.05 mL blob and the 2 mm vein (the rendering holds their true volumes).
    let solids = Scene::injected().leaks;
    println!(
        "rendered leak volumes {:?}, analytic {:?}",
        t.leak_ml,
        solids.iter().map(|s| s.volume_ml()).collect::<Vec<_>>()
    );
    assert!(rel_err(t.leak_ml[2], 0.05) < 0.03);
    assert!(rel_err(t.leak_ml[1], solids[1].volume_ml()) < 0.05);
    check_leaks(&f, t, &[0, 1, 2, 3]);
    let disc = f.leaks.iter().find(|l| l.centroid.distance(t.leak_centroid[0]) < 5.0);
    assert!(disc.is_some_and(|l| l.touches_body));
    let blob = f.leaks.iter().find(|l| l.centroid.distance(t.leak_centroid[2]) < 5.0);
    assert!(blob.is_some_and(|l| !l.touches_body && l.previous_ml.is_none()));
    // Needle and wire are metal, not cement; the cement at the needle tip stays.
    assert!(count_near(&f.metal, &NEEDLE, &moved(), 0.0) > 50);
    assert!(count_near(&f.cement, &NEEDLE, &moved(), -0.2) == 0);
    assert_eq!(count_near(&f.cement, &WIRE, &moved(), 2.0), 0);
    // Blastic lesion and bone island are not cement.
    let blastic = Solid::Sphere { c: [-11.0, 4.0, 5.0], r: 5.0 };
    let island = Solid::Sphere { c: [11.0, -9.0, -6.0], r: 2.5 };
    assert_eq!(count_near(&f.cement, &blastic, &moved(), 0.0), 0);
    assert_eq!(count_near(&f.cement, &island, &moved(), 0.0), 0);
    let total_truth = t.intravertebral_ml + t.leak_ml.iter().sum::<f64>();
    assert!(rel_err(f.total_ml, total_truth) <= 0.10);
}

#[test]
fn previous_scan_gives_new_cement_and_leak_growth() {
    let base = scan(&Scene::baseline(), PatientPosition::Hfp, &still(), 5);
    let prev = scan(
        &Scene::earlier(),
        PatientPosition::Hfp,
        &pose(CENTRE, [1.0, 0.2, 0.0], 0.7, [-0.4, 0.3, 0.5]),
        6,
    );
    let now = scan(&Scene::injected(), PatientPosition::Hfp, &moved(), 7);
    let f = run(&now, Some(&base), Some(&prev));
    let total = |t: &cement_support::Truth| t.intravertebral_ml + t.leak_ml.iter().sum::<f64>();
    let new_truth = total(&now.truth) - total(&prev.truth);
    let new = f.new_since_previous_ml.unwrap_or(f64::NAN);
    println!("new since previous: truth {new_truth:.3} mL, found {new:.3} mL");
    assert!(rel_err(new, new_truth) <= 0.10);
    assert!(f.previous_registration.is_some());
    // The disc leak existed and grew; the others are new.
    let disc = f.leaks.iter().find(|l| l.centroid.distance(now.truth.leak_centroid[0]) < 5.0);
    let Some(disc) = disc else { panic!("disc leak not found: {:?}", summary(&f)) };
    let before = disc.previous_ml.unwrap_or(f64::NAN);
    println!(
        "disc leak: previous truth {:.3} mL, found {before:.3} mL; now {:.3} mL",
        prev.truth.leak_ml[0], disc.volume_ml
    );
    assert!(rel_err(before, prev.truth.leak_ml[0]) <= 0.15);
    for l in &f.leaks {
        if l.id != disc.id {
            assert!(
                l.previous_ml.is_some_and(|v| v < 0.005),
                "leak {} had {:?} mL before",
                l.id,
                l.previous_ml
            );
        }
    }
}

#[test]
fn needle_only_scan_without_baseline_has_no_cement() {
    let mut scene = Scene::baseline();
    scene.wire = true;
    let now = scan(&scene, PatientPosition::Hfp, &still(), 8);
    let f = run(&now, None, None);
    println!("needle + wire, no baseline: total {:.4} mL, leaks {:?}", f.total_ml, summary(&f));
    assert!(f.total_ml < 0.01);
    assert!(f.leaks.is_empty());
    assert!(f.warnings.iter().any(|w| w.contains("no baseline")));
    assert!(count_near(&f.metal, &NEEDLE, &still(), 0.0) > 50);
    assert!(count_near(&f.metal, &WIRE, &still(), 0.0) > 20);
}

#[test]
fn without_baseline_cement_is_still_found_and_wire_is_not_a_leak() {
    let mut scene = Scene::injected();
    scene.wire = true;
    let now = scan(&scene, PatientPosition::Hfp, &still(), 9);
    let f = run(&now, None, None);
    let t = &now.truth;
    println!(
        "no baseline: intravertebral truth {:.3} mL, found {:.3} mL; leaks {:?}",
        t.intravertebral_ml,
        f.intravertebral_ml,
        summary(&f)
    );
    assert!(rel_err(f.intravertebral_ml, t.intravertebral_ml) <= 0.10);
    assert_eq!(count_near(&f.cement, &WIRE, &still(), 2.0), 0);
    // The blob-shaped leaks are dense enough to be found on density alone; every leak reported is real.
    for l in &f.leaks {
        assert!(
            t.leak_centroid.iter().any(|c| c.distance(l.centroid) <= 1.0),
            "false leak at {}",
            l.centroid
        );
    }
    for k in [0, 2] {
        assert!(f.leaks.iter().any(|l| l.centroid.distance(t.leak_centroid[k]) <= 1.0), "leak {k} missed");
    }
}

/// Without a baseline an unsaturated wire reads like cement; it is told apart by its shape (thin and
/// straight), while a curved vein of cement outside the body and a small round leak are kept.
#[test]
fn without_baseline_an_unsaturated_wire_is_removed_and_curved_and_round_leaks_are_kept() {
    let mut scene = Scene::baseline();
    scene.wire = true;
    scene.wire_hu = 2600.0;
    scene.intravertebral = vec![Solid::Sphere { c: [0.0, -8.0, 0.0], r: 8.0 }];
    // A paraspinal vein of cement bending through 90 degrees (radius 10 mm), 2.4 mm across.
    let arc: Vec<[f64; 3]> = (0..=6)
        .map(|k| {
            let a = k as f64 / 6.0 * std::f64::consts::FRAC_PI_2;
            [-34.0 + 10.0 * a.cos(), -14.0 + 10.0 * a.sin(), 6.0]
        })
        .collect();
    let vein: Vec<Solid> = arc.windows(2).map(|w| Solid::Capsule { a: w[0], b: w[1], r: 1.2 }).collect();
    let blob = Solid::Sphere { c: [-30.0, 5.0, -4.0], r: 2.285 };
    scene.leaks = vein.iter().copied().chain([blob]).collect();
    let now = scan(&scene, PatientPosition::Hfp, &still(), 21);
    let max_wire = now
        .ct
        .data
        .indexed_iter()
        .filter(|((z, y, x), _)| WIRE.sdf(still().inverse().apply(lps_of(&now, [*z, *y, *x])).0) <= 0.0)
        .map(|(_, v)| f32::from(*v))
        .fold(f32::MIN, f32::max);
    let f = run(&now, None, None);
    let t = &now.truth;
    let vein_ml: f64 = t.leak_ml[..vein.len()].iter().sum();
    println!(
        "unsaturated wire (max {max_wire:.0} HU) without baseline: leaks {:?}; vein truth {vein_ml:.3} mL, blob truth {:.3} mL",
        summary(&f),
        t.leak_ml[vein.len()]
    );
    assert!(max_wire < 2800.0 && max_wire > 1500.0, "the wire must read like cement, not saturate");
    assert_eq!(count_near(&f.cement, &WIRE, &still(), 1.0), 0, "wire voxels called cement");
    let on_vein = |l: &&cementleak::cement::CementComponent| {
        l.voxels
            .iter()
            .any(|v| vein.iter().any(|s| s.sdf(still().inverse().apply(lps_of(&now, *v)).0) <= 0.5))
    };
    let found_vein: f64 = f.leaks.iter().filter(on_vein).map(|l| l.volume_ml).sum();
    assert!(rel_err(found_vein, vein_ml) <= 0.25, "vein: found {found_vein:.3} mL of {vein_ml:.3}");
    let tc = t.leak_centroid[vein.len()];
    assert!(f.leaks.iter().any(|l| l.centroid.distance(tc) <= 1.5), "round leak missed");
    assert!(
        f.leaks.iter().all(|l| on_vein(&l) || l.centroid.distance(tc) <= 1.5),
        "false leaks: {:?}",
        summary(&f)
    );
}

#[test]
fn patient_position_does_not_change_the_result() {
    let mut scene = Scene::injected();
    scene.noise_hu = 0.0;
    let mut base_scene = Scene::baseline();
    base_scene.noise_hu = 0.0;
    let mut results = Vec::new();
    for position in [PatientPosition::Hfs, PatientPosition::Hfp, PatientPosition::Hfdl] {
        let base = scan(&base_scene, position, &still(), 0);
        let now = scan(&scene, position, &moved(), 0);
        let f = run(&now, Some(&base), None);
        println!("{position}: intravertebral {:.4} mL, leaks {:?}", f.intravertebral_ml, summary(&f));
        results.push(f);
    }
    let r0 = &results[0];
    for r in &results[1..] {
        assert!((r.intravertebral_ml - r0.intravertebral_ml).abs() <= 0.005 * r0.intravertebral_ml);
        assert_eq!(r.leaks.len(), r0.leaks.len());
        for (a, b) in r.leaks.iter().zip(&r0.leaks) {
            assert!(a.centroid.distance(b.centroid) < 0.05, "{} vs {}", a.centroid, b.centroid);
            assert!((a.volume_ml - b.volume_ml).abs() <= 0.01 * b.volume_ml + 1e-4);
        }
    }
}

#[test]
fn baseline_on_another_grid_is_compared_by_position() {
    // Baseline with a different field of view, pixel size and slice count, supine; scan prone.
    let g = cement_support::grid(
        PatientPosition::Hfs,
        [36, 150, 140],
        [2.5, 0.78, 0.78],
        Lps([15.0, -22.0, 405.0]),
    );
    let base = render(&Scene::baseline(), g, [36, 150, 140], &still(), 10);
    let now = scan(&Scene::injected(), PatientPosition::Hfp, &moved(), 11);
    let f = run(&now, Some(&base), None);
    let t = &now.truth;
    println!(
        "other grid: intravertebral truth {:.3}, found {:.3}; leaks {:?}",
        t.intravertebral_ml,
        f.intravertebral_ml,
        summary(&f)
    );
    assert!(rel_err(f.intravertebral_ml, t.intravertebral_ml) <= 0.10);
    check_leaks(&f, t, &[0, 1, 2, 3]);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let now = scan(&Scene::baseline(), PatientPosition::Hfs, &still(), 12);
    let empty = now.body.same_grid(false);
    let r = detect(
        &CementInputs { scan: &now.ct, baseline: None, previous: None, body: &empty, canal: None },
        &CementParams::default(),
    );
    assert!(matches!(r, Err(CementError::EmptyBody)));
    let small = cementleak::volume::Volume::new(ndarray::Array3::from_elem((2, 2, 2), true), now.ct.geometry);
    let r = detect(
        &CementInputs { scan: &now.ct, baseline: None, previous: None, body: &small, canal: None },
        &CementParams::default(),
    );
    assert!(matches!(r, Err(CementError::MaskShape { .. })));
    let params = CementParams { grow_hu: 5000.0, ..CementParams::default() };
    let r = detect(
        &CementInputs { scan: &now.ct, baseline: None, previous: None, body: &now.body, canal: None },
        &params,
    );
    assert!(matches!(r, Err(CementError::BadParams(_))));
}

#[test]
fn baseline_far_away_falls_back_with_a_warning() {
    // A "baseline" of another body region: registration cannot work; detection must not panic.
    let g = cement_support::grid(PatientPosition::Hfs, [10, 64, 64], [2.5, 0.7, 0.7], Lps([0.0, 0.0, 900.0]));
    let base = render(&Scene::baseline(), g, [10, 64, 64], &still(), 13);
    let now = scan(&Scene::injected(), PatientPosition::Hfs, &still(), 14);
    let f = run(&now, Some(&base), None);
    println!("warnings: {:?}", f.warnings);
    assert!(f.warnings.iter().any(|w| w.contains("registration failed")));
    assert!(f.warnings.iter().any(|w| w.contains("covers only")));
    assert!(f.intravertebral_ml > 0.5 * now.truth.intravertebral_ml);
    let _ = lps_of(&now, [0, 0, 0]);
}
