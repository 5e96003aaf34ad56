//! Anatomy on synthetic injection scans (held-out seeds never used while developing the segmentation):
//! all positions, seeded lesion types, needle and cement present (last scan of each case).

mod anatomy_support;

use anatomy_support::dice;
use cementleak::anatomy::{segment, TargetHint};
use cementleak::phantom::{generate_case, PhantomSpec};
use cementleak::volume::{labels, PatientPosition};

/// Seeds reserved for evaluation (9100..9112 were used while choosing the wall cortex margin, so they are
/// no longer held out).
const HELD_OUT: std::ops::Range<u64> = 9200..9212;

struct Stats {
    body: Vec<f64>,
    canal: Vec<f64>,
    wall_right: usize,
    wall_judged: usize,
    wall_offset: Vec<f64>,
    n: usize,
}

/// Body Dice against the phantom's truth. The truth labels cement inside the body (10) and metal (20)
/// over the body they fill; the anatomy stage labels the body with whatever fills it. So the truth body is
/// body plus intravertebral cement, and metal voxels, which the truth does not place inside or outside the
/// body, count on neither side.
fn body_dice(ours: &cementleak::volume::LabelVolume, truth: &cementleak::volume::LabelVolume) -> f64 {
    let metal = truth.data.mapv(|l| l == labels::NEEDLE);
    let ours =
        ndarray::Zip::from(&ours.data).and(&metal).map_collect(|&l, &m| l == labels::VERTEBRAL_BODY && !m);
    let truth = truth.data.mapv(|l| l == labels::VERTEBRAL_BODY || l == labels::CEMENT);
    dice(&ours, &truth)
}

/// Where the truth body's posterior wall lies relative to ours along our wall normal (mm, positive =
/// behind ours): the 98th percentile of the truth body's voxels within 6 mm of the midline.
fn wall_offset_mm(a: &cementleak::anatomy::Anatomy, truth: &cementleak::volume::LabelVolume) -> f64 {
    let w = &a.posterior_wall;
    let lateral = a.spine_axis.cross(w.normal);
    let mut d: Vec<f64> = truth
        .data
        .indexed_iter()
        .filter(|(_, &l)| l == labels::VERTEBRAL_BODY)
        .map(|((z, y, x), _)| truth.geometry.voxel_to_lps([z, y, x]) - w.point)
        .filter(|v| v.dot(lateral).abs() < 6.0)
        .map(|v| v.dot(w.normal))
        .collect();
    d.sort_by(f64::total_cmp);
    d.get(((d.len().max(1) - 1) as f64 * 0.98) as usize).copied().unwrap_or(f64::NAN)
}

/// The seeds to evaluate: the held-out ones, or `$ANATOMY_SEEDS` ("300..312") while developing.
fn seeds() -> std::ops::Range<u64> {
    std::env::var("ANATOMY_SEEDS")
        .ok()
        .and_then(|s| {
            let (a, b) = s.split_once("..")?;
            Some(a.trim().parse().ok()?..b.trim().parse().ok()?)
        })
        .unwrap_or(HELD_OUT)
}

