//! The shipped leak-site model gives the same probabilities in Rust (ort) as in Python onnxruntime on the
//! same patches, and loads with its reference (file name + SHA-256).

use cementleak::leaks::{LeakModel, Patch};
use cementleak::volume::{Lps, Vec3};
use ndarray::Array4;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Model and Python, or the reason to skip.
fn setup() -> Option<(PathBuf, PathBuf)> {
    let model = root().join(cementleak::leaks::model::DEFAULT_MODEL_PATH);
    let python = root().join(".venv/bin/python");
    if !model.is_file() {
        eprintln!("SKIP: {} absent (train it with scripts/train_leak_model.py)", model.display());
        return None;
    }
    if !python.is_file() {
        eprintln!("SKIP: {} absent (run scripts/setup.sh)", python.display());
        return None;
    }
    Some((model, python))
}

/// Patches with the value ranges of real ones: HU channel -0.3..3 with a bright blob, 0/1 masks with
/// partial-volume edges, placed differently in each.
fn patches(n: usize) -> Vec<Patch> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let [c, s, _, _] = Patch::SHAPE;
    (0..n)
        .map(|k| {
            let centre = [0, 1, 2].map(|_| rng.random_range(6.0..18.0f32));
            let radius = rng.random_range(2.0..6.0f32);
            let body_h = rng.random_range(4usize..14);
            let mut data = Array4::<f32>::zeros((c, s, s, s));
            for ((ch, d, h, w), v) in data.indexed_iter_mut() {
                let r = ((d as f32 - centre[0]).powi(2)
                    + (h as f32 - centre[1]).powi(2)
                    + (w as f32 - centre[2]).powi(2))
                .sqrt();
                let blob = (radius + 0.5 - r).clamp(0.0, 1.0);
                *v = match ch {
                    0 => {
                        0.04 + 2.0 * blob + rng.random_range(-0.03..0.03) + if h < body_h { 0.2 } else { 0.0 }
                    }
                    1 => blob,
                    3 => f32::from(h < body_h),
                    4 => f32::from(h > body_h + 2 && w.abs_diff(12) < 5),
                    5 => f32::from(h < body_h && d > 20),
                    6 => f32::from(h > 20),
                    _ => f32::from(k % 2 == 0 && h < body_h && r > 8.0),
                };
            }
            Patch {
                data,
                centre: Lps::default(),
                axes: [Vec3([0.0, 0.0, 1.0]), Vec3([0.0, 1.0, 0.0]), Vec3([1.0, 0.0, 0.0])],
                mirrored: false,
            }
        })
        .collect()
}

fn python_probabilities(python: &Path, model: &Path, files: &[PathBuf]) -> Vec<Vec<f64>> {
    let out = Command::new(python)
        .arg(root().join("scripts/leak_model_parity.py"))
        .arg(model)
        .args(files)
        .output()
        .expect("run the Python reference");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON from the Python reference")
}

