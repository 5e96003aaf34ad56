//! The leak-site model's input: a small multi-channel cube around one leak component, sampled in a
//! vertebra-aligned frame at a fixed spacing in millimetres.
//!
//! ```text
//!   frame axes (from the anatomy, never from the array):
//!     d: along the spine toward superior          (Anatomy::spine_axis)
//!     h: posterior, orthogonal to the spine axis  (LPS posterior, Gram-Schmidt)
//!     w: away from the body's midline             (d x h, flipped for leaks right of the midline)
//!   centre: the component's partial-volume centroid; PATCH_SIZE^3 voxels of PATCH_SPACING_MM
//! ```
//!
//! Because every axis comes from patient coordinates, the same leak stored prone, supine or decubitus gives
//! the same patch (up to interpolation of the different grids). The left-right axis points away from the
//! body's midline so that left and right leaks look alike: the sites are symmetric, and the model does not
//! have to learn both sides from a few hundred phantom patches.
//!
//! Channels, in [`CHANNELS`] order: HU (clipped to -300..3000 and divided by 1000: air, soft tissue, bone
//! and cement stay distinguishable, while metal saturation and streak extremes do not dominate), the
//! component itself, the other cement (intravertebral), and the anatomy masks body, canal + foramina,
//! discs, posterior elements. Masks are sampled trilinearly as 0/1 fields, so a mask edge falls between
//! voxels instead of jumping with the scan's grid.

use crate::anatomy::Anatomy;
use crate::cement::{CementComponent, CementFindings};
use crate::volume::{labels, CtVolume, Lps, Vec3};
use ndarray::Array4;

/// Voxels along each axis of the patch.
pub const PATCH_SIZE: usize = 24;
/// Sampling step of the patch, mm: 24 x 1.5 mm = 36 mm, enough to show the body wall, canal or disc next
/// to a leak's centre.
pub const PATCH_SPACING_MM: f64 = 1.5;
/// Channel names, in the order of the patch's first axis (the training script reads the same order).
pub const CHANNELS: [&str; NCH] =
    ["hu", "component", "intravertebral_cement", "body", "canal", "disc", "posterior_elements"];

const NCH: usize = 7;

/// HU range kept in the HU channel, and the scale that maps it to about -0.3..3.
const HU_MIN: f32 = -300.0;
const HU_MAX: f32 = 3000.0;
const HU_SCALE: f32 = 1000.0;

/// One model input: `data` is `[channel, d, h, w]` with `CHANNELS.len()` channels of `PATCH_SIZE`^3.
#[derive(Clone, Debug, PartialEq)]
pub struct Patch {
    pub data: Array4<f32>,
    /// Centre of the patch (the component's centroid), LPS mm.
    pub centre: Lps,
    /// Unit LPS vectors of the patch axes d, h, w (superior, posterior, away from the midline).
    pub axes: [Vec3; 3],
    /// The component lies right of the body's midline, so the w axis points to the patient's right.
    pub mirrored: bool,
}

impl Patch {
    /// Shape of `data`: `[channels, size, size, size]`.
    pub const SHAPE: [usize; 4] = [CHANNELS.len(), PATCH_SIZE, PATCH_SIZE, PATCH_SIZE];

