//! The output volume's memory.
//!
//! A CT volume is tens to hundreds of MB of fresh memory, and the first write to each 4 KiB page costs a
//! page fault: for an uncompressed series that is a large share of the load time. On Linux the buffer is
//! marked for transparent huge pages (`volume::huge`), so the decoders' first writes fault it in 2 MiB at
//! a time. The buffer comes from `alloc_zeroed`, which for sizes like these maps fresh zero pages without
//! writing them, so each page is still touched first by the thread that decodes into it.

use ndarray::Array3;

/// A zero-filled `(slices, rows, cols)` volume (see `volume::huge`).
pub fn zeroed_volume(shape: (usize, usize, usize)) -> Array3<i16> {
    crate::volume::huge::zeroed([shape.0, shape.1, shape.2])
}

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
