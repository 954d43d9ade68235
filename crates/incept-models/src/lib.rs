//! Layers, Inception modules, GoogLeNet and data loading for incept.
#![warn(missing_docs)]

pub mod data;
mod error;

pub use error::{ModelError, Result};
