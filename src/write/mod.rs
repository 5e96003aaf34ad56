//! Writers: NIfTI label/CT volumes and DICOM CT series.
//!
//! - [`dicom::write_ct_series`]`(&CtVolume, &CtSeriesMeta, dir) -> Vec<PathBuf>`: CT Image Storage, one file
//!   per slice (`CT00001.dcm`...), explicit VR little endian, int16 HU; [`dicom::CtSeriesMeta::synthetic`]
//!   fills every field from a seed; [`dicom::new_uid`] makes deterministic `2.25.` UIDs.
//! - [`nifti::write_labels_nifti`]`(&Volume<u8>, path)` and [`nifti::write_ct_nifti`]`(&CtVolume, path)`:
//!   `.nii.gz` (or `.nii`) with identical RAS sform and qform (code 1, scanner), pixdim = spacing, mm.
//!
//! Both writers are deterministic (same input, byte-identical output) and write through a temporary file
//! renamed into place, so a failure never leaves a partial file under the final name.

pub mod dicom;
pub mod nifti;

use std::path::{Path, PathBuf};

/// Why a volume could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: cannot write ({reason})")]
    Io { path: PathBuf, reason: String },
    #[error("geometry cannot be stored: {0}")]
    Geometry(String),
    #[error("voxel values cannot be stored: {0}")]
    Values(String),
    #[error("invalid series metadata: {0}")]
    Meta(String),
    #[error("{path}: encoding failed ({reason})")]
    Encode { path: PathBuf, reason: String },
}

impl WriteError {
    pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> WriteError {
        WriteError::Io { path: path.to_path_buf(), reason: e.to_string() }
    }
}

/// Write `bytes` to `path` through a temporary sibling file and a rename, so readers never see a partial file.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| WriteError::io(path, "not a file path"))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(|e| WriteError::io(&tmp, e))?;
        f.write_all(bytes).map_err(|e| WriteError::io(&tmp, e))?;
        f.sync_all().map_err(|e| WriteError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| WriteError::io(path, e))
    })();
    if result.is_err() {
        // Best effort: the temporary may not exist if creation itself failed.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
