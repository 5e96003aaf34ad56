//! NIfTI reader (under construction).
use super::{LoadError, Scan};
use std::path::Path;

pub fn is_nifti_path(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

pub fn load_nifti(path: &Path) -> Result<Scan, LoadError> {
    Err(LoadError::Nifti { path: path.to_path_buf(), reason: "not implemented yet".into() })
}
