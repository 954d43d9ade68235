//! Basic layers: convolution, batch normalisation, the conv-BN-ReLU block
//! and the fully connected layer.

use std::cell::RefCell;

use incept_autograd::{Parameter, Var};
use incept_tensor::batch_norm::update_running_stats;
use incept_tensor::conv::Conv2dParams;
use incept_tensor::{Float, Tensor};

use crate::module::{ForwardCtx, Init, Module};
use crate::{ModelError, Result};

/// A 2-D convolution layer with square kernel, stride and padding.
///
/// PyTorch equivalent: `torch.nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=bias)`.
pub struct Conv2d<T: Float = f32> {
    /// Weight, `[c_out, c_in, kernel, kernel]`.
    pub weight: Parameter<T>,
    /// Optional bias, `[c_out]`.
    pub bias: Option<Parameter<T>>,
    /// Stride and padding.
    pub params: Conv2dParams,
}

impl<T: Float> Conv2d<T> {
    /// Creates a layer with PyTorch's default initialisation; parameters are
    /// named `{name}.weight` and `{name}.bias`.
    ///
    /// # Errors
    /// [`ModelError::Config`] if a channel count, the kernel or the stride is zero.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
        init: &mut Init,
    ) -> Result<Self> {
        if c_in == 0 || c_out == 0 || kernel == 0 || stride == 0 {
            return Err(ModelError::Config(format!(
                "{name}: c_in = {c_in}, c_out = {c_out}, kernel = {kernel} and stride = {stride} must all be at least 1"
            )));
        }
        let fan_in = c_in * kernel * kernel;
        let weight =
            Parameter::new(format!("{name}.weight"), init.fan_in_uniform(&[c_out, c_in, kernel, kernel], fan_in));
        let bias = bias.then(|| Parameter::new(format!("{name}.bias"), init.fan_in_uniform(&[c_out], fan_in)));
        Ok(Conv2d { weight, bias, params: Conv2dParams::new(stride, padding) })
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.weight.value().dims()[0]
    }

    /// Applies the convolution.
    ///
    /// # Shapes
    /// `[N, c_in, H, W] -> [N, c_out, H_out, W_out]`.
    ///
    /// # Errors
    /// A shape error if the input does not have `c_in` channels or is smaller than the kernel.
    pub fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        let tape = ctx.tape;
        let bias = self.bias.as_ref().map(|b| tape.param(b));
        Ok(tape.conv2d(x, &tape.param(&self.weight), bias.as_ref(), self.params)?)
    }
}

impl<T: Float> Module<T> for Conv2d<T> {
    fn parameters(&self) -> Vec<Parameter<T>> {
        std::iter::once(self.weight.clone()).chain(self.bias.clone()).collect()
    }
}

/// Batch normalisation over channels with running statistics.
///
/// PyTorch equivalent: `torch.nn.BatchNorm2d(channels, eps, momentum)`.
pub struct BatchNorm2d<T: Float = f32> {
    /// Scale (gamma), `[C]`, initialised to ones.
    pub weight: Parameter<T>,
    /// Shift (beta), `[C]`, initialised to zeros.
    pub bias: Parameter<T>,
    /// Running mean, `[C]`; updated in training mode.
    pub running_mean: RefCell<Tensor<T>>,
    /// Running unbiased variance, `[C]`; updated in training mode.
    pub running_var: RefCell<Tensor<T>>,
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Weight of the batch statistic in the running-statistics update.
    pub momentum: f64,
}

impl<T: Float> BatchNorm2d<T> {
    /// Creates a layer named `name` (parameters `{name}.weight`, `{name}.bias`).
    ///
    /// # Errors
    /// [`ModelError::Config`] if `channels` is zero, `eps` is not a positive
    /// number or `momentum` is outside `[0, 1]`.
    pub fn new(name: &str, channels: usize, eps: f64, momentum: f64) -> Result<Self> {
        // eps is checked in the layer's own type, where 1e-50 rounds to 0 in f32.
        let eps_t = T::from_f64(eps);
        if channels == 0 || !(eps_t.is_finite() && eps_t > T::zero()) || !(0.0..=1.0).contains(&momentum) {
            return Err(ModelError::Config(format!(
                "{name}: channels = {channels} must be at least 1, eps = {eps} positive and finite in {}, \
                 and momentum = {momentum} in [0, 1]",
                T::DTYPE
            )));
        }
        Ok(BatchNorm2d {
            weight: Parameter::new(format!("{name}.weight"), Tensor::ones([channels])),
            bias: Parameter::new(format!("{name}.bias"), Tensor::zeros([channels])),
            running_mean: RefCell::new(Tensor::zeros([channels])),
            running_var: RefCell::new(Tensor::ones([channels])),
            eps,
            momentum,
        })
    }

