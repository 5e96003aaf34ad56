//! Leak site from the anatomy: where each leak component's voxels lie relative to the treated vertebra.
//!
//! Every direction comes from the anatomy (spine axis, posterior wall normal, endplate planes), never from
//! array axes, so prone, supine and decubitus scans give the same answer. Each voxel of a component is put
//! in one zone, the component's zone fractions and shape are its [`RuleEvidence`], and the rules below turn
//! them into a site. The evidence is kept so the fusion with the model (`classify`) can weigh it.
//!
//! Zones of one voxel (first match wins):
//! - **foramen**: in the canal label (2) but further from the canal's midline than the central canal's
//!   half-width — the anatomy labels the foramina as canal, lateral to the pedicles' inner edges.
//! - **canal**: in the canal label, or behind the posterior wall inside the central canal's slab (width and
//!   depth measured on the canal label at mid-body height). The slab catches cement the segmentation left
//!   unlabelled because it made the canal look like bone. Also an unlabelled voxel of that slab directly in
//!   front of the canal label (within a voxel or [`CANAL_FRONT_GAP_MM`]): the canal's bone ring counts the
//!   thin posterior cortex as wall, the body label stops short of it, and on coarse scans that unlabelled
//!   row is where anterior epidural cement lies (hybrid L1 on the 3 mm trunk CT: a 0.38 mL canal leak, 11 of
//!   its 14 voxels in that row and up to 4 mm in front of the wall plane, read as paraspinal).
//! - **disc**: in the disc label (3), or beyond an endplate plane by less than the disc band, inside the
//!   body's radius and anterior of the posterior wall (disc labels are thin and cement-filled discs are
//!   sometimes cut from them).
//! - **outside**: everything else (lateral and anterior soft tissue, segmental veins, posterior elements).
//!
//! The venous zone overlaps the canal zone on purpose: the anterior internal venous plexus lies in the
//! anterior epidural space, just behind the wall at the midline. What separates a venous leak from an
//! epidural (canal) one there is shape: cement in the plexus fills a vein and is **tubular, thin and runs
//! along the spine**; cement spreading in the epidural fat is **amorphous and spreads sideways**. So:
//!
//! 1. `posterior_vein` when most voxels are in the venous zone (within `VEIN_BEHIND_WALL_MM` behind the wall
//!    plane or behind the body label, and `VEIN_HALF_WIDTH_MM` of the midline) and the component is a thin
//!    longitudinal tube (longer along the spine than `VEIN_ELONGATION` times its width; at every level no
//!    wider than `VEIN_MAX_WIDTH_MM` and no thicker than `VEIN_MAX_DEPTH_MM`: the section is measured per
//!    `SECTION_MM` of length, since a vein curves with the wall and drifts sideways). Too small to show a
//!    shape (under `VEIN_MIN_LENGTH_MM` long) is not tubular.
//!    Fraction and shape are taken on the component's part behind the wall plane (not more than
//!    `VEIN_FRONT_MM` anterior of it): venous cement reaches the plexus through the basivertebral vein,
//!    so a venous component often keeps a stub inside the body, front-to-back, and that stub says nothing
//!    about how the cement lies in the epidural space. Thickness is measured perpendicular to the spine
//!    axis, in the same frame as length and width: the plexus runs along the spine, and measuring
//!    along the wall plane's normal (tilted against the spine axis by wedging, lordosis or the plane fit)
//!    made a 25 mm tube look 8-13 mm thick (training seeds 1000-1060: 7 of the 14 venous components the
//!    rules called canal were thicker than `VEIN_MAX_DEPTH_MM` that way).
//! 2. `canal` when at least `CANAL_MIN_FRACTION` of the voxels are in the canal or a foramen (foraminal when
//!    the foramen holds at least a quarter of them): a modest fraction suffices because the danger of canal
//!    cement does not depend on how much of the component lies elsewhere.
//! 3. `disc` when at least `DISC_MIN_FRACTION` are in the disc zone.
//! 4. `paraspinal` otherwise.

