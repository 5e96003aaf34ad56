//! Hybrid cases: needle, cement and leaks inserted into a real CT, given the treated vertebra's mask, so that
//! what works on synthetic phantoms can be checked on real anatomy and real noise.
//!
//! ```text
//! pub struct HybridSpec { seed, vertebra_label, body_label (1), disc_label (2), cord_label (Some(79)),
//!                         level, leak_sites, bilateral, thermocouple, steps, total_ml, motion, model_mm }
//! pub struct HybridInputs { ct: Scan, vertebra: Volume<i16>, body: Option<Volume<i16>> }
//! pub fn generate_hybrid(&HybridInputs, &HybridSpec) -> Result<PhantomCase, PhantomError>
//! ```
//!
//! The same machinery as the synthetic phantom: [`masks`] turns the real CT and its masks into the fine
//! patient model (`grid::FineGrid`); [`scene`] answers the injection's questions (posterior wall, leak
//! portals and regions) from the masks; `devices::Devices` holds the needles, `injection::plan` grows the
//! cement and leaks, [`insert`] writes them into the real image on its own grid with the phantom's partial
//! volume, blur and metal streak model, and truth is measured by the same code (`measure_leaks`). The case is
//! a `PhantomCase` written by `write_case`. Scans are at the real grid (the 3 mm trunk CT stays 3 mm).
//!
//! Masks may lie on another grid than the CT: every lookup goes through patient coordinates.

pub mod insert;
pub mod masks;
pub mod scene;

