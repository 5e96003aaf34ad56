//! `cementleak info PATH [--series UID] [--json]`: what the loader makes of a CT series (DICOM folder/file or
//! NIfTI): identity, patient position, orientation in patient terms, grid, HU range, encoding, load time.

use crate::load::{load_scan, LoadOptions, Scan, SeriesInfo};
use crate::volume::{Direction, Lps};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// DICOM folder (any nesting), single DICOM file, or .nii/.nii.gz file.
    pub path: PathBuf,
    /// SeriesInstanceUID to load when the folder holds several CT series.
    #[arg(long)]
    pub series: Option<String>,
    /// Print machine-readable JSON on stdout instead of the short summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct AxisReport {
    /// Array axis 0 (slice), 1 (row) or 2 (column).
    axis: usize,
    /// +1 when increasing the index moves toward the direction.
    sign: i8,
}

#[derive(Serialize)]
struct Report<'a> {
    series: &'a SeriesInfo,
    /// `[slices, rows, columns]`.
    shape: [usize; 3],
    spacing_mm: [f64; 3],
    origin_lps: Lps,
    /// Unit LPS vectors of array axes 0, 1, 2.
    axes_lps: [[f64; 3]; 3],
    /// Row cosines then column cosines, as DICOM ImageOrientationPatient.
    image_orientation_patient: [f64; 6],
    orthogonal: bool,
    toward_posterior: AxisReport,
    toward_superior: AxisReport,
    toward_left: AxisReport,
    hu_min: f32,
    hu_max: f32,
    hu_mean: f64,
    load_seconds: f64,
    warnings: &'a [String],
}

fn toward(scan: &Scan, d: Direction) -> AxisReport {
    let a = scan.volume.geometry.axis_toward(d);
    AxisReport { axis: a.axis, sign: a.sign }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let scan = load_scan(&args.path, &LoadOptions { series_uid: args.series.clone() })?;
    let load_seconds = t0.elapsed().as_secs_f64();
    let g = &scan.volume.geometry;
    let (mut lo, mut hi, mut sum) = (f32::INFINITY, f32::NEG_INFINITY, 0.0f64);
    for v in scan.volume.data.iter().map(|&v| f32::from(v)) {
        lo = lo.min(v);
        hi = hi.max(v);
        sum += v as f64;
    }
    let n = scan.volume.voxel_count().max(1) as f64;
    let [a0, a1, a2] = g.axes;
    let report = Report {
        series: &scan.info,
        shape: scan.volume.shape(),
        spacing_mm: g.spacing.zyx(),
        origin_lps: g.origin,
        axes_lps: [a0.0, a1.0, a2.0],
        image_orientation_patient: [a2.0[0], a2.0[1], a2.0[2], a1.0[0], a1.0[1], a1.0[2]],
        orthogonal: g.is_orthogonal(1e-3),
        toward_posterior: toward(&scan, Direction::Posterior),
        toward_superior: toward(&scan, Direction::Superior),
        toward_left: toward(&scan, Direction::Left),
        hu_min: lo,
        hu_max: hi,
        hu_mean: sum / n,
        load_seconds,
        warnings: &scan.warnings,
    };
    if args.json {
        return super::print_stdout(&format!("{}\n", serde_json::to_string_pretty(&report)?));
    }
    let s = &scan.info;
    // Writing to a String cannot fail.
    let mut text = String::new();
    let axis_name = |a: &AxisReport| {
        let name = ["slice", "row", "column"][a.axis.min(2)];
        format!("{}{name}", if a.sign > 0 { "+" } else { "-" })
    };
    let _ = writeln!(text, "{}", s.path);
    let _ = writeln!(
        text,
        "  series      {} (#{}, \"{}\")",
        if s.series_instance_uid.is_empty() { "(no SeriesInstanceUID)" } else { &s.series_instance_uid },
        s.series_number.map_or("-".into(), |n| n.to_string()),
        s.series_description.as_deref().unwrap_or("")
    );
    let _ = writeln!(
        text,
        "  modality    {}   position {}   level {}",
        s.modality,
        s.patient_position.as_deref().unwrap_or("unknown"),
        s.level.as_deref().unwrap_or("-")
    );
    let iop = report.image_orientation_patient;
    let _ = writeln!(
        text,
        "  orientation IOP [{}]; posterior {}, superior {}, left {}{}",
        iop.map(|v| format!("{v:.3}")).join(", "),
        axis_name(&report.toward_posterior),
        axis_name(&report.toward_superior),
        axis_name(&report.toward_left),
        if report.orthogonal { "" } else { " (tilted, non-orthogonal grid)" }
    );
    let [z, y, x] = report.shape;
    let [sz, sy, sx] = report.spacing_mm;
    let _ = writeln!(
        text,
        "  shape       {z} x {y} x {x} (slices x rows x columns), spacing {sz:.3} x {sy:.3} x {sx:.3} mm"
    );
    let _ = writeln!(text, "  origin      {}", report.origin_lps);
    let _ = writeln!(text, "  HU          min {lo:.0}, max {hi:.0}, mean {:.1}", report.hu_mean);
    let _ = writeln!(text, "  encoding    {}", s.encoding);
    let _ = writeln!(text, "  loaded in   {:.2} s", load_seconds);
    for w in &scan.warnings {
        let _ = writeln!(text, "  warning     {w}");
    }
    super::print_stdout(&text)
}
