//! `cementleak patches --out DIR --seeds A..B`: training patches for the leak-site model.
//!
//! For every seed, a phantom injection sequence is generated and each injection scan goes through
//! `analyze::locate`, the very function `cementleak analyze` uses (anatomy on the baseline carried onto the
//! scan, cement against the baseline and the previous scan, carry/resplit, reclaim, escape); every leak
//! component it returns becomes one patch (`crate::leaks::patch`, the code inference uses) with the anatomy
//! channels of that same run, labelled from the phantom's truth label map: the leak site (labels 11-14) its
//! voxels overlap most, or `not_cement` when it overlaps no true leak (streaks, registration residue,
//! intravertebral cement outside the body mask). Training on the pipeline's components and anatomy rather
//! than the truth's is deliberate: that is what the model sees at inference.
//!
//! `--truth-body` (off by default) also splits the cement a second time on the phantom's true body mask
//! (`source` = `truth_body`) and exports the components on a true leak. It was the default while the
//! anatomy was segmented on the scan, whose body swallowed almost every leak. With the baseline's anatomy,
//! on seeds 1000-1001 (`--model-mm 1.0 --fov-mm 180 --steps 3`, six true leaks over the scans) the
//! pipeline's split finds 3 (posterior vein, disc, canal; 0 before the change) and the truth split 5 (the
//! disc leaks, not the canal one). The truth split's extra finds are disc leaks the carried body still
//! swallows whole: inference never asks the model about them, and its components (bigger, with another
//! intravertebral channel) are not what inference hands over, so they are left out unless asked for (e.g.
//! when positives are too few to train on).
//!
//! Writes `DIR/<name>.npy` (float32 `[channels, d, h, w]`) and `DIR/patches.csv` (one row per patch, plus
//! the cases that failed and why in `DIR/failures.csv`).

use crate::analyze::{locate, LocateInputs, Location};
use crate::anatomy::TargetHint;
use crate::cement::{detect, CementComponent, CementInputs, CementParams};
use crate::cli::InputError;
use crate::leaks::rules::RuleOpinion;
use crate::leaks::{extract_patch, ModelClass, Site};
use crate::phantom::{generate_case, resolve_spec, PhantomCase, PhantomSpec};
use crate::volume::{labels, PatientPosition, Volume};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed range, half-open: `--seeds 1000..1100`.
    #[arg(long, value_parser = parse_range)]
    pub seeds: (u64, u64),
    /// Patient positions, cycled over blocks of six seeds.
    #[arg(long, value_delimiter = ',', default_value = "HFP,HFS,HFDL,HFDR")]
    pub positions: Vec<String>,
    /// Name of this set in patches.csv (train, test...).
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Injection scans per case after the baseline.
    #[arg(long, default_value_t = 4)]
    pub steps: usize,
    /// Field of view, mm: the matrix is chosen from each case's pixel size to cover it (faster than 512).
    #[arg(long, default_value_t = 220.0)]
    pub fov_mm: f64,
    /// Resolution of the phantom's fine patient model, mm.
    #[arg(long, default_value_t = 0.5)]
    pub model_mm: f64,
    /// Also export the true leaks of a cement split on the phantom's true body mask (`source` =
    /// `truth_body`). Off by default: inference never hands the model those components (see the module doc).
    #[arg(long)]
    pub truth_body: bool,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("{s:?}: expected A..B"))?;
    let a: u64 = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let b: u64 = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    if b <= a {
        return Err(format!("empty seed range {a}..{b}"));
    }
    Ok((a, b))
}

/// Leak sites asked of the phantom for a seed, in blocks of six seeds: each site alone, then a posterior
/// vein leak and a canal leak each with a second site. The two posterior-wall sites get extra cases because
/// their leaks are small and the pipeline finds fewer of them.
pub fn sites_for_seed(seed: u64) -> Vec<Site> {
    let other = if (seed / 6) % 2 == 0 { Site::Disc } else { Site::Paraspinal };
    match seed % 6 {
        0 => vec![Site::Canal],
        1 => vec![Site::PosteriorVein],
        2 => vec![Site::Disc],
        3 => vec![Site::Paraspinal],
        4 => vec![Site::PosteriorVein, other],
        _ => vec![Site::Canal, other],
    }
}

/// Patient position for a seed: one position per block of six seeds (one block covers every site), cycled.
pub fn position_for_seed(seed: u64, positions: &[PatientPosition]) -> PatientPosition {
    positions[((seed / 6) % positions.len().max(1) as u64) as usize]
}

