//! What one DICOM file says about itself before any pixel is decoded: identity, image format and the
//! patient-space placement of each frame. Everything here is read from the header only, so the series can be
//! grouped, checked and sized before a single voxel buffer is allocated.

use super::{lenient, multiframe};
use crate::load::LoadError;
use crate::volume::Lps;
use dicom_core::header::HasLength;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use std::path::{Path, PathBuf};

/// Largest accepted Rows or Columns: CT reconstructions are 512 or 1024 wide, a few 2048.
pub const MAX_IN_PLANE: u32 = 4096;
/// Largest accepted voxel count of a series (2^31): bigger is a corrupt header, not a CT.
pub const MAX_VOXELS: u64 = 1 << 31;

/// Placement and value mapping of one frame (one slice) in patient space.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameGeom {
    /// ImagePositionPatient: centre of the first transmitted pixel, LPS mm.
    pub position: Lps,
    /// ImageOrientationPatient: row cosines then column cosines.
    pub orientation: [f64; 6],
    /// PixelSpacing: (between rows, between columns) mm.
    pub pixel_spacing: [f64; 2],
    /// Modality LUT: HU = slope * stored + intercept.
    pub slope: f64,
    pub intercept: f64,
}

/// Header facts of one image file.
#[derive(Clone, Debug)]
pub struct FileHeader {
    pub path: PathBuf,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_uid: Option<String>,
    pub series_uid: String,
    pub series_number: Option<i64>,
    pub description: Option<String>,
    pub acquisition_time: Option<String>,
    pub modality: String,
    pub patient_position: Option<String>,
    pub body_part: Option<String>,
    pub image_type: Vec<String>,
    pub transfer_syntax: String,
    pub rows: u32,
    pub cols: u32,
    pub frames: u32,
    pub samples_per_pixel: u16,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    pub photometric: String,
    /// Stored values marking "no data" (PixelPaddingValue .. PixelPaddingRangeLimit, inclusive).
    pub padding: Option<(i64, i64)>,
    /// SliceThickness / SpacingBetweenSlices, used only when positions cannot give the spacing.
    pub slice_thickness: Option<f64>,
    pub spacing_between_slices: Option<f64>,
    /// One entry per frame; an error when the geometry tags are missing or invalid, raised only if this file
    /// belongs to the series that is actually loaded.
    pub geometry: Result<Vec<FrameGeom>, GeomError>,
    pub warnings: Vec<String>,
}

/// A geometry problem kept until we know the file matters.
#[derive(Clone, Debug)]
pub enum GeomError {
    Missing(String),
    Bad { tag: String, reason: String },
}

impl GeomError {
    pub fn into_load_error(self, path: &Path) -> LoadError {
        match self {
            GeomError::Missing(tag) => LoadError::MissingTag { path: path.to_path_buf(), tag },
            GeomError::Bad { tag, reason } => LoadError::BadTag { path: path.to_path_buf(), tag, reason },
        }
    }
}

impl FileHeader {
    pub fn is_ct(&self) -> bool {
        self.modality.eq_ignore_ascii_case("CT")
    }
    pub fn is_localizer(&self) -> bool {
        self.image_type.iter().any(|t| t.eq_ignore_ascii_case("LOCALIZER"))
    }
}

/// Trimmed non-empty string value of `tag` in `obj` (UN values decoded as their dictionary VR).
pub fn string(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let s = lenient::cow_text(obj.get(tag)?)?;
    let s = s.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!s.is_empty()).then(|| s.to_string())
}

pub fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    let e = obj.get(tag)?;
    match lenient::un_text(e) {
        Some(t) => lenient::parse_numbers(&t).ok()?.first().map(|v| *v as i64),
        None => e.to_int::<i64>().ok(),
    }
}

pub fn float(obj: &InMemDicomObject, tag: Tag) -> Option<f64> {
    let v = match floats(obj, tag)? {
        Ok(v) => *v.first()?,
        Err(_) => return None,
    };
    v.is_finite().then_some(v)
}

/// All values of a multi-valued numeric tag; `Err` if present but unreadable.
pub fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Result<Vec<f64>, String>> {
    let e = obj.get(tag)?;
    if e.is_empty() {
        return None;
    }
    if let Some(t) = lenient::un_text(e) {
        return Some(lenient::parse_numbers(&t));
    }
    Some(e.to_multi_float64().map_err(|err| err.to_string()))
}

/// Items of a sequence element, if present.
pub fn items(obj: &InMemDicomObject, tag: Tag) -> Option<&[InMemDicomObject]> {
    obj.get(tag)?.items()
}

/// An error and all its sources on one line (dicom-rs puts the useful detail in the sources).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut src = err.source();
    while let Some(e) = src {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        src = e.source();
    }
    out.replace('\n', " ")
}