fn evaluate(matrix: usize, pixel_mm: f64, model_mm: f64) -> Stats {
    let mut st =
        Stats { body: vec![], canal: vec![], wall_right: 0, wall_judged: 0, wall_offset: vec![], n: 0 };
    for (i, seed) in seeds().enumerate() {
        let mut spec = PhantomSpec::from_seed(seed);
        spec.position = PatientPosition::ALL[i % 4];
        spec.matrix = matrix;
        spec.pixel_mm = Some(pixel_mm);
        spec.model_mm = model_mm;
        spec.steps = Some(2);
        let case = generate_case(&spec).expect("phantom case");
        let Some(scan) = case.scans.last() else { continue };
        st.n += 1;
        match segment(&scan.ct, TargetHint::Auto) {
            Ok(a) => {
                let body = body_dice(&a.labels, &scan.anatomy);
                let canal = dice(
                    &a.labels.data.mapv(|l| l == labels::CANAL),
                    &scan.anatomy.data.mapv(|l| l == labels::CANAL),
                );
                let truth_wall = case.summary.posterior_wall_intact;
                let wall_err = wall_offset_mm(&a, &scan.anatomy);
                st.wall_offset.push(wall_err);
                if let Some(w) = a.posterior_wall_intact {
                    st.wall_judged += 1;
                    st.wall_right += (w == truth_wall) as usize;
                }
                println!(
                    "seed {seed} {:?} {:?} {:?}: target {:?}, body Dice {body:.3}, canal Dice {canal:.3}, wall intact {:?} (truth {truth_wall}), truth wall {wall_err:+.1} mm behind ours, {:.0} ms",
                    case.summary.position, case.summary.level, case.summary.lesion, a.target_source, a.posterior_wall_intact, a.timings.total_ms
                );
                st.body.push(body);
                st.canal.push(canal);
            }
            Err(e) => {
                println!(
                    "seed {seed} {:?} {:?}: segmentation failed: {e}",
                    case.summary.position, case.summary.level
                );
                st.body.push(0.0);
                st.canal.push(0.0);
            }
        }
    }
    st
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Prints the phantom metrics; the brief's targets (body Dice >= 0.92, canal Dice >= 0.85, wall flag right in
/// >= 95% of cases) are checked by `phantom_acceptance`.
#[test]
#[ignore = "not met: body Dice 0.729 (goal 0.92), canal Dice 0.651 (0.85), wall flag 6/12 (95%), re-measure with cement counted as body; slow"]
fn phantom_acceptance() {
    // The model step defaults to 1 mm for speed; `$ANATOMY_MODEL_MM` (e.g. 0.5, the generator's default)
    // renders the 0.5-1 mm posterior cortex without aliasing gaps, which the wall flag needs.
    let model_mm = std::env::var("ANATOMY_MODEL_MM").ok().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    let st = evaluate(256, 0.8, model_mm);
    let (b, c) = (mean(&st.body), mean(&st.canal));
    let mut off: Vec<f64> = st.wall_offset.iter().map(|v| v.abs()).collect();
    off.sort_by(f64::total_cmp);
    println!(
        "phantoms: {} cases, mean body Dice {b:.3}, mean canal Dice {c:.3}, wall flag right {}/{} judged, median |wall offset| {:.1} mm",
        st.n, st.wall_right, st.wall_judged, off.get(off.len() / 2).copied().unwrap_or(f64::NAN)
    );
    assert!(b >= 0.92 && c >= 0.85, "body {b:.3} canal {c:.3}");
    assert!(st.wall_right as f64 >= 0.95 * st.n as f64, "wall flag right {}/{}", st.wall_right, st.n);
}

/// Debug aid: for the seeds in $ANATOMY_DEBUG_SEEDS (comma-separated; held-out order of positions), a montage
/// (top: ours, bottom: truth; axial through the body centre and 6 mm above/below, sagittal, coronal) in
/// $ANATOMY_DEBUG_DIR, and the voxel counts of each label's false positives and negatives.
#[test]
#[ignore = "debug aid"]
fn phantom_overlay() {
    use cementleak::render::{hstack, overlay, vstack, Plane, View, Window};
    use cementleak::volume::Vec3;
    let Some(out) = std::env::var_os("ANATOMY_DEBUG_DIR") else { return };
    let out = std::path::PathBuf::from(out);
    let _ = std::fs::create_dir_all(&out);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let seeds = std::env::var("ANATOMY_DEBUG_SEEDS").unwrap_or_else(|_| "9200".into());
    for seed in seeds.split(',').filter_map(|s| s.trim().parse::<u64>().ok()) {
        let mut spec = PhantomSpec::from_seed(seed);
        spec.position = PatientPosition::ALL[(seed % 4) as usize];
        spec.matrix = 256;
        spec.pixel_mm = Some(0.8);
        spec.model_mm = 1.0;
        spec.steps = Some(2);
        let case = generate_case(&spec).expect("case");
        let scan = case.scans.last().expect("scan");
        let a = match segment(&scan.ct, TargetHint::Auto) {
            Ok(a) => a,
            Err(e) => {
                println!("seed {seed}: {e}");
                continue;
            }
        };
        let c = a.body_centroid;
        let view = |lab: &cementleak::volume::LabelVolume, centre, plane| {
            let v = View { plane, center: centre, size_mm: [90.0, 90.0], pixel_mm: 0.3 };
            overlay(&scan.ct, lab, &v, Window::BONE)
        };
        let mut rows = Vec::new();
        for lab in [&a.labels, &scan.anatomy] {
            let mut imgs = Vec::new();
            for dz in [-6.0, 0.0, 6.0] {
                imgs.push(view(lab, c + Vec3([0.0, 0.0, dz]), Plane::Axial));
            }
            imgs.push(view(lab, c, Plane::Sagittal));
            imgs.push(view(lab, c, Plane::Coronal));
            rows.push(hstack(&imgs, 4));
        }
        let _ = vstack(&rows, 4).save(out.join(format!("seed{seed}.png")));
        for (name, l) in [("body", labels::VERTEBRAL_BODY), ("canal", labels::CANAL), ("disc", labels::DISC)]
        {
            let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
            let mut fp_as = [0usize; 16];
            let mut fn_as = [0usize; 16];
            ndarray::Zip::from(&a.labels.data).and(&scan.anatomy.data).for_each(|&o, &t| {
                match (o == l, t == l) {
                    (true, true) => tp += 1,
                    (true, false) => {
                        fp += 1;
                        fp_as[(t as usize).min(15)] += 1
                    }
                    (false, true) => {
                        fn_ += 1;
                        fn_as[(o as usize).min(15)] += 1
                    }
                    _ => {}
                }
            });
            println!(
                "seed {seed} {:?} {:?} {:?} {name}: tp {tp} fp {fp} (truth label counts {:?}) fn {fn_} (our label counts {:?})",
                case.summary.position, case.summary.level, case.summary.lesion, &fp_as[..5], &fn_as[..5]
            );
        }
        // Extent of each body along the spine axis (5th..95th percentile, mm from our centroid): levels.
        let extent = |m: &cementleak::volume::LabelVolume| {
            let mut t: Vec<f64> = m
                .data
                .indexed_iter()
                .filter(|(_, &l)| l == labels::VERTEBRAL_BODY)
                .map(|((z, y, x), _)| (m.geometry.voxel_to_lps([z, y, x]) - c).dot(a.spine_axis))
                .collect();
            t.sort_by(f64::total_cmp);
            let q = |f: f64| t.get(((t.len().max(1) - 1) as f64 * f) as usize).copied().unwrap_or(f64::NAN);
            (q(0.05), q(0.95))
        };
        let (o, t) = (extent(&a.labels), extent(&scan.anatomy));
        let mid =
            a.endplates.superior.point + (a.endplates.inferior.point - a.endplates.superior.point) * 0.5;
        let off = (c - mid).dot(a.spine_axis);
        println!(
            "seed {seed}: truth body {:.1}..{:.1} mm from the endplates' midpoint (ours {:.1}..{:.1})",
            t.0 + off,
            t.1 + off,
            o.0 + off,
            o.1 + off
        );
        println!(
            "seed {seed}: body along the spine ours {:.1}..{:.1} truth {:.1}..{:.1} mm; wall to truth canal",
            o.0, o.1, t.0, t.1
        );
        println!(
            "seed {seed}: wall {:?} (truth {}) defect {:.2} largest {:.1} mm2, body {:.1} mL",
            a.posterior_wall_intact,
            case.summary.posterior_wall_intact,
            a.posterior_wall.defect_fraction,
            a.posterior_wall.largest_defect_mm2,
            a.body_volume_ml
        );
    }
}

/// The same phantom patient scanned supine and prone: our labels agree in patient space.
#[test]
#[ignore = "not met on seed 9301: body 0.949, canal 0.911 (goal 0.98; truth against truth 1.000); slow"]
fn phantom_supine_and_prone_agree() {
    let mut scans = Vec::new();
    for pos in [PatientPosition::Hfs, PatientPosition::Hfp] {
        let mut spec = PhantomSpec::from_seed(9301);
        spec.position = pos;
        spec.matrix = 256;
        spec.pixel_mm = Some(0.8);
        spec.model_mm = 1.0;
        spec.steps = Some(1);
        spec.motion = false;
        let case = generate_case(&spec).expect("case");
        let scan = case.scans.last().expect("scan").clone();
        let a = segment(&scan.ct, TargetHint::Auto).expect("segmentation");
        scans.push((scan, a));
    }
    let (s0, a0) = &scans[0];
    let (s1, a1) = &scans[1];
    let on_supine = |l: &cementleak::volume::LabelVolume| {
        let v = cementleak::volume::Volume::new(l.data.mapv(i16::from), l.geometry);
        anatomy_support::labels_on_grid(&v, &s0.ct.geometry, s0.ct.shape())
    };
    let (ours1, truth1) = (on_supine(&a1.labels), on_supine(&s1.anatomy));
    let mut worst = 1.0f64;
    for (name, l) in [("body", labels::VERTEBRAL_BODY), ("canal", labels::CANAL)] {
        let d = dice(&a0.labels.data.mapv(|v| v == l), &ours1.mapv(|v| v == l));
        // The same comparison of the phantom's own truth: what voxelising one anatomy on two grids
        // allows (the truth counts intravertebral cement as body).
        let truth = |v: u8| v == l || (l == labels::VERTEBRAL_BODY && v == labels::CEMENT);
        let ceiling = dice(&s0.anatomy.data.mapv(truth), &truth1.mapv(truth));
        println!("{name}: Dice supine vs prone {d:.4} (truth vs truth on the same grids {ceiling:.4})");
        worst = worst.min(d);
    }
    assert!(worst >= 0.98, "worst Dice {worst:.4}");
}
