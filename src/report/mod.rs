//! Stage 6: the machine-readable result of one analysis, `report.json` (schema `cementleak.report/1`, kept
//! in `schema/report.schema.json`; the shared spec may only be extended with optional fields).
//!
//! Written atomically: a crash or a refused input never leaves a partial `report.json` behind.

use crate::alert::Alert;
use crate::leaks::Site;
use crate::load::Scan;
use crate::volume::Lps;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

pub const SCHEMA_ID: &str = "cementleak.report/1";

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub generator: Generator,
    pub input: Inputs,
    pub vertebra: VertebraReport,
    pub cement: CementReport,
    pub leaks: Vec<LeakReport>,
    pub alert: Alert,
    pub timing_ms: BTreeMap<String, f64>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Generator {
    pub name: &'static str,
    pub version: &'static str,
    pub model: Option<ModelRef>,
}

impl Generator {
    pub fn this(model: Option<ModelRef>) -> Generator {
        Generator { name: env!("CARGO_PKG_NAME"), version: env!("CARGO_PKG_VERSION"), model }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelRef {
    pub file: String,
    pub sha256: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Inputs {
    pub scan: SeriesRef,
    pub baseline: Option<SeriesRef>,
    pub previous: Option<SeriesRef>,
}

/// The identity and grid of one input series.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesRef {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: String,
    pub series_number: Option<i64>,
    pub acquisition_time: Option<String>,
    pub shape_zyx: [usize; 3],
    pub spacing_zyx_mm: [f64; 3],
    pub patient_position: Option<String>,
}

impl SeriesRef {
    pub fn of(scan: &Scan) -> SeriesRef {
        let i = &scan.info;
        SeriesRef {
            path: i.path.clone(),
            study_instance_uid: i.study_instance_uid.clone(),
            series_instance_uid: i.series_instance_uid.clone(),
            series_number: i.series_number,
            acquisition_time: i.acquisition_time.clone(),
            shape_zyx: scan.volume.shape(),
            spacing_zyx_mm: scan.volume.geometry.spacing.zyx(),
            patient_position: i.patient_position.clone(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct VertebraReport {
    pub found: bool,
    pub level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub centroid_lps_mm: Option<Lps>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_volume_ml: Option<f64>,
    pub posterior_wall_intact: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CementReport {
    pub total_volume_ml: f64,
    pub intravertebral_volume_ml: f64,
    pub new_volume_ml: Option<f64>,
    pub posterior_wall_distance_mm: Option<f64>,
    pub fill_fraction: Option<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LeakReport {
    pub id: u32,
    pub site: Site,
    pub foraminal: bool,
    pub volume_ml: f64,
    pub centroid_lps_mm: Lps,
    pub max_hu: f64,
    pub new: Option<bool>,
    pub grew_ml: Option<f64>,
    pub confidence: f64,
    pub model_site: Option<String>,
    pub model_probabilities: Option<BTreeMap<String, f64>>,
    pub rule_site: Option<String>,
    pub review: bool,
}

impl LeakReport {
    /// What the alert policy needs to know of this leak.
    pub fn observation(&self) -> crate::alert::LeakObservation {
        crate::alert::LeakObservation {
            id: self.id,
            site: self.site,
            foraminal: self.foraminal,
            volume_ml: self.volume_ml,
            new: self.new,
            grew_ml: self.grew_ml,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

/// Write `value` as pretty JSON to `path` through a temporary file in the same folder and a rename, so
/// readers see either the old file, no file, or the complete new one.
pub fn write_json_atomically<T: Serialize>(value: &T, path: &Path) -> Result<(), ReportError> {
    let err = |e: &dyn std::fmt::Display| ReportError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let json = serde_json::to_vec_pretty(value).map_err(|e| err(&e))?;
    let tmp = path.with_extension("json.partial");
    let mut f = std::fs::File::create(&tmp).map_err(|e| err(&e))?;
    f.write_all(&json).and_then(|_| f.write_all(b"\n")).and_then(|_| f.sync_all()).map_err(|e| err(&e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(&e)
    })
}
