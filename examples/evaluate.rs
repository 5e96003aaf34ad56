//! Issue-5 evaluation: held-out phantom sequences, hybrid sequences on the real series and the unmodified
//! real CTs, each scan through the product's `Analyzer` (with baseline and previous scan), scored against
//! the truth. Prints a table and writes a JSON file. Run through `scripts/evaluate.sh`.
//!
//! Held-out seeds: phantom cases use seeds from `--seed-base` (default 100000) upward and hybrid cases from
//! `--seed-base + 100000`; the leak-site model trains on `cementleak patches --seeds A..B` with seeds below
//! 100000, so no evaluated patient was seen in training.

use cementleak::alert::AlertPolicy;
use cementleak::analyze::{AnalyzeInputs, Analyzer};
use cementleak::anatomy::TargetHint;
use cementleak::eval::matching::MatchRule;
use cementleak::eval::metrics::{summarize, table, Group, ScanRecord, Summary, HYBRID_GOALS, PHANTOM_GOALS};
use cementleak::eval::{as_scan, record};
use cementleak::leaks::{LeakModel, Site};
use cementleak::load::{load_scan, LoadOptions, Scan};
use cementleak::phantom::hybrid::{generate_hybrid, HybridInputs, HybridSpec};
use cementleak::phantom::{generate_case, LesionType, PhantomCase, PhantomSpec, ThermocouplePlace};
use cementleak::volume::PatientPosition;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    /// Synthetic phantom cases (each a baseline plus `--steps` injection scans).
    #[arg(long, default_value_t = 40)]
    cases: usize,
    /// First held-out seed (the model trains on seeds below 100000).
    #[arg(long, default_value_t = 100_000)]
    seed_base: u64,
    /// Injection scans per case after the baseline.
    #[arg(long, default_value_t = 6)]
    steps: usize,
    /// Image matrix of the phantoms (512 on scanners).
    #[arg(long, default_value_t = 512)]
    matrix: usize,
    /// Hybrid cases per real vertebra (trunk L1..L5, t12 T12); 0 for none.
    #[arg(long, default_value_t = 2)]
    hybrid_cases: usize,
    /// Real data folder (default: $CEMENTLEAK_DATA, else ../shared/data).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Worker threads (cases run side by side).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Overlap tolerance of the matching rule, mm.
    #[arg(long, default_value_t = 2.0)]
    dilation_mm: f64,
    /// True leaks smaller than this are not counted in sensitivity (mL).
    #[arg(long, default_value_t = 0.05)]
    min_leak_ml: f64,
    /// JSON output.
    #[arg(long, default_value = "target/evaluation.json")]
    json: PathBuf,
    /// Target hint given to analyze: `auto` (the product finds the treated vertebra, as in the clinic without
    /// `--at`) or `tip` (the true needle tip, as with `--at`: separates target choice from the rest).
    #[arg(long, default_value = "auto", value_parser = ["auto", "tip"])]
    hint: String,
    /// Leak-site ONNX model, as `analyze` uses by default.
    #[arg(long, default_value = cementleak::leaks::model::DEFAULT_MODEL_PATH)]
    model: PathBuf,
    /// Rule sites only (no model), to see what the model adds.
    #[arg(long)]
    no_model: bool,
}

/// A fresh analyzer per case (ONNX sessions are not shared between threads); `None` model = rules only.
fn analyzer(model: Option<&Path>) -> Analyzer {
    let model = model.map(|p| match LeakModel::load(p) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("cannot load the leak-site model {}: {e}", p.display());
            std::process::exit(2);
        }
    });
    Analyzer::new(AlertPolicy::default(), model)
}

/// Leak-site patterns the cases cycle through (none, each site alone, pairs).
fn patterns() -> Vec<Vec<Site>> {
    use Site::*;
    vec![
        vec![Canal],
        vec![PosteriorVein],
        vec![Disc],
        vec![Paraspinal],
        vec![],
        vec![Canal, Disc],
        vec![PosteriorVein, Paraspinal],
        vec![Disc, Paraspinal],
        vec![Canal, PosteriorVein],
    ]
}

