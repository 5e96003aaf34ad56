//! From a real CT and its segmentation to the fine patient model the injection works on: the treated body,
//! canal, discs and posterior elements on a 0.5 mm grid in an LPS-aligned anatomy frame (origin at the
//! vertebra's centroid), with a tissue class per voxel.
//!
//! The fine grid's axes are the LPS axes, so "anterior" is `-y` and "superior" is `+z` whatever the storage
//! order of the real volume (LAS NIfTI, RAS NIfTI, DICOM HFS...): every lookup goes through patient
//! coordinates.
//!
//! How each region is derived:
//! - **canal**: in each axial plane, the largest hole of the vertebra mask (the vertebral foramen), united
//!   with the cord (dilated 3 mm) when a cord label exists; planes where the ring is open (between the
//!   laminae, at the discs) take the nearest plane's canal, minus bone.
//! - **body**: the vertebra mask ∩ the body label of a body mask when one is given, else the part of the
//!   vertebra anterior to the canal's front in the same plane (minus 1 mm).
//! - **discs**: the disc label of the body mask next to the body's endplates, else the non-bone gap in each
//!   body column between the endplate and the neighbouring vertebra (capped at 12 mm).
//! - **posterior elements**: the rest of the vertebra.
//! - **tissue**: body cortex = the outer 1 mm of the body or HU > 600, the rest cancellous; in the canal the
//!   cord, an epidural rim (2.5 mm from the canal's border) and CSF; elsewhere by HU.

use super::super::anatomy::Tissue;
use super::super::grid::{FineGrid, GridSpec};
use super::HybridSpec;
use crate::phantom::PhantomError;
use crate::volume::{labels, CtVolume, Lps, Volume};
use rayon::prelude::*;

/// TotalSegmentator codes of the vertebrae (S1 = 26 up to C1 = 50): any of them other than the target is a
/// neighbouring vertebra.
const VERTEBRA_CODES: std::ops::RangeInclusive<i64> = 26..=50;

/// Per-fine-voxel class from the segmentation files.
const TARGET: u8 = 1;
const OTHER_VERTEBRA: u8 = 2;
const CORD: u8 = 3;
/// From the body mask.
const BODY_LABEL: u8 = 1;
const DISC_LABEL: u8 = 2;

/// The patient model of a hybrid case and the facts the leak regions and devices need.
pub struct Derived {
    pub fine: FineGrid,
    /// LPS position of the anatomy-frame origin.
    pub origin: [f64; 3],
    /// Largest y of the body (its outer posterior surface) in each (z, x) column of the fine grid; NaN where
    /// the column holds no body.
    pub wall: Vec<f32>,
    /// Body centroid, anatomy frame.
    pub body_centre: [f64; 3],
    /// Body extent (anatomy frame): min and max of x, y, z.
    pub body_lo: [f64; 3],
    pub body_hi: [f64; 3],
    /// Canal centre (x, y) and half width at the body's mid-height.
    pub canal_centre: [f64; 2],
    pub canal_half_width: f64,
    /// Centroid of each pedicle, `[right (-x), left (+x)]`, anatomy frame.
    pub pedicles: [Option<[f64; 3]>; 2],
    pub body_voxels: usize,
}

/// Nearest-neighbour integer label at an LPS point (0 outside).
fn label_at(v: &Volume<i16>, p: Lps) -> i64 {
    v.at_lps(p).map(|&l| i64::from(l)).unwrap_or(0)
}

/// Trilinear HU at an LPS point; `None` outside the volume.
pub fn trilinear(ct: &CtVolume, p: Lps) -> Option<f32> {
    let f = ct.geometry.lps_to_index(p);
    let shape = ct.shape();
    let mut i0 = [0usize; 3];
    let mut w = [0f32; 3];
    for k in 0..3 {
        let n = shape[k];
        if !(f[k] > -0.5 && f[k] < n as f64 - 0.5) {
            return None;
        }
        let c = f[k].clamp(0.0, (n - 1) as f64);
        let fl = c.floor().min(n.saturating_sub(2) as f64);
        i0[k] = fl as usize;
        w[k] = (c - fl) as f32;
    }
    let mut acc = 0.0;
    for d0 in 0..2 {
        for d1 in 0..2 {
            for d2 in 0..2 {
                let idx = [
                    (i0[0] + d0).min(shape[0] - 1),
                    (i0[1] + d1).min(shape[1] - 1),
                    (i0[2] + d2).min(shape[2] - 1),
                ];
                let wt = (if d0 == 1 { w[0] } else { 1.0 - w[0] })
                    * (if d1 == 1 { w[1] } else { 1.0 - w[1] })
                    * (if d2 == 1 { w[2] } else { 1.0 - w[2] });
                if wt != 0.0 {
                    acc += wt * f32::from(ct.data[idx]);
                }
            }
        }
    }
    Some(acc)
}

