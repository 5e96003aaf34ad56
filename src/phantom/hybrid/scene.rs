//! Leak regions and the posterior wall of a real vertebra, for the shared injection model
//! ([`injection::Scene`]): the same portals and growth rules as the analytic phantom, placed from the masks.
//!
//! - canal: an epidural sheet from a point 1 mm behind the posterior wall, near the midline, at a random
//!   height of the body, spreading in the canal's epidural rim and kept close to the wall;
//! - posterior_vein: a tube from the basivertebral foramen (posterior wall midline, mid-height) up and down
//!   the anterior epidural space;
//! - disc: from a random point of the disc above or below, spreading flat inside that disc;
//! - paraspinal: along a segmental vein hugging the body's lateral surface, or a blob in the soft tissue
//!   next to it.
//!
//! Hybrid canal leaks are epidural only: the masks do not delimit the foramina, so `in_foramen` is false.

use super::masks::Derived;
use crate::leaks::Site;
use crate::phantom::anatomy::Tissue;
use crate::phantom::grid::FineGrid;
use crate::phantom::injection::{nearest_allowed, percolate, tube_order, Scene};
use crate::volume::labels;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

impl Derived {
    /// Outer posterior wall (y, anatomy frame) of the body in the column nearest (x, z), searching up to
    /// 4 mm sideways for a column that holds body.
    pub fn wall_y(&self, x: f64, z: f64) -> Option<f64> {
        let s = &self.fine.spec;
        let [nz, _, nx] = s.dims;
        let xi = ((x - s.origin[0]) / s.h).round() as isize;
        let zi = ((z - s.origin[2]) / s.h).round() as isize;
        let rmax = (4.0 / s.h).ceil() as isize;
        for r in 0..=rmax {
            let mut best: Option<(isize, f64)> = None;
            for dz in -r..=r {
                for dx in -r..=r {
                    if dz.abs().max(dx.abs()) != r {
                        continue;
                    }
                    let (zz, xx) = (zi + dz, xi + dx);
                    if zz < 0 || xx < 0 || zz >= nz as isize || xx >= nx as isize {
                        continue;
                    }
                    let w = self.wall[zz as usize * nx + xx as usize];
                    let d2 = dz * dz + dx * dx;
                    if !w.is_nan() && best.is_none_or(|b| d2 < b.0) {
                        best = Some((d2, w as f64));
                    }
                }
            }
            if let Some((_, w)) = best {
                return Some(w);
            }
        }
        None
    }

    /// x of the body's outer surface on `side` (-1 right, +1 left) in the row (y, z), anatomy frame.
    fn body_edge(&self, y: f64, z: f64, side: f64) -> Option<f64> {
        let g = &self.fine;
        let s = &g.spec;
        let [nz, ny, nx] = s.dims;
        let yi = ((y - s.origin[1]) / s.h).round();
        let zi = ((z - s.origin[2]) / s.h).round();
        if yi < 0.0 || zi < 0.0 || yi >= ny as f64 || zi >= nz as f64 {
            return None;
        }
        let (yi, zi) = (yi as usize, zi as usize);
        let xs: Vec<usize> = if side > 0.0 { (0..nx).rev().collect() } else { (0..nx).collect() };
        xs.into_iter()
            .find(|&x| g.label[s.index(zi, yi, x)] == labels::VERTEBRAL_BODY)
            .map(|x| s.point_zyx(zi, yi, x)[0] + side * s.h / 2.0)
    }

    fn half_height(&self) -> f64 {
        (self.body_hi[2] - self.body_lo[2]) / 2.0
    }
}

impl Scene for Derived {
    fn wall_distance(&self, p: [f64; 3]) -> f64 {
        // 200 mm: "far", for points with no body column nearby (never the case for body voxels).
        self.wall_y(p[0], p[2]).map(|w| (w - p[1]).max(0.0)).unwrap_or(200.0)
    }

    fn in_foramen(&self, _p: [f64; 3]) -> bool {
        false
    }

