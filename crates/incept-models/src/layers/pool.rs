//! Max, average and adaptive average pooling.

use incept_autograd::{Parameter, Var};
use incept_tensor::Float;
use incept_tensor::pool::Pool2dParams;

use super::nchw;
use crate::module::{ForwardCtx, Layer, Module};
use crate::{ModelError, Result};

/// Returns `[N, C, H_out, W_out]` for a pooling window, or an error naming the layer.
fn pooled_dims(layer: &str, params: &Pool2dParams, input: &[usize]) -> Result<Vec<usize>> {
    let [n, c, h, w] = nchw(layer, input)?;
    match (params.h_out(h), params.w_out(w)) {
        (Some(h_out), Some(w_out)) if h_out > 0 && w_out > 0 => Ok(vec![n, c, h_out, w_out]),
        _ => Err(ModelError::Config(format!(
            "{layer}: a {:?} window with padding {:?} does not fit an input of {h}x{w}",
            params.kernel, params.padding
        ))),
    }
}

/// Max pooling. Padding never wins a max; `ceil_mode` rounds the output
/// size up, but the last window must start inside the input or the left padding.
///
/// PyTorch equivalent: `torch.nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)`.
///
/// # Shapes
/// `[N, C, H, W] -> [N, C, H_out, W_out]`.
pub struct MaxPool2d {
    /// Window, stride, padding and rounding.
    pub params: Pool2dParams,
}

impl MaxPool2d {
    /// Creates a square max pool.
    pub fn new(kernel: usize, stride: usize, padding: usize, ceil_mode: bool) -> Self {
        MaxPool2d { params: Pool2dParams::new(kernel, stride, padding, ceil_mode) }
    }
}

impl<T: Float> Module<T> for MaxPool2d {
    fn parameters(&self) -> Vec<Parameter<T>> {
        Vec::new()
    }
}

impl<T: Float> Layer<T> for MaxPool2d {
    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        Ok(ctx.tape.max_pool2d(x, self.params)?)
    }

    fn output_dims(&self, input: &[usize]) -> Result<Vec<usize>> {
        pooled_dims("MaxPool2d", &self.params, input)
    }
}

/// Average pooling.
///
/// PyTorch equivalent: `torch.nn.AvgPool2d(kernel, stride, padding, ceil_mode, count_include_pad)`.
///
/// # Shapes
/// `[N, C, H, W] -> [N, C, H_out, W_out]`.
pub struct AvgPool2d {
    /// Window, stride, padding and rounding.
    pub params: Pool2dParams,
    /// Divide by the whole window, padding included (PyTorch's default),
    /// instead of by the input pixels it covers.
    pub count_include_pad: bool,
}

impl AvgPool2d {
    /// Creates a square average pool that counts padding, as PyTorch does by default.
    pub fn new(kernel: usize, stride: usize, padding: usize, ceil_mode: bool) -> Self {
        AvgPool2d { params: Pool2dParams::new(kernel, stride, padding, ceil_mode), count_include_pad: true }
    }
}

impl<T: Float> Module<T> for AvgPool2d {
    fn parameters(&self) -> Vec<Parameter<T>> {
        Vec::new()
    }
}

impl<T: Float> Layer<T> for AvgPool2d {
    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        Ok(ctx.tape.avg_pool2d(x, self.params, self.count_include_pad)?)
    }

    fn output_dims(&self, input: &[usize]) -> Result<Vec<usize>> {
        pooled_dims("AvgPool2d", &self.params, input)
    }
}

/// Adaptive average pooling to a fixed output size; output cell `i` averages
/// input rows `floor(i * H / out_h)` to `ceil((i + 1) * H / out_h)`. With
/// an output of 1x1 it is global average pooling.
///
/// PyTorch equivalent: `torch.nn.AdaptiveAvgPool2d((out_h, out_w))`.
///
/// # Shapes
/// `[N, C, H, W] -> [N, C, out_h, out_w]`.
pub struct AdaptiveAvgPool2d {
    /// Output height and width.
    pub output_size: (usize, usize),
}

impl<T: Float> Module<T> for AdaptiveAvgPool2d {
    fn parameters(&self) -> Vec<Parameter<T>> {
        Vec::new()
    }
}

impl<T: Float> Layer<T> for AdaptiveAvgPool2d {
    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        let (out_h, out_w) = self.output_size;
        Ok(ctx.tape.adaptive_avg_pool2d(x, out_h, out_w)?)
    }

    fn output_dims(&self, input: &[usize]) -> Result<Vec<usize>> {
        let [n, c, h, w] = nchw("AdaptiveAvgPool2d", input)?;
        let (out_h, out_w) = self.output_size;
        if out_h == 0 || out_w == 0 || h == 0 || w == 0 {
            return Err(ModelError::Config(format!(
                "AdaptiveAvgPool2d to {out_h}x{out_w} needs a non-empty input and output, got {input:?}"
            )));
        }
        Ok(vec![n, c, out_h, out_w])
    }
}