/// Which body mask split the cement into intravertebral and leak components. The patch itself (anatomy
/// channels included) always comes from the pipeline's anatomy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The product's own run: body from `anatomy::segment`. Every component is exported.
    Pipeline,
    /// Body from the phantom's truth: leaks that an over-grown segmented body would swallow as
    /// intravertebral cement. Only components on a true leak are exported (negatives come from the
    /// pipeline run).
    TruthBody,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Pipeline => "pipeline",
            Source::TruthBody => "truth_body",
        }
    }
    fn tag(self) -> &'static str {
        match self {
            Source::Pipeline => "p",
            Source::TruthBody => "t",
        }
    }
}

/// One exported patch: a row of patches.csv.
#[derive(Clone, Debug)]
struct Row {
    file: String,
    source: Source,
    seed: u64,
    scan: usize,
    component: u32,
    position: PatientPosition,
    level: String,
    lesion: String,
    label: &'static str,
    /// Component voxels on truth labels 10 (intravertebral cement) and 11..14 (the four leak sites).
    overlap: [usize; 5],
    voxels: usize,
    volume_ml: f64,
    touches_body: bool,
    mirrored: bool,
    /// The anatomical rules' reading of the same component (`leaks::rules`), so the model, the rules and
    /// their fusion can be compared on the same held-out components.
    rule: RuleOpinion,
}

const CSV_HEADER: &str =
    "file,split,source,seed,scan,component,position,level,lesion,label,voxels,volume_ml,\
touches_body,mirrored,truth_intravertebral,truth_canal,truth_posterior_vein,truth_disc,truth_paraspinal,\
rule_site,rule_foraminal,rule_confidence,rule_canal,rule_foramen,rule_disc,rule_outside,rule_venous_zone,\
rule_length_mm,rule_width_mm,rule_depth_mm,rule_section_width_mm,rule_section_depth_mm";

/// Truth class of a component: the leak label it overlaps most.
fn label_component(truth: &Volume<u8>, comp: &CementComponent) -> (&'static str, [usize; 5]) {
    let mut overlap = [0usize; 5];
    for v in &comp.voxels {
        if let Some(&l) = truth.data.get(*v) {
            if (labels::CEMENT..=labels::LEAK_PARASPINAL).contains(&l) {
                overlap[(l - labels::CEMENT) as usize] += 1;
            }
        }
    }
    let best = (1..5).filter(|&i| overlap[i] > 0).max_by_key(|&i| (overlap[i], std::cmp::Reverse(i)));
    let class = match best.and_then(|i| Site::from_label(labels::CEMENT + i as u8)) {
        Some(site) => ModelClass::Site(site),
        None => ModelClass::NotCement,
    };
    (class.name(), overlap)
}

fn case_spec(seed: u64, position: PatientPosition, a: &Args) -> anyhow::Result<PhantomSpec> {
    let mut s = PhantomSpec::from_seed(seed);
    s.position = position;
    s.leak_sites = Some(sites_for_seed(seed));
    s.steps = Some(a.steps);
    s.model_mm = a.model_mm;
    let resolved = resolve_spec(&s).map_err(|e| InputError(e.to_string()))?;
    let pixel = resolved.pixel_mm.unwrap_or(0.8);
    s.matrix = ((a.fov_mm / pixel).ceil() as usize).clamp(64, 512);
    Ok(s)
}

