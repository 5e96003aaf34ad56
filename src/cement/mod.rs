//! Stage 3: PMMA cement on the current scan — compared with the baseline (needle in place, no cement) and
//! the previous injection's scan, needle and wires removed, split into intravertebral cement and leak
//! components.
//!
//! ```text
//! detect(&CementInputs { scan, baseline, previous, body, canal: None }, &CementParams::default())
//!     -> CementFindings { cement, metal, intravertebral, leaks: Vec<CementComponent>, volumes, registrations }
//! ```
//!
//! Steps (each in its own module):
//! 1. `grid`: crop a box around the body (`roi_margin_mm`); everything below works on it.
//! 2. `register`: rigid registration of baseline and previous onto the scan (LPS mm, so the grids may differ;
//!    the scan's side is prepared once for both); a failure falls back to identity with a warning. `sample`:
//!    each earlier scan is resampled (trilinear) at the registered position of every crop voxel, with the
//!    largest stored value the interpolation drew on (a thin needle or wire grazing a thick slice is not
//!    linear between slices: seeds must rise above that bound).
//! 3. `metal`: thin straight saturated lines (needle, thermocouple), and thin straight lines >= 1800 HU on
//!    the baseline (a wire that does not saturate), removed with their blooming. An unsaturated wire is
//!    also recognised on the current scan by its shape: lines fitted through the density rule's leak
//!    candidates (groups >= `no_baseline_grow_hu` outside the body holding a voxel >= `no_baseline_seed_hu`,
//!    pieces of one wire fitted together) that are straight over `min_line_length_mm` and no more than
//!    2.5 mm across (excess-HU-weighted spread across the line in the slice plane, where the scanner
//!    resolves best). Groups joined to the intravertebral cement by voxels of cement density are left out:
//!    cement that escaped through the wall is cement whatever its shape. A curved or thicker vein and a
//!    round leak are kept; without a baseline a straight vein thinner than 2.5 mm not joined to the body
//!    is lost (measured on phantoms without a baseline: sensitivity 12/16 instead of 13/16, false leaks 2
//!    instead of 44). With a baseline such a line is a device only where the baseline was dense along most
//!    of it (>= `no_baseline_grow_hu` within a voxel): a wire grazing bone or lying between slices reads
//!    below the 1800 HU baseline rule, moves with every breath, and its residues rose over the registered
//!    baseline as false "leaks" in muscle and fat 7-50 mm from any cement (development seeds 300-311:
//!    foramen-wire cases 300, 306 and 309 had 15-113 such voxels in leaks per scan; none after).
//! 4. `detect`: hysteresis on density, gated by the rise over the baseline (or density + anatomy rules
//!    without a baseline — less specific, and said so in `warnings`).
//! 5. `artifacts`: leak candidates that do not stand out from the streak clutter around them (rise over
//!    the baseline at least 3x the 90th percentile of |rise| in a 3-10 mm ring) are removed — metal
//!    streaks differ between scans, so their residues crossing bone look like new dense material. Not in
//!    the spinal canal when the caller says where it is (`CementInputs::canal`): there a candidate with a
//!    seed of its own is kept, because a small leak crossed by a streak fails the ring test too.
//! 6. `components`: partial-volume volumes; cement inside the body (grown by `body_tolerance_mm`) is
//!    intravertebral, except the margin's canal part under cement that goes on beyond it (`region`: a
//!    wall a voxel off must not split a canal leak's front row into the body, nor leave its rest without
//!    a canal seed), the rest is grouped into 26-connected leak components; components under
//!    `min_leak_ml` are dropped as noise; each leak gets its volume in the previous scan.
//!
//! Thresholds (defaults, in [`CementParams`]) and why:
//! - with a baseline, a voxel *seeds* cement at >= 1000 HU with a rise >= 700 HU, and the mask *grows*
//!   into neighbours >= 500 HU with a rise >= 350 HU. Cement with opacifier is 1500-3000+ HU; a 1-2 mm vein
//!   at 2.5 mm slices reads ~1000-1300 HU after partial volume, so the seed level must stay near 1000. The
//!   rise is what excludes cortex (700-1500), bone islands (1200-1300) and blastic lesions (<= ~800): they
//!   were there at baseline. 350 HU of rise is ~20% of the cement-to-tissue contrast, below the half-level
//!   edge, so the mask holds the partial-volume rim that the volume estimate weighs.
//! - without a baseline: seed >= 1500 HU (above cortex and bone islands), grow >= 1000 HU, and the body's
//!   outer `cortex_shell_mm` only where it is part of a thick mass. Small partial-volume leaks below
//!   1500 HU are missed in this mode.
//! - metal: at least 2800 HU (steel saturates 12-bit scanners at 3071 HU even at partial volume), straight
//!   over at least 8 mm, removed within `needle_radius_mm` (13 G = 2.4 mm outer diameter) plus `metal_margin_mm` of
//!   blooming. A thin straight leak that itself saturates would be taken for a wire: accepted, because the
//!   thermocouple in the canal must never be reported as cement.
//! - leaks under 0.01 mL (about 8 voxels of 0.7 x 0.7 x 2.5 mm) are noise; the smallest leaks that matter
//!   clinically are 0.02-0.1 mL.

