//! The dense tensor type and its constructors.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::{Float, Result, Shape, TensorError};

/// A dense, contiguous, row-major tensor.
///
/// Images are NCHW and convolution weights OIHW, the layouts PyTorch uses,
/// so weights exported from PyTorch load without transposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor<T: Float = f32> {
    shape: Shape,
    data: Vec<T>,
}

impl<T: Float> Tensor<T> {
    /// Wraps `data` as a tensor of `shape`.
    ///
    /// # Errors
    /// [`TensorError::ElementCount`] if `data.len()` is not the product of
    /// the dimensions.
    pub fn from_vec(data: Vec<T>, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if shape.checked_numel() != Some(data.len()) {
            return Err(TensorError::ElementCount {
                op: "Tensor::from_vec",
                shape: shape.dims().to_vec(),
                expected: shape.checked_numel().unwrap_or(usize::MAX),
                len: data.len(),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// Creates a tensor filled with `value`.
    ///
    /// # Panics
    /// If the number of elements overflows `usize` (see [`Shape::numel`]).
    pub fn full(shape: impl Into<Shape>, value: T) -> Self {
        let shape = shape.into();
        let data = vec![value; shape.numel()];
        Tensor { shape, data }
    }

    /// Creates a tensor of zeros.
    pub fn zeros(shape: impl Into<Shape>) -> Self {
        Self::full(shape, T::zero())
    }

    /// Creates a tensor of ones.
    pub fn ones(shape: impl Into<Shape>) -> Self {
        Self::full(shape, T::one())
    }

    /// Creates a 0-D tensor holding one value.
    pub fn scalar(value: T) -> Self {
        Tensor { shape: Shape::new(vec![]), data: vec![value] }
    }

    /// Creates the 1-D tensor `[0, 1, ..., n - 1]`.
    pub fn arange(n: usize) -> Self {
        let data = (0..n).map(T::from_usize).collect();
        Tensor { shape: Shape::new(vec![n]), data }
    }

    /// Creates a tensor of independent draws from `U[low, high)`, the same
    /// for the same seed.
    ///
    /// # Panics
    /// If `low >= high` or either bound is not finite.
    pub fn rand_uniform(shape: impl Into<Shape>, low: T, high: T, seed: u64) -> Self {
        let shape = shape.into();
        let mut rng = StdRng::seed_from_u64(seed);
        let dist =
            Uniform::new(low.as_f64(), high.as_f64()).expect("rand_uniform: bounds must be finite with low < high");
        let data = (0..shape.numel()).map(|_| T::from_f64(dist.sample(&mut rng))).collect();
        Tensor { shape, data }
    }

    /// Creates a tensor of independent draws from `N(mean, std^2)`, the same
    /// for the same seed.
    ///
    /// # Panics
    /// If `std` is negative or not finite.
    pub fn randn(shape: impl Into<Shape>, mean: T, std: T, seed: u64) -> Self {
        let shape = shape.into();
        let mut rng = StdRng::seed_from_u64(seed);
        let dist = Normal::new(mean.as_f64(), std.as_f64()).expect("randn: std must be finite and non-negative");
        let data = (0..shape.numel()).map(|_| T::from_f64(dist.sample(&mut rng))).collect();
        Tensor { shape, data }
    }

    /// Shape of the tensor.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// Dimensions, outermost first.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Elements in row-major order.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// Elements in row-major order, writable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Consumes the tensor and returns its elements.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    /// Returns the single element of a one-element tensor.
    ///
    /// # Errors
    /// [`TensorError::InvalidArgument`] if the tensor has more or fewer than
    /// one element.
    pub fn item(&self) -> Result<T> {
        match self.data.as_slice() {
            [x] => Ok(*x),
            _ => Err(TensorError::invalid(
                "Tensor::item",
                format!("shape {:?} has {} elements, expected 1", self.dims(), self.numel()),
            )),
        }
    }

    /// Returns the same elements with another shape of equal size.
    ///
    /// # Errors
    /// [`TensorError::ElementCount`] if the element counts differ.
    pub fn reshape(self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if shape.checked_numel() != Some(self.data.len()) {
            return Err(TensorError::ElementCount {
                op: "Tensor::reshape",
                shape: shape.dims().to_vec(),
                expected: shape.checked_numel().unwrap_or(usize::MAX),
                len: self.data.len(),
            });
        }
        Ok(Tensor { shape, data: self.data })
    }

    /// Converts every element to another float type.
    pub fn cast<U: Float>(&self) -> Tensor<U> {
        Tensor { shape: self.shape.clone(), data: self.data.iter().map(|x| U::from_f64(x.as_f64())).collect() }
    }

    /// Adds `other` into `self` element by element.
    ///
    /// # Errors
    /// [`TensorError::ShapeMismatch`] if the shapes differ.
    pub fn add_assign(&mut self, other: &Tensor<T>) -> Result<()> {
        self.expect_same_shape("Tensor::add_assign", other)?;
        for (a, &b) in self.data.iter_mut().zip(&other.data) {
            *a = *a + b;
        }
        Ok(())
    }

    /// Returns the largest absolute element-wise difference to `other`.
    ///
    /// # Errors
    /// [`TensorError::ShapeMismatch`] if the shapes differ.
    pub fn max_abs_diff(&self, other: &Tensor<T>) -> Result<f64> {
        self.expect_same_shape("Tensor::max_abs_diff", other)?;
        Ok(self.data.iter().zip(&other.data).map(|(a, b)| (a.as_f64() - b.as_f64()).abs()).fold(0.0, f64::max))
    }

    /// Checks that `other` has the same shape as `self`.
    ///
    /// # Errors
    /// [`TensorError::ShapeMismatch`] naming `op` if the shapes differ.
    pub fn expect_same_shape(&self, op: &'static str, other: &Tensor<T>) -> Result<()> {
        if self.shape != other.shape {
            return Err(TensorError::mismatch(op, &[self.dims(), other.dims()], "the shapes must be equal"));
        }
        Ok(())
    }

    /// Checks that the tensor has `rank` dimensions and returns them.
    ///
    /// # Errors
    /// [`TensorError::Rank`] naming `op` otherwise.
    pub fn expect_rank(&self, op: &'static str, rank: usize) -> Result<&[usize]> {
        if self.shape.rank() != rank {
            return Err(TensorError::Rank { op, expected: rank, shape: self.dims().to_vec() });
        }
        Ok(self.dims())
    }
}
