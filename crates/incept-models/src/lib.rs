//! Layers, Inception modules, GoogLeNet, its cost summary, weights IO and
//! data loading for incept.
//!
//! ```
//! use incept_autograd::{Tape, Var};
//! use incept_models::googlenet::Variant;
//! use incept_models::{ForwardCtx, GoogLeNet, GoogLeNetConfig};
//! use incept_tensor::Tensor;
//!
//! let config = GoogLeNetConfig { width: 0.125, ..GoogLeNetConfig::small(Variant::Torchvision, 1, 10) };
//! let net = GoogLeNet::<f32>::new(config).unwrap();
//! let tape = Tape::inference();
//! let images = Var::constant(Tensor::zeros([2, 1, 28, 28]));
//! let out = net.forward(&ForwardCtx::eval(&tape), &images).unwrap();
//! assert_eq!(out.logits.dims(), &[2, 10]);
//! assert!(out.aux.is_none()); // auxiliary heads run only in training
//! ```

#![warn(missing_docs)]

pub mod cost;
pub mod data;
mod error;
pub mod googlenet;
pub mod inception;
pub mod io;
pub mod layers;
mod module;

pub use error::{ModelError, Result};
pub use googlenet::{Activations, GoogLeNet, GoogLeNetConfig, GoogLeNetOutput, Stem, Variant};
pub use inception::{Inception, InceptionConfig, InceptionKind, InceptionOptions};
pub use module::{Buffer, BufferKind, ForwardCtx, Init, Layer, Module, WeightInit};
