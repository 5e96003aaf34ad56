//! The leak-site ONNX model (`models/leak_site.onnx`, trained by `scripts/train_leak_model.py`, card in
//! `models/leak_site.md`): class probabilities over [`ModelClass::ALL`] for each leak patch.
//!
//! The graph takes `patch` float32 `[batch, channels, d, h, w]` (the layout of [`Patch::data`]) and gives
//! `logits` `[batch, 5]`; softmax is applied here. The training script writes the patch layout and the class
//! order into the model's metadata (`cementleak.classes`, `cementleak.patch`), and loading refuses a model
//! whose metadata disagrees with this build: a model trained on other patches would give confident nonsense.

use super::patch::{Patch, CHANNELS, PATCH_SIZE, PATCH_SPACING_MM};
use super::{ModelClass, ModelOpinion};
use crate::onnx::OnnxError;
use crate::report::ModelRef;
use ndarray::{Array5, Axis};
use ort::session::Session;
use ort::value::Tensor;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where the model ships, relative to the project root.
pub const DEFAULT_MODEL_PATH: &str = "models/leak_site.onnx";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Runtime(#[from] OnnxError),
    #[error("leak-site model not found at {path}; it ships as models/leak_site.onnx (retrain with scripts/train_leak_model.py)")]
    Missing { path: PathBuf },
    #[error("cannot read leak-site model {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("ONNX Runtime cannot load leak-site model {path}: {reason}")]
    Session { path: PathBuf, reason: String },
    #[error("leak-site model {path} does not fit this build: {reason}")]
    Incompatible { path: PathBuf, reason: String },
    #[error("leak-site model inference failed: {0}")]
    Inference(String),
}

/// A loaded leak-site model with its ONNX Runtime session.
pub struct LeakModel {
    session: Session,
    // Sessions need the environment alive; ort keeps only a weak reference to it.
    _environment: ort::environment::Environment,
    input: String,
    output: String,
    reference: ModelRef,
}

impl std::fmt::Debug for LeakModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeakModel")
            .field("file", &self.reference.file)
            .field("sha256", &self.reference.sha256)
            .finish()
    }
}

/// The class order as the model metadata spells it.
pub fn class_names() -> String {
    ModelClass::ALL.iter().map(|c| c.name()).collect::<Vec<_>>().join(",")
}

/// The patch layout as the model metadata spells it: `channels;size;spacing_mm`.
pub fn patch_layout() -> String {
    format!("{};{};{}", CHANNELS.join(","), PATCH_SIZE, PATCH_SPACING_MM)
}

impl LeakModel {
    /// Load the model at `path`, with ONNX Runtime found the usual way (`ORT_DYLIB_PATH`, next to the
    /// executable, the project's `.venv`).
    pub fn load(path: &Path) -> Result<LeakModel, ModelError> {
        LeakModel::load_with_runtime(path, None)
    }

    /// As [`LeakModel::load`], with an explicit ONNX Runtime library (`--onnxruntime`).
    pub fn load_with_runtime(path: &Path, runtime: Option<&Path>) -> Result<LeakModel, ModelError> {
        if !path.is_file() {
            return Err(ModelError::Missing { path: path.to_path_buf() });
        }
        let bytes = std::fs::read(path)
            .map_err(|e| ModelError::Read { path: path.to_path_buf(), reason: e.to_string() })?;
        let sha256 = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect::<String>();
        let environment = crate::onnx::environment(runtime)?;
        let session_err = |reason: String| ModelError::Session { path: path.to_path_buf(), reason };
        let session = Session::builder(&environment)
            .map_err(|e| session_err(e.to_string()))?
            // One thread: a patch takes a few milliseconds, and the pipeline's own threads run beside it.
            .with_intra_threads(1)
            .map_err(|e| session_err(e.to_string()))?
            .commit_from_memory(&bytes)
            .map_err(|e| session_err(e.to_string()))?;
        let incompatible = |reason: String| ModelError::Incompatible { path: path.to_path_buf(), reason };
        let meta = session.metadata().map_err(|e| session_err(e.to_string()))?;
        let classes = meta.custom("cementleak.classes");
        if classes.as_deref() != Some(class_names().as_str()) {
            return Err(incompatible(format!("classes {classes:?}, expected {:?}", class_names())));
        }
        let layout = meta.custom("cementleak.patch");
        if layout.as_deref() != Some(patch_layout().as_str()) {
            return Err(incompatible(format!("patch layout {layout:?}, expected {:?}", patch_layout())));
        }
        drop(meta);
        let (Some(input), Some(output)) = (session.inputs().first(), session.outputs().first()) else {
            return Err(incompatible("the graph needs one input and one output".into()));
        };
        let (input, output) = (input.name().to_string(), output.name().to_string());
        let file =
            path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        tracing::debug!(%file, %sha256, %input, %output, "leak-site model loaded");
        Ok(LeakModel {
            session,
            _environment: environment,
            input,
            output,
            reference: ModelRef { file, sha256 },
        })
    }

