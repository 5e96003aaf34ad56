//! Realism check: phantom tissue HU and noise against the real CTs in the shared data folder.
//!
//! The comparison ranges come from the real data only. For each tissue the real side gives, per dataset,
//! the interquartile range (P25–P75) of the tissue's voxels; the phantom's median over the same kind of
//! region must fall inside the union of those ranges. Both sides are measured the same way: cortical bone is
//! the outer one-voxel shell of the vertebral-body mask, cancellous bone the body eroded by 2 mm, fat the
//! voxels of [-190, -30] HU whose 6 neighbours are also in that window, noise the median standard deviation of
//! 5 x 5 in-plane windows lying wholly inside an eroded muscle region (back muscles on both sides).
//!
//! Run: `cargo test --test phantom_realism -- --nocapture` (prints the table).

mod common;

use cementleak::load::{load_scan, LoadOptions};
use cementleak::phantom::{anatomy::Tissue, generate_case, PhantomSpec};
use cementleak::volume::{labels, CtVolume, Volume};
use ndarray::Array3;
use std::collections::BTreeMap;

type Mask = Array3<bool>;

fn percentile(v: &mut [f32], q: f64) -> f32 {
    if v.is_empty() {
        return f32::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Erosion by `r` voxels along each axis given (6-connected steps, box-shaped neighbourhood per axis).
fn erode(m: &Mask, r: [usize; 3]) -> Mask {
    let mut cur = m.clone();
    let sh = m.shape().to_vec();
    for (axis, &n) in r.iter().enumerate() {
        for _ in 0..n {
            let prev = cur.clone();
            for ((z, y, x), v) in cur.indexed_iter_mut() {
                if !*v {
                    continue;
                }
                let idx = [z, y, x];
                let lo = idx[axis] == 0;
                let hi = idx[axis] + 1 >= sh[axis];
                let mut a = idx;
                let mut b = idx;
                if !lo {
                    a[axis] -= 1;
                }
                if !hi {
                    b[axis] += 1;
                }
                *v = !lo && !hi && prev[a] && prev[b];
            }
        }
    }
    cur
}

fn erode_mm(m: &Mask, spacing: [f64; 3], mm: f64) -> Mask {
    erode(m, spacing.map(|s| (mm / s).round() as usize))
}

fn values(ct: &CtVolume, m: &Mask) -> Vec<f32> {
    ct.data.iter().zip(m.iter()).filter(|(_, &b)| b).map(|(&v, _)| f32::from(v)).collect()
}

#[derive(Debug, Clone, Copy)]
struct Stat {
    p25: f32,
    median: f32,
    p75: f32,
    n: usize,
}

fn stat(ct: &CtVolume, m: &Mask) -> Option<Stat> {
    let mut v = values(ct, m);
    if v.len() < 30 {
        return None;
    }
    Some(Stat {
        p25: percentile(&mut v, 0.25),
        median: percentile(&mut v, 0.5),
        p75: percentile(&mut v, 0.75),
        n: v.len(),
    })
}

/// Body masks -> cortical shell and cancellous core; fat by HU window; muscle noise by local SD.
fn measure(
    ct: &CtVolume,
    body: &Mask,
    disc: Option<&Mask>,
    canal: Option<&Mask>,
    muscle: Option<&Mask>,
) -> BTreeMap<&'static str, Stat> {
    let sp = ct.geometry.spacing.zyx();
    let mut out = BTreeMap::new();
    let inner = erode(body, [1, 1, 1]);
    let shell = ndarray::Zip::from(body).and(&inner).map_collect(|&b, &i| b && !i);
    let core = erode_mm(body, sp, 2.0);
    let fatw = ct.data.mapv(|v| (-190..=-30).contains(&v));
    let fat = erode(&fatw, [0, 1, 1]);
    for (name, m) in [
        ("cortical", Some(&shell)),
        ("cancellous", Some(&core)),
        ("disc", disc),
        ("canal", canal),
        ("muscle", muscle),
        ("fat", Some(&fat)),
    ] {
        if let Some(m) = m {
            if let Some(s) = stat(ct, m) {
                out.insert(name, s);
            }
        }
    }
    if let Some(m) = muscle {
        if let Some(sd) = local_sd(ct, &erode(m, [0, 2, 2])) {
            out.insert("noise_sd", Stat { p25: sd, median: sd, p75: sd, n: 0 });
        }
    }
    out
}

fn local_sd(ct: &CtVolume, m: &Mask) -> Option<f32> {
    let [nz, ny, nx] = ct.shape();
    let mut sds = Vec::new();
    for z in 0..nz {
        for y in (2..ny.saturating_sub(2)).step_by(3) {
            for x in (2..nx.saturating_sub(2)).step_by(3) {
                let mut ok = true;
                let mut vals = Vec::with_capacity(25);
                'w: for dy in 0..5 {
                    for dx in 0..5 {
                        let i = [z, y + dy - 2, x + dx - 2];
                        if !m[i] {
                            ok = false;
                            break 'w;
                        }
                        vals.push(ct.data[i] as f64);
                    }
                }
                if ok {
                    let mean = vals.iter().sum::<f64>() / 25.0;
                    sds.push(((vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 24.0).sqrt()) as f32);
                }
            }
        }
    }
    (sds.len() >= 10).then(|| percentile(&mut sds, 0.5))
}

