//! Every file in `codecs/` against `codecs/pydicom_reference.json`, by name, so none is skipped silently.
//!
//! Lossless encodings must decode to exactly pydicom's HU (mean to the reference's 3 decimals, min, max, the
//! listed pixels). Lossy ones (JPEG baseline .50, JPEG 2000 irreversible .91) may differ between two
//! conformant decoders: the inverse DCT / inverse wavelet rounding is implementation-defined and moves a
//! stored sample by at most one unit, i.e. |RescaleSlope| HU. Tolerance: each listed pixel, min and max within
//! one stored unit (|slope| HU), the mean within a tenth of one.

mod common;

use cementleak::load::dicom::{load_dicom_bytes, parse_bytes};
use cementleak::load::{load_scan, LoadError, LoadOptions};
use dicom_pixeldata::PixelDecoder;
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Exact,
    /// Lossy, with the file's rescale slope (one stored unit in HU).
    Lossy(f64),
    Unsupported,
    NotCt,
    NoPixels,
}

/// Each file and what the loader must do with it (and why, where it is not obvious).
const FILES: &[(&str, Expect)] = &[
    // 12-bit JPEG extended: no 12-bit JPEG decoder in dicom-rs (jpeg-decoder supports 8-bit DCT only).
    ("CT0012.fragmented_no_bot_jpeg_baseline.51.dcm", Expect::Unsupported),
    ("CTImage.dcm", Expect::Exact),
    ("CTImage.dcm_BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm", Expect::Exact),
    ("CTImage.dcm_DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm", Expect::Exact),
    ("CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm", Expect::Exact),
    ("CTImage.dcm_JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91.dcm", Expect::Lossy(1.0)),
    // JPEG-LS: CharLS is not built in (see the loader module doc).
    ("CTImage.dcm_JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm", Expect::Unsupported),
    ("CTImage.dcm_JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81.dcm", Expect::Unsupported),
    // Retired progressive processes: unknown to dicom-rs (and to pydicom).
    ("CTImage.dcm_JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55.dcm", Expect::Unsupported),
    ("CTImage.dcm_JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70.dcm", Expect::Exact),
    ("CTImage.dcm_JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57.dcm", Expect::Exact),
    ("CTImage.dcm_JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50.dcm", Expect::Lossy(32.1216)),
    ("CTImage.dcm_JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51.dcm", Expect::Unsupported),
    ("CTImage.dcm_JPEGProcess6_8TransferSyntax_1.2.840.10008.1.2.4.53.dcm", Expect::Unsupported),
    ("CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm", Expect::Exact),
    ("CTImage.dcm_LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2.dcm", Expect::Exact),
    ("CTImage.dcm_RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm", Expect::Exact),
    ("US-YBR_FULL_422-EVRLE.dcm", Expect::NotCt),
    // The malformed sequence is outside the image and geometry attributes: the image itself is intact and
    // decodes to pydicom's values, so it is loaded.
    ("bad_sequence.dcm", Expect::Exact),
    // UN value representations are read with the dictionary VR; pixels match pydicom exactly.
    ("explicit_VR-UN.dcm", Expect::Exact),
    ("no-pixel-data.dcm", Expect::NoPixels),
    // An ultrasound image (palette colour, no PixelSpacing): refused as not CT before geometry is needed.
    ("no-pixel-spacing.dcm", Expect::NotCt),
];

fn reference() -> Option<(std::path::PathBuf, Value)> {
    let dir = common::shared_data("codecs")?;
    let r =
        serde_json::from_str(&std::fs::read_to_string(dir.join("pydicom_reference.json")).unwrap()).unwrap();
    Some((dir, r))
}

#[test]
fn every_codec_file_is_covered_by_name() {
    let Some((dir, r)) = reference() else { return };
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".dcm"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "codecs/ and the test table differ");
    let mut in_ref: Vec<String> = r.as_object().unwrap().keys().cloned().collect();
    in_ref.sort();
    assert_eq!(in_ref, listed, "reference json and the test table differ");
}

