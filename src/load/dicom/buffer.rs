//! The output volume's memory.
//!
//! A CT volume is tens to hundreds of MB of fresh memory, and the first write to each 4 KiB page costs a
//! page fault: for an uncompressed series that is a large share of the load time. On Linux the buffer is
//! marked for transparent huge pages, so the decoders' first writes fault it in 2 MiB at a time. The
//! buffer comes from `alloc_zeroed`, which for sizes like these maps fresh zero pages without writing
//! them, so each page is still touched first by the thread that decodes into it.

use ndarray::Array3;

/// Below this a volume is too small for huge pages to matter.
const HUGE_PAGE_MIN: usize = 4 << 20;

/// A zero-filled `(slices, rows, cols)` volume.
pub fn zeroed_volume(shape: (usize, usize, usize)) -> Array3<i16> {
    let n = shape.0 * shape.1 * shape.2;
    let v = vec![0i16; n];
    advise_huge_pages(&v);
    // The length is the product of the shape, so this cannot fail; fall back to zeros() rather than unwrap.
    Array3::from_shape_vec(shape, v).unwrap_or_else(|_| Array3::zeros(shape))
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(v: &[i16]) {
    const PAGE: usize = 4096;
    let bytes = std::mem::size_of_val(v);
    if bytes < HUGE_PAGE_MIN {
        return;
    }
    let start = v.as_ptr() as usize;
    let first = start.next_multiple_of(PAGE);
    let end = (start + bytes) / PAGE * PAGE;
    if end <= first {
        return;
    }
    // SAFETY: [first, end) lies inside the live allocation `v` and is page-aligned, as madvise requires.
    // MADV_HUGEPAGE only changes how the kernel backs these pages; their contents (zeros) are unchanged.
    // It is a hint: failure (e.g. THP disabled) leaves ordinary pages, so the result is ignored.
    let rc = unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    if rc != 0 {
        tracing::debug!("madvise(MADV_HUGEPAGE) on the volume failed; using ordinary pages");
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_: &[i16]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_volume_has_the_shape_and_zeros() {
        for shape in [(0, 0, 0), (1, 2, 3), (3, 512, 512)] {
            let a = zeroed_volume(shape);
            assert_eq!(a.dim(), shape);
            assert!(a.iter().all(|&x| x == 0));
            assert!(a.is_standard_layout());
        }
    }
}
