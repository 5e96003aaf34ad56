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
//!    preallocated i16 volume and dropped, so peak memory stays near the final volume plus one decoded file
//!    per thread. Uncompressed single-frame 16-bit files are read straight into their slice of the volume and
//!    rescaled there (`direct`), other uncompressed files into one reused buffer per thread; see the crate's
//!    `load` module doc for why.
//!
//! JPEG and JPEG-LS frames are decoded by libjpeg-turbo and CharLS, C/C++ libraries that `turbojpeg-sys` and
//! `charls-sys` build from their bundled sources (cmake, C and C++ compilers: see `scripts/setup.sh`).

pub mod contain;
pub mod decode;
mod direct;
mod fragments;
pub mod header;
mod jpegls;
pub mod lengths;
pub mod lenient;
pub mod multiframe;
pub mod order;
pub mod scan;
mod turbo;

use super::{LoadError, LoadOptions, Scan, SeriesInfo};
use crate::volume::CtVolume;
use decode::Target;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use header::{error_chain, FileHeader};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Load the CT series in the folder (or single file) at `path`.
pub fn load_dicom(path: &Path, opts: &LoadOptions) -> Result<Scan, LoadError> {
    let found = scan::scan(path)?;
    let (files, warnings) = scan::select(path, found, opts)?;
    assemble(path, files, warnings, &|h: &FileHeader| open_full(&h.path), Pixels::Files)
}

/// Load one DICOM file given as bytes (with or without the 128-byte preamble). Same checks and result as
/// [`load_dicom`] on a folder holding only that file; used by the fuzzer and for in-memory objects.
pub fn load_dicom_bytes(bytes: &[u8]) -> Result<Scan, LoadError> {
    let name = PathBuf::from("<memory>");
    let parse = || parse_bytes(&name, bytes, false);
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
    assemble(&name, vec![h], Vec::new(), &|_: &FileHeader| parse(), Pixels::Memory(bytes))
}

fn open_full(path: &Path) -> Result<DefaultDicomObject, LoadError> {
    let bytes =
        std::fs::read(path).map_err(|e| LoadError::Io { path: path.to_path_buf(), reason: e.to_string() })?;
    parse_bytes(path, &bytes, false)
}