fn stats(data: &ndarray::Array3<f32>) -> (f64, f64, f64) {
    let (mut lo, mut hi, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
    for &v in data.iter() {
        lo = lo.min(v as f64);
        hi = hi.max(v as f64);
        sum += v as f64;
    }
    (lo, hi, sum / data.len() as f64)
}

#[test]
fn codec_files_decode_to_reference_or_are_refused() {
    let Some((dir, r)) = reference() else { return };
    for (name, expect) in FILES {
        let path = dir.join(name);
        let want = &r[*name];
        let res = load_scan(&path, &LoadOptions::default());
        match (expect, res) {
            (Expect::Exact | Expect::Lossy(_), Ok(scan)) => {
                let tol = match expect {
                    Expect::Lossy(slope) => *slope,
                    _ => 0.0,
                };
                let (lo, hi, mean) = stats(&scan.volume.data);
                let g = |k: &str| want[k].as_f64().unwrap();
                assert!((lo - g("hu_min")).abs() <= tol + 1e-3, "{name}: min {lo} vs {}", g("hu_min"));
                assert!((hi - g("hu_max")).abs() <= tol + 1e-3, "{name}: max {hi} vs {}", g("hu_max"));
                assert!(
                    (mean - g("hu_mean")).abs() <= 0.1 * tol + 1e-3,
                    "{name}: mean {mean} vs {}",
                    g("hu_mean")
                );
                for (key, v) in want["hu_at"].as_object().unwrap() {
                    let idx: Vec<usize> = key.split(',').map(|t| t.parse().unwrap()).collect();
                    let got = scan.volume.data[[0, idx[0], idx[1]]] as f64;
                    assert!((got - v.as_f64().unwrap()).abs() <= tol + 1e-3, "{name} at {key}: {got} vs {v}");
                }
                assert_eq!(Some(scan.info.encoding.as_str()), want["transfer_syntax"].as_str(), "{name}");
            }
            (Expect::Unsupported, Err(LoadError::UnsupportedEncoding { .. })) => {}
            (Expect::NotCt, Err(LoadError::NotCt { .. })) => {}
            (Expect::NoPixels, Err(LoadError::NoPixelData { .. })) => {}
            (e, Ok(_)) => panic!("{name}: expected {e:?}, but it loaded"),
            (e, Err(err)) => panic!("{name}: expected {e:?}, got error {err}"),
        }
    }
}

/// The binary exits 2 with exactly one line on stderr for each refused file.
#[test]
fn refused_codec_files_exit_2_with_one_line() {
    let Some((dir, _)) = reference() else { return };
    for (name, expect) in FILES {
        if matches!(expect, Expect::Exact | Expect::Lossy(_)) {
            continue;
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cementleak"))
            .arg("info")
            .arg(dir.join(name))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(err.contains(name), "{name}: {err}");
        assert!(!err.contains("panicked") && !err.contains("Backtrace"), "{name}: {err}");
    }
}

/// Our stored-value -> HU conversion agrees with dicom-pixeldata's own modality LUT (`to_vec::<f32>()`),
/// for signed (CTImage) and unsigned 12-bit (t12 series) data.
#[test]
fn rescale_matches_dicom_pixeldata_modality_lut() {
    let Some((dir, _)) = reference() else { return };
    let mut files = vec![dir.join("CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm")];
    if let Some(t12) = common::shared_data("real/totalseg-t12/dicom") {
        let mut t: Vec<_> = std::fs::read_dir(t12).unwrap().map(|e| e.unwrap().path()).collect();
        t.sort();
        files.push(t[0].clone());
    }
    for path in files {
        let bytes = std::fs::read(&path).unwrap();
        let obj = parse_bytes(&path, &bytes, None).unwrap();
        let theirs: Vec<f32> = obj.decode_pixel_data().unwrap().to_vec::<f32>().unwrap();
        let ours = load_dicom_bytes(&bytes).unwrap();
        assert_eq!(ours.volume.data.len(), theirs.len());
        for (a, b) in ours.volume.data.iter().zip(&theirs) {
            assert_eq!(a, b, "{}", path.display());
        }
        assert!(Path::new(&path).exists());
    }
}
