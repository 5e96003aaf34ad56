//! The split of the cement into intravertebral cement and leak components, redone on another body mask.
//!
//! The cement stage splits by the body it was given before it registered the baseline; when the anatomy
//! comes from the baseline, the body that counts is the one carried through that registration (see
//! `carry`). Cement inside the carried body grown by the cement stage's tolerance is intravertebral; the
//! rest forms 26-connected leak components, and components under the smallest leak size are dropped as the
//! cement stage drops them.
//!
//! Volumes: the cement stage's partial-volume volumes are kept where the parts do not change; a voxel that
//! changes part carries the mean partial-volume share of the part it came from (the fraction maps stay in
//! the cement stage), so the total is preserved.

use crate::cement::{CementComponent, CementFindings};
use crate::volume::{CtVolume, Lps, Mask};
use std::collections::{HashMap, HashSet};

/// Cement-like density in an earlier scan (the cement stage's seed level), for `previous_ml`.
const CEMENT_HU: f32 = 1000.0;

/// What changed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Resplit {
    /// Cement voxels that changed part (intravertebral <-> leak).
    pub moved_voxels: usize,
    /// Leak components before and after.
    pub leaks_before: usize,
    pub leaks_after: usize,
}

/// The canal margin rule's inputs (`cement::region`): the canal label on the scan grid, and whether the
/// registered baseline shows the wall's cortex in front of a voxel.
pub struct CanalMargin<'a> {
    pub canal: &'a Mask,
    pub behind_wall: &'a dyn Fn([usize; 3]) -> bool,
}

/// Redo the split of `findings` with `body` (scan grid). `tolerance_mm` and `min_leak_ml` are the cement
/// stage's (`CementParams::body_tolerance_mm`, `min_leak_ml`); `canal` (scan grid, when known) keeps a
/// leak's canal part within that tolerance with the leak where `behind_wall` (the baseline's cortex in
/// front of the voxel) holds, as the cement stage does (`cement::region`);
/// `previous` gives changed leaks their volume in the previous scan.
pub fn resplit(
    findings: &mut CementFindings,
    body: &Mask,
    canal: Option<CanalMargin>,
    tolerance_mm: f64,
    min_leak_ml: f64,
    scan: &CtVolume,
    previous: Option<&CtVolume>,
) -> Resplit {
    let g = findings.cement.geometry;
    let shape = findings.cement.shape();
    let voxel_ml = g.spacing.voxel_volume_ml();
    // Part of every cement voxel now: 0 intravertebral, k + 1 leak k; and its share of a voxel's volume.
    let mut part: HashMap<[usize; 3], (usize, f64)> = HashMap::new();
    let intra = super::measure::mask_voxels(&findings.intravertebral);
    let intra_w = if intra.is_empty() { voxel_ml } else { findings.intravertebral_ml / intra.len() as f64 };
    for v in &intra {
        part.insert(*v, (0, intra_w));
    }
    for (k, c) in findings.leaks.iter().enumerate() {
        let w = c.volume_ml / c.voxels.len().max(1) as f64;
        for v in &c.voxels {
            part.insert(*v, (k + 1, w));
        }
    }
    for v in super::measure::mask_voxels(&findings.cement) {
        part.entry(v).or_insert((0, intra_w));
    }
    let r = g.spacing.zyx().map(|s| (tolerance_mm / s).round().max(0.0) as usize);
    let in_region = |v: [usize; 3]| -> bool {
        for z in v[0].saturating_sub(r[0])..=(v[0] + r[0]).min(shape[0] - 1) {
            for y in v[1].saturating_sub(r[1])..=(v[1] + r[1]).min(shape[1] - 1) {
                for x in v[2].saturating_sub(r[2])..=(v[2] + r[2]).min(shape[2] - 1) {
                    if body.data[[z, y, x]] {
                        return true;
                    }
                }
            }
        }
        false
    };
    let mut voxels: Vec<[usize; 3]> = part.keys().copied().collect();
    voxels.sort_unstable();
    let mut region: HashSet<[usize; 3]> = voxels.iter().copied().filter(|v| in_region(*v)).collect();
    // The body's margin inside the canal goes with cement just beyond it (the cement stage's rule,
    // `cement::region`): a wall a voxel off must not split a canal leak's front row off.
    if let Some(CanalMargin { canal, behind_wall }) = canal.filter(|c| c.canal.shape() == shape) {
        let give: Vec<[usize; 3]> = region
            .iter()
            .copied()
            .filter(|v| !body.data[*v] && canal.data[*v])
            .filter(|v| {
                super::voxels::neighbours26(*v).any(|d| part.contains_key(&d) && !region.contains(&d))
            })
            .filter(|v| behind_wall(*v))
            .collect();
        for v in &give {
            region.remove(v);
        }
    }
    let mut stats = Resplit { leaks_before: findings.leaks.len(), ..Default::default() };
    stats.moved_voxels = voxels.iter().filter(|v| region.contains(*v) != (part[*v].0 == 0)).count();
    if stats.moved_voxels == 0 {
        stats.leaks_after = stats.leaks_before;
        return stats;
    }
    let outside: HashSet<[usize; 3]> = voxels.iter().copied().filter(|v| !region.contains(v)).collect();
    let mut leaks = Vec::new();
    let old: Vec<Vec<[usize; 3]>> = findings.leaks.iter().map(|c| sorted(c.voxels.clone())).collect();
    for comp in super::voxels::components26(&outside) {
        let comp = sorted(comp);
        let volume_ml: f64 = comp.iter().map(|v| part[v].1).sum();
        if volume_ml < min_leak_ml {
            for v in &comp {
                findings.cement.data[*v] = false;
            }
            findings.total_ml = (findings.total_ml - volume_ml).max(0.0);
            continue;
        }
        // Unchanged components keep what the cement stage measured.
        if let Some(k) = old.iter().position(|o| *o == comp) {
            leaks.push(findings.leaks[k].clone());
            continue;
        }
        let mut sum = [0.0; 3];
        let mut max_hu = f32::MIN;
        for v in &comp {
            let w = part[v].1;
            for (s, c) in sum.iter_mut().zip(g.voxel_to_lps(*v).0) {
                *s += w * c;
            }
            max_hu = max_hu.max(scan.hu(*v).unwrap_or(f32::MIN));
        }
        let touches_body = comp.iter().any(|v| {
            super::voxels::neighbours26(*v).any(|d| region.contains(&d) || body.data.get(d) == Some(&true))
        });
        let previous_ml = previous.map(|p| previous_ml(findings, p, &comp));
        leaks.push(CementComponent {
            id: 0,
            centroid: Lps(sum.map(|s| s / volume_ml.max(f64::MIN_POSITIVE))),
            voxels: comp,
            volume_ml,
            max_hu,
            touches_body,
            previous_ml,
        });
    }
    leaks.sort_by(|a, b| b.volume_ml.total_cmp(&a.volume_ml));
    for (k, l) in leaks.iter_mut().enumerate() {
        l.id = k as u32 + 1;
    }
    findings.intravertebral.data.fill(false);
    let mut intra_ml = 0.0;
    for v in &region {
        findings.intravertebral.data[*v] = true;
        intra_ml += part[v].1;
    }
    findings.intravertebral_ml = intra_ml;
    stats.leaks_after = leaks.len();
    findings.leaks = leaks;
    stats
}