// Index loops over the three LPS / array axes read better than iterator chains here.
#![allow(clippy::needless_range_loop)]

mod artifacts;
mod components;
mod detect;
mod grid;
mod metal;
mod morph;
pub(crate) mod region;
pub mod register;
mod sample;

pub use register::RigidTransform;

use crate::volume::{CtVolume, Lps, Mask};
use grid::Grid;
use sample::Sampler;
use std::time::Instant;

/// How far around the anatomy's canal label a seed counts as in the canal, mm.
const GUARD_MARGIN_MM: f64 = 1.0;

/// What [`detect`] looks at. All volumes carry their own geometry; they may be on different grids.
#[derive(Clone, Copy, Debug)]
pub struct CementInputs<'a> {
    /// The scan to analyse.
    pub scan: &'a CtVolume,
    /// Needle in place, no cement yet.
    pub baseline: Option<&'a CtVolume>,
    /// The scan after the previous injection.
    pub previous: Option<&'a CtVolume>,
    /// Vertebral body of the treated vertebra on the scan's grid (true inside, cortex included).
    pub body: &'a Mask,
    /// Spinal canal and foramina on the scan's grid (the anatomy's canal label), when known. A leak
    /// candidate holding a seed voxel there is never dismissed as streak clutter (see the `artifacts`
    /// module): the one place where a missed leak costs more than a false one.
    pub canal: Option<&'a Mask>,
}

/// Tunable settings; see the module documentation for why the defaults are what they are.
#[derive(Clone, Debug, PartialEq)]
pub struct CementParams {
    /// Crop margin around the body's bounding box (covers canal, foramina, discs, paraspinal veins), mm.
    pub roi_margin_mm: f64,
    pub seed_hu: f32,
    pub seed_rise_hu: f32,
    pub grow_hu: f32,
    pub grow_rise_hu: f32,
    pub no_baseline_seed_hu: f32,
    pub no_baseline_grow_hu: f32,
    /// Thickness of the body's outer shell treated as cortex without a baseline, mm.
    pub cortex_shell_mm: f64,
    pub metal_hu: f32,
    pub needle_radius_mm: f64,
    pub metal_margin_mm: f64,
    pub min_line_length_mm: f64,
    /// Cement this close outside the body mask still counts as intravertebral (mask edge, cortex), mm.
    pub body_tolerance_mm: f64,
    pub min_leak_ml: f64,
    /// Connected groups of fewer voxels are removed as noise before splitting.
    pub min_cement_voxels: usize,
    /// A leak's region is grown by this much to find its cement in the previous scan, mm.
    pub previous_margin_mm: f64,
    /// Registration: bone-edge points used, and the largest motion believed.
    pub registration_points: usize,
    pub max_motion_mm: f64,
    pub max_motion_deg: f64,
}

impl Default for CementParams {
    fn default() -> Self {
        CementParams {
            roi_margin_mm: 30.0,
            seed_hu: 1000.0,
            seed_rise_hu: 700.0,
            grow_hu: 500.0,
            grow_rise_hu: 350.0,
            no_baseline_seed_hu: 1500.0,
            no_baseline_grow_hu: 1000.0,
            cortex_shell_mm: 2.0,
            metal_hu: 2800.0,
            needle_radius_mm: 1.2,
            metal_margin_mm: 1.0,
            min_line_length_mm: 8.0,
            body_tolerance_mm: 1.0,
            min_leak_ml: 0.01,
            min_cement_voxels: 2,
            previous_margin_mm: 1.0,
            registration_points: 6000,
            max_motion_mm: 10.0,
            max_motion_deg: 8.0,
        }
    }
}

