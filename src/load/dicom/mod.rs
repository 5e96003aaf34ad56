//! DICOM series reader: a folder (any depth, any file names) or a single file -> one CT volume in HU.
//!
//! Steps, one module each:
//! 1. [`scan`]: walk the folder, read every header in parallel (stopping before PixelData), group images by
//!    SeriesInstanceUID and pick the series: `LoadOptions::series_uid`, else the only CT series; several CT
//!    series are refused with a listing. Files without the "DICM" marker (README, .DS_Store, thumbnails) are
//!    skipped with a warning in [`Scan::warnings`]; so are DICOM objects without an image (DICOMDIR, SR,
//!    presentation states) and LOCALIZER images inside an axial series. A DICOM file that cannot be parsed
//!    is an error, since it may be a slice of the series. A folder with no DICOM image is an error.
//! 2. [`header`] / [`multiframe`]: identity, pixel format and per-frame geometry (classic, Enhanced CT
//!    functional groups, legacy multi-frame). Sizes are checked here, before anything is allocated: at most
//!    4096 rows/columns and 2^31 voxels.
//! 3. [`order`]: sort along the slice normal, duplicate / spacing / tilt policy, volume [`Geometry`].
//! 4. [`decode`]: files decoded in parallel (rayon), each written straight into its slice of the
//!    preallocated f32 volume and dropped, so peak memory stays near the final volume plus one decoded file
//!    per thread.
//!
//! JPEG-LS (.80/.81) is refused with `LoadError::UnsupportedEncoding`: its decoder (CharLS) is C++ and is not
//! built into this program.

pub mod decode;
pub mod header;
pub mod lenient;
pub mod multiframe;
pub mod order;
pub mod scan;

use super::{LoadError, LoadOptions, Scan, SeriesInfo};
use crate::volume::CtVolume;
use decode::Target;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use header::{error_chain, FileHeader};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, Array3};
use rayon::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Load the CT series in the folder (or single file) at `path`.
pub fn load_dicom(path: &Path, opts: &LoadOptions) -> Result<Scan, LoadError> {
    let found = scan::scan(path)?;
    let (files, warnings) = scan::select(path, found, opts)?;
    assemble(path, files, warnings, &|h: &FileHeader| open_full(&h.path))
}

/// Load one DICOM file given as bytes (with or without the 128-byte preamble). Same checks and result as
/// [`load_dicom`] on a folder holding only that file; used by the fuzzer and for in-memory objects.
pub fn load_dicom_bytes(bytes: &[u8]) -> Result<Scan, LoadError> {
    let name = PathBuf::from("<memory>");
    let parse = || parse_bytes(&name, bytes, None);
    let obj = parse()?;
    let ts = obj.meta().transfer_syntax().to_string();
    let sop = obj.meta().media_storage_sop_class_uid().trim_end_matches('\0').to_string();
    let h = header::read_header(&name, &obj, &ts, &sop)?.ok_or_else(|| LoadError::NoPixelData {
        path: name.clone(),
        reason: "no image (Rows/Columns absent)".into(),
    })?;
    if !h.is_ct() {
        return Err(LoadError::NotCt { path: name, modality: h.modality });
    }
    drop(obj);
    assemble(&name, vec![h], Vec::new(), &|_: &FileHeader| parse())
}

fn open_full(path: &Path) -> Result<DefaultDicomObject, LoadError> {
    let bytes =
        std::fs::read(path).map_err(|e| LoadError::Io { path: path.to_path_buf(), reason: e.to_string() })?;
    parse_bytes(path, &bytes, None)
}

/// Parse a DICOM file's bytes, stopping before `until` if given; a meta group the strict reader refuses is
/// retried with [`lenient::parse_file_bytes`] (which always reads the whole data set).
pub fn parse_bytes(
    path: &Path,
    bytes: &[u8],
    until: Option<dicom_core::Tag>,
) -> Result<DefaultDicomObject, LoadError> {
    let corrupt = |reason: String| LoadError::Corrupt { path: path.to_path_buf(), reason };
    let strict = catch_unwind(AssertUnwindSafe(|| {
        let opts = OpenFileOptions::new();
        match until {
            Some(t) => opts.read_until(t).from_reader(bytes),
            None => opts.from_reader(bytes),
        }
    }))
    .map_err(|_| corrupt("the DICOM parser crashed on this file".into()))?;
    match strict {
        Ok(obj) => Ok(obj),
        Err(e) => {
            let first = error_chain(&e);
            match catch_unwind(AssertUnwindSafe(|| lenient::parse_file_bytes(bytes))) {
                Ok(Ok(obj)) => {
                    tracing::debug!(
                        "{}: strict reader failed ({first}); lenient reader succeeded",
                        path.display()
                    );
                    Ok(obj)
                }
                Ok(Err(lenient::LenientError::UnknownTransferSyntax(ts))) => {
                    Err(LoadError::UnsupportedEncoding {
                        path: path.to_path_buf(),
                        transfer_syntax: ts,
                        reason: "transfer syntax unknown to the DICOM decoder (retired or private)".into(),
                    })
                }
                _ => Err(corrupt(first)),
            }
        }
    }
}

