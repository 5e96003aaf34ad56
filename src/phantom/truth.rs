//! Ground truth of one scan (truth.json), measured on the scan's own label map, and the expected alert.

use super::spec::{LesionType, Level, ThermocouplePlace};
use crate::alert::{decide, AlertLevel, AlertPolicy, LeakObservation};
use crate::leaks::Site;
use crate::volume::{Lps, PatientPosition};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeakTruth {
    /// Stable across the scans of a case.
    pub id: usize,
    pub site: Site,
    /// Voxels labelled with this leak times the voxel volume.
    pub volume_ml: f64,
    pub voxels: usize,
    pub centroid_lps_mm: Lps,
    /// Part of the leak lies in an intervertebral foramen.
    pub foraminal: bool,
    /// Not visible in the previous scan.
    pub new: bool,
    /// Change of `volume_ml` since the previous scan (0 when new).
    pub grew_ml: f64,
    /// Cement was added to this leak since the previous scan (from the injection model, free of voxelisation
    /// noise from patient motion).
    pub growing: bool,
    /// Cement the injection model added to this leak since the previous scan, mL (0 when new).
    pub injected_ml: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScanTruth {
    pub schema: String,
    /// 0 = baseline (needle in, no cement).
    pub step: usize,
    pub injected_ml: f64,
    /// Cement injected since the previous scan.
    pub increment_ml: f64,
    /// Label-10 voxels times the voxel volume.
    pub intravertebral_cement_ml: f64,
    /// Injected minus leaked, from the injection model (differs from the above by voxelisation only).
    pub planned_intravertebral_ml: f64,
    pub leaks: Vec<LeakTruth>,
    /// Smallest distance (mm) from intravertebral cement to the outer surface of the body's posterior wall;
    /// `None` without cement.
    pub posterior_wall_distance_mm: Option<f64>,
    pub posterior_wall_intact: bool,
    pub level: Level,
    pub position: PatientPosition,
    pub lesion: LesionType,
    pub compression_fracture: bool,
    pub osteoporotic: bool,
    pub bilateral_needles: bool,
    pub thermocouple: Option<ThermocouplePlace>,
    pub needle_tips_lps_mm: Vec<Lps>,
    pub voxel_volume_ml: f64,
    /// Patient motion against the baseline: translation (mm) and rotation angle (degrees).
    pub motion_mm: f64,
    pub motion_deg: f64,
    pub expected_alert: AlertLevel,
}

pub const TRUTH_SCHEMA: &str = "cementleak.phantom_truth/1";

/// What the product's default alert policy (`crate::alert`) should say, given the true leaks: growth is
/// the cement the injection model put into each leak, free of voxelisation noise from patient motion.
pub fn expected_alert(leaks: &[LeakTruth], wall_mm: Option<f64>) -> AlertLevel {
    let observed: Vec<LeakObservation> = leaks
        .iter()
        .map(|l| LeakObservation {
            id: l.id as u32,
            site: l.site,
            foraminal: l.foraminal,
            volume_ml: l.volume_ml,
            new: Some(l.new),
            grew_ml: (!l.new).then_some(l.injected_ml),
        })
        .collect();
    decide(&AlertPolicy::default(), &observed, wall_mm).level
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leak(site: Site, new: bool, growing: bool) -> LeakTruth {
        LeakTruth {
            id: 0,
            site,
            volume_ml: 0.1,
            voxels: 10,
            centroid_lps_mm: Lps::default(),
            foraminal: false,
            new,
            grew_ml: 0.0,
            growing,
            injected_ml: if growing { 0.1 } else { 0.0 },
        }
    }

    #[test]
    fn policy_order() {
        assert_eq!(expected_alert(&[], None), AlertLevel::Continue);
        assert_eq!(expected_alert(&[], Some(4.0)), AlertLevel::Reduce);
        assert_eq!(expected_alert(&[leak(Site::Disc, true, false)], Some(9.0)), AlertLevel::Continue);
        assert_eq!(expected_alert(&[leak(Site::Disc, false, true)], Some(9.0)), AlertLevel::Pause);
        assert_eq!(expected_alert(&[leak(Site::Paraspinal, true, false)], None), AlertLevel::Pause);
        assert_eq!(expected_alert(&[leak(Site::PosteriorVein, false, false)], Some(2.0)), AlertLevel::Reduce);
        assert_eq!(expected_alert(&[leak(Site::Canal, false, false)], Some(9.0)), AlertLevel::Stop);
        let mut f = leak(Site::Paraspinal, false, false);
        f.foraminal = true;
        assert_eq!(expected_alert(&[f], None), AlertLevel::Stop);
    }
}
