//! Parse and decode one DICOM file from arbitrary bytes: must return Ok or a LoadError, never panic,
//! abort or run out of memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cementleak::load::dicom::load_dicom_bytes(data);
});
