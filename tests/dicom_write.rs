//! DICOM CT series writer: geometry, pixels, tags and determinism, checked with an independent reader
//! (dicom-object + dicom-pixeldata, see `dicom_write_support`).

#[path = "dicom_write_support/mod.rs"]
mod support;

use cementleak::volume::{CtVolume, Geometry, Lps, PatientPosition, Spacing, Vec3, Volume};
use cementleak::write::dicom::{new_uid, write_ct_series, CtSeriesMeta};
use cementleak::write::WriteError;
use dicom_dictionary_std::{tags, uids};
use ndarray::Array3;
use support::{floats, read_series_direct, string};

/// A small non-square volume (rows != columns, anisotropic spacing) so swapped axes cannot go unnoticed.
fn volume(position: PatientPosition, hu: impl Fn(usize, usize, usize) -> f32) -> CtVolume {
    let data = Array3::from_shape_fn((5, 12, 9), |(k, r, c)| hu(k, r, c));
    let geometry = Geometry {
        origin: Lps([-101.25, 37.5, -804.5]),
        spacing: Spacing { slice: 2.5, row: 0.8, column: 0.6 },
        axes: position.axial_axes(),
    };
    CtVolume::from_hu(&data, geometry)
}

fn pattern(k: usize, r: usize, c: usize) -> f32 {
    (k * 397 + r * 61 + c * 7) as f32 - 1024.0
}

#[test]
fn each_patient_position_round_trips_geometry_pixels_and_tags() {
    for position in PatientPosition::ALL {
        let vol = volume(position, pattern);
        let meta = CtSeriesMeta::synthetic(&format!("test/{position}"), position);
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = write_ct_series(&vol, &meta, dir.path()).expect("write");
        assert_eq!(paths.len(), 5);

        let read = read_series_direct(dir.path());
        assert_eq!(read.patient_position, position.dicom_code());
        assert_eq!(read.volume.data, vol.data, "{position}: pixels differ");
        let g = read.volume.geometry;
        for idx in [[0, 0, 0], [4, 11, 8], [2, 0, 8], [1, 11, 0]] {
            let d = g.voxel_to_lps(idx).distance(vol.geometry.voxel_to_lps(idx));
            assert!(d < 1e-6, "{position}: voxel {idx:?} moved by {d} mm");
        }

        for (k, obj) in read.objects.iter().enumerate() {
            let iop = floats(obj, tags::IMAGE_ORIENTATION_PATIENT);
            let want = [vol.geometry.axes[2].0, vol.geometry.axes[1].0].concat();
            assert_eq!(iop, want, "{position}: IOP");
            let ipp = floats(obj, tags::IMAGE_POSITION_PATIENT);
            let want = vol.geometry.index_to_lps([k as f64, 0.0, 0.0]);
            assert!(Lps([ipp[0], ipp[1], ipp[2]]).distance(want) < 1e-9, "{position}: IPP slice {k}");
            assert_eq!(string(obj, tags::INSTANCE_NUMBER), (k + 1).to_string());
            assert_eq!(string(obj, tags::SOP_CLASS_UID), uids::CT_IMAGE_STORAGE);
            assert_eq!(string(obj, tags::MODALITY), "CT");
            assert_eq!(string(obj, tags::PHOTOMETRIC_INTERPRETATION), "MONOCHROME2");
            assert_eq!(string(obj, tags::PIXEL_REPRESENTATION), "1");
            assert_eq!(string(obj, tags::BITS_ALLOCATED), "16");
            assert_eq!(floats(obj, tags::RESCALE_SLOPE), vec![1.0]);
            assert_eq!(floats(obj, tags::SLICE_LOCATION), vec![want.z()], "axial: location = z");
            assert_eq!(string(obj, tags::SERIES_INSTANCE_UID), meta.series_instance_uid);
            assert_eq!(obj.meta().transfer_syntax().trim_end_matches('\0'), uids::EXPLICIT_VR_LITTLE_ENDIAN);
        }
        // Only the final files remain: no temporary files.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("e").file_name().to_string_lossy().into())
            .collect();
        assert_eq!(names.len(), 5, "{names:?}");
    }
}

