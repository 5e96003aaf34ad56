//! Writers: NIfTI label volumes and DICOM CT series.

pub mod nifti;