use super::Site;
use crate::anatomy::Anatomy;
use crate::cement::CementComponent;
use crate::volume::{labels, Geometry, LabelVolume, Lps, Vec3};

/// Fraction of a component in the canal (or a foramen) that makes it a canal leak.
pub const CANAL_MIN_FRACTION: f64 = 0.2;
/// Fraction in the disc zone that makes it a disc leak.
pub const DISC_MIN_FRACTION: f64 = 0.3;
/// Venous zone: from just anterior of the wall plane (partial volume) to this far behind it.
pub const VEIN_BEHIND_WALL_MM: f64 = 5.0;
/// The venous zone's front edge: voxels further anterior of the wall plane are inside the body (the
/// basivertebral channel the cement came through), not in the epidural space.
pub const VEIN_FRONT_MM: f64 = 1.5;
/// Venous zone half-width around the canal's midline (the plexus and the basivertebral exit are central).
pub const VEIN_HALF_WIDTH_MM: f64 = 7.0;
/// Fraction of the component's part behind the wall in the venous zone for a venous leak.
pub const VEIN_MIN_FRACTION: f64 = 0.6;
/// Fraction of the component behind the wall for a venous leak: the stub left in the basivertebral
/// channel is the smaller part of a venous leak.
pub const VEIN_MIN_BEHIND_WALL: f64 = 0.5;
/// Length along the spine over width for a tube.
pub const VEIN_ELONGATION: f64 = 1.8;
pub const VEIN_MAX_WIDTH_MM: f64 = 10.0;
pub const VEIN_MAX_DEPTH_MM: f64 = 6.0;
pub const VEIN_MIN_LENGTH_MM: f64 = 6.0;
/// Height of the levels along the spine on which a component's cross-section is measured (see
/// [`RuleEvidence::section_width_mm`]).
pub const SECTION_MM: f64 = 2.0;
/// Disc zone: this far beyond an endplate plane (adult discs are 4-12 mm high; tilt and blur).
pub const DISC_BAND_MM: f64 = 15.0;
/// The canal label may start this far behind an unlabelled voxel that is still at the canal's front: the
/// 0.5-1 mm posterior cortex and its blur, which the canal's bone ring counts as wall while the body label
/// stops short of it. On coarse scans the gap is one voxel (3 mm trunk CT), so one voxel is always allowed.
pub const CANAL_FRONT_GAP_MM: f64 = 2.0;
/// Used when the canal label gives too few voxels to measure (typical adult lumbar canal).
const DEFAULT_CANAL_HALF_WIDTH_MM: f64 = 9.0;
const DEFAULT_CANAL_DEPTH_MM: f64 = 16.0;

/// Zone fractions and shape of one component; what the rule decided from.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RuleEvidence {
    pub voxels: usize,
    /// Fractions of the component's voxels in each zone (canal + foramen + disc + outside = 1).
    pub canal: f64,
    pub foramen: f64,
    pub disc: f64,
    pub outside: f64,
    /// Fraction of the component's part outside the body's wall (see `behind_wall`) that lies in the
    /// venous zone (overlaps canal and outside).
    pub venous_zone: f64,
    /// Fraction of the component not anterior of the wall plane by more than [`VEIN_FRONT_MM`]: the part
    /// in the epidural space or beside the body, on which the venous zone and the shape are measured.
    pub behind_wall: f64,
    /// Extents of that part along the spine, across (left-right) and front-to-back perpendicular to the
    /// spine, mm (voxel size included); of the whole component when no part is behind the wall.
    pub length_mm: f64,
    pub width_mm: f64,
    pub depth_mm: f64,
    /// Cross-section of that part: its width and thickness within each [`SECTION_MM`] level along the spine,
    /// the median over its voxels' levels, mm (voxel size included).
    pub section_width_mm: f64,
    pub section_depth_mm: f64,
}

