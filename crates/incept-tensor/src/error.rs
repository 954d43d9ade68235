//! The error type shared by every tensor operation.

use thiserror::Error;

/// An invalid argument to a tensor operation, reported before any kernel runs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TensorError {
    /// The number of elements does not match the requested shape.
    #[error("{op}: {len} elements cannot have shape {shape:?} ({expected} elements)")]
    ElementCount {
        /// Operation that rejected the input.
        op: &'static str,
        /// Requested shape.
        shape: Vec<usize>,
        /// Elements that shape holds.
        expected: usize,
        /// Elements supplied.
        len: usize,
    },
    /// Two or more operand shapes are incompatible.
    #[error("{op}: incompatible shapes {shapes:?}: {reason}")]
    ShapeMismatch {
        /// Operation that rejected the input.
        op: &'static str,
        /// Every operand shape involved.
        shapes: Vec<Vec<usize>>,
        /// Which dimension disagrees and what was expected.
        reason: String,
    },
    /// An operand has the wrong number of dimensions.
    #[error("{op}: expected a {expected}-D tensor, got shape {shape:?}")]
    Rank {
        /// Operation that rejected the input.
        op: &'static str,
        /// Required number of dimensions.
        expected: usize,
        /// Shape supplied.
        shape: Vec<usize>,
    },
    /// A scalar argument or a geometry is outside the accepted range.
    #[error("{op}: invalid argument: {reason}")]
    InvalidArgument {
        /// Operation that rejected the input.
        op: &'static str,
        /// The value and the accepted range.
        reason: String,
    },
}

/// Result of a fallible tensor operation.
pub type Result<T> = std::result::Result<T, TensorError>;

impl TensorError {
    /// Builds an [`TensorError::InvalidArgument`].
    pub fn invalid(op: &'static str, reason: impl Into<String>) -> Self {
        TensorError::InvalidArgument { op, reason: reason.into() }
    }

    /// Builds a [`TensorError::ShapeMismatch`] from any shapes.
    pub fn mismatch(op: &'static str, shapes: &[&[usize]], reason: impl Into<String>) -> Self {
        TensorError::ShapeMismatch { op, shapes: shapes.iter().map(|s| s.to_vec()).collect(), reason: reason.into() }
    }
}
