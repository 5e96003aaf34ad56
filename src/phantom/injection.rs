//! Cement spread and leaks, step by step, on the fine grid.
//!
//! Intravertebral cement grows by invasion percolation from the needle tip(s): each candidate voxel has a
//! cost (lytic cavities and veins are cheap, dense bone expensive, cortex closed) plus a seeded random
//! threshold and a distance penalty, and the cheapest frontier voxel fills next. The fill order is computed
//! once; scan k shows the prefix whose volume equals what was injected by then minus what leaked. Each leak
//! has its own fill order confined to its site's region, from a portal where the cement leaves the body.

use super::anatomy::{basivertebral_dist, seg_dist, segmental_vein_points, Anatomy, Tissue};
use super::devices::Devices;
use super::grid::FineGrid;
use crate::leaks::Site;
use crate::volume::labels;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Marker for a voxel without cement.
pub const NONE: u8 = u8::MAX;

#[derive(Clone, Debug)]
pub struct LeakPlan {
    pub site: Site,
    /// Scan index where it first appears.
    pub onset: usize,
    /// Planned volume (mL) in each scan.
    pub volume_ml: Vec<f64>,
    pub order: Vec<u32>,
    pub bridge: Vec<u32>,
}

/// The whole injection: planned volumes per scan and per-voxel fill state on the fine grid.
pub struct Injection {
    pub injected_ml: Vec<f64>,
    pub intra_ml: Vec<f64>,
    pub leaks: Vec<LeakPlan>,
    /// First scan index in which each fine voxel holds cement (`NONE` = never).
    pub step: Vec<u8>,
    /// Label code of the cement at each fine voxel (10 intravertebral, 11..14 leaks).
    pub code: Vec<u8>,
    /// 1 + leak index at each fine voxel (0 = not a leak).
    pub leak_of: Vec<u8>,
    pub cement_hu: f32,
}

pub struct InjectionParams {
    pub total_ml: f64,
    pub max_steps: usize,
    pub sites: Vec<Site>,
}

fn key(v: f64) -> u64 {
    // Positive costs only: the bit pattern of a non-negative f64 orders like the value.
    v.max(0.0).to_bits()
}

fn neighbours(g: &FineGrid, i: usize) -> impl Iterator<Item = usize> + '_ {
    let [z, y, x] = g.spec.zyx(i);
    let d = g.spec.dims;
    let cand: [(isize, isize, isize); 6] =
        [(-1, 0, 0), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1)];
    cand.into_iter().filter_map(move |(dz, dy, dx)| {
        let (nz, ny, nx) = (z as isize + dz, y as isize + dy, x as isize + dx);
        if nz < 0 || ny < 0 || nx < 0 || nz >= d[0] as isize || ny >= d[1] as isize || nx >= d[2] as isize {
            None
        } else {
            Some(g.spec.index(nz as usize, ny as usize, nx as usize))
        }
    })
}

