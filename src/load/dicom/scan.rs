//! Finding the files of one CT series: walk the folder (any depth, any names), read every header in
//! parallel, group images by SeriesInstanceUID and pick the series to load.

use super::header::{read_header, FileHeader};
use crate::load::{LoadError, LoadOptions};
use dicom_dictionary_std::tags;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What a file in the input turned out to be.
enum Entry {
    Image(Box<FileHeader>),
    /// A DICOM object without an image (SR, DICOMDIR, presentation state...): `what` names it.
    NonImage {
        path: PathBuf,
        what: String,
    },
    /// Not DICOM at all (no "DICM" marker): README, .DS_Store, thumbnails.
    Stray {
        path: PathBuf,
        reason: String,
    },
    /// DICOM that cannot be read: always an error, since it may be a slice of the series.
    Broken(LoadError),
}

/// Everything found under the input path.
pub struct Found {
    pub images: Vec<FileHeader>,
    non_images: Vec<(PathBuf, String)>,
    strays: Vec<PathBuf>,
}

/// List the files under `path` (or `path` itself) and read their headers.
pub fn scan(path: &Path) -> Result<Found, LoadError> {
    let files = list_files(path)?;
    let single = path.is_file();
    let entries: Vec<Entry> = files.par_iter().map(|f| classify(f)).collect();
    let mut found = Found { images: Vec::new(), non_images: Vec::new(), strays: Vec::new() };
    for e in entries {
        match e {
            Entry::Image(h) => found.images.push(*h),
            Entry::NonImage { path, what } => found.non_images.push((path, what)),
            Entry::Stray { path: p, reason } => {
                if single {
                    return Err(if reason.starts_with("empty") || reason.starts_with("shorter") {
                        LoadError::Corrupt { path: p, reason }
                    } else {
                        LoadError::NoDicom { path: p }
                    });
                }
                tracing::debug!("skipping {}: {reason}", p.display());
                found.strays.push(p)
            }
            Entry::Broken(err) => return Err(err),
        }
    }
    Ok(found)
}

fn list_files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(path).follow_links(true) {
        let entry = entry.map_err(|e| LoadError::Io { path: path.to_path_buf(), reason: e.to_string() })?;
        if entry.file_type().is_file() {
            files.push(entry.into_path());
        }
    }
    files.sort();
    Ok(files)
}

fn classify(path: &Path) -> Entry {
    let io = |e: std::io::Error| LoadError::Io { path: path.to_path_buf(), reason: e.to_string() };
    // One open per file: the first read gives both the DICM marker and (usually) the whole header.
    let opened = std::fs::File::open(path).and_then(|f| {
        let total = f.metadata()?.len() as usize;
        Ok((f, total))
    });
    let (mut file, total) = match opened {
        Ok(x) => x,
        Err(e) => return Entry::Broken(io(e)),
    };
    let mut buf = vec![0u8; FIRST_READ.min(total)];
    let n = match read_up_to(&mut file, &mut buf) {
        Ok(n) => n,
        Err(e) => return Entry::Broken(io(e)),
    };
    buf.truncate(n);
    if n == 0 {
        return Entry::Stray { path: path.to_path_buf(), reason: "empty file (0 bytes)".into() };
    }
    if n < 132 {
        return Entry::Stray {
            path: path.to_path_buf(),
            reason: format!("shorter ({n} bytes) than a DICOM file header"),
        };
    }
    if &buf[128..132] != b"DICM" {
        return Entry::Stray { path: path.to_path_buf(), reason: "no DICM marker at byte 128".into() };
    }
    let obj = match header_bytes(path, file, total, buf) {
        Ok(bytes) => match super::parse_bytes(path, &bytes, true) {
            Ok(o) => o,
            Err(e) => return Entry::Broken(e),
        },
        Err(e) => return Entry::Broken(e),
    };
    let meta = obj.meta();
    let ts = meta.transfer_syntax().to_string();
    let sop_class = meta.media_storage_sop_class_uid().trim_end_matches('\0').to_string();
    match read_header(path, &obj, &ts, &sop_class) {
        Ok(Some(h)) => Entry::Image(Box::new(h)),
        Ok(None) => {
            let what = if sop_class == "1.2.840.10008.1.3.10" {
                "DICOMDIR".to_string()
            } else {
                super::header::string(&obj, tags::MODALITY)
                    .map_or_else(|| format!("SOP class {sop_class}"), |m| format!("{m} object"))
            };
            Entry::NonImage { path: path.to_path_buf(), what }
        }
        Err(e) => Entry::Broken(e),
    }
}

/// First read of each file: a classic CT header fits in the first few KiB.
const FIRST_READ: usize = 16 * 1024;

