//! Written CT series read back with the project's own loader (`cementleak::load::load_scan`): every
//! patient position gives the written voxels at the written LPS positions, and the series fields survive.
//! (The independent-reader version of these checks is in `dicom_write.rs`.)

use cementleak::load::{load_scan, LoadOptions};
use cementleak::volume::{CtVolume, Geometry, Lps, PatientPosition, Spacing};
use cementleak::write::dicom::{write_ct_series, CtSeriesMeta};
use ndarray::Array3;

#[test]
fn load_scan_reads_back_every_patient_position() {
    for position in PatientPosition::ALL {
        let data = Array3::from_shape_fn((6, 11, 9), |(k, r, c)| (k * 301 + r * 17 + c * 3) as f32 - 1024.0);
        let g = Geometry {
            origin: Lps([-40.0, 12.5, -300.25]),
            spacing: Spacing { slice: 1.5, row: 0.7, column: 0.9 },
            axes: position.axial_axes(),
        };
        let vol = CtVolume::from_hu(&data, g);
        let mut meta = CtSeriesMeta::synthetic(&format!("readback/{position}"), position);
        meta.series_description = "readback test".into();
        meta.series_number = 7;
        let dir = tempfile::tempdir().expect("tempdir");
        write_ct_series(&vol, &meta, dir.path()).expect("write");

        let scan =
            load_scan(dir.path(), &LoadOptions::default()).unwrap_or_else(|e| panic!("{position}: {e}"));
        let back = &scan.volume;
        assert_eq!(back.voxel_count(), vol.voxel_count());
        // Compare through LPS, whatever array order the loader chose.
        for ((k, r, c), &hu) in vol.data.indexed_iter() {
            let p = g.voxel_to_lps([k, r, c]);
            let v = back
                .geometry
                .lps_to_voxel(p, back.shape())
                .unwrap_or_else(|| panic!("{position}: {p} outside"));
            assert!(back.geometry.voxel_to_lps(v).distance(p) < 1e-3, "{position}: {p}");
            assert_eq!(back.data[v], hu, "{position}: HU at {p}");
        }
        assert_eq!(scan.info.series_instance_uid, meta.series_instance_uid);
        assert_eq!(scan.info.modality, "CT");
        assert_eq!(scan.info.patient_position.as_deref(), Some(position.dicom_code()));
        assert_eq!(scan.info.series_number, Some(7));
        assert_eq!(scan.info.series_description.as_deref(), Some("readback test"));
        assert_eq!(scan.info.encoding, "1.2.840.10008.1.2.1");
    }
}
