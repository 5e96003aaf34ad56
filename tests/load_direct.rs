//! Uncompressed single-frame files on disk are read straight into the volume (src/load/dicom/direct.rs);
//! files whose header does not fit the first read, multi-row odd sizes and padding take the same values as
//! the in-memory path (the buffered conversion), bit for bit.

mod load_synth;

use cementleak::load::dicom::load_dicom_bytes;
use cementleak::load::{load_scan, LoadOptions};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use load_synth::{to_bytes, with_meta, Slice, CT_IMAGE};

fn same_bits(a: &ndarray::Array3<i16>, b: ndarray::ArrayView3<i16>) -> bool {
    a.view() == b
}

/// Slices of size `n` x `n`, each written with a comment of `comment_len` bytes before its pixels; the folder
/// load must equal, slice by slice, each file loaded from memory.
fn check(n: u16, comment_len: usize, padding: Option<i16>, slope: f64, intercept: f64) {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for k in 0..3 {
        let mut s = Slice::axial("1.8.9.3", 2.0 * k as f64, n);
        s.instance = k + 1;
        s.padding = padding;
        s.slope = slope;
        s.intercept = intercept;
        if let (Some(p), Some(v)) = (padding, s.pixels.get_mut(5)) {
            *v = p;
        }
        let mut o = s.dataset();
        o.put(DataElement::new(tags::IMAGE_COMMENTS, VR::LT, PrimitiveValue::from("x".repeat(comment_len))));
        let bytes = to_bytes(&with_meta(o, CT_IMAGE));
        let path = tmp.path().join(format!("f{k}.dcm"));
        std::fs::write(&path, &bytes).unwrap();
        files.push(bytes);
    }
    let vol = load_scan(tmp.path(), &LoadOptions::default()).unwrap().volume.data;
    assert_eq!(vol.dim(), (3, n as usize, n as usize));
    for (k, bytes) in files.iter().enumerate() {
        let one = load_dicom_bytes(bytes).unwrap().volume.data;
        let what = format!("n={n} comment={comment_len} padding={padding:?} slice {k}");
        assert!(same_bits(&one, vol.slice(ndarray::s![k..k + 1, .., ..])), "{what}");
        if padding.is_some() {
            assert_eq!(vol[[k, 0, 5]], -1024, "{what}: padding");
        }
    }
}

#[test]
fn direct_read_matches_in_memory_load() {
    check(64, 10, None, 1.0, -1024.0);
    // Odd voxel count: the samples start at an odd multiple of 2 bytes into the slice.
    check(63, 10, Some(-2000), 1.0, -1024.0);
    check(65, 10, None, 0.5, -1000.25);
}

#[test]
fn header_beyond_the_first_read_loads_the_same() {
    // 40 KB of comment: PixelData starts past the first 16 KiB read, so the file goes the buffered way.
    check(64, 40_000, None, 1.0, -1024.0);
    // PixelData starts just inside the first read; its bytes are mostly read afterwards.
    check(64, 16 * 1024 - 1200, Some(-3000), 1.0, -1024.0);
}
