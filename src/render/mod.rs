//! Pictures for people: slices through the patient in the radiological display convention, whatever the
//! patient position or storage order, with CT windows, label outlines and captions.
//!
//! Every view is defined in patient space (LPS mm) and resampled from the volume by position, so a prone
//! and a supine scan of the same anatomy give the same picture:
//!
//! ```text
//!   axial (seen from the feet)   sagittal (seen from the left)   coronal (seen from the front)
//!          anterior                       superior                        superior
//!   right  +--------+ left       anterior +--------+ posterior     right +--------+ left
//!          +--------+                     +--------+                     +--------+
//!          posterior                      inferior                        inferior
//! ```

pub mod text;

use crate::volume::{CtVolume, Geometry, Lps, Vec3, Volume};
use image::{Rgb, RgbImage};
use ndarray::Array2;

/// A slice orientation in patient space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plane {
    Axial,
    Sagittal,
    Coronal,
}

impl Plane {
    /// LPS directions of the image's +column (viewer's right) and +row (viewer's down).
    fn image_axes(self) -> (Vec3, Vec3) {
        match self {
            Plane::Axial => (Vec3([1.0, 0.0, 0.0]), Vec3([0.0, 1.0, 0.0])),
            Plane::Sagittal => (Vec3([0.0, 1.0, 0.0]), Vec3([0.0, 0.0, -1.0])),
            Plane::Coronal => (Vec3([1.0, 0.0, 0.0]), Vec3([0.0, 0.0, -1.0])),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Plane::Axial => "axial",
            Plane::Sagittal => "sagittal",
            Plane::Coronal => "coronal",
        }
    }
}

/// A rectangle of patient space to draw: centred on `center`, `size_mm` wide and high, `pixel_mm` per pixel.
#[derive(Clone, Copy, Debug)]
pub struct View {
    pub plane: Plane,
    pub center: Lps,
    pub size_mm: [f64; 2],
    pub pixel_mm: f64,
}

impl View {
    /// Image size in pixels, `[width, height]`.
    pub fn pixels(&self) -> [usize; 2] {
        self.size_mm.map(|s| ((s / self.pixel_mm).round() as usize).clamp(1, 4096))
    }

    /// LPS position of the centre of image pixel `(column, row)`.
    pub fn pixel_to_lps(&self, column: usize, row: usize) -> Lps {
        let (u, v) = self.plane.image_axes();
        let [w, h] = self.pixels();
        let du = (column as f64 + 0.5 - w as f64 / 2.0) * self.pixel_mm;
        let dv = (row as f64 + 0.5 - h as f64 / 2.0) * self.pixel_mm;
        self.center + u * du + v * dv
    }

    /// Image pixel `(column, row)` nearest to an LPS point (projected onto the plane), if inside the image.
    pub fn lps_to_pixel(&self, p: Lps) -> Option<(usize, usize)> {
        let (u, v) = self.plane.image_axes();
        let [w, h] = self.pixels();
        let d = p - self.center;
        let c = (d.dot(u) / self.pixel_mm + w as f64 / 2.0).floor();
        let r = (d.dot(v) / self.pixel_mm + h as f64 / 2.0).floor();
        (c >= 0.0 && r >= 0.0 && c < w as f64 && r < h as f64).then_some((c as usize, r as usize))
    }
}

/// The voxel nearest to each pixel of a view, found once per view and grid: every volume on that grid (CT,
/// labels) is then read at the same places without solving the geometry again per pixel and per volume.
#[derive(Clone, Debug)]
pub struct ViewSampling {
    width: usize,
    height: usize,
    /// Row-major over the image; `None` where the view leaves the volume.
    voxels: Vec<Option<[usize; 3]>>,
}

impl ViewSampling {
    /// The nearest voxel of a grid (`geometry`, `shape`) to each pixel centre of `view`.
    pub fn new(geometry: &Geometry, shape: [usize; 3], view: &View) -> ViewSampling {
        let [w, h] = view.pixels();
        // Continuous index is affine in the pixel position: the first pixel's index plus whole steps
        // (each a product, not a running sum, so no error accumulates across the image).
        let base = geometry.lps_to_index(view.pixel_to_lps(0, 0));
        let (u, v) = view.plane.image_axes();
        let step = |dir: Vec3| geometry.lps_to_index(geometry.origin + dir * view.pixel_mm);
        let (dc, dr) = (step(u), step(v));
        let mut voxels = Vec::with_capacity(w * h);
        for r in 0..h {
            for c in 0..w {
                let (cf, rf) = (c as f64, r as f64);
                let mut out = Some([0usize; 3]);
                for a in 0..3 {
                    let x = (base[a] + cf * dc[a] + rf * dr[a]).round();
                    // NaN (degenerate geometry) fails this test too.
                    if !(x >= 0.0 && x < shape[a] as f64) {
                        out = None;
                        break;
                    }
                    if let Some(o) = out.as_mut() {
                        o[a] = x as usize;
                    }
                }
                voxels.push(out);
            }
        }
        ViewSampling { width: w, height: h, voxels }
    }

