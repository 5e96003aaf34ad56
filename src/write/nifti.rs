//! NIfTI-1 writer for label maps (`u8`) and CT volumes (`i16` HU), as `.nii.gz` (or `.nii`).
//!
//! The header carries the same RAS affine twice: in the sform (exact, `sform_code` 1 = scanner) and in the
//! qform (quaternion, `qform_code` 1), because some readers only look at one of them. pixdim holds the
//! spacing, xyzt_units says millimetres. The array `[slice, row, column]` is stored with NIfTI index
//! `(i, j, k) = (column, row, slice)`, so the affine is [`Geometry::nifti_ras_affine`](crate::volume::Geometry::nifti_ras_affine).

use super::WriteError;
use crate::load::nifti::qform::store_qform;
use crate::volume::{CtVolume, Volume};
use ndarray::ArrayView3;
use nifti::writer::WriterOptions;
use nifti::{NiftiHeader, NiftiType};
use std::path::Path;

/// NIFTI_XFORM_SCANNER_ANAT: coordinates are the scanner's (DICOM patient space, here flipped to RAS).
const XFORM_SCANNER: i16 = 1;
/// NIFTI_UNITS_MM.
const UNITS_MM: u8 = 2;

/// Write a label map (NIfTI datatype uint8). A path ending in `.gz` is gzip-compressed.
pub fn write_labels_nifti(vol: &Volume<u8>, path: &Path) -> Result<(), WriteError> {
    write_volume(vol, path, "cementleak labels", |w, a| w.write_nifti_with_type(&a, NiftiType::Uint8))
}

/// Write CT intensities in HU (NIfTI datatype int16, scl_slope 1, scl_inter 0).
pub fn write_ct_nifti(vol: &CtVolume, path: &Path) -> Result<(), WriteError> {
    write_volume(vol, path, "cementleak CT HU", |w, a| w.write_nifti_with_type(&a, NiftiType::Int16))
}

/// The header the writers use for a volume on `geometry` (dimensions and datatype are filled by the nifti
/// crate at write time). Public so tests and tools can compare fields.
pub fn header_for(geometry: &crate::volume::Geometry, description: &str) -> Result<NiftiHeader, WriteError> {
    let m = geometry.nifti_ras_affine();
    if m.iter().flatten().any(|v| !v.is_finite()) {
        return Err(WriteError::Geometry("affine has non-finite entries".into()));
    }
    let s = geometry.spacing;
    if !(s.column > 0.0 && s.row > 0.0 && s.slice > 0.0) {
        return Err(WriteError::Geometry(format!("spacing must be positive, got {s:?}")));
    }
    let mut h = NiftiHeader {
        sform_code: XFORM_SCANNER,
        qform_code: XFORM_SCANNER,
        srow_x: m[0].map(|v| v as f32),
        srow_y: m[1].map(|v| v as f32),
        srow_z: m[2].map(|v| v as f32),
        xyzt_units: UNITS_MM,
        endianness: nifti::Endianness::Little,
        ..NiftiHeader::default()
    };
    h.pixdim = [1.0, s.column as f32, s.row as f32, s.slice as f32, 1.0, 1.0, 1.0, 1.0];
    store_qform(&mut h, &m).ok_or_else(|| WriteError::Geometry("affine is singular".into()))?;
    let mut descrip = description.as_bytes().to_vec();
    descrip.resize(80, 0);
    h.descrip = descrip;
    Ok(h)
}

fn write_volume<T>(
    vol: &Volume<T>,
    path: &Path,
    description: &str,
    write: impl FnOnce(&WriterOptions, ArrayView3<T>) -> nifti::Result<()>,
) -> Result<(), WriteError> {
    let [nk, nr, nc] = vol.shape();
    if nk == 0 || nr == 0 || nc == 0 {
        return Err(WriteError::Values(format!("empty volume of shape {:?}", vol.shape())));
    }
    if [nk, nr, nc].iter().any(|&n| n > i16::MAX as usize) {
        return Err(WriteError::Values(format!("shape {:?} exceeds NIfTI-1's 32767 per axis", vol.shape())));
    }
    let header = header_for(&vol.geometry, description)?;
    let name = path
        .file_name()
        .ok_or_else(|| WriteError::io(path, "not a file path"))?
        .to_string_lossy()
        .into_owned();
    let gz = name.to_ascii_lowercase().ends_with(".gz");
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    // The nifti crate writes to a path it opens itself; give it a temporary name and rename afterwards.
    // No other dots in the name: the crate rewrites the extension from the last dot.
    let stem = name.replace('.', "_");
    let tmp = dir.join(format!(".{stem}-{}-tmp.{}", std::process::id(), if gz { "nii.gz" } else { "nii" }));
    // The nifti writer transposes its input to write Fortran order; a reversed-axes view of our
    // [slice, row, column] array is the (i, j, k) array it expects, with no copy.
    let ijk = vol.data.view().reversed_axes();
    let opts = WriterOptions::new(&tmp).reference_header(&header).compress(gz);
    let res =
        write(&opts, ijk).map_err(|e| WriteError::Encode { path: path.to_path_buf(), reason: e.to_string() });
    let res = res.and_then(|()| std::fs::rename(&tmp, path).map_err(|e| WriteError::io(path, e)));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}
