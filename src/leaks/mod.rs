//! Stage 4: cement outside the vertebral body — leak components and their anatomical sites.

pub mod opinion;
pub mod site;

pub use opinion::{ModelClass, ModelOpinion};
pub use site::Site;
