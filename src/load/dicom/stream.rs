//! The loader's hottest loop, 16-bit stored values with an integer rescale -> f32 HU, written to the volume
//! with streaming (non-temporal) stores.
//!
//! Why: an uncompressed series is bound by memory traffic, not arithmetic. The output volume (twice the
//! size of the stored pixels) is far larger than the caches, so ordinary stores first read every output
//! cache line from memory (read-for-ownership) and write it back later: three passes over the volume's bytes
//! once the kernel's zeroing of the fresh pages is counted. Streaming stores write whole lines without
//! reading them. On the benchmark machine this took the conversion of a 512 x 512 x 60 series from about one
//! I/O floor to about half of one (`cargo bench --bench load`; numbers in DEVELOPERS.md).
//!
//! The arithmetic is the scalar path's, lane by lane (i32 -> f32, one multiply, one add, each rounded; no
//! fused multiply-add), so results are bit-identical to [`super::decode`]'s scalar closure; a test checks.
//! SSE2 is part of the x86_64 baseline, so no run-time feature check is needed. Other architectures use the
//! scalar path.

/// Parameters of the 16-bit conversion, as the scalar path computes them.
#[derive(Clone, Copy, Debug)]
pub struct Rescale16 {
    pub signed: bool,
    /// `32 - BitsStored`: sign extension shifts left then arithmetically right by this much.
    pub shift: u32,
    /// `2^BitsStored - 1`, for unsigned samples.
    pub mask: u32,
    /// Inclusive range of stored values that are padding (`lo > hi` when there is none).
    pub lo: i32,
    pub hi: i32,
    pub slope: f32,
    pub intercept: f32,
    pub padding_hu: f32,
}

/// Convert `min(out.len(), bytes.len() / 2)` native-endian 16-bit samples of `bytes` into `out`, with
/// streaming stores for the 16-byte-aligned body and `scalar` (the reference conversion of one raw sample)
/// for the unaligned head and the tail. Returns `false`, writing nothing, where streaming is unavailable.
#[cfg(target_arch = "x86_64")]
pub fn convert(bytes: &[u8], out: &mut [f32], p: &Rescale16, scalar: impl Fn(u16) -> f32) -> bool {
    use std::arch::x86_64::*;
    let n = out.len().min(bytes.len() / 2);
    let sample = |i: usize| u16::from_ne_bytes([bytes[2 * i], bytes[2 * i + 1]]);
    // f32 is 4-byte aligned, so at most 3 samples precede the first 16-byte boundary.
    let head = ((16 - out.as_ptr() as usize % 16) % 16 / 4).min(n);
    for (i, o) in out[..head].iter_mut().enumerate() {
        *o = scalar(sample(i));
    }
    let body_end = head + (n - head) / 8 * 8;
    // SAFETY: SSE2 is always present on x86_64. Every load reads bytes[2i .. 2i + 16] and every store writes
    // out[i .. i + 8] with head <= i and i + 8 <= body_end <= n, so both stay inside their slices (2 * n <=
    // bytes.len(), n <= out.len()). `out.as_mut_ptr().add(i)` is 16-byte aligned for these i (head brings it
    // there and i advances by 8 f32 = 32 bytes), as `_mm_stream_ps` requires. The final `_mm_sfence` orders
    // the streaming stores before any later store, so the thread that joins this work (rayon's completion
    // signal is a later store) sees the values.
    unsafe {
        let zero = _mm_setzero_si128();
        let count = _mm_cvtsi32_si128(p.shift as i32);
        let mask = _mm_set1_epi32(p.mask as i32);
        let (lo, hi) = (_mm_set1_epi32(p.lo), _mm_set1_epi32(p.hi));
        let (slope, intercept, pad) =
            (_mm_set1_ps(p.slope), _mm_set1_ps(p.intercept), _mm_set1_ps(p.padding_hu));
        let hu = |raw: __m128i| -> __m128 {
            let v = if p.signed {
                _mm_sra_epi32(_mm_sll_epi32(raw, count), count)
            } else {
                _mm_and_si128(raw, mask)
            };
            let f = _mm_add_ps(_mm_mul_ps(_mm_cvtepi32_ps(v), slope), intercept);
            // Not padding: v < lo or v > hi.
            let keep = _mm_castsi128_ps(_mm_or_si128(_mm_cmplt_epi32(v, lo), _mm_cmpgt_epi32(v, hi)));
            _mm_or_ps(_mm_and_ps(keep, f), _mm_andnot_ps(keep, pad))
        };
        let src = bytes.as_ptr();
        let dst = out.as_mut_ptr();
        let mut i = head;
        while i < body_end {
            let raw = _mm_loadu_si128(src.add(2 * i) as *const __m128i);
            _mm_stream_ps(dst.add(i), hu(_mm_unpacklo_epi16(raw, zero)));
            _mm_stream_ps(dst.add(i + 4), hu(_mm_unpackhi_epi16(raw, zero)));
            i += 8;
        }
        _mm_sfence();
    }
    for (i, o) in out[body_end..n].iter_mut().enumerate() {
        *o = scalar(sample(body_end + i));
    }
    true
}

#[cfg(not(target_arch = "x86_64"))]
pub fn convert(_: &[u8], _: &mut [f32], _: &Rescale16, _: impl Fn(u16) -> f32) -> bool {
    false
}
