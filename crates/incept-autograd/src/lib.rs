//! Reverse-mode automatic differentiation for incept.
#![warn(missing_docs)]

mod error;

pub use error::{AutogradError, Result};