fn phantom_spec(i: usize, a: &Args) -> PhantomSpec {
    let mut s = PhantomSpec::from_seed(a.seed_base + i as u64);
    s.position = PatientPosition::ALL[i % 4];
    s.lesion = Some([LesionType::Lytic, LesionType::Blastic, LesionType::Mixed][(i / 4) % 3]);
    let p = patterns();
    s.leak_sites = Some(p[i % p.len()].clone());
    s.thermocouple =
        Some([None, Some(ThermocouplePlace::Canal), Some(ThermocouplePlace::Foramen)][(i / 2) % 3]);
    s.steps = Some(a.steps);
    s.matrix = a.matrix;
    s
}

/// Analyses every scan of a case (baseline alone, then each injection scan with baseline and previous).
fn score_case(
    case: &PhantomCase,
    name: &str,
    group: Group,
    rule: MatchRule,
    at_tip: bool,
    model: Option<&Path>,
) -> Vec<ScanRecord> {
    let mut analyzer = analyzer(model);
    let pos = case.summary.position;
    let scans: Vec<Scan> =
        case.scans.iter().enumerate().map(|(k, s)| as_scan(&s.ct, &format!("{name}/scan{k}"), pos)).collect();
    let mut out = Vec::new();
    let run = |analyzer: &mut Analyzer, k: usize, with_refs: bool| {
        let t = Instant::now();
        let inputs = AnalyzeInputs {
            scan: &scans[k],
            baseline: with_refs.then(|| &scans[0]),
            previous: with_refs.then(|| &scans[k - 1]),
            hint: match case.scans[k].truth.needle_tips_lps_mm.first() {
                Some(&tip) if at_tip => TargetHint::AtPoint(tip),
                _ => TargetHint::Auto,
            },
        };
        analyzer.run(&inputs).map(|a| (a, t.elapsed().as_secs_f64() * 1000.0)).map_err(|e| e.to_string())
    };
    // The baseline on its own: needle (and maybe a thermocouple), no cement anywhere.
    if group == Group::Phantom {
        let g = if case.summary.thermocouple.is_some() { Group::Thermocouple } else { Group::NeedleOnly };
        let res = run(&mut analyzer, 0, false);
        out.push(record(
            g,
            name,
            0,
            Some(&case.scans[0]),
            res.as_ref().map(|(a, ms)| (a, *ms)).map_err(|e| e.clone()),
            rule,
        ));
    }
    for k in 1..case.scans.len() {
        let res = run(&mut analyzer, k, true);
        out.push(record(
            group,
            name,
            k,
            Some(&case.scans[k]),
            res.as_ref().map(|(a, ms)| (a, *ms)).map_err(|e| e.clone()),
            rule,
        ));
    }
    out
}

