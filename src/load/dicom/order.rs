//! Slice order and volume geometry.
//!
//! Slices are sorted by their position along the slice normal (row cosines x column cosines, dotted with
//! ImagePositionPatient), never by InstanceNumber or file name. Policy:
//! - **Duplicates** (two slices at the same position, within 0.01 mm): kept once when their pixels are
//!   identical (the caller compares them), refused otherwise (several phases or a time series mixed in one
//!   series).
//! - **Spacing**: every gap between neighbouring slices must be within 10% of the median gap. Larger
//!   variation means missing slices or a mixed series and is refused, since resampling over a hole would
//!   invent anatomy. Jitter above 1% (and under 10%) is accepted with a warning; the volume uses the mean
//!   spacing.
//! - **Gantry tilt** (positions step along a direction that is not the slice normal): the geometry keeps the
//!   true, non-orthogonal slice axis (axis 0 = unit vector from the first to the last position), so every
//!   voxel still maps to its true LPS point; a warning gives the tilt angle. Tilts above 45 degrees are refused.
//! - Positions must lie on one straight line (within half a pixel): otherwise refused.

use super::header::{FileHeader, FrameGeom, MAX_VOXELS};
use super::multiframe::normal;
use crate::load::LoadError;
use crate::volume::{Geometry, Lps, Spacing, Vec3};
use std::path::Path;

/// Positions closer than this along the normal are the same slice.
pub const DUPLICATE_TOL_MM: f64 = 0.01;
/// Relative gap variation refused above, and warned about above.
pub const SPACING_REFUSE: f64 = 0.10;
pub const SPACING_WARN: f64 = 0.01;
/// Tilt angle (degrees) worth a warning; below it the difference is rounding of stored positions.
pub const TILT_WARN_DEG: f64 = 0.5;
pub const TILT_REFUSE_DEG: f64 = 45.0;

/// One frame of one file of the series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceRef {
    pub file: usize,
    pub frame: u32,
}

/// How to assemble the volume.
#[derive(Debug)]
pub struct Plan {
    /// Output slice k comes from `slices[k]`.
    pub slices: Vec<SliceRef>,
    /// Rescale (slope, intercept) of each output slice.
    pub rescale: Vec<(f64, f64)>,
    /// Pairs (kept, dropped) of same-position slices whose pixels must be identical.
    pub duplicates: Vec<(SliceRef, SliceRef)>,
    pub geometry: Geometry,
    pub rows: usize,
    pub cols: usize,
    pub warnings: Vec<String>,
}

struct Item {
    r: SliceRef,
    g: FrameGeom,
    along: f64,
}

fn inconsistent(path: &Path, reason: String) -> LoadError {
    LoadError::Inconsistent { path: path.to_path_buf(), reason }
}

/// Order the frames of `files` (one series) and derive the volume geometry. `root` names the input in errors.
pub fn plan(root: &Path, files: &[FileHeader]) -> Result<Plan, LoadError> {
    let first = files.first().ok_or_else(|| LoadError::NoDicom { path: root.to_path_buf() })?;
    let (rows, cols) = (first.rows, first.cols);
    let mut items = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        if (f.rows, f.cols) != (rows, cols) {
            return Err(inconsistent(
                &f.path,
                format!(
                    "image size {}x{} differs from {}x{} in {}",
                    f.rows,
                    f.cols,
                    rows,
                    cols,
                    first.path.display()
                ),
            ));
        }
        let geoms = f.geometry.clone().map_err(|e| e.into_load_error(&f.path))?;
        for (k, g) in geoms.into_iter().enumerate() {
            items.push(Item { r: SliceRef { file: fi, frame: k as u32 }, g, along: 0.0 });
        }
    }
    let total = items.len() as u64 * rows as u64 * cols as u64;
    if total > MAX_VOXELS {
        return Err(LoadError::AbsurdSize {
            path: root.to_path_buf(),
            shape: vec![items.len(), rows as usize, cols as usize],
            limit: format!("{MAX_VOXELS} voxels"),
        });
    }
    let ref_g = items[0].g.clone();
    let n = normal(&ref_g.orientation);
    for it in &mut items {
        let f = &files[it.r.file];
        let dmax = (0..6).map(|i| (it.g.orientation[i] - ref_g.orientation[i]).abs()).fold(0.0, f64::max);
        if dmax > 1e-3 {
            return Err(inconsistent(
                &f.path,
                format!(
                    "ImageOrientationPatient {:?} differs from {:?}: slices of different planes",
                    it.g.orientation, ref_g.orientation
                ),
            ));
        }
        let ps_rel =
            (0..2).map(|i| (it.g.pixel_spacing[i] / ref_g.pixel_spacing[i] - 1.0).abs()).fold(0.0, f64::max);
        if ps_rel > 1e-3 {
            return Err(inconsistent(
                &f.path,
                format!(
                    "PixelSpacing {:?} differs from {:?} in the same series",
                    it.g.pixel_spacing, ref_g.pixel_spacing
                ),
            ));
        }
        it.along = n.dot(it.g.position - Lps::default());
    }
    items.sort_by(|a, b| {
        a.along.total_cmp(&b.along).then(a.r.file.cmp(&b.r.file)).then(a.r.frame.cmp(&b.r.frame))
    });

    // Same position: keep the first, remember the pair so the caller can compare pixels.
    let mut duplicates = Vec::new();
    let mut kept: Vec<Item> = Vec::with_capacity(items.len());
    for it in items {
        if let Some(last) = kept.last() {
            if (it.along - last.along).abs() < DUPLICATE_TOL_MM {
                if last.g.position.distance(it.g.position) > DUPLICATE_TOL_MM * 10.0 {
                    return Err(inconsistent(
                        &files[it.r.file].path,
                        format!(
                            "two slices in the same plane at different in-plane positions ({} and {})",
                            last.g.position, it.g.position
                        ),
                    ));
                }
                duplicates.push((last.r, it.r));
                continue;
            }
        }
        kept.push(it);
    }
    let mut warnings = Vec::new();
    if !duplicates.is_empty() {
        warnings.push(format!("{} duplicate slice(s) with identical pixels ignored", duplicates.len()));
    }
    let row_dir = Vec3([ref_g.orientation[0], ref_g.orientation[1], ref_g.orientation[2]]);
    let col_dir = Vec3([ref_g.orientation[3], ref_g.orientation[4], ref_g.orientation[5]]);
    let (axis0, slice_spacing) = if kept.len() == 1 {
        let s = first.spacing_between_slices.or(first.slice_thickness);
        let s = s.unwrap_or_else(|| {
            warnings.push("single slice without SliceThickness: slice spacing set to 1 mm".into());
            1.0
        });
        (n, s)
    } else {
        slice_axis(root, files, &kept, n, ref_g.pixel_spacing, &mut warnings)?
    };
    let geometry = Geometry {
        origin: kept[0].g.position,
        spacing: Spacing {
            slice: slice_spacing,
            row: ref_g.pixel_spacing[0],
            column: ref_g.pixel_spacing[1],
        },
        axes: [axis0, col_dir, row_dir],
    };
    Ok(Plan {
        rescale: kept.iter().map(|k| (k.g.slope, k.g.intercept)).collect(),
        slices: kept.iter().map(|k| k.r).collect(),
        duplicates,
        geometry,
        rows: rows as usize,
        cols: cols as usize,
        warnings,
    })
}

