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
