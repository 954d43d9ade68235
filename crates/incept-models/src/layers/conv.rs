//! Convolution and the conv-norm-ReLU block.

use incept_autograd::{EvalBatchNorm, Parameter, Var};
use incept_tensor::Float;
use incept_tensor::conv::Conv2dParams;

use super::nchw;
use crate::layers::BatchNorm2d;
use crate::module::{Buffer, ForwardCtx, Init, Layer, Module};
use crate::{ModelError, Result};

/// A 2-D convolution layer with a square kernel, stride and padding.
///
/// PyTorch equivalent: `torch.nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=bias)`.
///
/// # Shapes
/// `[N, c_in, H, W] -> [N, c_out, (H + 2p - k) / s + 1, (W + 2p - k) / s + 1]`.
pub struct Conv2d<T: Float = f32> {
    /// Weight, `[c_out, c_in, kernel, kernel]`.
    pub weight: Parameter<T>,
    /// Optional bias, `[c_out]`.
    pub bias: Option<Parameter<T>>,
    /// Stride and padding.
    pub params: Conv2dParams,
}

impl<T: Float> Conv2d<T> {
    /// Creates a layer whose weight comes from `init` and whose bias (if
    /// any) has PyTorch's default; parameters are named `{name}.weight` and
    /// `{name}.bias`.
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
        let weight = Parameter::new(format!("{name}.weight"), init.weight(&[c_out, c_in, kernel, kernel], fan_in)?);
        let bias = bias.then(|| Parameter::new(format!("{name}.bias"), init.bias(&[c_out], fan_in)));
        Ok(Conv2d { weight, bias, params: Conv2dParams::new(stride, padding) })
    }

    /// Input channels.
    pub fn c_in(&self) -> usize {
        self.weight.value().dims()[1]
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.weight.value().dims()[0]
    }

    /// Kernel side length.
    pub fn kernel(&self) -> usize {
        self.weight.value().dims()[2]
    }
}

impl<T: Float> Module<T> for Conv2d<T> {
    fn parameters(&self) -> Vec<Parameter<T>> {
        std::iter::once(self.weight.clone()).chain(self.bias.clone()).collect()
    }
}

impl<T: Float> Layer<T> for Conv2d<T> {
    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        let tape = ctx.tape;
        let bias = self.bias.as_ref().map(|b| tape.param(b));
        Ok(tape.conv2d(x, &tape.param(&self.weight), bias.as_ref(), self.params)?)
    }

    fn output_dims(&self, input: &[usize]) -> Result<Vec<usize>> {
        let name = self.weight.name();
        let [n, c, h, w] = nchw(name, input)?;
        let k = self.kernel();
        if c != self.c_in() {
            return Err(ModelError::Config(format!("{name} expects {} input channels, got {input:?}", self.c_in())));
        }
        match (self.params.h_out(h, k), self.params.w_out(w, k)) {
            (Some(h_out), Some(w_out)) if h_out > 0 && w_out > 0 => Ok(vec![n, self.c_out(), h_out, w_out]),
            _ => Err(ModelError::Config(format!(
                "{name}: a {k}x{k} kernel with padding {:?} does not fit an input of {h}x{w}",
                self.params.padding
            ))),
        }
    }

    fn macs(&self, input: &[usize]) -> Result<u64> {
        let out = self.output_dims(input)?;
        let per_output = self.weight.numel() / self.c_out();
        Ok((per_output * self.c_out() * out[2] * out[3]) as u64)
    }
}

/// Normalisation between the convolution and the ReLU of a [`BasicConv2d`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvNorm {
    /// Convolution without bias, then batch norm with eps 0.001, as
    /// torchvision's GoogLeNet builds every convolution.
    BatchNorm,
    /// Convolution with bias and no normalisation, as in the GoogLeNet paper.
    Bias,
}

