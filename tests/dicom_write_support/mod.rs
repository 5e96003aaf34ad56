//! A deliberately small, independent DICOM series reader for the writer's tests: it parses the files with
//! dicom-object and dicom-pixeldata directly (not with `cementleak::load`), so the writer is checked against
//! a second implementation and these tests pass before the project's DICOM loader exists.
#![allow(dead_code)]

use cementleak::volume::{hu_i16, CtVolume, Geometry, Lps, Spacing, Vec3, Volume};
use dicom_dictionary_std::tags;
use dicom_object::{open_file, DefaultDicomObject};
use dicom_pixeldata::PixelDecoder;
use ndarray::{s, Array3};
use std::path::Path;

pub struct DirectSeries {
    pub volume: CtVolume,
    pub patient_position: String,
    /// Files in the order of `volume` slices.
    pub objects: Vec<DefaultDicomObject>,
}

pub fn floats(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Vec<f64> {
    obj.element(tag).unwrap_or_else(|e| panic!("{tag}: {e}")).to_multi_float64().expect("numeric")
}

pub fn string(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> String {
    obj.element(tag).map(|e| e.to_str().expect("text").trim().to_string()).unwrap_or_default()
}

/// Read every `*.dcm`-or-not file in `dir` as one axial series, sorted along the slice normal.
pub fn read_series_direct(dir: &Path) -> DirectSeries {
    let mut objs: Vec<DefaultDicomObject> = std::fs::read_dir(dir)
        .expect("series folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .map(|p| open_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    assert!(!objs.is_empty(), "no files in {}", dir.display());
    let iop = floats(&objs[0], tags::IMAGE_ORIENTATION_PATIENT);
    let row_dir = Vec3([iop[0], iop[1], iop[2]]);
    let col_dir = Vec3([iop[3], iop[4], iop[5]]);
    let normal = row_dir.cross(col_dir);
    let pos = |o: &DefaultDicomObject| {
        let p = floats(o, tags::IMAGE_POSITION_PATIENT);
        Lps([p[0], p[1], p[2]])
    };
    objs.sort_by(|a, b| Vec3(pos(a).0).dot(normal).total_cmp(&Vec3(pos(b).0).dot(normal)));
    let ps = floats(&objs[0], tags::PIXEL_SPACING);
    let origin = pos(&objs[0]);
    let slice_spacing = if objs.len() > 1 { (pos(&objs[1]) - origin).norm() } else { 1.0 };
    let geometry = Geometry {
        origin,
        spacing: Spacing { slice: slice_spacing, row: ps[0], column: ps[1] },
        axes: [normal, col_dir, row_dir],
    };
    let rows = objs[0].element(tags::ROWS).expect("rows").to_int::<usize>().expect("int");
    let cols = objs[0].element(tags::COLUMNS).expect("cols").to_int::<usize>().expect("int");
    let mut data = Array3::<i16>::zeros((objs.len(), rows, cols));
    for (k, o) in objs.iter().enumerate() {
        // Every slice sits on the same line through the first one, at the expected distance.
        let d = pos(o) - origin;
        assert!((d - normal * (k as f64 * slice_spacing)).norm() < 1e-3, "slice {k} off the stack line");
        let px = o.decode_pixel_data().expect("decode").to_ndarray::<f32>().expect("ndarray");
        data.slice_mut(s![k, .., ..]).assign(&px.slice(s![0, .., .., 0]).mapv(hu_i16));
    }
    let patient_position = string(&objs[0], tags::PATIENT_POSITION);
    DirectSeries { volume: Volume::new(data, geometry), patient_position, objects: objs }
}
