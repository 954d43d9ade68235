//! Layers, Inception modules, GoogLeNet and data loading for incept.
//!
//! ```
//! use incept_autograd::{Tape, Var};
//! use incept_models::{ForwardCtx, GoogLeNet, GoogLeNetConfig};
//! use incept_tensor::Tensor;
//!
//! let net = GoogLeNet::<f32>::new(GoogLeNetConfig { width: 0.125, ..Default::default() }).unwrap();
//! let tape = Tape::inference();
//! let images = Var::constant(Tensor::zeros([2, 1, 28, 28]));
//! let out = net.forward(&ForwardCtx::eval(&tape), &images).unwrap();
//! assert_eq!(out.logits.dims(), &[2, 10]);
//! assert!(out.aux.is_none()); // auxiliary heads run only in training
//! ```

#![warn(missing_docs)]

pub mod data;
mod error;
pub mod googlenet;
pub mod inception;
pub mod layers;
mod module;

pub use error::{ModelError, Result};
pub use googlenet::{GoogLeNet, GoogLeNetConfig, GoogLeNetOutput};
pub use inception::{Inception, InceptionConfig};
pub use module::{ForwardCtx, Init, Module};
