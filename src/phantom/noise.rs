//! Deterministic procedural noise and seeded random streams.
//!
//! Everything random in a phantom comes from a ChaCha stream derived from the case seed and a purpose tag,
//! so that parallel work (one stream per slice) gives the same bytes whatever the thread schedule.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A ChaCha stream for `(seed, tag, index)`: independent streams for independent purposes.
pub fn stream(seed: u64, tag: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(index);
    rng
}

fn hash3(seed: u32, x: i32, y: i32, z: i32) -> u32 {
    let mut h = seed
        ^ (x as u32).wrapping_mul(0x8da6_b343)
        ^ (y as u32).wrapping_mul(0xd816_3841)
        ^ (z as u32).wrapping_mul(0xcb1a_b31f);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297a_2d39);
    h ^= h >> 15;
    h
}

fn lattice(seed: u32, x: i32, y: i32, z: i32) -> f32 {
    (hash3(seed, x, y, z) as f32 / u32::MAX as f32) * 2.0 - 1.0
}

fn smooth(t: f32) -> f32 {
    t * t * (3.0 - 2.0 * t)
}

/// Smooth value noise in [-1, 1] with unit lattice spacing.
pub fn value3(seed: u32, p: [f64; 3]) -> f32 {
    let f = [p[0].floor(), p[1].floor(), p[2].floor()];
    let i = [f[0] as i32, f[1] as i32, f[2] as i32];
    let t = [smooth((p[0] - f[0]) as f32), smooth((p[1] - f[1]) as f32), smooth((p[2] - f[2]) as f32)];
    let mut acc = 0.0;
    for dz in 0..2 {
        for dy in 0..2 {
            for dx in 0..2 {
                let w = (if dx == 1 { t[0] } else { 1.0 - t[0] })
                    * (if dy == 1 { t[1] } else { 1.0 - t[1] })
                    * (if dz == 1 { t[2] } else { 1.0 - t[2] });
                acc += w * lattice(seed, i[0] + dx, i[1] + dy, i[2] + dz);
            }
        }
    }
    acc
}

/// Value noise with anisotropic feature sizes (mm) along x, y, z.
pub fn scaled(seed: u32, p: [f64; 3], size: [f64; 3]) -> f32 {
    value3(seed, [p[0] / size[0], p[1] / size[1], p[2] / size[2]])
}

/// Two-octave noise, roughly unit standard deviation scaled to [-1, 1] range.
pub fn fbm2(seed: u32, p: [f64; 3], size: [f64; 3]) -> f32 {
    0.7 * scaled(seed, p, size) + 0.45 * scaled(seed.wrapping_add(77), p, size.map(|s| s * 0.45))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_bounded_and_deterministic() {
        for i in 0..1000 {
            let p = [i as f64 * 0.37, i as f64 * 0.11, -(i as f64) * 0.23];
            let v = value3(7, p);
            assert!((-1.0..=1.0).contains(&v));
            assert_eq!(v, value3(7, p));
        }
    }
}