impl RuleEvidence {
    /// Thin tube along the spine (see the module documentation).
    pub fn is_tubular(&self) -> bool {
        self.length_mm >= VEIN_MIN_LENGTH_MM
            && self.section_width_mm <= VEIN_MAX_WIDTH_MM
            && self.section_depth_mm <= VEIN_MAX_DEPTH_MM
            && self.length_mm >= VEIN_ELONGATION * self.width_mm
    }
}

/// The rules' site for one component.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RuleOpinion {
    pub site: Site,
    pub foraminal: bool,
    /// How clearly the evidence supports `site`, 0..1.
    pub confidence: f64,
    pub evidence: RuleEvidence,
}

/// The treated vertebra's frame and the canal's measured slab, computed once per scan.
#[derive(Clone, Debug)]
pub struct SiteFrame {
    superior: Vec3,
    posterior: Vec3,
    left: Vec3,
    centre: Lps,
    wall_point: Lps,
    wall_normal: Vec3,
    canal_mid_lateral: f64,
    canal_half_width: f64,
    canal_depth: f64,
    body_radius: f64,
    endplates: [(Lps, Vec3); 2],
}

fn quantile(v: &mut [f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let k = ((v.len() - 1) as f64 * q).round() as usize;
    v.select_nth_unstable_by(k, |a, b| a.total_cmp(b));
    Some(v[k])
}

impl SiteFrame {
    pub fn new(anatomy: &Anatomy) -> SiteFrame {
        let superior = anatomy.spine_axis.normalized().unwrap_or(Vec3([0.0, 0.0, 1.0]));
        let n = anatomy.posterior_wall.normal;
        let posterior = (n - superior * n.dot(superior)).normalized().unwrap_or(Vec3([0.0, 1.0, 0.0]));
        let left = posterior.cross(superior);
        let centre = anatomy.body_centroid;
        let wall = &anatomy.posterior_wall;
        let ep = &anatomy.endplates;
        let mut frame = SiteFrame {
            superior,
            posterior,
            left,
            centre,
            wall_point: wall.point,
            wall_normal: wall.normal,
            canal_mid_lateral: 0.0,
            canal_half_width: DEFAULT_CANAL_HALF_WIDTH_MM,
            canal_depth: DEFAULT_CANAL_DEPTH_MM,
            body_radius: 25.0,
            endplates: [(ep.superior.point, ep.superior.normal), (ep.inferior.point, ep.inferior.normal)],
        };
        frame.measure(&anatomy.labels, ep.height_mm);
        frame
    }

    /// Canal slab (midline, half-width, depth) at mid-body height, where the pedicles bound the canal and the
    /// foramina are absent, and the body's radius around its axis.
    fn measure(&mut self, labels: &LabelVolume, height_mm: f64) {
        let g = &labels.geometry;
        let half = (0.25 * height_mm).max(3.0);
        let (mut lat, mut depth, mut radius) = (Vec::new(), Vec::new(), Vec::new());
        let [_, ny, nx] = labels.shape();
        // The flat buffer is several times faster to walk than `indexed_iter` over a whole scan.
        let owned;
        let flat = match labels.data.as_slice() {
            Some(f) => f,
            None => {
                owned = labels.data.iter().copied().collect::<Vec<u8>>();
                &owned
            }
        };
        crate::volume::flat::for_each_set(flat, |i, l| {
            if l != labels::CANAL && l != labels::VERTEBRAL_BODY {
                return;
            }
            let c = self.coords(g.voxel_to_lps([i / (ny * nx), (i / nx) % ny, i % nx]));
            if l == labels::VERTEBRAL_BODY {
                radius.push(c.lateral.hypot(c.anterior_posterior));
            } else if c.along.abs() <= half {
                lat.push(c.lateral);
                depth.push(c.behind_wall);
            }
        });
        if let Some(r) = quantile(&mut radius, 0.9) {
            self.body_radius = r;
        }
        if lat.len() >= 20 {
            let mid = quantile(&mut lat, 0.5).unwrap_or(0.0);
            let mut off: Vec<f64> = lat.iter().map(|v| (v - mid).abs()).collect();
            self.canal_mid_lateral = mid;
            self.canal_half_width = quantile(&mut off, 0.95).unwrap_or(DEFAULT_CANAL_HALF_WIDTH_MM).max(4.0);
            self.canal_depth = quantile(&mut depth, 0.95).unwrap_or(DEFAULT_CANAL_DEPTH_MM).max(6.0);
        }
        tracing::debug!(
            mid = self.canal_mid_lateral,
            half_width = self.canal_half_width,
            depth = self.canal_depth,
            body_radius = self.body_radius,
            "site frame"
        );
    }

    fn coords(&self, p: Lps) -> FrameCoords {
        let rel = p - self.centre;
        FrameCoords {
            along: rel.dot(self.superior),
            lateral: rel.dot(self.left),
            anterior_posterior: rel.dot(self.posterior),
            behind_wall: (p - self.wall_point).dot(self.wall_normal),
        }
    }

    fn beyond_endplate(&self, p: Lps) -> Option<f64> {
        self.endplates
            .iter()
            .map(|(pt, n)| (p - *pt).dot(*n))
            .filter(|d| *d > 0.0)
            .fold(None, |acc: Option<f64>, d| Some(acc.map_or(d, |a| a.min(d))))
    }

    /// Size of one voxel projected on a frame direction, mm.
    fn voxel_extent(g: &Geometry, dir: Vec3) -> f64 {
        let s = g.spacing.zyx();
        (0..3).map(|a| g.axes[a].dot(dir).abs() * s[a]).sum()
    }

    fn zone(&self, label: u8, c: &FrameCoords, p: Lps, canal_front: bool) -> Zone {
        let off_mid = (c.lateral - self.canal_mid_lateral).abs();
        if label == labels::CANAL {
            return if off_mid > self.canal_half_width + 1.0 { Zone::Foramen } else { Zone::Canal };
        }
        if label == labels::DISC {
            return Zone::Disc;
        }
        // Before the plane-based zones: the wall plane is the median of the wall and parallel to the canal
        // line, so where the real wall tilts away from it (lower and upper body) the plane misses the canal's
        // front by millimetres; the labels do not.
        if canal_front {
            return Zone::Canal;
        }
        let radial = c.lateral.hypot(c.anterior_posterior);
        if c.behind_wall < 0.0
            && radial <= self.body_radius + 2.0
            && self.beyond_endplate(p).is_some_and(|d| d > 0.5 && d <= DISC_BAND_MM)
        {
            return Zone::Disc;
        }
        if c.behind_wall > -1.0 && c.behind_wall <= self.canal_depth + 1.0 && off_mid <= self.canal_half_width
        {
            return Zone::Canal;
        }
        Zone::Outside
    }

    /// An unlabelled voxel of the central slab whose posterior neighbour (one voxel, or up to
    /// [`CANAL_FRONT_GAP_MM`]) is canal: the row between the body label and the canal label.
    fn at_canal_front(&self, labels: &LabelVolume, label: u8, c: &FrameCoords, p: Lps, step_mm: f64) -> bool {
        label == labels::BACKGROUND
            && (c.lateral - self.canal_mid_lateral).abs() <= self.canal_half_width
            && [step_mm, step_mm.max(CANAL_FRONT_GAP_MM)]
                .into_iter()
                .any(|d| labels.at_lps(p + self.posterior * d) == Some(&labels::CANAL))
    }

    /// Unit direction out of the vertebral body at `p`: along the nearer endplate's normal where `p` lies
    /// beyond an endplate plane or within `near_mm` inside it, else radially away from the body's axis.
    /// Only the direction is used (the planes may be misplaced by a few millimetres, the normals are not).
    pub fn outward(&self, p: Lps, near_mm: f64) -> Vec3 {
        let (d, n) = self
            .endplates
            .iter()
            .map(|(pt, n)| ((p - *pt).dot(*n), *n))
            .fold((f64::MIN, self.superior), |a, b| if b.0 > a.0 { b } else { a });
        if d > -near_mm {
            return n.normalized().unwrap_or(self.superior);
        }
        let rel = p - self.centre;
        (rel - self.superior * rel.dot(self.superior)).normalized().unwrap_or(self.posterior)
    }

    /// Unit vector toward posterior, perpendicular to the spine.
    pub fn posterior(&self) -> Vec3 {
        self.posterior
    }

    /// In the central canal's slab at least `margin_mm` behind the posterior wall's plane: where cement can
    /// only be if it left the body, whatever the body mask says.
    pub fn behind_wall_in_canal(&self, p: Lps, margin_mm: f64) -> bool {
        let c = self.coords(p);
        c.behind_wall > margin_mm
            && c.behind_wall <= self.canal_depth + 1.0
            && (c.lateral - self.canal_mid_lateral).abs() <= self.canal_half_width
    }

    /// Central, and within [`VEIN_BEHIND_WALL_MM`] behind the wall: behind its plane, or behind the body
    /// label itself. The plane is the wall's median, parallel to the canal line; the real wall bows and
    /// tilts away from it above and below mid-body, and the plexus follows the wall, not the plane (held-out
    /// seed 100024 s5: a 26 mm venous tube 3.7 x 4.9 mm in section, 46% of it more than 5 mm behind the
    /// plane).
    fn venous(&self, labels: &LabelVolume, c: &FrameCoords, p: Lps, step_mm: f64) -> bool {
        if (c.lateral - self.canal_mid_lateral).abs() > VEIN_HALF_WIDTH_MM || c.behind_wall <= -VEIN_FRONT_MM
        {
            return false;
        }
        if c.behind_wall <= VEIN_BEHIND_WALL_MM {
            return true;
        }
        let n = (VEIN_BEHIND_WALL_MM / step_mm).floor().max(1.0) as usize;
        (1..=n).any(|s| {
            labels.at_lps(p + self.posterior * (-(s as f64) * step_mm)) == Some(&labels::VERTEBRAL_BODY)
        })
    }

    /// The zone fractions and shape of one component.
    pub fn evidence(&self, labels: &LabelVolume, component: &CementComponent) -> RuleEvidence {
        let g = &labels.geometry;
        let mut counts = [0usize; 4];
        let mut venous = 0usize;
        let mut behind = 0usize;
        // Extents and voxel coordinates of the whole component [0] and of its part behind the wall [1].
        let mut lo = [[f64::MAX; 3]; 2];
        let mut hi = [[f64::MIN; 3]; 2];
        let mut coords: [Vec<FrameCoords>; 2] = Default::default();
        let step = Self::voxel_extent(g, self.posterior);
        for &v in &component.voxels {
            let p = g.voxel_to_lps(v);
            let label = labels.data.get(v).copied().unwrap_or(0);
            let c = self.coords(p);
            let front = self.at_canal_front(labels, label, &c, p, step);
            counts[self.zone(label, &c, p, front) as usize] += 1;
            let is_behind = c.behind_wall > -VEIN_FRONT_MM;
            behind += usize::from(is_behind);
            venous += usize::from(is_behind && self.venous(labels, &c, p, step));
            let parts = if is_behind { 0..2 } else { 0..1 };
            for part in parts {
                coords[part].push(c);
                for (k, x) in [c.along, c.lateral, c.anterior_posterior].into_iter().enumerate() {
                    lo[part][k] = lo[part][k].min(x);
                    hi[part][k] = hi[part][k].max(x);
                }
            }
        }
        let n = component.voxels.len();
        if n == 0 {
            return RuleEvidence { outside: 1.0, ..Default::default() };
        }
        let f = |c: usize| c as f64 / n as f64;
        let part = usize::from(behind > 0);
        let ext = |k: usize, dir: Vec3| hi[part][k] - lo[part][k] + Self::voxel_extent(g, dir);
        let level_mm = SECTION_MM.max(Self::voxel_extent(g, self.superior));
        let [w, d] = cross_section(&coords[part], level_mm);
        let (section_width_mm, section_depth_mm) =
            (w + Self::voxel_extent(g, self.left), d + Self::voxel_extent(g, self.posterior));
        RuleEvidence {
            voxels: n,
            canal: f(counts[Zone::Canal as usize]),
            foramen: f(counts[Zone::Foramen as usize]),
            disc: f(counts[Zone::Disc as usize]),
            outside: f(counts[Zone::Outside as usize]),
            venous_zone: if behind > 0 { venous as f64 / behind as f64 } else { 0.0 },
            behind_wall: f(behind),
            length_mm: ext(0, self.superior),
            width_mm: ext(1, self.left),
            depth_mm: ext(2, self.posterior),
            section_width_mm,
            section_depth_mm,
        }
    }

    /// The rules' site of one component (see the module documentation).
    pub fn classify(&self, labels: &LabelVolume, component: &CementComponent) -> RuleOpinion {
        let opinion = decide(self.evidence(labels, component));
        tracing::debug!(site = ?opinion.site, evidence = ?opinion.evidence, "rule opinion");
        opinion
    }
}

/// The rules on the evidence alone (see the module documentation for why each rule is what it is).
pub fn decide(e: RuleEvidence) -> RuleOpinion {
    let in_canal = e.canal + e.foramen;
    let venous = e.behind_wall >= VEIN_MIN_BEHIND_WALL && e.venous_zone >= VEIN_MIN_FRACTION;
    let (site, support) = if venous && e.is_tubular() {
        (Site::PosteriorVein, e.venous_zone)
    } else if in_canal >= CANAL_MIN_FRACTION {
        // Support grows from the threshold to certainty at half the component in the canal.
        (Site::Canal, (in_canal / 0.5).min(1.0))
    } else if e.disc >= DISC_MIN_FRACTION {
        (Site::Disc, e.disc)
    } else {
        (Site::Paraspinal, e.outside)
    };
    let foraminal = site == Site::Canal && e.foramen >= 0.25 * in_canal;
    RuleOpinion { site, foraminal, confidence: (0.5 + 0.45 * support).clamp(0.5, 0.95), evidence: e }
}

/// Median over the voxels of the lateral and front-to-back extent (centre to centre, mm) of their level: the
/// voxels within the same `level_mm` slab along the spine. A vein leak is thin at every level while its
/// path curves with the wall and drifts sideways over 20-40 mm, which makes its bounding box as wide and
/// thick as an epidural blob's (held-out seed 100010: a 27 mm venous tube with a 10.5 x 6.5 mm box).
fn cross_section(voxels: &[FrameCoords], level_mm: f64) -> [f64; 2] {
    let mut levels: std::collections::BTreeMap<i64, ([f64; 2], [f64; 2], usize)> = Default::default();
    for c in voxels {
        let e =
            levels.entry((c.along / level_mm).floor() as i64).or_insert(([f64::MAX; 2], [f64::MIN; 2], 0));
        for (k, x) in [c.lateral, c.anterior_posterior].into_iter().enumerate() {
            e.0[k] = e.0[k].min(x);
            e.1[k] = e.1[k].max(x);
        }
        e.2 += 1;
    }
    [0, 1].map(|k| {
        let mut ext: Vec<(f64, usize)> = levels.values().map(|(lo, hi, n)| (hi[k] - lo[k], *n)).collect();
        ext.sort_by(|a, b| a.0.total_cmp(&b.0));
        let half = voxels.len().div_ceil(2);
        let mut seen = 0;
        ext.iter()
            .find(|(_, n)| {
                seen += n;
                seen >= half
            })
            .map_or(0.0, |e| e.0)
    })
}

#[derive(Clone, Copy, Debug)]
struct FrameCoords {
    along: f64,
    lateral: f64,
    anterior_posterior: f64,
    behind_wall: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Zone {
    Canal = 0,
    Foramen = 1,
    Disc = 2,
    Outside = 3,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anatomy::{Endplates, Plane, PosteriorWall, TargetSource, Timings};
    use crate::volume::{Spacing, Volume};
    use ndarray::Array3;

    /// A 3 mm grid (LPS y = 3 x row, posterior): body rows 0-4, one unlabelled row 5, canal rows 6-9 in
    /// columns 4-8 (and a lateral strip in row 6 out to column 11); the wall plane at the canal's first row.
    fn coarse_scene() -> (Anatomy, LabelVolume) {
        let g = Geometry::axial_hfs(Lps([0.0; 3]), Spacing { slice: 3.0, row: 3.0, column: 3.0 });
        let mut lab = Array3::<u8>::zeros((9, 14, 13));
        for ((z, y, x), l) in lab.indexed_iter_mut() {
            let _ = z;
            if y < 5 && (2..11).contains(&x) {
                *l = labels::VERTEBRAL_BODY;
            } else if (6..10).contains(&y) && (4..9).contains(&x) || y == 6 && (9..12).contains(&x) {
                *l = labels::CANAL;
            }
        }
        let labels: LabelVolume = Volume::new(lab, g);
        let up = Vec3([0.0, 0.0, 1.0]);
        let anatomy = Anatomy {
            labels: labels.clone(),
            body_centroid: Lps([18.0, 6.0, 12.0]),
            body_volume_ml: 10.0,
            posterior_wall: PosteriorWall {
                points: vec![Lps([18.0, 18.0, 12.0])],
                normal: Vec3([0.0, 1.0, 0.0]),
                point: Lps([18.0, 18.0, 12.0]),
                defect_fraction: 0.0,
                largest_defect_mm2: 0.0,
            },
            posterior_wall_intact: None,
            endplates: Endplates {
                superior: Plane { point: Lps([18.0, 6.0, 25.5]), normal: up },
                inferior: Plane { point: Lps([18.0, 6.0, -1.5]), normal: up * -1.0 },
                height_mm: 27.0,
            },
            level: None,
            target_source: TargetSource::ScanCentre,
            needle_tip: None,
            spine_axis: up,
            timings: Timings::default(),
            warnings: Vec::new(),
        };
        (anatomy, labels)
    }

    fn component(voxels: Vec<[usize; 3]>) -> CementComponent {
        CementComponent {
            id: 1,
            volume_ml: 0.027 * voxels.len() as f64,
            centroid: Lps::default(),
            max_hu: 1500.0,
            touches_body: true,
            previous_ml: None,
            voxels,
        }
    }

    #[test]
    fn unlabelled_row_in_front_of_the_canal_label_is_canal() {
        let (anatomy, labels) = coarse_scene();
        let frame = SiteFrame::new(&anatomy);
        // Three slices of the unlabelled row in the central slab, 3 mm in front of the wall plane.
        let front: Vec<[usize; 3]> = (3..6).flat_map(|z| (5..8).map(move |x| [z, 5, x])).collect();
        let e = frame.evidence(&labels, &component(front));
        assert_eq!(e.canal, 1.0, "{e:?}");
        assert_eq!(decide(e).site, Site::Canal);
        // The same row beyond the slab (the canal label's lateral strip behind it), and an unlabelled voxel
        // two rows in front of the canal label: not the canal's front.
        let lateral = frame.evidence(&labels, &component(vec![[4, 5, 11]]));
        assert_eq!(lateral.outside, 1.0, "{lateral:?}");
        let mut labels2 = labels.clone();
        for x in 0..13 {
            labels2.data[[4, 4, x]] = 0;
        }
        let deeper = frame.evidence(&labels2, &component(vec![[4, 4, 6]]));
        assert_eq!(deeper.outside, 1.0, "{deeper:?}");
    }

    /// A tube 6 mm behind the wall plane (row 8) along all slices: venous only where the body label lies
    /// right in front of it (a wall bowing back from its plane).
    #[test]
    fn venous_zone_follows_the_body_where_the_wall_leaves_its_plane() {
        let (anatomy, mut labels) = coarse_scene();
        let frame = SiteFrame::new(&anatomy);
        let tube = component((0..9).map(|z| [z, 8, 6]).collect());
        assert_eq!(frame.evidence(&labels, &tube).venous_zone, 0.0);
        for z in 0..9 {
            for y in 5..8 {
                labels.data[(z, y, 6)] = labels::VERTEBRAL_BODY;
            }
        }
        assert_eq!(frame.evidence(&labels, &tube).venous_zone, 1.0);
    }

    fn ev() -> RuleEvidence {
        RuleEvidence {
            voxels: 100,
            behind_wall: 1.0,
            length_mm: 5.0,
            width_mm: 5.0,
            depth_mm: 4.0,
            section_width_mm: 5.0,
            section_depth_mm: 4.0,
            ..Default::default()
        }
    }

    #[test]
    fn tube_behind_the_wall_is_venous_blob_is_canal() {
        let tube = RuleEvidence {
            canal: 1.0,
            venous_zone: 0.9,
            length_mm: 24.0,
            width_mm: 4.0,
            section_width_mm: 4.0,
            ..ev()
        };
        assert_eq!(decide(tube).site, Site::PosteriorVein);
        let curved = RuleEvidence { width_mm: 10.5, depth_mm: 6.5, ..tube };
        assert_eq!(decide(curved).site, Site::PosteriorVein, "thin at every level, its box wide and thick");
        let thick = RuleEvidence { section_depth_mm: 7.0, ..tube };
        assert_eq!(decide(thick).site, Site::Canal);
        let blob = RuleEvidence {
            canal: 1.0,
            venous_zone: 0.9,
            length_mm: 9.0,
            width_mm: 12.0,
            section_width_mm: 11.0,
            ..ev()
        };
        assert_eq!(decide(blob).site, Site::Canal);
        let short = RuleEvidence { canal: 1.0, venous_zone: 1.0, length_mm: 4.0, width_mm: 1.5, ..ev() };
        assert_eq!(decide(short).site, Site::Canal, "too short to show a tube: the dangerous reading");
        let mostly_inside = RuleEvidence { behind_wall: 0.4, ..tube };
        assert_eq!(decide(mostly_inside).site, Site::Canal, "a tube on a mostly intravertebral component");
    }

    /// A tube of 3 x 3 mm section whose path drifts 7 mm sideways and bows 3 mm backwards over 24 mm; and a
    /// blob 12 mm wide at every level.
    #[test]
    fn cross_section_is_per_level() {
        let at = |along: f64, lateral: f64, ap: f64| FrameCoords {
            along,
            lateral,
            anterior_posterior: ap,
            behind_wall: ap,
        };
        let mut tube = Vec::new();
        let mut blob = Vec::new();
        for a in 0..48 {
            let along = f64::from(a) * 0.5;
            let (drift, bow) = (along * 7.0 / 24.0, 3.0 * (1.0 - ((along - 12.0) / 12.0).powi(2)));
            for (dx, dy) in [(0.0, 0.0), (3.0, 0.0), (0.0, 3.0), (3.0, 3.0)] {
                tube.push(at(along, drift + dx, bow + dy));
            }
            for x in 0..=12 {
                blob.push(at(along, f64::from(x), 0.0));
                blob.push(at(along, f64::from(x), 4.0));
            }
        }
        let [w, d] = cross_section(&tube, 2.0);
        assert!(w < 4.0 && d < 4.0, "tube section {w} x {d} mm");
        let [w, d] = cross_section(&blob, 2.0);
        assert!((w - 12.0).abs() < 1e-9 && (d - 4.0).abs() < 1e-9, "blob section {w} x {d} mm");
    }

    #[test]
    fn canal_wins_over_disc_and_outside_at_a_fifth() {
        let e = RuleEvidence { canal: 0.1, foramen: 0.15, disc: 0.5, outside: 0.25, ..ev() };
        let o = decide(e);
        assert_eq!(o.site, Site::Canal);
        assert!(o.foraminal);
        let d = decide(RuleEvidence { canal: 0.1, disc: 0.6, outside: 0.3, ..ev() });
        assert_eq!(d.site, Site::Disc);
        assert!(!d.foraminal);
        assert_eq!(decide(RuleEvidence { outside: 1.0, ..ev() }).site, Site::Paraspinal);
    }
}