/// One leak: a 26-connected group of cement voxels outside the vertebral body.
#[derive(Clone, Debug, PartialEq)]
pub struct CementComponent {
    /// 1 = largest.
    pub id: u32,
    /// Scan indices `[slice, row, column]` of its voxels.
    pub voxels: Vec<[usize; 3]>,
    /// Partial-volume cement volume, mL.
    pub volume_ml: f64,
    /// Partial-volume weighted centre, LPS mm.
    pub centroid: Lps,
    pub max_hu: f32,
    /// Adjacent to the vertebral body (grown by the tolerance): leaked through the wall rather than a
    /// separate deposit seen in a vein.
    pub touches_body: bool,
    /// Volume of this component's region in the previous scan (registered), None without previous.
    pub previous_ml: Option<f64>,
}

/// Everything stage 3 found on one scan.
#[derive(Clone, Debug)]
pub struct CementFindings {
    /// All PMMA on the scan grid, metal excluded, noise components removed.
    pub cement: Mask,
    /// Needle and wires.
    pub metal: Mask,
    pub intravertebral: Mask,
    /// Largest first.
    pub leaks: Vec<CementComponent>,
    pub intravertebral_ml: f64,
    pub total_ml: f64,
    /// Total cement now minus in the previous scan (>= 0), None without previous.
    pub new_since_previous_ml: Option<f64>,
    /// Scan LPS -> baseline LPS.
    pub baseline_registration: Option<RigidTransform>,
    /// Scan LPS -> previous LPS.
    pub previous_registration: Option<RigidTransform>,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CementError {
    #[error("body mask is {mask:?} voxels but the scan is {scan:?}; the mask must be on the scan's grid")]
    MaskShape { mask: [usize; 3], scan: [usize; 3] },
    #[error("the vertebral body mask is empty; cannot look for cement without the treated vertebra")]
    EmptyBody,
    #[error("the scan has a degenerate geometry (zero spacing or parallel axes)")]
    BadGeometry,
    #[error("invalid cement parameter: {0}")]
    BadParams(String),
}

fn check_params(p: &CementParams) -> Result<(), CementError> {
    let finite = [
        p.roi_margin_mm,
        p.cortex_shell_mm,
        p.needle_radius_mm,
        p.metal_margin_mm,
        p.min_line_length_mm,
        p.body_tolerance_mm,
        p.min_leak_ml,
        p.previous_margin_mm,
        p.max_motion_mm,
        p.max_motion_deg,
    ];
    if finite.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(CementError::BadParams("distances and volumes must be finite and >= 0".into()));
    }
    if p.grow_hu > p.seed_hu
        || p.no_baseline_grow_hu > p.no_baseline_seed_hu
        || p.grow_rise_hu > p.seed_rise_hu
    {
        return Err(CementError::BadParams("grow thresholds must not exceed seed thresholds".into()));
    }
    if p.metal_hu <= p.seed_hu {
        return Err(CementError::BadParams("metal_hu must be above seed_hu".into()));
    }
    Ok(())
}

