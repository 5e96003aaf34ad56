//! Per-frame geometry of a file: classic single-frame CT, Enhanced CT (functional groups) and legacy
//! multi-frame (one position plus a frame count).
//!
//! Enhanced CT: each attribute is looked up in the frame's PerFrameFunctionalGroupsSequence item, then in
//! the SharedFunctionalGroupsSequence, then at the top level (PlanePositionSequence -> ImagePositionPatient,
//! PlaneOrientationSequence -> ImageOrientationPatient, PixelMeasuresSequence -> PixelSpacing,
//! PixelValueTransformationSequence -> RescaleSlope/Intercept).
//!
//! Legacy multi-frame without per-frame positions: frame k sits at ImagePositionPatient + k * step along the
//! slice normal, where step comes from GridFrameOffsetVector, else SpacingBetweenSlices, else SliceThickness;
//! a warning says the positions were inferred.

use super::header::{float, floats, items, FrameGeom, GeomError};
use crate::volume::{Lps, Vec3};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// Cosines must be unit length and orthogonal to this tolerance (values are stored as decimal strings).
const COSINE_TOL: f64 = 1e-2;

fn in_seq(g: Option<&InMemDicomObject>, seq: Tag) -> Option<&InMemDicomObject> {
    g.and_then(|g| items(g, seq)).and_then(|it| it.first())
}

struct Groups<'a> {
    frame: Option<&'a InMemDicomObject>,
    shared: Option<&'a InMemDicomObject>,
    top: &'a InMemDicomObject,
}

impl Groups<'_> {
    /// Numeric values of `tag`, from the frame's `seq`, else the shared `seq`, else the top level.
    fn values(&self, seq: Tag, tag: Tag) -> Option<Result<Vec<f64>, String>> {
        in_seq(self.frame, seq)
            .and_then(|o| floats(o, tag))
            .or_else(|| in_seq(self.shared, seq).and_then(|o| floats(o, tag)))
            .or_else(|| floats(self.top, tag))
    }

    fn scalar(&self, seq: Tag, tag: Tag) -> Option<f64> {
        in_seq(self.frame, seq)
            .and_then(|o| float(o, tag))
            .or_else(|| in_seq(self.shared, seq).and_then(|o| float(o, tag)))
            .or_else(|| float(self.top, tag))
    }

    fn geometry(&self) -> Result<FrameGeom, GeomError> {
        let ipp = need(
            self.values(tags::PLANE_POSITION_SEQUENCE, tags::IMAGE_POSITION_PATIENT),
            "ImagePositionPatient",
            3,
        )?;
        let iop = need(
            self.values(tags::PLANE_ORIENTATION_SEQUENCE, tags::IMAGE_ORIENTATION_PATIENT),
            "ImageOrientationPatient",
            6,
        )?;
        let ps = self.values(tags::PIXEL_MEASURES_SEQUENCE, tags::PIXEL_SPACING);
        let ps = match ps {
            // A single value is a common writer shortcut for square pixels.
            Some(Ok(v)) if v.len() == 1 => vec![v[0], v[0]],
            other => need(other, "PixelSpacing", 2)?,
        };
        if !(ps[0] > 0.0 && ps[1] > 0.0 && ps[0] < 100.0 && ps[1] < 100.0) {
            return Err(GeomError::Bad {
                tag: "PixelSpacing".into(),
                reason: format!("{:?} mm (must be positive and below 100 mm)", ps),
            });
        }
        let orientation = check_orientation(&iop)?;
        let slope =
            self.scalar(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, tags::RESCALE_SLOPE).unwrap_or(1.0);
        let intercept =
            self.scalar(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, tags::RESCALE_INTERCEPT).unwrap_or(0.0);
        if slope == 0.0 {
            return Err(GeomError::Bad {
                tag: "RescaleSlope".into(),
                reason: "0 maps every pixel to one value".into(),
            });
        }
        Ok(FrameGeom {
            position: Lps([ipp[0], ipp[1], ipp[2]]),
            orientation,
            pixel_spacing: [ps[0], ps[1]],
            slope,
            intercept,
        })
    }
}

