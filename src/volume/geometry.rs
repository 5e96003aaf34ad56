//! Patient geometry: where each voxel sits in DICOM patient space.
//!
//! DICOM patient coordinates are LPS: +x toward the patient's **L**eft, +y toward **P**osterior, +z toward
//! **S**uperior (head), in millimetres. Every anatomical direction the pipeline uses comes from here, never from
//! array axes: a prone patient stored top-to-bottom has posterior at row 0, a supine one at the last row, a
//! decubitus one along the columns.
//!
//! Arrays are indexed `[slice, row, column]` (called z, y, x below). Index axis 0 follows the slice
//! stacking direction, axis 1 the DICOM column direction cosine (moving down a column = next row), axis 2 the
//! DICOM row direction cosine (moving along a row = next column).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::{Add, Mul, Sub};

/// A displacement or point coordinate triple in LPS millimetres.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Vec3(pub [f64; 3]);

impl Vec3 {
    pub const ZERO: Vec3 = Vec3([0.0; 3]);

    pub fn dot(self, o: Vec3) -> f64 {
        self.0[0] * o.0[0] + self.0[1] * o.0[1] + self.0[2] * o.0[2]
    }
    pub fn cross(self, o: Vec3) -> Vec3 {
        let [a, b, c] = self.0;
        let [d, e, f] = o.0;
        Vec3([b * f - c * e, c * d - a * f, a * e - b * d])
    }
    pub fn norm(self) -> f64 {
        self.dot(self).sqrt()
    }
    /// Unit vector in the same direction; `None` for a (near) zero vector.
    pub fn normalized(self) -> Option<Vec3> {
        let n = self.norm();
        (n > 1e-12).then(|| self * (1.0 / n))
    }
}

impl Add for Vec3 {
    type Output = Vec3;
    fn add(self, o: Vec3) -> Vec3 {
        Vec3([self.0[0] + o.0[0], self.0[1] + o.0[1], self.0[2] + o.0[2]])
    }
}
impl Sub for Vec3 {
    type Output = Vec3;
    fn sub(self, o: Vec3) -> Vec3 {
        Vec3([self.0[0] - o.0[0], self.0[1] - o.0[1], self.0[2] - o.0[2]])
    }
}
impl Mul<f64> for Vec3 {
    type Output = Vec3;
    fn mul(self, s: f64) -> Vec3 {
        Vec3([self.0[0] * s, self.0[1] * s, self.0[2] * s])
    }
}

/// A point in DICOM patient coordinates (LPS, millimetres). Serialises as `[x, y, z]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lps(pub [f64; 3]);

impl Lps {
    pub fn x(self) -> f64 {
        self.0[0]
    }
    pub fn y(self) -> f64 {
        self.0[1]
    }
    pub fn z(self) -> f64 {
        self.0[2]
    }
    /// Euclidean distance in millimetres.
    pub fn distance(self, o: Lps) -> f64 {
        (self - o).norm()
    }
    /// Rounded to 0.01 mm, for reports.
    pub fn rounded(self) -> Lps {
        Lps(self.0.map(|v| (v * 100.0).round() / 100.0))
    }
}

impl Sub for Lps {
    type Output = Vec3;
    fn sub(self, o: Lps) -> Vec3 {
        Vec3([self.0[0] - o.0[0], self.0[1] - o.0[1], self.0[2] - o.0[2]])
    }
}
impl Add<Vec3> for Lps {
    type Output = Lps;
    fn add(self, v: Vec3) -> Lps {
        Lps([self.0[0] + v.0[0], self.0[1] + v.0[1], self.0[2] + v.0[2]])
    }
}
impl fmt::Display for Lps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:.1}, {:.1}, {:.1}) mm LPS", self.0[0], self.0[1], self.0[2])
    }
}

/// An anatomical direction in patient space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Left,
    Right,
    Posterior,
    Anterior,
    Superior,
    Inferior,
}

impl Direction {
    /// Unit vector of this direction in LPS.
    pub fn unit(self) -> Vec3 {
        match self {
            Direction::Left => Vec3([1.0, 0.0, 0.0]),
            Direction::Right => Vec3([-1.0, 0.0, 0.0]),
            Direction::Posterior => Vec3([0.0, 1.0, 0.0]),
            Direction::Anterior => Vec3([0.0, -1.0, 0.0]),
            Direction::Superior => Vec3([0.0, 0.0, 1.0]),
            Direction::Inferior => Vec3([0.0, 0.0, -1.0]),
        }
    }
}

/// Voxel spacing in millimetres along the array axes (slice, row, column).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spacing {
    /// Distance between slice centres (axis 0), mm.
    pub slice: f64,
    /// Distance between row centres (axis 1), mm: DICOM PixelSpacing[0].
    pub row: f64,
    /// Distance between column centres (axis 2), mm: DICOM PixelSpacing[1].
    pub column: f64,
}

