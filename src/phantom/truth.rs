//! Ground truth of one scan (truth.json), measured on the scan's own label map, and the expected alert.

use super::spec::{LeakSite, LesionType, Level, ThermocouplePlace};
use crate::volume::{Lps, PatientPosition};
use serde::{Deserialize, Serialize};

/// What the default policy should say after this scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Alert {
    Continue,
    Reduce,
    Pause,
    Stop,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeakTruth {
    /// Stable across the scans of a case.
    pub id: usize,
    pub site: LeakSite,
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
    pub expected_alert: Alert,
}

pub const TRUTH_SCHEMA: &str = "cementleak.phantom_truth/1";

/// The default policy: stop on any canal/foraminal leak; pause on a new or growing posterior-vein or
/// paraspinal leak or a growing disc leak; reduce when intravertebral cement is within 5 mm of the
/// posterior wall; else continue.
pub fn expected_alert(leaks: &[LeakTruth], wall_mm: Option<f64>) -> Alert {
    if leaks.iter().any(|l| l.site == LeakSite::Canal || l.foraminal) {
        return Alert::Stop;
    }
    let pause = leaks.iter().any(|l| match l.site {
        LeakSite::PosteriorVein | LeakSite::Paraspinal => l.new || l.growing,
        LeakSite::Disc => l.growing && !l.new,
        LeakSite::Canal => false,
    });
    if pause {
        return Alert::Pause;
    }
    if wall_mm.is_some_and(|d| d <= 5.0) {
        return Alert::Reduce;
    }
    Alert::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leak(site: LeakSite, new: bool, growing: bool) -> LeakTruth {
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
        }
    }

    #[test]
    fn policy_order() {
        assert_eq!(expected_alert(&[], None), Alert::Continue);
        assert_eq!(expected_alert(&[], Some(4.0)), Alert::Reduce);
        assert_eq!(expected_alert(&[leak(LeakSite::Disc, true, false)], Some(9.0)), Alert::Continue);
        assert_eq!(expected_alert(&[leak(LeakSite::Disc, false, true)], Some(9.0)), Alert::Pause);
        assert_eq!(expected_alert(&[leak(LeakSite::Paraspinal, true, false)], None), Alert::Pause);
        assert_eq!(expected_alert(&[leak(LeakSite::PosteriorVein, false, false)], Some(2.0)), Alert::Reduce);
        assert_eq!(expected_alert(&[leak(LeakSite::Canal, false, false)], Some(9.0)), Alert::Stop);
        let mut f = leak(LeakSite::Paraspinal, false, false);
        f.foraminal = true;
        assert_eq!(expected_alert(&[f], None), Alert::Stop);
    }
}
