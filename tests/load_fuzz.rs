//! Mutation tests of the byte-level loader (a quick, always-on complement to `scripts/fuzz.sh`): random
//! byte edits, truncations and splices of small synthetic files and of a real codec file must give `Ok` or a
//! `LoadError`, never a panic. Crashes found by cargo-fuzz are kept below as named regressions.

mod common;

use cementleak::load::dicom::load_dicom_bytes;
use proptest::prelude::*;
use std::path::Path;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fuzz-seeds").join(name))
        .expect("fixture")
}

#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
}

fn apply(mut b: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        if b.is_empty() {
            break;
        }
        match e {
            Edit::Set(i, v) => {
                let n = b.len();
                b[i % n] = *v;
            }
            Edit::Truncate(i) => {
                let n = b.len();
                b.truncate(i % n);
            }
            Edit::Insert(i, bytes) => {
                let at = i % b.len();
                b.splice(at..at, bytes.iter().copied());
            }
            Edit::Delete(i, len) => {
                let at = i % b.len();
                let end = (at + len).min(b.len());
                b.drain(at..end);
            }
        }
    }
    b
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        6 => (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Edit::Set(i, v)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Edit::Insert(i, v)),
        1 => (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
    ]
}

fn no_panic(bytes: &[u8]) -> Result<(), TestCaseError> {
    let r = std::panic::catch_unwind(|| {
        let _ = load_dicom_bytes(bytes);
    });
    prop_assert!(r.is_ok(), "loader panicked");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_synthetic_ct_never_panics(edits in proptest::collection::vec(edit(), 1..6)) {
        no_panic(&apply(fixture("ct_8x8.dcm"), &edits))?;
    }

    #[test]
    fn mutated_enhanced_ct_never_panics(edits in proptest::collection::vec(edit(), 1..6)) {
        no_panic(&apply(fixture("enhanced_4x4x3.dcm"), &edits))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 80, ..ProptestConfig::default() })]

    /// Includes the files decoded by the C libraries (libjpeg-turbo, CharLS): a damaged stream must come back
    /// as an error, not a crash.
    #[test]
    fn mutated_real_codec_files_never_panic(which in 0usize..8, edits in proptest::collection::vec(edit(), 1..4)) {
        let Some(dir) = common::shared_data("codecs") else { return Ok(()) };
        let names = [
            "CTImage.dcm_RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm",
            "CTImage.dcm_JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70.dcm",
            "CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm",
            "CTImage.dcm_DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm",
            "CTImage.dcm_JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51.dcm",
            "CT0012.fragmented_no_bot_jpeg_baseline.51.dcm",
            "CTImage.dcm_JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm",
            "CTImage.dcm_JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81.dcm",
        ];
        let bytes = std::fs::read(dir.join(names[which])).unwrap();
        no_panic(&apply(bytes, &edits))?;
    }
}

/// Found by the proptest above: a byte edit turned an element length into ~8 KB past the end of the file
/// and, in another case, ~1.2 GB; dicom-rs allocated and zero-filled the declared size before failing
/// (minutes in a debug build). The length walk now refuses it up front.
#[test]
fn regression_declared_length_past_end_of_file() {
    let edits = vec![
        Edit::Set(14661046783860945240, 117),
        Edit::Set(7420731389163068432, 124),
        Edit::Insert(5229558466799791386, vec![245, 116, 186, 148, 128, 248]),
    ];
    let t0 = std::time::Instant::now();
    let r = load_dicom_bytes(&apply(fixture("ct_8x8.dcm"), &edits));
    assert!(matches!(r, Err(cementleak::load::LoadError::Corrupt { .. })), "{:?}", r.err());
    assert!(t0.elapsed().as_secs_f64() < 1.0);
    // The same with a pixel data length of 1 GiB.
    let mut b = fixture("ct_8x8.dcm");
    let at = b.windows(4).rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00]).expect("pixel data tag");
    b[at + 8..at + 12].copy_from_slice(&0x4000_0000u32.to_le_bytes());
    let t0 = std::time::Instant::now();
    assert!(matches!(load_dicom_bytes(&b), Err(cementleak::load::LoadError::Corrupt { .. })));
    assert!(t0.elapsed().as_secs_f64() < 1.0);
}

