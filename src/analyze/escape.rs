//! Safety net for cement the body mask swallowed: intravertebral cement that lies clearly behind the
//! posterior wall, inside the canal, is a leak whatever the segmentation says.
//!
//! Why: bright cement in the anterior epidural space sits against the wall and can be taken into the body's
//! footprint by the anatomy stage (measured on phantom seed 7, L2: a 0.07 mL foraminal canal leak was
//! counted as intravertebral and the scan said `reduce` instead of `stop`). The wall's plane comes from the
//! median of the body's posterior edge across the canal, so a local bulge of cement does not move it; cement
//! more than [`ESCAPE_MARGIN_MM`] behind it and within the canal's width cannot be inside the body.
//!
//! The wall's plane is only as good as the segmentation, and a body mask that is cut short puts the plane
//! inside the body (measured on phantom seed 12: the plane 8 mm anterior of the true wall, and the net then
//! called intravertebral cement a canal leak). So, when there is a baseline, a candidate must also be behind
//! the cortex *as the baseline shows it*: within [`CORTEX_SEARCH_MM`] in front of the voxel the baseline is
//! clearly denser than within the same distance behind it. Cement inside the body has the cortex behind it;
//! cement in the canal has it in front. A component is moved when at least
//! [`BEHIND_CORTEX_FRACTION`] of its judged voxels pass (a leak through a breach has no cortex in front
//! at the breach itself, but the cement spreading in the canal beside it has). Voxels with metal within the
//! search distance are not judged (the needle's blooming looks like cortex); a component with no judged
//! voxel stays intravertebral.

use crate::cement::region::{reads_as_cortex, CORTEX_SEARCH_MM};
use crate::cement::{CementComponent, CementFindings};
use crate::leaks::rules::SiteFrame;
use crate::volume::{CtVolume, Lps, Vec3};
use std::collections::HashSet;

/// Behind the wall plane by more than the cortex and a partial-volume voxel.
pub const ESCAPE_MARGIN_MM: f64 = 2.0;
/// Denser than the posterior cortex reads at CT resolution: the needle, a thermocouple or their blooming.
const MAX_BONE_HU: f32 = 1200.0;
pub const BEHIND_CORTEX_FRACTION: f64 = 0.3;

/// Where the baseline's cortex lies around a scan point (the registered baseline, no cement in it).
pub(crate) struct CortexProbe<'a> {
    to_base: crate::cement::RigidTransform,
    metal: &'a crate::volume::Mask,
    baseline: Option<&'a CtVolume>,
}

impl<'a> CortexProbe<'a> {
    pub(crate) fn new(
        metal: &'a crate::volume::Mask,
        to_base: Option<crate::cement::RigidTransform>,
        baseline: Option<&'a CtVolume>,
    ) -> Self {
        CortexProbe { to_base: to_base.unwrap_or_default(), metal, baseline }
    }

    /// Densest baseline HU within the search distance from `p` along `dir` (beyond the voxel itself).
    fn densest_toward(&self, base: &CtVolume, p: Lps, dir: Vec3) -> f32 {
        let steps = (CORTEX_SEARCH_MM / 0.5) as usize;
        (2..=steps)
            .filter_map(|i| base.hu_at_lps(self.to_base.apply(p + dir * (0.5 * i as f64))))
            .fold(f32::MIN, f32::max)
    }

    /// The needle's blooming fades over millimetres and reads like cortex: near metal (in the cement stage's
    /// mask, or denser than bone on the baseline) along `dir` the cortex cannot be judged.
    fn near_metal(&self, base: &CtVolume, p: Lps, dir: Vec3) -> bool {
        let steps = (CORTEX_SEARCH_MM / 0.5) as i32;
        (-steps..=steps).any(|i| {
            let q = p + dir * (0.5 * f64::from(i));
            self.metal.at_lps(q).is_some_and(|m| *m)
                || base.hu_at_lps(self.to_base.apply(q)).is_some_and(|h| h >= MAX_BONE_HU)
        })
    }

    /// Densest baseline HU from 1 mm up to `far_mm` along `dir`, and its distance.
    fn peak_toward(&self, base: &CtVolume, p: Lps, dir: Vec3, far_mm: f64) -> (f32, f64) {
        let steps = (far_mm / 0.5) as usize;
        (2..=steps)
            .filter_map(|i| {
                let d = 0.5 * i as f64;
                base.hu_at_lps(self.to_base.apply(p + dir * d)).map(|h| (h, d))
            })
            .fold((f32::MIN, 0.0), |a, b| if b.0 > a.0 { b } else { a })
    }

    /// Whether the nearest cortex lies toward `dir`: the densest baseline point within `far_mm` that way is
    /// cortex-dense and clearly denser than anything the other way up to the same distance (plus a
    /// millimetre). None without a baseline or near metal.
    pub(crate) fn nearest_cortex_toward(&self, p: Lps, dir: Vec3, far_mm: f64) -> Option<bool> {
        let b = self.baseline?;
        if self.near_metal(b, p, dir) {
            return None;
        }
        let (there, at) = self.peak_toward(b, p, dir, far_mm);
        let (back, _) = self.peak_toward(b, p, dir * -1.0, at + 1.0);
        Some(reads_as_cortex(there, back))
    }

