//! Safety net for cement the body mask swallowed: intravertebral cement that lies clearly behind the
//! posterior wall, inside the canal, is a leak whatever the segmentation says.
//!
//! Why: bright cement in the anterior epidural space sits against the wall and can be taken into the body's
//! footprint by the anatomy stage (measured on phantom seed 7, L2: a 0.07 mL foraminal canal leak was
//! counted as intravertebral and the scan said `reduce` instead of `stop`). The wall's plane comes from the
//! median of the body's posterior edge across the canal, so a local bulge of cement does not move it; cement
//! more than [`ESCAPE_MARGIN_MM`] behind it and within the canal's width cannot be inside the body.

use crate::cement::{CementComponent, CementFindings};
use crate::leaks::rules::SiteFrame;
use crate::volume::{CtVolume, Lps};
use std::collections::HashSet;

/// Behind the wall plane by more than the cortex and a partial-volume voxel.
pub const ESCAPE_MARGIN_MM: f64 = 2.0;
/// Cement-like density in an earlier scan (the cement stage's seed level), for `previous_ml`.
const CEMENT_HU: f32 = 1000.0;

/// Move escaped cement from the intravertebral mask into new leak components (ids after the existing ones).
/// Returns how many components were moved.
pub fn split_escaped(
    findings: &mut CementFindings,
    frame: &SiteFrame,
    scan: &CtVolume,
    previous: Option<&CtVolume>,
    min_leak_ml: f64,
) -> usize {
    let g = findings.intravertebral.geometry;
    let escaped: HashSet<[usize; 3]> = findings
        .intravertebral
        .data
        .indexed_iter()
        .filter(|(_, &c)| c)
        .map(|((z, y, x), _)| [z, y, x])
        .filter(|v| frame.behind_wall_in_canal(g.voxel_to_lps(*v), ESCAPE_MARGIN_MM))
        .collect();
    if escaped.is_empty() {
        return 0;
    }
    let voxel_ml = g.spacing.voxel_volume_ml();
    let mut seen = HashSet::new();
    let mut moved = 0;
    let mut starts: Vec<[usize; 3]> = escaped.iter().copied().collect();
    starts.sort_unstable();
    for start in starts {
        if !seen.insert(start) {
            continue;
        }
        let mut comp = vec![start];
        let mut i = 0;
        while i < comp.len() {
            let v = comp[i];
            i += 1;
            for d in neighbours26(v) {
                if escaped.contains(&d) && seen.insert(d) {
                    comp.push(d);
                }
            }
        }
        let volume_ml = comp.len() as f64 * voxel_ml;
        if volume_ml < min_leak_ml {
            continue;
        }
        let (mut sum, mut max_hu) = ([0.0; 3], f32::MIN);
        for v in &comp {
            let p = g.voxel_to_lps(*v);
            for (s, c) in sum.iter_mut().zip(p.0) {
                *s += c;
            }
            max_hu = max_hu.max(scan.data.get(*v).copied().unwrap_or(f32::MIN));
            if let Some(c) = findings.intravertebral.data.get_mut(*v) {
                *c = false;
            }
        }
        let centroid = Lps(sum.map(|s| s / comp.len() as f64));
        let previous_ml = previous.map(|prev| {
            let t = findings.previous_registration.unwrap_or_default();
            let dense = comp
                .iter()
                .filter(|v| prev.at_lps(t.apply(g.voxel_to_lps(**v))).is_some_and(|h| *h >= CEMENT_HU))
                .count();
            dense as f64 * voxel_ml
        });
        findings.intravertebral_ml = (findings.intravertebral_ml - volume_ml).max(0.0);
        let id = findings.leaks.iter().map(|l| l.id).max().unwrap_or(0) + 1;
        tracing::warn!(volume_ml, %centroid, "intravertebral cement behind the posterior wall taken as a leak");
        findings.leaks.push(CementComponent {
            id,
            voxels: comp,
            volume_ml,
            centroid,
            max_hu,
            touches_body: true,
            previous_ml,
        });
        moved += 1;
    }
    moved
}

fn neighbours26(v: [usize; 3]) -> impl Iterator<Item = [usize; 3]> {
    (0..27).filter(|&k| k != 13).filter_map(move |k| {
        let d = [k / 9, (k / 3) % 3, k % 3];
        let mut out = [0usize; 3];
        for a in 0..3 {
            out[a] = (v[a] + d[a]).checked_sub(1)?;
        }
        Some(out)
    })
}
