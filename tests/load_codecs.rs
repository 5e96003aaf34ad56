//! Every file in `codecs/` against `codecs/pydicom_reference.json`, by name, so none is skipped silently.
//!
//! Lossless encodings must decode to exactly pydicom's HU (mean to the reference's 3 decimals, min, max, the
//! listed pixels). JPEG-LS near-lossless (.81) is exact too: JPEG-LS decoding is fully specified (no
//! implementation-defined arithmetic), so every conformant decoder reproduces the encoder's reconstruction;
//! that it stays within the file's NEAR of the lossless original is checked separately. Lossy DCT / wavelet
//! encodings (JPEG .50/.51, JPEG 2000 irreversible .91) may differ between two conformant decoders: the
//! inverse DCT / inverse wavelet rounding is implementation-defined and moves a stored sample by at most one
//! unit, i.e. |RescaleSlope| HU. Tolerance: each listed pixel, min and max within one stored unit (|slope|
//! HU), the mean within a tenth of one; plus half a HU for the whole HU the volume stores (the lossy files
//! here have fractional slopes).

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
    /// Lossy, and pydicom cannot decode it (its reference holds the error): checked against the reference of
    /// the named file, the same image in another lossy JPEG process, with the same tolerance.
    LossyAs(&'static str, f64),
    NotCt,
    NoPixels,
}

const JPEG_51: &str = "CTImage.dcm_JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51.dcm";

