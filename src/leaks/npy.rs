//! A minimal `.npy` writer (format 1.0, little-endian float32, C order): the exchange format of model
//! patches with the Python training and parity scripts, which read them with `numpy.load`.

use ndarray::{ArrayBase, Data, Dimension};
use std::io::Write;
use std::path::Path;

/// The header of an `.npy` file holding a float32 C-order array of `shape`, padded so the data starts on a
/// 64-byte boundary as the format asks.
pub fn header_f32(shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!("({})", shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // magic (6) + version (2) + header length (2) + dict + padding + newline
    let unpadded = 10 + dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let len = (dict.len() + pad + 1) as u16;
    let mut out = Vec::with_capacity(unpadded + pad);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend(std::iter::repeat_n(b' ', pad));
    out.push(b'\n');
    out
}

/// Write `array` to `path` as float32 `.npy` (logical C order, whatever the memory layout).
pub fn write_f32<S, D>(path: &Path, array: &ArrayBase<S, D>) -> std::io::Result<()>
where
    S: Data<Elem = f32>,
    D: Dimension,
{
    let mut bytes = header_f32(array.shape());
    bytes.reserve(array.len() * 4);
    for v in array.iter() {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let mut f = std::fs::File::create(path)?;
    f.write_all(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_aligned_and_parsable() {
        for shape in [vec![3usize], vec![7, 24, 24, 24], vec![1, 2]] {
            let h = header_f32(&shape);
            assert_eq!(h.len() % 64, 0);
            assert_eq!(&h[..8], b"\x93NUMPY\x01\x00");
            let len = u16::from_le_bytes([h[8], h[9]]) as usize;
            assert_eq!(len + 10, h.len());
            assert_eq!(h.last(), Some(&b'\n'));
        }
        assert!(String::from_utf8_lossy(&header_f32(&[3])).contains("'shape': (3,)"));
        assert!(String::from_utf8_lossy(&header_f32(&[7, 24])).contains("'shape': (7, 24)"));
    }

    #[test]
    fn data_follows_in_c_order() {
        let a = ndarray::arr2(&[[1.0f32, 2.0], [3.0, 4.0]]);
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path().join("a.npy");
        assert!(write_f32(&p, &a.t()).is_ok());
        let bytes = std::fs::read(&p).unwrap_or_default();
        let start = header_f32(&[2, 2]).len();
        assert_eq!(bytes.len(), start + 16);
        let data: Vec<f32> =
            bytes[start..].chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(data, [1.0, 3.0, 2.0, 4.0]);
    }
}
