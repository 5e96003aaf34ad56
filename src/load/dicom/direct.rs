//! Reading an uncompressed 16-bit frame straight into its slice of the volume.
//!
//! The frame's i16 slice has the size of its stored 16-bit samples: the file's sample bytes are read (`read`,
//! from the page cache) into the slice's own memory, then rescaled to HU there
//! ([`super::decode::Convert::frame_in_place`]). Against reading the file into a buffer and converting from
//! there, the sample bytes are copied once, not twice, and the rescale rewrites lines still in the cache.
//!
//! Applies to single-frame files of 16-bit samples in explicit or implicit VR little endian with PixelData of
//! defined length, whose header lies in the first bytes read. Anything else gets its targets back and goes
//! the general way (the caller reads the rest of the file). Errors are those of the general path: a
//! declared length past the end of the file or too few samples is `LoadError::Corrupt`, a file that
//! shrinks while being read is `LoadError::Io`.

use super::decode::{Convert, Target};
use super::header::FileHeader;
use super::lengths::native_pixel_value;
use crate::load::LoadError;
use std::io::Read;

/// Read the pixel data of the file `h` (opened as `file`, `total` bytes long, of which `prefix` was read
/// already and the file position is at `prefix.len()`) into its one target. `explicit`: explicit VR.
/// `Ok(None)` when done; `Ok(Some(targets))`, with the file position unchanged, when this path does not
/// apply.
pub fn read_frame<'a>(
    h: &FileHeader,
    explicit: bool,
    file: &mut impl Read,
    total: usize,
    prefix: &[u8],
    mut targets: Vec<Target<'a>>,
) -> Result<Option<Vec<Target<'a>>>, LoadError> {
    let corrupt = |reason: String| LoadError::Corrupt { path: h.path.clone(), reason };
    let n = h.rows as usize * h.cols as usize;
    let single = match targets.as_mut_slice() {
        [t] => t.frame == 0 && t.out.len() == n && t.out.is_standard_layout(),
        _ => false,
    };
    if !single || h.frames != 1 || h.bits_allocated != 16 || n == 0 {
        return Ok(Some(targets));
    }
    // The header goes on past the prefix (or there is no PixelData): the general path decides.
    let Some((start, len)) = native_pixel_value(prefix, total, explicit).map_err(corrupt)? else {
        return Ok(Some(targets));
    };
    if start > prefix.len() {
        return Ok(Some(targets));
    }
    if start.saturating_add(len) > total {
        return Err(corrupt("pixel data runs past the end of the file".into()));
    }
    let needed = 2 * n;
    if len < needed {
        return Err(corrupt(format!(
            "pixel data holds {len} bytes, {needed} needed for 1 frame(s) of {}x{}",
            h.rows, h.cols
        )));
    }
    let Some(mut t) = targets.pop() else { return Ok(Some(targets)) };
    let (slope, intercept) = (t.slope, t.intercept);
    let Some(out) = t.out.as_slice_mut() else { return Ok(Some(vec![t])) };
    let dst = bytemuck::cast_slice_mut::<i16, u8>(out);
    let have = (prefix.len() - start).min(needed);
    dst[..have].copy_from_slice(&prefix[start..start + have]);
    file.read_exact(&mut dst[have..])
        .map_err(|e| LoadError::Io { path: h.path.clone(), reason: e.to_string() })?;
    let conv = Convert {
        width: 2,
        bits_stored: (h.bits_stored as u32).clamp(1, 16),
        signed: h.signed,
        padding: h.padding,
    };
    if !conv.frame_in_place(out, slope, intercept) {
        return Err(corrupt("16-bit conversion refused a 16-bit frame".into()));
    }
    Ok(None)
}
