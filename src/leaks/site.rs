//! The four leak sites of the report spec, ordered by clinical danger.

use crate::volume::labels;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where leaked cement lies. See `../shared/spec/README.md` ("Sites").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Site {
    /// Spinal canal (epidural) or an intervertebral foramen: can compress the cord or a nerve root.
    Canal,
    /// Basivertebral vein / anterior internal venous plexus at the posterior wall: can embolise.
    PosteriorVein,
    /// Through an endplate into the intervertebral disc.
    Disc,
    /// Paravertebral soft tissue or segmental veins.
    Paraspinal,
}

impl Site {
    pub const ALL: [Site; 4] = [Site::Canal, Site::PosteriorVein, Site::Disc, Site::Paraspinal];

    pub fn name(self) -> &'static str {
        match self {
            Site::Canal => "canal",
            Site::PosteriorVein => "posterior_vein",
            Site::Disc => "disc",
            Site::Paraspinal => "paraspinal",
        }
    }

    /// Label code in `labels.nii.gz` and DICOM SEG.
    pub fn label(self) -> u8 {
        match self {
            Site::Canal => labels::LEAK_CANAL,
            Site::PosteriorVein => labels::LEAK_POSTERIOR_VEIN,
            Site::Disc => labels::LEAK_DISC,
            Site::Paraspinal => labels::LEAK_PARASPINAL,
        }
    }

    pub fn from_label(code: u8) -> Option<Site> {
        Site::ALL.into_iter().find(|s| s.label() == code)
    }

    /// Rank used when two opinions disagree: the more dangerous site wins (lower is more dangerous).
    /// Canal first (cord compression), then venous sites (embolism), then disc.
    pub fn danger_rank(self) -> u8 {
        match self {
            Site::Canal => 0,
            Site::PosteriorVein => 1,
            Site::Paraspinal => 2,
            Site::Disc => 3,
        }
    }

    /// Whether cement here drains into veins (embolism risk).
    pub fn is_venous(self) -> bool {
        matches!(self, Site::PosteriorVein | Site::Paraspinal)
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Site {
    type Err = String;
    fn from_str(s: &str) -> Result<Site, String> {
        Site::ALL.into_iter().find(|site| site.name() == s).ok_or_else(|| {
            format!("unknown leak site {s:?} (expected canal, posterior_vein, disc or paraspinal)")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels_round_trip() {
        for s in Site::ALL {
            assert_eq!(s.name().parse::<Site>(), Ok(s));
            assert_eq!(Site::from_label(s.label()), Some(s));
            assert_eq!(serde_json::to_string(&s).ok(), Some(format!("\"{}\"", s.name())));
        }
    }
}