fn sorted(mut v: Vec<[usize; 3]>) -> Vec<[usize; 3]> {
    v.sort_unstable();
    v
}

/// Cement-dense voxels of `comp` in the previous scan (registered), times the voxel volume: the leak's
/// volume then, for `new` and `grew_ml`.
pub fn previous_ml(findings: &CementFindings, prev: &CtVolume, comp: &[[usize; 3]]) -> f64 {
    let g = findings.cement.geometry;
    let t = findings.previous_registration.unwrap_or_default();
    let dense = comp
        .iter()
        .filter(|v| prev.hu_at_lps(t.apply(g.voxel_to_lps(**v))).is_some_and(|h| h >= CEMENT_HU))
        .count();
    dense as f64 * g.spacing.voxel_volume_ml()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::{Geometry, Spacing, Volume};
    use ndarray::Array3;

    fn grid() -> Geometry {
        Geometry::axial_hfs(Lps([0.0; 3]), Spacing { slice: 1.0, row: 1.0, column: 1.0 })
    }

    fn mask(f: impl Fn(usize, usize, usize) -> bool) -> Mask {
        Volume::new(Array3::from_shape_fn((6, 20, 20), |(z, y, x)| f(z, y, x)), grid())
    }

    #[test]
    fn cement_outside_the_moved_body_becomes_a_leak_and_volume_is_kept() {
        // Cement block x 4..12; the first body covered it all, the carried one stops at x = 8.
        let cement = mask(|z, y, x| (1..4).contains(&z) && (4..8).contains(&y) && (4..12).contains(&x));
        let n = cement.data.iter().filter(|c| **c).count();
        let mut f = CementFindings {
            intravertebral: cement.clone(),
            metal: mask(|_, _, _| false),
            cement,
            leaks: Vec::new(),
            intravertebral_ml: n as f64 * 0.0008,
            total_ml: n as f64 * 0.0008,
            new_since_previous_ml: None,
            baseline_registration: None,
            previous_registration: None,
            warnings: Vec::new(),
        };
        let body = mask(|_, _, x| x < 8);
        let scan: CtVolume = Volume::new(Array3::from_elem((6, 20, 20), 1500), grid());
        let r = resplit(&mut f, &body, None, 1.0, 0.001, &scan, None);
        assert_eq!((r.leaks_before, r.leaks_after), (0, 1));
        // x 4..=8 stays inside (8 is within the 1 mm tolerance), x 9..12 leaks.
        let leak = &f.leaks[0];
        assert_eq!(leak.voxels.len(), 3 * 4 * 3);
        assert!(leak.voxels.iter().all(|v| v[2] >= 9));
        assert!(leak.touches_body);
        let total = f.intravertebral_ml + leak.volume_ml;
        assert!((total - f.total_ml).abs() < 1e-9, "volume carried with the voxels");
        // The same body again changes nothing.
        let again = resplit(&mut f, &body, None, 1.0, 0.001, &scan, None);
        assert_eq!(again.moved_voxels, 0);
    }
}
