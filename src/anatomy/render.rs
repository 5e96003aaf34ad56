//! PNG overlays in patient orientation: axial with anterior up and the patient's right on the image left
//! (radiological convention), sagittal with superior up and anterior on the left, whatever the scan's
//! storage. Bone window; each label drawn as an outline.

use crate::volume::{CtVolume, LabelVolume, Lps};
use image::{Rgb, RgbImage};

/// Bone window: level 400 HU, width 1800 HU.
const WINDOW: (f32, f32) = (-500.0, 1300.0);
const FOV_MM: f64 = 160.0;
const PX_MM: f64 = 0.5;

fn colour(l: u8) -> Rgb<u8> {
    match l {
        1 => Rgb([255, 60, 60]),
        2 => Rgb([255, 220, 0]),
        3 => Rgb([60, 220, 60]),
        4 => Rgb([80, 140, 255]),
        _ => Rgb([255, 0, 255]),
    }
}

/// Which plane to draw.
#[derive(Clone, Copy, Debug)]
pub enum View {
    Axial,
    Sagittal,
}

pub fn overlay(ct: &CtVolume, labels: &LabelVolume, centre: Lps, view: View) -> RgbImage {
    let n = (FOV_MM / PX_MM) as u32;
    let half = FOV_MM / 2.0;
    let pos = |u: u32, v: u32| -> Lps {
        let a = -half + u as f64 * PX_MM;
        let b = -half + v as f64 * PX_MM;
        match view {
            // Right of image = patient left (+x); down = posterior (+y).
            View::Axial => Lps([centre.x() + a, centre.y() + b, centre.z()]),
            // Right of image = posterior (+y); down = inferior (-z).
            View::Sagittal => Lps([centre.x(), centre.y() + a, centre.z() - b]),
        }
    };
    let mut lab = vec![0u8; (n * n) as usize];
    let mut img = RgbImage::new(n, n);
    for v in 0..n {
        for u in 0..n {
            let p = pos(u, v);
            let hu = ct.at_lps(p).copied().unwrap_or(WINDOW.0);
            let g = (((hu - WINDOW.0) / (WINDOW.1 - WINDOW.0)).clamp(0.0, 1.0) * 255.0) as u8;
            img.put_pixel(u, v, Rgb([g, g, g]));
            lab[(v * n + u) as usize] = labels.at_lps(p).copied().unwrap_or(0);
        }
    }
    for v in 1..n - 1 {
        for u in 1..n - 1 {
            let l = lab[(v * n + u) as usize];
            if l == 0 {
                continue;
            }
            let edge = [(u - 1, v), (u + 1, v), (u, v - 1), (u, v + 1)]
                .iter()
                .any(|&(a, b)| lab[(b * n + a) as usize] != l);
            if edge {
                img.put_pixel(u, v, colour(l));
            }
        }
    }
    img
}
