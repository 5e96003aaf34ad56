//! DICOM CT series writer: one CT Image Storage file per slice, explicit VR little endian, signed 16-bit
//! pixels.
//!
//! The output is deterministic: UIDs come from [`new_uid`] over caller-given seeds, dates and times come from
//! [`CtSeriesMeta`], never from the clock, so the same volume and metadata give byte-identical files (phantom
//! series and test fixtures can be regenerated and compared).
//!
//! Pixel values are HU rounded to the nearest integer, stored as int16 with RescaleSlope 1 and a
//! RescaleIntercept of 0 when the HU range fits in int16 (the usual case), else shifted so it fits; a range
//! wider than 65535 HU is refused.

use super::{write_atomically, WriteError};
use crate::volume::{CtVolume, PatientPosition, Vec3};
use dicom_core::value::{PrimitiveValue, C};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::InMemDicomObject;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Identifying and acquisition fields of a written CT series. All strings are written as given (after
/// validation); nothing is taken from the clock.
#[derive(Clone, Debug, PartialEq)]
pub struct CtSeriesMeta {
    pub patient_name: String,
    pub patient_id: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub frame_of_reference_uid: String,
    /// `YYYYMMDD`; also used as SeriesDate, AcquisitionDate and ContentDate.
    pub study_date: String,
    /// `HHMMSS` or `HHMMSS.ffffff`; also used as StudyTime, SeriesTime and ContentTime.
    pub acquisition_time: String,
    pub series_number: i32,
    pub series_description: String,
    pub patient_position: PatientPosition,
    pub kvp: f64,
    pub slice_thickness_mm: f64,
    /// BodyPartExamined (e.g. `"SPINE"`, `"LSPINE"`), omitted when `None`.
    pub body_part: Option<String>,
}

impl CtSeriesMeta {
    /// Metadata for a synthetic series: every UID derived from `seed` with [`new_uid`], so two calls with the
    /// same seed describe the same study/series. Callers usually then override the description, time and
    /// series number.
    pub fn synthetic(seed: &str, patient_position: PatientPosition) -> CtSeriesMeta {
        CtSeriesMeta {
            patient_name: "PHANTOM^CEMENTLEAK".into(),
            patient_id: format!(
                "CL{}",
                new_uid(&format!("{seed}/patient")).chars().skip(5).take(8).collect::<String>()
            ),
            study_instance_uid: new_uid(&format!("{seed}/study")),
            series_instance_uid: new_uid(&format!("{seed}/series")),
            frame_of_reference_uid: new_uid(&format!("{seed}/frame")),
            study_date: "20250101".into(),
            acquisition_time: "120000".into(),
            series_number: 1,
            series_description: "cementleak synthetic CT".into(),
            patient_position,
            kvp: 120.0,
            slice_thickness_mm: 1.0,
            body_part: Some("SPINE".into()),
        }
    }
}

/// A deterministic DICOM UID `2.25.<decimal>` from the first 128 bits of SHA-256 of `seed_material`
/// (the `2.25` root of ISO/IEC 9834-8 UUID-derived UIDs). Same seed, same UID; different seeds collide with
/// negligible probability.
pub fn new_uid(seed_material: &str) -> String {
    let h = Sha256::digest(seed_material.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    format!("2.25.{}", u128::from_be_bytes(b))
}

/// Write `vol` as a CT Image Storage series into `dir` (created if absent): files `CT00001.dcm`,
/// `CT00002.dcm`, ... for slices 0, 1, ... of the array. Returns the written paths in slice order.
///
/// ImageOrientationPatient is `[axes[2], axes[1]]`; ImagePositionPatient of slice k is
/// `geometry.index_to_lps([k, 0, 0])`. Refuses geometries single-frame CT cannot express: in-plane axes not
/// perpendicular, or a slice axis not perpendicular to the image plane (gantry tilt / sheared stacks).
pub fn write_ct_series(vol: &CtVolume, meta: &CtSeriesMeta, dir: &Path) -> Result<Vec<PathBuf>, WriteError> {
    validate_meta(meta)?;
    let [nk, nr, nc] = vol.shape();
    if nk == 0 || nr == 0 || nc == 0 {
        return Err(WriteError::Values(format!("empty volume of shape {:?}", vol.shape())));
    }
    if nr > u16::MAX as usize || nc > u16::MAX as usize {
        return Err(WriteError::Values(format!("slice {nr} x {nc} exceeds the DICOM limit of 65535")));
    }
    let g = &vol.geometry;
    let (row_dir, col_dir) = (g.axes[2], g.axes[1]);
    check_geometry(g.axes)?;
    let normal = row_dir.cross(col_dir);
    let px = pixel_encoding(vol);

    std::fs::create_dir_all(dir).map_err(|e| WriteError::io(dir, e))?;
    refuse_stale_slices(dir, nk)?;
    let common = common_elements(vol, meta, &px);
    let mut paths = Vec::with_capacity(nk);
    for k in 0..nk {
        let path = dir.join(format!("CT{:05}.dcm", k + 1));
        let ipp = g.index_to_lps([k as f64, 0.0, 0.0]);
        let slice_location = Vec3(ipp.0).dot(normal);
        let sop_uid = new_uid(&format!("{}/slice/{k}", meta.series_instance_uid));
        let pixels: Vec<i16> = vol.data.index_axis(ndarray::Axis(0), k).iter().copied().collect();

        let mut obj = InMemDicomObject::from_element_iter(common.iter().cloned());
        obj.put(DataElement::new(tags::SOP_INSTANCE_UID, VR::UI, sop_uid.as_str()));
        obj.put(DataElement::new(tags::INSTANCE_NUMBER, VR::IS, (k + 1).to_string()));
        obj.put(ds_multi(tags::IMAGE_POSITION_PATIENT, &ipp.0));
        obj.put(ds_multi(tags::SLICE_LOCATION, &[slice_location]));
        obj.put(DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::I16(C::from_vec(pixels))));

        let file = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                    .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
                    .implementation_version_name(IMPLEMENTATION_VERSION_NAME),
            )
            .map_err(|e| WriteError::Encode { path: path.clone(), reason: e.to_string() })?;
        let mut bytes = Vec::with_capacity(nr * nc * 2 + 4096);
        file.write_all(&mut bytes)
            .map_err(|e| WriteError::Encode { path: path.clone(), reason: e.to_string() })?;
        write_atomically(&path, &bytes)?;
        paths.push(path);
    }
    tracing::debug!(slices = nk, dir = %dir.display(), "wrote CT series");
    Ok(paths)
}

