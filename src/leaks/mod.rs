//! Stage 4: cement outside the vertebral body — leak components and their anatomical sites.

pub mod classify;
pub mod model;
pub mod npy;
pub mod opinion;
pub mod patch;
pub mod rules;
pub mod site;

pub use model::{LeakModel, ModelError};
pub use opinion::{ModelClass, ModelOpinion};
pub use patch::{extract_patch, Patch, PatchError};
pub use site::Site;