type Opener<'a> = dyn Fn(&FileHeader) -> Result<DefaultDicomObject, LoadError> + Sync + 'a;

fn assemble(
    root: &Path,
    files: Vec<FileHeader>,
    mut warnings: Vec<String>,
    open: &Opener,
) -> Result<Scan, LoadError> {
    for h in &files {
        decode::check_decodable(h)?;
    }
    let plan = order::plan(root, &files)?;
    for w in files.iter().flat_map(|f| f.warnings.iter()).chain(plan.warnings.iter()) {
        if !warnings.contains(w) {
            warnings.push(w.clone());
        }
    }
    check_duplicates(&files, &plan, open)?;

    let mut data = Array3::<f32>::zeros((plan.slices.len(), plan.rows, plan.cols));
    let mut per_file: Vec<Vec<Target>> = (0..files.len()).map(|_| Vec::new()).collect();
    for ((s, out), (slope, intercept)) in
        plan.slices.iter().zip(data.outer_iter_mut()).zip(plan.rescale.iter())
    {
        per_file[s.file].push(Target { frame: s.frame, slope: *slope, intercept: *intercept, out });
    }
    let bar = progress(files.len());
    per_file.into_par_iter().enumerate().filter(|(_, t)| !t.is_empty()).try_for_each(|(fi, targets)| {
        let obj = open(&files[fi])?;
        decode::decode_into(&obj, &files[fi], targets)?;
        bar.inc(1);
        Ok::<(), LoadError>(())
    })?;
    bar.finish_and_clear();

    for w in &warnings {
        tracing::warn!("{w}");
    }
    let first = &files[plan.slices[0].file];
    Ok(Scan { volume: CtVolume::new(data, plan.geometry), info: series_info(root, first), warnings })
}

fn progress(n: usize) -> ProgressBar {
    let bar = ProgressBar::new(n as u64);
    if let Ok(style) = ProgressStyle::with_template("loading {bar:30} {pos}/{len} files {elapsed}") {
        bar.set_style(style);
    }
    bar
}

/// Same-position slices are accepted only if their pixels are identical (a file copied twice).
fn check_duplicates(files: &[FileHeader], plan: &order::Plan, open: &Opener) -> Result<(), LoadError> {
    let frame_hu = |s: order::SliceRef| -> Result<Array2<f32>, LoadError> {
        let h = &files[s.file];
        let mut a = Array2::<f32>::zeros((plan.rows, plan.cols));
        // Compare raw rescaled values with the file's own rescale of that frame.
        let g = h.geometry.as_ref().map_err(|e| e.clone().into_load_error(&h.path))?;
        let fg = &g[s.frame as usize];
        let obj = open(h)?;
        decode::decode_into(
            &obj,
            h,
            vec![Target { frame: s.frame, slope: fg.slope, intercept: fg.intercept, out: a.view_mut() }],
        )?;
        Ok(a)
    };
    for (kept, dropped) in &plan.duplicates {
        if frame_hu(*kept)? != frame_hu(*dropped)? {
            let (a, b) = (&files[kept.file], &files[dropped.file]);
            return Err(LoadError::Inconsistent {
                path: b.path.clone(),
                reason: format!(
                    "two different images at the same position (also {}): several phases or repeated scans in one series; export one of them",
                    a.path.display()
                ),
            });
        }
    }
    Ok(())
}

fn series_info(root: &Path, h: &FileHeader) -> SeriesInfo {
    SeriesInfo {
        path: root.display().to_string(),
        study_instance_uid: h.study_uid.clone(),
        series_instance_uid: h.series_uid.clone(),
        series_number: h.series_number,
        series_description: h.description.clone(),
        acquisition_time: h.acquisition_time.clone(),
        modality: h.modality.clone(),
        patient_position: h.patient_position.clone(),
        encoding: h.transfer_syntax.clone(),
        level: [h.body_part.as_deref(), h.description.as_deref()]
            .into_iter()
            .flatten()
            .find_map(vertebral_level),
    }
}

/// A vertebral level named in free text ("L2", "T12 vertebroplasty", "BWK/L1"), normalised to upper case.
pub fn vertebral_level(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_alphanumeric()).find_map(|tok| {
        let t = tok.to_ascii_uppercase();
        let (letter, num) = t.split_at(1.min(t.len()));
        let n: u32 = num.parse().ok()?;
        let ok = match letter {
            "C" => (1..=7).contains(&n),
            "T" => (1..=12).contains(&n),
            "L" => (1..=5).contains(&n),
            "S" => (1..=5).contains(&n),
            _ => false,
        };
        ok.then(|| format!("{letter}{n}"))
    })
}