/// Slice files of an earlier, longer series in `dir` would be read as part of this one: refuse rather than
/// delete files we did not write in this call. Files of the same names are overwritten (same series rewritten).
fn refuse_stale_slices(dir: &Path, slices: usize) -> Result<(), WriteError> {
    let entries = std::fs::read_dir(dir).map_err(|e| WriteError::io(dir, e))?;
    for entry in entries {
        let name = entry.map_err(|e| WriteError::io(dir, e))?.file_name().to_string_lossy().into_owned();
        let index = name
            .strip_prefix("CT")
            .and_then(|r| r.strip_suffix(".dcm"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(i) = index.filter(|&i| i > slices) {
            return Err(WriteError::Io {
                path: dir.join(&name),
                reason: format!(
                    "slice file {i} of an earlier series is in the way (this series has {slices} slices); write into an empty folder"
                ),
            });
        }
    }
    Ok(())
}

/// Fixed implementation identity (not dicom-rs's default) so files do not change when the library does.
const IMPLEMENTATION_CLASS_UID: &str = "2.25.93617745103834040734462380930468436706";
const IMPLEMENTATION_VERSION_NAME: &str = "CEMENTLEAK01";

/// How HU map to stored int16 values.
struct PixelEncoding {
    bits_stored: u16,
}

/// The volume's i16 HU are stored as they are (RescaleIntercept 0, slope 1).
fn pixel_encoding(vol: &CtVolume) -> PixelEncoding {
    let (lo, hi) = vol.data.iter().fold((i16::MAX, i16::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    // 12 bits (-2048..2047) covers ordinary CT; metal and dense cement need the full 16.
    let bits_stored = if lo >= -2048 && hi <= 2047 { 12 } else { 16 };
    PixelEncoding { bits_stored }
}

fn check_geometry(axes: [Vec3; 3]) -> Result<(), WriteError> {
    // Direction cosines come from ImageOrientationPatient (about 6 significant digits in practice).
    const TOL: f64 = 1e-4;
    // The slice axis of a loaded series is often derived from rounded ImagePositionPatient differences
    // (0.01 mm over a few cm), so it is allowed a little more: 1e-3 rad = 0.06 degrees, under 0.5 mm of drift
    // over a 500 mm stack. A real gantry tilt is degrees.
    const SLICE_TOL: f64 = 1e-3;
    for (a, v) in axes.iter().enumerate() {
        if (v.norm() - 1.0).abs() > TOL {
            return Err(WriteError::Geometry(format!("axis {a} direction {:?} is not a unit vector", v.0)));
        }
    }
    if axes[1].dot(axes[2]).abs() > TOL {
        return Err(WriteError::Geometry("image rows and columns are not perpendicular".into()));
    }
    if axes[0].dot(axes[1]).abs() > SLICE_TOL || axes[0].dot(axes[2]).abs() > SLICE_TOL {
        return Err(WriteError::Geometry(
            "slice axis is not perpendicular to the image plane (tilted or sheared stack); \
             single-frame CT cannot express it, resample first"
                .into(),
        ));
    }
    Ok(())
}

fn validate_meta(m: &CtSeriesMeta) -> Result<(), WriteError> {
    for (name, uid) in [
        ("study_instance_uid", &m.study_instance_uid),
        ("series_instance_uid", &m.series_instance_uid),
        ("frame_of_reference_uid", &m.frame_of_reference_uid),
    ] {
        let ok = !uid.is_empty()
            && uid.len() <= 64
            && uid.split('.').all(|c| {
                !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) && (c == "0" || !c.starts_with('0'))
            });
        if !ok {
            return Err(WriteError::Meta(format!("{name} {uid:?} is not a valid DICOM UID")));
        }
    }
    if m.study_date.len() != 8 || !m.study_date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WriteError::Meta(format!("study_date {:?} is not YYYYMMDD", m.study_date)));
    }
    let t = &m.acquisition_time;
    let (hms, frac) = t.split_once('.').unwrap_or((t.as_str(), ""));
    if hms.len() != 6
        || !hms.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 6
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(WriteError::Meta(format!("acquisition_time {t:?} is not HHMMSS[.ffffff]")));
    }
    let positive = |v: f64| v.is_finite() && v > 0.0;
    if !positive(m.kvp) || !positive(m.slice_thickness_mm) {
        return Err(WriteError::Meta("kvp and slice_thickness_mm must be positive".into()));
    }
    let too_long = |s: &str, n: usize| s.chars().count() > n;
    if too_long(&m.patient_name, 64) || too_long(&m.patient_id, 64) || too_long(&m.series_description, 64) {
        return Err(WriteError::Meta(
            "patient name, patient id and series description are limited to 64 characters".into(),
        ));
    }
    if m.body_part.as_deref().is_some_and(|b| too_long(b, 16)) {
        return Err(WriteError::Meta("body_part is limited to 16 characters".into()));
    }
    if [&m.patient_name, &m.patient_id, &m.series_description].iter().any(|s| s.contains('\\')) {
        return Err(WriteError::Meta(
            "text fields must not contain a backslash (DICOM value separator)".into(),
        ));
    }
    Ok(())
}

