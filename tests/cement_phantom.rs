//! Stage 3 on the phantom generator's injection sequences (other anatomy, devices, blur, streaks, correlated
//! noise and motion than the unit scenes): intravertebral volume error and leak detection sensitivity
//! against the phantom's truth, with the phantom's body label (1) as the body mask.

mod common;

use cementleak::cement::{detect, CementInputs, CementParams};
use cementleak::leaks::Site;
use cementleak::phantom::{generate_case, PhantomSpec};
use cementleak::volume::{labels, PatientPosition};
use std::collections::HashSet;

fn spec(seed: u64, position: PatientPosition, sites: Vec<Site>) -> PhantomSpec {
    common::small_phantom(seed, position, sites, 20, 3)
}

#[test]
fn phantom_sequences_volume_error_and_leak_sensitivity() {
    let cases = [
        (11, PatientPosition::Hfp, vec![Site::Disc]),
        (12, PatientPosition::Hfp, vec![Site::Canal]),
        (13, PatientPosition::Hfs, vec![Site::Paraspinal, Site::PosteriorVein]),
        (14, PatientPosition::Hfdl, vec![Site::Disc, Site::Canal]),
    ];
    let mut errors = Vec::new();
    let (mut truth_leaks, mut found_leaks, mut false_leaks) = (0usize, 0usize, 0usize);
    for (seed, position, sites) in cases {
        let case = match generate_case(&spec(seed, position, sites)) {
            Ok(c) => c,
            Err(e) => panic!("phantom {seed}: {e}"),
        };
        let base = &case.scans[0];
        for k in 1..case.scans.len() {
            let scan = &case.scans[k];
            let body = scan.anatomy.mask_of(labels::VERTEBRAL_BODY);
            let inputs = CementInputs {
                scan: &scan.ct,
                baseline: Some(&base.ct),
                previous: if k > 1 { Some(&case.scans[k - 1].ct) } else { None },
                body: &body,
                canal: None,
            };
            let f = match detect(&inputs, &CementParams::default()) {
                Ok(f) => f,
                Err(e) => panic!("phantom {seed} step {k}: {e}"),
            };
            let t = &scan.truth;
            if t.intravertebral_cement_ml > 0.2 {
                errors.push((f.intravertebral_ml - t.intravertebral_cement_ml) / t.intravertebral_cement_ml);
            }
            // A truth leak is found when a detected leak shares a voxel with it (labels 11-14, 1 voxel margin).
            let truth_vox: HashSet<[usize; 3]> = scan
                .labels
                .data
                .indexed_iter()
                .filter(|(_, l)| (labels::LEAK_CANAL..=labels::LEAK_PARASPINAL).contains(*l))
                .map(|((z, y, x), _)| [z, y, x])
                .collect();
            let near = |v: [usize; 3]| -> bool {
                (-1isize..=1).any(|dz| {
                    (-1isize..=1).any(|dy| {
                        (-1isize..=1).any(|dx| {
                            let n = [v[0] as isize + dz, v[1] as isize + dy, v[2] as isize + dx];
                            n.iter().all(|c| *c >= 0) && truth_vox.contains(&n.map(|c| c as usize))
                        })
                    })
                })
            };
            let mut hits = 0;
            for l in &t.leaks {
                truth_leaks += 1;
                let found = f.leaks.iter().any(|d| {
                    d.centroid.distance(l.centroid_lps_mm) < 10.0 && d.voxels.iter().any(|v| near(*v))
                });
                if found {
                    hits += 1;
                    found_leaks += 1;
                }
            }
            let fp = f.leaks.iter().filter(|d| !d.voxels.iter().any(|v| near(*v))).count();
            false_leaks += fp;
            println!(
                "seed {seed} {position} step {k}: intravertebral {:.2} mL (truth {:.2}); leaks truth {} found {hits}, \
                 false {fp}; new {:?} mL (truth increment {:.2}); warnings {:?}",
                f.intravertebral_ml,
                t.intravertebral_cement_ml,
                t.leaks.len(),
                f.new_since_previous_ml,
                t.increment_ml,
                f.warnings
            );
        }
    }
    let mean_abs = errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len().max(1) as f64;
    let worst = errors.iter().fold(0.0f64, |a, e| a.max(e.abs()));
    println!(
        "PHANTOM SUMMARY: intravertebral volume error mean |{:.1}|%, worst {:.1}% over {} scans; leak sensitivity \
         {found_leaks}/{truth_leaks}; false leaks {false_leaks}",
        100.0 * mean_abs,
        100.0 * worst,
        errors.len()
    );
    assert!(!errors.is_empty() && truth_leaks > 0);
}