    /// Whether the baseline's cortex lies toward `dir` from `p` (within the search distance, clearly denser
    /// than anything the same distance the other way): Some(true) it does, Some(false) it does not, None
    /// without a baseline or near metal.
    pub(crate) fn cortex_toward(&self, p: Lps, dir: Vec3) -> Option<bool> {
        let b = self.baseline?;
        if self.near_metal(b, p, dir) {
            return None;
        }
        let (there, back) = (self.densest_toward(b, p, dir), self.densest_toward(b, p, dir * -1.0));
        Some(reads_as_cortex(there, back))
    }
}

/// Move escaped cement from the intravertebral mask into new leak components (ids after the existing ones).
/// Returns how many components were moved.
pub fn split_escaped(
    findings: &mut CementFindings,
    frame: &SiteFrame,
    scan: &CtVolume,
    baseline: Option<&CtVolume>,
    previous: Option<&CtVolume>,
    min_leak_ml: f64,
) -> usize {
    // The probe reads the metal mask while the rest of the findings change: lent out for the call rather
    // than copied (it is the size of the scan).
    let metal = take_metal(findings);
    let moved = split_escaped_beside(findings, &metal, frame, scan, baseline, previous, min_leak_ml);
    findings.metal = metal;
    moved
}

/// `findings.metal`, leaving an empty mask in its place until it is put back.
pub(super) fn take_metal(findings: &mut CementFindings) -> crate::volume::Mask {
    let empty =
        crate::volume::Volume::new(ndarray::Array3::from_elem((0, 0, 0), false), findings.metal.geometry);
    std::mem::replace(&mut findings.metal, empty)
}

fn split_escaped_beside(
    findings: &mut CementFindings,
    metal: &crate::volume::Mask,
    frame: &SiteFrame,
    scan: &CtVolume,
    baseline: Option<&CtVolume>,
    previous: Option<&CtVolume>,
    min_leak_ml: f64,
) -> usize {
    let post = frame.posterior();
    let probe = CortexProbe::new(metal, findings.baseline_registration, baseline);
    // Some(true) behind the cortex, Some(false) in front of it, None when it cannot be judged.
    let behind_cortex = |p: Lps| -> Option<bool> {
        match baseline {
            None => Some(true),
            Some(_) => probe.cortex_toward(p, post * -1.0),
        }
    };
    let g = findings.intravertebral.geometry;
    let escaped: HashSet<[usize; 3]> = super::measure::mask_voxels(&findings.intravertebral)
        .into_iter()
        .filter(|v| frame.behind_wall_in_canal(g.voxel_to_lps(*v), ESCAPE_MARGIN_MM))
        .collect();
    if escaped.is_empty() {
        return 0;
    }
    let voxel_ml = g.spacing.voxel_volume_ml();
    let mut moved = 0;
    for comp in super::voxels::components26(&escaped) {
        let volume_ml = comp.len() as f64 * voxel_ml;
        if volume_ml < min_leak_ml {
            continue;
        }
        let votes: Vec<bool> = comp.iter().filter_map(|v| behind_cortex(g.voxel_to_lps(*v))).collect();
        let passing = votes.iter().filter(|b| **b).count();
        tracing::debug!(voxels = comp.len(), judged = votes.len(), passing, "escape candidate");
        if votes.is_empty() || (passing as f64) < BEHIND_CORTEX_FRACTION * votes.len() as f64 {
            tracing::debug!(
                volume_ml,
                passing,
                "cement behind the wall plane but not behind the cortex: kept"
            );
            continue;
        }
        let (mut sum, mut max_hu) = ([0.0; 3], f32::MIN);
        for v in &comp {
            let p = g.voxel_to_lps(*v);
            for (s, c) in sum.iter_mut().zip(p.0) {
                *s += c;
            }
            max_hu = max_hu.max(scan.hu(*v).unwrap_or(f32::MIN));
            if let Some(c) = findings.intravertebral.data.get_mut(*v) {
                *c = false;
            }
        }
        let centroid = Lps(sum.map(|s| s / comp.len() as f64));
        let previous_ml = previous.map(|prev| super::resplit::previous_ml(findings, prev, &comp));
        findings.intravertebral_ml = (findings.intravertebral_ml - volume_ml).max(0.0);
        let id = findings.leaks.iter().map(|l| l.id).max().unwrap_or(0) + 1;
        tracing::warn!(volume_ml, %centroid, "intravertebral cement behind the posterior wall taken as a leak");
        findings.leaks.push(CementComponent {
            id,
            voxels: comp,
            volume_ml,
            centroid,
            max_hu,
            touches_body: true,
            previous_ml,
        });
        moved += 1;
    }
    moved
}
