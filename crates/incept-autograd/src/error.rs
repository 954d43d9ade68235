//! The error type of the autograd crate.

use thiserror::Error;

/// A failure while recording or differentiating a computation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AutogradError {
    /// The forward kernel rejected its input.
    #[error(transparent)]
    Tensor(#[from] incept_tensor::TensorError),
    /// `backward` was called on a value that has more than one element;
    /// only a scalar loss has an implicit seed gradient of one.
    #[error("backward: the loss must be a scalar, got shape {shape:?}; reduce it first (for example with mean)")]
    NonScalarLoss {
        /// Shape of the value passed to `backward`.
        shape: Vec<usize>,
    },
    /// `backward` was called on a value that the tape did not record, such
    /// as a constant or a value computed in inference mode.
    #[error(
        "backward: the value was not recorded on this tape (was it computed in inference mode, or is it a constant?)"
    )]
    NotRecorded,
    /// An argument is outside the accepted range.
    #[error("{op}: invalid argument: {reason}")]
    InvalidArgument {
        /// Operation that rejected the input.
        op: &'static str,
        /// The value and the accepted range.
        reason: String,
    },
}

/// Result of a fallible autograd operation.
pub type Result<T> = std::result::Result<T, AutogradError>;
