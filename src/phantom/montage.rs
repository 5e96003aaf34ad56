//! Key-image montage of one scan for eyes: a bone-window view with the truth outlined in label colours.
//!
//! Panels, left to right, all resampled in patient orientation (not array orientation), so prone, supine
//! and decubitus scans look alike: (1) the whole axial slice through the target, (2) a zoomed axial through
//! the cement (or needle tip), (3) a zoomed axial through the largest leak (or the same slice), (4) a sagittal
//! through the target (superior up, anterior on the left). Axials use the radiological convention:
//! anterior up, the patient's right on the viewer's left.

use crate::render::{self, Plane, View, Window};
use crate::volume::{CtVolume, LabelVolume, Lps};
use image::RgbImage;

fn axial(center: Lps, size_mm: f64, pixel_mm: f64) -> View {
    View { plane: Plane::Axial, center, size_mm: [size_mm, size_mm], pixel_mm }
}

/// Builds the montage of one scan. `target` is where the cement (or needle tip) is; `leak` the largest leak.
pub fn montage(ct: &CtVolume, lab: &LabelVolume, target: Lps, leak: Option<Lps>) -> RgbImage {
    let g = ct.geometry;
    let [ns, nr, nc] = ct.shape();
    let fov = (nr.max(nc) as f64) * g.spacing.row.max(g.spacing.column);
    let fov_centre =
        g.index_to_lps([(ns as f64 - 1.0) / 2.0, (nr as f64 - 1.0) / 2.0, (nc as f64 - 1.0) / 2.0]);
    let full_px = fov / 360.0;
    let whole = axial(Lps([fov_centre.x(), fov_centre.y(), target.z()]), fov, full_px);
    let zoom = axial(target, 120.0, 0.35);
    let lk = axial(leak.unwrap_or(target), 120.0, 0.35);
    let zspan = ns as f64 * g.spacing.slice;
    let sag = View {
        plane: Plane::Sagittal,
        center: Lps([leak.unwrap_or(target).x(), target.y(), fov_centre.z()]),
        size_mm: [120.0, zspan],
        pixel_mm: 0.35,
    };
    let panels: Vec<RgbImage> =
        [whole, zoom, lk, sag].iter().map(|v| render::overlay(ct, lab, v, Window::BONE)).collect();
    render::hstack(&panels, 6)
}
