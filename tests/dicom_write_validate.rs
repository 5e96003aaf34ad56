//! Validate written CT series with the standard's reference tools: dicom3tools `dciodvfy` (IOD/module
//! conformance) and dcmtk `dcmdump` (a second, independent parser). Skipped with a printed reason when the
//! tools are not installed (`apt-get install dicom3tools dcmtk`).

use cementleak::volume::{CtVolume, Geometry, Lps, PatientPosition, Spacing};
use cementleak::write::dicom::{write_ct_series, CtSeriesMeta};
use ndarray::Array3;
use std::process::Command;

fn tool(name: &str) -> bool {
    Command::new(name).arg("-version").output().is_ok()
}

#[test]
fn dciodvfy_and_dcmdump_accept_written_series() {
    if !tool("dciodvfy") || !tool("dcmdump") {
        eprintln!("SKIP: dciodvfy/dcmdump not installed (apt-get install dicom3tools dcmtk)");
        return;
    }
    for position in PatientPosition::ALL {
        for hi in [1500.0f32, 3000.0] {
            let data = Array3::from_shape_fn((3, 16, 20), |(k, r, c)| {
                if r == c {
                    hi
                } else {
                    (k * 10 + r + c) as f32 - 1024.0
                }
            });
            let g = Geometry {
                origin: Lps([-12.5, 30.25, -700.0]),
                spacing: Spacing { slice: 1.25, row: 0.75, column: 0.75 },
                axes: position.axial_axes(),
            };
            let mut meta = CtSeriesMeta::synthetic(&format!("validate/{position}/{hi}"), position);
            meta.patient_name = "Müller^Jörg".into(); // exercises SpecificCharacterSet
            let dir = tempfile::tempdir().expect("tempdir");
            let paths = write_ct_series(&CtVolume::from_hu(&data, g), &meta, dir.path()).expect("write");
            for p in &paths {
                let out = Command::new("dciodvfy").arg(p).output().expect("run dciodvfy");
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                // Everything that is not an error is printed, for review (run with --nocapture).
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    println!("dciodvfy {position} {hi}: {line}");
                }
                let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("Error")).collect();
                assert!(errors.is_empty(), "{}: dciodvfy errors:\n{}", p.display(), errors.join("\n"));

                let out = Command::new("dcmdump").arg("-E").arg(p).output().expect("run dcmdump");
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                if std::env::var_os("CEMENTLEAK_SHOW_DCMDUMP").is_some() && p == &paths[0] {
                    println!("{text}");
                }
                assert!(out.status.success(), "dcmdump failed on {}:\n{text}", p.display());
                assert!(!text.contains("E: "), "dcmdump errors on {}:\n{text}", p.display());
                assert!(text.contains(&format!("[{}]", position.dicom_code())), "{text}");
            }
        }
    }
}