    /// LPS position of (possibly fractional) patch index `[d, h, w]`.
    pub fn index_to_lps(&self, idx: [f64; 3]) -> Lps {
        let half = (PATCH_SIZE as f64 - 1.0) / 2.0;
        let mut p = self.centre;
        for (ax, i) in self.axes.iter().zip(idx) {
            p = p + *ax * ((i - half) * PATCH_SPACING_MM);
        }
        p
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("{what} is {got:?} voxels but the scan is {scan:?}; every input must be on the scan's grid")]
    GridMismatch { what: &'static str, got: [usize; 3], scan: [usize; 3] },
    #[error("leak component {id} has no voxels")]
    EmptyComponent { id: u32 },
    #[error("leak component {id} has a voxel {voxel:?} outside the scan {scan:?}")]
    VoxelOutside { id: u32, voxel: [usize; 3], scan: [usize; 3] },
    #[error("leak component {id} has a non-finite centroid")]
    BadCentroid { id: u32 },
    #[error("the anatomy's spine axis {0:?} is not a direction")]
    BadSpineAxis(Vec3),
    #[error("the scan has a degenerate geometry (zero spacing or parallel axes)")]
    BadGeometry,
}

/// Sample the patch of `component` (one of `findings.leaks`) on `scan`.
pub fn extract_patch(
    scan: &CtVolume,
    anatomy: &Anatomy,
    findings: &CementFindings,
    component: &CementComponent,
) -> Result<Patch, PatchError> {
    let shape = scan.shape();
    for (what, got) in [
        ("the anatomy label map", anatomy.labels.shape()),
        ("the intravertebral cement mask", findings.intravertebral.shape()),
    ] {
        if got != shape {
            return Err(PatchError::GridMismatch { what, got, scan: shape });
        }
    }
    let id = component.id;
    if component.voxels.is_empty() {
        return Err(PatchError::EmptyComponent { id });
    }
    if let Some(v) = component.voxels.iter().find(|v| (0..3).any(|a| v[a] >= shape[a])) {
        return Err(PatchError::VoxelOutside { id, voxel: *v, scan: shape });
    }
    let centre = component.centroid;
    if !centre.0.iter().all(|c| c.is_finite()) {
        return Err(PatchError::BadCentroid { id });
    }
    let axes = frame_axes(anatomy, centre)?;
    let mirrored = axes[2].dot(crate::volume::Direction::Left.unit()) < 0.0;
    let patch = Patch { data: Array4::zeros(Patch::SHAPE), centre, axes, mirrored };

    // Scan index of every patch voxel is affine in the patch index: origin plus three steps.
    let g = &scan.geometry;
    let base = g.lps_to_index(patch.index_to_lps([0.0; 3]));
    if !base.iter().all(|v| v.is_finite()) {
        return Err(PatchError::BadGeometry);
    }
    let steps: [[f64; 3]; 3] = [0, 1, 2].map(|a| {
        let mut e = [0.0; 3];
        e[a] = 1.0;
        let q = g.lps_to_index(patch.index_to_lps(e));
        [q[0] - base[0], q[1] - base[1], q[2] - base[2]]
    });
    let local = LocalBox::around(&base, &steps, shape);
    let fields = local.fields(scan, anatomy, findings, component);
    let mut patch = patch;
    let n = PATCH_SIZE;
    for d in 0..n {
        for h in 0..n {
            for w in 0..n {
                let c = [0, 1, 2].map(|a| {
                    base[a] + d as f64 * steps[0][a] + h as f64 * steps[1][a] + w as f64 * steps[2][a]
                });
                let samples = local.sample(&fields, c);
                for (ch, v) in samples.into_iter().enumerate() {
                    patch.data[(ch, d, h, w)] = v;
                }
            }
        }
    }
    Ok(patch)
}

/// Superior along the spine, posterior orthogonal to it, and the third axis away from the body's midline.
fn frame_axes(anatomy: &Anatomy, centre: Lps) -> Result<[Vec3; 3], PatchError> {
    use crate::volume::Direction;
    let sup = anatomy.spine_axis.normalized().ok_or(PatchError::BadSpineAxis(anatomy.spine_axis))?;
    let post = Direction::Posterior.unit();
    let post = (post - sup * post.dot(sup))
        .normalized()
        .or_else(|| {
            // A spine along the AP axis (never in practice): any axis orthogonal to it.
            let l = Direction::Left.unit();
            (l - sup * l.dot(sup)).normalized()
        })
        .ok_or(PatchError::BadSpineAxis(anatomy.spine_axis))?;
    let left = post.cross(sup);
    let side = (centre - anatomy.body_centroid).dot(left);
    let lateral = if side < 0.0 { left * -1.0 } else { left };
    Ok([sup, post, lateral])
}

/// The box of scan voxels the patch touches, with dense copies of every channel in it.
struct LocalBox {
    lo: [usize; 3],
    dims: [usize; 3],
}

impl LocalBox {
    fn around(base: &[f64; 3], steps: &[[f64; 3]; 3], shape: [usize; 3]) -> LocalBox {
        let last = (PATCH_SIZE - 1) as f64;
        let mut lo = [f64::MAX; 3];
        let mut hi = [f64::MIN; 3];
        for corner in 0..8 {
            let t = [0, 1, 2].map(|a| if corner >> a & 1 == 1 { last } else { 0.0 });
            for a in 0..3 {
                let v = base[a] + t[0] * steps[0][a] + t[1] * steps[1][a] + t[2] * steps[2][a];
                lo[a] = lo[a].min(v);
                hi[a] = hi[a].max(v);
            }
        }
        let lo_i = [0, 1, 2].map(|a| (lo[a].floor() - 1.0).clamp(0.0, shape[a] as f64) as usize);
        let hi_i = [0, 1, 2].map(|a| (hi[a].ceil() + 2.0).clamp(0.0, shape[a] as f64) as usize);
        LocalBox { lo: lo_i, dims: [0, 1, 2].map(|a| hi_i[a].saturating_sub(lo_i[a])) }
    }

