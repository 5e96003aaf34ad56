//! Stage 4: cement outside the vertebral body — leak components and their anatomical sites.

pub mod site;

pub use site::Site;
