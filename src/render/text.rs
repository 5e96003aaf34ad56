//! Captions on pictures, with an 8x8 bitmap font (no font files to ship or find).

use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};

/// Draw `text` with its top-left corner at (x, y), each font pixel `scale` x `scale` image pixels, on a
/// dark band so it stays readable over bright bone. Characters without a glyph are drawn as '?'.
pub fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, colour: Rgb<u8>, scale: u32) {
    let s = scale.max(1);
    let width = 8 * s * text.chars().count() as u32;
    for yy in y..(y + 8 * s + 2).min(img.height()) {
        for xx in x..(x + width + 2).min(img.width()) {
            let p = img.get_pixel_mut(xx, yy);
            *p = Rgb(p.0.map(|v| v / 3));
        }
    }
    for (i, ch) in text.chars().enumerate() {
        let glyph = font8x8::BASIC_FONTS.get(ch).or_else(|| font8x8::BASIC_FONTS.get('?')).unwrap_or([0; 8]);
        for (gy, bits) in glyph.iter().enumerate() {
            for gx in 0..8u32 {
                if bits & (1 << gx) == 0 {
                    continue;
                }
                for dy in 0..s {
                    for dx in 0..s {
                        let px = x + 1 + (i as u32 * 8 + gx) * s + dx;
                        let py = y + 1 + gy as u32 * s + dy;
                        if px < img.width() && py < img.height() {
                            img.put_pixel(px, py, colour);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_drawn_and_clipped() {
        let mut img = RgbImage::new(20, 10);
        draw_text(&mut img, 0, 0, "STOP", Rgb([255, 0, 0]), 1);
        assert!(img.pixels().any(|p| *p == Rgb([255, 0, 0])));
    }
}