impl Spacing {
    pub fn zyx(self) -> [f64; 3] {
        [self.slice, self.row, self.column]
    }
    pub fn from_zyx(s: [f64; 3]) -> Spacing {
        Spacing { slice: s[0], row: s[1], column: s[2] }
    }
    /// Volume of one voxel in millilitres (1 mL = 1000 mm³).
    pub fn voxel_volume_ml(self) -> f64 {
        self.slice * self.row * self.column / 1000.0
    }
}

/// Which array axis points (mostly) toward an anatomical direction, and which way along it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AxisToward {
    /// Array axis 0 (slice), 1 (row) or 2 (column).
    pub axis: usize,
    /// +1 when increasing the index moves toward the direction, -1 when decreasing it does.
    pub sign: i8,
}

/// Maps array indices `[slice, row, column]` to LPS millimetres and back.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// Centre of voxel `[0, 0, 0]`.
    pub origin: Lps,
    pub spacing: Spacing,
    /// Unit LPS vectors for a step of +1 along array axes 0, 1, 2.
    pub axes: [Vec3; 3],
}

impl Geometry {
    /// Axis-aligned geometry of a supine (HFS) axial scan stored in the usual way: columns run toward the
    /// patient's left, rows toward posterior, slices toward superior.
    pub fn axial_hfs(origin: Lps, spacing: Spacing) -> Geometry {
        Geometry {
            origin,
            spacing,
            axes: [Vec3([0.0, 0.0, 1.0]), Vec3([0.0, 1.0, 0.0]), Vec3([1.0, 0.0, 0.0])],
        }
    }

    /// LPS position of a (possibly fractional) index `[slice, row, column]`.
    pub fn index_to_lps(&self, idx: [f64; 3]) -> Lps {
        let s = self.spacing.zyx();
        let mut p = self.origin;
        for a in 0..3 {
            p = p + self.axes[a] * (idx[a] * s[a]);
        }
        p
    }

    /// LPS position of the centre of voxel `[slice, row, column]`.
    pub fn voxel_to_lps(&self, idx: [usize; 3]) -> Lps {
        self.index_to_lps(idx.map(|v| v as f64))
    }

    /// Continuous index `[slice, row, column]` of an LPS point (inverse of [`Geometry::index_to_lps`]).
    /// Works for non-orthogonal axes (tilted gantries) by solving the 3x3 system.
    pub fn lps_to_index(&self, p: Lps) -> [f64; 3] {
        let s = self.spacing.zyx();
        let m = [self.axes[0] * s[0], self.axes[1] * s[1], self.axes[2] * s[2]];
        let d = p - self.origin;
        // Cramer's rule with columns m[0], m[1], m[2].
        let det = m[0].dot(m[1].cross(m[2]));
        if det.abs() < 1e-12 {
            return [f64::NAN; 3];
        }
        [d.dot(m[1].cross(m[2])) / det, m[0].dot(d.cross(m[2])) / det, m[0].dot(m[1].cross(d)) / det]
    }

    /// Nearest voxel to an LPS point, if it lies inside a volume of `shape`.
    pub fn lps_to_voxel(&self, p: Lps, shape: [usize; 3]) -> Option<[usize; 3]> {
        let f = self.lps_to_index(p);
        let mut out = [0usize; 3];
        for a in 0..3 {
            let r = f[a].round();
            if !(r >= 0.0 && r < shape[a] as f64) {
                return None;
            }
            out[a] = r as usize;
        }
        Some(out)
    }

    /// The array axis best aligned with `dir`, and the index sign that moves toward it.
    pub fn axis_toward(&self, dir: Direction) -> AxisToward {
        let u = dir.unit();
        let (axis, cos) = (0..3)
            .map(|a| (a, self.axes[a].dot(u)))
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .unwrap_or((0, 1.0));
        AxisToward { axis, sign: if cos >= 0.0 { 1 } else { -1 } }
    }

    /// Component of the LPS step of each array axis along `dir`, in mm per index step.
    pub fn mm_per_index_toward(&self, dir: Direction) -> [f64; 3] {
        let s = self.spacing.zyx();
        let u = dir.unit();
        [0, 1, 2].map(|a| self.axes[a].dot(u) * s[a])
    }

    /// The slice normal (axis 0) and in-plane axes are orthogonal (no gantry tilt, no shear).
    pub fn is_orthogonal(&self, tol: f64) -> bool {
        self.axes[0].dot(self.axes[1]).abs() < tol
            && self.axes[0].dot(self.axes[2]).abs() < tol
            && self.axes[1].dot(self.axes[2]).abs() < tol
    }