/// Found by the proptest above on the Enhanced CT seed: dicom-rs and the length walk disagreed on element
/// boundaries (an invalid item tag (FFFE,E0E5); an unknown VR, which dicom-rs reads as UN with a 4-byte
/// length) so a ~4 GiB / ~1.5 GB declared length slipped through and was allocated. Both are refused now.
#[test]
fn regression_walk_stays_in_step_with_the_parser() {
    let cases = [
        vec![
            Edit::Set(18082926195977301767, 225),
            Edit::Set(7134251987947700210, 135),
            Edit::Set(786437719017683600, 229),
        ],
        vec![Edit::Set(8327377793562593802, 248), Edit::Set(453159938297682631, 10)],
    ];
    for edits in cases {
        let t0 = std::time::Instant::now();
        let r = load_dicom_bytes(&apply(fixture("enhanced_4x4x3.dcm"), &edits));
        assert!(matches!(r, Err(cementleak::load::LoadError::Corrupt { .. })), "{:?}", r.err());
        assert!(t0.elapsed().as_secs_f64() < 1.0);
    }
}

/// Found by cargo-fuzz (`oom-…`, `slow-unit-…` on mutated copies of the shared deflated CTImage file): inside a
/// deflated data set, a damaged length made dicom-rs allocate up to 4 GB (libFuzzer out-of-memory at 3 GB,
/// 10-34 s per input). Regenerated here by the same kind of mutation: inflate the shared file's data set,
/// set the PixelData length to 0xF000_0000, deflate again.
#[test]
fn regression_deflated_dataset_with_huge_length() {
    use std::io::{Read, Write};
    let Some(dir) = common::shared_data("codecs") else { return };
    let bytes = std::fs::read(
        dir.join("CTImage.dcm_DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm"),
    )
    .unwrap();
    let meta = cementleak::load::dicom::lenient::read_meta(&bytes).unwrap();
    let mut inflated = Vec::new();
    flate2::read::DeflateDecoder::new(&bytes[meta.dataset_start..]).read_to_end(&mut inflated).unwrap();
    let at = inflated.windows(4).rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00]).expect("pixel data");
    inflated[at + 8..at + 12].copy_from_slice(&0xF000_0000u32.to_le_bytes());
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&inflated).unwrap();
    let mut mutated = bytes[..meta.dataset_start].to_vec();
    mutated.extend(enc.finish().unwrap());
    let t0 = std::time::Instant::now();
    let r = load_dicom_bytes(&mutated);
    assert!(matches!(r, Err(cementleak::load::LoadError::Corrupt { .. })), "{:?}", r.err());
    assert!(t0.elapsed().as_secs_f64() < 2.0);
    // The unmutated file still loads.
    assert!(load_dicom_bytes(&bytes).is_ok());
}

/// Found by `scripts/fuzz.sh` (2026-11-24): a splice of the RLE codec file (bytes 116,561.. copied over
/// 172,399..240,868, inside the RLE segments) makes dicom-rs's RLE decoder index out of bounds. The panic is
/// contained (`load::dicom::contain`): the library returns `Corrupt`, the binary prints one line, no
/// panic message or backtrace.
#[test]
fn regression_rle_decoder_panic_is_one_line() {
    let Some(dir) = common::shared_data("codecs") else { return };
    let a = std::fs::read(dir.join("CTImage.dcm_RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm")).unwrap();
    let mut b = a.clone();
    b[172_399..240_868].copy_from_slice(&a[116_561..116_561 + 68_469]);
    let r = load_dicom_bytes(&b);
    assert!(matches!(r, Err(cementleak::load::LoadError::Corrupt { .. })), "{:?}", r.err());
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("spliced_rle.dcm");
    std::fs::write(&p, &b).unwrap();
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_cementleak")).arg("info").arg(&p).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
}
