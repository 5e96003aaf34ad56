//! Zero-filled scan-sized arrays backed by transparent huge pages.
//!
//! A scan-sized label map or mask is megabytes of fresh memory, and the first touch of each 4 KiB page
//! costs a page fault: an `analyze` run made ~48k of them, most in the serial steps between the stages
//! (label maps carried, masks taken from them, the output label map). On Linux the buffer is marked for
//! transparent huge pages (the machine's policy is usually `madvise`: only marked memory gets them), so
//! its first touches fault it in 2 MiB at a time. The buffer comes from `alloc_zeroed`, which for sizes
//! like these maps fresh zero pages without writing them, so each page is still touched first by the
//! thread that fills it. The contents are those of any zeroed array: only how the kernel backs it changes.

use ndarray::Array3;

/// Below this an array is too small for huge pages to matter.
const HUGE_PAGE_MIN: usize = 4 << 20;

/// Element types whose all-zero value is `ZERO` (so that `vec![ZERO; n]` is an `alloc_zeroed`).
pub trait Zeroed: Copy {
    const ZERO: Self;
}

impl Zeroed for bool {
    const ZERO: Self = false;
}
impl Zeroed for u8 {
    const ZERO: Self = 0;
}
impl Zeroed for i16 {
    const ZERO: Self = 0;
}
impl Zeroed for f32 {
    const ZERO: Self = 0.0;
}

/// A zero-filled `[slices, rows, columns]` array (`false`, 0, 0.0), huge-page backed when large.
pub fn zeroed<T: Zeroed>(shape: [usize; 3]) -> Array3<T> {
    let n = shape[0] * shape[1] * shape[2];
    let v = vec![T::ZERO; n];
    advise_huge_pages(&v);
    let dim = (shape[0], shape[1], shape[2]);
    // The length is the product of the shape, so this cannot fail; fall back rather than unwrap.
    Array3::from_shape_vec(dim, v).unwrap_or_else(|_| Array3::from_elem(dim, T::ZERO))
}

#[cfg(target_os = "linux")]
fn advise_huge_pages<T>(v: &[T]) {
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
        tracing::debug!("madvise(MADV_HUGEPAGE) failed; using ordinary pages");
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages<T>(_: &[T]) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_arrays_have_the_shape_and_zeros() {
        for shape in [[0, 0, 0], [1, 2, 3], [3, 512, 512], [20, 512, 512]] {
            let a = zeroed::<i16>(shape);
            assert_eq!(a.shape(), shape);
            assert!(a.iter().all(|&x| x == 0));
            assert!(a.is_standard_layout());
            assert!(zeroed::<bool>(shape).iter().all(|&x| !x));
            assert!(zeroed::<u8>(shape).iter().all(|&x| x == 0));
            assert!(zeroed::<f32>(shape).iter().all(|&x| x.to_bits() == 0));
        }
    }
}
