//! Helpers shared by integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The shared real-data folder: `$CEMENTLEAK_DATA`, else `../shared/data` next to the project.
/// Returns `None` (after printing why) when it is absent, so the calling test can skip loudly.
pub fn shared_data(sub: &str) -> Option<PathBuf> {
    let base = std::env::var_os("CEMENTLEAK_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let p = base.join(sub);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("SKIP: {} not found (set CEMENTLEAK_DATA to the shared data folder)", p.display());
        None
    }
}

/// A small phantom sequence for integration tests: 192 x 192 at 0.8 mm, 2.5 mm slices, 1 mm patient model,
/// the given leak sites (empty = none). Big enough for realistic partial volume, small enough to be quick.
pub fn small_phantom(
    seed: u64,
    position: cementleak::volume::PatientPosition,
    sites: Vec<cementleak::leaks::Site>,
    slices: usize,
    steps: usize,
) -> cementleak::phantom::PhantomSpec {
    let mut s = cementleak::phantom::PhantomSpec::from_seed(seed);
    s.position = position;
    s.matrix = 192;
    s.pixel_mm = Some(0.8);
    s.slices = Some(slices);
    s.slice_thickness_mm = Some(2.5);
    s.model_mm = 1.0;
    s.leak_sites = Some(sites);
    s.steps = Some(steps);
    s
}