    /// File name and SHA-256 of the loaded model, for the report's `generator.model`.
    pub fn reference(&self) -> ModelRef {
        self.reference.clone()
    }

    /// Class probabilities for each patch, in order.
    pub fn predict(&mut self, patches: &[Patch]) -> Result<Vec<ModelOpinion>, ModelError> {
        if patches.is_empty() {
            return Ok(Vec::new());
        }
        let [c, d, h, w] = Patch::SHAPE;
        let mut batch = Array5::<f32>::zeros((patches.len(), c, d, h, w));
        for (mut slot, p) in batch.axis_iter_mut(Axis(0)).zip(patches) {
            if p.data.shape() != Patch::SHAPE {
                return Err(ModelError::Inference(format!(
                    "patch of shape {:?}, expected {:?}",
                    p.data.shape(),
                    Patch::SHAPE
                )));
            }
            slot.assign(&p.data);
        }
        let tensor = Tensor::from_array(batch).map_err(|e| ModelError::Inference(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| ModelError::Inference(e.to_string()))?;
        let logits = outputs[self.output.as_str()]
            .try_extract_array::<f32>()
            .map_err(|e| ModelError::Inference(e.to_string()))?;
        let n = ModelClass::ALL.len();
        if logits.shape() != [patches.len(), n] {
            return Err(ModelError::Inference(format!(
                "output of shape {:?}, expected [{}, {n}]",
                logits.shape(),
                patches.len()
            )));
        }
        logits
            .rows()
            .into_iter()
            .map(|row| {
                let mut z = [0.0f32; 5];
                for (o, v) in z.iter_mut().zip(row.iter()) {
                    *o = *v;
                }
                softmax(z).map(|probabilities| ModelOpinion { probabilities })
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| ModelError::Inference("the model gave non-finite logits".into()))
    }
}

/// Numerically stable softmax; `None` on non-finite input.
pub fn softmax(z: [f32; 5]) -> Option<[f32; 5]> {
    if !z.iter().all(|v| v.is_finite()) {
        return None;
    }
    let m = z.iter().copied().fold(f32::MIN, f32::max);
    let e = z.map(|v| (v - m).exp());
    let s: f32 = e.iter().sum();
    Some(e.map(|v| v / s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let p = softmax([1000.0, 999.0, 0.0, -5.0, 1.0]).unwrap_or([0.0; 5]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] > p[1] && p[1] > p[4]);
        assert!(softmax([f32::NAN, 0.0, 0.0, 0.0, 0.0]).is_none());
    }

    #[test]
    fn missing_model_says_where_it_looked() {
        let e = LeakModel::load(Path::new("/nonexistent/leak_site.onnx")).err();
        let msg = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("/nonexistent/leak_site.onnx") && msg.contains("train_leak_model.py"), "{msg}");
    }

    #[test]
    fn metadata_strings_name_classes_and_layout() {
        assert_eq!(class_names(), "canal,posterior_vein,disc,paraspinal,not_cement");
        assert!(patch_layout().starts_with("hu,component,"));
    }
}
