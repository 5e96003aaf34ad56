//! Binary morphology on 2D slices (distance-transform based, so any radius costs the same), hole filling,
//! connected components and separable Gaussian smoothing. Sizes are given in pixels by the callers, who
//! convert from millimetres with the frame step.

use ndarray::{Array2, Array3, ArrayView2, Zip};

const INF: f32 = 1e20;
/// Values at or below this are samples outside the scan (see `frame::OUTSIDE_HU`).
const MISSING: f32 = super::frame::OUTSIDE_HU + 0.5;

/// 1D squared Euclidean distance transform of a sampled function (Felzenszwalb and Huttenlocher); samples at
/// `INF` are absent.
fn dt1d(f: &[f32], out: &mut [f32], v: &mut [usize], z: &mut [f32]) {
    let n = f.len();
    let mut k: isize = -1;
    for q in 0..n {
        if f[q] >= INF {
            continue;
        }
        loop {
            if k < 0 {
                k = 0;
                v[0] = q;
                z[0] = -INF;
                z[1] = INF;
                break;
            }
            let p = v[k as usize];
            let s = ((f[q] + (q * q) as f32) - (f[p] + (p * p) as f32)) / (2.0 * (q as f32 - p as f32));
            if s <= z[k as usize] {
                k -= 1;
            } else {
                k += 1;
                v[k as usize] = q;
                z[k as usize] = s;
                z[k as usize + 1] = INF;
                break;
            }
        }
    }
    if k < 0 {
        out[..n].iter_mut().for_each(|o| *o = INF);
        return;
    }
    let mut j = 0usize;
    for (q, o) in out[..n].iter_mut().enumerate() {
        while z[j + 1] < q as f32 {
            j += 1;
        }
        let p = v[j];
        *o = (q as f32 - p as f32).powi(2) + f[p];
    }
}

/// Squared distance (pixels²) from every pixel to the nearest `true` pixel; `INF`-like when there is none.
pub fn sq_distance_to(mask: ArrayView2<bool>) -> Array2<f32> {
    let (h, w) = mask.dim();
    let mut d = row_sq_distances(mask);
    let n = h.max(w);
    let (mut buf, mut out, mut v, mut z) = (vec![0f32; n], vec![0f32; n], vec![0usize; n], vec![0f32; n + 1]);
    for mut col in d.columns_mut() {
        let len = col.len();
        for (b, x) in buf.iter_mut().zip(col.iter()) {
            *b = *x;
        }
        dt1d(&buf[..len], &mut out[..len], &mut v, &mut z);
        for (x, o) in col.iter_mut().zip(out.iter()) {
            *x = *o;
        }
    }
    d
}

/// The first pass of [`sq_distance_to`]: along rows the input is binary, so the squared distance to the
/// nearest set pixel on either side is found by two sweeps. These are the values `dt1d` gives a 0/INF row,
/// to the bit (small integers).
fn row_sq_distances(mask: ArrayView2<bool>) -> Array2<f32> {
    let (h, w) = mask.dim();
    let mut d = Array2::<f32>::from_elem((h, w), INF);
    for (m, mut row) in mask.rows().into_iter().zip(d.rows_mut()) {
        let mut last = None;
        for (q, (&set, o)) in m.iter().zip(row.iter_mut()).enumerate() {
            if set {
                last = Some(q);
            }
            if let Some(p) = last {
                *o = ((q - p) as f32).powi(2);
            }
        }
        last = None;
        for q in (0..w).rev() {
            if m[q] {
                last = Some(q);
            }
            if let Some(p) = last {
                let v = ((p - q) as f32).powi(2);
                if v < row[q] {
                    row[q] = v;
                }
            }
        }
    }
    d
}

