//! PNG overlays of the segmentation, in patient orientation whatever the scan's storage (see `crate::render`):
//! bone window, each label outlined.

use crate::render::{self, Plane, Window};
use crate::volume::{CtVolume, LabelVolume, Lps};
use image::RgbImage;

const FOV_MM: f64 = 160.0;
const PX_MM: f64 = 0.5;

/// A `FOV_MM` square view through `centre`.
pub fn overlay(ct: &CtVolume, labels: &LabelVolume, centre: Lps, plane: Plane) -> RgbImage {
    let view = render::View { plane, center: centre, size_mm: [FOV_MM, FOV_MM], pixel_mm: PX_MM };
    render::overlay(ct, labels, &view, Window::BONE)
}
