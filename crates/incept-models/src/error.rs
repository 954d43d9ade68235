//! The error type of the models crate.

use std::path::PathBuf;

use thiserror::Error;

use crate::io::StateDictMismatch;

/// A failure while building, running, loading or saving a model or a data set.
#[derive(Debug, Error)]
pub enum ModelError {
    /// A tensor operation rejected its input.
    #[error(transparent)]
    Tensor(#[from] incept_tensor::TensorError),
    /// The autograd tape rejected an operation.
    #[error(transparent)]
    Autograd(#[from] incept_autograd::AutogradError),
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A file was read but its contents are not what the format requires.
    #[error("{path}: invalid file: {reason}")]
    Format {
        /// File involved.
        path: PathBuf,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// A checkpoint was read, but its tensors do not match the model's
    /// parameters and buffers. Nothing was loaded.
    #[error("{path}: state dict does not match the model: {mismatch}")]
    StateDict {
        /// File involved.
        path: PathBuf,
        /// Every missing, unexpected and mismatched tensor (boxed to keep
        /// `ModelError` small).
        mismatch: Box<StateDictMismatch>,
    },
    /// A model or data configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Result of a fallible model or data operation.
pub type Result<T> = std::result::Result<T, ModelError>;
