//! Damaged and absurd inputs: the binary exits 2 with one line on stderr and never panics; the library
//! returns the matching `LoadError`.

mod common;
mod load_synth;

use cementleak::load::dicom::load_dicom_bytes;
use cementleak::load::{load_scan, LoadError, LoadOptions};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use load_synth::{to_bytes, with_meta, Slice, CT_IMAGE};
use std::path::Path;

fn run_info(path: &Path) -> (Option<i32>, String) {
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_cementleak")).arg("info").arg(path).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).to_string())
}

fn assert_refused(path: &Path, what: &str) -> String {
    let (code, err) = run_info(path);
    assert_eq!(code, Some(2), "{what}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    err
}

fn real_slice() -> Option<Vec<u8>> {
    let dir = common::shared_data("real/totalseg-t12/dicom")?;
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    Some(std::fs::read(&files[0]).unwrap())
}

#[test]
fn truncated_real_file_is_refused() {
    let Some(bytes) = real_slice() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for frac in [0.05, 0.5, 0.99] {
        let p = tmp.path().join(format!("cut{frac}.dcm"));
        std::fs::write(&p, &bytes[..(bytes.len() as f64 * frac) as usize]).unwrap();
        let err = assert_refused(&p, "truncated");
        assert!(err.contains("unreadable DICOM"), "{err}");
        assert!(matches!(
            load_dicom_bytes(&bytes[..(bytes.len() as f64 * frac) as usize]),
            Err(LoadError::Corrupt { .. })
        ));
    }
    // A truncated slice inside the series folder refuses the series rather than dropping a slice.
    let dir = common::shared_data("real/totalseg-t12/dicom").unwrap();
    let series = tmp.path().join("series");
    std::fs::create_dir(&series).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, series.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(series.join("zz_truncated.dcm"), &bytes[..bytes.len() / 2]).unwrap();
    let err = assert_refused(&series, "truncated in folder");
    assert!(err.contains("zz_truncated.dcm"), "{err}");
}

/// Uncompressed files take the mapped fast path: a file cut inside its pixel data must still be a typed
/// error (the declared PixelData length is checked against the mapped length before any pixel is read),
/// never a SIGBUS from reading past the end of the map. Cut in the header, in the pixel data, and one byte
/// short; as a single file, inside a series folder, and from memory.
#[test]
fn truncated_uncompressed_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let series = tmp.path().join("series");
    std::fs::create_dir(&series).unwrap();
    for k in 0..4 {
        let mut s = Slice::axial("1.8.7", 1.25 * k as f64, 64);
        s.instance = k + 1;
        s.write(&series.join(format!("s{k}.dcm")));
    }
    let whole = std::fs::read(series.join("s3.dcm")).unwrap();
    assert_eq!(load_scan(&series, &LoadOptions::default()).unwrap().volume.data.dim(), (4, 64, 64));
    let pixels = 64 * 64 * 2;
    for cut in [whole.len() / 10, whole.len() - pixels / 2, whole.len() - 1] {
        let part = &whole[..cut];
        let p = tmp.path().join(format!("cut{cut}.dcm"));
        std::fs::write(&p, part).unwrap();
        assert!(assert_refused(&p, "truncated uncompressed").contains("unreadable DICOM"));
        assert!(matches!(load_dicom_bytes(part), Err(LoadError::Corrupt { .. })), "cut {cut} in memory");
        std::fs::write(series.join("s3.dcm"), part).unwrap();
        let err = assert_refused(&series, "truncated uncompressed in folder");
        assert!(err.contains("s3.dcm"), "{err}");
    }
}

#[test]
fn empty_and_garbage_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.dcm");
    std::fs::write(&empty, b"").unwrap();
    assert!(assert_refused(&empty, "empty").contains("0 bytes"));
    let garbage = tmp.path().join("garbage.dcm");
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&garbage, &bytes).unwrap();
    assert_refused(&garbage, "garbage");
    // Garbage after a valid preamble and DICM marker.
    let mut dicm = vec![0u8; 128];
    dicm.extend_from_slice(b"DICM");
    dicm.extend_from_slice(&bytes);
    let p = tmp.path().join("dicm_garbage.dcm");
    std::fs::write(&p, &dicm).unwrap();
    assert!(assert_refused(&p, "DICM garbage").contains("unreadable DICOM"));
    // A folder of nothing but stray files.
    let only = tmp.path().join("only_stray");
    std::fs::create_dir(&only).unwrap();
    std::fs::write(only.join("README.txt"), "hello").unwrap();
    assert!(matches!(load_scan(&only, &LoadOptions::default()), Err(LoadError::NoDicom { .. })));
    assert_refused(&only, "no dicom");
    assert_refused(&tmp.path().join("does-not-exist"), "missing");
}

fn with_header(rows: u16, cols: u16, frames: Option<&str>) -> Vec<u8> {
    let mut o = Slice::axial("1.8.1", 0.0, 4).dataset();
    o.put(DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(rows)));
    o.put(DataElement::new(tags::COLUMNS, VR::US, PrimitiveValue::from(cols)));
    if let Some(f) = frames {
        o.put(DataElement::new(tags::NUMBER_OF_FRAMES, VR::IS, PrimitiveValue::from(f)));
    }
    to_bytes(&with_meta(o, CT_IMAGE))
}

#[test]
fn absurd_dimensions_are_refused_before_allocation() {
    let tmp = tempfile::tempdir().unwrap();
    for (rows, cols, frames) in
        [(60000, 512, None), (512, 0, None), (4096, 4096, Some("100000")), (512, 512, Some("-3"))]
    {
        let bytes = with_header(rows, cols, frames);
        let r = load_dicom_bytes(&bytes);
        assert!(matches!(r, Err(LoadError::AbsurdSize { .. })), "{rows}x{cols}x{frames:?}: {:?}", r.err());
        let p = tmp.path().join(format!("absurd_{rows}_{cols}.dcm"));
        std::fs::write(&p, &bytes).unwrap();
        assert!(assert_refused(&p, "absurd").contains("not plausible"));
    }
    // Header promises more pixels than the file holds.
    let bytes = with_header(64, 64, None);
    assert!(matches!(load_dicom_bytes(&bytes), Err(LoadError::Corrupt { .. })));
}
