//! Synthetic vertebroplasty injection sequences with exact ground truth (`cementleak phantom`).
//!
//! No public CT shows injected cement, so every later stage is tuned and tested on these cases. A case is
//! one patient (drawn from a seed) scanned after needle placement (scan 0, the baseline) and after each
//! injection step.
//!
//! ```text
//! pub struct PhantomSpec { seed, level: Option<Level>, position: PatientPosition (default HFP), lesion,
//!                          posterior_wall_intact, leak_sites, bilateral, thermocouple, slice_thickness_mm,
//!                          pixel_mm, slices, matrix, steps, total_ml, motion, model_mm }
//! pub fn generate_case(&PhantomSpec) -> Result<PhantomCase, PhantomError>
//! pub struct PhantomCase { spec, scans: Vec<PhantomScan> }          // scans[0] = baseline
//! pub struct PhantomScan { ct: CtVolume, labels: LabelVolume,      // full label map (1,2,3,4,10..14,20)
//!                          anatomy: LabelVolume,                    // 1..4 only, never overwritten
//!                          truth: ScanTruth }                       // truth.json
//! pub fn write_case(&PhantomCase, out: &Path) -> Result<(), PhantomError>
//! ```
//!
//! How it works: [`anatomy`] defines the patient analytically in millimetres (anatomy frame = LPS axes with
//! the treated body's centre at the origin). [`grid`] rasterises it once, finely (0.5 mm) around the spine
//! and coarsely over the trunk. [`devices`] places needles and the thermocouple; [`injection`] grows cement
//! and leaks on the fine grid; [`acquisition`] samples everything onto each patient position's scanner grid
//! (`PatientPosition::axial_axes`) with partial volume, motion, blur, metal streaks and correlated noise.
//! The same seed in another position is the same patient. Truth volumes are counted on the written label
//! maps, so they match what a segmentation of the scan can find.

pub mod acquisition;
pub mod anatomy;
pub mod devices;
pub mod grid;
pub mod hybrid;
pub mod injection;
pub mod montage;
pub mod noise;
pub mod spec;
pub mod truth;
pub mod write;

use crate::leaks::Site;
pub use spec::{LesionType, Level, PhantomSpec, ThermocouplePlace};
pub use truth::{LeakTruth, ScanTruth};
pub use write::write_case;

use crate::volume::{labels, CtVolume, LabelVolume, Lps};
use acquisition::{Model, Motion, Scanner};
use anatomy::Anatomy;
use rand::Rng;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum PhantomError {
    #[error("invalid phantom spec: {0}")]
    InvalidSpec(String),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("hybrid input unusable: {0}")]
    Hybrid(String),
}

/// One scan of a case with its truth.
#[derive(Clone, Debug)]
pub struct PhantomScan {
    pub ct: CtVolume,
    pub labels: LabelVolume,
    pub anatomy: LabelVolume,
    pub truth: ScanTruth,
    /// Tissue class at each voxel centre (`anatomy::Tissue as u8`: fat 2, muscle 4, cortical 12,
    /// cancellous 13...), for realism checks; not written to disk.
    pub tissue: LabelVolume,
}

/// A generated case: the resolved spec and its scans (baseline first).
#[derive(Clone, Debug)]
pub struct PhantomCase {
    pub spec: PhantomSpec,
    pub scans: Vec<PhantomScan>,
    pub summary: CaseSummary,
}

/// Case-level facts written to case.json.
#[derive(Clone, Debug, Serialize)]
pub struct CaseSummary {
    pub seed: u64,
    pub level: Level,
    pub position: crate::volume::PatientPosition,
    pub lesion: LesionType,
    pub posterior_wall_intact: bool,
    pub compression_fracture: bool,
    pub osteoporotic: bool,
    pub bilateral_needles: bool,
    pub thermocouple: Option<ThermocouplePlace>,
    pub total_planned_ml: f64,
    pub slice_thickness_mm: f64,
    pub pixel_mm: f64,
    pub slices: usize,
    pub noise_sd_hu: f64,
    pub leak_sites: Vec<Site>,
    pub scans: usize,
    pub hybrid: bool,
}