/// Pixels within `r` of a `true` pixel: `sq_distance_to(mask) <= r * r`, the same booleans, computed as
/// the least `dy² + row distance` over the rows within reach only (a pixel farther than `r` rows away
/// cannot be within `r`), a whole row at a time so that it vectorises. Exact: every term is a small
/// integer, as in the general transform.
fn within(mask: ArrayView2<bool>, r: f32) -> Array2<bool> {
    let (h, w) = mask.dim();
    let r2 = r * r;
    let rows = row_sq_distances(mask);
    // Rows up to `reach` away, one more than needed for rounding's sake; NaN reaches none (and matches
    // nothing, as the threshold test does).
    let reach = (r2.sqrt().ceil() as usize).saturating_add(1).min(h);
    let mut out = Array2::from_elem((h, w), false);
    let mut best = vec![0f32; w];
    for (y, mut o) in out.rows_mut().into_iter().enumerate() {
        best.iter_mut().for_each(|b| *b = f32::INFINITY);
        for yy in y.saturating_sub(reach)..(y + reach + 1).min(h) {
            let dy = (yy as f32 - y as f32).powi(2);
            for (b, &g) in best.iter_mut().zip(rows.row(yy)) {
                *b = b.min(dy + g);
            }
        }
        for (o, &b) in o.iter_mut().zip(&best) {
            *o = b <= r2;
        }
    }
    out
}

/// Dilation by a disc of radius `r` pixels.
pub fn dilate(mask: &Array2<bool>, r: f32) -> Array2<bool> {
    within(mask.view(), r)
}

/// Erosion by a disc of radius `r` pixels (outside the image counts as background).
pub fn erode(mask: &Array2<bool>, r: f32) -> Array2<bool> {
    let (h, w) = mask.dim();
    // Pad by one so the border behaves as background.
    let mut inv = Array2::from_elem((h + 2, w + 2), true);
    Zip::from(inv.slice_mut(ndarray::s![1..h + 1, 1..w + 1])).and(mask).for_each(|o, &m| *o = !m);
    let d = within(inv.view(), r);
    // `!within` is "farther than r", except for a NaN radius, which nothing is farther than.
    let nan = (r * r).is_nan();
    d.slice(ndarray::s![1..h + 1, 1..w + 1]).mapv(|v| !v && !nan)
}

pub fn close(mask: &Array2<bool>, r: f32) -> Array2<bool> {
    let (h, w) = mask.dim();
    // Pad so that the dilation does not lose what reaches the border.
    let p = r.ceil() as usize + 1;
    let mut big = Array2::from_elem((h + 2 * p, w + 2 * p), false);
    big.slice_mut(ndarray::s![p..p + h, p..p + w]).assign(mask);
    let d = dilate(&big, r);
    let inv = d.mapv(|b| !b);
    let nan = (r * r).is_nan();
    let e = within(inv.view(), r).mapv(|v| !v && !nan);
    e.slice(ndarray::s![p..p + h, p..p + w]).to_owned()
}

pub fn open(mask: &Array2<bool>, r: f32) -> Array2<bool> {
    dilate(&erode(mask, r), r)
}

/// 4-connected components of `true` pixels: labels (0 = background, 1.. = components) and sizes (index 0 unused).
pub fn label2(mask: &Array2<bool>) -> (Array2<u32>, Vec<usize>) {
    let (h, w) = mask.dim();
    let mut lab = Array2::<u32>::zeros((h, w));
    let mut sizes = vec![0usize];
    let mut stack = Vec::new();
    for y in 0..h {
        for x in 0..w {
            if !mask[(y, x)] || lab[(y, x)] != 0 {
                continue;
            }
            let id = sizes.len() as u32;
            let mut n = 0usize;
            lab[(y, x)] = id;
            stack.push((y, x));
            while let Some((cy, cx)) = stack.pop() {
                n += 1;
                let mut visit = |ny: usize, nx: usize| {
                    if mask[(ny, nx)] && lab[(ny, nx)] == 0 {
                        lab[(ny, nx)] = id;
                        stack.push((ny, nx));
                    }
                };
                if cy > 0 {
                    visit(cy - 1, cx);
                }
                if cy + 1 < h {
                    visit(cy + 1, cx);
                }
                if cx > 0 {
                    visit(cy, cx - 1);
                }
                if cx + 1 < w {
                    visit(cy, cx + 1);
                }
            }
            sizes.push(n);
        }
    }
    (lab, sizes)
}

