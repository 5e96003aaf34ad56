//! ONNX Runtime, loaded at run time from a shared library the project installs (never downloaded by a build).
//!
//! `ort::init()` panics when it cannot find the library, so the library is located here first, in this
//! order: an explicit path (`--onnxruntime`), `ORT_DYLIB_PATH`, next to the executable, the project's
//! `.venv` (the `onnxruntime` wheel that `scripts/setup.sh` installs). Each failure says what to do.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error(
        "ONNX Runtime library not found (looked in: {looked}); run scripts/setup.sh or set ORT_DYLIB_PATH to libonnxruntime.so (version 1.31 or newer)"
    )]
    NotFound { looked: String },
    #[error(
        "cannot load ONNX Runtime from {path}: {reason}; it must be libonnxruntime.so version 1.31 or newer"
    )]
    Load { path: PathBuf, reason: String },
}

const LIB_PREFIX: &str = "libonnxruntime.so";

/// Where to look for the library, most explicit first.
pub fn candidate_paths(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = explicit {
        out.push(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        out.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        out.extend(find_in_dir(&dir));
        // target/{debug,release}/cementleak -> project root
        if let Some(root) = dir.parent().and_then(Path::parent) {
            out.extend(venv_libraries(root));
        }
    }
    out.extend(venv_libraries(Path::new(env!("CARGO_MANIFEST_DIR"))));
    out.dedup();
    out
}

fn find_in_dir(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(LIB_PREFIX)))
        .collect();
    // Prefer the most specific (fully versioned) name.
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found
}

fn venv_libraries(root: &Path) -> Vec<PathBuf> {
    let Ok(libs) = std::fs::read_dir(root.join(".venv/lib")) else { return Vec::new() };
    libs.filter_map(|e| e.ok())
        .flat_map(|py| find_in_dir(&py.path().join("site-packages/onnxruntime/capi")))
        .collect()
}

/// Locate the library: the first candidate that exists.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, OnnxError> {
    let candidates = candidate_paths(explicit);
    if let Some(p) = explicit {
        // An explicit path is a promise: do not silently fall back to another library.
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(OnnxError::NotFound { looked: p.display().to_string() })
        };
    }
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| OnnxError::NotFound {
        looked: candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
    })
}

/// The environment of this process: ONNX Runtime allows one per process, ever (building a second one fails
/// even after the first is dropped), so it is built once and shared by every session.
static ENVIRONMENT: std::sync::Mutex<Option<(PathBuf, ort::environment::Environment)>> =
    std::sync::Mutex::new(None);

/// Load ONNX Runtime (once per process) and create the environment sessions are built in; later calls get
/// the same environment. Asking for another library than the one already loaded is an error.
pub fn environment(explicit: Option<&Path>) -> Result<ort::environment::Environment, OnnxError> {
    let path = find_library(explicit)?;
    let mut cached = ENVIRONMENT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((loaded, env)) = cached.as_ref() {
        if explicit.is_some() && *loaded != path {
            return Err(OnnxError::Load {
                path,
                reason: format!("this process already loaded ONNX Runtime from {}", loaded.display()),
            });
        }
        return Ok(env.clone());
    }
    let load_err = |reason: String| OnnxError::Load { path: path.clone(), reason };
    let builder = ort::init_from(&path).map_err(|e| load_err(e.to_string()))?;
    // Patient scans are analysed here: ask the runtime never to report usage (only Microsoft's Windows builds
    // collect it, but the choice should not depend on which library a site installs).
    let env =
        builder.with_name("cementleak").with_telemetry(false).build().map_err(|e| load_err(e.to_string()))?;
    *cached = Some((path, env.clone()));
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_missing_path_is_a_clear_error() {
        let err = find_library(Some(Path::new("/nonexistent/libonnxruntime.so"))).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("not found") && msg.contains("scripts/setup.sh"), "{msg}");
    }

    #[test]
    fn a_file_that_is_not_the_library_is_refused_without_panic() {
        let dir = std::env::temp_dir().join(format!("cementleak-onnx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let fake = dir.join("libonnxruntime.so.9.9.9");
        std::fs::write(&fake, b"not a shared library").ok();
        assert!(matches!(environment(Some(&fake)), Err(OnnxError::Load { .. })));
        std::fs::remove_dir_all(&dir).ok();
    }
}