/// Read the header facts of a file whose image pixel module is present (Rows/Columns set).
/// Returns `Ok(None)` for DICOM objects that are not images (no Rows/Columns: SR, DICOMDIR, presentation
/// states...).
pub fn read_header(
    path: &Path,
    obj: &InMemDicomObject,
    transfer_syntax: &str,
    sop_class_meta: &str,
) -> Result<Option<FileHeader>, LoadError> {
    let bad =
        |tag: &str, reason: String| LoadError::BadTag { path: path.to_path_buf(), tag: tag.into(), reason };
    let modality = string(obj, tags::MODALITY).unwrap_or_default();
    let (rows, cols) = match (int(obj, tags::ROWS), int(obj, tags::COLUMNS)) {
        (Some(r), Some(c)) => (r, c),
        _ => return Ok(None),
    };
    if rows < 1 || cols < 1 || rows > MAX_IN_PLANE as i64 || cols > MAX_IN_PLANE as i64 {
        return Err(LoadError::AbsurdSize {
            path: path.to_path_buf(),
            shape: vec![rows.max(0) as usize, cols.max(0) as usize],
            limit: format!("rows and columns 1..={MAX_IN_PLANE}"),
        });
    }
    let frames = match int(obj, tags::NUMBER_OF_FRAMES) {
        None => 1,
        Some(n) if n >= 1 && (n as u64) * (rows as u64) * (cols as u64) <= MAX_VOXELS => n,
        Some(n) => {
            return Err(LoadError::AbsurdSize {
                path: path.to_path_buf(),
                shape: vec![n.max(0) as usize, rows as usize, cols as usize],
                limit: format!("1 or more frames and at most {MAX_VOXELS} voxels"),
            })
        }
    };
    let bits_allocated = int(obj, tags::BITS_ALLOCATED).unwrap_or(16);
    let bits_stored = int(obj, tags::BITS_STORED).unwrap_or(bits_allocated);
    if !matches!(bits_allocated, 8 | 16 | 32) {
        return Err(bad("BitsAllocated", format!("{bits_allocated} (CT images use 8, 16 or 32)")));
    }
    if bits_stored < 1 || bits_stored > bits_allocated {
        return Err(bad("BitsStored", format!("{bits_stored} with BitsAllocated {bits_allocated}")));
    }
    let samples_per_pixel = int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let signed = int(obj, tags::PIXEL_REPRESENTATION).unwrap_or(0) == 1;
    let padding = read_padding(obj, signed, bits_allocated as u16);
    let mut warnings = Vec::new();
    let geometry = multiframe::frame_geometry(obj, frames as u32, &mut warnings);
    let sop_class_uid = string(obj, tags::SOP_CLASS_UID).unwrap_or_else(|| sop_class_meta.to_string());
    Ok(Some(FileHeader {
        path: path.to_path_buf(),
        sop_instance_uid: string(obj, tags::SOP_INSTANCE_UID).unwrap_or_default(),
        study_uid: string(obj, tags::STUDY_INSTANCE_UID),
        series_uid: string(obj, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
        series_number: int(obj, tags::SERIES_NUMBER),
        description: string(obj, tags::SERIES_DESCRIPTION),
        acquisition_time: string(obj, tags::ACQUISITION_TIME).or_else(|| string(obj, tags::SERIES_TIME)),
        modality: if modality.is_empty() && is_ct_sop_class(&sop_class_uid) { "CT".into() } else { modality },
        patient_position: string(obj, tags::PATIENT_POSITION),
        body_part: string(obj, tags::BODY_PART_EXAMINED),
        image_type: string(obj, tags::IMAGE_TYPE)
            .map(|v| v.split('\\').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default(),
        sop_class_uid,
        transfer_syntax: transfer_syntax.trim_end_matches('\0').trim().to_string(),
        rows: rows as u32,
        cols: cols as u32,
        frames: frames as u32,
        samples_per_pixel: samples_per_pixel.clamp(0, u16::MAX as i64) as u16,
        bits_allocated: bits_allocated as u16,
        bits_stored: bits_stored as u16,
        signed,
        photometric: string(obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| "MONOCHROME2".into()),
        padding,
        slice_thickness: float(obj, tags::SLICE_THICKNESS).filter(|v| *v > 0.0),
        spacing_between_slices: float(obj, tags::SPACING_BETWEEN_SLICES).filter(|v| *v > 0.0),
        geometry,
        warnings,
    }))
}

/// CT Image Storage, Enhanced CT Image Storage, Legacy Converted Enhanced CT Image Storage.
fn is_ct_sop_class(uid: &str) -> bool {
    matches!(uid, "1.2.840.10008.5.1.4.1.1.2" | "1.2.840.10008.5.1.4.1.1.2.1" | "1.2.840.10008.5.1.4.1.1.2.2")
}

/// PixelPaddingValue (and optional range limit) as an inclusive range of stored values. The tag's VR is US or
/// SS depending on PixelRepresentation; implicit-VR files may carry it with the wrong sign, so it is
/// reinterpreted in the pixel's own signedness.
fn read_padding(obj: &InMemDicomObject, signed: bool, bits_allocated: u16) -> Option<(i64, i64)> {
    let fix = |v: i64| -> i64 {
        if bits_allocated == 16 {
            if signed && v > i16::MAX as i64 {
                return v - 65536;
            }
            if !signed && v < 0 {
                return v + 65536;
            }
        }
        v
    };
    let pad = fix(int(obj, tags::PIXEL_PADDING_VALUE)?);
    let limit = int(obj, tags::PIXEL_PADDING_RANGE_LIMIT).map(fix).unwrap_or(pad);
    Some((pad.min(limit), pad.max(limit)))
}