const THICKNESSES: [f64; 5] = [0.625, 1.0, 1.25, 2.0, 2.5];

/// Draws what the spec leaves open; the result has every option filled.
pub fn resolve_spec(spec: &PhantomSpec) -> Result<PhantomSpec, PhantomError> {
    let mut rng = noise::stream(spec.seed, 1, 0);
    let mut s = spec.clone();
    if s.matrix < 32 || s.matrix > 1024 {
        return Err(PhantomError::InvalidSpec(format!("matrix {} outside 32..1024", s.matrix)));
    }
    let level = Level::from_index(rng.random_range(0..13));
    s.level = Some(s.level.unwrap_or(level));
    let u: f64 = rng.random();
    let lesion = if u < 0.765 {
        LesionType::Lytic
    } else if u < 0.817 {
        LesionType::Blastic
    } else {
        LesionType::Mixed
    };
    s.lesion = Some(s.lesion.unwrap_or(lesion));
    let intact = rng.random_bool(0.583);
    s.posterior_wall_intact = Some(s.posterior_wall_intact.unwrap_or(intact));
    let mut sites = Vec::new();
    if rng.random_bool(0.35) {
        let n = if rng.random_bool(0.8) { 1 } else { 2 };
        for _ in 0..n {
            let v: f64 = rng.random();
            sites.push(if v < 0.225 {
                Site::Canal
            } else if v < 0.35 {
                Site::PosteriorVein
            } else if v < 0.8 {
                Site::Disc
            } else {
                Site::Paraspinal
            });
        }
    }
    s.leak_sites = Some(s.leak_sites.clone().unwrap_or(sites));
    let bil = rng.random_bool(0.83);
    s.bilateral = Some(s.bilateral.unwrap_or(bil));
    let tc = if rng.random_bool(0.6) {
        Some(if rng.random_bool(0.5) { ThermocouplePlace::Canal } else { ThermocouplePlace::Foramen })
    } else {
        None
    };
    s.thermocouple = Some(s.thermocouple.unwrap_or(tc));
    let th = THICKNESSES[rng.random_range(0..THICKNESSES.len())];
    let thickness = s.slice_thickness_mm.unwrap_or(th);
    if !(0.3..=5.0).contains(&thickness) {
        return Err(PhantomError::InvalidSpec(format!("slice thickness {thickness} mm outside 0.3..5")));
    }
    s.slice_thickness_mm = Some(thickness);
    let px = (rng.random_range(0.5..1.0f64) * 200.0).round() / 200.0;
    let pixel = s.pixel_mm.unwrap_or(px);
    if !(0.2..=2.0).contains(&pixel) {
        return Err(PhantomError::InvalidSpec(format!("pixel size {pixel} mm outside 0.2..2")));
    }
    s.pixel_mm = Some(pixel);
    let max_slices = ((100.0 / thickness) as usize).clamp(20, 80);
    let sl = rng.random_range(20..=max_slices);
    let slices = s.slices.unwrap_or(sl);
    if slices == 0 || slices > 400 {
        return Err(PhantomError::InvalidSpec(format!("{slices} slices outside 1..400")));
    }
    s.slices = Some(slices);
    let total = (rng.random_range(0.0..1.0f64) * 0.35 + rng.random_range(0.0..1.0) * 0.35 + 0.15) * 10.0;
    let total = s.total_ml.unwrap_or(total.clamp(2.0, 10.0));
    if !(0.3..=20.0).contains(&total) {
        return Err(PhantomError::InvalidSpec(format!("total cement {total} mL outside 0.3..20")));
    }
    s.total_ml = Some(total);
    if !(0.25..=2.0).contains(&s.model_mm) {
        return Err(PhantomError::InvalidSpec(format!("model resolution {} mm outside 0.25..2", s.model_mm)));
    }
    Ok(s)
}

