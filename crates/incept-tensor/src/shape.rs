//! Tensor shapes.

use std::fmt;

use crate::{Result, TensorError};

/// Sizes `(outer, len, inner)` of `dims` around `axis`: element `(o, l, i)`
/// of the tensor seen as `[outer, len, inner]` sits at `(o * len + l) * inner + i`.
///
/// # Errors
/// [`TensorError::InvalidArgument`] naming `op` if `axis` is out of range.
pub(crate) fn around_axis(op: &'static str, dims: &[usize], axis: usize) -> Result<(usize, usize, usize)> {
    if axis >= dims.len() {
        return Err(TensorError::invalid(op, format!("axis {axis} is out of range for shape {dims:?}")));
    }
    Ok((dims[..axis].iter().product(), dims[axis], dims[axis + 1..].iter().product()))
}

/// The dimensions of a tensor, outermost first (NCHW for images, OIHW for
/// convolution weights, as PyTorch stores them).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<usize>);

impl Shape {
    /// Creates a shape from its dimensions.
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape(dims.into())
    }

    /// Dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Number of elements: the product of the dimensions (1 for a scalar).
    ///
    /// # Panics
    /// If the product overflows `usize`; [`Shape::checked_numel`] reports
    /// that case as `None` instead.
    pub fn numel(&self) -> usize {
        self.checked_numel().unwrap_or_else(|| panic!("shape {:?} has more than usize::MAX elements", self.0))
    }

    /// Number of elements, or `None` if the product overflows `usize`.
    pub fn checked_numel(&self) -> Option<usize> {
        self.0.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<Vec<usize>> for Shape {
    fn from(dims: Vec<usize>) -> Self {
        Shape(dims)
    }
}

impl From<&[usize]> for Shape {
    fn from(dims: &[usize]) -> Self {
        Shape(dims.to_vec())
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(dims: [usize; N]) -> Self {
        Shape(dims.to_vec())
    }
}

impl From<&Shape> for Shape {
    fn from(shape: &Shape) -> Self {
        shape.clone()
    }
}