/// Parse a DICOM file's bytes (all of them, or with `header_only` everything before PixelData). Declared
/// element lengths are checked against the file size first ([`lengths`]); a meta group the strict reader
/// refuses is retried with [`lenient::parse_file_bytes`].
pub fn parse_bytes(path: &Path, bytes: &[u8], header_only: bool) -> Result<DefaultDicomObject, LoadError> {
    let corrupt = |reason: String| LoadError::Corrupt { path: path.to_path_buf(), reason };
    if let Ok(meta) = lenient::read_meta(bytes) {
        if meta.transfer_syntax == DEFLATED {
            return parse_deflated(path, bytes, &meta);
        }
    }
    // Header only: the strict reader gets the PixelData element's header too and stops there
    // (`read_until`). Given the bytes before it alone, it would stop on end of input, which dicom-rs reports
    // as an error carrying a captured backtrace, a third of the header scan's time (perf, 2026-11-24).
    let (bytes, strict_bytes, until) = match lengths::walk(bytes, bytes.len(), header_only) {
        lengths::Walk::Bad(reason) => return Err(corrupt(reason)),
        lengths::Walk::Ok(Some(at)) if header_only => {
            (&bytes[..at], &bytes[..bytes.len().min(at + PIXEL_DATA_HEADER)], true)
        }
        _ => (bytes, bytes, false),
    };
    let options = if until { OpenFileOptions::new().read_until(PIXEL_DATA) } else { OpenFileOptions::new() };
    let strict = contain::contained(|| options.from_reader(strict_bytes))
        .map_err(|_| corrupt("the DICOM parser crashed on this file".into()))?;
    match strict {
        Ok(obj) => Ok(obj),
        Err(e) => {
            let first = error_chain(&e);
            match contain::contained(|| lenient::parse_file_bytes(bytes)) {
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

/// An element header with a 4-byte length (explicit VR OB/OW, or implicit VR and its value's first bytes).
pub const PIXEL_DATA_HEADER: usize = 12;
const PIXEL_DATA: dicom_core::Tag = dicom_core::Tag(0x7FE0, 0x0010);

const DEFLATED: &str = "1.2.840.10008.1.2.1.99";
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
/// Inflated data sets larger than this are refused: a deflated CT image is a few MB once inflated, and a
/// damaged stream must not grow without bound.
const MAX_INFLATED: u64 = 1 << 30;

/// Deflated explicit VR little endian: inflate here, under a size cap, check element lengths against the
/// inflated size, then parse the plain data set. dicom-rs would otherwise trust lengths read from the
/// inflating stream, which it cannot check against anything.
fn parse_deflated(path: &Path, bytes: &[u8], meta: &lenient::Meta) -> Result<DefaultDicomObject, LoadError> {
    use std::io::Read;
    let corrupt = |reason: String| LoadError::Corrupt { path: path.to_path_buf(), reason };
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(&bytes[meta.dataset_start..])
        .take(MAX_INFLATED + 1)
        .read_to_end(&mut inflated)
        .map_err(|e| corrupt(format!("deflated data set: {e}")))?;
    if inflated.len() as u64 > MAX_INFLATED {
        return Err(corrupt(format!("deflated data set inflates beyond {MAX_INFLATED} bytes")));
    }
    if let lengths::Walk::Bad(reason) = lengths::walk_dataset(&inflated, true) {
        return Err(corrupt(reason));
    }
    contain::contained(|| lenient::parse_dataset(&inflated, EXPLICIT_LE, meta))
        .map_err(|_| corrupt("the DICOM parser crashed on this file".into()))?
        .map_err(|e| match e {
            lenient::LenientError::UnknownTransferSyntax(t) | lenient::LenientError::Other(t) => corrupt(t),
        })
}

type Opener<'a> = dyn Fn(&FileHeader) -> Result<DefaultDicomObject, LoadError> + Sync + 'a;

/// Where the uncompressed fast path ([`decode::native_fast_path`]) finds a file's bytes: read from the
/// file on disk, or the one in-memory file of [`load_dicom_bytes`] (so the fuzzer exercises that path too).
#[derive(Clone, Copy)]
enum Pixels<'b> {
    Files,
    Memory(&'b [u8]),
}

fn assemble(
    root: &Path,
    files: Vec<FileHeader>,
    mut warnings: Vec<String>,
    open: &Opener,
    pixels: Pixels<'_>,
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

    // Huge-page backed and not written here, so each page is first touched by the thread that decodes into
    // it (`volume::huge`).
    let mut data = crate::volume::huge::zeroed::<i16>([plan.slices.len(), plan.rows, plan.cols]);
    let mut per_file: Vec<Vec<Target>> = (0..files.len()).map(|_| Vec::new()).collect();
    for ((s, out), (slope, intercept)) in
        plan.slices.iter().zip(data.outer_iter_mut()).zip(plan.rescale.iter())
    {
        per_file[s.file].push(Target { frame: s.frame, slope: *slope, intercept: *intercept, out });
    }
    let bar = progress(files.len());
    per_file.into_par_iter().enumerate().filter(|(_, t)| !t.is_empty()).try_for_each(|(fi, targets)| {
        let fast = match pixels {
            Pixels::Files => decode::native_file_fast_path(&files[fi], targets)?,
            Pixels::Memory(bytes) => decode::native_fast_path(&files[fi], bytes, targets)?,
        };
        let Some(targets) = fast else {
            bar.inc(1);
            return Ok(());
        };
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
    let frame_hu = |s: order::SliceRef| -> Result<Array2<i16>, LoadError> {
        let h = &files[s.file];
        let mut a = Array2::<i16>::zeros((plan.rows, plan.cols));
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
