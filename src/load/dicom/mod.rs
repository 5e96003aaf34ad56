//! DICOM series reader (under construction).
use super::{LoadError, LoadOptions, Scan};
use std::path::Path;

pub fn load_dicom(path: &Path, _opts: &LoadOptions) -> Result<Scan, LoadError> {
    Err(LoadError::NoDicom { path: path.to_path_buf() })
}