    /// 4x4 affine from `[column, row, slice]` (NIfTI i, j, k order) to RAS millimetres, as NIfTI's sform wants.
    pub fn nifti_ras_affine(&self) -> [[f64; 4]; 4] {
        let s = self.spacing.zyx();
        // NIfTI index (i, j, k) = array (column, row, slice) = array axes (2, 1, 0).
        let cols = [self.axes[2] * s[2], self.axes[1] * s[1], self.axes[0] * s[0]];
        let flip = [-1.0, -1.0, 1.0]; // LPS -> RAS
        let mut m = [[0.0; 4]; 4];
        for r in 0..3 {
            for (c, col) in cols.iter().enumerate() {
                m[r][c] = flip[r] * col.0[r];
            }
            m[r][3] = flip[r] * self.origin.0[r];
        }
        m[3][3] = 1.0;
        m
    }

    /// Inverse of [`Geometry::nifti_ras_affine`]: geometry from a NIfTI RAS affine over `(i, j, k)` indices,
    /// with the array stored as `[k, j, i]`.
    pub fn from_nifti_ras_affine(m: &[[f64; 4]; 4]) -> Option<Geometry> {
        let flip = [-1.0, -1.0, 1.0];
        let col = |c: usize| Vec3([flip[0] * m[0][c], flip[1] * m[1][c], flip[2] * m[2][c]]);
        let (i, j, k) = (col(0), col(1), col(2));
        let spacing = Spacing { slice: k.norm(), row: j.norm(), column: i.norm() };
        Some(Geometry {
            origin: Lps([flip[0] * m[0][3], flip[1] * m[1][3], flip[2] * m[2][3]]),
            spacing,
            axes: [k.normalized()?, j.normalized()?, i.normalized()?],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prone() -> Geometry {
        // HFP: rows run toward anterior, columns toward the patient's right.
        Geometry {
            origin: Lps([10.0, -20.0, 30.0]),
            spacing: Spacing { slice: 2.0, row: 0.5, column: 0.7 },
            axes: [Vec3([0.0, 0.0, 1.0]), Vec3([0.0, -1.0, 0.0]), Vec3([-1.0, 0.0, 0.0])],
        }
    }

    #[test]
    fn index_round_trip() {
        let g = prone();
        let idx = [3.0, 17.5, 101.25];
        let back = g.lps_to_index(g.index_to_lps(idx));
        for a in 0..3 {
            assert!((back[a] - idx[a]).abs() < 1e-9);
        }
    }

    #[test]
    fn directions_follow_patient_space_not_array() {
        let g = prone();
        assert_eq!(g.axis_toward(Direction::Posterior), AxisToward { axis: 1, sign: -1 });
        assert_eq!(g.axis_toward(Direction::Anterior), AxisToward { axis: 1, sign: 1 });
        assert_eq!(g.axis_toward(Direction::Left), AxisToward { axis: 2, sign: -1 });
        assert_eq!(g.axis_toward(Direction::Superior), AxisToward { axis: 0, sign: 1 });
        let h = Geometry::axial_hfs(Lps::default(), g.spacing);
        assert_eq!(h.axis_toward(Direction::Posterior), AxisToward { axis: 1, sign: 1 });
    }

    #[test]
    fn nifti_las_affine_matches_dicom_hfs_with_rows_reversed() {
        // TotalSegmentator-style LAS label map of a 512 x 512 HFS series: i = column toward the patient's left,
        // j = 511 - row (toward anterior), k = slice toward the head; RAS origin at (column 0, row 511).
        let m = [
            [-0.9765625, 0.0, 0.0, 249.51171875],
            [0.0, 0.9765625, 0.0, -61.51171875],
            [0.0, 0.0, 2.0, -804.5],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let g = Geometry::from_nifti_ras_affine(&m).expect("valid affine");
        let dicom = Geometry::axial_hfs(
            Lps([-249.51171875, -437.51171875, -804.5]),
            Spacing { slice: 2.0, row: 0.9765625, column: 0.9765625 },
        );
        for (k, row, col) in [(0usize, 0usize, 0usize), (3, 100, 400), (19, 511, 511)] {
            let nifti = g.voxel_to_lps([k, 511 - row, col]);
            assert!(nifti.distance(dicom.voxel_to_lps([k, row, col])) < 1e-9, "{k} {row} {col}");
        }
        assert_eq!(g.axis_toward(Direction::Anterior), AxisToward { axis: 1, sign: 1 });
        assert_eq!(g.axis_toward(Direction::Left), AxisToward { axis: 2, sign: 1 });
        // And back: the affine of the geometry is the one we started from.
        let back = g.nifti_ras_affine();
        for r in 0..4 {
            for c in 0..4 {
                assert!((back[r][c] - m[r][c]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn degenerate_nifti_affine_is_refused() {
        let mut m = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
        m[0][2] = 0.0;
        m[2][2] = 0.0;
        assert!(Geometry::from_nifti_ras_affine(&m).is_none());
    }

    #[test]
    fn nifti_affine_round_trip() {
        let g = prone();
        let back = Geometry::from_nifti_ras_affine(&g.nifti_ras_affine()).expect("valid affine");
        let p = [4.0, 9.0, 2.0];
        assert!(g.index_to_lps(p).distance(back.index_to_lps(p)) < 1e-9);
    }
}
