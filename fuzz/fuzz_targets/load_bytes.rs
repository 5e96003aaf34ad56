//! Parse and decode one DICOM file from arbitrary bytes: must return Ok or a LoadError, never panic,
//! abort or run out of memory.
//!
//! A panic inside a third-party decoder that the loader contains (`load::dicom::contain`) is an error by
//! design, as in the binary: the same hook is installed over libFuzzer's, which still aborts on any other
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

static HOOK: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    HOOK.call_once(cementleak::load::dicom::contain::install_panic_hook);
    let _ = cementleak::load::dicom::load_dicom_bytes(data);
});