#[test]
fn rust_matches_python_onnxruntime() {
    let Some((model_path, python)) = setup() else { return };
    let mut model = match LeakModel::load(&model_path) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let patches = patches(6);
    let dir = tempfile::tempdir().expect("temp dir");
    let files: Vec<PathBuf> = patches
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let f = dir.path().join(format!("patch_{i}.npy"));
            cementleak::leaks::npy::write_f32(&f, &p.data).expect("write npy");
            f
        })
        .collect();
    let rust = model.predict(&patches).expect("predict");
    let py = python_probabilities(&python, &model_path, &files);
    assert_eq!(py.len(), rust.len());
    let mut max_diff = 0.0f64;
    for (r, p) in rust.iter().zip(&py) {
        assert!((r.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        for (a, b) in r.probabilities.iter().zip(p) {
            max_diff = max_diff.max((*a as f64 - b).abs());
        }
    }
    // One at a time, as the pipeline calls it for a scan with one leak.
    let t = Instant::now();
    let reps = 20;
    for i in 0..reps {
        model.predict(&patches[i % patches.len()..i % patches.len() + 1]).expect("predict one");
    }
    let ms = t.elapsed().as_secs_f64() * 1000.0 / reps as f64;
    println!("Rust vs Python onnxruntime: max |probability difference| {max_diff:.2e}; {ms:.2} ms per patch");
    assert!(max_diff <= 1e-5, "max difference {max_diff}");
    // The batch does not change a patch's answer.
    let single = model.predict(&patches[..1]).expect("predict one");
    for (a, b) in single[0].probabilities.iter().zip(rust[0].probabilities) {
        assert!((a - b).abs() <= 1e-5);
    }
}

/// A float32 `[7, 24, 24, 24]` patch written by `cementleak patches` (`leaks::npy::write_f32`).
fn read_patch(path: &Path) -> Option<Patch> {
    let bytes = std::fs::read(path).ok()?;
    let len = u16::from_le_bytes([*bytes.get(8)?, *bytes.get(9)?]) as usize;
    let header = String::from_utf8_lossy(bytes.get(10..10 + len)?);
    let [c, d, h, w] = Patch::SHAPE;
    if !header.contains("'<f4'") || !header.contains(&format!("'shape': ({c}, {d}, {h}, {w})")) {
        return None;
    }
    let data: Vec<f32> = bytes
        .get(10 + len..)?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    Some(Patch {
        data: Array4::from_shape_vec((c, d, h, w), data).ok()?,
        centre: Lps::default(),
        axes: [Vec3([0.0, 0.0, 1.0]), Vec3([0.0, 1.0, 0.0]), Vec3([1.0, 0.0, 0.0])],
        mirrored: false,
    })
}

/// The same check on patches of the pipeline itself, when an export exists (`LEAK_PATCH_DIR`, default
/// `target/leak_patches/test`, written by `scripts/retrain_leak_model.sh`): real component and anatomy
/// channels reach parts of the graph the synthetic patches may not.
#[test]
fn rust_matches_python_on_exported_patches() {
    let Some((model_path, python)) = setup() else { return };
    let dir = std::env::var_os("LEAK_PATCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/leak_patches/test"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension() == Some("npy".as_ref()))
                .collect()
        })
        .unwrap_or_default();
    if files.is_empty() {
        eprintln!("SKIP: no exported patches under {}", dir.display());
        return;
    }
    files.sort();
    // Spread over the export (files sort by seed), 16 at most.
    let step = files.len().div_ceil(16);
    let files: Vec<PathBuf> = files.into_iter().step_by(step).collect();
    let patches: Vec<Patch> = files
        .iter()
        .map(|f| read_patch(f).unwrap_or_else(|| panic!("{} is not a patch", f.display())))
        .collect();
    let mut model = LeakModel::load(&model_path).unwrap_or_else(|e| panic!("{e}"));
    let rust = model.predict(&patches).expect("predict");
    let py = python_probabilities(&python, &model_path, &files);
    assert_eq!(py.len(), rust.len());
    let max_diff = rust
        .iter()
        .zip(&py)
        .flat_map(|(r, p)| r.probabilities.iter().zip(p).map(|(a, b)| (f64::from(*a) - b).abs()))
        .fold(0.0f64, f64::max);
    println!(
        "exported patches ({}): Rust vs Python onnxruntime max |probability difference| {max_diff:.2e}",
        files.len()
    );
    assert!(max_diff <= 1e-5, "max difference {max_diff}");
}

#[test]
fn reference_names_the_file_and_its_hash() {
    let Some((model_path, _)) = setup() else { return };
    let model = match LeakModel::load(&model_path) {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    let r = model.reference();
    assert_eq!(r.file, "leak_site.onnx");
    use sha2::Digest;
    let bytes = std::fs::read(&model_path).expect("read model");
    let want: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(r.sha256, want);
}

#[test]
fn a_model_for_other_patches_is_refused() {
    let Some((model_path, _)) = setup() else { return };
    // The same graph with its metadata removed: loading must refuse it rather than guess the layout.
    let bytes = std::fs::read(&model_path).expect("read model");
    let key = b"cementleak.patch";
    let Some(pos) = bytes.windows(key.len()).position(|w| w == key) else {
        panic!("model has no cementleak.patch metadata")
    };
    let mut altered = bytes.clone();
    altered[pos + key.len() - 5..pos + key.len()].copy_from_slice(b"xxxxx");
    let dir = tempfile::tempdir().expect("temp dir");
    let f = dir.path().join("other.onnx");
    std::fs::write(&f, &altered).expect("write");
    let err = LeakModel::load(&f).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("does not fit this build"), "{err}");
}
