//! Batch normalisation and local response normalisation.

use incept_autograd::{Parameter, Tape, Var};
use incept_tensor::batch_norm::update_running_stats;
use incept_tensor::lrn::LrnParams;
use incept_tensor::{Float, Tensor};

use super::nchw;
use crate::module::{Buffer, BufferKind, ForwardCtx, Layer, Module};
use crate::{ModelError, Result};

/// Batch normalisation over the channels of an NCHW tensor, with running
/// statistics kept as buffers.
///
/// PyTorch equivalent: `torch.nn.BatchNorm2d(channels, eps, momentum, affine)`.
/// Training normalises with the batch mean and biased variance and moves the
/// running mean and unbiased variance by `momentum`; evaluation normalises
/// with the running statistics.
///
/// # Shapes
/// `[N, C, H, W] -> [N, C, H, W]`.
pub struct BatchNorm2d<T: Float = f32> {
    /// Scale (gamma), `[C]`, initialised to ones; `None` without affine parameters.
    pub weight: Option<Parameter<T>>,
    /// Shift (beta), `[C]`, initialised to zeros; `None` without affine parameters.
    pub bias: Option<Parameter<T>>,
    /// Running mean, `[C]`, named `{name}.running_mean`.
    pub running_mean: Buffer<T>,
    /// Running unbiased variance, `[C]`, named `{name}.running_var`.
    pub running_var: Buffer<T>,
    /// Training batches seen, `[]`, named `{name}.num_batches_tracked`.
    pub num_batches_tracked: Buffer<T>,
    /// Added to the variance before the square root.
    pub eps: f64,
    /// Weight of the batch statistic in the running-statistics update.
    pub momentum: f64,
    channels: usize,
}

impl<T: Float> BatchNorm2d<T> {
    /// Creates a layer with a learnable scale and shift, named `name`
    /// (parameters `{name}.weight`, `{name}.bias`).
    ///
    /// # Errors
    /// [`ModelError::Config`] if `channels` is zero, `eps` is not a positive
    /// number or `momentum` is outside `[0, 1]`.
    pub fn new(name: &str, channels: usize, eps: f64, momentum: f64) -> Result<Self> {
        Self::with_affine(name, channels, eps, momentum, true)
    }

    /// Creates a layer; without `affine` the output is only normalised, as
    /// with PyTorch's `affine=False`.
    ///
    /// # Errors
    /// As [`BatchNorm2d::new`].
    pub fn with_affine(name: &str, channels: usize, eps: f64, momentum: f64, affine: bool) -> Result<Self> {
        // eps is checked in the layer's own type, where 1e-50 rounds to 0 in f32.
        let eps_t = T::from_f64(eps);
        if channels == 0 || !(eps_t.is_finite() && eps_t > T::zero()) || !(0.0..=1.0).contains(&momentum) {
            return Err(ModelError::Config(format!(
                "{name}: channels = {channels} must be at least 1, eps = {eps} positive and finite in {}, \
                 and momentum = {momentum} in [0, 1]",
                T::DTYPE
            )));
        }
        let affine_param =
            |suffix: &str, value: Tensor<T>| affine.then(|| Parameter::new(format!("{name}.{suffix}"), value));
        Ok(BatchNorm2d {
            weight: affine_param("weight", Tensor::ones([channels])),
            bias: affine_param("bias", Tensor::zeros([channels])),
            running_mean: Buffer::new(format!("{name}.running_mean"), BufferKind::Float, Tensor::zeros([channels])),
            running_var: Buffer::new(format!("{name}.running_var"), BufferKind::Float, Tensor::ones([channels])),
            num_batches_tracked: Buffer::new(
                format!("{name}.num_batches_tracked"),
                BufferKind::Count,
                Tensor::scalar(T::zero()),
            ),
            eps,
            momentum,
            channels,
        })
    }

    /// Channels normalised.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Returns gamma and beta recorded on `tape`, or constant ones and
    /// zeros for a layer without affine parameters.
    pub(crate) fn affine(&self, tape: &Tape<T>) -> (Var<T>, Var<T>) {
        let c = self.channels;
        let gamma = match &self.weight {
            Some(w) => tape.param(w),
            None => Var::constant(Tensor::ones([c])),
        };
        let beta = match &self.bias {
            Some(b) => tape.param(b),
            None => Var::constant(Tensor::zeros([c])),
        };
        (gamma, beta)
    }
}

impl<T: Float> Module<T> for BatchNorm2d<T> {
    fn parameters(&self) -> Vec<Parameter<T>> {
        self.weight.iter().chain(&self.bias).cloned().collect()
    }

    fn buffers(&self) -> Vec<Buffer<T>> {
        vec![self.running_mean.clone(), self.running_var.clone(), self.num_batches_tracked.clone()]
    }
}

impl<T: Float> Layer<T> for BatchNorm2d<T> {
    /// Normalises with batch statistics (training) or running statistics (eval).
    ///
    /// # Errors
    /// A shape error if the channel count differs, or, in training, if a
    /// channel has a single element.
    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        let tape = ctx.tape;
        let (gamma, beta) = self.affine(tape);
        let eps = T::from_f64(self.eps);
        if ctx.training {
            let (y, stats) = tape.batch_norm2d_train(x, &gamma, &beta, eps)?;
            let momentum = T::from_f64(self.momentum);
            self.running_mean
                .update(|mean| self.running_var.update(|var| update_running_stats(mean, var, &stats, momentum)))?;
            self.num_batches_tracked.update(|n| n.data_mut()[0] = n.data()[0] + T::one());
            Ok(y)
        } else {
            let (mean, var) = (self.running_mean.value(), self.running_var.value());
            Ok(tape.batch_norm2d_eval(x, &gamma, &beta, &mean, &var, eps)?)
        }
    }

    fn output_dims(&self, input: &[usize]) -> Result<Vec<usize>> {
        let [_, c, _, _] = nchw(self.running_mean.name(), input)?;
        if c != self.channels {
            return Err(ModelError::Config(format!(
                "{} expects {} channels, got {input:?}",
                self.running_mean.name(),
                self.channels
            )));
        }
        Ok(input.to_vec())
    }
}

/// Local response normalisation across channels.
///
/// PyTorch equivalent: `torch.nn.LocalResponseNorm(size, alpha, beta, k)`;
/// GoogLeNet uses [`LrnParams::GOOGLENET`] (size 5, alpha 1e-4, beta 0.75, k 1).
///
/// # Shapes
/// `[N, C, H, W] -> [N, C, H, W]`.
pub struct Lrn {
    /// Window and constants.
    pub params: LrnParams,
}

impl<T: Float> Module<T> for Lrn {
    fn parameters(&self) -> Vec<Parameter<T>> {
        Vec::new()
    }
}

impl<T: Float> Layer<T> for Lrn {
    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        Ok(ctx.tape.lrn(x, self.params)?)
    }

    fn output_dims(&self, input: &[usize]) -> Result<Vec<usize>> {
        nchw("Lrn", input)?;
        Ok(input.to_vec())
    }
}
