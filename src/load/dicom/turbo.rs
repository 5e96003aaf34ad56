//! One JPEG frame (DICOM JPEG baseline .50, extended .51, lossless .57/.70) decoded with libjpeg-turbo 3.1.
//!
//! libjpeg-turbo is the reference JPEG implementation and, since 3.0, decodes every precision DICOM uses in
//! one library: 8- and 12-bit DCT (lossy) and 2..16-bit lossless. jpeg-decoder (dicom-rs's JPEG codec) has
//! no 12-bit DCT path, which many CT exports use for JPEG extended (.51). The library is built by
//! `turbojpeg-sys` from its bundled source with cmake and a C compiler.
//!
//! Before any sample buffer is allocated the JPEG header must agree with the DICOM header (size, one grey
//! component) and the image may not exceed that size (`TJPARAM_MAXPIXELS`), so a damaged stream cannot make
//! the decoder allocate more than one frame. A libjpeg warning (e.g. "premature end of data segment", after
//! which the rest of the frame is filled in grey) fails the call, so a damaged frame is refused, never
//! loaded half-grey.

use turbojpeg_sys as tj;

/// Decoded samples of one frame, native-endian, 1 byte per sample for precision <= 8, else 2.
pub struct Decoded {
    pub bytes: Vec<u8>,
    pub width: usize,
}

/// A TurboJPEG decompressor, destroyed on drop.
struct Handle(tj::tjhandle);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

impl Handle {
    fn new() -> Result<Self, String> {
        // SAFETY: plain constructor; a null result is checked.
        let h = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as i32) };
        if h.is_null() {
            return Err("cannot start the JPEG decoder".into());
        }
        Ok(Self(h))
    }

    fn get(&self, p: tj::TJPARAM) -> i32 {
        // SAFETY: valid handle, parameter id from the bindings.
        unsafe { tj::tj3Get(self.0, p as i32) }
    }

    fn error(&self) -> String {
        // SAFETY: valid handle; the library returns a NUL-terminated static or per-handle string.
        let s = unsafe { tj::tj3GetErrorStr(self.0) };
        if s.is_null() {
            return "unknown JPEG error".into();
        }
        // SAFETY: non-null, NUL-terminated (documented by tj3GetErrorStr).
        unsafe { std::ffi::CStr::from_ptr(s) }.to_string_lossy().into_owned()
    }

    fn check(&self, rc: i32) -> Result<(), String> {
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("JPEG: {}", self.error()))
        }
    }
}

/// Decode one greyscale JPEG frame that must be `rows` x `cols`.
pub fn decode_frame(jpeg: &[u8], rows: usize, cols: usize) -> Result<Decoded, String> {
    let h = Handle::new()?;
    // SAFETY: `jpeg` is a live slice of the given length; the decoder only reads it.
    h.check(unsafe { tj::tj3DecompressHeader(h.0, jpeg.as_ptr(), jpeg.len() as _) })?;
    let (w, ht) = (h.get(tj::TJPARAM_TJPARAM_JPEGWIDTH), h.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT));
    if w as usize != cols || ht as usize != rows {
        return Err(format!("JPEG image is {w}x{ht}, the DICOM header says {cols}x{rows}"));
    }
    let colorspace = h.get(tj::TJPARAM_TJPARAM_COLORSPACE);
    if colorspace != tj::TJCS_TJCS_GRAY as i32 {
        return Err(format!("JPEG image is not greyscale (TurboJPEG colourspace {colorspace})"));
    }
    let limit = i32::try_from(rows * cols).map_err(|_| "JPEG frame too large".to_string())?;
    // SAFETY: valid handle and parameter.
    h.check(unsafe { tj::tj3Set(h.0, tj::TJPARAM_TJPARAM_MAXPIXELS as i32, limit) })?;
    let precision = h.get(tj::TJPARAM_TJPARAM_PRECISION);
    let lossless = h.get(tj::TJPARAM_TJPARAM_LOSSLESS) == 1;
    let n = rows * cols;
    let gray = tj::TJPF_TJPF_GRAY;
    match precision {
        2..=8 => {
            let mut out = vec![0u8; n];
            // SAFETY: `out` holds rows*cols samples, the decoder writes one grey sample per pixel (pitch 0 =
            // unpadded), and the JPEG size was checked to be rows x cols.
            h.check(unsafe {
                tj::tj3Decompress8(h.0, jpeg.as_ptr(), jpeg.len() as _, out.as_mut_ptr(), 0, gray)
            })?;
            Ok(Decoded { bytes: out, width: 1 })
        }
        9..=12 => {
            let mut out = vec![0i16; n];
            // SAFETY: as above, with 16-bit sample storage.
            h.check(unsafe {
                tj::tj3Decompress12(h.0, jpeg.as_ptr(), jpeg.len() as _, out.as_mut_ptr(), 0, gray)
            })?;
            Ok(Decoded { bytes: to_ne_bytes(&out), width: 2 })
        }
        13..=16 if lossless => {
            let mut out = vec![0u16; n];
            // SAFETY: as above, with 16-bit sample storage.
            h.check(unsafe {
                tj::tj3Decompress16(h.0, jpeg.as_ptr(), jpeg.len() as _, out.as_mut_ptr(), 0, gray)
            })?;
            Ok(Decoded { bytes: to_ne_bytes(&out), width: 2 })
        }
        p => {
            Err(format!("JPEG sample precision {p} bits{}", if lossless { "" } else { " in a lossy image" }))
        }
    }
}

fn to_ne_bytes<T: Copy + Into<i32>>(samples: &[T]) -> Vec<u8> {
    samples.iter().flat_map(|&s| (s.into() as u16).to_ne_bytes()).collect()
}
