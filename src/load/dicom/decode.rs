//! Pixel decoding and the modality rescale to Hounsfield units.
//!
//! Decompression is dicom-pixeldata's (uncompressed, deflate, RLE, JPEG baseline/extended/lossless,
//! JPEG 2000 via the pure-Rust openjp2). The conversion of stored values to HU is done here, from the
//! decoded native samples: mask to BitsStored, sign-extend when PixelRepresentation = 1, then
//! HU = slope * value + intercept with the frame's own slope/intercept (per-frame for Enhanced CT). Doing it
//! here, instead of through `to_vec::<f32>()`, lets the loader see the stored value for padding and write
//! straight into the preallocated volume without an intermediate buffer.
//!
//! **Padding**: voxels whose stored value is PixelPaddingValue (or within PixelPaddingValue ..
//! PixelPaddingRangeLimit) lie outside the reconstructed field of view. They become [`PADDING_HU`]
//! (-1024 HU, air), not the rescaled padding value (often -2000 or -3024 "HU") that would distort HU
//! statistics and any threshold on low densities.
//!
//! Third-party decoders run inside `catch_unwind`: a panic on a damaged file becomes `LoadError::Corrupt`.

use super::header::{error_chain, FileHeader};
use crate::load::LoadError;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use ndarray::ArrayViewMut2;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// HU written for padded voxels: air.
pub const PADDING_HU: f32 = -1024.0;

/// JPEG-LS lossless and near-lossless.
const JPEG_LS: [&str; 2] = ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"];

/// Refuse, from the header alone, images this loader cannot turn into HU.
pub fn check_decodable(h: &FileHeader) -> Result<(), LoadError> {
    let path = h.path.clone();
    if h.samples_per_pixel != 1 {
        return Err(LoadError::BadTag {
            path,
            tag: "SamplesPerPixel".into(),
            reason: format!("{} (a colour image; CT images are greyscale)", h.samples_per_pixel),
        });
    }
    if !h.photometric.starts_with("MONOCHROME") {
        return Err(LoadError::BadTag {
            path,
            tag: "PhotometricInterpretation".into(),
            reason: format!("{} (CT images are MONOCHROME1/2)", h.photometric),
        });
    }
    if JPEG_LS.contains(&h.transfer_syntax.as_str()) {
        return Err(LoadError::UnsupportedEncoding {
            path,
            transfer_syntax: h.transfer_syntax.clone(),
            reason: "JPEG-LS is not built into this program".into(),
        });
    }
    match TransferSyntaxRegistry.get(&h.transfer_syntax) {
        None => Err(LoadError::UnsupportedEncoding {
            path,
            transfer_syntax: h.transfer_syntax.clone(),
            reason: "unknown transfer syntax".into(),
        }),
        Some(ts) if !ts.can_decode_all() => Err(LoadError::UnsupportedEncoding {
            path,
            transfer_syntax: h.transfer_syntax.clone(),
            reason: format!("no decoder for {}", ts.name()),
        }),
        Some(_) => Ok(()),
    }
}

/// One requested frame: its index in the file, its rescale, and where its HU go.
pub struct Target<'a> {
    pub frame: u32,
    pub slope: f64,
    pub intercept: f64,
    pub out: ArrayViewMut2<'a, f32>,
}

/// Decode `obj` (the full file of header `h`) and write the requested frames, in HU, into their targets.
pub fn decode_into(
    obj: &DefaultDicomObject,
    h: &FileHeader,
    targets: Vec<Target<'_>>,
) -> Result<(), LoadError> {
    let corrupt = |reason: String| LoadError::Corrupt { path: h.path.clone(), reason };
    if obj.get(tags::PIXEL_DATA).is_none() {
        return Err(LoadError::NoPixelData {
            path: h.path.clone(),
            reason: "the file has no PixelData element".into(),
        });
    }
    let decoded = catch_unwind(AssertUnwindSafe(|| obj.decode_pixel_data()))
        .map_err(|_| corrupt("the pixel decoder crashed on this file".into()))?
        .map_err(|e| {
            let reason = error_chain(&e);
            // A decoder that knows the format but not this variant (e.g. 12-bit JPEG extended) is an encoding
            // problem the user can fix by exporting differently, not a damaged file.
            if reason.contains("unsupported") || reason.contains("Unsupported") {
                LoadError::UnsupportedEncoding {
                    path: h.path.clone(),
                    transfer_syntax: h.transfer_syntax.clone(),
                    reason,
                }
            } else {
                corrupt(reason)
            }
        })?;
    let (rows, cols) = (h.rows as usize, h.cols as usize);
    if decoded.rows() as usize != rows || decoded.columns() as usize != cols {
        return Err(corrupt(format!(
            "decoded image is {}x{}, header says {}x{}",
            decoded.rows(),
            decoded.columns(),
            rows,
            cols
        )));
    }
    let width = match decoded.bits_allocated() {
        8 => 1,
        16 => 2,
        32 => 4,
        b => return Err(corrupt(format!("decoded samples of {b} bits"))),
    };
    let bits_stored = (decoded.bits_stored() as u32).clamp(1, 8 * width as u32);
    let frame_bytes = rows * cols * width;
    let data = decoded.data();
    let needed = frame_bytes * h.frames as usize;
    if data.len() < needed {
        return Err(corrupt(format!(
            "pixel data holds {} bytes, {} needed for {} frame(s) of {}x{}",
            data.len(),
            needed,
            h.frames,
            rows,
            cols
        )));
    }
    let conv = Convert { width, bits_stored, signed: h.signed, padding: h.padding };
    for mut t in targets {
        let start = t.frame as usize * frame_bytes;
        let bytes = &data[start..start + frame_bytes];
        conv.frame(bytes, t.slope, t.intercept, &mut t.out);
    }
    Ok(())
}

/// Stored sample -> HU.
#[derive(Clone, Copy, Debug)]
pub struct Convert {
    pub width: usize,
    pub bits_stored: u32,
    pub signed: bool,
    pub padding: Option<(i64, i64)>,
}

impl Convert {
    /// The stored value of one sample (little-endian native bytes), masked to BitsStored and sign-extended.
    #[inline]
    fn value(&self, b: &[u8]) -> i64 {
        let raw: u32 = match self.width {
            1 => b[0] as u32,
            2 => u16::from_ne_bytes([b[0], b[1]]) as u32,
            _ => u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        };
        let bs = self.bits_stored;
        let masked = if bs >= 32 { raw } else { raw & ((1u32 << bs) - 1) };
        if self.signed && (masked >> (bs - 1)) & 1 == 1 {
            masked as i64 - (1i64 << bs)
        } else {
            masked as i64
        }
    }

    pub fn frame(&self, bytes: &[u8], slope: f64, intercept: f64, out: &mut ArrayViewMut2<'_, f32>) {
        let samples = bytes.chunks_exact(self.width);
        let (lo, hi) = self.padding.unwrap_or((i64::MAX, i64::MIN));
        // Integer slope and intercept (the usual CT case) are exact in f32; keep f64 for the rest.
        for (o, b) in out.iter_mut().zip(samples) {
            let v = self.value(b);
            *o = if v >= lo && v <= hi { PADDING_HU } else { (slope * v as f64 + intercept) as f32 };
        }
    }
}
