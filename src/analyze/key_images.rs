//! Key images for the operator: slices through the cement and through each leak, bone window, cement and
//! leaks outlined in their site colours, with the alert level and its reasons written on the picture.
//!
//! Views are in patient orientation (see `crate::render`), so prone and supine scans look the same.

use super::Analysis;
use crate::alert::AlertLevel;
use crate::leaks::Site;
use crate::render::{self, text::draw_text, Plane, View, ViewSampling, Window};
use crate::volume::{labels, CtVolume, Lps};
use image::{Rgb, RgbImage};
use rayon::prelude::*;

const FOV_MM: f64 = 120.0;
const PIXEL_MM: f64 = 0.4;
/// Up-scaling keeps one-voxel outlines visible and gives room for readable captions.
const UPSCALE: u32 = 2;
/// Characters per caption line at the 8-pixel font on the up-scaled picture.
const LINE_CHARS: usize = (FOV_MM / PIXEL_MM) as usize * UPSCALE as usize / 8 - 1;

const OUTLINED: [u8; 5] = [
    labels::CEMENT,
    labels::LEAK_CANAL,
    labels::LEAK_POSTERIOR_VEIN,
    labels::LEAK_DISC,
    labels::LEAK_PARASPINAL,
];

fn level_colour(level: AlertLevel) -> Rgb<u8> {
    match level {
        AlertLevel::Continue => Rgb([90, 230, 90]),
        AlertLevel::Reduce => Rgb([255, 220, 60]),
        AlertLevel::Pause => Rgb([255, 150, 40]),
        AlertLevel::Stop => Rgb([255, 50, 50]),
    }
}

/// Split `text` into lines of at most `width` characters at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn picture(ct: &CtVolume, a: &Analysis, plane: Plane, centre: Lps, title: &str) -> RgbImage {
    let view = View { plane, center: centre, size_mm: [FOV_MM, FOV_MM], pixel_mm: PIXEL_MM };
    // CT and labels share the scan's grid: find the voxel of each pixel once, read both there.
    let sampling = ViewSampling::new(&ct.geometry, ct.shape(), &view);
    let mut img = render::grey_image(&sampling.sample(ct, -1024), Window::BONE);
    let labels = if a.labels.geometry == ct.geometry && a.labels.shape() == ct.shape() {
        sampling.sample(&a.labels, 0)
    } else {
        render::resample(&a.labels, &view, 0)
    };
    render::outline_sampled_labels(&mut img, &labels, Some(&OUTLINED));
    let mut img = render::upscale(&img, UPSCALE);
    let alert = &a.report.alert;
    let colour = level_colour(alert.level);
    let next = match alert.next_aliquot_ml {
        Some([lo, hi]) if (lo - hi).abs() < 1e-9 => format!("next {lo:.1} mL"),
        Some([lo, hi]) => format!("next {lo:.1}-{hi:.1} mL"),
        None => "do not inject".into(),
    };
    let mut y = 2;
    draw_text(&mut img, 2, y, &format!("{} - {next}", alert.level.name().to_uppercase()), colour, 2);
    y += 20;
    for reason in &alert.reasons {
        for line in wrap(reason, LINE_CHARS) {
            draw_text(&mut img, 2, y, &line, colour, 1);
            y += 11;
        }
    }
    let h = img.height();
    draw_text(
        &mut img,
        2,
        h.saturating_sub(24),
        &format!("{title} ({})", plane.name()),
        Rgb([230, 230, 230]),
        1,
    );
    // Legend: one word per outline colour.
    let mut x = 2;
    let legend =
        [("cement", labels::CEMENT)].into_iter().chain(Site::ALL.into_iter().map(|s| (s.name(), s.label())));
    for (name, code) in legend {
        draw_text(&mut img, x, h.saturating_sub(12), name, render::label_colour(code), 1);
        x += 8 * name.len() as u32 + 12;
    }
    img
}

/// Named key images (`key_<what>_<plane>`, without extension): axial, sagittal and coronal through the
/// intravertebral cement (or the body when there is none), then axial and sagittal through each leak.
pub fn key_images(ct: &CtVolume, a: &Analysis) -> Vec<(String, RgbImage)> {
    let centre = a
        .cement_centroid
        .or(a.anatomy.as_ref().map(|x| x.body_centroid))
        .unwrap_or_else(|| ct.geometry.index_to_lps(ct.shape().map(|n| (n as f64 - 1.0) / 2.0)));
    let what = if a.cement_centroid.is_some() { "cement" } else { "vertebra" };
    let mut jobs: Vec<(String, Plane, Lps, String)> = [Plane::Axial, Plane::Sagittal, Plane::Coronal]
        .into_iter()
        .map(|plane| (format!("key_{what}_{}", plane.name()), plane, centre, what.to_string()))
        .collect();
    for leak in &a.leaks {
        let site = leak.verdict.site.name();
        let title = format!("leak #{} {site} {:.3} mL", leak.id, leak.component.volume_ml);
        for plane in [Plane::Axial, Plane::Sagittal] {
            jobs.push((
                format!("key_leak{}_{site}_{}", leak.id, plane.name()),
                plane,
                leak.component.centroid,
                title.clone(),
            ));
        }
    }
    // The operator waits for these: render them side by side.
    jobs.into_par_iter().map(|(name, plane, at, title)| (name, picture(ct, a, plane, at, &title))).collect()
}
