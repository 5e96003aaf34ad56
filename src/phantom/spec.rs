//! What a phantom case is made of: the user-facing spec (seed plus optional overrides) and the vocabulary
//! (levels, lesion types, leak sites) shared with truth.json.

use crate::leaks::Site;
use crate::volume::PatientPosition;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Vertebral levels the generator models: thoracic T5–T12 and lumbar L1–L5.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    T5,
    T6,
    T7,
    T8,
    T9,
    T10,
    T11,
    T12,
    L1,
    L2,
    L3,
    L4,
    L5,
}

impl Level {
    pub const ALL: [Level; 13] = [
        Level::T5,
        Level::T6,
        Level::T7,
        Level::T8,
        Level::T9,
        Level::T10,
        Level::T11,
        Level::T12,
        Level::L1,
        Level::L2,
        Level::L3,
        Level::L4,
        Level::L5,
    ];

    /// 0 for T5 up to 12 for L5.
    pub fn index(self) -> usize {
        Level::ALL.iter().position(|&l| l == self).unwrap_or(0)
    }

    pub fn from_index(i: usize) -> Level {
        Level::ALL[i.min(Level::ALL.len() - 1)]
    }

    pub fn is_thoracic(self) -> bool {
        self.index() <= Level::T12.index()
    }

    pub fn name(self) -> &'static str {
        const NAMES: [&str; 13] =
            ["T5", "T6", "T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"];
        NAMES[self.index()]
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let u = s.trim().to_ascii_uppercase();
        Level::ALL
            .iter()
            .copied()
            .find(|l| l.name() == u)
            .ok_or_else(|| format!("unknown level {s:?} (expected T5..T12 or L1..L5)"))
    }
}

/// Metastasis type of the treated vertebra.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LesionType {
    Lytic,
    Blastic,
    Mixed,
    /// No lesion modelled: hybrid cases on real anatomy (serialised `"none"`).
    #[serde(rename = "none")]
    Absent,
}

impl fmt::Display for LesionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LesionType::Lytic => "lytic",
            LesionType::Blastic => "blastic",
            LesionType::Mixed => "mixed",
            LesionType::Absent => "none",
        })
    }
}

impl FromStr for LesionType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "lytic" => Ok(LesionType::Lytic),
            "blastic" => Ok(LesionType::Blastic),
            "mixed" => Ok(LesionType::Mixed),
            o => Err(format!("unknown lesion type {o:?} (expected lytic, blastic or mixed)")),
        }
    }
}

/// Where the optional thermocouple lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThermocouplePlace {
    Canal,
    Foramen,
}

/// A phantom case request: the seed decides everything not overridden here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhantomSpec {
    pub seed: u64,
    /// Treated level; `None` = drawn from the seed.
    pub level: Option<Level>,
    /// Patient position on the table (default prone, HFP).
    pub position: PatientPosition,
    pub lesion: Option<LesionType>,
    pub posterior_wall_intact: Option<bool>,
    /// Leak sites to produce (at least one leak each); `None` = drawn from the seed (often none).
    pub leak_sites: Option<Vec<Site>>,
    pub bilateral: Option<bool>,
    /// `Some(None)` forces no thermocouple.
    pub thermocouple: Option<Option<ThermocouplePlace>>,
    pub slice_thickness_mm: Option<f64>,
    pub pixel_mm: Option<f64>,
    pub slices: Option<usize>,
    /// Rows and columns of each image (512 on scanners; smaller for fast tests).
    pub matrix: usize,
    /// Maximum number of injection scans after the baseline; `None` = until the planned volume is in.
    pub steps: Option<usize>,
    /// Total cement to inject in mL (2–10); `None` = drawn from the seed.
    pub total_ml: Option<f64>,
    /// Patient motion between scans (up to 1 mm, 1 degree); on by default.
    pub motion: bool,
    /// Resolution (mm) of the fine patient model around the spine; 0.5 by default, coarser for fast tests.
    pub model_mm: f64,
}

impl PhantomSpec {
    /// Everything from the seed, prone, 512 x 512.
    pub fn from_seed(seed: u64) -> PhantomSpec {
        PhantomSpec {
            seed,
            level: None,
            position: PatientPosition::Hfp,
            lesion: None,
            posterior_wall_intact: None,
            leak_sites: None,
            bilateral: None,
            thermocouple: None,
            slice_thickness_mm: None,
            pixel_mm: None,
            slices: None,
            matrix: 512,
            steps: None,
            total_ml: None,
            motion: true,
            model_mm: 0.5,
        }
    }
}

impl Default for PhantomSpec {
    fn default() -> Self {
        PhantomSpec::from_seed(0)
    }
}
