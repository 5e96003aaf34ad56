//! Stage 4: cement outside the vertebral body — leak components and their anatomical sites.

pub mod classify;
pub mod opinion;
pub mod rules;
pub mod site;

pub use opinion::{ModelClass, ModelOpinion};
pub use site::Site;