#[test]
fn bits_stored_follows_the_value_range() {
    let cases: [(f32, f32, &str, i16); 3] = [
        (-1024.0, 2047.0, "12", 2047),   // ordinary CT
        (-1024.0, 3071.0, "16", 3071),   // dense cement / metal
        (-1000.0, 60000.0, "16", 32767), // beyond int16: saturated when it became a CtVolume
    ];
    for (lo, hi, bits, hi_stored) in cases {
        let vol = volume(PatientPosition::Hfp, |k, r, c| {
            if (k, r, c) == (0, 0, 0) {
                lo
            } else if (k, r, c) == (4, 3, 2) {
                hi
            } else {
                40.4
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        write_ct_series(&vol, &CtSeriesMeta::synthetic("bits", PatientPosition::Hfp), dir.path())
            .expect("write");
        let read = read_series_direct(dir.path());
        let o = &read.objects[0];
        assert_eq!(string(o, tags::BITS_STORED), bits, "range {lo}..{hi}");
        assert_eq!(string(o, tags::HIGH_BIT), (bits.parse::<u16>().expect("int") - 1).to_string());
        assert_eq!(floats(o, tags::RESCALE_INTERCEPT), vec![0.0]);
        assert_eq!(f32::from(read.volume.data[[0, 0, 0]]), lo);
        assert_eq!(read.volume.data[[4, 3, 2]], hi_stored);
        // Computed HU are rounded to whole HU.
        assert_eq!(read.volume.data[[1, 1, 1]], 40);
    }
}

#[test]
fn same_input_gives_byte_identical_files_and_unique_instance_uids() {
    let vol = volume(PatientPosition::Hfdl, pattern);
    let meta = CtSeriesMeta::synthetic("determinism", PatientPosition::Hfdl);
    let (a, b) = (tempfile::tempdir().expect("a"), tempfile::tempdir().expect("b"));
    let pa = write_ct_series(&vol, &meta, a.path()).expect("write a");
    let pb = write_ct_series(&vol, &meta, b.path()).expect("write b");
    for (x, y) in pa.iter().zip(&pb) {
        assert_eq!(std::fs::read(x).expect("x"), std::fs::read(y).expect("y"), "{}", x.display());
    }
    let read = read_series_direct(a.path());
    let mut sop: Vec<String> = read.objects.iter().map(|o| string(o, tags::SOP_INSTANCE_UID)).collect();
    sop.sort();
    sop.dedup();
    assert_eq!(sop.len(), 5);
    assert!(sop.iter().all(|u| u.len() <= 64 && u.starts_with("2.25.")));
    // The meta group names the same instance.
    assert_eq!(
        read.objects[0].meta().media_storage_sop_instance_uid().trim_end_matches('\0'),
        string(&read.objects[0], tags::SOP_INSTANCE_UID)
    );
    assert_ne!(new_uid("a"), new_uid("b"));
}

#[test]
fn refuses_what_single_frame_ct_cannot_express() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = CtSeriesMeta::synthetic("refuse", PatientPosition::Hfs);

    let mut tilted = volume(PatientPosition::Hfs, pattern);
    tilted.geometry.axes[0] = Vec3([0.0, 0.259, 0.966]).normalized().expect("unit");
    assert!(matches!(write_ct_series(&tilted, &meta, dir.path()), Err(WriteError::Geometry(_))));

    let ok = volume(PatientPosition::Hfs, pattern);
    for bad in [
        CtSeriesMeta { series_instance_uid: "1.2.abc".into(), ..meta.clone() },
        CtSeriesMeta { study_instance_uid: "1.02.3".into(), ..meta.clone() },
        CtSeriesMeta { study_date: "2025-01-01".into(), ..meta.clone() },
        CtSeriesMeta { acquisition_time: "12:00".into(), ..meta.clone() },
        CtSeriesMeta { kvp: 0.0, ..meta.clone() },
        CtSeriesMeta { patient_name: "A\\B".into(), ..meta.clone() },
    ] {
        assert!(matches!(write_ct_series(&ok, &bad, dir.path()), Err(WriteError::Meta(_))), "{bad:?}");
    }
    // Nothing was written by the refused calls.
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

#[test]
fn rewriting_overwrites_but_stale_extra_slices_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = CtSeriesMeta::synthetic("stale", PatientPosition::Hfs);
    let vol = volume(PatientPosition::Hfs, pattern);
    write_ct_series(&vol, &meta, dir.path()).expect("first");
    write_ct_series(&vol, &meta, dir.path()).expect("same series again");
    let shorter = Volume::new(vol.data.slice(ndarray::s![..3, .., ..]).to_owned(), vol.geometry);
    match write_ct_series(&shorter, &meta, dir.path()) {
        Err(WriteError::Io { reason, .. }) => assert!(reason.contains("empty folder"), "{reason}"),
        other => panic!("stale slices not refused: {other:?}"),
    }
}