/// The bytes of `path` up to its PixelData header (and the header), given the file and its first bytes `buf`. The read grows
/// (doubling) only while the walk needs more; a file is thus read no further than its PixelData header, and
/// the pixels are read once, by the decoder. Lengths are checked against the file size on the way
/// ([`super::lengths`]).
fn header_bytes(
    path: &Path,
    mut f: std::fs::File,
    total: usize,
    mut buf: Vec<u8>,
) -> Result<Vec<u8>, LoadError> {
    let io = |e: std::io::Error| LoadError::Io { path: path.to_path_buf(), reason: e.to_string() };
    let mut at_end = buf.len() >= total || buf.len() < FIRST_READ;
    loop {
        match super::lengths::walk(&buf, total, true) {
            super::lengths::Walk::Bad(reason) => {
                return Err(LoadError::Corrupt { path: path.to_path_buf(), reason })
            }
            super::lengths::Walk::Ok(Some(at)) => {
                // Up to and with PixelData's element header: `parse_bytes` stops the reader there.
                buf.truncate(at + super::PIXEL_DATA_HEADER);
                return Ok(buf);
            }
            _ if at_end => return Ok(buf),
            _ => {
                let have = buf.len();
                let want = (have * 2).min(total);
                buf.resize(want, 0);
                let n = read_up_to(&mut f, &mut buf[have..]).map_err(io)?;
                buf.truncate(have + n);
                at_end = n < want - have || buf.len() >= total;
            }
        }
    }
}

pub(super) fn read_up_to(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// One series: its files and a one-line description for listings.
fn describe(uid: &str, files: &[FileHeader]) -> String {
    let slices: u32 = files.iter().map(|f| f.frames).sum();
    let desc = files.iter().find_map(|f| f.description.clone()).unwrap_or_else(|| "no description".into());
    let modality = files.first().map(|f| f.modality.as_str()).unwrap_or("");
    format!("{uid} ({modality}, \"{desc}\", {slices} slices)")
}

/// Pick the series to load and say what was skipped.
pub fn select(
    path: &Path,
    found: Found,
    opts: &LoadOptions,
) -> Result<(Vec<FileHeader>, Vec<String>), LoadError> {
    let mut warnings = Vec::new();
    if !found.strays.is_empty() {
        warnings.push(format!(
            "skipped {} non-DICOM file(s): {}",
            found.strays.len(),
            list_names(&found.strays)
        ));
    }
    if !found.non_images.is_empty() {
        let names: Vec<String> = found
            .non_images
            .iter()
            .take(5)
            .map(|(p, w)| {
                format!(
                    "{} ({w})",
                    p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()
                )
            })
            .collect();
        warnings.push(format!(
            "skipped {} DICOM file(s) without an image: {}",
            found.non_images.len(),
            names.join(", ")
        ));
    }
    let mut series: BTreeMap<String, Vec<FileHeader>> = BTreeMap::new();
    for h in found.images {
        series.entry(h.series_uid.clone()).or_default().push(h);
    }
    let listing = |series: &BTreeMap<String, Vec<FileHeader>>,
                   filter: &dyn Fn(&[FileHeader]) -> bool|
     -> String {
        series.iter().filter(|(_, f)| filter(f)).map(|(u, f)| describe(u, f)).collect::<Vec<_>>().join("; ")
    };
    let is_ct = |f: &[FileHeader]| f.iter().any(|h| h.is_ct());
    let chosen = if let Some(uid) = &opts.series_uid {
        match series.get(uid.trim()) {
            Some(_) => uid.trim().to_string(),
            None => {
                return Err(LoadError::SeriesNotFound {
                    path: path.to_path_buf(),
                    series_uid: uid.clone(),
                    choices: if series.is_empty() { "none".into() } else { listing(&series, &|_| true) },
                })
            }
        }
    } else {
        let cts: Vec<&String> = series.iter().filter(|(_, f)| is_ct(f)).map(|(u, _)| u).collect();
        match cts.len() {
            1 => cts[0].clone(),
            0 => {
                if let Some(h) = series.values().flatten().next() {
                    return Err(LoadError::NotCt { path: h.path.clone(), modality: h.modality.clone() });
                }
                if let Some((p, what)) = found.non_images.first() {
                    return Err(LoadError::NoPixelData {
                        path: p.clone(),
                        reason: format!("{what} without pixel data"),
                    });
                }
                return Err(LoadError::NoDicom { path: path.to_path_buf() });
            }
            _ => {
                return Err(LoadError::MultipleSeries {
                    path: path.to_path_buf(),
                    choices: listing(&series, &is_ct),
                })
            }
        }
    };
    let mut files = series.remove(&chosen).unwrap_or_default();
    if !series.is_empty() {
        warnings.push(format!(
            "ignored {} other series in the folder: {}",
            series.len(),
            listing(&series, &|_| true)
        ));
    }
    if let Some(h) = files.iter().find(|h| !h.is_ct()) {
        return Err(LoadError::NotCt { path: h.path.clone(), modality: h.modality.clone() });
    }
    // Scout views sometimes share the axial series' UID; they are not slices of the volume.
    let localizers = files.iter().filter(|h| h.is_localizer()).count();
    if localizers > 0 && localizers < files.len() {
        files.retain(|h| !h.is_localizer());
        warnings.push(format!("skipped {localizers} LOCALIZER image(s) in the series"));
    }
    Ok((files, warnings))
}

fn list_names(paths: &[PathBuf]) -> String {
    let mut names: Vec<String> = paths
        .iter()
        .take(5)
        .map(|p| p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default())
        .collect();
    if paths.len() > 5 {
        names.push("...".into());
    }
    names.join(", ")
}
