//! One JPEG-LS frame (DICOM .80 lossless, .81 near-lossless) decoded with CharLS, the reference JPEG-LS
//! implementation (C++, built by `charls-sys` from its bundled source with cmake).
//!
//! The C API is used directly rather than through the `charls` crate so the frame header (size, components,
//! bits) is checked against the DICOM header before the output buffer is allocated. CharLS's C API catches
//! its C++ exceptions and returns error codes, so nothing unwinds across the boundary.

use charls_sys as ls;

/// A CharLS decoder, destroyed on drop.
struct Decoder(*mut ls::charls_jpegls_decoder);

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: created by charls_jpegls_decoder_create, destroyed once.
        unsafe { ls::charls_jpegls_decoder_destroy(self.0) }
    }
}

fn check(rc: ls::charls_jpegls_errc) -> Result<(), String> {
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: CharLS returns a pointer to a static NUL-terminated message for every error value.
    let msg = unsafe { ls::charls_get_error_message(rc) };
    if msg.is_null() {
        return Err(format!("JPEG-LS error {rc}"));
    }
    // SAFETY: non-null static C string.
    Err(format!("JPEG-LS: {}", unsafe { std::ffi::CStr::from_ptr(msg) }.to_string_lossy()))
}

/// Decode one greyscale JPEG-LS frame that must be `rows` x `cols`. Returns native-endian samples and the
/// bytes per sample (1 for up to 8 bits, else 2).
pub fn decode_frame(data: &[u8], rows: usize, cols: usize) -> Result<(Vec<u8>, usize), String> {
    // SAFETY: plain constructor; null is checked.
    let d = Decoder(unsafe { ls::charls_jpegls_decoder_create() });
    if d.0.is_null() {
        return Err("cannot start the JPEG-LS decoder".into());
    }
    // SAFETY: `data` outlives the decoder `d` (both end in this function); CharLS only reads it.
    check(unsafe { ls::charls_jpegls_decoder_set_source_buffer(d.0, data.as_ptr().cast(), data.len()) })?;
    // SAFETY: valid decoder with a source buffer.
    check(unsafe { ls::charls_jpegls_decoder_read_header(d.0) })?;
    let mut info = ls::charls_frame_info { width: 0, height: 0, bits_per_sample: 0, component_count: 0 };
    // SAFETY: header read; `info` is a valid out-pointer.
    check(unsafe { ls::charls_jpegls_decoder_get_frame_info(d.0, &mut info) })?;
    if info.width as usize != cols || info.height as usize != rows {
        return Err(format!(
            "JPEG-LS image is {}x{}, the DICOM header says {cols}x{rows}",
            info.width, info.height
        ));
    }
    if info.component_count != 1 {
        return Err(format!("JPEG-LS image has {} components, a CT image has 1", info.component_count));
    }
    let width = match info.bits_per_sample {
        2..=8 => 1,
        9..=16 => 2,
        b => return Err(format!("JPEG-LS sample precision {b} bits")),
    };
    let size = rows * cols * width;
    let mut out = vec![0u8; size];
    // SAFETY: `out` has `size` bytes, which is what CharLS needs for rows x cols single-component samples of
    // `width` bytes with the default stride (0 = unpadded); the size is passed so CharLS checks it too.
    check(unsafe { ls::charls_jpegls_decoder_decode_to_buffer(d.0, out.as_mut_ptr().cast(), size, 0) })?;
    Ok((out, width))
}