struct Bounds {
    lo: [f64; 3],
    hi: [f64; 3],
    centre: [f64; 3],
    count: usize,
}

fn target_bounds(vert: &Volume<i16>, label: i64) -> Bounds {
    let mut lo = [f64::MAX; 3];
    let mut hi = [f64::MIN; 3];
    let mut sum = [0.0; 3];
    let mut count = 0usize;
    for (i, &v) in vert.data.indexed_iter() {
        if i64::from(v) != label {
            continue;
        }
        let p = vert.geometry.voxel_to_lps([i.0, i.1, i.2]);
        for k in 0..3 {
            lo[k] = lo[k].min(p.0[k]);
            hi[k] = hi[k].max(p.0[k]);
            sum[k] += p.0[k];
        }
        count += 1;
    }
    let n = count.max(1) as f64;
    Bounds { lo, hi, centre: sum.map(|s| s / n), count }
}

/// Derives the fine model of the target vertebra. `body` is the optional body/disc mask volume.
pub fn derive(
    ct: &CtVolume,
    vert: &Volume<i16>,
    body: Option<&Volume<i16>>,
    spec: &HybridSpec,
) -> Result<Derived, PhantomError> {
    let target = spec.vertebra_label as i64;
    let b = target_bounds(vert, target);
    if b.count == 0 {
        return Err(PhantomError::Hybrid(format!("label {target} does not occur in the vertebra mask")));
    }
    let origin = b.centre.map(|v| (v * 100.0).round() / 100.0);
    if trilinear(ct, Lps(origin)).is_none() {
        return Err(PhantomError::Hybrid(format!(
            "vertebra {target} (centroid {origin:?} mm LPS) lies outside the CT; do mask and CT share a frame?"
        )));
    }
    let h = spec.model_mm;
    let rel = |k: usize, v: f64| v - origin[k];
    let x_half = (rel(0, b.lo[0]).abs()).max(rel(0, b.hi[0]).abs()) + 30.0;
    let spec_grid = GridSpec::covering(
        x_half,
        [rel(1, b.lo[1]) - 25.0, rel(1, b.hi[1]) + 8.0],
        [rel(2, b.lo[2]) - 16.0, rel(2, b.hi[2]) + 16.0],
        h,
    );
    let dims = spec_grid.dims;
    let plane = dims[1] * dims[2];
    let cord_label = spec.cord_label.map(|c| c as i64);
    let body_label = spec.body_label as i64;
    let disc_label = spec.disc_label as i64;
    // Sample the CT and the masks at every fine voxel.
    let planes: Vec<(Vec<f32>, Vec<u8>, Vec<u8>)> = (0..dims[0])
        .into_par_iter()
        .map(|z| {
            let mut hu = Vec::with_capacity(plane);
            let mut cls = Vec::with_capacity(plane);
            let mut bl = Vec::with_capacity(plane);
            for y in 0..dims[1] {
                for x in 0..dims[2] {
                    let a = spec_grid.point_zyx(z, y, x);
                    let p = Lps([a[0] + origin[0], a[1] + origin[1], a[2] + origin[2]]);
                    hu.push(trilinear(ct, p).unwrap_or(-1024.0));
                    let v = label_at(vert, p);
                    cls.push(if v == target {
                        TARGET
                    } else if cord_label == Some(v) && v != 0 {
                        CORD
                    } else if VERTEBRA_CODES.contains(&v) {
                        OTHER_VERTEBRA
                    } else {
                        0
                    });
                    bl.push(match body.map(|bv| label_at(bv, p)) {
                        Some(l) if l == body_label => BODY_LABEL,
                        Some(l) if l == disc_label => DISC_LABEL,
                        _ => 0,
                    });
                }
            }
            (hu, cls, bl)
        })
        .collect();
    let mut hu = Vec::with_capacity(spec_grid.len());
    let mut cls = Vec::with_capacity(spec_grid.len());
    let mut bl = Vec::with_capacity(spec_grid.len());
    for (a, c, d) in planes {
        hu.extend(a);
        cls.extend(c);
        bl.extend(d);
    }
    let inside_ct = |i: usize| {
        let a = spec_grid.point(i);
        ct.at_lps(Lps([a[0] + origin[0], a[1] + origin[1], a[2] + origin[2]])).is_some()
    };

    let canal = canal_mask(&spec_grid, &cls, &hu, h);
    if !canal.iter().any(|&c| c) {
        return Err(PhantomError::Hybrid(format!(
            "no spinal canal found around vertebra {target}: the mask has no vertebral foramen and no cord"
        )));
    }
    // Body.
    let mut is_body = vec![false; spec_grid.len()];
    if body.is_some() {
        for i in 0..spec_grid.len() {
            is_body[i] = cls[i] == TARGET && bl[i] == BODY_LABEL;
        }
    } else {
        let fronts = canal_fronts(&spec_grid, &canal);
        for (i, b) in is_body.iter_mut().enumerate() {
            if cls[i] != TARGET {
                continue;
            }
            let [z, y, x] = spec_grid.zyx(i);
            if let Some(f) = fronts[z * dims[2] + x] {
                *b = spec_grid.point_zyx(z, y, 0)[1] < f - 1.0;
            }
        }
    }
    let body_voxels = is_body.iter().filter(|&&b| b).count();
    let vox_ml = h.powi(3) / 1000.0;
    if (body_voxels as f64) * vox_ml < 3.0 {
        return Err(PhantomError::Hybrid(format!(
            "vertebral body of label {target} too small ({:.2} mL); check --body-mask / --body-label",
            body_voxels as f64 * vox_ml
        )));
    }
    // Per-column endplates of the body.
    let col = |y: usize, x: usize| y * dims[2] + x;
    let mut top = vec![usize::MAX; plane];
    let mut bot = vec![usize::MAX; plane];
    for (i, _) in is_body.iter().enumerate().filter(|(_, &b)| b) {
        let [z, y, x] = spec_grid.zyx(i);
        let c = col(y, x);
        if top[c] == usize::MAX || z > top[c] {
            top[c] = z;
        }
        if bot[c] == usize::MAX || z < bot[c] {
            bot[c] = z;
        }
    }
    let disc = disc_mask(&spec_grid, &cls, &bl, &hu, &top, &bot, &canal, body.is_some(), h, &inside_ct);

    // Labels: body > posterior elements > canal > disc.
    let mut label = vec![labels::BACKGROUND; spec_grid.len()];
    for i in 0..spec_grid.len() {
        label[i] = if is_body[i] {
            labels::VERTEBRAL_BODY
        } else if cls[i] == TARGET {
            labels::POSTERIOR_ELEMENTS
        } else if canal[i] {
            labels::CANAL
        } else if disc[i] {
            labels::DISC
        } else {
            labels::BACKGROUND
        };
    }
    let tissue = tissues(&spec_grid, &label, &cls, &hu, h);

    // Geometry facts.
    let mut wall = vec![f32::NAN; dims[0] * dims[2]];
    let mut sum = [0.0; 3];
    let mut lo = [f64::MAX; 3];
    let mut hi = [f64::MIN; 3];
    for (i, _) in is_body.iter().enumerate().filter(|(_, &b)| b) {
        let p = spec_grid.point(i);
        let [z, _, x] = spec_grid.zyx(i);
        let w = &mut wall[z * dims[2] + x];
        if w.is_nan() || p[1] as f32 > *w {
            *w = p[1] as f32;
        }
        for k in 0..3 {
            sum[k] += p[k];
            lo[k] = lo[k].min(p[k]);
            hi[k] = hi[k].max(p[k]);
        }
    }
    let n = body_voxels as f64;
    let body_centre = sum.map(|s| s / n);
    // Outer surface: half a voxel beyond the last body voxel centre.
    for w in wall.iter_mut().filter(|w| !w.is_nan()) {
        *w += (h / 2.0) as f32;
    }
    let (canal_centre, canal_half_width) = canal_section(&spec_grid, &canal, body_centre[2]);
    let pedicles = pedicle_centres(&spec_grid, &label, canal_centre, canal_half_width, lo[2], hi[2]);
    Ok(Derived {
        fine: FineGrid { spec: spec_grid, hu, tissue, label },
        origin,
        wall,
        body_centre,
        body_lo: lo,
        body_hi: hi,
        canal_centre,
        canal_half_width,
        pedicles,
        body_voxels,
    })
}