/// A label volume resampled onto the CT grid through patient coordinates.
fn labels_on(ct: &CtVolume, seg: &Volume<i16>) -> Array3<i32> {
    let mut out = Array3::zeros(ct.data.raw_dim());
    for ((z, y, x), v) in out.indexed_iter_mut() {
        let p = ct.geometry.voxel_to_lps([z, y, x]);
        *v = seg.at_lps(p).map(|&l| i32::from(l)).unwrap_or(0);
    }
    out
}

fn real_measurements() -> Option<Vec<(&'static str, BTreeMap<&'static str, Stat>)>> {
    let trunk = common::shared_data("real/totalseg-trunk")?;
    let t12 = common::shared_data("real/totalseg-t12")?;
    let opts = LoadOptions::default();
    let mut out = Vec::new();

    // Trunk: bodies and discs from vertebral_bodies_and_discs (3 mm).
    let ct = load_scan(&trunk.join("ct.nii.gz"), &opts).ok()?.volume;
    let vbd =
        labels_on(&ct, &load_scan(&trunk.join("vertebral_bodies_and_discs.nii.gz"), &opts).ok()?.volume);
    let body = vbd.mapv(|l| l == 1);
    let disc = vbd.mapv(|l| l == 2);
    out.push(("trunk", measure(&ct, &body, Some(&disc), None, None)));

    // T12 series: bodies = T11/T12 anterior of the cord; canal = cord; muscle = autochthon + iliopsoas.
    let ct = load_scan(&t12.join("dicom"), &opts).ok()?.volume;
    let seg = labels_on(&ct, &load_scan(&t12.join("segmentation.nii.gz"), &opts).ok()?.volume);
    let cord = seg.mapv(|l| l == 79);
    let mut body = seg.mapv(|l| l == 32 || l == 33);
    // Posterior direction from the geometry: keep vertebra voxels anterior of the cord's front in each slice.
    for z in 0..ct.shape()[0] {
        let ys: Vec<f64> = cord
            .index_axis(ndarray::Axis(0), z)
            .indexed_iter()
            .filter(|(_, &b)| b)
            .map(|((r, c), _)| ct.geometry.voxel_to_lps([z, r, c]).y())
            .collect();
        let front = ys.iter().cloned().fold(f64::MAX, f64::min);
        for ((r, c), b) in body.index_axis_mut(ndarray::Axis(0), z).indexed_iter_mut() {
            if *b && (ys.is_empty() || ct.geometry.voxel_to_lps([z, r, c]).y() > front - 4.0) {
                *b = false;
            }
        }
    }
    let muscle = seg.mapv(|l| (86..=89).contains(&l));
    let present: std::collections::BTreeSet<i32> = seg.iter().copied().collect();
    println!("t12 segmentation labels present: {present:?}");
    let muscle = (muscle.iter().filter(|&&b| b).count() > 100).then_some(muscle);
    out.push(("t12", measure(&ct, &body, None, Some(&cord), muscle.as_ref())));
    Some(out)
}

