//! Tensors and the CPU kernels of incept.
//!
//! [`Tensor`] is a dense, contiguous, row-major array generic over `f32`
//! (the product) and `f64` (reference kernels and gradient checks). Every
//! CNN kernel lives here as a plain function on tensors: convolution by
//! im2col and GEMM, pooling, batch normalisation, activations, linear
//! layers, dropout and the softmax family. Each fast kernel has a naive
//! twin in [`reference`](mod@reference) that the tests use as the oracle.
//!
//! Shape problems are reported as [`TensorError`] at the public boundary,
//! so the inner loops never index out of bounds. A batch of zero images
//! gives an empty output from every kernel except training-mode batch norm
//! and cross-entropy, which have no statistics or mean to compute and
//! return an error.
//!
//! ```
//! use incept_tensor::{Tensor, conv::{Conv2dParams, conv2d}};
//!
//! let x = Tensor::<f32>::ones([1, 1, 4, 4]);
//! let w = Tensor::<f32>::ones([1, 1, 3, 3]);
//! let y = conv2d(&x, &w, None, Conv2dParams::new(1, 1)).unwrap();
//! assert_eq!(y.dims(), &[1, 1, 4, 4]);
//! assert_eq!(y.data()[5], 9.0); // an interior pixel sees all nine ones
//! assert_eq!(y.data()[0], 4.0); // a corner sees four, the rest is padding
//! ```

#![warn(missing_docs)]

mod error;
mod float;
mod shape;
mod tensor;
mod window;

pub mod gemm;

pub use error::{Result, TensorError};
pub use float::Float;
pub use shape::Shape;
pub use tensor::Tensor;

pub mod batch_norm;
pub mod broadcast;
pub mod conv;
pub mod elementwise;
pub mod layout;
pub mod linear;
pub mod lrn;
pub mod pool;
pub mod reduce;
pub mod reference;
pub mod softmax;