    /// `vol` at every pixel (`outside` where the view leaves it); `vol` must be on the sampled grid.
    pub fn sample<T: Copy>(&self, vol: &Volume<T>, outside: T) -> Array2<T> {
        let data: Vec<T> =
            self.voxels.iter().map(|v| v.and_then(|i| vol.data.get(i).copied()).unwrap_or(outside)).collect();
        Array2::from_shape_vec((self.height, self.width), data)
            .unwrap_or_else(|_| Array2::from_elem((self.height, self.width), outside))
    }
}

/// Nearest-neighbour resampling of `vol` onto the view; `outside` where the view leaves the volume.
pub fn resample<T: Copy + Send + Sync>(vol: &Volume<T>, view: &View, outside: T) -> Array2<T> {
    ViewSampling::new(&vol.geometry, vol.shape(), view).sample(vol, outside)
}

/// A CT display window in HU.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub center: f32,
    pub width: f32,
}

impl Window {
    /// The bone window written into our DICOM series too.
    pub const BONE: Window = Window { center: 400.0, width: 1800.0 };
    pub const SOFT_TISSUE: Window = Window { center: 40.0, width: 400.0 };

    pub fn gray(self, hu: f32) -> u8 {
        let t = (hu - (self.center - self.width / 2.0)) / self.width;
        (t.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// Display colour of a label code (spec label map).
pub fn label_colour(code: u8) -> Rgb<u8> {
    use crate::volume::labels::*;
    match code {
        VERTEBRAL_BODY => Rgb([80, 200, 255]),
        CANAL => Rgb([255, 230, 60]),
        DISC => Rgb([120, 255, 120]),
        POSTERIOR_ELEMENTS => Rgb([180, 130, 255]),
        CEMENT => Rgb([255, 255, 255]),
        LEAK_CANAL => Rgb([255, 40, 40]),
        LEAK_POSTERIOR_VEIN => Rgb([255, 60, 200]),
        LEAK_DISC => Rgb([255, 150, 30]),
        LEAK_PARASPINAL => Rgb([255, 110, 110]),
        NEEDLE => Rgb([140, 140, 140]),
        _ => Rgb([0, 255, 255]),
    }
}

/// Grey CT picture of a view.
pub fn ct_image(ct: &CtVolume, view: &View, window: Window) -> RgbImage {
    grey_image(&resample(ct, view, -1024), window)
}

/// Grey picture of HU values already sampled onto a view (`[row, column]`).
pub fn grey_image<T: Copy + Into<f32>>(hu: &Array2<T>, window: Window) -> RgbImage {
    let (h, w) = hu.dim();
    let mut raw = Vec::with_capacity(w * h * 3);
    for v in hu.iter() {
        let g = window.gray((*v).into());
        raw.extend_from_slice(&[g, g, g]);
    }
    RgbImage::from_raw(w as u32, h as u32, raw).unwrap_or_else(|| RgbImage::new(w as u32, h as u32))
}

/// Draw the outline of each non-zero label of `labels` (resampled onto `view`) in its colour.
pub fn outline_labels(img: &mut RgbImage, labels: &Volume<u8>, view: &View, only: Option<&[u8]>) {
    outline_sampled_labels(img, &resample(labels, view, 0), only);
}

/// As [`outline_labels`], for labels already sampled onto the view (`[row, column]`).
pub fn outline_sampled_labels(img: &mut RgbImage, lab: &Array2<u8>, only: Option<&[u8]>) {
    let (h, w) = lab.dim();
    for r in 0..h {
        for c in 0..w {
            let v = lab[(r, c)];
            if v == 0 || only.is_some_and(|o| !o.contains(&v)) {
                continue;
            }
            let edge = [(0i64, 1i64), (0, -1), (1, 0), (-1, 0)].iter().any(|(dr, dc)| {
                let (rr, cc) = (r as i64 + dr, c as i64 + dc);
                rr < 0 || cc < 0 || rr >= h as i64 || cc >= w as i64 || lab[(rr as usize, cc as usize)] != v
            });
            if edge && (c as u32) < img.width() && (r as u32) < img.height() {
                img.put_pixel(c as u32, r as u32, label_colour(v));
            }
        }
    }
}

/// CT in `window` with every label of `labels` outlined in its colour: the picture most outputs want.
pub fn overlay(ct: &CtVolume, labels: &Volume<u8>, view: &View, window: Window) -> RgbImage {
    let mut img = ct_image(ct, view, window);
    outline_labels(&mut img, labels, view, None);
    img
}

/// Scale an image up by an integer factor (nearest), so thin outlines stay crisp.
pub fn upscale(img: &RgbImage, factor: u32) -> RgbImage {
    let f = factor.max(1) as usize;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    let mut raw = Vec::with_capacity(w * h * 3 * f * f);
    for row in src.chunks_exact(w * 3).take(h) {
        let start = raw.len();
        for px in row.chunks_exact(3) {
            for _ in 0..f {
                raw.extend_from_slice(px);
            }
        }
        // The other f - 1 copies of the scaled row.
        for _ in 1..f {
            raw.extend_from_within(start..start + w * f * 3);
        }
    }
    let (wf, hf) = ((w * f) as u32, (h * f) as u32);
    RgbImage::from_raw(wf, hf, raw).unwrap_or_else(|| RgbImage::new(wf, hf))
}

/// Place images side by side on a black background, top-aligned.
pub fn hstack(images: &[RgbImage], gap: u32) -> RgbImage {
    let w = images.iter().map(|i| i.width()).sum::<u32>() + gap * images.len().saturating_sub(1) as u32;
    let h = images.iter().map(|i| i.height()).max().unwrap_or(1);
    let mut out = RgbImage::new(w.max(1), h);
    let mut x = 0;
    for img in images {
        image::imageops::replace(&mut out, img, x as i64, 0);
        x += img.width() + gap;
    }
    out
}

/// Place images one above the other, left-aligned.
pub fn vstack(images: &[RgbImage], gap: u32) -> RgbImage {
    let h = images.iter().map(|i| i.height()).sum::<u32>() + gap * images.len().saturating_sub(1) as u32;
    let w = images.iter().map(|i| i.width()).max().unwrap_or(1);
    let mut out = RgbImage::new(w, h.max(1));
    let mut y = 0;
    for img in images {
        image::imageops::replace(&mut out, img, 0, y as i64);
        y += img.height() + gap;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Geometry, PatientPosition, Spacing};
    use ndarray::Array3;

    /// A marker voxel left-posterior of the centre shows up in the same image pixel whatever the position.
    #[test]
    fn views_are_in_patient_orientation_for_every_position() {
        let spacing = Spacing { slice: 1.0, row: 1.0, column: 1.0 };
        let target = Lps([5.0, 8.0, 0.0]); // left and posterior of the origin
        let mut pixels = Vec::new();
        for pos in PatientPosition::ALL {
            let axes = pos.axial_axes();
            // Put the grid's centre voxel (10,10,10) at the LPS origin.
            let origin = Lps([0.0; 3]) + (axes[0] * -10.0 + axes[1] * -10.0 + axes[2] * -10.0);
            let vol = Volume::new(Array3::from_elem((21, 21, 21), 0u8), Geometry { origin, spacing, axes });
            let mut vol = vol;
            if let Some(v) = vol.geometry.lps_to_voxel(target, vol.shape()) {
                vol.data[v] = 1;
            }
            let view =
                View { plane: Plane::Axial, center: Lps([0.0; 3]), size_mm: [21.0, 21.0], pixel_mm: 1.0 };
            let img = resample(&vol, &view, 0);
            let found: Vec<(usize, usize)> =
                img.indexed_iter().filter(|(_, v)| **v == 1).map(|((r, c), _)| (c, r)).collect();
            pixels.push(found);
        }
        // Viewer's right = patient's left, viewer's down = posterior.
        assert_eq!(pixels[0], vec![(15, 18)]);
        assert!(pixels.iter().all(|p| *p == pixels[0]), "{pixels:?}");
    }

    /// The stepped sampling picks the same voxels as solving the geometry at every pixel, on a tilted,
    /// anisotropic grid seen in every plane.
    #[test]
    fn view_sampling_matches_per_pixel_geometry() {
        let axes = PatientPosition::Hfs.axial_axes();
        let tilt = Vec3([0.0, 0.3, 1.0]).normalized().unwrap_or(axes[0]);
        let geometry = Geometry {
            origin: Lps([-61.3, -47.9, -20.15]),
            spacing: Spacing { slice: 1.25, row: 0.703125, column: 0.703125 },
            axes: [tilt, axes[1], axes[2]],
        };
        let shape = [33, 170, 170];
        for plane in [Plane::Axial, Plane::Sagittal, Plane::Coronal] {
            let view = View { plane, center: Lps([1.7, 3.1, -0.4]), size_mm: [120.0, 90.0], pixel_mm: 0.4 };
            let sampling = ViewSampling::new(&geometry, shape, &view);
            let [w, h] = view.pixels();
            let mut differ = 0;
            for r in 0..h {
                for c in 0..w {
                    let want = geometry.lps_to_voxel(view.pixel_to_lps(c, r), shape);
                    differ += usize::from(sampling.voxels[r * w + c] != want);
                }
            }
            assert_eq!(differ, 0, "{plane:?}: {differ} of {} pixels differ", w * h);
        }
    }

    #[test]
    fn upscale_repeats_pixels() {
        let img = RgbImage::from_fn(3, 2, |x, y| Rgb([x as u8, y as u8, 7]));
        let big = upscale(&img, 2);
        assert_eq!(big.dimensions(), (6, 4));
        assert!(big.enumerate_pixels().all(|(x, y, p)| p == img.get_pixel(x / 2, y / 2)));
    }

    #[test]
    fn window_maps_range() {
        assert_eq!(Window::BONE.gray(-1000.0), 0);
        assert_eq!(Window::BONE.gray(1500.0), 255);
        assert_eq!(Window::BONE.gray(400.0), 128);
    }
}