use super::acquisition::Scanner;
use super::devices::{Devices, Rod};
use super::spec::{LesionType, Level, PhantomSpec, ThermocouplePlace};
use super::{injection, noise, resolve_spec, round4, CaseSummary, PhantomCase, PhantomError, Sequence};
use crate::leaks::Site;
use crate::load::Scan;
use crate::volume::{PatientPosition, Volume};
use masks::Derived;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A hybrid case request; the seed decides what is left `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct HybridSpec {
    pub seed: u64,
    /// Label of the treated vertebra in the vertebra mask (TotalSegmentator codes: 31 = L1 ... 27 = L5,
    /// 32 = T12, 33 = T11).
    pub vertebra_label: u32,
    /// Labels of the body mask (when one is given): vertebral bodies and discs.
    pub body_label: u32,
    pub disc_label: u32,
    /// Spinal cord label in the vertebra mask file, if it holds one (TotalSegmentator: 79).
    pub cord_label: Option<u32>,
    /// Treated level; `None` = from the TotalSegmentator code of `vertebra_label`.
    pub level: Option<Level>,
    pub leak_sites: Option<Vec<Site>>,
    pub bilateral: Option<bool>,
    pub thermocouple: Option<Option<ThermocouplePlace>>,
    pub steps: Option<usize>,
    pub total_ml: Option<f64>,
    pub motion: bool,
    /// Resolution (mm) of the fine model the cement grows on.
    pub model_mm: f64,
}

impl HybridSpec {
    pub fn new(seed: u64, vertebra_label: u32) -> HybridSpec {
        HybridSpec {
            seed,
            vertebra_label,
            body_label: 1,
            disc_label: 2,
            cord_label: Some(79),
            level: None,
            leak_sites: None,
            bilateral: None,
            thermocouple: None,
            steps: None,
            total_ml: None,
            motion: true,
            model_mm: 0.5,
        }
    }
}

/// The real series and its segmentation, already loaded (any grids, one patient frame).
pub struct HybridInputs {
    pub ct: Scan,
    /// Whole-vertebra labels (and optionally the cord).
    pub vertebra: Volume<i16>,
    /// Optional vertebral bodies (and discs) mask.
    pub body: Option<Volume<i16>>,
}

/// Level of a TotalSegmentator vertebra code (27 = L5 ... 31 = L1, 32 = T12 ... 39 = T5).
pub fn level_of_label(label: u32) -> Option<Level> {
    match label {
        27..=31 => Some(Level::from_index(Level::L5.index() - (label as usize - 27))),
        32..=39 => Some(Level::from_index(Level::T12.index() - (label as usize - 32))),
        _ => None,
    }
}

pub fn generate_hybrid(inputs: &HybridInputs, spec: &HybridSpec) -> Result<PhantomCase, PhantomError> {
    generate_hybrid_with(inputs, spec, &mut |_, _| {})
}

/// The patient position written into the series: the real series' own, else supine (NIfTI carries none).
fn position_of(scan: &Scan) -> PatientPosition {
    scan.info.patient_position.as_deref().and_then(|p| p.parse().ok()).unwrap_or(PatientPosition::Hfs)
}

/// As [`generate_hybrid`], calling `progress(done, total)` after each scan.
pub fn generate_hybrid_with(
    inputs: &HybridInputs,
    spec: &HybridSpec,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PhantomCase, PhantomError> {
    let level = spec.level.or_else(|| level_of_label(spec.vertebra_label)).ok_or_else(|| {
        PhantomError::InvalidSpec(format!(
            "vertebra label {} is not a TotalSegmentator T5..L5 code; give the level",
            spec.vertebra_label
        ))
    })?;
    if !(0.25..=2.0).contains(&spec.model_mm) {
        return Err(PhantomError::InvalidSpec(format!(
            "model resolution {} mm outside 0.25..2",
            spec.model_mm
        )));
    }
    let real = &inputs.ct.volume;
    if !real.geometry.is_orthogonal(1e-3) {
        return Err(PhantomError::Hybrid("the CT's axes are not orthogonal (gantry tilt)".into()));
    }
    let position = position_of(&inputs.ct);
    // The synthetic phantom's draws for what the user leaves open (sites, needles, wire, volume), so that a
    // seed means the same procedure in both modes.
    let mut ps = PhantomSpec::from_seed(spec.seed);
    ps.level = Some(level);
    ps.position = position;
    ps.lesion = Some(LesionType::Absent);
    ps.posterior_wall_intact = Some(true);
    ps.leak_sites = spec.leak_sites.clone();
    ps.bilateral = spec.bilateral;
    ps.thermocouple = spec.thermocouple;
    ps.steps = spec.steps;
    ps.total_ml = spec.total_ml;
    ps.motion = spec.motion;
    ps.model_mm = spec.model_mm;
    let mut ps = resolve_spec(&ps)?;
    let [ns, nr, nc] = real.shape();
    let sp = real.geometry.spacing;
    ps.slice_thickness_mm = Some(sp.slice);
    ps.pixel_mm = Some(sp.row);
    ps.slices = Some(ns);
    ps.matrix = nr.max(nc);
    let (Some(sites), Some(bilateral), Some(tc), Some(total)) =
        (ps.leak_sites.clone(), ps.bilateral, ps.thermocouple, ps.total_ml)
    else {
        return Err(PhantomError::InvalidSpec("spec not fully resolved".into()));
    };

    let t0 = std::time::Instant::now();
    let d = masks::derive(real, &inputs.vertebra, inputs.body.as_ref(), spec)?;
    tracing::info!(
        fine_voxels = d.fine.spec.len(),
        body_ml = d.body_voxels as f64 * spec.model_mm.powi(3) / 1000.0,
        secs = t0.elapsed().as_secs_f64(),
        "real anatomy modelled"
    );
    let mut drng = noise::stream(spec.seed, 4, 0);
    let dev = place_devices(&d, bilateral, tc, &mut drng);
    let mut irng = noise::stream(spec.seed, 5, 0);
    let inj = injection::plan(
        &d,
        &d.fine,
        &dev,
        &injection::InjectionParams { total_ml: total, max_steps: spec.steps.unwrap_or(20), sites },
        &mut irng,
    );
    for l in &inj.leaks {
        tracing::info!(site = %l.site, onset = l.onset, voxels = l.order.len(), ml = ?l.volume_ml.last(), "leak planned");
    }
    let scanner = Scanner {
        geometry: real.geometry,
        matrix: ps.matrix,
        slices: ns,
        thickness: sp.slice,
        pixel: sp.row.min(sp.column),
        noise_sd: 0.0,
        blur_px: 0.6 / sp.row.min(sp.column),
        position,
        offset: d.origin,
    };
    let ins = insert::Insertion {
        real,
        fine: &d.fine,
        inj: &inj,
        devices: &dev,
        scanner: &scanner,
        seed: spec.seed,
    };
    let n_scans = inj.injected_ml.len();
    let summary = CaseSummary {
        seed: spec.seed,
        level,
        position,
        lesion: LesionType::Absent,
        posterior_wall_intact: true,
        compression_fracture: false,
        osteoporotic: false,
        bilateral_needles: bilateral,
        thermocouple: tc,
        total_planned_ml: round4(total),
        slice_thickness_mm: sp.slice,
        pixel_mm: sp.row,
        slices: ns,
        noise_sd_hu: 0.0,
        leak_sites: inj.leaks.iter().map(|l| l.site).collect(),
        scans: n_scans,
        hybrid: true,
    };
    let sequence = Sequence { summary: &summary, scanner: &scanner, scene: &d, inj: &inj, devices: &dev };
    let scans = sequence.acquire(spec.motion, |k, motion| ins.acquire(k, motion), progress);
    Ok(PhantomCase { spec: ps, scans, summary })
}

/// Transpedicular needles with the tip in the anterior third of the body, and the optional thermocouple,
/// placed from the real anatomy (anatomy frame).
fn place_devices(
    d: &Derived,
    bilateral: bool,
    wire: Option<ThermocouplePlace>,
    rng: &mut ChaCha8Rng,
) -> Devices {
    let c = d.body_centre;
    let half = [
        (d.body_hi[0] - d.body_lo[0]) / 2.0,
        (d.body_hi[1] - d.body_lo[1]) / 2.0,
        (d.body_hi[2] - d.body_lo[2]) / 2.0,
    ];
    let [ccx, ccy] = d.canal_centre;
    let hw = d.canal_half_width;
    let first_side: f64 = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    let sides: Vec<f64> = if bilateral { vec![first_side, -first_side] } else { vec![first_side] };
    let mut needles = Vec::new();
    for side in sides {
        let tip_x = if bilateral {
            c[0] + side * half[0] * rng.random_range(0.1..0.3)
        } else {
            c[0] - side * half[0] * rng.random_range(0.0..0.12)
        };
        // Anterior third: from the front of the body, 15-30% of its depth.
        let tip = [
            tip_x,
            d.body_lo[1] + 2.0 * half[1] * rng.random_range(0.15..0.3),
            c[2] + rng.random_range(-0.25..0.25) * half[2],
        ];
        let ped =
            d.pedicles[if side < 0.0 { 0 } else { 1 }].unwrap_or([ccx + side * (hw + 4.0), ccy - hw, c[2]]);
        let dir = [ped[0] - tip[0], ped[1] - tip[1], ped[2] - tip[2]];
        let n = (dir[0] * dir[0] + dir[1] * dir[1] + dir[2] * dir[2]).sqrt().max(1e-6);
        let hub = [tip[0] + dir[0] / n * 190.0, tip[1] + dir[1] / n * 190.0, tip[2] + dir[2] / n * 190.0];
        needles.push(Rod { a: tip, b: hub, radius: 1.2 });
    }
    let mut wires = Vec::new();
    if let Some(place) = wire {
        let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let r = 0.45;
        match place {
            ThermocouplePlace::Canal => {
                let x = ccx + side * hw * 0.55;
                let y = ccy + 1.0;
                let p0 = [x, y, d.body_lo[2] + 0.1 * half[2]];
                let p1 = [x, y, d.body_hi[2] + 4.0];
                let p2 = [ccx + side * 22.0, y + 70.0, d.body_hi[2] + 40.0];
                wires.push(Rod { a: p0, b: p1, radius: r });
                wires.push(Rod { a: p1, b: p2, radius: r });
            }
            ThermocouplePlace::Foramen => {
                let z = d.body_lo[2] + 0.2 * half[2];
                let ped_y = d.pedicles[if side < 0.0 { 0 } else { 1 }].map(|p| p[1]).unwrap_or(ccy - hw);
                let p0 = [ccx + side * (hw + 2.5), ped_y, z];
                let p1 = [ccx + side * 70.0, ped_y + 80.0, z + 12.0];
                wires.push(Rod { a: p0, b: p1, radius: r });
            }
        }
    }
    Devices { needles, wire: wires }
}
