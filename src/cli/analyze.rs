//! `cementleak analyze --scan DIR [--baseline DIR] [--previous DIR] --out OUT [--masks] [--at X,Y,Z]
//! [--policy FILE] [--model FILE]`: the product's core command (contract in `../shared/spec/README.md`).
//!
//! The leak-site model: `--model FILE` (must load, else exit 2), else `$CEMENTLEAK_MODEL`, else
//! `models/leak_site.onnx` next to the executable, in the project the executable was built in
//! (`target/<profile>/` -> `../../models/`), or in the current folder. No model found, or ONNX Runtime not
//! available: sites from the anatomical rules alone, said in the report's warnings.
//!
//! Writes `OUT/key_*.png` (and `OUT/labels.nii.gz` with `--masks`) first and `OUT/report.json` last, each
//! atomically (temporary file + rename): a `report.json` in OUT means the whole analysis succeeded, and
//! the key images beside it are exactly those of that run. A stale `report.json` and stale `key_*.png`
//! from an earlier run are removed before anything is read, so a refused input never leaves a report
//! behind and an earlier run's extra leak images never sit beside a newer report.

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
    remove_stale_outputs(&args.out, &report_path)?;
    let policy = match &args.policy {
        Some(p) => AlertPolicy::load(p).map_err(|e| InputError(e.to_string()))?,
        None => AlertPolicy::default(),
    };

    // The three series and the leak-site model are independent: read them side by side. The model (ONNX
    // Runtime library and session) costs ~20 ms of one thread that would otherwise sit before the anatomy.
    let t = Instant::now();
    let (scan, baseline, previous, load_ms, model) = std::thread::scope(|s| {
        let m = s.spawn(|| {
            let t = Instant::now();
            load_model(args.model.as_deref()).map(|m| (m, t.elapsed().as_secs_f64() * 1000.0))
        });
        let b = s.spawn(|| args.baseline.as_deref().map(|p| load(p, "baseline")).transpose());
        let p = s.spawn(|| args.previous.as_deref().map(|p| load(p, "previous")).transpose());
        let scan = load(&args.scan, "injection");
        let panicked = || anyhow::anyhow!("a loader thread panicked");
        let (b, p) =
            (b.join().unwrap_or_else(|_| Err(panicked())), p.join().unwrap_or_else(|_| Err(panicked())));
        let load_ms = t.elapsed().as_secs_f64() * 1000.0;
        (scan, b, p, load_ms, m.join().unwrap_or_else(|_| Err(panicked())))
    });
    let (scan, baseline, previous) = (scan?, baseline?, previous?);
    let ((model, no_model), model_ms) = model?;

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
    // The label map (gzip, one thread) and the key images are independent: written side by side.
    let (masks, images) = rayon::join(
        || {
            let t = Instant::now();
            if args.masks {
                crate::write::nifti::write_labels_nifti(&analysis.labels, &args.out.join("labels.nii.gz"))
                    .context("writing labels.nii.gz")?;
            }
            anyhow::Ok(t.elapsed().as_secs_f64() * 1000.0)
        },
        || {
            let t = Instant::now();
            key_images(&scan.volume, &analysis).into_par_iter().try_for_each(|(name, img)| {
                write_png_atomically(&img, &args.out.join(format!("{name}.png")))
            })?;
            anyhow::Ok(t.elapsed().as_secs_f64() * 1000.0)
        },
    );
    let (masks_ms, images_ms) = (masks?, images?);

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

/// Remove what an earlier run left in OUT: `report.json` first (so a refused input never leaves a report
/// behind), then its key images, so that OUT only ever holds the key images of the run that wrote the
/// report (an earlier scan may have had more leaks, hence more images).
fn remove_stale_outputs(out: &Path, report_path: &Path) -> anyhow::Result<()> {
    let remove = |path: &Path| match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(e).context(format!("cannot remove stale {}", path.display())))
        }
        _ => Ok(()),
    };
    remove(report_path)?;
    let Ok(entries) = std::fs::read_dir(out) else { return Ok(()) };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if is_key_image_name(&name) {
            remove(&entry.path())?;
        }
    }
    Ok(())
}

/// A key image of ours, or the temporary file of one (see [`write_png_atomically`]).
fn is_key_image_name(name: &str) -> bool {
    name.starts_with("key_") && (name.ends_with(".png") || name.ends_with(".png.partial"))
}

/// Encode `img` as PNG and write it through a temporary file and a rename: a failed or killed run leaves
/// a complete image or none, never a truncated one under the final name.
fn write_png_atomically(img: &image::RgbImage, path: &Path) -> anyhow::Result<()> {
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .with_context(|| format!("encoding {}", path.display()))?;
    let tmp = path.with_extension("png.partial");
    let written = std::fs::write(&tmp, &png).and_then(|_| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("writing {}", path.display()))
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