/// Direction and spacing of the slice axis from sorted, distinct positions; applies the spacing, line and
/// tilt policy of the module doc.
fn slice_axis(
    root: &Path,
    files: &[FileHeader],
    kept: &[Item],
    n: Vec3,
    pixel_spacing: [f64; 2],
    warnings: &mut Vec<String>,
) -> Result<(Vec3, f64), LoadError> {
    let m = kept.len();
    let gaps: Vec<f64> = kept.windows(2).map(|w| w[1].along - w[0].along).collect();
    let mut sorted = gaps.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let (gmin, gmax) = (sorted[0], sorted[sorted.len() - 1]);
    let worst = gaps.iter().map(|g| (g / median - 1.0).abs()).fold(0.0, f64::max);
    if worst > SPACING_REFUSE {
        let at = gaps.iter().position(|g| (g / median - 1.0).abs() == worst).unwrap_or(0);
        return Err(inconsistent(
            root,
            format!(
                "slice spacing varies from {gmin:.3} to {gmax:.3} mm (median {median:.3} mm, more than {:.0}% apart; worst gap {:.3} mm after {}): missing or extra slices, export the complete series",
                SPACING_REFUSE * 100.0,
                gaps[at],
                files[kept[at].r.file].path.display()
            ),
        ));
    }
    if worst > SPACING_WARN {
        warnings.push(format!(
            "slice spacing jitters from {gmin:.3} to {gmax:.3} mm (under {:.0}%); treated as uniform",
            SPACING_REFUSE * 100.0
        ));
    }
    let span = kept[m - 1].g.position - kept[0].g.position;
    let axis0 = span.normalized().ok_or_else(|| inconsistent(root, "all slices at one position".into()))?;
    let spacing =
        kept.windows(2).map(|w| w[0].g.position.distance(w[1].g.position)).sum::<f64>() / (m - 1) as f64;
    let tol = 0.5 * pixel_spacing[0].min(pixel_spacing[1]);
    for (k, it) in kept.iter().enumerate() {
        let d = it.g.position - kept[0].g.position;
        let off_line = (d - axis0 * d.dot(axis0)).norm();
        if off_line > tol {
            return Err(inconsistent(
                &files[it.r.file].path,
                format!(
                    "slice {k} at {} is {off_line:.2} mm off the line through the other slices",
                    it.g.position
                ),
            ));
        }
    }
    let tilt = axis0.dot(n).clamp(-1.0, 1.0).acos().to_degrees();
    if tilt > TILT_REFUSE_DEG {
        return Err(inconsistent(root, format!("slices are sheared by {tilt:.1} degrees from their normal")));
    }
    if tilt > TILT_WARN_DEG {
        warnings.push(format!(
            "gantry tilt of {tilt:.1} degrees: slices are sheared; the volume keeps the tilted slice axis (non-orthogonal grid)"
        ));
    }
    Ok((axis0, spacing))
}
