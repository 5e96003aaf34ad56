//! Stage 1: load one CT series (DICOM folder or NIfTI file) into Hounsfield units with its patient geometry.
//!
//! `load_scan` is the only entry point the rest of the pipeline uses; the DICOM and NIfTI readers behind it
//! return the same [`Scan`].
//!
//! **Speed of uncompressed series.** Loading a 512 x 512 x 60 16-bit series is bound by memory traffic, not
//! by parsing. perf on `LOAD_BENCH_PROFILE` (2026-11-24, with the f32 volume of sessions 1-6): the kernel
//! zeroing the fresh 63 MB volume on first touch 36% of the load, copying the 31 MB of file bytes out of
//! the page cache 28%, the HU conversion and its writes 18%, the header scan, opens and the rest below 20%.
//! So the path moves each byte as few times as possible: the volume stores i16 HU (`crate::volume` says
//! why), the size of the stored samples, so each single-frame 16-bit file's samples are read from the page
//! cache straight into their own slice of the volume and rescaled there in place (`dicom::direct`; one copy
//! of the samples, no per-file buffer; `dicom::decode::native_file_fast_path` also says why a memory map was
//! measured and not kept), into memory the kernel hands out in huge pages (`dicom::buffer`). The header scan
//! stops dicom-rs at PixelData with `read_until` (ending on end of input made it capture a backtrace per
//! file). The volume is not zero-filled by us (`alloc_zeroed` maps untouched zero pages), so the kernel's
//! zeroing, now of 31 MB, is the only write before ours.
//!
//! `cargo bench --bench load` prints the floor, the load, the zeroing, the header scan and map + read side
//! by side; numbers in DEVELOPERS.md "load".

pub mod dicom;
pub mod nifti;

use crate::volume::CtVolume;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Where a volume came from: the identifying fields the report's `input.*` objects carry.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SeriesInfo {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: String,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
    pub acquisition_time: Option<String>,
    pub modality: String,
    pub patient_position: Option<String>,
    /// Transfer syntax UID (DICOM) or `"nifti"`.
    pub encoding: String,
    /// Vertebral level when the DICOM says so (e.g. from BodyPartExamined or SeriesDescription), else `None`.
    pub level: Option<String>,
}

/// A loaded CT series.
#[derive(Clone, Debug)]
pub struct Scan {
    pub volume: CtVolume,
    pub info: SeriesInfo,
    /// Things the user should know that did not stop loading (skipped stray files, uneven spacing resampled...).
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Pick this SeriesInstanceUID when the folder holds several CT series.
    pub series_uid: Option<String>,
}

/// Why a series could not be loaded. Each message is one line saying what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{path}: no such file or folder; give the folder of one CT series or a .nii/.nii.gz file")]
    NotFound { path: PathBuf },
    #[error("{path}: cannot read ({reason})")]
    Io { path: PathBuf, reason: String },
    #[error("{path}: no DICOM image files found; give the folder of one CT series or a .nii/.nii.gz file")]
    NoDicom { path: PathBuf },
    #[error("{path}: not a CT image (modality {modality}); give a CT series")]
    NotCt { path: PathBuf, modality: String },
    #[error("{path}: not an image: {reason}; give a CT image series")]
    NoPixelData { path: PathBuf, reason: String },
    #[error("{path}: missing required tag {tag}; the file is incomplete, export the series again from the scanner or PACS")]
    MissingTag { path: PathBuf, tag: String },
    #[error("{path}: invalid value of {tag}: {reason}")]
    BadTag { path: PathBuf, tag: String, reason: String },
    #[error("{path}: unsupported encoding {transfer_syntax} ({reason}); export the series uncompressed or as JPEG/JPEG 2000/RLE")]
    UnsupportedEncoding { path: PathBuf, transfer_syntax: String, reason: String },
    #[error("{path}: unreadable DICOM ({reason}); the file is damaged or truncated, export it again")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: several CT series found, choose one with --series UID: {choices}")]
    MultipleSeries { path: PathBuf, choices: String },
    #[error("{path}: series {series_uid} not found here; series present: {choices}")]
    SeriesNotFound { path: PathBuf, series_uid: String, choices: String },
    #[error("{path}: inconsistent series: {reason}")]
    Inconsistent { path: PathBuf, reason: String },
    #[error("{path}: image size {shape:?} is not plausible for a CT series (limit {limit}); check the file")]
    AbsurdSize { path: PathBuf, shape: Vec<usize>, limit: String },
    #[error("{path}: unreadable NIfTI ({reason})")]
    Nifti { path: PathBuf, reason: String },
}

/// Load the CT series at `path`: a folder (any nesting, any file names) of DICOM files, or a NIfTI file.
pub fn load_scan(path: &Path, opts: &LoadOptions) -> Result<Scan, LoadError> {
    if !path.exists() {
        return Err(LoadError::NotFound { path: path.to_path_buf() });
    }
    if nifti::is_nifti_path(path) {
        nifti::load_nifti(path)
    } else {
        dicom::load_dicom(path, opts)
    }
}