    /// Normalises with batch statistics (training) or running statistics (eval).
    ///
    /// # Errors
    /// A shape error if the channel count differs, or, in training, if a
    /// channel has a single element.
    pub fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        let tape = ctx.tape;
        let (gamma, beta) = (tape.param(&self.weight), tape.param(&self.bias));
        let eps = T::from_f64(self.eps);
        if ctx.training {
            let (y, stats) = tape.batch_norm2d_train(x, &gamma, &beta, eps)?;
            update_running_stats(
                &mut self.running_mean.borrow_mut(),
                &mut self.running_var.borrow_mut(),
                &stats,
                T::from_f64(self.momentum),
            )?;
            Ok(y)
        } else {
            let (mean, var) = (self.running_mean.borrow(), self.running_var.borrow());
            Ok(tape.batch_norm2d_eval(x, &gamma, &beta, &mean, &var, eps)?)
        }
    }
}

impl<T: Float> Module<T> for BatchNorm2d<T> {
    fn parameters(&self) -> Vec<Parameter<T>> {
        vec![self.weight.clone(), self.bias.clone()]
    }
}

/// Convolution without bias, then batch normalisation (eps 0.001), then ReLU:
/// the building block of every GoogLeNet branch.
///
/// PyTorch equivalent: `torchvision.models.googlenet.BasicConv2d`.
pub struct BasicConv2d<T: Float = f32> {
    /// The convolution, named `{name}.conv`.
    pub conv: Conv2d<T>,
    /// The normalisation, named `{name}.bn`.
    pub bn: BatchNorm2d<T>,
}

impl<T: Float> BasicConv2d<T> {
    /// Creates the block; parameters are named as torchvision names them.
    ///
    /// # Errors
    /// As [`Conv2d::new`].
    pub fn new(
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        init: &mut Init,
    ) -> Result<Self> {
        Ok(BasicConv2d {
            conv: Conv2d::new(&format!("{name}.conv"), c_in, c_out, kernel, stride, padding, false, init)?,
            bn: BatchNorm2d::new(&format!("{name}.bn"), c_out, 1e-3, 0.1)?,
        })
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.conv.c_out()
    }

    /// Applies conv, batch norm and ReLU.
    ///
    /// # Errors
    /// As [`Conv2d::forward`] and [`BatchNorm2d::forward`].
    pub fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        let y = self.conv.forward(ctx, x)?;
        let y = self.bn.forward(ctx, &y)?;
        Ok(ctx.tape.relu(&y))
    }
}

impl<T: Float> Module<T> for BasicConv2d<T> {
    fn parameters(&self) -> Vec<Parameter<T>> {
        let mut params = self.conv.parameters();
        params.extend(self.bn.parameters());
        params
    }
}

/// A fully connected layer.
///
/// PyTorch equivalent: `torch.nn.Linear(in_features, out_features)`.
pub struct Linear<T: Float = f32> {
    /// Weight, `[out_features, in_features]`.
    pub weight: Parameter<T>,
    /// Bias, `[out_features]`.
    pub bias: Parameter<T>,
}

impl<T: Float> Linear<T> {
    /// Creates a layer with PyTorch's default initialisation.
    ///
    /// # Errors
    /// [`ModelError::Config`] if a feature count is zero.
    pub fn new(name: &str, in_features: usize, out_features: usize, init: &mut Init) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(ModelError::Config(format!(
                "{name}: in_features = {in_features} and out_features = {out_features} must be at least 1"
            )));
        }
        Ok(Linear {
            weight: Parameter::new(
                format!("{name}.weight"),
                init.fan_in_uniform(&[out_features, in_features], in_features),
            ),
            bias: Parameter::new(format!("{name}.bias"), init.fan_in_uniform(&[out_features], in_features)),
        })
    }

    /// Applies `x W^T + b`.
    ///
    /// # Shapes
    /// `[N, in_features] -> [N, out_features]`.
    ///
    /// # Errors
    /// A shape error if the feature count differs.
    pub fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        let tape = ctx.tape;
        Ok(tape.linear(x, &tape.param(&self.weight), Some(&tape.param(&self.bias)))?)
    }
}

impl<T: Float> Module<T> for Linear<T> {
    fn parameters(&self) -> Vec<Parameter<T>> {
        vec![self.weight.clone(), self.bias.clone()]
    }
}
