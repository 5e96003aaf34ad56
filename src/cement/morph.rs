//! Binary morphology and 3D connected components on flat crop arrays.

/// Box dilation with half-widths `r` (voxels) per axis; separable, so linear in the number of voxels.
pub(crate) fn dilate(mask: &[bool], shape: [usize; 3], r: [usize; 3]) -> Vec<bool> {
    let mut cur = mask.to_vec();
    for (axis, &ra) in r.iter().enumerate() {
        if ra > 0 {
            cur = dilate_axis(&cur, shape, axis, ra);
        }
    }
    cur
}

/// Box erosion; voxels outside the array count as inside the mask (the crop never cuts the body).
pub(crate) fn erode(mask: &[bool], shape: [usize; 3], r: [usize; 3]) -> Vec<bool> {
    let inv: Vec<bool> = mask.iter().map(|v| !v).collect();
    dilate(&inv, shape, r).into_iter().map(|v| !v).collect()
}

/// One axis of the box dilation, in parallel over slices: within a slice (rows, columns) by the distance to
/// the nearest `true` before and after each position; across slices (axis 0, few voxels at slice spacing)
/// as the OR of the neighbouring slices.
fn dilate_axis(src: &[bool], shape: [usize; 3], axis: usize, r: usize) -> Vec<bool> {
    use rayon::prelude::*;
    let plane = shape[1] * shape[2];
    let mut out = vec![false; src.len()];
    if plane == 0 {
        return out;
    }
    out.par_chunks_mut(plane).enumerate().for_each(|(z, o)| {
        if axis == 0 {
            let lo = z.saturating_sub(r);
            let hi = (z + r).min(shape[0] - 1);
            for zz in lo..=hi {
                let s = &src[zz * plane..(zz + 1) * plane];
                for (a, &b) in o.iter_mut().zip(s) {
                    *a |= b;
                }
            }
            return;
        }
        let s = &src[z * plane..(z + 1) * plane];
        let (n, st, lines, line_st) =
            if axis == 1 { (shape[1], shape[2], shape[2], 1) } else { (shape[2], 1, shape[1], shape[2]) };
        for j in 0..lines {
            let base = j * line_st;
            let mut last: Option<usize> = None;
            for k in 0..n {
                if s[base + k * st] {
                    last = Some(k);
                }
                if last.is_some_and(|l| k - l <= r) {
                    o[base + k * st] = true;
                }
            }
            let mut next: Option<usize> = None;
            for k in (0..n).rev() {
                if s[base + k * st] {
                    next = Some(k);
                }
                if next.is_some_and(|l| l - k <= r) {
                    o[base + k * st] = true;
                }
            }
        }
    });
    out
}

/// Offsets of the 26 neighbours, as `[dz, dy, dx]`.
pub(crate) fn neighbours26() -> impl Iterator<Item = [isize; 3]> {
    (-1isize..=1)
        .flat_map(move |dz| (-1isize..=1).flat_map(move |dy| (-1isize..=1).map(move |dx| [dz, dy, dx])))
        .filter(|d| *d != [0, 0, 0])
}

/// Index of the voxel at `c + d`, if inside `shape`.
pub(crate) fn offset(shape: [usize; 3], c: [usize; 3], d: [isize; 3]) -> Option<usize> {
    let mut n = [0usize; 3];
    for a in 0..3 {
        let v = c[a] as isize + d[a];
        if v < 0 || v >= shape[a] as isize {
            return None;
        }
        n[a] = v as usize;
    }
    Some((n[0] * shape[1] + n[1]) * shape[2] + n[2])
}

pub(crate) fn coords(shape: [usize; 3], i: usize) -> [usize; 3] {
    let x = i % shape[2];
    let r = i / shape[2];
    [r / shape[1], r % shape[1], x]
}

/// 26-connected components of `mask`: voxel indices of each component, in discovery order.
pub(crate) fn components26(mask: &[bool], shape: [usize; 3]) -> Vec<Vec<usize>> {
    let offsets: Vec<[isize; 3]> = neighbours26().collect();
    let mut seen = vec![false; mask.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if !mask[start] || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut comp = Vec::new();
        while let Some(i) = stack.pop() {
            comp.push(i);
            let c = coords(shape, i);
            for &d in &offsets {
                if let Some(j) = offset(shape, c, d) {
                    if mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        out.push(comp);
    }
    out
}

/// Hysteresis: every `grow` voxel 26-connected to a `seed` voxel through `grow` voxels (seeds included).
pub(crate) fn grow_from_seeds(seed: &[bool], grow: &[bool], shape: [usize; 3]) -> Vec<bool> {
    let offsets: Vec<[isize; 3]> = neighbours26().collect();
    let mut out = vec![false; seed.len()];
    let mut stack: Vec<usize> = Vec::new();
    for (i, &s) in seed.iter().enumerate() {
        if s {
            out[i] = true;
            stack.push(i);
        }
    }
    while let Some(i) = stack.pop() {
        let c = coords(shape, i);
        for &d in &offsets {
            if let Some(j) = offset(shape, c, d) {
                if grow[j] && !out[j] {
                    out[j] = true;
                    stack.push(j);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dilate_and_erode_boxes() {
        let shape = [5, 7, 7];
        let mut m = vec![false; 5 * 49];
        m[(2 * 7 + 3) * 7 + 3] = true;
        let d = dilate(&m, shape, [1, 2, 2]);
        assert_eq!(d.iter().filter(|v| **v).count(), 3 * 5 * 5);
        let e = erode(&d, shape, [1, 2, 2]);
        assert_eq!(e, m);
    }

    #[test]
    fn dilation_matches_brute_force() {
        let shape = [6, 9, 11];
        let n = shape[0] * shape[1] * shape[2];
        let m: Vec<bool> = (0..n).map(|i| (i * 7919) % 23 == 0).collect();
        let r = [1, 2, 3];
        let d = dilate(&m, shape, r);
        for z in 0..shape[0] {
            for y in 0..shape[1] {
                for x in 0..shape[2] {
                    let want = (z.saturating_sub(r[0])..=(z + r[0]).min(shape[0] - 1)).any(|zz| {
                        (y.saturating_sub(r[1])..=(y + r[1]).min(shape[1] - 1)).any(|yy| {
                            (x.saturating_sub(r[2])..=(x + r[2]).min(shape[2] - 1))
                                .any(|xx| m[(zz * shape[1] + yy) * shape[2] + xx])
                        })
                    });
                    assert_eq!(d[(z * shape[1] + y) * shape[2] + x], want, "at {z} {y} {x}");
                }
            }
        }
    }

    #[test]
    fn diagonal_voxels_are_one_component() {
        let shape = [3, 3, 3];
        let mut m = vec![false; 27];
        m[0] = true;
        m[13] = true; // centre, diagonal neighbour of the corner
        m[26] = true;
        assert_eq!(components26(&m, shape).len(), 1);
        m[13] = false;
        assert_eq!(components26(&m, shape).len(), 2);
    }
}