/// Patches of every injection scan of one case, written to `out`.
fn case_patches(case: &PhantomCase, out: &Path, split: &str, truth_body: bool) -> anyhow::Result<Vec<Row>> {
    let seed = case.spec.seed;
    let base = case.scans.first().context("case without scans")?;
    let params = CementParams::default();
    let mut rows = Vec::new();
    for k in 1..case.scans.len() {
        let scan = &case.scans[k];
        // Exactly what `cementleak analyze` does with this scan, its baseline and the previous scan.
        let inputs = LocateInputs {
            scan: &scan.ct,
            baseline: Some(&base.ct),
            previous: (k > 1).then(|| &case.scans[k - 1].ct),
            hint: TargetHint::Auto,
        };
        let located =
            match locate(&inputs, &params).with_context(|| format!("seed {seed} scan {k}: locate"))? {
                Location::Found(l) => l,
                Location::NotFound { why, .. } => {
                    tracing::warn!(seed, scan = k, "anatomy failed: {why}");
                    continue;
                }
            };
        let anatomy = &located.anatomy;
        log_truth_coverage(seed, k, &scan.labels, &located.findings);
        let sources: &[Source] =
            if truth_body { &[Source::Pipeline, Source::TruthBody] } else { &[Source::Pipeline] };
        for &source in sources {
            let truth_findings;
            let findings = match source {
                Source::Pipeline => &located.findings,
                Source::TruthBody => {
                    let body = scan.anatomy.mask_of(labels::VERTEBRAL_BODY);
                    let inputs = CementInputs {
                        scan: &scan.ct,
                        baseline: Some(&base.ct),
                        previous: (k > 1).then(|| &case.scans[k - 1].ct),
                        body: &body,
                        canal: None,
                    };
                    truth_findings =
                        detect(&inputs, &params).with_context(|| format!("seed {seed} scan {k}: cement"))?;
                    &truth_findings
                }
            };
            for comp in &findings.leaks {
                let (label, overlap) = label_component(&scan.labels, comp);
                if source == Source::TruthBody && label == ModelClass::NotCement.name() {
                    continue;
                }
                let patch = extract_patch(&scan.ct, anatomy, findings, comp)
                    .with_context(|| format!("seed {seed} scan {k} component {}", comp.id))?;
                let file = format!("{split}_s{seed}_k{k}_{}{}.npy", source.tag(), comp.id);
                crate::leaks::npy::write_f32(&out.join(&file), &patch.data)
                    .with_context(|| format!("writing {file}"))?;
                rows.push(Row {
                    file,
                    source,
                    seed,
                    scan: k,
                    component: comp.id,
                    position: case.summary.position,
                    level: case.summary.level.to_string(),
                    lesion: case.summary.lesion.to_string(),
                    label,
                    overlap,
                    voxels: comp.voxels.len(),
                    volume_ml: comp.volume_ml,
                    touches_body: comp.touches_body,
                    mirrored: patch.mirrored,
                    rule: located.frame.classify(&anatomy.labels, comp),
                });
            }
        }
    }
    Ok(rows)
}

