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
