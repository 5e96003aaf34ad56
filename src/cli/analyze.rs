//! `cementleak analyze --scan DIR [--baseline DIR] [--previous DIR] --out OUT [--masks] [--at X,Y,Z]
//! [--policy FILE] [--model FILE]`: the product's core command (contract in `../shared/spec/README.md`).
//!
//! The leak-site model: `--model FILE` (must load, else exit 2), else `$CEMENTLEAK_MODEL`, else
//! `models/leak_site.onnx` next to the executable, in the project the executable was built in
//! (`target/<profile>/` -> `../../models/`), or in the current folder. No model found, or ONNX Runtime not
//! available: sites from the anatomical rules alone, said in the report's warnings.
//!
//! Writes `OUT/key_*.png` (and `OUT/labels.nii.gz` with `--masks`) first and `OUT/report.json` last,
//! atomically: a `report.json` in OUT means the whole analysis succeeded. A stale `report.json` from an
//! earlier run is removed before anything is read, so a refused input never leaves a report behind.

use crate::alert::AlertPolicy;
use crate::analyze::{key_images::key_images, site_summary, AnalyzeError, AnalyzeInputs, Analyzer};
use crate::anatomy::TargetHint;
use crate::cli::segment::parse_lps;
use crate::cli::InputError;
use crate::leaks::model::{LeakModel, DEFAULT_MODEL_PATH};
use crate::load::{load_scan, LoadOptions, Scan};
use crate::volume::Lps;
use anyhow::Context;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The scan to analyse: DICOM folder or .nii/.nii.gz file.
    #[arg(long)]
    pub scan: PathBuf,
    /// The scan after needle placement, before any cement.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// The scan after the previous injection.
    #[arg(long)]
    pub previous: Option<PathBuf>,
    /// Output folder (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write labels.nii.gz (spec label map on the scan grid).
    #[arg(long)]
    pub masks: bool,
    /// Target the vertebra containing or nearest this LPS point, mm: `--at X,Y,Z`.
    #[arg(long, value_parser = parse_lps, allow_hyphen_values = true)]
    pub at: Option<Lps>,
    /// Alert policy file (TOML, see config/alert_policy.toml); default: the shipped policy.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Leak-site ONNX model; default: $CEMENTLEAK_MODEL or models/leak_site.onnx (see above).
    #[arg(long)]
    pub model: Option<PathBuf>,
}

/// Default model locations, most specific first.
fn model_candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("CEMENTLEAK_MODEL") {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        out.push(dir.join(DEFAULT_MODEL_PATH));
        out.push(dir.join("../..").join(DEFAULT_MODEL_PATH));
    }
    out.push(PathBuf::from(DEFAULT_MODEL_PATH));
    out
}

/// The model to use and, when there is none, why (for the report's warnings).
fn load_model(explicit: Option<&Path>) -> anyhow::Result<(Option<LeakModel>, Option<String>)> {
    if let Some(p) = explicit {
        return Ok((Some(LeakModel::load(p).map_err(|e| InputError(e.to_string()))?), None));
    }
    let Some(path) = model_candidates().into_iter().find(|p| p.is_file()) else {
        return Ok((
            None,
            Some(format!("no leak-site model found ({DEFAULT_MODEL_PATH}, $CEMENTLEAK_MODEL)")),
        ));
    };
    match LeakModel::load(&path) {
        Ok(m) => Ok((Some(m), None)),
        Err(e) => Ok((None, Some(format!("leak-site model not used: {e}")))),
    }
}

fn load(path: &Path, what: &str) -> anyhow::Result<Scan> {
    load_scan(path, &LoadOptions::default()).with_context(|| format!("{what} scan"))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let report_path = args.out.join("report.json");
    match std::fs::remove_file(&report_path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(
                anyhow::Error::new(e).context(format!("cannot remove stale {}", report_path.display()))
            )
        }
        _ => {}
    }
    let policy = match &args.policy {
        Some(p) => AlertPolicy::load(p).map_err(|e| InputError(e.to_string()))?,
        None => AlertPolicy::default(),
    };

    // The three series are independent: read them side by side.
    let t = Instant::now();
    let (scan, baseline, previous) = std::thread::scope(|s| {
        let b = s.spawn(|| args.baseline.as_deref().map(|p| load(p, "baseline")).transpose());
        let p = s.spawn(|| args.previous.as_deref().map(|p| load(p, "previous")).transpose());
        let scan = load(&args.scan, "injection");
        let join = |h: std::thread::ScopedJoinHandle<'_, anyhow::Result<Option<Scan>>>| {
            h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a loader thread panicked")))
        };
        (scan, join(b), join(p))
    });
    let (scan, baseline, previous) = (scan?, baseline?, previous?);
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;

    let t = Instant::now();
    let (model, no_model) = load_model(args.model.as_deref())?;
    let model_ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut analyzer = Analyzer::new(policy, model);
    let inputs = AnalyzeInputs {
        scan: &scan,
        baseline: baseline.as_ref(),
        previous: previous.as_ref(),
        hint: args.at.map_or(TargetHint::Auto, TargetHint::AtPoint),
    };
    let mut analysis = analyzer.run(&inputs).map_err(|e| match e {
        AnalyzeError::BadInput(_) => anyhow::Error::new(InputError(e.to_string())),
        e => anyhow::Error::new(e),
    })?;

    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let t = Instant::now();
    if args.masks {
        crate::write::nifti::write_labels_nifti(&analysis.labels, &args.out.join("labels.nii.gz"))
            .context("writing labels.nii.gz")?;
    }
    let masks_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = Instant::now();
    key_images(&scan.volume, &analysis).into_par_iter().try_for_each(|(name, img)| {
        let path = args.out.join(format!("{name}.png"));
        img.save(&path).with_context(|| format!("writing {}", path.display()))
    })?;
    let images_ms = t.elapsed().as_secs_f64() * 1000.0;

    if let Some(why) = no_model {
        analysis.report.warnings.push(why);
    }
    let timing = &mut analysis.report.timing_ms;
    timing.insert("model_load".into(), round2(model_ms));
    timing.insert("analysis".into(), timing.get("total").copied().unwrap_or(0.0));
    timing.insert("load".into(), round2(load_ms));
    if args.masks {
        timing.insert("masks".into(), round2(masks_ms));
    }
    timing.insert("key_images".into(), round2(images_ms));
    // Run start to the report about to be written (serialising it takes well under a millisecond).
    timing.insert("total".into(), round2(t0.elapsed().as_secs_f64() * 1000.0));
    crate::report::write_json_atomically(&analysis.report, &report_path).context("writing report.json")?;

    let r = &analysis.report;
    for w in &r.warnings {
        tracing::warn!("{w}");
    }
    crate::cli::print_stdout(&format!(
        "{}: {} ({}); cement {:.2} mL, posterior wall {}; {:.0} ms; wrote {}\n",
        r.alert.level.name(),
        r.alert
            .reasons
            .iter()
            .find(|why| why.starts_with(r.alert.level.name()))
            .map_or("no finding that needs action", String::as_str),
        site_summary(r),
        r.cement.intravertebral_volume_ml,
        r.cement.posterior_wall_distance_mm.map_or("-".into(), |d| format!("{d:.1} mm")),
        r.timing_ms.get("total").copied().unwrap_or(0.0),
        report_path.display()
    ))
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