/// Where the truth leak voxels of a scan went in the pipeline: found as leak, taken as intravertebral,
/// or missed. Logged at INFO (`RUST_LOG=cementleak=info`) to see where pipeline and truth disagree.
fn log_truth_coverage(seed: u64, k: usize, truth: &Volume<u8>, f: &crate::cement::CementFindings) {
    let leak_vox: std::collections::HashSet<[usize; 3]> =
        f.leaks.iter().flat_map(|c| c.voxels.iter().copied()).collect();
    for code in labels::LEAK_CANAL..=labels::LEAK_PARASPINAL {
        let (mut n, mut as_leak, mut as_intra) = (0usize, 0usize, 0usize);
        for ((z, y, x), &l) in truth.data.indexed_iter() {
            if l != code {
                continue;
            }
            n += 1;
            if leak_vox.contains(&[z, y, x]) {
                as_leak += 1;
            } else if f.intravertebral.data[(z, y, x)] {
                as_intra += 1;
            }
        }
        if n > 0 {
            let site = Site::from_label(code).map_or("?", |s| s.name());
            tracing::info!(seed, scan = k, site, voxels = n, as_leak, as_intra, "truth leak coverage");
        }
    }
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let positions: Vec<PatientPosition> = a
        .positions
        .iter()
        .map(|p| p.parse::<PatientPosition>().map_err(InputError))
        .collect::<Result<_, _>>()?;
    if positions.is_empty() {
        return Err(InputError("--positions is empty".into()).into());
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let (lo, hi) = a.seeds;
    let seeds: Vec<u64> = (lo..hi).collect();
    let pb = ProgressBar::new(seeds.len() as u64);
    pb.set_style(
        ProgressStyle::with_template("patches [{bar:30}] {pos}/{len} cases {elapsed} (eta {eta}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t0 = std::time::Instant::now();
    let results: Vec<(u64, Result<Vec<Row>, String>)> = seeds
        .par_iter()
        .map(|&seed| {
            let position = position_for_seed(seed, &positions);
            let result = case_spec(seed, position, &a)
                .and_then(|spec| generate_case(&spec).map_err(anyhow::Error::new))
                .and_then(|case| case_patches(&case, &a.out, &a.split, a.truth_body))
                .map_err(|e| format!("{e:#}"));
            pb.inc(1);
            if let Ok(rows) = &result {
                pb.set_message(format!("seed {seed}: {} patches", rows.len()));
            }
            (seed, result)
        })
        .collect();
    pb.finish();

    let mut csv = String::from(CSV_HEADER);
    csv.push('\n');
    let mut failures = String::from("seed,error\n");
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut truth_counts = std::collections::BTreeMap::<&str, usize>::new();
    for (seed, r) in &results {
        match r {
            Ok(rows) => {
                for r in rows {
                    if r.source == Source::Pipeline {
                        *counts.entry(r.label).or_default() += 1;
                    } else {
                        *truth_counts.entry(r.label).or_default() += 1;
                    }
                    let o = r.overlap;
                    let e = &r.rule.evidence;
                    csv.push_str(&format!(
                        "{},{},{},{},{},{},{},{},{},{},{},{:.5},{},{},{},{},{},{},{},{},{},{:.3},{:.3},{:.3},{:.3},\
                         {:.3},{:.3},{:.2},{:.2},{:.2},{:.2},{:.2}\n",
                        r.file,
                        a.split,
                        r.source.name(),
                        r.seed,
                        r.scan,
                        r.component,
                        r.position,
                        r.level,
                        r.lesion,
                        r.label,
                        r.voxels,
                        r.volume_ml,
                        r.touches_body,
                        r.mirrored,
                        o[0],
                        o[1],
                        o[2],
                        o[3],
                        o[4],
                        r.rule.site,
                        r.rule.foraminal,
                        r.rule.confidence,
                        e.canal,
                        e.foramen,
                        e.disc,
                        e.outside,
                        e.venous_zone,
                        e.length_mm,
                        e.width_mm,
                        e.depth_mm,
                        e.section_width_mm,
                        e.section_depth_mm
                    ));
                }
            }
            Err(e) => failures.push_str(&format!("{seed},\"{}\"\n", e.replace('"', "'"))),
        }
    }
    let write = |name: &str, text: &str| -> anyhow::Result<()> {
        let path = a.out.join(name);
        let mut f = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))
    };
    write("patches.csv", &csv)?;
    write("failures.csv", &failures)?;
    let failed = results.iter().filter(|r| r.1.is_err()).count();
    let summary = |counts: &std::collections::BTreeMap<&str, usize>| {
        let per_class = ModelClass::ALL
            .iter()
            .map(|c| format!("{} {}", c.name(), counts.get(c.name()).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join(", ");
        format!("{} ({per_class})", counts.values().sum::<usize>())
    };
    let extra = if a.truth_body {
        format!("; extra leak patches from the truth body split: {}", summary(&truth_counts))
    } else {
        String::new()
    };
    crate::cli::print_stdout(&format!(
        "{}: {} cases ({failed} failed) in {:.0} s; patches from the pipeline's split: {}{extra}\n",
        a.out.display(),
        seeds.len(),
        t0.elapsed().as_secs_f64(),
        summary(&counts),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_site_is_asked_for() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..6 {
            let s = sites_for_seed(seed);
            assert!(!s.is_empty() && s.len() <= 2);
            seen.extend(s);
        }
        assert_eq!(seen.len(), 4);
        let all = PatientPosition::ALL;
        let used: std::collections::HashSet<_> = (0..24).map(|s| position_for_seed(s, &all)).collect();
        assert_eq!(used.len(), 4);
        assert!(parse_range("5..3").is_err() && parse_range("3..5") == Ok((3, 5)));
    }

    #[test]
    fn label_is_the_most_overlapped_leak_site() {
        let g = crate::volume::Geometry::axial_hfs(
            crate::volume::Lps::default(),
            crate::volume::Spacing { slice: 1.0, row: 1.0, column: 1.0 },
        );
        let mut truth = Volume::new(ndarray::Array3::<u8>::zeros([1, 1, 6]), g);
        truth.data[(0, 0, 0)] = labels::CEMENT;
        truth.data[(0, 0, 1)] = labels::CEMENT;
        truth.data[(0, 0, 2)] = labels::LEAK_DISC;
        truth.data[(0, 0, 3)] = labels::LEAK_CANAL;
        truth.data[(0, 0, 4)] = labels::LEAK_CANAL;
        let comp = |voxels: Vec<[usize; 3]>| CementComponent {
            id: 1,
            voxels,
            volume_ml: 0.0,
            centroid: crate::volume::Lps::default(),
            max_hu: 0.0,
            touches_body: false,
            previous_ml: None,
        };
        let all = comp((0..6).map(|x| [0, 0, x]).collect());
        assert_eq!(label_component(&truth, &all), ("canal", [2, 2, 0, 1, 0]));
        assert_eq!(label_component(&truth, &comp(vec![[0, 0, 0], [0, 0, 1], [0, 0, 5]])).0, "not_cement");
        assert_eq!(label_component(&truth, &comp(vec![[0, 0, 2], [0, 0, 5]])).0, "disc");
    }
}