    fn leak_order(
        &self,
        g: &FineGrid,
        site: Site,
        n: usize,
        rng: &mut ChaCha8Rng,
    ) -> (Option<[f64; 3]>, Vec<u32>) {
        let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
        let [cx, _] = self.canal_centre;
        let hw = self.canal_half_width;
        let zc = self.body_centre[2];
        let hz = self.half_height();
        match site {
            Site::Canal => {
                let bx = cx + side * rng.random_range(1.0..(hw * 0.5).max(1.5));
                let bz = zc + rng.random_range(-0.5..0.5) * hz;
                let Some(wy) = self.wall_y(bx, bz) else { return (None, Vec::new()) };
                let pl = [bx, wy + 1.0, bz];
                let allowed = |i: usize| g.label[i] == labels::CANAL && g.tissue[i] == Tissue::EpiduralFat;
                let cost = |i: usize| {
                    let q = g.spec.point(i);
                    0.05 * dist(q, pl) + (q[1] - wy - 3.0).max(0.0) * 0.25 + 1.0
                };
                let seed = nearest_allowed(g, pl, &allowed);
                if seed.is_none() {
                    let near = (0..g.spec.len())
                        .filter(|&i| g.label[i] == labels::CANAL)
                        .map(|i| (dist(g.spec.point(i), pl), g.tissue[i]))
                        .min_by(|a, b| a.0.total_cmp(&b.0));
                    tracing::warn!(?pl, ?near, "no epidural space next to the canal leak portal");
                }
                (
                    seed.map(|_| pl),
                    seed.map(|s| percolate(g, &[s], n, rng, &allowed, &cost, 1.0)).unwrap_or_default(),
                )
            }
            Site::PosteriorVein => {
                let len_up = rng.random_range(8.0..22.0);
                let len_dn = rng.random_range(8.0..22.0);
                let drift = rng.random_range(0.5..3.0);
                let Some(wy) = self.wall_y(cx, zc) else { return (None, Vec::new()) };
                let y = wy + 1.3;
                let hub = [cx, y, zc];
                let paths = [
                    vec![[cx, wy - 5.0, zc], hub],
                    vec![hub, [cx + side * drift, y, zc + len_up]],
                    vec![hub, [cx - side * drift, y, zc - len_dn]],
                ];
                let allowed = |i: usize| {
                    g.label[i] == labels::CANAL
                        && !matches!(g.tissue[i], Tissue::Csf | Tissue::Cord | Tissue::NerveRoot)
                };
                let local = |i: usize| g.spec.point(i);
                (
                    Some([cx, wy + 0.5, zc]),
                    tube_order(g, &paths, 1.6, len_up.max(len_dn) + 2.0, n, &local, &allowed),
                )
            }
            Site::Disc => {
                let up = rng.random_bool(0.5);
                let on_side = |i: usize| g.label[i] == labels::DISC && (g.spec.point(i)[2] > zc) == up;
                let half =
                    [(self.body_hi[0] - self.body_lo[0]) / 2.0, (self.body_hi[1] - self.body_lo[1]) / 2.0];
                let central: Vec<usize> = (0..g.spec.len())
                    .filter(|&i| on_side(i))
                    .filter(|&i| {
                        let p = g.spec.point(i);
                        (p[0] - self.body_centre[0]).abs() < 0.5 * half[0]
                            && (p[1] - self.body_centre[1]).abs() < 0.5 * half[1]
                    })
                    .collect();
                if central.is_empty() {
                    return (None, Vec::new());
                }
                let pl = g.spec.point(central[rng.random_range(0..central.len())]);
                let cost = |i: usize| {
                    let q = g.spec.point(i);
                    0.04 * dist(q, pl) + 0.2 * (q[2] - pl[2]).abs()
                };
                let seed = nearest_allowed(g, pl, &on_side);
                (
                    seed.map(|_| pl),
                    seed.map(|s| percolate(g, &[s], n, rng, &on_side, &cost, 1.0)).unwrap_or_default(),
                )
            }
            Site::Paraspinal => {
                let half_depth = (self.body_hi[1] - self.body_lo[1]) / 2.0;
                let z = zc + rng.random_range(-0.3..0.3) * hz;
                let y = self.body_centre[1] + rng.random_range(-0.4..0.2) * half_depth;
                let Some(edge) = self.body_edge(y, z, side) else { return (None, Vec::new()) };
                let pl = [edge + side * 3.0, y, z];
                let soft = |i: usize| {
                    g.label[i] == labels::BACKGROUND
                        && matches!(g.tissue[i], Tissue::Fat | Tissue::Muscle | Tissue::Blood)
                };
                if rng.random_bool(0.6) {
                    // A segmental vein runs around the body's lateral surface, a few mm off the cortex.
                    let mut fwd = vec![pl];
                    let mut x = pl[0];
                    for k in 1..9 {
                        let yk = y - 3.0 * k as f64;
                        if let Some(e) = self.body_edge(yk, z, side) {
                            x = e + side * 3.0;
                        }
                        fwd.push([x, yk, z]);
                    }
                    let mut back = vec![pl];
                    x = pl[0];
                    for k in 1..4 {
                        let yk = y + 3.0 * k as f64;
                        if let Some(e) = self.body_edge(yk, z, side) {
                            x = e + side * 3.0;
                        }
                        back.push([x, yk, z]);
                    }
                    let local = |i: usize| g.spec.point(i);
                    (Some(pl), tube_order(g, &[fwd, back], 2.2, 12.0, n, &local, &soft))
                } else {
                    let cost = |i: usize| 0.08 * dist(g.spec.point(i), pl);
                    let seed = nearest_allowed(g, pl, &soft);
                    (
                        seed.map(|_| pl),
                        seed.map(|s| percolate(g, &[s], n, rng, &soft, &cost, 1.0)).unwrap_or_default(),
                    )
                }
            }
        }
    }
}