/// The first `n` values of a required tag, all finite.
fn need(v: Option<Result<Vec<f64>, String>>, name: &str, n: usize) -> Result<Vec<f64>, GeomError> {
    match v {
        None => Err(GeomError::Missing(name.into())),
        Some(Err(e)) => Err(GeomError::Bad { tag: name.into(), reason: e }),
        Some(Ok(v)) if v.len() < n || v.iter().take(n).any(|x| !x.is_finite()) => Err(GeomError::Bad {
            tag: name.into(),
            reason: format!("{} finite values expected, found {:?}", n, v),
        }),
        Some(Ok(v)) => Ok(v[..n].to_vec()),
    }
}

/// Unit, orthogonal row and column cosines (renormalised, since they are stored as rounded decimals).
fn check_orientation(iop: &[f64]) -> Result<[f64; 6], GeomError> {
    let r = Vec3([iop[0], iop[1], iop[2]]);
    let c = Vec3([iop[3], iop[4], iop[5]]);
    let bad = |reason: String| GeomError::Bad { tag: "ImageOrientationPatient".into(), reason };
    if (r.norm() - 1.0).abs() > COSINE_TOL || (c.norm() - 1.0).abs() > COSINE_TOL {
        return Err(bad(format!("{iop:?}: direction cosines are not unit vectors")));
    }
    if r.dot(c).abs() > COSINE_TOL {
        return Err(bad(format!("{iop:?}: row and column directions are not perpendicular")));
    }
    let (r, c) = match (r.normalized(), c.normalized()) {
        (Some(r), Some(c)) => (r, c),
        _ => return Err(bad(format!("{iop:?}: zero direction"))),
    };
    Ok([r.0[0], r.0[1], r.0[2], c.0[0], c.0[1], c.0[2]])
}

/// Slice normal of an orientation: row cosines x column cosines.
pub fn normal(o: &[f64; 6]) -> Vec3 {
    Vec3([o[0], o[1], o[2]]).cross(Vec3([o[3], o[4], o[5]]))
}

/// Geometry of each of the `frames` frames of `obj`.
pub fn frame_geometry(
    obj: &InMemDicomObject,
    frames: u32,
    warnings: &mut Vec<String>,
) -> Result<Vec<FrameGeom>, GeomError> {
    let shared = items(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|s| s.first());
    if let Some(per_frame) = items(obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE) {
        if per_frame.len() != frames as usize {
            return Err(GeomError::Bad {
                tag: "PerFrameFunctionalGroupsSequence".into(),
                reason: format!("{} items for {} frames", per_frame.len(), frames),
            });
        }
        return per_frame.iter().map(|f| Groups { frame: Some(f), shared, top: obj }.geometry()).collect();
    }
    let first = Groups { frame: None, shared, top: obj }.geometry()?;
    if frames == 1 {
        return Ok(vec![first]);
    }
    let n = normal(&first.orientation);
    let offsets: Vec<f64> = match floats(obj, tags::GRID_FRAME_OFFSET_VECTOR) {
        Some(Ok(v)) if v.len() == frames as usize && v.iter().all(|x| x.is_finite()) => v,
        _ => {
            let step = float(obj, tags::SPACING_BETWEEN_SLICES)
                .filter(|s| *s > 0.0)
                .or_else(|| float(obj, tags::SLICE_THICKNESS).filter(|s| *s > 0.0))
                .ok_or_else(|| {
                    GeomError::Missing(
                        "SpacingBetweenSlices (multi-frame without per-frame positions)".into(),
                    )
                })?;
            warnings.push(format!(
                "multi-frame file without per-frame positions: frames placed every {step} mm along the slice normal from ImagePositionPatient"
            ));
            (0..frames).map(|k| k as f64 * step).collect()
        }
    };
    Ok(offsets.iter().map(|off| FrameGeom { position: first.position + n * *off, ..first.clone() }).collect())
}