/// Invasion percolation from `seeds` over voxels accepted by `allowed`, cheapest first, up to `max` voxels.
pub(crate) fn percolate(
    g: &FineGrid,
    seeds: &[usize],
    max: usize,
    rng: &mut ChaCha8Rng,
    allowed: &dyn Fn(usize) -> bool,
    cost: &dyn Fn(usize) -> f64,
    jitter: f64,
) -> Vec<u32> {
    let mut seen = vec![false; g.spec.len()];
    let mut heap = BinaryHeap::new();
    let mut out = Vec::new();
    for &s in seeds {
        if s < seen.len() && !seen[s] {
            seen[s] = true;
            heap.push(Reverse((0u64, s)));
        }
    }
    // Random thresholds are drawn when a voxel is first seen; seen order is deterministic (heap ties break on
    // the index).
    while let Some(Reverse((_, i))) = heap.pop() {
        out.push(i as u32);
        if out.len() >= max {
            break;
        }
        for n in neighbours(g, i) {
            if !seen[n] && allowed(n) {
                seen[n] = true;
                let c = cost(n) + jitter * rng.random_range(0.0..1.0);
                heap.push(Reverse((key(c), n)));
            }
        }
    }
    out
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// Distance (mm) from an anatomy-frame point inside the body to the outer posterior wall.
pub fn wall_distance(anat: &Anatomy, p: [f64; 3]) -> f64 {
    let l = anat.anat_to_target(p);
    (anat.target().wall_y(l[0], l[2]) - l[1]).max(0.0)
}

/// What the injection needs to know about the treated vertebra beyond the fine grid: the analytic phantom
/// answers from its shape parameters, the hybrid mode (`super::hybrid`) from the masks of a real CT.
pub trait Scene {
    /// Distance (mm) from an anatomy-frame point inside the body to the outer posterior wall.
    fn wall_distance(&self, p: [f64; 3]) -> f64;
    /// Portal (anatomy frame, where the cement leaves the body) and fill order of one leak of `n` voxels.
    fn leak_order(
        &self,
        g: &FineGrid,
        site: Site,
        n: usize,
        rng: &mut ChaCha8Rng,
    ) -> (Option<[f64; 3]>, Vec<u32>);
    /// Whether an anatomy-frame point lies in an intervertebral foramen of the treated level.
    fn in_foramen(&self, p: [f64; 3]) -> bool;
}

impl Scene for Anatomy {
    fn wall_distance(&self, p: [f64; 3]) -> f64 {
        wall_distance(self, p)
    }
    fn leak_order(
        &self,
        g: &FineGrid,
        site: Site,
        n: usize,
        rng: &mut ChaCha8Rng,
    ) -> (Option<[f64; 3]>, Vec<u32>) {
        leak_order(self, g, site, n, rng)
    }
    fn in_foramen(&self, p: [f64; 3]) -> bool {
        Anatomy::in_foramen(self, self.anat_to_target(p))
    }
}

pub fn plan(
    anat: &dyn Scene,
    g: &FineGrid,
    dev: &Devices,
    params: &InjectionParams,
    rng: &mut ChaCha8Rng,
) -> Injection {
    let fvv = g.spec.h.powi(3) / 1000.0;
    let is_body = |i: usize| {
        g.label[i] == labels::VERTEBRAL_BODY
            && matches!(g.tissue[i], Tissue::Cancellous | Tissue::Lytic | Tissue::Blastic | Tissue::BasiVein)
    };
    let capacity = (0..g.spec.len()).filter(|&i| is_body(i)).count();
    let total_ml = params.total_ml.min(capacity as f64 * fvv * 0.55).max(0.5);
    let tips = dev.tips();
    let seeds: Vec<usize> = tips.iter().filter_map(|&t| g.spec.nearest(t)).filter(|&i| is_body(i)).collect();
    let seeds = if seeds.is_empty() {
        // Tip outside the cancellous bone (thin vertebra): start from the nearest body voxel.
        let t = tips.first().copied().unwrap_or([0.0; 3]);
        (0..g.spec.len())
            .filter(|&i| is_body(i))
            .min_by(|&a, &b| dist(g.spec.point(a), t).total_cmp(&dist(g.spec.point(b), t)))
            .into_iter()
            .collect()
    } else {
        seeds
    };
    let cost = |i: usize| -> f64 {
        let p = g.spec.point(i);
        let d = tips.iter().map(|&t| dist(p, t)).fold(f64::MAX, f64::min);
        let c = match g.tissue[i] {
            Tissue::Lytic => 0.0,
            Tissue::BasiVein => 0.6,
            Tissue::Blastic => 3.0,
            _ => (g.hu[i] as f64 / 320.0).clamp(0.0, 1.5),
        };
        c + 0.09 * d
    };
    let max_vox = (total_ml * 1.2 / fvv) as usize + 10;
    // Cement fills trabecular bone as a compact, lobulated mass: a spatially correlated threshold field
    // (lobes of a few mm) with little voxel-level jitter, not a porous percolation cluster.
    let field_seed: u32 = rng.random();
    let lobed = |i: usize| {
        cost(i) + 0.9 * (0.5 + 0.5 * super::noise::fbm2(field_seed, g.spec.point(i), [2.5; 3]) as f64)
    };
    let order = percolate(g, &seeds, max_vox, rng, &is_body, &lobed, 0.12);
    let mut prefix_wall = Vec::with_capacity(order.len());
    let mut m = f64::MAX;
    for &i in &order {
        m = m.min(anat.wall_distance(g.spec.point(i as usize)));
        prefix_wall.push(m);
    }
    let wall_at = |ml: f64| -> f64 {
        let n = ((ml / fvv) as usize).min(order.len());
        if n == 0 {
            f64::MAX
        } else {
            prefix_wall[n - 1]
        }
    };

    // Step plan with leak onsets.
    struct Pending {
        site: Site,
        trigger: Option<f64>,
        onset_scan: usize,
        v0: f64,
        growth: f64,
    }
    let expected_scans = total_ml.ceil() as usize + 2;
    let mut pend: Vec<Pending> = params
        .sites
        .iter()
        .map(|&site| {
            let v0 = (rng.random_range(0.02f64.ln()..0.35f64.ln())).exp();
            let growth = if rng.random_bool(0.5) { rng.random_range(0.03..0.2) } else { 0.0 };
            let trigger =
                matches!(site, Site::Canal | Site::PosteriorVein).then(|| rng.random_range(0.0..2.5));
            Pending { site, trigger, onset_scan: rng.random_range(1..expected_scans.max(2)), v0, growth }
        })
        .collect();
    let mut onsets: Vec<Option<usize>> = vec![None; pend.len()];
    let mut injected = vec![0.0];
    let mut intra = vec![0.0];
    let mut leak_vol: Vec<Vec<f64>> = vec![vec![0.0]; pend.len()];
    let max_steps = params.max_steps.max(1);
    for k in 1..=max_steps {
        let prev = injected[k - 1];
        let near = wall_at(intra[k - 1]) <= 5.0;
        let inc: f64 = if near { rng.random_range(0.3..0.5) } else { 1.0 };
        let inj = (prev + inc).min(total_ml);
        let mut last = inj >= total_ml - 1e-9 || k == max_steps;
        // A canal leak stops the injection: every other planned leak must show by this scan.
        let canal_fires = pend.iter().enumerate().any(|(j, p)| {
            p.site == Site::Canal
                && onsets[j].is_none()
                && p.trigger.is_some_and(|t| wall_at(inj) <= t || k >= p.onset_scan + 3)
        });
        last |= canal_fires;
        let mut leaked = 0.0;
        let mut stop = false;
        for (j, p) in pend.iter_mut().enumerate() {
            let prev_v = leak_vol[j][k - 1];
            let v = match onsets[j] {
                Some(_) => prev_v + p.growth.min(0.4 * inc),
                None => {
                    let tentative_wall = wall_at(inj - leaked);
                    let fire = match p.trigger {
                        Some(t) => tentative_wall <= t || k >= p.onset_scan + 3,
                        None => k >= p.onset_scan,
                    };
                    if fire || last {
                        onsets[j] = Some(k);
                        p.v0.min(0.6 * inc)
                    } else {
                        0.0
                    }
                }
            };
            if p.site == Site::Canal && onsets[j] == Some(k) {
                stop = true;
            }
            leak_vol[j].push(v);
        }
        // Leaks are fed by this step's injection: together they take at most 80% of it.
        let new_total: f64 = leak_vol.iter().map(|v| v[k] - v[k - 1]).sum();
        if new_total > 0.8 * inc {
            let f = 0.8 * inc / new_total;
            for v in leak_vol.iter_mut() {
                v[k] = v[k - 1] + (v[k] - v[k - 1]) * f;
            }
        }
        for v in &leak_vol {
            leaked += v[k];
        }
        injected.push(inj);
        intra.push((inj - leaked).max(0.0));
        if last || stop {
            break;
        }
    }

    // Leak geometry.
    let mut step = vec![NONE; g.spec.len()];
    let mut code = vec![0u8; g.spec.len()];
    let mut leak_of = vec![0u8; g.spec.len()];
    let mut leaks = Vec::new();
    for (j, p) in pend.iter().enumerate() {
        let Some(onset) = onsets[j] else { continue };
        let max_ml = leak_vol[j].iter().cloned().fold(0.0, f64::max);
        let n_needed = (max_ml / fvv).ceil() as usize + 1;
        let intra_at_onset = ((intra[onset] / fvv) as usize).min(order.len()).max(1);
        let (portal, ord) = anat.leak_order(g, p.site, n_needed, rng);
        let Some(portal) = portal else { continue };
        // Bridge from the nearest cement at onset to the portal, through the body (and its cortex).
        let near = order[..intra_at_onset]
            .iter()
            .map(|&i| g.spec.point(i as usize))
            .min_by(|a, b| dist(*a, portal).total_cmp(&dist(*b, portal)))
            .unwrap_or(portal);
        let bridge = bridge_voxels(g, near, portal);
        // Cement reaches the portal through the tissue between the body surface and it: those voxels
        // belong to the leak and fill first.
        let region = ord.first().map(|&i| g.label[i as usize]).unwrap_or(0);
        let mut ord = ord;
        let mut lead = path_voxels(g, near, portal, |i| {
            g.label[i] == region
                && !g.tissue[i].is_bone()
                && g.tissue[i] != Tissue::Csf
                && g.tissue[i] != Tissue::Cord
        });
        lead.retain(|v| !ord[..ord.len().min(n_needed)].contains(v));
        if !lead.is_empty() {
            lead.extend(ord);
            ord = lead;
        }
        let mut vols = leak_vol[j].clone();
        let cap = ord.len() as f64 * fvv;
        for v in vols.iter_mut() {
            *v = v.min(cap);
        }
        leaks.push(LeakPlan { site: p.site, onset, volume_ml: vols, order: ord, bridge });
    }
    // Recompute intravertebral volumes with the capped leak volumes.
    for (k, v) in intra.iter_mut().enumerate() {
        let leaked: f64 = leaks.iter().map(|l| l.volume_ml[k]).sum();
        *v = (injected[k] - leaked).max(0.0);
    }
    // Fill state per scan.
    let mut taken = 0usize;
    let mut count = 0usize;
    for (k, &intra_k) in intra.iter().enumerate().skip(1) {
        for l in leaks.iter().filter(|l| l.onset <= k) {
            for &b in &l.bridge {
                let b = b as usize;
                if step[b] == NONE {
                    step[b] = k as u8;
                    code[b] = labels::CEMENT;
                    count += 1;
                }
            }
        }
        let need = (intra_k / fvv).round() as usize;
        while count < need && taken < order.len() {
            let i = order[taken] as usize;
            taken += 1;
            if step[i] == NONE {
                step[i] = k as u8;
                code[i] = labels::CEMENT;
                count += 1;
            }
        }
        for (li, l) in leaks.iter().enumerate() {
            let n = (l.volume_ml[k] / fvv).round() as usize;
            for &v in l.order.iter().take(n) {
                let v = v as usize;
                if step[v] == NONE {
                    step[v] = k as u8;
                    code[v] = l.site.label();
                    leak_of[v] = li as u8 + 1;
                }
            }
        }
    }
    Injection {
        injected_ml: injected,
        intra_ml: intra,
        leaks,
        step,
        code,
        leak_of,
        cement_hu: rng.random_range(1700.0..3300.0),
    }
}

/// Voxels along the segment a-b (about 1 mm wide) accepted by `keep`, from a to b.
fn path_voxels(g: &FineGrid, a: [f64; 3], b: [f64; 3], keep: impl Fn(usize) -> bool) -> Vec<u32> {
    let d = dist(a, b);
    let n = (d / (g.spec.h * 0.5)).ceil() as usize + 1;
    let mut out: Vec<u32> = Vec::new();
    for k in 0..=n {
        let t = k as f64 / n as f64;
        let c = [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
        for o in [[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [-0.5, 0.0, 0.0], [0.0, 0.0, 0.5], [0.0, 0.0, -0.5]] {
            if let Some(i) = g.spec.nearest([c[0] + o[0], c[1] + o[1], c[2] + o[2]]) {
                if keep(i) && !out.contains(&(i as u32)) {
                    out.push(i as u32);
                }
            }
        }
    }
    out
}

fn bridge_voxels(g: &FineGrid, a: [f64; 3], b: [f64; 3]) -> Vec<u32> {
    let d = dist(a, b);
    let n = (d / (g.spec.h * 0.5)).ceil() as usize + 1;
    let mut out = Vec::new();
    for k in 0..=n {
        let t = k as f64 / n as f64;
        let c = [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
        for o in [[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [-0.5, 0.0, 0.0], [0.0, 0.0, 0.5], [0.0, 0.0, -0.5]] {
            let p = [c[0] + o[0], c[1] + o[1], c[2] + o[2]];
            if let Some(i) = g.spec.nearest(p) {
                if g.label[i] == labels::VERTEBRAL_BODY && !out.contains(&(i as u32)) {
                    out.push(i as u32);
                }
            }
        }
    }
    out
}

/// Portal (anatomy frame) and fill order of one leak.
fn leak_order(
    anat: &Anatomy,
    g: &FineGrid,
    site: Site,
    n: usize,
    rng: &mut ChaCha8Rng,
) -> (Option<[f64; 3]>, Vec<u32>) {
    let v = anat.target();
    let side = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    let local = |i: usize| anat.anat_to_target(g.spec.point(i));
    match site {
        Site::Canal => {
            let (bx, bz) = match anat.lesion.as_ref().and_then(|l| l.breach) {
                Some([bx, bz, _, _]) => (bx, bz),
                None => (
                    side * rng.random_range(1.0..v.canal_hw * 0.5),
                    rng.random_range(-v.h_bot * 0.5..v.h_top * 0.5),
                ),
            };
            let pl = [bx, v.wall_y(bx, bz) + 1.0, bz];
            let portal = anat.target_to_anat(pl);
            let foraminal = rng.random_bool(0.3);
            let fside = if bx >= 0.0 { 1.0 } else { -1.0 };
            let allowed = |i: usize| {
                g.label[i] == labels::CANAL
                    && matches!(g.tissue[i], Tissue::EpiduralFat | Tissue::Blood | Tissue::Lytic)
            };
            let cost = |i: usize| {
                let l = local(i);
                let post = (l[1] - v.wall_y(l[0], l[2]) - 3.0).max(0.0) * 0.25;
                let lat = if foraminal { -0.04 * (fside * l[0]) } else { 0.0 };
                0.05 * dist(l, pl) + post + lat + 1.0
            };
            let seed = nearest_allowed(g, portal, &allowed);
            (
                seed.map(|_| portal),
                seed.map(|s| percolate(g, &[s], n, rng, &allowed, &cost, 1.0)).unwrap_or_default(),
            )
        }
        Site::PosteriorVein => {
            let y = v.wall_y(0.0, v.bv_z) + 1.3;
            let len_up = rng.random_range(8.0..22.0);
            let len_dn = rng.random_range(8.0..22.0);
            let drift = rng.random_range(0.5..3.0);
            let hub = [0.0, y, v.bv_z];
            let paths = [
                vec![[0.0, v.yw0 - 1.0, v.bv_z], hub],
                vec![hub, [side * drift, y, v.bv_z + len_up]],
                vec![hub, [-side * drift, y, v.bv_z - len_dn]],
            ];
            let portal = anat.target_to_anat([0.0, v.wall_y(0.0, v.bv_z) + 0.5, v.bv_z]);
            let allowed = |i: usize| {
                g.label[i] == labels::CANAL
                    && !matches!(g.tissue[i], Tissue::Csf | Tissue::Cord | Tissue::NerveRoot)
            };
            (Some(portal), tube_order(g, &paths, 1.6, len_up.max(len_dn) + 2.0, n, &local, &allowed))
        }
        Site::Disc => {
            let up = rng.random_bool(0.5);
            let x = rng.random_range(-0.5..0.5) * v.a;
            let y = rng.random_range(-0.5..0.2) * v.b;
            // Portal in the mid-plane of the disc: cement crossing the endplate spreads inside the disc.
            let z =
                if up { v.top_at(x, y) + v.disc_above * 0.45 } else { v.bot_at(x, y) - v.disc_below * 0.45 };
            let pl = [x, y, z];
            let portal = anat.target_to_anat(pl);
            let allowed = |i: usize| g.label[i] == labels::DISC && (local(i)[2] > 0.0) == up;
            let cost = |i: usize| {
                let l = local(i);
                0.04 * dist(l, pl) + 0.2 * (l[2] - pl[2]).abs()
            };
            let seed = nearest_allowed(g, portal, &allowed);
            (
                seed.map(|_| portal),
                seed.map(|s| percolate(g, &[s], n, rng, &allowed, &cost, 1.0)).unwrap_or_default(),
            )
        }
        Site::Paraspinal => {
            let pts = segmental_vein_points(v, side);
            let start = rng.random_range(2..6usize);
            let soft = |i: usize| {
                g.label[i] == 0
                    && matches!(
                        g.tissue[i],
                        Tissue::Fat | Tissue::Muscle | Tissue::Blood | Tissue::EpiduralFat | Tissue::Viscera
                    )
            };
            let portal = anat.target_to_anat(pts[start]);
            if rng.random_bool(0.6) {
                // Along the segmental vein, both ways from the portal.
                let fwd: Vec<[f64; 3]> = pts[start..].to_vec();
                let mut back: Vec<[f64; 3]> = pts[..=start].to_vec();
                back.reverse();
                let paths = [fwd, back];
                (Some(portal), tube_order(g, &paths, 2.2, 12.0, n, &local, &soft))
            } else {
                let pl = pts[start];
                let cost = |i: usize| 0.08 * dist(local(i), pl);
                let seed = nearest_allowed(g, portal, &soft);
                (
                    seed.map(|_| portal),
                    seed.map(|s| percolate(g, &[s], n, rng, &soft, &cost, 1.0)).unwrap_or_default(),
                )
            }
        }
    }
}

pub(crate) fn nearest_allowed(g: &FineGrid, p: [f64; 3], allowed: &dyn Fn(usize) -> bool) -> Option<usize> {
    let r = (4.0 / g.spec.h).ceil() as isize;
    let c = g.spec.nearest(p)?;
    let [z, y, x] = g.spec.zyx(c);
    let d = g.spec.dims;
    let mut best: Option<(f64, usize)> = None;
    for dz in -r..=r {
        for dy in -r..=r {
            for dx in -r..=r {
                let (nz, ny, nx) = (z as isize + dz, y as isize + dy, x as isize + dx);
                if nz < 0
                    || ny < 0
                    || nx < 0
                    || nz >= d[0] as isize
                    || ny >= d[1] as isize
                    || nx >= d[2] as isize
                {
                    continue;
                }
                let i = g.spec.index(nz as usize, ny as usize, nx as usize);
                if allowed(i) {
                    let dd = (dz * dz + dy * dy + dx * dx) as f64;
                    if best.is_none_or(|b| dd < b.0) {
                        best = Some((dd, i));
                    }
                }
            }
        }
    }
    best.map(|b| b.1)
}

/// Voxels near polylines (local coordinates), ordered so the tube grows in length and girth together.
pub(crate) fn tube_order(
    g: &FineGrid,
    paths: &[Vec<[f64; 3]>],
    r_max: f64,
    len_norm: f64,
    n: usize,
    local: &dyn Fn(usize) -> [f64; 3],
    allowed: &dyn Fn(usize) -> bool,
) -> Vec<u32> {
    let mut cand: Vec<(u64, u32)> = Vec::new();
    let mut lo = [f64::MAX; 3];
    let mut hi = [f64::MIN; 3];
    for p in paths.iter().flatten() {
        for k in 0..3 {
            lo[k] = lo[k].min(p[k] - r_max - 6.0);
            hi[k] = hi[k].max(p[k] + r_max + 6.0);
        }
    }
    for i in 0..g.spec.len() {
        if !allowed(i) {
            continue;
        }
        let l = local(i);
        if (0..3).any(|k| l[k] < lo[k] || l[k] > hi[k]) {
            continue;
        }
        let mut best = f64::MAX;
        for path in paths {
            let mut s_acc = 0.0;
            for w in path.windows(2) {
                let (d, t) = seg_dist(l, w[0], w[1]);
                let seg_len = dist(w[0], w[1]);
                if d < r_max {
                    let s = s_acc + t * seg_len;
                    let k = (s / len_norm).max(d / r_max);
                    best = best.min(k);
                }
                s_acc += seg_len;
            }
        }
        if best < 1.0 {
            cand.push((key(best), i as u32));
        }
    }
    cand.sort_unstable();
    cand.into_iter().take(n).map(|c| c.1).collect()
}

/// Is this fine voxel in a basivertebral channel (for tests and diagnostics)?
pub fn in_basivertebral(anat: &Anatomy, p: [f64; 3]) -> bool {
    basivertebral_dist(anat.target(), anat.anat_to_target(p)) < 1.0
}