/// Background regions not connected to the image border become foreground.
pub fn fill_holes(mask: &Array2<bool>) -> Array2<bool> {
    let inv = mask.mapv(|b| !b);
    let (lab, sizes) = label2(&inv);
    let (h, w) = mask.dim();
    let mut border = vec![false; sizes.len()];
    for y in 0..h {
        border[lab[(y, 0)] as usize] = true;
        border[lab[(y, w - 1)] as usize] = true;
    }
    for x in 0..w {
        border[lab[(0, x)] as usize] = true;
        border[lab[(h - 1, x)] as usize] = true;
    }
    let mut out = mask.clone();
    Zip::from(&mut out).and(&lab).for_each(|o, &l| {
        if l != 0 && !border[l as usize] {
            *o = true;
        }
    });
    out
}

/// The component of `mask` that contains `seed`, or failing that the one nearest to it within `max_r`
/// pixels. Empty when there is none.
pub fn component_at(mask: &Array2<bool>, seed: (f64, f64), max_r: f64) -> Array2<bool> {
    let (lab, _) = label2(mask);
    let (h, w) = mask.dim();
    let mut best: Option<(f64, u32)> = None;
    let r = max_r.ceil() as isize;
    let (sy, sx) = (seed.0.round() as isize, seed.1.round() as isize);
    for y in (sy - r).max(0)..=(sy + r).min(h as isize - 1) {
        for x in (sx - r).max(0)..=(sx + r).min(w as isize - 1) {
            let l = lab[(y as usize, x as usize)];
            if l == 0 {
                continue;
            }
            let d = ((y as f64 - seed.0).powi(2) + (x as f64 - seed.1).powi(2)).sqrt();
            if d <= max_r && best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, l));
            }
        }
    }
    match best {
        Some((_, l)) => lab.mapv(|v| v == l),
        None => Array2::from_elem((h, w), false),
    }
}

/// Separable Gaussian smoothing with a per-axis sigma in voxels (0 = leave that axis alone). Edges and
/// samples outside the scan are handled by renormalising the kernel over the samples present.
pub fn gaussian3(vol: &Array3<f32>, sigma: [f64; 3]) -> Array3<f32> {
    let input = vol.as_standard_layout();
    let dims = input.dim();
    let dims = [dims.0, dims.1, dims.2];
    // Two buffers in turn, the input read in place: `smooth_axis` writes every sample of its output, so
    // the output buffer need not start as a copy of anything.
    let mut cur: Option<Array3<f32>> = None;
    let mut spare: Option<Array3<f32>> = None;
    for (ax, &s) in sigma.iter().enumerate() {
        if s <= 0.05 {
            continue;
        }
        let k = gaussian_taps(s);
        let mut dst = spare.take().unwrap_or_else(|| crate::volume::huge::zeroed(dims));
        let src = cur.as_ref().map_or_else(|| input.as_slice(), |c| c.as_slice());
        let (Some(src_flat), Some(dst_flat)) = (src, dst.as_slice_mut()) else {
            unreachable!("standard layout")
        };
        smooth_axis(src_flat, dst_flat, dims, ax, &k);
        spare = cur.replace(dst);
    }
    cur.unwrap_or_else(|| input.into_owned())
}

/// Unnormalised Gaussian taps out to 3 sigma (voxels); [`gaussian3`] renormalises over the samples present.
fn gaussian_taps(s: f64) -> Vec<f32> {
    let r = (3.0 * s).ceil() as isize;
    (-r..=r).map(|i| (-(i * i) as f64 / (2.0 * s * s)).exp() as f32).collect()
}