/// Generates all scans of a case.
pub fn generate_case(spec: &PhantomSpec) -> Result<PhantomCase, PhantomError> {
    generate_case_with(spec, &mut |_, _| {})
}

/// As [`generate_case`], calling `progress(done, total)` after each scan.
pub fn generate_case_with(
    spec: &PhantomSpec,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PhantomCase, PhantomError> {
    let spec = resolve_spec(spec)?;
    let seed = spec.seed;
    let (
        Some(level),
        Some(lesion),
        Some(intact),
        Some(sites),
        Some(bilateral),
        Some(tc),
        Some(thickness),
        Some(pixel),
        Some(slices),
        Some(total),
    ) = (
        spec.level,
        spec.lesion,
        spec.posterior_wall_intact,
        spec.leak_sites.clone(),
        spec.bilateral,
        spec.thermocouple,
        spec.slice_thickness_mm,
        spec.pixel_mm,
        spec.slices,
        spec.total_ml,
    )
    else {
        return Err(PhantomError::InvalidSpec("spec not fully resolved".into()));
    };
    let mut rng = noise::stream(seed, 2, 0);
    let span = slices as f64 * thickness;
    let anat = Anatomy::generate(level, &mut rng, lesion, intact, span);
    let mut srng = noise::stream(seed, 3, 0);
    let offset =
        [srng.random_range(-15.0..15.0), srng.random_range(-20.0..20.0), srng.random_range(-600.0..-100.0)];
    let dz = srng.random_range(-4.0..4.0);
    let z_lo = dz - span / 2.0 - thickness - 4.0;
    let z_hi = dz + span / 2.0 + thickness + 4.0;
    let t0 = std::time::Instant::now();
    let fine = grid::build_fine(&anat, z_lo, z_hi, spec.model_mm);
    let coarse = grid::build_coarse(&anat, z_lo, z_hi, 4.0 * spec.model_mm);
    tracing::info!(
        fine_voxels = fine.spec.len(),
        coarse_voxels = coarse.spec.len(),
        secs = t0.elapsed().as_secs_f64(),
        "patient model rasterised"
    );
    let t0 = std::time::Instant::now();
    let mut drng = noise::stream(seed, 4, 0);
    let dev = devices::place(&anat, bilateral, tc, &mut drng);
    let mut irng = noise::stream(seed, 5, 0);
    let max_steps = spec.steps.unwrap_or(20);
    let inj = injection::plan(
        &anat,
        &fine,
        &dev,
        &injection::InjectionParams { total_ml: total, max_steps, sites: sites.clone() },
        &mut irng,
    );

    tracing::info!(secs = t0.elapsed().as_secs_f64(), scans = inj.injected_ml.len(), "injection planned");
    let fov = spec.matrix as f64 * pixel;
    let tor = &anat.torso;
    let fov_y = if fov > 2.0 * tor.half_depth + 30.0 {
        tor.centre_y
    } else {
        25.0_f64.min(tor.centre_y + tor.half_depth - fov / 2.0 + 10.0)
    };
    let fov_centre = [
        offset[0] + srng.random_range(-10.0..10.0),
        offset[1] + fov_y + srng.random_range(-8.0..8.0),
        offset[2] + dz,
    ];
    let noise_sd = (srng.random_range(8.0f64.ln()..24.0f64.ln())).exp();
    let scanner = Scanner::new(
        spec.position,
        spec.matrix,
        slices,
        thickness,
        pixel,
        offset,
        fov_centre,
        noise_sd,
        0.6 / pixel,
    );
    let model = Model {
        fine: &fine,
        coarse: &coarse,
        inj: &inj,
        devices: &dev,
        seed,
        torso: (tor.half_width, tor.centre_y, tor.half_depth),
    };
    let n_scans = inj.injected_ml.len();
    let summary = CaseSummary {
        seed,
        level,
        position: spec.position,
        lesion,
        posterior_wall_intact: intact,
        compression_fracture: anat.compression,
        osteoporotic: anat.osteoporotic,
        bilateral_needles: bilateral,
        thermocouple: tc,
        total_planned_ml: round4(total),
        slice_thickness_mm: thickness,
        pixel_mm: pixel,
        slices,
        noise_sd_hu: (noise_sd * 10.0).round() / 10.0,
        leak_sites: inj.leaks.iter().map(|l| l.site).collect(),
        scans: n_scans,
        hybrid: false,
    };
    let sequence = Sequence { summary: &summary, scanner: &scanner, scene: &anat, inj: &inj, devices: &dev };
    let scans = sequence.acquire(spec.motion, |k, motion| scanner.acquire(&model, k, motion), progress);
    Ok(PhantomCase { spec, scans, summary })
}

/// One planned injection on one anatomy, ready to be scanned: what the synthetic and hybrid cases share.
pub(crate) struct Sequence<'a> {
    pub summary: &'a CaseSummary,
    pub scanner: &'a Scanner,
    pub scene: &'a dyn injection::Scene,
    pub inj: &'a injection::Injection,
    pub devices: &'a devices::Devices,
}