/// Each file and what the loader must do with it (and why, where it is not obvious).
const FILES: &[(&str, Expect)] = &[
    // 12-bit JPEG extended, two frames split over fragments without a Basic Offset Table (libjpeg-turbo).
    ("CT0012.fragmented_no_bot_jpeg_baseline.51.dcm", Expect::Lossy(1.0)),
    ("CTImage.dcm", Expect::Exact),
    ("CTImage.dcm_BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm", Expect::Exact),
    ("CTImage.dcm_DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm", Expect::Exact),
    ("CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm", Expect::Exact),
    ("CTImage.dcm_JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91.dcm", Expect::Lossy(1.0)),
    // JPEG-LS (CharLS); near-lossless decoding is deterministic, see the module doc.
    ("CTImage.dcm_JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm", Expect::Exact),
    ("CTImage.dcm_JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81.dcm", Expect::Exact),
    // Retired 12-bit progressive processes: unknown to dicom-rs and pydicom, decoded by libjpeg-turbo.
    (
        "CTImage.dcm_JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55.dcm",
        Expect::LossyAs(JPEG_51, 2.0002442),
    ),
    ("CTImage.dcm_JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70.dcm", Expect::Exact),
    ("CTImage.dcm_JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57.dcm", Expect::Exact),
    ("CTImage.dcm_JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50.dcm", Expect::Lossy(32.1216)),
    // 12-bit JPEG extended (libjpeg-turbo's 12-bit DCT).
    ("CTImage.dcm_JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51.dcm", Expect::Lossy(2.0002442)),
    (
        "CTImage.dcm_JPEGProcess6_8TransferSyntax_1.2.840.10008.1.2.4.53.dcm",
        Expect::LossyAs(JPEG_51, 2.0002442),
    ),
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

fn stats(data: &ndarray::Array3<i16>) -> (f64, f64, f64) {
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
        let mut want = &r[*name];
        if let Expect::LossyAs(other, _) = expect {
            assert!(
                want["decode_error"].is_string(),
                "{name}: pydicom decodes it now, compare with its own reference"
            );
            want = &r[*other];
        }
        let res = load_scan(&path, &LoadOptions::default());
        match (expect, res) {
            (Expect::Exact | Expect::Lossy(_) | Expect::LossyAs(..), Ok(scan)) => {
                // Lossy: one stored unit (`tol`), and `whole`: a fractional slope's HU are rounded to whole HU
                // (`CtVolume` is i16), which moves each voxel by up to half a HU and, on this image, the mean
                // by about 0.3 HU.
                let (tol, whole) = match expect {
                    Expect::Lossy(slope) | Expect::LossyAs(_, slope) => (*slope, 0.5),
                    _ => (0.0, 0.0),
                };
                let (lo, hi, mean) = stats(&scan.volume.data);
                let (rs, ri) = reference_rescale(&path);
                let g = |k: &str| rs * want[k].as_f64().unwrap() + ri;
                let mut worst_at = 0f64;
                assert!(
                    (lo - g("hu_min")).abs() <= tol + whole + 1e-3,
                    "{name}: min {lo} vs {}",
                    g("hu_min")
                );
                assert!(
                    (hi - g("hu_max")).abs() <= tol + whole + 1e-3,
                    "{name}: max {hi} vs {}",
                    g("hu_max")
                );
                assert!(
                    (mean - g("hu_mean")).abs() <= 0.1 * tol + whole + 1e-3,
                    "{name}: mean {mean} vs {}",
                    g("hu_mean")
                );
                let shape: Vec<usize> =
                    want["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
                let frames = if shape.len() == 3 { shape[0] } else { 1 };
                assert_eq!(
                    scan.volume.data.shape(),
                    &[frames, shape[shape.len() - 2], shape[shape.len() - 1]]
                );
                // Multi-frame references list no pixels: min, max and mean cover every frame.
                let at = want["hu_at"].as_object().cloned().unwrap_or_default();
                for (key, v) in &at {
                    let idx: Vec<usize> = key.split(',').map(|t| t.parse().unwrap()).collect();
                    let got = scan.volume.data[[0, idx[0], idx[1]]] as f64;
                    let v = rs * v.as_f64().unwrap() + ri;
                    worst_at = worst_at.max((got - v).abs());
                    assert!((got - v).abs() <= tol + whole + 1e-3, "{name} at {key}: {got} vs {v}");
                }
                println!(
                    "{name}: HU - pydicom: min {:+.4} max {:+.4} mean {:+.4} listed pixels max |d| {worst_at:.4} (tolerance {tol} + {whole})",
                    lo - g("hu_min"),
                    hi - g("hu_max"),
                    mean - g("hu_mean")
                );
                assert_eq!(Some(scan.info.encoding.as_str()), r[*name]["transfer_syntax"].as_str(), "{name}");
            }
            (Expect::NotCt, Err(LoadError::NotCt { .. })) => {}
            (Expect::NoPixels, Err(LoadError::NoPixelData { .. })) => {}
            (e, Ok(_)) => panic!("{name}: expected {e:?}, but it loaded"),
            (e, Err(err)) => panic!("{name}: expected {e:?}, got error {err}"),
        }
    }
}

/// The rescale that turns the reference's values into HU. pydicom applies only a top-level Modality LUT; when
/// a file gives its rescale only in functional groups (Enhanced CT, PixelValueTransformationSequence), the
/// reference holds stored values, and the file's own functional-group rescale maps them to HU.
fn reference_rescale(path: &Path) -> (f64, f64) {
    use cementleak::load::dicom::header;
    let bytes = std::fs::read(path).unwrap();
    let obj = parse_bytes(path, &bytes, true).unwrap();
    if obj.element(dicom_dictionary_std::tags::RESCALE_INTERCEPT).is_ok() {
        return (1.0, 0.0);
    }
    let ts = obj.meta().transfer_syntax().to_string();
    let h = header::read_header(path, &obj, &ts, "").unwrap().expect("an image");
    let g = h.geometry.as_ref().unwrap();
    assert!(g.iter().all(|f| (f.slope, f.intercept) == (g[0].slope, g[0].intercept)), "one rescale per file");
    (g[0].slope, g[0].intercept)
}

/// The binary exits 2 with exactly one line on stderr for each refused file.
#[test]
fn refused_codec_files_exit_2_with_one_line() {
    let Some((dir, _)) = reference() else { return };
    for (name, expect) in FILES {
        if matches!(expect, Expect::Exact | Expect::Lossy(_) | Expect::LossyAs(..)) {
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
        let obj = parse_bytes(&path, &bytes, false).unwrap();
        let theirs: Vec<f32> = obj.decode_pixel_data().unwrap().to_vec::<f32>().unwrap();
        let ours = load_dicom_bytes(&bytes).unwrap();
        assert_eq!(ours.volume.data.len(), theirs.len());
        for (a, b) in ours.volume.data.iter().zip(&theirs) {
            assert_eq!(f32::from(*a), *b, "{}", path.display());
        }
        assert!(Path::new(&path).exists());
    }
}

/// The real Enhanced CT file (2 frames, shared PlaneOrientation/PixelMeasures/PixelValueTransformation,
/// per-frame PlanePosition): its functional-group geometry is read and ordered correctly: frames at
/// z = -159 and -149 with row cosines (-1,0,0), column cosines (0,1,0), so the slice normal points to -z and
/// frame 1 (z = -149) comes first.
#[test]
fn real_enhanced_ct_geometry_from_functional_groups() {
    use cementleak::load::dicom::{header, order};
    let Some((dir, _)) = reference() else { return };
    let path = dir.join("CT0012.fragmented_no_bot_jpeg_baseline.51.dcm");
    let bytes = std::fs::read(&path).unwrap();
    let obj = parse_bytes(&path, &bytes, true).unwrap();
    let ts = obj.meta().transfer_syntax().to_string();
    let h = header::read_header(&path, &obj, &ts, "").unwrap().expect("an image");
    assert_eq!(h.frames, 2);
    let g = h.geometry.as_ref().unwrap();
    assert_eq!(g[0].position.z(), -159.0);
    assert_eq!(g[1].position.z(), -149.0);
    assert_eq!((g[0].slope, g[0].intercept), (1.0, -1024.0));
    assert_eq!(g[0].pixel_spacing, [0.388672, 0.388672]);
    let plan = order::plan(&path, std::slice::from_ref(&h)).unwrap();
    assert_eq!(plan.slices.iter().map(|s| s.frame).collect::<Vec<_>>(), vec![1, 0]);
    assert_eq!(plan.geometry.origin.z(), -149.0);
    assert!((plan.geometry.spacing.slice - 10.0).abs() < 1e-9);
    assert_eq!(plan.geometry.axes[0].0, [0.0, 0.0, -1.0]);
}

/// The same file's pixels: each volume slice is the frame the geometry put there (frame 1, then frame 0),
/// decoded on its own from fragments found without a Basic Offset Table; the two frames differ, so a swap
/// or a frame decoded twice would fail.
#[test]
fn real_enhanced_ct_frames_land_in_position_order() {
    use cementleak::load::dicom::{decode, header};
    let Some((dir, _)) = reference() else { return };
    let path = dir.join("CT0012.fragmented_no_bot_jpeg_baseline.51.dcm");
    let scan = load_scan(&path, &LoadOptions::default()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let obj = parse_bytes(&path, &bytes, false).unwrap();
    let ts = obj.meta().transfer_syntax().to_string();
    let h = header::read_header(&path, &obj, &ts, "").unwrap().expect("an image");
    let frame = |f: u32| {
        let mut a = ndarray::Array2::<i16>::zeros((512, 512));
        let t = decode::Target { frame: f, slope: 1.0, intercept: -1024.0, out: a.view_mut() };
        decode::decode_into(&obj, &h, vec![t]).unwrap();
        a
    };
    let (f0, f1) = (frame(0), frame(1));
    assert_ne!(f0, f1);
    assert_eq!(scan.volume.data.index_axis(ndarray::Axis(0), 0), f1);
    assert_eq!(scan.volume.data.index_axis(ndarray::Axis(0), 1), f0);
}

/// JPEG-LS near-lossless keeps every stored sample within the file's NEAR (1, read from its scan header)
/// of the lossless original, i.e. within |slope| * NEAR = 1 HU, and does change some.
#[test]
fn jpeg_ls_near_lossless_within_near_of_lossless() {
    let Some((dir, _)) = reference() else { return };
    let load = |n: &str| load_scan(&dir.join(n), &LoadOptions::default()).unwrap().volume.data;
    let lossless = load("CTImage.dcm_JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm");
    let near = load("CTImage.dcm_JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81.dcm");
    let max = lossless.iter().zip(near.iter()).map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs()).max();
    assert_eq!(max, Some(1), "max |near-lossless - lossless| HU");
}

/// The retired progressive files hold the same 12-bit image as the JPEG extended file, made by the same
/// encoder with the same quantisation: progressive coding only sends the same quantised DCT coefficients in
/// another order, so their decodes must equal the extended file's (which matches pydicom) pixel for pixel.
#[test]
fn retired_progressive_jpeg_matches_extended_jpeg() {
    let Some((dir, _)) = reference() else { return };
    let load = |n: &str| load_scan(&dir.join(n), &LoadOptions::default()).unwrap().volume.data;
    let extended = load(JPEG_51);
    for name in [
        "CTImage.dcm_JPEGProcess6_8TransferSyntax_1.2.840.10008.1.2.4.53.dcm",
        "CTImage.dcm_JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55.dcm",
    ] {
        let progressive = load(name);
        let max =
            extended.iter().zip(progressive.iter()).map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs()).max();
        println!("{name}: max |HU - HU(.51)| = {max:?}");
        assert_eq!(max, Some(0), "{name}: max |HU - HU(.51)|");
    }
}

/// An encoding nothing here decodes (the JPEG extended file relabelled as retired hierarchical JPEG,
/// process 28) is refused as an unsupported encoding, with exit code 2 and one line naming the UID.
#[test]
fn unknown_jpeg_process_is_an_unsupported_encoding() {
    let Some((dir, _)) = reference() else { return };
    let mut bytes = std::fs::read(dir.join(JPEG_51)).unwrap();
    let (from, to) = (b"1.2.840.10008.1.2.4.51", b"1.2.840.10008.1.2.4.65");
    let at = bytes.windows(from.len()).position(|w| w == from).expect("transfer syntax in the meta group");
    bytes[at..at + to.len()].copy_from_slice(to);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("relabelled.dcm");
    std::fs::write(&path, &bytes).unwrap();
    match load_scan(&path, &LoadOptions::default()) {
        Err(LoadError::UnsupportedEncoding { transfer_syntax, .. }) => {
            assert_eq!(transfer_syntax, "1.2.840.10008.1.2.4.65")
        }
        other => panic!("expected UnsupportedEncoding, got {other:?}"),
    }
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_cementleak")).arg("info").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("1.2.840.10008.1.2.4.65"), "{err}");
}