/// One axis of [`gaussian3`] on flat standard-layout data. Each output sample sums its kernel taps in the
/// same order as a plain per-sample loop (`acc += k * v` over the taps present), so the result is the same
/// to the bit; the work is laid out so that the compiler can vectorise it: along the first two axes, whole
/// rows of the last axis at once (a missing tap adds exactly +0.0, which leaves a sum that started at +0.0
/// unchanged), along the last axis, taps without a missing sample in reach skip the per-tap tests.
fn smooth_axis(src: &[f32], dst: &mut [f32], dims: [usize; 3], ax: usize, k: &[f32]) {
    use rayon::prelude::*;
    let r = (k.len() / 2) as isize;
    let n = dims[ax];
    let inner: usize = dims[ax + 1..].iter().product();
    let block = n * inner;
    if inner > 1 {
        dst.par_chunks_mut(block).zip(src.par_chunks(block)).for_each(|(out, inp)| {
            let mut acc = vec![0f32; inner];
            let mut wsum = vec![0f32; inner];
            for x in 0..n as isize {
                acc.iter_mut().for_each(|a| *a = 0.0);
                wsum.iter_mut().for_each(|w| *w = 0.0);
                for (ki, &kv) in k.iter().enumerate() {
                    let j = x + ki as isize - r;
                    if j < 0 || j >= n as isize {
                        continue;
                    }
                    let row = &inp[j as usize * inner..(j as usize + 1) * inner];
                    for ((a, w), &v) in acc.iter_mut().zip(wsum.iter_mut()).zip(row) {
                        let present = v > MISSING;
                        *a += if present { kv * v } else { 0.0 };
                        *w += if present { kv } else { 0.0 };
                    }
                }
                let xi = x as usize;
                let centre = &inp[xi * inner..(xi + 1) * inner];
                let o = &mut out[xi * inner..(xi + 1) * inner];
                for (((o, &c), &a), &w) in o.iter_mut().zip(centre).zip(&acc).zip(&wsum) {
                    *o = if c <= MISSING { c } else { a / w.max(1e-6) };
                }
            }
        });
    } else {
        let ksum = k.iter().fold(0f32, |s, &v| s + v);
        dst.par_chunks_mut(n).zip(src.par_chunks(n)).for_each(|(o, i)| {
            // Missing samples up to each index, to find the taps with none in reach.
            let mut missing = vec![0u32; n + 1];
            for (x, &v) in i.iter().enumerate() {
                missing[x + 1] = missing[x] + u32::from(v <= MISSING);
            }
            let ni = n as isize;
            for x in 0..ni {
                let xu = x as usize;
                if i[xu] <= MISSING {
                    o[xu] = i[xu];
                    continue;
                }
                if x >= r && x + r < ni && missing[xu + r as usize + 1] == missing[xu - r as usize] {
                    let win = &i[xu - r as usize..=xu + r as usize];
                    let acc = k.iter().zip(win).fold(0f32, |a, (&kv, &v)| a + kv * v);
                    o[xu] = acc / ksum.max(1e-6);
                    continue;
                }
                let (mut acc, mut wsum) = (0f32, 0f32);
                for (ki, kv) in k.iter().enumerate() {
                    let j = x + ki as isize - r;
                    if j >= 0 && j < ni && i[j as usize] > MISSING {
                        acc += kv * i[j as usize];
                        wsum += kv;
                    }
                }
                o[xu] = acc / wsum.max(1e-6);
            }
        });
    }
}