impl Sequence<'_> {
    /// Acquires every scan (baseline first; small random patient motion after it when `motion`) and
    /// measures each scan's truth on its own label map.
    pub(crate) fn acquire(
        &self,
        motion: bool,
        acquire: impl Fn(usize, &Motion) -> acquisition::Acquired,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Vec<PhantomScan> {
        let (c, scanner, inj) = (self.summary, self.scanner, self.inj);
        let n_scans = inj.injected_ml.len();
        let mut mrng = noise::stream(c.seed, 6, 0);
        let mut scans: Vec<PhantomScan> = Vec::with_capacity(n_scans);
        let mut prev_leaks: Vec<LeakTruth> = Vec::new();
        let vox_ml = scanner.geometry.spacing.voxel_volume_ml();
        for k in 0..n_scans {
            let motion = if k == 0 || !motion { Motion::identity() } else { Motion::random(&mut mrng) };
            let t0 = std::time::Instant::now();
            let acq = acquire(k, &motion);
            tracing::info!(scan = k, secs = t0.elapsed().as_secs_f64(), "acquired");
            let leaks = measure_leaks(&acq, scanner, &motion, self.scene, inj, k, &prev_leaks, vox_ml);
            let wall = wall_distance_on_labels(&acq.labels, scanner, &motion, self.scene);
            let intra = acq.labels.data.iter().filter(|&&l| l == labels::CEMENT).count() as f64 * vox_ml;
            let angle = ((motion.r[0][0] + motion.r[1][1] + motion.r[2][2] - 1.0) / 2.0)
                .clamp(-1.0, 1.0)
                .acos()
                .to_degrees();
            let truth = ScanTruth {
                schema: truth::TRUTH_SCHEMA.into(),
                step: k,
                injected_ml: round4(inj.injected_ml[k]),
                increment_ml: round4(if k == 0 { 0.0 } else { inj.injected_ml[k] - inj.injected_ml[k - 1] }),
                intravertebral_cement_ml: round4(intra),
                planned_intravertebral_ml: round4(inj.intra_ml[k]),
                expected_alert: truth::expected_alert(&leaks, wall),
                leaks: leaks.clone(),
                posterior_wall_distance_mm: wall.map(|w| (w * 100.0).round() / 100.0),
                posterior_wall_intact: c.posterior_wall_intact,
                level: c.level,
                position: c.position,
                lesion: c.lesion,
                compression_fracture: c.compression_fracture,
                osteoporotic: c.osteoporotic,
                bilateral_needles: c.bilateral_needles,
                thermocouple: c.thermocouple,
                needle_tips_lps_mm: self
                    .devices
                    .tips()
                    .into_iter()
                    .map(|t| scanner.to_lps(&motion, t).rounded())
                    .collect(),
                voxel_volume_ml: vox_ml,
                motion_mm: (motion.t.iter().map(|v| v * v).sum::<f64>().sqrt() * 1000.0).round() / 1000.0,
                motion_deg: (angle * 1000.0).round() / 1000.0,
            };
            prev_leaks = leaks;
            scans.push(PhantomScan {
                ct: acq.ct,
                labels: acq.labels,
                anatomy: acq.anatomy,
                truth,
                tissue: acq.tissue,
            });
            progress(k + 1, n_scans);
        }
        scans
    }
}