fn phantom_measurements(seed: u64) -> BTreeMap<&'static str, Stat> {
    let mut spec = PhantomSpec::from_seed(seed);
    // An acquisition like the real thoracolumbar series (0.977 mm pixels, 2 mm slices), kept small.
    spec.matrix = 200;
    spec.pixel_mm = Some(0.977);
    spec.slice_thickness_mm = Some(2.0);
    // Enough slices to hold the body and both discs.
    spec.slices = Some(26);
    // Real scans have no metal: no thermocouple, and slices holding the needle are left out below.
    spec.thermocouple = Some(None);
    spec.steps = Some(1);
    spec.model_mm = 0.8;
    spec.leak_sites = Some(vec![]);
    let case = generate_case(&spec).expect("phantom case");
    let scan = &case.scans[0];
    let s = &case.summary;
    println!(
        "phantom seed {seed}: {} {} osteoporotic {} compression {} noise {} HU",
        s.level, s.lesion, s.osteoporotic, s.compression_fracture, s.noise_sd_hu
    );
    let body = scan.anatomy.data.mapv(|l| l == labels::VERTEBRAL_BODY);
    // Remove metal-adjacent voxels from all regions: the needle is in the baseline and real data has none.
    let metal = scan.labels.data.mapv(|l| l == labels::NEEDLE);
    // Streaks are strongest next to the metal: leave out 12 mm around it in-plane.
    let near_metal = dilate(&metal, (12.0 / scan.ct.geometry.spacing.row).round() as usize);
    let body = ndarray::Zip::from(&body).and(&near_metal).map_collect(|&b, &m| b && !m);
    let disc =
        ndarray::Zip::from(&scan.anatomy.data).and(&near_metal).map_collect(|&l, &m| l == labels::DISC && !m);
    let canal = ndarray::Zip::from(&scan.tissue.data)
        .and(&near_metal)
        .map_collect(|&t, &m| (t == Tissue::Csf as u8 || t == Tissue::Cord as u8) && !m);
    let muscle = ndarray::Zip::from(&scan.tissue.data)
        .and(&near_metal)
        .map_collect(|&t, &m| t == Tissue::Muscle as u8 && !m);
    let muscle = erode(&muscle, [0, 1, 1]);
    let ct = &scan.ct;
    measure(ct, &body, Some(&disc), Some(&canal), Some(&muscle))
}

fn dilate(m: &Mask, r: usize) -> Mask {
    let inv = m.mapv(|b| !b);
    erode(&inv, [0, r, r]).mapv(|b| !b)
}

#[test]
fn phantom_tissues_match_real_ct() {
    let Some(real) = real_measurements() else { return };
    let seeds = [1u64, 2, 3, 4];
    let phantoms: Vec<_> = seeds.iter().map(|&s| phantom_measurements(s)).collect();
    let tissues = ["cancellous", "cortical", "muscle", "fat", "disc", "canal"];
    let mut failures = Vec::new();
    println!(
        "{:<11} {:>28} {:>28}   phantom medians (seeds {seeds:?})",
        "tissue", "real trunk p25/med/p75", "real t12 p25/med/p75"
    );
    for t in tissues {
        let rs: Vec<Option<Stat>> = real.iter().map(|(_, m)| m.get(t).copied()).collect();
        let lo = rs.iter().flatten().map(|s| s.p25).fold(f32::MAX, f32::min);
        let hi = rs.iter().flatten().map(|s| s.p75).fold(f32::MIN, f32::max);
        let fmt = |s: &Option<Stat>| {
            s.map(|s| format!("{:.0}/{:.0}/{:.0} (n={})", s.p25, s.median, s.p75, s.n))
                .unwrap_or_else(|| "-".into())
        };
        let meds: Vec<f32> = phantoms.iter().filter_map(|p| p.get(t).map(|s| s.median)).collect();
        println!("{:<11} {:>28} {:>28}   {:?}  range [{lo:.0}, {hi:.0}]", t, fmt(&rs[0]), fmt(&rs[1]), meds);
        if rs.iter().all(|s| s.is_none()) {
            failures.push(format!("{t}: no real measurement"));
            continue;
        }
        // The phantom population's typical value (median over seeds) must lie in the real range, and most
        // individual seeds too (patients differ; two real scans cannot span the population).
        let mut sorted = meds.clone();
        let pooled = percentile(&mut sorted, 0.5);
        if !(lo..=hi).contains(&pooled) {
            failures.push(format!("{t}: phantom median {pooled:.0} outside real [{lo:.0}, {hi:.0}]"));
        }
        let inside = meds.iter().filter(|m| (lo..=hi).contains(*m)).count();
        if inside * 3 < meds.len() * 2 {
            failures
                .push(format!("{t}: only {inside} of {} seeds inside real [{lo:.0}, {hi:.0}]", meds.len()));
        }
        if meds.len() != seeds.len() {
            failures.push(format!("{t}: measured on {} of {} phantoms", meds.len(), seeds.len()));
        }
    }
    let real_sd: Vec<f32> = real.iter().filter_map(|(_, m)| m.get("noise_sd").map(|s| s.median)).collect();
    let ph_sd: Vec<f32> = phantoms.iter().filter_map(|p| p.get("noise_sd").map(|s| s.median)).collect();
    println!("noise SD in muscle: real {real_sd:?}, phantom {ph_sd:?}");
    if real_sd.is_empty() || ph_sd.len() != seeds.len() {
        failures.push("noise: not measurable".into());
    }
    for &p in &ph_sd {
        if !real_sd.iter().any(|&r| p >= r / 2.0 && p <= r * 2.0) {
            failures.push(format!("noise SD {p:.1} not within a factor 2 of real {real_sd:?}"));
        }
    }
    assert!(failures.is_empty(), "realism failures:\n{}", failures.join("\n"));
}
