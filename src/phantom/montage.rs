//! Key-image montage of one scan for eyes: a bone-window view with the truth outlined in label colours.
//!
//! Panels, left to right, all resampled in patient orientation (not array orientation), so prone, supine
//! and decubitus scans look alike: (1) the whole axial slice through the target, (2) a zoomed axial through
//! the cement (or needle tip), (3) a zoomed axial through the largest leak (or the same slice), (4) a sagittal
//! through the target with anterior up and the head to the left. Axials use the radiological convention:
//! anterior up, the patient's right on the viewer's left.

use crate::volume::{labels, CtVolume, LabelVolume, Lps, Vec3};
use image::{Rgb, RgbImage};

const WINDOW_LEVEL: f32 = 400.0;
const WINDOW_WIDTH: f32 = 1800.0;

fn colour(label: u8) -> Rgb<u8> {
    match label {
        labels::VERTEBRAL_BODY => Rgb([255, 220, 0]),
        labels::CANAL => Rgb([0, 220, 255]),
        labels::DISC => Rgb([0, 200, 0]),
        labels::POSTERIOR_ELEMENTS => Rgb([60, 100, 255]),
        labels::CEMENT => Rgb([255, 140, 0]),
        labels::LEAK_CANAL => Rgb([255, 0, 0]),
        labels::LEAK_POSTERIOR_VEIN => Rgb([200, 0, 255]),
        labels::LEAK_DISC => Rgb([120, 255, 60]),
        labels::LEAK_PARASPINAL => Rgb([255, 80, 180]),
        labels::NEEDLE => Rgb([150, 150, 150]),
        _ => Rgb([255, 255, 255]),
    }
}

/// A planar view: display pixel (u, v) maps to `origin + du * u + dv * v`.
struct View {
    origin: Lps,
    du: Vec3,
    dv: Vec3,
    w: u32,
    h: u32,
}

fn render(ct: &CtVolume, lab: &LabelVolume, v: &View) -> RgbImage {
    let mut img = RgbImage::new(v.w, v.h);
    let shape = ct.shape();
    let mut ids = vec![0u8; (v.w * v.h) as usize];
    for y in 0..v.h {
        for x in 0..v.w {
            let p = v.origin + v.du * x as f64 + v.dv * y as f64;
            let (g, l) = match ct.geometry.lps_to_voxel(p, shape) {
                Some(i) => {
                    let hu = ct.data[i];
                    let g = (((hu - (WINDOW_LEVEL - WINDOW_WIDTH / 2.0)) / WINDOW_WIDTH).clamp(0.0, 1.0)
                        * 255.0) as u8;
                    (g, lab.data[i])
                }
                None => (0, 0),
            };
            img.put_pixel(x, y, Rgb([g, g, g]));
            ids[(y * v.w + x) as usize] = l;
        }
    }
    for y in 0..v.h {
        for x in 0..v.w {
            let l = ids[(y * v.w + x) as usize];
            if l == 0 {
                continue;
            }
            let edge = [(1i64, 0i64), (-1, 0), (0, 1), (0, -1)].iter().any(|(dx, dy)| {
                let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                nx < 0
                    || ny < 0
                    || nx >= v.w as i64
                    || ny >= v.h as i64
                    || ids[(ny as u32 * v.w + nx as u32) as usize] != l
            });
            if edge {
                img.put_pixel(x, y, colour(l));
            }
        }
    }
    img
}

fn axial(centre: Lps, size_mm: f64, px: f64) -> View {
    let n = (size_mm / px).round() as u32;
    let half = size_mm / 2.0;
    View {
        origin: centre + Vec3([-half, -half, 0.0]),
        du: Vec3([px, 0.0, 0.0]),
        dv: Vec3([0.0, px, 0.0]),
        w: n,
        h: n,
    }
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
    // Sagittal: rows anterior -> posterior, columns superior -> inferior.
    let zspan = ns as f64 * g.spacing.slice;
    let sag_px = 0.35;
    let sag = View {
        origin: Lps([leak.unwrap_or(target).x(), target.y() - 60.0, fov_centre.z() + zspan / 2.0]),
        du: Vec3([0.0, 0.0, -sag_px]),
        dv: Vec3([0.0, sag_px, 0.0]),
        w: (zspan / sag_px).round().max(1.0) as u32,
        h: (120.0 / sag_px).round() as u32,
    };
    let panels =
        [render(ct, lab, &whole), render(ct, lab, &zoom), render(ct, lab, &lk), render(ct, lab, &sag)];
    let gap = 6;
    let w: u32 = panels.iter().map(|p| p.width()).sum::<u32>() + gap * (panels.len() as u32 - 1);
    let h = panels.iter().map(|p| p.height()).max().unwrap_or(1);
    let mut out = RgbImage::from_pixel(w, h, Rgb([30, 30, 30]));
    let mut x0 = 0;
    for p in &panels {
        image::imageops::replace(&mut out, p, x0 as i64, 0);
        x0 += p.width() + gap;
    }
    out
}