    fn contains(&self, v: [usize; 3]) -> bool {
        (0..3).all(|a| v[a] >= self.lo[a] && v[a] < self.lo[a] + self.dims[a])
    }

    /// Channel values on the box, interleaved: `[local voxel][channel]`, so one trilinear pass reads all
    /// channels of a corner from one place.
    fn fields(
        &self,
        scan: &CtVolume,
        anatomy: &Anatomy,
        findings: &CementFindings,
        component: &CementComponent,
    ) -> Vec<[f32; NCH]> {
        let [n0, n1, n2] = self.dims;
        let [l0, l1, l2] = self.lo;
        let mut out = vec![[0.0f32; NCH]; n0 * n1 * n2];
        let mask = |l: u8, code: u8| if l == code { 1.0f32 } else { 0.0 };
        for z in 0..n0 {
            for y in 0..n1 {
                for x in 0..n2 {
                    let v = (z + l0, y + l1, x + l2);
                    let hu = f32::from(scan.data[v]);
                    let l = anatomy.labels.data[v];
                    out[(z * n1 + y) * n2 + x] = [
                        hu.clamp(HU_MIN, HU_MAX),
                        0.0,
                        if findings.intravertebral.data[v] { 1.0 } else { 0.0 },
                        mask(l, labels::VERTEBRAL_BODY),
                        mask(l, labels::CANAL),
                        mask(l, labels::DISC),
                        mask(l, labels::POSTERIOR_ELEMENTS),
                    ];
                }
            }
        }
        for v in component.voxels.iter().filter(|v| self.contains(**v)) {
            out[((v[0] - l0) * n1 + v[1] - l1) * n2 + v[2] - l2][1] = 1.0;
        }
        out
    }

