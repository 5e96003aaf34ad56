//! ONNX Runtime is found and loaded the way the shipped binary finds it.

use std::path::Path;

#[test]
fn loads_the_library_that_setup_installs() {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv");
    let installed =
        cementleak::onnx::candidate_paths(None).into_iter().any(|p| p.starts_with(&venv) && p.is_file());
    if !installed && std::env::var_os("ORT_DYLIB_PATH").is_none() {
        eprintln!("SKIP: no onnxruntime in .venv and no ORT_DYLIB_PATH (run scripts/setup.sh)");
        return;
    }
    let env = cementleak::onnx::environment(None);
    assert!(env.is_ok(), "{}", env.err().map(|e| e.to_string()).unwrap_or_default());
}
