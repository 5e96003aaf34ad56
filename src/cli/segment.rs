//! `cementleak segment SCAN [--at X,Y,Z] --out DIR`: anatomy of the treated vertebra.
//!
//! Writes `labels.nii.gz` (uint8: 1 body, 2 canal + foramina, 3 discs, 4 posterior elements; RAS affine of the
//! scan grid), `axial.png` and `sagittal.png` (bone window, labels outlined, patient orientation) through the
//! body centroid, and `segment.json` (target, centroid, volume, posterior wall, endplates, timings).

use crate::anatomy::render::overlay;
use crate::anatomy::{segment, Anatomy, AnatomyError, TargetHint};
use crate::cli::InputError;
use crate::load::{load_scan, LoadOptions};
use crate::render::Plane;
use crate::volume::Lps;
use anyhow::Context;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// DICOM folder or .nii/.nii.gz file of the injection (or baseline) scan.
    pub scan: PathBuf,
    /// Target the vertebra containing or nearest this LPS point, mm: `--at X,Y,Z`.
    #[arg(long, value_parser = parse_lps, allow_hyphen_values = true)]
    pub at: Option<Lps>,
    /// Output folder (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// SeriesInstanceUID when the folder holds several CT series.
    #[arg(long)]
    pub series: Option<String>,
}

pub fn parse_lps(s: &str) -> Result<Lps, String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|t| t.trim().parse::<f64>().map_err(|e| format!("{t:?}: {e}")))
        .collect::<Result<_, _>>()?;
    match v.as_slice() {
        [x, y, z] if v.iter().all(|a| a.is_finite()) => Ok(Lps([*x, *y, *z])),
        _ => Err("expected three numbers X,Y,Z (LPS mm)".into()),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let scan = load_scan(&args.scan, &LoadOptions { series_uid: args.series.clone() })?;
    let load_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let hint = args.at.map_or(TargetHint::Auto, TargetHint::AtPoint);
    let anatomy = segment(&scan.volume, hint).map_err(|e| match e {
        // An image without a findable spine is an input the user must change (wrong series, wrong point).
        AnatomyError::BadInput(_) | AnatomyError::NoSpine(_) | AnatomyError::NoBody(_) => {
            anyhow::Error::new(InputError(e.to_string()))
        }
    })?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let t1 = Instant::now();
    crate::write::nifti::write_labels_nifti(&anatomy.labels, &args.out.join("labels.nii.gz"))
        .context("writing labels.nii.gz")?;
    for (view, name) in [(Plane::Axial, "axial.png"), (Plane::Sagittal, "sagittal.png")] {
        overlay(&scan.volume, &anatomy.labels, anatomy.body_centroid, view)
            .save(args.out.join(name))
            .with_context(|| format!("writing {name}"))?;
    }
    let write_ms = t1.elapsed().as_secs_f64() * 1000.0;
    let report = summary(&anatomy, &scan.info.path, load_ms, write_ms);
    std::fs::write(args.out.join("segment.json"), serde_json::to_string_pretty(&report)?)
        .context("writing segment.json")?;
    for w in scan.warnings.iter().chain(anatomy.warnings.iter()) {
        tracing::warn!("{w}");
    }
    println!(
        "body centroid {}, volume {:.1} mL, posterior wall intact: {}; wrote {}",
        anatomy.body_centroid,
        anatomy.body_volume_ml,
        anatomy.posterior_wall_intact.map_or("undetermined".to_string(), |b| b.to_string()),
        args.out.display()
    );
    Ok(())
}

fn summary(a: &Anatomy, input: &str, load_ms: f64, write_ms: f64) -> serde_json::Value {
    json!({
        "input": input,
        "target": {
            "source": a.target_source,
            "needle_tip_lps": a.needle_tip.map(|p| p.rounded()),
            "level": a.level,
            "body_centroid_lps": a.body_centroid.rounded(),
            "spine_axis_lps": a.spine_axis,
        },
        "body_volume_ml": (a.body_volume_ml * 100.0).round() / 100.0,
        "posterior_wall": {
            "intact": a.posterior_wall_intact,
            "normal_lps": a.posterior_wall.normal,
            "point_lps": a.posterior_wall.point.rounded(),
            "defect_fraction": a.posterior_wall.defect_fraction,
            "largest_defect_mm2": a.posterior_wall.largest_defect_mm2,
            "surface_points": a.posterior_wall.points.len(),
        },
        "endplates": a.endplates,
        "labels": {"1": "vertebral body", "2": "spinal canal and foramina", "3": "discs", "4": "posterior elements"},
        "warnings": a.warnings,
        "timings_ms": {
            "load": load_ms,
            "segment": a.timings,
            "write": write_ms,
        },
    })
}
