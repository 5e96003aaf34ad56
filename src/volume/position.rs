//! Patient position on the table (DICOM PatientPosition) and the axial image axes a scanner produces for it.

use super::geometry::Vec3;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Head-first positions used in vertebroplasty: prone is the clinical default, decubitus when prone is
/// impossible, supine for diagnostic CT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PatientPosition {
    /// Head first, supine.
    Hfs,
    /// Head first, prone.
    Hfp,
    /// Head first, decubitus left (left side down).
    Hfdl,
    /// Head first, decubitus right (right side down).
    Hfdr,
}

impl PatientPosition {
    pub const ALL: [PatientPosition; 4] =
        [PatientPosition::Hfs, PatientPosition::Hfp, PatientPosition::Hfdl, PatientPosition::Hfdr];

    pub fn dicom_code(self) -> &'static str {
        match self {
            PatientPosition::Hfs => "HFS",
            PatientPosition::Hfp => "HFP",
            PatientPosition::Hfdl => "HFDL",
            PatientPosition::Hfdr => "HFDR",
        }
    }

    /// LPS unit vectors of array axes `[slice, row, column]` for an axial scan in this position, as a scanner
    /// writes them: image columns run to the viewer's right, rows run down toward the table, slices run
    /// toward the head. ImageOrientationPatient is `[axes[2], axes[1]]`.
    pub fn axial_axes(self) -> [Vec3; 3] {
        let (row_dir, col_dir) = match self {
            // (step along a row = next column, step down a column = next row)
            PatientPosition::Hfs => ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
            PatientPosition::Hfp => ([-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]),
            PatientPosition::Hfdl => ([0.0, -1.0, 0.0], [1.0, 0.0, 0.0]),
            PatientPosition::Hfdr => ([0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]),
        };
        [Vec3([0.0, 0.0, 1.0]), Vec3(col_dir), Vec3(row_dir)]
    }
}

impl fmt::Display for PatientPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dicom_code())
    }
}

impl FromStr for PatientPosition {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "HFS" => Ok(PatientPosition::Hfs),
            "HFP" => Ok(PatientPosition::Hfp),
            "HFDL" => Ok(PatientPosition::Hfdl),
            "HFDR" => Ok(PatientPosition::Hfdr),
            other => Err(format!("unknown patient position {other:?} (expected HFS, HFP, HFDL or HFDR)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_right_handed_with_slices_toward_head() {
        for p in PatientPosition::ALL {
            let [s, r, c] = p.axial_axes();
            // row direction x column direction = slice normal, as DICOM defines it.
            let n = c.cross(r);
            assert!((n - s).norm() < 1e-12, "{p}");
        }
    }

    #[test]
    fn table_side_matches_position() {
        // Rows run down toward the table: posterior for supine, anterior for prone, left side for HFDL.
        assert_eq!(PatientPosition::Hfs.axial_axes()[1], Vec3([0.0, 1.0, 0.0]));
        assert_eq!(PatientPosition::Hfp.axial_axes()[1], Vec3([0.0, -1.0, 0.0]));
        assert_eq!(PatientPosition::Hfdl.axial_axes()[1], Vec3([1.0, 0.0, 0.0]));
        assert_eq!(PatientPosition::Hfdr.axial_axes()[1], Vec3([-1.0, 0.0, 0.0]));
    }
}