/// 6-connected components in 3D: labels and sizes (index 0 unused).
pub fn label3(mask: &Array3<bool>) -> (Array3<u32>, Vec<usize>) {
    let (d0, d1, d2) = mask.dim();
    let mut lab = Array3::<u32>::zeros((d0, d1, d2));
    let mut sizes = vec![0usize];
    let mut stack = Vec::new();
    for ((z, y, x), &m) in mask.indexed_iter() {
        if !m || lab[(z, y, x)] != 0 {
            continue;
        }
        let id = sizes.len() as u32;
        let mut n = 0;
        lab[(z, y, x)] = id;
        stack.push((z, y, x));
        while let Some((cz, cy, cx)) = stack.pop() {
            n += 1;
            let nbrs = [
                (cz.wrapping_sub(1), cy, cx),
                (cz + 1, cy, cx),
                (cz, cy.wrapping_sub(1), cx),
                (cz, cy + 1, cx),
                (cz, cy, cx.wrapping_sub(1)),
                (cz, cy, cx + 1),
            ];
            for (nz, ny, nx) in nbrs {
                if nz < d0 && ny < d1 && nx < d2 && mask[(nz, ny, nx)] && lab[(nz, ny, nx)] == 0 {
                    lab[(nz, ny, nx)] = id;
                    stack.push((nz, ny, nx));
                }
            }
        }
        sizes.push(n);
    }
    (lab, sizes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Axis;

    fn disc(n: usize, c: f64, r: f64) -> Array2<bool> {
        Array2::from_shape_fn((n, n), |(y, x)| ((y as f64 - c).powi(2) + (x as f64 - c).powi(2)).sqrt() <= r)
    }

    /// The plain per-sample loop `gaussian3` must reproduce to the bit.
    fn gaussian3_reference(vol: &Array3<f32>, sigma: [f64; 3]) -> Array3<f32> {
        let mut cur = vol.clone();
        for (ax, &s) in sigma.iter().enumerate() {
            if s <= 0.05 {
                continue;
            }
            let k = gaussian_taps(s);
            let r = (k.len() / 2) as isize;
            let src = cur.clone();
            Zip::from(cur.lanes_mut(Axis(ax))).and(src.lanes(Axis(ax))).for_each(|mut o, i| {
                let n = i.len() as isize;
                for x in 0..n {
                    let (mut acc, mut wsum) = (0f32, 0f32);
                    if i[x as usize] <= MISSING {
                        o[x as usize] = i[x as usize];
                        continue;
                    }
                    for (ki, kv) in k.iter().enumerate() {
                        let j = x + ki as isize - r;
                        if j >= 0 && j < n && i[j as usize] > MISSING {
                            acc += kv * i[j as usize];
                            wsum += kv;
                        }
                    }
                    o[x as usize] = acc / wsum.max(1e-6);
                }
            });
        }
        cur
    }

    #[test]
    fn gaussian_is_bitwise_the_per_sample_loop() {
        // Pseudo-random HU with runs of samples outside the scan, odd sizes, every axis alone and together.
        let mut next = crate::test_rng(12345);
        let vol = Array3::from_shape_fn((9, 13, 17), |(z, y, x)| {
            let v = next();
            if (z + 2 * y + x) % 23 == 0 || v % 17 == 0 {
                super::super::frame::OUTSIDE_HU
            } else {
                (v % 3000) as f32 - 1000.0 + (v % 7) as f32 * 0.37
            }
        });
        for sigma in [[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [1.7, 0.0, 0.6], [0.0, 0.0, 2.2], [0.9, 0.0, 0.0]] {
            let a = gaussian3(&vol, sigma);
            let b = gaussian3_reference(&vol, sigma);
            assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()), "sigma {sigma:?}");
        }
    }

    #[test]
    fn row_sweeps_give_the_general_transform_to_the_bit() {
        let mut next = crate::test_rng(7);
        for (h, w, density) in [(31, 47, 9), (5, 200, 60), (40, 3, 2), (16, 16, 1000)] {
            let m = Array2::from_shape_fn((h, w), |_| next() % density == 0);
            // Both passes by the general 1-D transform, as before the row sweeps.
            let mut d = m.mapv(|b| if b { 0.0f32 } else { INF });
            let n = h.max(w);
            let (mut buf, mut out, mut v, mut z) =
                (vec![0f32; n], vec![0f32; n], vec![0usize; n], vec![0f32; n + 1]);
            for mut lane in d.rows_mut() {
                let len = lane.len();
                buf[..len].iter_mut().zip(lane.iter()).for_each(|(b, x)| *b = *x);
                dt1d(&buf[..len], &mut out[..len], &mut v, &mut z);
                lane.iter_mut().zip(out.iter()).for_each(|(x, o)| *x = *o);
            }
            for mut lane in d.columns_mut() {
                let len = lane.len();
                buf[..len].iter_mut().zip(lane.iter()).for_each(|(b, x)| *b = *x);
                dt1d(&buf[..len], &mut out[..len], &mut v, &mut z);
                lane.iter_mut().zip(out.iter()).for_each(|(x, o)| *x = *o);
            }
            let fast = sq_distance_to(m.view());
            assert!(fast.iter().zip(&d).all(|(a, b)| a.to_bits() == b.to_bits()), "{h}x{w}");
        }
    }

    #[test]
    fn within_is_the_thresholded_transform() {
        let mut next = crate::test_rng(3);
        for (h, w, density) in [(31, 47, 9), (5, 200, 60), (40, 3, 2), (16, 16, 1000), (60, 50, 150)] {
            let m = Array2::from_shape_fn((h, w), |_| next() % density == 0);
            let d = sq_distance_to(m.view());
            let radii =
                [0.0, 0.5, 1.0, 1.2, 1.5, 2.0, 2.5, 2.9999998, 3.0, 3.6, 4.0, 7.3, 12.0, 30.0, 1e6, -2.0];
            for r in radii.into_iter().chain([f32::NAN, f32::INFINITY]) {
                let want = d.mapv(|v| v <= r * r);
                assert_eq!(within(m.view(), r), want, "{h}x{w} r {r}");
                assert_eq!(dilate(&m, r), want);
            }
        }
    }

    #[test]
    fn erode_and_close_are_the_thresholded_transforms() {
        let mut next = crate::test_rng(5);
        for (h, w, density) in [(31, 47, 2), (25, 30, 3), (12, 70, 5)] {
            let m = Array2::from_shape_fn((h, w), |_| next() % density != 0);
            for r in [0.0, 1.0, 1.5, 2.4, 3.0, 5.5, f32::NAN] {
                // The transform-based definitions these replace.
                let mut inv = Array2::from_elem((h + 2, w + 2), true);
                Zip::from(inv.slice_mut(ndarray::s![1..h + 1, 1..w + 1])).and(&m).for_each(|o, &v| *o = !v);
                let eroded =
                    sq_distance_to(inv.view()).slice(ndarray::s![1..h + 1, 1..w + 1]).mapv(|v| v > r * r);
                assert_eq!(erode(&m, r), eroded, "erode {h}x{w} r {r}");
                let p = if r.is_nan() { 1 } else { r.ceil() as usize + 1 };
                let mut big = Array2::from_elem((h + 2 * p, w + 2 * p), false);
                big.slice_mut(ndarray::s![p..p + h, p..p + w]).assign(&m);
                let dil = sq_distance_to(big.view()).mapv(|v| v <= r * r).mapv(|b| !b);
                let closed = sq_distance_to(dil.view()).mapv(|v| v > r * r);
                assert_eq!(
                    close(&m, r),
                    closed.slice(ndarray::s![p..p + h, p..p + w]).to_owned(),
                    "close r {r}"
                );
            }
        }
    }

    #[test]
    fn distance_transform_matches_brute_force() {
        let m = Array2::from_shape_fn((13, 17), |(y, x)| (y * 7 + x * 3) % 11 == 0);
        let d = sq_distance_to(m.view());
        for ((y, x), &v) in d.indexed_iter() {
            let mut best = f32::MAX;
            for ((yy, xx), &b) in m.indexed_iter() {
                if b {
                    best = best.min(((y as f32 - yy as f32).powi(2)) + (x as f32 - xx as f32).powi(2));
                }
            }
            assert!((v - best).abs() < 1e-3, "({y},{x}) {v} vs {best}");
        }
    }

    #[test]
    fn ring_hole_is_filled_and_closing_bridges_gap() {
        let ring = &disc(41, 20.0, 15.0) & &disc(41, 20.0, 10.0).mapv(|b| !b);
        let filled = fill_holes(&ring);
        assert!(filled[(20, 20)]);
        let mut broken = ring.clone();
        for y in 0..41 {
            for x in 19..22 {
                if y < 20 {
                    broken[(y, x)] = false;
                }
            }
        }
        assert!(!fill_holes(&broken)[(20, 20)]);
        assert!(fill_holes(&close(&broken, 3.0))[(20, 20)]);
        let e = erode(&disc(41, 20.0, 10.0), 3.0);
        assert!(e[(20, 20)] && !e[(20, 29)]);
    }
}