    /// Trilinear sample of every channel at continuous scan index `c`; outside the scan: air HU, empty
    /// masks.
    fn sample(&self, fields: &[[f32; NCH]], c: [f64; 3]) -> [f32; NCH] {
        let mut out = [0.0f32; NCH];
        out[0] = HU_MIN / HU_SCALE;
        let mut i0 = [0usize; 3];
        let mut t = [0f32; 3];
        for a in 0..3 {
            let local = c[a] - self.lo[a] as f64;
            let n = self.dims[a];
            if n == 0 || !(local > -0.5 && local < n as f64 - 0.5) {
                return out;
            }
            if n == 1 {
                continue;
            }
            let f = local.floor().clamp(0.0, (n - 2) as f64);
            i0[a] = f as usize;
            t[a] = (local - f).clamp(0.0, 1.0) as f32;
        }
        let hi = [0, 1, 2].map(|a| (i0[a] + 1).min(self.dims[a] - 1));
        let [_, n1, n2] = self.dims;
        let mut acc = [0.0f32; NCH];
        for corner in 0..8 {
            let pick = |a: usize| corner >> (2 - a) & 1 == 1;
            let idx = [0, 1, 2].map(|a| if pick(a) { hi[a] } else { i0[a] });
            let w: f32 = (0..3).map(|a| if pick(a) { t[a] } else { 1.0 - t[a] }).product();
            if w == 0.0 {
                continue;
            }
            let v = &fields[(idx[0] * n1 + idx[1]) * n2 + idx[2]];
            for (o, x) in acc.iter_mut().zip(v) {
                *o += w * x;
            }
        }
        acc[0] /= HU_SCALE;
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anatomy::{Endplates, Plane, PosteriorWall, TargetSource, Timings};
    use crate::volume::{Geometry, LabelVolume, Mask, PatientPosition, Spacing, Volume};
    use ndarray::{s, Array3};

    /// A small synthetic vertebra: body block, canal behind it, disc above, a posterior element, cement in
    /// the body and a leak in the canal, stored supine (HFS).
    fn scene() -> (CtVolume, LabelVolume, Mask, Vec<[usize; 3]>) {
        let shape = [30, 60, 60];
        let g = Geometry {
            origin: Lps([-26.55, -40.0, -30.0]),
            spacing: Spacing { slice: 2.0, row: 0.9, column: 0.9 },
            axes: PatientPosition::Hfs.axial_axes(),
        };
        let mut ct = Array3::<f32>::from_elem(shape, 40.0);
        let mut lab = Array3::<u8>::zeros(shape);
        let mut intra = Array3::<bool>::from_elem(shape, false);
        let mut leak = Vec::new();
        for ((z, y, x), v) in ct.indexed_iter_mut() {
            let p = g.voxel_to_lps([z, y, x]);
            let (l, pp, s) = (p.x(), p.y(), p.z());
            let code = if l.abs() < 18.0 && pp > -30.0 && pp < 0.0 && s.abs() < 12.0 {
                *v = 250.0;
                if l.abs() < 5.0 && pp > -20.0 && pp < -10.0 && s.abs() < 5.0 {
                    *v = 2200.0;
                    intra[(z, y, x)] = true;
                }
                labels::VERTEBRAL_BODY
            } else if l.abs() < 18.0 && pp > -30.0 && pp < 0.0 && (12.0..18.0).contains(&s) {
                *v = 80.0;
                labels::DISC
            } else if l.abs() < 8.0 && (0.0..15.0).contains(&pp) && s.abs() < 20.0 {
                *v = 10.0;
                if l > 1.0 && l < 5.0 && pp < 5.0 && s.abs() < 3.0 {
                    *v = 1800.0;
                    leak.push([z, y, x]);
                }
                labels::CANAL
            } else if l.abs() < 14.0 && (15.0..22.0).contains(&pp) && s.abs() < 10.0 {
                *v = 600.0;
                labels::POSTERIOR_ELEMENTS
            } else {
                0
            };
            lab[(z, y, x)] = code;
        }
        (CtVolume::from_hu(&ct, g), Volume::new(lab, g), Volume::new(intra, g), leak)
    }

    fn anatomy(labels: LabelVolume) -> Anatomy {
        let plane = Plane { point: Lps::default(), normal: Vec3([0.0, 0.0, 1.0]) };
        Anatomy {
            labels,
            body_centroid: Lps([0.0, -15.0, 0.0]),
            body_volume_ml: 10.0,
            posterior_wall: PosteriorWall {
                points: vec![Lps::default()],
                normal: Vec3([0.0, 1.0, 0.0]),
                point: Lps::default(),
                defect_fraction: 0.0,
                largest_defect_mm2: 0.0,
            },
            posterior_wall_intact: Some(true),
            endplates: Endplates { superior: plane, inferior: plane, height_mm: 24.0 },
            level: None,
            target_source: TargetSource::ScanCentre,
            needle_tip: None,
            spine_axis: Vec3([0.0, 0.05, 1.0]).normalized().unwrap_or(Vec3([0.0, 0.0, 1.0])),
            timings: Timings::default(),
            warnings: Vec::new(),
        }
    }

    fn findings(ct: &CtVolume, intra: Mask, voxels: Vec<[usize; 3]>) -> (CementFindings, CementComponent) {
        let g = ct.geometry;
        let n = voxels.len() as f64;
        let mut sum = [0.0; 3];
        for v in &voxels {
            let p = g.voxel_to_lps(*v);
            for (acc, c) in sum.iter_mut().zip(p.0) {
                *acc += c;
            }
        }
        let comp = CementComponent {
            id: 1,
            volume_ml: n * g.spacing.voxel_volume_ml(),
            centroid: Lps(sum.map(|s| s / n)),
            max_hu: 1800.0,
            touches_body: true,
            previous_ml: None,
            voxels,
        };
        let f = CementFindings {
            cement: intra.clone(),
            metal: ct.same_grid(false),
            intravertebral: intra,
            leaks: vec![comp.clone()],
            intravertebral_ml: 0.0,
            total_ml: 0.0,
            new_since_previous_ml: None,
            baseline_registration: None,
            previous_registration: None,
            warnings: Vec::new(),
        };
        (f, comp)
    }

    /// The same patient stored prone: rows and columns reversed, axes flipped, every voxel at the same LPS.
    fn as_prone<T: Clone>(v: &Volume<T>) -> Volume<T> {
        let [_, ny, nx] = v.shape();
        let g = v.geometry;
        let geometry = Geometry {
            origin: g.voxel_to_lps([0, ny - 1, nx - 1]),
            spacing: g.spacing,
            axes: [g.axes[0], g.axes[1] * -1.0, g.axes[2] * -1.0],
        };
        Volume::new(v.data.slice(s![.., ..;-1, ..;-1]).to_owned(), geometry)
    }

    /// Decubitus storage: rows and columns swapped (a transposed image), axes swapped with them.
    fn as_decubitus<T: Clone>(v: &Volume<T>) -> Volume<T> {
        let g = v.geometry;
        let geometry = Geometry {
            origin: g.origin,
            spacing: Spacing { slice: g.spacing.slice, row: g.spacing.column, column: g.spacing.row },
            axes: [g.axes[0], g.axes[2], g.axes[1]],
        };
        Volume::new(v.data.clone().permuted_axes([0, 2, 1]).as_standard_layout().to_owned(), geometry)
    }

    /// The array mirrored along its columns, geometry unchanged.
    fn mirror<T: Clone>(v: &Volume<T>) -> Volume<T> {
        Volume::new(v.data.slice(s![.., .., ..;-1]).to_owned(), v.geometry)
    }

    fn patch_for(
        transform: &dyn Fn(&[usize; 3]) -> [usize; 3],
        ct: CtVolume,
        lab: LabelVolume,
        intra: Mask,
        leak: &[[usize; 3]],
    ) -> Patch {
        let voxels: Vec<[usize; 3]> = leak.iter().map(transform).collect();
        let (f, comp) = findings(&ct, intra, voxels);
        match extract_patch(&ct, &anatomy(lab), &f, &comp) {
            Ok(p) => p,
            Err(e) => panic!("patch: {e}"),
        }
    }

    fn max_diff(a: &Patch, b: &Patch) -> f32 {
        a.data.iter().zip(b.data.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
    }

    #[test]
    fn same_patch_supine_prone_and_decubitus_storage() {
        let (ct, lab, intra, leak) = scene();
        assert!(leak.len() > 10, "scene has a leak");
        let [_, ny, nx] = ct.shape();
        let hfs = patch_for(&|v| *v, ct.clone(), lab.clone(), intra.clone(), &leak);
        let (f, comp) = findings(&ct, intra.clone(), leak.clone());
        let a = anatomy(lab.clone());
        let t = std::time::Instant::now();
        for _ in 0..10 {
            assert!(extract_patch(&ct, &a, &f, &comp).is_ok());
        }
        println!("extract_patch: {:.2} ms per patch", t.elapsed().as_secs_f64() * 1e3 / 10.0);
        let hfp = patch_for(
            &|v| [v[0], ny - 1 - v[1], nx - 1 - v[2]],
            as_prone(&ct),
            as_prone(&lab),
            as_prone(&intra),
            &leak,
        );
        let dec = patch_for(
            &|v| [v[0], v[2], v[1]],
            as_decubitus(&ct),
            as_decubitus(&lab),
            as_decubitus(&intra),
            &leak,
        );
        assert!(hfs.centre.distance(hfp.centre) < 1e-6);
        assert!(max_diff(&hfs, &hfp) < 1e-4, "prone differs by {}", max_diff(&hfs, &hfp));
        assert!(max_diff(&hfs, &dec) < 1e-4, "decubitus differs by {}", max_diff(&hfs, &dec));
        // The patch holds what it should: the component at the centre, canal around it, body anterior.
        let c = PATCH_SIZE / 2;
        assert!(hfs.data[(1, c, c, c)] > 0.5, "component at the centre");
        assert!(hfs.data[(4, c, c, c)] > 0.5, "canal at the centre");
        assert!(hfs.data[(3, c, 2, c)] > 0.5, "body anterior (low h)");
        assert!(hfs.data[(3, c, PATCH_SIZE - 2, c)] < 0.5, "no body posterior");
        assert!(hfs.data[(5, PATCH_SIZE - 2, 2, c)] > 0.5, "disc superior-anterior (high d, low h)");
        assert!((hfs.data[(0, c, c, c)] - 1.8).abs() < 0.1, "HU scaled by 1000");
    }

    #[test]
    fn a_mirrored_leak_gives_the_mirrored_side_normalised_patch() {
        // The leak at the patient's left, and the same scene mirrored left-right (leak at the right):
        // after side normalisation both patches are the same.
        let (ct, lab, intra, leak) = scene();
        let [_, _, nx] = ct.shape();
        let a = patch_for(&|v| *v, ct.clone(), lab.clone(), intra.clone(), &leak);
        let (ctm, labm, intram) = (mirror(&ct), mirror(&lab), mirror(&intra));
        // Mirroring the array about the column centre maps x -> -x when the grid is symmetric about 0.
        let centre_x = ct.geometry.voxel_to_lps([0, 0, nx - 1]).x() + ct.geometry.origin.x();
        assert!(centre_x.abs() < 1e-9, "grid centred on x = 0 ({centre_x})");
        let b = patch_for(&|v| [v[0], v[1], nx - 1 - v[2]], ctm, labm, intram, &leak);
        assert!(!a.mirrored && b.mirrored);
        assert!(max_diff(&a, &b) < 1e-3, "mirrored patch differs by {}", max_diff(&a, &b));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let (ct, lab, intra, leak) = scene();
        let (f, mut comp) = findings(&ct, intra, leak);
        let a = anatomy(lab);
        comp.voxels.clear();
        assert!(matches!(extract_patch(&ct, &a, &f, &comp), Err(PatchError::EmptyComponent { .. })));
        comp.voxels = vec![[99, 0, 0]];
        assert!(matches!(extract_patch(&ct, &a, &f, &comp), Err(PatchError::VoxelOutside { .. })));
        comp.voxels = vec![[0, 0, 0]];
        comp.centroid = Lps([f64::NAN, 0.0, 0.0]);
        assert!(matches!(extract_patch(&ct, &a, &f, &comp), Err(PatchError::BadCentroid { .. })));
        comp.centroid = Lps::default();
        let mut b = a.clone();
        b.spine_axis = Vec3::ZERO;
        assert!(matches!(extract_patch(&ct, &b, &f, &comp), Err(PatchError::BadSpineAxis(_))));
        let mut small = a.clone();
        small.labels = Volume::new(Array3::zeros([2, 2, 2]), ct.geometry);
        assert!(matches!(extract_patch(&ct, &small, &f, &comp), Err(PatchError::GridMismatch { .. })));
        // A component far outside the scan still gives a patch: air and empty masks.
        comp.centroid = Lps([500.0, 500.0, 500.0]);
        let p = extract_patch(&ct, &a, &f, &comp);
        assert!(p.is_ok_and(|p| p.data.slice(s![1.., .., .., ..]).iter().all(|v| *v == 0.0)));
    }
}