pub(crate) fn round4(v: f64) -> f64 {
    (v * 10000.0).round() / 10000.0
}

/// Truth of each visible leak, counted on the scan's own label map.
#[allow(clippy::too_many_arguments)]
pub(crate) fn measure_leaks(
    acq: &acquisition::Acquired,
    scanner: &Scanner,
    motion: &Motion,
    anat: &dyn injection::Scene,
    inj: &injection::Injection,
    k: usize,
    prev: &[LeakTruth],
    vox_ml: f64,
) -> Vec<LeakTruth> {
    let n = inj.leaks.len();
    let mut count = vec![0usize; n];
    let mut sum = vec![[0.0f64; 3]; n];
    let mut foraminal = vec![false; n];
    let g = acq.ct.geometry;
    for ((idx, &id), &lab) in acq.leak_ids.data.indexed_iter().zip(acq.labels.data.iter()) {
        if id == 0 || !(labels::LEAK_CANAL..=labels::LEAK_PARASPINAL).contains(&lab) {
            continue;
        }
        let j = id as usize - 1;
        if j >= n {
            continue;
        }
        count[j] += 1;
        let p = g.voxel_to_lps([idx.0, idx.1, idx.2]);
        for (acc, v) in sum[j].iter_mut().zip(p.0) {
            *acc += v;
        }
        if inj.leaks[j].site == Site::Canal && !foraminal[j] {
            foraminal[j] = anat.in_foramen(scanner.to_anat(motion, p));
        }
    }
    let mut out = Vec::new();
    for j in 0..n {
        if count[j] == 0 {
            continue;
        }
        let c = count[j] as f64;
        let vol = c * vox_ml;
        let before = prev.iter().find(|l| l.id == j);
        let plan = &inj.leaks[j];
        let grew_plan = k > 0 && plan.volume_ml[k] > plan.volume_ml[k - 1] + 1e-9;
        out.push(LeakTruth {
            id: j,
            site: plan.site,
            volume_ml: round4(vol),
            voxels: count[j],
            centroid_lps_mm: Lps([sum[j][0] / c, sum[j][1] / c, sum[j][2] / c]).rounded(),
            foraminal: foraminal[j],
            new: before.is_none(),
            grew_ml: round4(before.map(|b| vol - b.volume_ml).unwrap_or(0.0)),
            growing: before.is_some() && grew_plan,
            injected_ml: if k > 0 && before.is_some() {
                round4((plan.volume_ml[k] - plan.volume_ml[k - 1]).max(0.0))
            } else {
                0.0
            },
        });
    }
    out
}

/// Smallest posterior wall distance of the intravertebral cement voxels of a label map.
pub(crate) fn wall_distance_on_labels(
    lab: &LabelVolume,
    scanner: &Scanner,
    motion: &Motion,
    anat: &dyn injection::Scene,
) -> Option<f64> {
    let g = lab.geometry;
    lab.data
        .indexed_iter()
        .filter(|(_, &l)| l == labels::CEMENT)
        .map(|(i, _)| anat.wall_distance(scanner.to_anat(motion, g.voxel_to_lps([i.0, i.1, i.2]))))
        .min_by(|a, b| a.total_cmp(b))
}
