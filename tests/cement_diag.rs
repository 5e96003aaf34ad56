//! Diagnostics of stage 3 on phantom sequences (not an acceptance test): for each false leak, where it is
//! and what it is, and overlay pictures in $CEMENT_DIAG_DIR (default /tmp/cement_diag).
//! `cargo test --test cement_diag -- --ignored --nocapture`

mod common;

use cementleak::anatomy::{segment, TargetHint};
use cementleak::cement::{detect, CementInputs, CementParams};
use cementleak::leaks::Site;
use cementleak::phantom::{generate_case, PhantomSpec};
use cementleak::render::{self, Plane, View, Window};
use cementleak::volume::{labels, Lps, PatientPosition};
use std::collections::BTreeMap;

fn spec(seed: u64, position: PatientPosition, sites: Vec<Site>) -> PhantomSpec {
    common::small_phantom(seed, position, sites, 20, 3)
}

#[test]
#[ignore = "diagnostic: prints and draws, asserts nothing"]
fn diagnose_phantom_false_leaks() {
    cementleak::cli::init_logging();
    let dir = std::env::var("CEMENT_DIAG_DIR").unwrap_or_else(|_| "/tmp/cement_diag".into());
    let _ = std::fs::create_dir_all(&dir);
    let seeds: Vec<u64> = std::env::var("CEMENT_DIAG_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![11, 12, 13, 14]);
    let use_anatomy = std::env::var("CEMENT_DIAG_ANATOMY").is_ok();
    for seed in seeds {
        let (position, sites) =
            match if std::env::var("CEMENT_DIAG_TABLE2").is_ok() { (seed + 2) % 4 } else { seed % 4 } {
                0 => (PatientPosition::Hfdl, vec![Site::Disc, Site::Canal]),
                1 => (PatientPosition::Hfp, vec![Site::Disc]),
                2 => (PatientPosition::Hfp, vec![Site::Canal]),
                _ => (PatientPosition::Hfs, vec![Site::Paraspinal, Site::PosteriorVein]),
            };
        let mut sp = spec(seed, position, sites);
        if seed == 208 {
            // The held-out thermocouple case of tests/cement_phantom_eval.rs.
            sp.position = PatientPosition::Hfp;
            sp.leak_sites = Some(vec![]);
            sp.lesion = Some(cementleak::phantom::LesionType::Blastic);
            sp.thermocouple = Some(Some(cementleak::phantom::ThermocouplePlace::Foramen));
            sp.slice_thickness_mm = Some(1.25);
            sp.slices = Some(40);
        }
        let case = generate_case(&sp).expect("phantom");
        println!("== seed {seed} {position} {:?}", case.summary);
        let base = &case.scans[0];
        for k in 1..case.scans.len() {
            let scan = &case.scans[k];
            let truth_body = scan.anatomy.mask_of(labels::VERTEBRAL_BODY);
            let body = if use_anatomy {
                let a = segment(&scan.ct, TargetHint::Auto).expect("anatomy");
                a.labels.mask_of(labels::VERTEBRAL_BODY)
            } else {
                truth_body.clone()
            };
            let inputs = CementInputs {
                scan: &scan.ct,
                baseline: Some(&base.ct),
                previous: if k > 1 { Some(&case.scans[k - 1].ct) } else { None },
                body: &body,
                canal: None,
            };
            let t0 = std::time::Instant::now();
            let f = detect(&inputs, &CementParams::default()).expect("detect");
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            let t = &scan.truth;
            let lab = &scan.labels;
            let vml = scan.ct.geometry.spacing.voxel_volume_ml();
            // Voxel-count comparison of the intravertebral mask against label 10.
            let (mut both, mut only_det, mut only_truth) = (0usize, 0usize, 0usize);
            let mut only_det_hu = Vec::new();
            for ((idx, &d), &l) in f.intravertebral.data.indexed_iter().zip(lab.data.iter()) {
                let tr = l == labels::CEMENT;
                match (d, tr) {
                    (true, true) => both += 1,
                    (true, false) => {
                        only_det += 1;
                        only_det_hu.push((f32::from(scan.ct.data[idx]), f32::from(base.ct.data[idx])));
                    }
                    (false, true) => only_truth += 1,
                    _ => {}
                }
            }
            let mean = |v: &[(f32, f32)], k: usize| {
                v.iter().map(|x| if k == 0 { x.0 } else { x.1 } as f64).sum::<f64>() / v.len().max(1) as f64
            };
            println!(
                "step {k}: {ms:.0} ms; intra {:.3} mL truth {:.3} ({:+.1}%); mask voxels both {both} only-detected \
                 {only_det} (mean {:.0} HU, baseline {:.0}) only-truth {only_truth}; mask count {:.3} mL",
                f.intravertebral_ml,
                t.intravertebral_cement_ml,
                100.0 * (f.intravertebral_ml - t.intravertebral_cement_ml) / t.intravertebral_cement_ml,
                mean(&only_det_hu, 0),
                mean(&only_det_hu, 1),
                (both + only_det) as f64 * vml
            );
            let needle_vox: Vec<Lps> = lab
                .data
                .indexed_iter()
                .filter(|(_, l)| **l == labels::NEEDLE)
                .map(|((z, y, x), _)| scan.ct.geometry.voxel_to_lps([z, y, x]))
                .collect();
            for l in &t.leaks {
                println!(
                    "   truth leak {:?} {:.3} mL ({} vox) at {}",
                    l.site, l.volume_ml, l.voxels, l.centroid_lps_mm
                );
            }
            for d in &f.leaks {
                let mut hist: BTreeMap<u8, usize> = BTreeMap::new();
                let mut tis: BTreeMap<u8, usize> = BTreeMap::new();
                let (mut hu, mut bhu, mut rise_min) = (0.0f64, 0.0f64, f64::INFINITY);
                let mut slices: BTreeMap<usize, usize> = BTreeMap::new();
                for v in &d.voxels {
                    *hist.entry(lab.data[*v]).or_default() += 1;
                    *tis.entry(scan.tissue.data[*v]).or_default() += 1;
                    *slices.entry(v[0]).or_default() += 1;
                    hu += scan.ct.data[*v] as f64;
                    bhu += base.ct.data[*v] as f64;
                    rise_min = rise_min.min((scan.ct.data[*v] - base.ct.data[*v]) as f64);
                }
                let n = d.voxels.len() as f64;
                let dn = needle_vox.iter().map(|p| p.distance(d.centroid)).fold(f64::INFINITY, f64::min);
                let is_true = hist.keys().any(|l| (labels::LEAK_CANAL..=labels::LEAK_PARASPINAL).contains(l));
                println!(
                    "   {} leak {} {:.4} mL {} vox at {} max {:.0} HU mean {:.0} baseline {:.0} (min rise {:.0}); \
                     needle {:.1} mm; slices {:?}; labels {:?}; tissue {:?}; prev {:?}",
                    if is_true { "TRUE " } else { "FALSE" },
                    d.id,
                    d.volume_ml,
                    d.voxels.len(),
                    d.centroid,
                    d.max_hu,
                    hu / n,
                    bhu / n,
                    rise_min,
                    dn,
                    slices,
                    hist,
                    tis,
                    d.previous_ml
                );
                if !is_true {
                    let mut dl = scan.labels.clone();
                    for v in &d.voxels {
                        dl.data[*v] = 99;
                    }
                    let view = View {
                        plane: Plane::Axial,
                        center: d.centroid,
                        size_mm: [90.0, 90.0],
                        pixel_mm: 0.4,
                    };
                    let mut a = render::overlay(&scan.ct, &dl, &view, Window::BONE);
                    let b = render::overlay(&base.ct, &dl, &view, Window::BONE);
                    let p = &case.scans[k - 1];
                    let c = render::overlay(&p.ct, &dl, &view, Window::BONE);
                    render::text::draw_text(
                        &mut a,
                        4,
                        4,
                        &format!("s{seed} k{k} leak {}", d.id),
                        image::Rgb([255, 255, 0]),
                        2,
                    );
                    let img = render::upscale(&render::hstack(&[a, c, b], 4), 2);
                    let path = format!("{dir}/s{seed}_k{k}_leak{}.png", d.id);
                    let _ = img.save(&path);
                }
            }
        }
    }
}

/// Cement voxels far from the truth cement on development seeds (300..): for each such group, its size,
/// tissue, HU now, the registered baseline around it, distance to the truth cement and whether it is a leak.
/// `CEMENT_DIAG_SEEDS=300,301 cargo test --test cement_diag far_cement -- --ignored --nocapture`
#[test]
#[ignore = "diagnostic: prints, asserts nothing"]
fn diagnose_far_cement() {
    use cementleak::phantom::{LesionType, ThermocouplePlace};
    let seeds: Vec<u64> = std::env::var("CEMENT_DIAG_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| (300..312).collect());
    for (i, seed) in seeds.into_iter().enumerate() {
        let mut sp = common::small_phantom(seed, PatientPosition::ALL[i % 4], vec![], 0, 3);
        let sites = [vec![Site::Paraspinal], vec![Site::Disc], vec![], vec![Site::PosteriorVein]];
        sp.leak_sites = Some(sites[i % 4].clone());
        sp.lesion = Some([LesionType::Blastic, LesionType::Mixed, LesionType::Lytic][i % 3]);
        sp.thermocouple =
            Some([Some(ThermocouplePlace::Foramen), None, Some(ThermocouplePlace::Canal)][i % 3]);
        let th = if i % 3 == 2 { 1.25 } else { 2.5 };
        sp.slice_thickness_mm = Some(th);
        sp.slices = Some((50.0 / th).round() as usize);
        let case = generate_case(&sp).expect("phantom");
        let s = &case.summary;
        println!(
            "== seed {seed} {} {:?} {} {:?} {th} mm",
            s.position, s.leak_sites, s.lesion, s.thermocouple
        );
        let base = &case.scans[0];
        for k in 1..case.scans.len() {
            let scan = &case.scans[k];
            let body = scan.anatomy.mask_of(labels::VERTEBRAL_BODY);
            let inputs = CementInputs {
                scan: &scan.ct,
                baseline: Some(&base.ct),
                previous: (k > 1).then(|| &case.scans[k - 1].ct),
                body: &body,
                canal: None,
            };
            let f = detect(&inputs, &CementParams::default()).expect("detect");
            let lab = &scan.labels;
            let truth: Vec<[usize; 3]> = lab
                .data
                .indexed_iter()
                .filter(|(_, l)| (labels::CEMENT..=labels::LEAK_PARASPINAL).contains(*l))
                .map(|((z, y, x), _)| [z, y, x])
                .collect();
            let g = scan.ct.geometry;
            let truth_lps: Vec<Lps> = truth.iter().map(|v| g.voxel_to_lps(*v)).collect();
            let dist = |p: Lps| truth_lps.iter().map(|q| q.distance(p)).fold(f64::INFINITY, f64::min);
            let metal_lps: Vec<Lps> = lab
                .data
                .indexed_iter()
                .filter(|(_, l)| **l == labels::NEEDLE)
                .map(|((z, y, x), _)| g.voxel_to_lps([z, y, x]))
                .collect();
            let metal_dist = |p: Lps| metal_lps.iter().map(|q| q.distance(p)).fold(f64::INFINITY, f64::min);
            let far: Vec<[usize; 3]> = f
                .cement
                .data
                .indexed_iter()
                .filter(|(_, on)| **on)
                .map(|((z, y, x), _)| [z, y, x])
                .filter(|v| dist(g.voxel_to_lps(*v)) > 4.0)
                .collect();
            if far.is_empty() {
                continue;
            }
            let reg = f.baseline_registration.expect("registered");
            let bg = base.ct.geometry;
            let bshape = base.ct.shape();
            let base_at = |p: Lps| -> (f32, f32) {
                let q = reg.apply(p);
                let idx = bg.lps_to_index(q);
                let c = idx.map(|v| v.round() as isize);
                let (mut mx, mut near) = (f32::MIN, f32::NAN);
                for dz in -1..=1isize {
                    for dy in -1..=1isize {
                        for dx in -1..=1isize {
                            let n = [c[0] + dz, c[1] + dy, c[2] + dx];
                            if (0..3).all(|a| n[a] >= 0 && (n[a] as usize) < bshape[a]) {
                                let v = f32::from(base.ct.data[n.map(|v| v as usize)]);
                                mx = mx.max(v);
                                if dz == 0 && dy == 0 && dx == 0 {
                                    near = v;
                                }
                            }
                        }
                    }
                }
                (near, mx)
            };
            let mut by_tissue: BTreeMap<u8, usize> = BTreeMap::new();
            for v in &far {
                *by_tissue.entry(scan.tissue.data[*v]).or_default() += 1;
            }
            let leak_vox: std::collections::HashSet<[usize; 3]> =
                f.leaks.iter().flat_map(|l| l.voxels.iter().copied()).collect();
            println!(
                " step {k}: {} far voxels ({:.3} mL), tissues {:?}, {} of them in leaks",
                far.len(),
                far.len() as f64 * g.spacing.voxel_volume_ml(),
                by_tissue,
                far.iter().filter(|v| leak_vox.contains(*v)).count()
            );
            for v in far.iter().step_by((far.len() / 12).max(1)) {
                let p = g.voxel_to_lps(*v);
                let hu = f32::from(scan.ct.data[*v]);
                let (b, bmax) = base_at(p);
                println!(
                    "   {v:?} tissue {} HU {hu:.0} base {b:.0} (3x3x3 max {bmax:.0}) rise {:.0}, {:.1} mm from cement, {:.1} mm from metal, in body {}, truth label {}",
                    scan.tissue.data[*v],
                    hu - b,
                    dist(p),
                    metal_dist(p),
                    body.data[*v],
                    lab.data[*v]
                );
            }
        }
    }
}