/// 2-D flood fill from the border of a plane over pixels where `open` holds; returns the reached pixels.
fn flood_from_border(ny: usize, nx: usize, open: &dyn Fn(usize) -> bool) -> Vec<bool> {
    let mut seen = vec![false; ny * nx];
    let mut stack = Vec::new();
    for y in 0..ny {
        for x in 0..nx {
            if (y == 0 || x == 0 || y == ny - 1 || x == nx - 1) && open(y * nx + x) {
                seen[y * nx + x] = true;
                stack.push(y * nx + x);
            }
        }
    }
    while let Some(i) = stack.pop() {
        let (y, x) = (i / nx, i % nx);
        let mut push = |j: usize| {
            if !seen[j] && open(j) {
                seen[j] = true;
                stack.push(j);
            }
        };
        if y > 0 {
            push(i - nx);
        }
        if y + 1 < ny {
            push(i + nx);
        }
        if x > 0 {
            push(i - 1);
        }
        if x + 1 < nx {
            push(i + 1);
        }
    }
    seen
}

/// Connected components (4-connectivity) of `mask` in a plane, each as a list of pixel indices.
fn components(ny: usize, nx: usize, mask: &[bool]) -> Vec<Vec<usize>> {
    let mut seen = vec![false; ny * nx];
    let mut out = Vec::new();
    for s in 0..ny * nx {
        if !mask[s] || seen[s] {
            continue;
        }
        let mut comp = Vec::new();
        let mut stack = vec![s];
        seen[s] = true;
        while let Some(i) = stack.pop() {
            comp.push(i);
            let (y, x) = (i / nx, i % nx);
            let mut nb = Vec::with_capacity(4);
            if y > 0 {
                nb.push(i - nx);
            }
            if y + 1 < ny {
                nb.push(i + nx);
            }
            if x > 0 {
                nb.push(i - 1);
            }
            if x + 1 < nx {
                nb.push(i + 1);
            }
            for j in nb {
                if mask[j] && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        out.push(comp);
    }
    out
}

/// Square in-plane dilation of a plane mask by `r` pixels.
fn dilate2d(ny: usize, nx: usize, mask: &[bool], r: usize) -> Vec<bool> {
    let mut rows = vec![false; ny * nx];
    for y in 0..ny {
        for x in 0..nx {
            if mask[y * nx + x] {
                for xx in x.saturating_sub(r)..(x + r + 1).min(nx) {
                    rows[y * nx + xx] = true;
                }
            }
        }
    }
    let mut out = vec![false; ny * nx];
    for y in 0..ny {
        for x in 0..nx {
            if rows[y * nx + x] {
                for yy in y.saturating_sub(r)..(y + r + 1).min(ny) {
                    out[yy * nx + x] = true;
                }
            }
        }
    }
    out
}

/// In-plane closing (dilation then erosion) by a square of half side `r` pixels.
fn close2d(ny: usize, nx: usize, mask: &[bool], r: usize) -> Vec<bool> {
    if r == 0 {
        return mask.to_vec();
    }
    let d = dilate2d(ny, nx, mask, r);
    let inv: Vec<bool> = d.iter().map(|&v| !v).collect();
    dilate2d(ny, nx, &inv, r).into_iter().map(|v| !v).collect()
}

fn canal_mask(g: &GridSpec, cls: &[u8], hu: &[f32], h: f64) -> Vec<bool> {
    let [nz, ny, nx] = g.dims;
    let plane = ny * nx;
    let min_px = (15.0 / (h * h)).ceil() as usize;
    let cord_r = (3.0 / h).round() as usize;
    let mut per_plane: Vec<Option<Vec<bool>>> = (0..nz)
        .into_par_iter()
        .map(|z| {
            let c = &cls[z * plane..(z + 1) * plane];
            if !c.contains(&TARGET) && !c.contains(&CORD) {
                return None;
            }
            let vert: Vec<bool> = c.iter().map(|&v| v == TARGET).collect();
            let mut best: Option<Vec<usize>> = None;
            // The ring around the foramen is often open in a coarse mask (laminae, pedicle gaps): close it with
            // growing radii until the foramen shows as a hole.
            for r_mm in [0.0, 2.0, 4.0, 6.0] {
                let closed = close2d(ny, nx, &vert, (r_mm / h).round() as usize);
                let outside = flood_from_border(ny, nx, &|i| !closed[i]);
                let holes: Vec<bool> = (0..plane).map(|i| !closed[i] && !outside[i]).collect();
                for comp in components(ny, nx, &holes) {
                    // The foramen lies near the vertebra's mid-sagittal plane.
                    let mx =
                        comp.iter().map(|&i| g.point_zyx(z, 0, i % nx)[0]).sum::<f64>() / comp.len() as f64;
                    if comp.len() >= min_px
                        && mx.abs() < 20.0
                        && best.as_ref().is_none_or(|b| comp.len() > b.len())
                    {
                        best = Some(comp);
                    }
                }
                if best.is_some() {
                    break;
                }
            }
            let mut m = vec![false; plane];
            if let Some(b) = best {
                for i in b {
                    m[i] = true;
                }
            }
            let cord: Vec<bool> = c.iter().map(|&v| v == CORD).collect();
            if cord.iter().any(|&v| v) {
                for (i, v) in dilate2d(ny, nx, &cord, cord_r).into_iter().enumerate() {
                    if v && c[i] != TARGET && c[i] != OTHER_VERTEBRA {
                        m[i] = true;
                    }
                }
            }
            m.iter().any(|&v| v).then_some(m)
        })
        .collect();
    // Target's z extent: planes holding the vertebra.
    let zs: Vec<usize> = (0..nz).filter(|&z| cls[z * plane..(z + 1) * plane].contains(&TARGET)).collect();
    let (Some(&z0), Some(&z1)) = (zs.first(), zs.last()) else {
        return vec![false; g.len()];
    };
    let ext = (10.0 / h).round() as usize;
    let lo = z0.saturating_sub(ext);
    let hi = (z1 + ext).min(nz - 1);
    let have: Vec<usize> = (0..nz).filter(|&z| per_plane[z].is_some()).collect();
    let filled: Vec<Option<Vec<bool>>> = (0..nz)
        .map(|z| {
            if per_plane[z].is_some() || z < lo || z > hi {
                return None;
            }
            let near = have.iter().copied().min_by_key(|&s| s.abs_diff(z))?;
            let src = per_plane[near].as_ref()?;
            Some(
                (0..plane)
                    .map(|i| {
                        let c = cls[z * plane + i];
                        src[i] && c != TARGET && c != OTHER_VERTEBRA && hu[z * plane + i] < 350.0
                    })
                    .collect(),
            )
        })
        .collect();
    for (z, f) in filled.into_iter().enumerate() {
        if f.is_some() {
            per_plane[z] = f;
        }
    }
    let mut out = vec![false; g.len()];
    let reach = (8.0 / h).round() as usize;
    for (z, m) in per_plane.into_iter().enumerate() {
        if z < lo || z > hi {
            continue;
        }
        let Some(mut m) = m else { continue };
        // A canal found from the cord (or a closed ring) may stop short of the vertebra in front: the
        // epidural space and CSF anterior to the cord. Extend each column forward (-y) over soft tissue when
        // it meets the vertebra within 8 mm.
        let c = &cls[z * plane..(z + 1) * plane];
        let v = &hu[z * plane..(z + 1) * plane];
        for x in 0..nx {
            let Some(front) = (0..ny).find(|&y| m[y * nx + x]) else { continue };
            let mut gap = Vec::new();
            for y in (front.saturating_sub(reach)..front).rev() {
                let i = y * nx + x;
                if c[i] == TARGET {
                    for j in gap.drain(..) {
                        m[j] = true;
                    }
                    break;
                }
                if c[i] == OTHER_VERTEBRA || v[i] >= 350.0 {
                    break;
                }
                gap.push(i);
            }
        }
        out[z * plane..(z + 1) * plane].copy_from_slice(&m);
    }
    out
}

/// Front (smallest y, anatomy frame) of the canal in each (z, x) column: columns lateral to the canal take
/// the nearest canal column of their plane, planes without canal the nearest plane's fronts.
fn canal_fronts(g: &GridSpec, canal: &[bool]) -> Vec<Option<f64>> {
    let [nz, ny, nx] = g.dims;
    let plane = ny * nx;
    let own: Vec<Option<Vec<f64>>> = (0..nz)
        .map(|z| {
            let cols: Vec<Option<f64>> = (0..nx)
                .map(|x| (0..ny).find(|&y| canal[z * plane + y * nx + x]).map(|y| g.point_zyx(z, y, x)[1]))
                .collect();
            let have: Vec<usize> = (0..nx).filter(|&x| cols[x].is_some()).collect();
            if have.is_empty() {
                return None;
            }
            Some(
                (0..nx)
                    .map(|x| {
                        cols[x]
                            .or_else(|| {
                                have.iter().copied().min_by_key(|&c| c.abs_diff(x)).and_then(|c| cols[c])
                            })
                            .unwrap_or(f64::MIN)
                    })
                    .collect(),
            )
        })
        .collect();
    let have: Vec<usize> = (0..nz).filter(|&z| own[z].is_some()).collect();
    let mut out = vec![None; nz * nx];
    for z in 0..nz {
        let src = own[z]
            .as_ref()
            .or_else(|| have.iter().copied().min_by_key(|&s| s.abs_diff(z)).and_then(|s| own[s].as_ref()));
        if let Some(f) = src {
            for x in 0..nx {
                out[z * nx + x] = Some(f[x]);
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn disc_mask(
    g: &GridSpec,
    cls: &[u8],
    bl: &[u8],
    hu: &[f32],
    top: &[usize],
    bot: &[usize],
    canal: &[bool],
    labelled: bool,
    h: f64,
    inside_ct: &dyn Fn(usize) -> bool,
) -> Vec<bool> {
    let [nz, ny, nx] = g.dims;
    let plane = ny * nx;
    let reach = (15.0 / h).round() as usize;
    let cap = (12.0 / h).round() as usize;
    let mut out = vec![false; g.len()];
    let free = |i: usize| cls[i] != TARGET && cls[i] != OTHER_VERTEBRA && !canal[i];
    for c in 0..plane {
        if top[c] == usize::MAX {
            continue;
        }
        if labelled {
            for z in (top[c] + 1)..(top[c] + reach).min(nz) {
                let i = z * plane + c;
                if bl[i] == DISC_LABEL && free(i) {
                    out[i] = true;
                }
            }
            for z in bot[c].saturating_sub(reach)..bot[c] {
                let i = z * plane + c;
                if bl[i] == DISC_LABEL && free(i) {
                    out[i] = true;
                }
            }
            continue;
        }
        // Derived: the soft gap up to the neighbouring vertebra's endplate (not found: the scan ends, or the
        // neighbour is missing; no disc is claimed there).
        let up = ((top[c] + 1)..(top[c] + 1 + reach).min(nz)).find(|&z| cls[z * plane + c] == OTHER_VERTEBRA);
        if let Some(zn) = up {
            for z in (top[c] + 1)..zn.min(top[c] + 1 + cap) {
                let i = z * plane + c;
                if free(i) && hu[i] < 350.0 && inside_ct(i) {
                    out[i] = true;
                }
            }
        }
        let down =
            (bot[c].saturating_sub(reach)..bot[c]).rev().find(|&z| cls[z * plane + c] == OTHER_VERTEBRA);
        if let Some(zn) = down {
            for z in (zn + 1).max(bot[c].saturating_sub(cap))..bot[c] {
                let i = z * plane + c;
                if free(i) && hu[i] < 350.0 && inside_ct(i) {
                    out[i] = true;
                }
            }
        }
    }
    out
}

/// Whether any voxel within `r` steps along the six axis directions of `i` fails `inside`.
fn near_border(
    g: &GridSpec,
    i: usize,
    r: usize,
    inside: &dyn Fn(usize) -> bool,
    in_plane_only: bool,
) -> bool {
    let [z, y, x] = g.zyx(i);
    let d = g.dims;
    for k in 1..=r {
        let mut cand =
            vec![(z, y.wrapping_sub(k), x), (z, y + k, x), (z, y, x.wrapping_sub(k)), (z, y, x + k)];
        if !in_plane_only {
            cand.push((z.wrapping_sub(k), y, x));
            cand.push((z + k, y, x));
        }
        for (zz, yy, xx) in cand {
            if zz >= d[0] || yy >= d[1] || xx >= d[2] || !inside(g.index(zz, yy, xx)) {
                return true;
            }
        }
    }
    false
}

fn tissues(g: &GridSpec, label: &[u8], cls: &[u8], hu: &[f32], h: f64) -> Vec<Tissue> {
    let rc = (1.0 / h).round().max(1.0) as usize;
    let re = (2.5 / h).round().max(1.0) as usize;
    (0..g.len())
        .into_par_iter()
        .map(|i| match label[i] {
            labels::VERTEBRAL_BODY => {
                if hu[i] > 600.0 || near_border(g, i, rc, &|j| label[j] == labels::VERTEBRAL_BODY, false) {
                    Tissue::Cortical
                } else {
                    Tissue::Cancellous
                }
            }
            labels::POSTERIOR_ELEMENTS => Tissue::Cortical,
            labels::CANAL => {
                if cls[i] == CORD {
                    Tissue::Cord
                } else if near_border(g, i, re, &|j| label[j] == labels::CANAL, true) {
                    Tissue::EpiduralFat
                } else {
                    Tissue::Csf
                }
            }
            labels::DISC => Tissue::Disc,
            _ => match hu[i] {
                v if v < -500.0 => Tissue::Air,
                v if v < -40.0 => Tissue::Fat,
                v if v < 180.0 => Tissue::Muscle,
                _ => Tissue::Cortical,
            },
        })
        .collect()
}

/// Canal centre (x, y) and half width in the plane nearest `z` that holds canal.
fn canal_section(g: &GridSpec, canal: &[bool], z: f64) -> ([f64; 2], f64) {
    let [nz, ny, nx] = g.dims;
    let plane = ny * nx;
    let zc = (((z - g.origin[2]) / g.h).round().max(0.0) as usize).min(nz - 1);
    let best = (0..nz)
        .filter(|&s| canal[s * plane..(s + 1) * plane].iter().any(|&c| c))
        .min_by_key(|&s| s.abs_diff(zc));
    let Some(s) = best else { return ([0.0, 0.0], 6.0) };
    let pts: Vec<[f64; 3]> =
        (0..plane).filter(|&i| canal[s * plane + i]).map(|i| g.point_zyx(s, i / nx, i % nx)).collect();
    let n = pts.len() as f64;
    let cx = pts.iter().map(|p| p[0]).sum::<f64>() / n;
    let cy = pts.iter().map(|p| p[1]).sum::<f64>() / n;
    let hw = pts.iter().map(|p| (p[0] - cx).abs()).fold(0.0, f64::max);
    ([cx, cy], hw.max(4.0))
}

/// Centroid of the posterior-element voxels lateral to the canal, between the canal's front and centre,
/// within the body's height, on each side.
fn pedicle_centres(
    g: &GridSpec,
    label: &[u8],
    canal_centre: [f64; 2],
    canal_hw: f64,
    z_lo: f64,
    z_hi: f64,
) -> [Option<[f64; 3]>; 2] {
    let mut out = [None, None];
    for (k, side) in [-1.0, 1.0].into_iter().enumerate() {
        let mut s = [0.0; 3];
        let mut n = 0usize;
        for (i, _) in label.iter().enumerate().filter(|(_, &l)| l == labels::POSTERIOR_ELEMENTS) {
            let p = g.point(i);
            let lat = side * (p[0] - canal_centre[0]);
            if lat > canal_hw * 0.6
                && lat < canal_hw + 14.0
                && p[1] > canal_centre[1] - canal_hw * 1.5
                && p[1] < canal_centre[1] + 2.0
                && p[2] >= z_lo
                && p[2] <= z_hi
            {
                for (a, v) in s.iter_mut().zip(p) {
                    *a += v;
                }
                n += 1;
            }
        }
        if n > 20 {
            out[k] = Some(s.map(|v| v / n as f64));
        }
    }
    out
}