/// Elements identical on every slice of the series.
fn common_elements(
    vol: &CtVolume,
    m: &CtSeriesMeta,
    px: &PixelEncoding,
) -> Vec<DataElement<InMemDicomObject>> {
    let g = &vol.geometry;
    let [_, nr, nc] = vol.shape();
    let s = |tag: Tag, vr: VR, v: &str| DataElement::new(tag, vr, PrimitiveValue::from(v));
    let us = |tag: Tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
    let non_ascii = [&m.patient_name, &m.patient_id, &m.series_description].iter().any(|t| !t.is_ascii());
    let mut e = vec![
        // SOP Common
        s(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
        // Patient
        s(tags::PATIENT_NAME, VR::PN, &m.patient_name),
        s(tags::PATIENT_ID, VR::LO, &m.patient_id),
        s(tags::PATIENT_BIRTH_DATE, VR::DA, ""),
        s(tags::PATIENT_SEX, VR::CS, ""),
        // General Study
        s(tags::STUDY_INSTANCE_UID, VR::UI, &m.study_instance_uid),
        s(tags::STUDY_DATE, VR::DA, &m.study_date),
        s(tags::STUDY_TIME, VR::TM, &m.acquisition_time),
        s(tags::REFERRING_PHYSICIAN_NAME, VR::PN, ""),
        s(tags::STUDY_ID, VR::SH, "1"),
        s(tags::ACCESSION_NUMBER, VR::SH, ""),
        // General Series
        s(tags::MODALITY, VR::CS, "CT"),
        s(tags::SERIES_INSTANCE_UID, VR::UI, &m.series_instance_uid),
        s(tags::SERIES_NUMBER, VR::IS, &m.series_number.to_string()),
        s(tags::SERIES_DATE, VR::DA, &m.study_date),
        s(tags::SERIES_TIME, VR::TM, &m.acquisition_time),
        s(tags::SERIES_DESCRIPTION, VR::LO, &m.series_description),
        s(tags::PATIENT_POSITION, VR::CS, m.patient_position.dicom_code()),
        // Frame of Reference
        s(tags::FRAME_OF_REFERENCE_UID, VR::UI, &m.frame_of_reference_uid),
        s(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""),
        // General Equipment
        s(tags::MANUFACTURER, VR::LO, "cementleak"),
        s(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION")),
        // General Image / General Acquisition
        s(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL"),
        s(tags::ACQUISITION_NUMBER, VR::IS, "1"),
        s(tags::ACQUISITION_DATE, VR::DA, &m.study_date),
        s(tags::ACQUISITION_TIME, VR::TM, &m.acquisition_time),
        s(tags::CONTENT_DATE, VR::DA, &m.study_date),
        s(tags::CONTENT_TIME, VR::TM, &m.acquisition_time),
        // Image Plane
        ds_multi(tags::PIXEL_SPACING, &[g.spacing.row, g.spacing.column]),
        ds_multi(
            tags::IMAGE_ORIENTATION_PATIENT,
            &[g.axes[2].0[0], g.axes[2].0[1], g.axes[2].0[2], g.axes[1].0[0], g.axes[1].0[1], g.axes[1].0[2]],
        ),
        ds_multi(tags::SLICE_THICKNESS, &[m.slice_thickness_mm]),
        // Image Pixel / CT Image
        us(tags::SAMPLES_PER_PIXEL, 1),
        s(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us(tags::ROWS, nr as u16),
        us(tags::COLUMNS, nc as u16),
        us(tags::BITS_ALLOCATED, 16),
        us(tags::BITS_STORED, px.bits_stored),
        us(tags::HIGH_BIT, px.bits_stored - 1),
        us(tags::PIXEL_REPRESENTATION, 1),
        ds_multi(tags::KVP, &[m.kvp]),
        ds_multi(tags::RESCALE_INTERCEPT, &[0.0]),
        ds_multi(tags::RESCALE_SLOPE, &[1.0]),
        s(tags::RESCALE_TYPE, VR::LO, "HU"),
        // VOI LUT: bone window, where cement and its leaks are read.
        ds_multi(tags::WINDOW_CENTER, &[400.0]),
        ds_multi(tags::WINDOW_WIDTH, &[1800.0]),
        s(tags::WINDOW_CENTER_WIDTH_EXPLANATION, VR::LO, "BONE"),
    ];
    if non_ascii {
        e.push(s(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"));
    }
    if let Some(b) = &m.body_part {
        e.push(s(tags::BODY_PART_EXAMINED, VR::CS, b));
    }
    e
}

/// A DS element with one value per entry, each formatted to fit DS's 16 characters.
fn ds_multi(tag: Tag, values: &[f64]) -> DataElement<InMemDicomObject> {
    let strs: C<String> = values.iter().map(|&v| format_ds(v)).collect();
    DataElement::new(tag, VR::DS, PrimitiveValue::Strs(strs))
}

/// Shortest decimal of at most 16 characters that keeps as much precision as fits (DS limit), without
/// negative zero.
pub(crate) fn format_ds(v: f64) -> String {
    let v = if v == 0.0 { 0.0 } else { v };
    let plain = format!("{v}");
    if plain.len() <= 16 {
        return plain;
    }
    for prec in (0..=15).rev() {
        let s = format!("{v:.prec$}");
        if s.len() <= 16 {
            let t =
                if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
            return if t == "-0" { "0".into() } else { t };
        }
    }
    // Magnitudes beyond 1e15: scientific notation always fits.
    format!("{v:.8e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ds_fits_and_round_trips() {
        for v in
            [0.0, -0.0, 1.0, -123.456_789_012_345_67, 0.1 + 0.2, 1e-20, -1e20, 512.0 * 0.9765625, 2.0 / 3.0]
        {
            let s = format_ds(v);
            assert!(s.len() <= 16, "{s}");
            assert_ne!(s, "-0");
            let back: f64 = s.parse().expect("parses");
            assert!((back - v).abs() <= 1e-10 * v.abs().max(1.0), "{v} -> {s}");
        }
    }

    #[test]
    fn uids_are_deterministic_and_valid() {
        let a = new_uid("x");
        assert_eq!(a, new_uid("x"));
        assert_ne!(a, new_uid("y"));
        assert!(a.len() <= 64 && a.starts_with("2.25."));
        assert!(!a[5..].starts_with('0'));
    }

    #[test]
    fn refuses_tilted_stack() {
        let mut axes = PatientPosition::Hfs.axial_axes();
        check_geometry(axes).expect("axial is fine");
        axes[0] = Vec3([0.0, 2e-4, 1.0]).normalized().expect("nonzero");
        check_geometry(axes).expect("IPP rounding noise is accepted");
        axes[0] = Vec3([0.0, 0.2, 1.0]).normalized().expect("nonzero");
        assert!(matches!(check_geometry(axes), Err(WriteError::Geometry(_))));
    }
}
