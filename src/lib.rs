//! incept: a from-scratch CNN library whose flagship model is GoogLeNet.
//!
//! This facade re-exports the three crates of the workspace:
//! [`tensor`] (tensors and kernels), [`autograd`] (reverse-mode
//! differentiation, losses, optimisers) and [`models`] (layers, Inception,
//! GoogLeNet, data loading), plus [`train`], the training loop the
//! examples use.

pub use incept_autograd as autograd;
pub use incept_models as models;
pub use incept_tensor as tensor;

pub mod train;