/// Find the cement of `inputs.scan`.
pub fn detect(inputs: &CementInputs, params: &CementParams) -> Result<CementFindings, CementError> {
    check_params(params)?;
    let canal = inputs.canal;
    let t0 = Instant::now();
    let scan = inputs.scan;
    let shape = scan.shape();
    for m in std::iter::once(inputs.body).chain(canal) {
        if m.shape() != shape {
            return Err(CementError::MaskShape { mask: m.shape(), scan: shape });
        }
    }
    if Sampler::new(&[0.0], [1, 1, 1], scan.geometry).is_none() {
        return Err(CementError::BadGeometry);
    }
    let mut warnings = Vec::new();
    if inputs.body.geometry.origin.distance(scan.geometry.origin) > 0.5 {
        warnings.push("the body mask's geometry differs from the scan's; it was used voxel for voxel".into());
    }
    let (blo, bhi) = inputs.body.bounding_box(|b| *b).ok_or(CementError::EmptyBody)?;
    tracing::debug!(ms = t0.elapsed().as_secs_f64() * 1e3, "body box");
    let parent = Grid { shape, lo: [0; 3], geometry: scan.geometry };
    let (lo, hi) = grid::grow_box(blo, bhi, parent.radius_voxels(params.roi_margin_mm, 1), shape);
    let g = Grid::from_box(&scan.geometry, lo, hi);
    let img: Vec<f32> = g.crop(scan).into_iter().map(f32::from).collect();
    let body = g.crop(inputs.body);
    // The canal grown by a partial-volume voxel: a leak's seed sits in its core, but the label's edge is
    // only as exact as the segmentation.
    let canal_crop: Vec<bool> = canal.map(|c| g.crop(c)).unwrap_or_default();
    let guard = if canal_crop.is_empty() {
        Vec::new()
    } else {
        morph::dilate(&canal_crop, g.shape, g.radius_voxels(GUARD_MARGIN_MM, 1))
    };
    let body_box = ([0, 1, 2].map(|a| blo[a] - lo[a]), [0, 1, 2].map(|a| bhi[a] - lo[a]));

    // Registration and resampling of the earlier scans onto the crop.
    let reg = register::RegSettings {
        points: params.registration_points,
        max_translation_mm: params.max_motion_mm,
        max_rotation_deg: params.max_motion_deg,
        margin_mm: 10.0,
    };
    // The two registrations are independent: run them side by side.
    // The current scan's side (smoothing, points) is prepared once for both earlier scans.
    let fixed = (inputs.baseline.is_some() || inputs.previous.is_some())
        .then(|| register::Fixed::prepare(&img, &g, body_box, &reg));
    let register_one = |vol: Option<&CtVolume>| {
        vol.map(|v| match &fixed {
            Some(Ok(fx)) => register::register_onto(fx, v, &reg),
            Some(Err(why)) => Err(why.clone()),
            None => Err("nothing to register".into()),
        })
    };
    let (reg_base, reg_prev) =
        rayon::join(|| register_one(inputs.baseline), || register_one(inputs.previous));
    tracing::debug!(ms = t0.elapsed().as_secs_f64() * 1e3, "registrations");
    let mut bring = |vol: Option<&CtVolume>,
                     registered: Option<Result<RigidTransform, String>>,
                     what: &str|
     -> Option<(RigidTransform, sample::Resampled)> {
        let vol = vol?;
        let t = match registered? {
            Ok(t) => t,
            Err(why) => {
                warnings
                    .push(format!("{what} registration failed ({why}); compared without motion correction"));
                RigidTransform::identity()
            }
        };
        let data: Vec<i16>;
        let slice = match vol.data.as_slice() {
            Some(s) => s,
            None => {
                data = vol.data.iter().copied().collect();
                &data
            }
        };
        let Some(sampler) = Sampler::new(slice, vol.shape(), vol.geometry) else {
            warnings.push(format!("{what} scan has a degenerate geometry; ignored"));
            return None;
        };
        let res = sample::resample(&sampler, &t, &g);
        let outside = res.value.iter().filter(|v| v.is_nan()).count();
        if outside * 20 > res.value.len() {
            warnings.push(format!(
                "{what} scan covers only {:.0}% of the region around the vertebra",
                100.0 * (1.0 - outside as f64 / res.value.len() as f64)
            ));
        }
        Some((t, res))
    };
    let base = bring(inputs.baseline, reg_base, "baseline");
    let prev = bring(inputs.previous, reg_prev, "previous");
    let t_reg = t0.elapsed();
    if base.is_none() {
        warnings.push(
            "no baseline scan: cement found from density, shape and anatomy alone; dense bone touching the \
             cement may be counted and leaks under 1500 HU may be missed"
                .into(),
        );
    }
    let base_before =
        base.as_ref().map(|b| detect::Before { value: &b.1.value, support_max: &b.1.support_max });
    let base_img = base_before.map(|b| b.value);

    tracing::debug!(ms = t0.elapsed().as_secs_f64() * 1e3, roi = ?g.shape, "registered and resampled");
    let region = morph::dilate(&body, g.shape, g.radius_voxels(params.body_tolerance_mm, 0));
    let metal = metal::detect_metal(
        &img,
        base_before.map(|b| b.support_max),
        &g,
        &metal::MetalSettings {
            metal_hu: params.metal_hu,
            needle_radius_mm: params.needle_radius_mm,
            margin_mm: params.metal_margin_mm,
            min_line_length_mm: params.min_line_length_mm,
            shape_only: Some(metal::ShapeOnly {
                seed_hu: params.no_baseline_seed_hu,
                grow_hu: params.no_baseline_grow_hu,
                region: &region,
            }),
        },
    );
    tracing::debug!(segments = ?metal.segments, ms = t0.elapsed().as_secs_f64() * 1e3, "metal lines");

    let cortex = {
        let inner = morph::erode(&body, g.shape, g.radius_voxels(params.cortex_shell_mm, 1));
        (0..g.len()).map(|i| body[i] && !inner[i]).collect::<Vec<bool>>()
    };
    // Without a baseline the wall cannot be told from cement: the margin stays the body's.
    let behind_wall = |i: usize| base_img.is_some_and(|b| region::cortex_in_front(b, &g, i));
    let metal_any: Vec<bool> = (0..g.len()).map(|i| metal.core[i] || metal.band[i]).collect();
    // Cement of one scan (this one, or the previous one resampled): the voxel rules, then the leak
    // candidates that are artefacts removed.
    let find_cement = |im: &[f32]| -> Vec<bool> {
        let cm = detect::cement_mask(im, base_before, &metal.core, &metal.band, &cortex, &g, params);
        let mut mask = cm.mask;
        // A leak's canal part within the body's margin is judged with the leak (see `region`).
        let reach = region::with_canal_margin(&region, &body, &canal_crop, &mask, g.shape, behind_wall);
        let rejected = artifacts::reject(im, base_img, &mut mask, &cm.seed, &reach, &metal_any, &guard, &g);
        if !rejected.is_empty() {
            tracing::debug!(?rejected, "leak candidates rejected as artefacts");
        }
        mask
    };
    // This scan's cement and the previous scan's are found independently: side by side.
    let (cement, prev_cement) =
        rayon::join(|| find_cement(&img), || prev.as_ref().map(|(_, p)| find_cement(&p.value)));
    tracing::debug!(ms = t0.elapsed().as_secs_f64() * 1e3, "cement mask");
    let density = components::cement_density(&img, &cement, &g, 2000.0);
    let metal_mask = metal.reported(&cement);
    // Both fraction maps need only this scan's cement density: side by side too.
    let (frac, prev_frac) = rayon::join(
        || components::fraction_map(&img, base_img, &cement, &metal_mask, &body, &g, density),
        || {
            prev.as_ref().zip(prev_cement).map(|((_, p), pc)| {
                let pimg = &p.value;
                let pd = components::cement_density(pimg, &pc, &g, density);
                components::fraction_map(pimg, base_img, &pc, &metal.reported(&pc), &body, &g, pd)
            })
        },
    );

    tracing::debug!(ms = t0.elapsed().as_secs_f64() * 1e3, "fractions");
    let reach = region::with_canal_margin(&region, &body, &canal_crop, &cement, g.shape, behind_wall);
    let split = components::split(
        &img,
        &cement,
        &frac,
        &reach,
        &g,
        &components::SplitSettings {
            min_leak_ml: params.min_leak_ml,
            previous_margin_mm: params.previous_margin_mm,
        },
        prev_frac.as_deref(),
    );
    let total_ml = split.intravertebral_ml + split.leaks.iter().map(|l| l.volume_ml).sum::<f64>();
    let new_since_previous_ml = prev_frac.as_ref().map(|pf| {
        let before = components::total_ml(pf, &g);
        let d = total_ml - before;
        if d < -0.2 {
            warnings.push(format!(
                "the previous scan shows more cement ({before:.2} mL) than this one ({total_ml:.2} mL); check that \
                 the series are in order"
            ));
        }
        d.max(0.0)
    });

    tracing::debug!(ms = t0.elapsed().as_secs_f64() * 1e3, "split");
    // Scan-sized and written only in the crop: huge-page backed (`volume::huge`).
    let scan_mask = || crate::volume::Volume::new(crate::volume::huge::zeroed(shape), scan.geometry);
    let (mut out_cement, mut out_metal, mut out_intra) = (scan_mask(), scan_mask(), scan_mask());
    g.paste(&split.cement, &mut out_cement);
    g.paste(&metal_mask, &mut out_metal);
    g.paste(&split.intravertebral, &mut out_intra);
    tracing::debug!(
        registration_ms = t_reg.as_secs_f64() * 1e3,
        total_ms = t0.elapsed().as_secs_f64() * 1e3,
        density,
        total_ml,
        leaks = split.leaks.len(),
        "cement detected"
    );
    Ok(CementFindings {
        cement: out_cement,
        metal: out_metal,
        intravertebral: out_intra,
        leaks: split.leaks,
        intravertebral_ml: split.intravertebral_ml,
        total_ml,
        new_since_previous_ml,
        baseline_registration: base.map(|b| b.0),
        previous_registration: prev.map(|p| p.0),
        warnings,
    })
}