fn data_dir(a: &Args) -> PathBuf {
    a.data
        .clone()
        .or_else(|| std::env::var_os("CEMENTLEAK_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

struct RealSeries {
    name: &'static str,
    inputs: HybridInputs,
    labels: Vec<u32>,
}

fn load_real(dir: &Path) -> Vec<RealSeries> {
    let o = LoadOptions::default();
    let mut out = Vec::new();
    let trunk = dir.join("real/totalseg-trunk");
    match (
        load_scan(&trunk.join("ct.nii.gz"), &o),
        load_scan(&trunk.join("vertebrae.nii.gz"), &o),
        load_scan(&trunk.join("vertebral_bodies_and_discs.nii.gz"), &o),
    ) {
        (Ok(ct), Ok(v), Ok(b)) => out.push(RealSeries {
            name: "trunk",
            inputs: HybridInputs { ct, vertebra: v.volume, body: Some(b.volume) },
            labels: vec![31, 30, 29, 28, 27],
        }),
        _ => eprintln!("SKIP: trunk series not readable under {}", trunk.display()),
    }
    let t12 = dir.join("real/totalseg-t12");
    match (load_scan(&t12.join("dicom"), &o), load_scan(&t12.join("segmentation.nii.gz"), &o)) {
        (Ok(ct), Ok(v)) => out.push(RealSeries {
            name: "t12",
            inputs: HybridInputs { ct, vertebra: v.volume, body: None },
            labels: vec![32],
        }),
        _ => eprintln!("SKIP: t12 series not readable under {}", t12.display()),
    }
    out
}

#[derive(Serialize)]
struct Output<'a> {
    schema: &'static str,
    matching_rule: String,
    min_leak_ml: f64,
    hint: &'a str,
    /// The leak-site model file, or null for rule sites only.
    model: Option<String>,
    phantom_seeds: [u64; 2],
    hybrid_seeds: [u64; 2],
    summaries: Vec<(Group, Summary)>,
    records: &'a [ScanRecord],
}

enum Job {
    Phantom(usize),
    Hybrid { series: usize, label: u32, seed: u64, sites: Vec<Site> },
    Real(usize),
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,jpeg2k=off,openjp2=off"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let rule = MatchRule { dilation_mm: a.dilation_mm };
    let real = load_real(&data_dir(&a));
    let hybrid_base = a.seed_base + 100_000;
    let mut jobs: Vec<Job> = (0..a.cases).map(Job::Phantom).collect();
    let p = patterns();
    let mut h = 0usize;
    for (si, s) in real.iter().enumerate() {
        for &label in &s.labels {
            for _ in 0..a.hybrid_cases {
                // Hybrid cases always leak (the "none" pattern is skipped): they exist to test detection.
                let sites = p[h % p.len()].clone();
                let sites = if sites.is_empty() { vec![Site::Canal] } else { sites };
                jobs.push(Job::Hybrid { series: si, label, seed: hybrid_base + h as u64, sites });
                h += 1;
            }
        }
        jobs.push(Job::Real(si));
    }
    let model = (!a.no_model).then_some(a.model.as_path());
    let pool = rayon::ThreadPoolBuilder::new().num_threads(a.threads.max(1)).build()?;
    let pb = ProgressBar::new(jobs.len() as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:>8} [{bar:30}] {pos}/{len} cases {elapsed} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message("evaluate");
    let records = Mutex::new(Vec::<ScanRecord>::new());
    let t0 = Instant::now();
    pool.install(|| {
        jobs.par_iter().for_each(|job| {
            let recs: Vec<ScanRecord> = match job {
                Job::Phantom(i) => {
                    let spec = phantom_spec(*i, &a);
                    let name = format!("phantom/{}/{}", spec.seed, spec.position);
                    match generate_case(&spec) {
                        Ok(case) => score_case(&case, &name, Group::Phantom, rule, a.hint == "tip", model),
                        Err(e) => vec![failed(Group::Phantom, &name, e.to_string())],
                    }
                }
                Job::Hybrid { series, label, seed, sites } => {
                    let s = &real[*series];
                    let name = format!("hybrid/{}/{label}/{seed}", s.name);
                    let mut spec = HybridSpec::new(*seed, *label);
                    spec.leak_sites = Some(sites.clone());
                    spec.steps = Some(a.steps);
                    match generate_hybrid(&s.inputs, &spec) {
                        Ok(case) => score_case(&case, &name, Group::Hybrid, rule, a.hint == "tip", model),
                        Err(e) => vec![failed(Group::Hybrid, &name, e.to_string())],
                    }
                }
                Job::Real(si) => {
                    let s = &real[*si];
                    let mut analyzer = analyzer(model);
                    let t = Instant::now();
                    let res = analyzer
                        .run(&AnalyzeInputs {
                            scan: &s.inputs.ct,
                            baseline: None,
                            previous: None,
                            hint: TargetHint::Auto,
                        })
                        .map(|an| (an, t.elapsed().as_secs_f64() * 1000.0))
                        .map_err(|e| e.to_string());
                    let name = format!("real/{}", s.name);
                    vec![record(
                        Group::Real,
                        &name,
                        0,
                        None,
                        res.as_ref().map(|(x, ms)| (x, *ms)).map_err(|e| e.clone()),
                        rule,
                    )]
                }
            };
            let false_leaks: usize =
                recs.iter().filter_map(|r| r.matched.as_ref()).map(|m| m.false_leaks).sum();
            let missed: usize = recs
                .iter()
                .filter_map(|r| r.matched.as_ref())
                .flat_map(|m| m.truth.iter())
                .filter(|o| o.volume_ml >= a.min_leak_ml && o.detected_as.is_none())
                .count();
            // Causes of this case's misses and false leaks, so a developer sees them as they come.
            let causes: Vec<String> = recs
                .iter()
                .filter_map(|r| r.diagnosis.as_ref().map(|d| (r.step, d)))
                .flat_map(|(k, d)| {
                    let missed = d.missed.iter().filter(|m| m.volume_ml >= a.min_leak_ml).map(move |m| {
                        format!("s{k} missed {} {:.3} mL: {}", m.site, m.volume_ml, m.cause.name())
                    });
                    let false_ = d.false_leaks.iter().map(move |f| {
                        format!(
                            "s{k} false {} {:.3} mL at {}: {}",
                            f.site,
                            f.volume_ml,
                            f.centroid_lps_mm,
                            f.cause.name()
                        )
                    });
                    missed.chain(false_)
                })
                .collect();
            if let Some(first) = recs.first() {
                // A hidden bar (stderr not a terminal) prints nothing: the line goes to stderr directly.
                let say = |line: String| if pb.is_hidden() { eprintln!("{line}") } else { pb.println(line) };
                say(format!(
                    "{}: {} scans, {missed} missed leaks, {false_leaks} false{}",
                    first.case,
                    recs.len(),
                    if recs.iter().any(|r| r.error.is_some()) { ", FAILED" } else { "" }
                ));
                for c in &causes {
                    say(format!("    {c}"));
                }
            }
            if let Ok(mut r) = records.lock() {
                r.extend(recs);
            }
            pb.inc(1);
        })
    });
    pb.finish();
    let mut records = records.into_inner().unwrap_or_default();
    records.sort_by(|x, y| x.group.cmp(&y.group).then(x.case.cmp(&y.case)).then(x.step.cmp(&y.step)));

    let mut summaries = Vec::new();
    let mut text = String::new();
    text.push_str(&format!(
        "cementleak evaluation: {} cases in {:.0} s; target hint {}; phantom seeds {}..{}, hybrid seeds {}..{}\n\
         matching: a detection matches a true leak when its voxels come within {} mm of it (box dilation, at \
         least one voxel); one-to-one, largest overlap first; a detection touching no true leak is false.\n\n",
        jobs.len(),
        t0.elapsed().as_secs_f64(),
        a.hint,
        a.seed_base,
        a.seed_base + a.cases as u64,
        hybrid_base,
        hybrid_base + h as u64,
        a.dilation_mm
    ));
    for g in [Group::Phantom, Group::Hybrid, Group::NeedleOnly, Group::Thermocouple, Group::Real] {
        let of: Vec<&ScanRecord> = records.iter().filter(|r| r.group == g).collect();
        if of.is_empty() {
            continue;
        }
        let s = summarize(&of, a.min_leak_ml);
        let goals = match g {
            Group::Phantom => Some(&PHANTOM_GOALS),
            Group::Hybrid => Some(&HYBRID_GOALS),
            _ => None,
        };
        text.push_str(&table(g.name(), &s, goals, a.min_leak_ml));
        text.push('\n');
        summaries.push((g, s));
    }
    for r in records.iter().filter(|r| r.error.is_some()) {
        text.push_str(&format!("failed: {} step {}: {}\n", r.case, r.step, r.error.as_deref().unwrap_or("")));
    }
    print!("{text}");
    let out = Output {
        schema: "cementleak.evaluation/1",
        matching_rule: format!(
            "detection voxels within {} mm (box dilation, >= 1 voxel) of the true leak; one-to-one greedy by overlap; \
             detections touching no true leak are false; true leaks < {} mL not counted in sensitivity",
            a.dilation_mm, a.min_leak_ml
        ),
        min_leak_ml: a.min_leak_ml,
        hint: &a.hint,
        model: model.map(|p| p.display().to_string()),
        phantom_seeds: [a.seed_base, a.seed_base + a.cases as u64],
        hybrid_seeds: [hybrid_base, hybrid_base + h as u64],
        summaries,
        records: &records,
    };
    if let Some(parent) = a.json.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&a.json, serde_json::to_vec_pretty(&out)?)?;
    println!("wrote {}", a.json.display());
    Ok(())
}

fn failed(group: Group, name: &str, e: String) -> ScanRecord {
    record(group, name, 0, None, Err(e), MatchRule::default())
}
