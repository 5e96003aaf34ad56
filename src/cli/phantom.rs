//! `cementleak phantom`: generate a synthetic vertebroplasty injection sequence with ground truth.

use crate::cli::InputError;
use crate::leaks::Site;
use crate::phantom::{self, LesionType, Level, PhantomSpec, ThermocouplePlace};
use crate::volume::PatientPosition;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output folder (scan_00_baseline/, scan_01_.../, case.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed: the same seed gives byte-identical output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Treated level T5..T12 or L1..L5 (default: from the seed).
    #[arg(long)]
    pub level: Option<String>,
    /// Patient position HFP (default), HFS, HFDL or HFDR.
    #[arg(long, default_value = "HFP")]
    pub position: String,
    /// Maximum number of injection scans after the baseline.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Leak sites to produce, comma separated: canal, posterior_vein, disc, paraspinal; "none" for none.
    #[arg(long)]
    pub leaks: Option<String>,
    /// Lesion type: lytic, blastic or mixed.
    #[arg(long)]
    pub lesion: Option<String>,
    /// Posterior wall of the body intact (true/false).
    #[arg(long)]
    pub wall_intact: Option<bool>,
    /// Bilateral needles (true/false).
    #[arg(long)]
    pub bilateral: Option<bool>,
    /// Thermocouple: canal, foramen or none.
    #[arg(long)]
    pub thermocouple: Option<String>,
    /// Total cement volume to inject (mL).
    #[arg(long)]
    pub total_ml: Option<f64>,
    #[arg(long)]
    pub slice_thickness: Option<f64>,
    #[arg(long)]
    pub pixel: Option<f64>,
    #[arg(long)]
    pub slices: Option<usize>,
    /// Image matrix (rows = columns).
    #[arg(long, default_value_t = 512)]
    pub matrix: usize,
    /// No patient motion between scans.
    #[arg(long)]
    pub no_motion: bool,
    /// Leak site(s) to produce: canal, posterior_vein, disc, paraspinal (repeatable; adds to --leaks).
    #[arg(long = "leak", num_args = 1..)]
    pub leak: Vec<String>,
    /// Hybrid mode: insert needle, cement and leaks into this real CT (DICOM folder or NIfTI file).
    #[arg(long, requires_all = ["vertebra_mask", "vertebra_label"])]
    pub hybrid: Option<PathBuf>,
    /// Hybrid: NIfTI label volume holding the treated vertebra (whole vertebra; may also hold the cord, 79).
    #[arg(long, requires = "hybrid")]
    pub vertebra_mask: Option<PathBuf>,
    /// Hybrid: label of the treated vertebra in --vertebra-mask (TotalSegmentator: 31 = L1 ... 27 = L5, 32 = T12).
    #[arg(long, requires = "hybrid")]
    pub vertebra_label: Option<u32>,
    /// Hybrid: NIfTI mask of vertebral bodies (and discs, label 2); without it the body is the vertebra's
    /// part anterior to the canal.
    #[arg(long, requires = "hybrid")]
    pub body_mask: Option<PathBuf>,
    /// Hybrid: label of the bodies in --body-mask.
    #[arg(long, default_value_t = 1)]
    pub body_label: u32,
    /// Hybrid: label of the discs in --body-mask.
    #[arg(long, default_value_t = 2)]
    pub disc_label: u32,
}

fn parse<T: std::str::FromStr<Err = String>>(v: &Option<String>) -> anyhow::Result<Option<T>> {
    v.as_deref().map(|s| s.parse::<T>().map_err(|e| anyhow::Error::new(InputError(e)))).transpose()
}

pub fn build_spec(a: &Args) -> anyhow::Result<PhantomSpec> {
    let mut s = PhantomSpec::from_seed(a.seed);
    s.level = parse::<Level>(&a.level)?;
    s.position = a.position.parse::<PatientPosition>().map_err(InputError)?;
    s.lesion = parse::<LesionType>(&a.lesion)?;
    s.posterior_wall_intact = a.wall_intact;
    s.bilateral = a.bilateral;
    s.steps = a.steps;
    s.total_ml = a.total_ml;
    s.slice_thickness_mm = a.slice_thickness;
    s.pixel_mm = a.pixel;
    s.slices = a.slices;
    s.matrix = a.matrix;
    s.motion = !a.no_motion;
    s.leak_sites = leak_sites(a)?;
    if let Some(t) = &a.thermocouple {
        s.thermocouple = Some(match t.trim().to_ascii_lowercase().as_str() {
            "none" => None,
            "canal" => Some(ThermocouplePlace::Canal),
            "foramen" => Some(ThermocouplePlace::Foramen),
            o => {
                return Err(
                    InputError(format!("unknown thermocouple place {o:?} (canal, foramen, none)")).into()
                )
            }
        });
    }
    Ok(s)
}

/// Sites from `--leaks a,b` and `--leak a b`; `None` when neither is given (drawn from the seed).
fn leak_sites(a: &Args) -> anyhow::Result<Option<Vec<Site>>> {
    let mut words: Vec<&str> = a.leak.iter().flat_map(|l| l.split(',')).collect();
    if let Some(l) = &a.leaks {
        words.extend(l.split(','));
    }
    if a.leaks.is_none() && a.leak.is_empty() {
        return Ok(None);
    }
    let sites = words
        .into_iter()
        .map(str::trim)
        .filter(|w| !w.is_empty() && !w.eq_ignore_ascii_case("none"))
        .map(|w| w.parse::<Site>().map_err(InputError))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(sites))
}

pub(crate) fn bar(len: u64, msg: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_message(msg.to_string());
    pb
}

pub fn run(a: Args) -> anyhow::Result<()> {
    if a.hybrid.is_some() {
        return super::phantom_hybrid::run(a);
    }
    let spec = build_spec(&a)?;
    let t0 = std::time::Instant::now();
    let pb = bar(1, "generate");
    let case = phantom::generate_case_with(&spec, &mut |d, n| {
        pb.set_length(n as u64);
        pb.set_position(d as u64);
    })
    .map_err(|e| match e {
        phantom::PhantomError::InvalidSpec(m) => anyhow::Error::new(InputError(m)),
        o => anyhow::Error::new(o),
    })?;
    pb.finish();
    let gen_s = t0.elapsed().as_secs_f64();
    let pb = bar(case.scans.len() as u64, "write");
    phantom::write::write_case_with(&case, &a.out, &mut |d, _| pb.set_position(d as u64))
        .with_context(|| format!("writing the case to {}", a.out.display()))?;
    pb.finish();
    tracing::info!(generate_s = gen_s, total_s = t0.elapsed().as_secs_f64(), "phantom written");
    let s = &case.summary;
    println!(
        "{}: seed {} level {} {} lesion {} wall_intact {} scans {} leaks {:?} (generated in {:.1} s, total {:.1} s)",
        a.out.display(),
        s.seed,
        s.level,
        s.position,
        s.lesion,
        s.posterior_wall_intact,
        s.scans,
        s.leak_sites.iter().map(|l| l.name()).collect::<Vec<_>>(),
        gen_s,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
