//! cementleak: finds bone cement (PMMA) that leaked out of the vertebral body on CT scans taken during
//! vertebroplasty, and says what to do next.
//!
//! One module per pipeline stage, in order:
//! `load` (series -> HU volume with LPS geometry) -> `anatomy` (vertebral body, canal, discs, posterior
//! elements) -> `cement` (new hyperdense PMMA, needle removed) -> `leaks` (components and their sites) ->
//! `alert` (what to do next) -> `report` (JSON, masks, key images). Beside them: `volume` (types and geometry),
//! `write` (DICOM and NIfTI writers), `phantom` (synthetic injection sequences with ground truth), `cli`.

pub mod alert;
pub mod analyze;
pub mod anatomy;
pub mod cement;
pub mod cli;
pub mod eval;
pub mod leaks;
pub mod load;
pub mod onnx;
pub mod phantom;
pub mod render;
pub mod report;
pub mod volume;
pub mod write;

/// Reproducible pseudo-random numbers for unit tests (a 64-bit LCG's high bits; no crate needed).
#[cfg(test)]
pub(crate) fn test_rng(seed: u64) -> impl FnMut() -> u32 {
    let mut state = seed;
    move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    }
}