/// Convolution, optional batch normalisation, then ReLU: the building
/// block of every GoogLeNet branch.
///
/// PyTorch equivalent: `torchvision.models.googlenet.BasicConv2d` with
/// [`ConvNorm::BatchNorm`], `Sequential(Conv2d(bias=True), ReLU())` with
/// [`ConvNorm::Bias`]. Parameters are named `{name}.conv.*` and `{name}.bn.*`
/// either way.
///
/// In eval mode the batch norm is folded into the convolution's weight and
/// bias on every call, so the block runs as one convolution, with the ReLU
/// (if requested) applied in the same pass. See [`ForwardCtx::fold_batch_norm`].
pub struct BasicConv2d<T: Float = f32> {
    /// The convolution, named `{name}.conv`.
    pub conv: Conv2d<T>,
    /// The normalisation, named `{name}.bn`; `None` with [`ConvNorm::Bias`].
    pub bn: Option<BatchNorm2d<T>>,
}

/// Batch norm epsilon of torchvision's `BasicConv2d`.
pub const BASIC_CONV_BN_EPS: f64 = 1e-3;

impl<T: Float> BasicConv2d<T> {
    /// Creates the block; parameters are named as torchvision names them.
    ///
    /// # Errors
    /// As [`Conv2d::new`].
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        norm: ConvNorm,
        init: &mut Init,
    ) -> Result<Self> {
        let with_bn = norm == ConvNorm::BatchNorm;
        let conv = Conv2d::new(&format!("{name}.conv"), c_in, c_out, kernel, stride, padding, !with_bn, init)?;
        let bn =
            if with_bn { Some(BatchNorm2d::new(&format!("{name}.bn"), c_out, BASIC_CONV_BN_EPS, 0.1)?) } else { None };
        Ok(BasicConv2d { conv, bn })
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.conv.c_out()
    }

    /// Applies the convolution and the normalisation but not the ReLU, for
    /// callers that fuse the ReLU into a later pass (see
    /// [`incept_autograd::Tape::concat_channels_relu`]).
    ///
    /// # Errors
    /// As [`Layer::forward`].
    pub fn forward_pre_activation(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        self.forward_with_relu(ctx, x, false)
    }

    /// Runs the block, with the final ReLU when `relu` is set. In eval mode
    /// with [`ForwardCtx::fold_batch_norm`], the batch norm is folded into
    /// the convolution ([`incept_autograd::Tape::conv2d_batch_norm_eval`]).
    fn forward_with_relu(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>, relu: bool) -> Result<Var<T>> {
        let tape = ctx.tape;
        if let Some(bn) = self.bn.as_ref().filter(|_| !ctx.training && ctx.fold_batch_norm) {
            let (gamma, beta) = bn.affine(tape);
            let (running_mean, running_var) = (bn.running_mean.value(), bn.running_var.value());
            let stats = EvalBatchNorm {
                gamma: &gamma,
                beta: &beta,
                running_mean: &running_mean,
                running_var: &running_var,
                eps: T::from_f64(bn.eps),
            };
            let weight = tape.param(&self.conv.weight);
            let bias = self.conv.bias.as_ref().map(|b| tape.param(b));
            return Ok(tape.conv2d_batch_norm_eval(x, &weight, bias.as_ref(), stats, self.conv.params, relu)?);
        }
        let mut y = self.conv.forward(ctx, x)?;
        if let Some(bn) = &self.bn {
            y = bn.forward(ctx, &y)?;
        }
        Ok(if relu { tape.relu(&y) } else { y })
    }
}

impl<T: Float> Module<T> for BasicConv2d<T> {
    fn parameters(&self) -> Vec<Parameter<T>> {
        let mut params = self.conv.parameters();
        params.extend(self.bn.iter().flat_map(Module::parameters));
        params
    }

    fn buffers(&self) -> Vec<Buffer<T>> {
        self.bn.iter().flat_map(Module::buffers).collect()
    }
}

impl<T: Float> Layer<T> for BasicConv2d<T> {
    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        self.forward_with_relu(ctx, x, true)
    }

    fn output_dims(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.conv.output_dims(input)
    }

    fn macs(&self, input: &[usize]) -> Result<u64> {
        self.conv.macs(input)
    }
}
