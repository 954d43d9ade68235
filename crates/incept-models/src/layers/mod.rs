//! Layers: convolution, normalisation, pooling, fully connected, activation
//! and the containers that chain them.
//!
//! Every layer implements [`crate::Module`] (named parameters and buffers)
//! and [`crate::Layer`] (forward, output shape, multiply-accumulates), and
//! documents its PyTorch equivalent.

mod basic;
mod conv;
mod norm;
mod pool;

pub use basic::{Dropout, Flatten, Linear, ReLU, Sequential};
pub use conv::{BasicConv2d, Conv2d, ConvNorm};
pub use norm::{BatchNorm2d, Lrn};
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};

use crate::{ModelError, Result};

/// Splits `[N, C, H, W]` or returns an error naming the layer.
pub(crate) fn nchw(layer: &str, dims: &[usize]) -> Result<[usize; 4]> {
    match *dims {
        [n, c, h, w] => Ok([n, c, h, w]),
        _ => Err(ModelError::Config(format!("{layer} expects an input [N, C, H, W], got {dims:?}"))),
    }
}
