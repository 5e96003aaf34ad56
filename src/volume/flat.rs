//! Walking the set elements of the flat buffer of a mostly empty mask or label map.

/// Calls `f(i, v)` for every element `v` of `flat` that is not zero (`false`, label 0), in storage order.
/// Blocks of 64 are tested at once with an OR the compiler vectorises: a scan's masks and label maps are
/// mostly empty, and a branch per element over 10 million voxels cost milliseconds per pass.
pub fn for_each_set<T: Copy + Into<u8>>(flat: &[T], mut f: impl FnMut(usize, T)) {
    const BLOCK: usize = 64;
    let mut blocks = flat.chunks_exact(BLOCK);
    let mut base = 0;
    for chunk in blocks.by_ref() {
        if chunk.iter().fold(0u8, |a, &v| a | v.into()) != 0 {
            for (k, &v) in chunk.iter().enumerate() {
                if v.into() != 0 {
                    f(base + k, v);
                }
            }
        }
        base += BLOCK;
    }
    for (k, &v) in blocks.remainder().iter().enumerate() {
        if v.into() != 0 {
            f(base + k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visits_exactly_the_set_elements_in_order() {
        let n = 64 * 5 + 37;
        let labels: Vec<u8> = (0..n)
            .map(|i| if i % 97 == 3 || i == n - 1 || i == 64 { (i % 5 + 1) as u8 } else { 0 })
            .collect();
        let mut got = Vec::new();
        for_each_set(&labels, |i, v| got.push((i, v)));
        let want: Vec<(usize, u8)> =
            labels.iter().enumerate().filter(|(_, &v)| v != 0).map(|(i, &v)| (i, v)).collect();
        assert_eq!(got, want);
        let mask: Vec<bool> = labels.iter().map(|&v| v != 0).collect();
        let mut idx = Vec::new();
        for_each_set(&mask, |i, _| idx.push(i));
        assert_eq!(idx, want.iter().map(|w| w.0).collect::<Vec<_>>());
    }
}
