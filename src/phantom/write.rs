//! Writing a case to disk: one DICOM series per scan (one study per case), truth.json, the truth label map
//! and a montage per scan, and case.json.

use super::{montage, PhantomCase, PhantomError, PhantomScan};
use crate::volume::{labels, Lps};
use crate::write::dicom::{new_uid, write_ct_series, CtSeriesMeta};
use crate::write::nifti::write_labels_nifti;
use std::path::{Path, PathBuf};

fn werr(path: &Path, e: impl std::fmt::Display) -> PhantomError {
    PhantomError::Write { path: path.display().to_string(), reason: e.to_string() }
}

/// Folder name of scan `k`.
pub fn scan_dir_name(scan: &PhantomScan) -> String {
    let t = &scan.truth;
    if t.step == 0 {
        "scan_00_baseline".into()
    } else {
        format!("scan_{:02}_{:.2}ml", t.step, t.injected_ml)
    }
}

/// Centroid (LPS) of voxels with a label in `codes`.
pub fn centroid(lab: &crate::volume::LabelVolume, codes: &[u8]) -> Option<Lps> {
    let mut s = [0.0; 3];
    let mut n = 0usize;
    for (i, l) in lab.data.indexed_iter() {
        if codes.contains(l) {
            let p = lab.geometry.voxel_to_lps([i.0, i.1, i.2]);
            for (acc, v) in s.iter_mut().zip(p.0) {
                *acc += v;
            }
            n += 1;
        }
    }
    (n > 0).then(|| Lps(s.map(|v| v / n as f64)))
}

/// Writes the case under `out` (created if needed). Output is byte-identical for the same case.
pub fn write_case(case: &PhantomCase, out: &Path) -> Result<(), PhantomError> {
    write_case_with(case, out, &mut |_, _| {})
}

pub fn write_case_with(
    case: &PhantomCase,
    out: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(), PhantomError> {
    std::fs::create_dir_all(out).map_err(|e| werr(out, e))?;
    let s = &case.summary;
    let seed_str = format!(
        "cementleak-phantom/{}/{}/{}",
        s.seed,
        s.position,
        if s.hybrid { "hybrid" } else { "synthetic" }
    );
    let base = CtSeriesMeta::synthetic(&seed_str, s.position);
    let body_part = if s.level.is_thoracic() { "TSPINE" } else { "LSPINE" };
    for (k, scan) in case.scans.iter().enumerate() {
        let dir: PathBuf = out.join(scan_dir_name(scan));
        std::fs::create_dir_all(&dir).map_err(|e| werr(&dir, e))?;
        let secs = 10 * 3600 + k * 75;
        let mut meta = base.clone();
        meta.series_instance_uid = new_uid(&format!("{seed_str}/series/{k}"));
        meta.series_number = k as i32 + 1;
        meta.acquisition_time = format!("{:02}{:02}{:02}", secs / 3600, (secs / 60) % 60, secs % 60);
        meta.series_description = if k == 0 {
            format!("Vertebroplasty {} baseline", s.level)
        } else {
            format!("Vertebroplasty {} after {:.2} mL", s.level, scan.truth.injected_ml)
        };
        meta.slice_thickness_mm = s.slice_thickness_mm;
        meta.body_part = Some(body_part.into());
        let ddir = dir.join("dicom");
        write_ct_series(&scan.ct, &meta, &ddir).map_err(|e| werr(&ddir, e))?;
        let tj = serde_json::to_vec_pretty(&scan.truth).map_err(|e| werr(&dir, e))?;
        std::fs::write(dir.join("truth.json"), tj).map_err(|e| werr(&dir.join("truth.json"), e))?;
        let lp = dir.join("truth_labels.nii.gz");
        write_labels_nifti(&scan.labels, &lp).map_err(|e| werr(&lp, e))?;
        let target = centroid(&scan.labels, &[labels::CEMENT])
            .or_else(|| scan.truth.needle_tips_lps_mm.first().copied())
            .or_else(|| centroid(&scan.anatomy, &[labels::VERTEBRAL_BODY]))
            .unwrap_or_default();
        let leak = scan
            .truth
            .leaks
            .iter()
            .max_by(|a, b| a.volume_ml.total_cmp(&b.volume_ml))
            .map(|l| l.centroid_lps_mm);
        let img = montage::montage(&scan.ct, &scan.labels, target, leak);
        let mp = dir.join("montage.png");
        img.save_with_format(&mp, image::ImageFormat::Png).map_err(|e| werr(&mp, e))?;
        progress(k + 1, case.scans.len());
    }
    let cj = serde_json::to_vec_pretty(&case.summary).map_err(|e| werr(out, e))?;
    std::fs::write(out.join("case.json"), cj).map_err(|e| werr(&out.join("case.json"), e))?;
    Ok(())
}
