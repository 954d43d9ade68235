//! The Inception module: parallel branches concatenated on channels, in the
//! naive form and with 1x1 bottlenecks.
//!
//! Szegedy et al., "Going deeper with convolutions", CVPR 2015, Figure 2.

use incept_autograd::{Parameter, Var};
use incept_tensor::Float;
use incept_tensor::pool::Pool2dParams;

use crate::layers::{BasicConv2d, ConvNorm, nchw};
use crate::module::{Buffer, ForwardCtx, Init, Layer, Module};
use crate::{ModelError, Result};

/// Channel counts of one Inception module, named after the columns of
/// Table 1 of the GoogLeNet paper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InceptionConfig {
    /// Input channels.
    pub c_in: usize,
    /// Output channels of the 1x1 branch.
    pub ch1x1: usize,
    /// 1x1 reduction before the 3x3 convolution.
    pub ch3x3_reduce: usize,
    /// Output channels of the 3x3 branch.
    pub ch3x3: usize,
    /// 1x1 reduction before the 5x5 convolution.
    pub ch5x5_reduce: usize,
    /// Output channels of the 5x5 branch.
    pub ch5x5: usize,
    /// 1x1 projection after the 3x3 max pool.
    pub pool_proj: usize,
}

/// The two forms of the Inception module in the GoogLeNet paper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InceptionKind {
    /// Figure 2(a): 1x1, 3x3 and 5x5 convolutions straight on the input, and a
    /// 3x3 max pool whose output (all input channels) is concatenated as is.
    /// The reduce and projection columns are unused.
    Naive,
    /// Figure 2(b): 1x1 reductions before the 3x3 and 5x5 convolutions and a
    /// 1x1 projection after the max pool.
    Bottleneck,
}

/// Construction options of an Inception module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InceptionOptions {
    /// Naive or bottleneck.
    pub kind: InceptionKind,
    /// Bias, or batch norm, after each convolution.
    pub norm: ConvNorm,
    /// Kernel of the "5x5" branch: 5 in the paper, 3 in torchvision, whose
    /// GoogLeNet builds that branch as 3x3 (a known deviation it keeps so
    /// its published weights still load).
    pub branch3_kernel: usize,
}

impl InceptionOptions {
    /// The paper's bottleneck module: biases, no batch norm, a true 5x5 branch.
    pub const PAPER: InceptionOptions =
        InceptionOptions { kind: InceptionKind::Bottleneck, norm: ConvNorm::Bias, branch3_kernel: 5 };

    /// torchvision's module: batch norm after every convolution, a 3x3 "5x5" branch.
    pub const TORCHVISION: InceptionOptions =
        InceptionOptions { kind: InceptionKind::Bottleneck, norm: ConvNorm::BatchNorm, branch3_kernel: 3 };

    /// Returns the same options with another kind.
    pub fn with_kind(self, kind: InceptionKind) -> Self {
        InceptionOptions { kind, ..self }
    }
}

impl InceptionConfig {
    /// Output channels of the bottleneck module: the sum of the four branch outputs.
    pub fn c_out(&self) -> usize {
        self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj
    }

    /// Output channels of a module of `kind`: the naive module passes all
    /// `c_in` pooled channels through instead of `pool_proj`.
    pub fn c_out_of(&self, kind: InceptionKind) -> usize {
        match kind {
            InceptionKind::Naive => self.ch1x1 + self.ch3x3 + self.ch5x5 + self.c_in,
            InceptionKind::Bottleneck => self.c_out(),
        }
    }

    /// Convolution weights of the module `options` builds (biases and
    /// batch-norm parameters excluded), or `None` on overflow.
    pub fn weight_count(&self, options: InceptionOptions) -> Option<usize> {
        let c = self;
        let k3 = options.branch3_kernel * options.branch3_kernel;
        let terms: [(usize, usize, usize); 6] = match options.kind {
            InceptionKind::Naive => {
                [(c.c_in, c.ch1x1, 1), (c.c_in, c.ch3x3, 9), (c.c_in, c.ch5x5, k3), (0, 0, 0), (0, 0, 0), (0, 0, 0)]
            }
            InceptionKind::Bottleneck => [
                (c.c_in, c.ch1x1, 1),
                (c.c_in, c.ch3x3_reduce, 1),
                (c.ch3x3_reduce, c.ch3x3, 9),
                (c.c_in, c.ch5x5_reduce, 1),
                (c.ch5x5_reduce, c.ch5x5, k3),
                (c.c_in, c.pool_proj, 1),
            ],
        };
        terms.into_iter().try_fold(0usize, |total, (c_in, c_out, taps)| {
            total.checked_add(c_in.checked_mul(c_out)?.checked_mul(taps)?)
        })
    }

    /// Output channels summed over every convolution of the module, which
    /// is the number of biases, or of batch-norm (scale, shift) pairs.
    fn conv_output_channels(&self, kind: InceptionKind) -> usize {
        let c = self;
        match kind {
            InceptionKind::Naive => c.ch1x1 + c.ch3x3 + c.ch5x5,
            InceptionKind::Bottleneck => c.ch1x1 + c.ch3x3_reduce + c.ch3x3 + c.ch5x5_reduce + c.ch5x5 + c.pool_proj,
        }
    }

    /// Trainable parameters of the module [`Inception`] builds from this
    /// config: convolution weights plus one bias per output channel
    /// ([`ConvNorm::Bias`]) or a batch-norm scale and shift per output
    /// channel ([`ConvNorm::BatchNorm`]). `None` if the count overflows `usize`.
    pub fn parameter_count(&self, options: InceptionOptions) -> Option<usize> {
        let per_channel = match options.norm {
            ConvNorm::Bias => 1,
            ConvNorm::BatchNorm => 2,
        };
        let extra = self.conv_output_channels(options.kind).checked_mul(per_channel)?;
        self.weight_count(options)?.checked_add(extra)
    }

    /// Multiply-accumulates of one forward pass over one `h` x `w` input:
    /// every convolution keeps the spatial size, so each weight is used
    /// `h * w` times. Pooling, normalisation and ReLU are not counted.
    pub fn macs(&self, options: InceptionOptions, h: usize, w: usize) -> Option<u64> {
        let weights = self.weight_count(options)? as u64;
        weights.checked_mul(h as u64)?.checked_mul(w as u64)
    }

    /// Multiplies every channel count by `width` and rounds to the nearest
    /// integer (at least 1), with `c_in` supplied by the caller because it
    /// follows the previous layer's scaled output.
    pub fn scaled(&self, c_in: usize, width: f64) -> Self {
        let s = |c: usize| scale_channels(c, width);
        InceptionConfig {
            c_in,
            ch1x1: s(self.ch1x1),
            ch3x3_reduce: s(self.ch3x3_reduce),
            ch3x3: s(self.ch3x3),
            ch5x5_reduce: s(self.ch5x5_reduce),
            ch5x5: s(self.ch5x5),
            pool_proj: s(self.pool_proj),
        }
    }
}

/// `round(channels * width)`, at least 1.
pub fn scale_channels(channels: usize, width: f64) -> usize {
    ((channels as f64 * width).round() as usize).max(1)
}

/// The pool of the fourth branch: 3x3, stride 1, padding 1, so the size is kept.
const BRANCH_POOL: Pool2dParams = Pool2dParams { kernel: (3, 3), stride: (1, 1), padding: (1, 1), ceil_mode: true };

/// An Inception module: four parallel branches whose outputs are
/// concatenated on channels (1x1, 3x3, 5x5, max pool, in that order).
///
/// Every branch ends in a ReLU, and that ReLU writes straight into the
/// branch's channel range of the output, so the concat costs no extra
/// pass. The naive module's pool branch has no ReLU and is copied.
///
/// PyTorch equivalent: `torchvision.models.googlenet.Inception` with
/// [`InceptionOptions::TORCHVISION`]; parameter names follow it
/// (`{name}.branch2.1.conv.weight`, ...). The naive module names its
/// convolutions `branch1`, `branch2.0` and `branch3.0`.
///
/// # Shapes
/// `[N, c_in, H, W] -> [N, c_out, H, W]`: every branch keeps the size.
pub struct Inception<T: Float = f32> {
    options: InceptionOptions,
    branch1: BasicConv2d<T>,
    /// `[reduce, 3x3]`, or `[3x3]` in the naive module.
    branch2: Vec<BasicConv2d<T>>,
    /// `[reduce, 5x5]`, or `[5x5]` in the naive module.
    branch3: Vec<BasicConv2d<T>>,
    /// The projection after the pool; `None` in the naive module.
    branch4: Option<BasicConv2d<T>>,
    c_in: usize,
}

impl<T: Float> Inception<T> {
    /// Creates the paper's bottleneck module named `name`.
    ///
    /// # Errors
    /// [`ModelError::Config`] if a channel count is zero.
    pub fn new(name: &str, config: InceptionConfig, init: &mut Init) -> Result<Self> {
        Self::with_options(name, config, InceptionOptions::PAPER, init)
    }

    /// Creates a module of the given kind and style.
    ///
    /// # Errors
    /// [`ModelError::Config`] if a channel count is zero or the "5x5" kernel is even.
    pub fn with_options(
        name: &str,
        config: InceptionConfig,
        options: InceptionOptions,
        init: &mut Init,
    ) -> Result<Self> {
        let k3 = options.branch3_kernel;
        if k3.is_multiple_of(2) {
            return Err(ModelError::Config(format!(
                "{name}: branch3_kernel = {k3} must be odd so that padding {0} keeps the size",
                k3 / 2
            )));
        }
        let c = config;
        let block = |branch: &str, c_in, c_out, kernel: usize, init: &mut Init| {
            BasicConv2d::new(&format!("{name}.{branch}"), c_in, c_out, kernel, 1, kernel / 2, options.norm, init)
        };
        let module = match options.kind {
            InceptionKind::Naive => Inception {
                options,
                branch1: block("branch1", c.c_in, c.ch1x1, 1, init)?,
                branch2: vec![block("branch2.0", c.c_in, c.ch3x3, 3, init)?],
                branch3: vec![block("branch3.0", c.c_in, c.ch5x5, k3, init)?],
                branch4: None,
                c_in: c.c_in,
            },
            InceptionKind::Bottleneck => Inception {
                options,
                branch1: block("branch1", c.c_in, c.ch1x1, 1, init)?,
                branch2: vec![
                    block("branch2.0", c.c_in, c.ch3x3_reduce, 1, init)?,
                    block("branch2.1", c.ch3x3_reduce, c.ch3x3, 3, init)?,
                ],
                branch3: vec![
                    block("branch3.0", c.c_in, c.ch5x5_reduce, 1, init)?,
                    block("branch3.1", c.ch5x5_reduce, c.ch5x5, k3, init)?,
                ],
                branch4: Some(block("branch4.1", c.c_in, c.pool_proj, 1, init)?),
                c_in: c.c_in,
            },
        };
        Ok(module)
    }

    /// Options the module was built with.
    pub fn options(&self) -> InceptionOptions {
        self.options
    }

    /// Returns the six Table 1 columns read back from the built convolutions. In
    /// the naive module the reduce and projection columns are 0.
    pub fn config(&self) -> InceptionConfig {
        let reduce_and_out = |branch: &[BasicConv2d<T>]| match branch {
            [reduce, conv] => (reduce.c_out(), conv.c_out()),
            [conv] => (0, conv.c_out()),
            _ => unreachable!("a branch has one or two convolutions"),
        };
        let (ch3x3_reduce, ch3x3) = reduce_and_out(&self.branch2);
        let (ch5x5_reduce, ch5x5) = reduce_and_out(&self.branch3);
        InceptionConfig {
            c_in: self.c_in,
            ch1x1: self.branch1.c_out(),
            ch3x3_reduce,
            ch3x3,
            ch5x5_reduce,
            ch5x5,
            pool_proj: self.branch4.as_ref().map_or(0, BasicConv2d::c_out),
        }
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.config().c_out_of(self.options.kind)
    }

    /// Returns every convolution block, branch by branch.
    fn blocks(&self) -> impl Iterator<Item = &BasicConv2d<T>> {
        std::iter::once(&self.branch1).chain(&self.branch2).chain(&self.branch3).chain(&self.branch4)
    }
}

/// Runs a chain of blocks, stopping before the last ReLU.
fn chain_pre_activation<T: Float>(blocks: &[BasicConv2d<T>], ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
    let (last, first) = blocks.split_last().expect("a branch has at least one convolution");
    let mut y = x.clone();
    for block in first {
        y = block.forward(ctx, &y)?;
    }
    last.forward_pre_activation(ctx, &y)
}

impl<T: Float> Module<T> for Inception<T> {
    fn parameters(&self) -> Vec<Parameter<T>> {
        self.blocks().flat_map(Module::parameters).collect()
    }

    fn buffers(&self) -> Vec<Buffer<T>> {
        self.blocks().flat_map(Module::buffers).collect()
    }
}

impl<T: Float> Layer<T> for Inception<T> {
    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        self.output_dims(x.dims())?;
        let b1 = self.branch1.forward_pre_activation(ctx, x)?;
        let b2 = chain_pre_activation(&self.branch2, ctx, x)?;
        let b3 = chain_pre_activation(&self.branch3, ctx, x)?;
        let pooled = ctx.tape.max_pool2d(x, BRANCH_POOL)?;
        let (b4, b4_relu) = match &self.branch4 {
            Some(projection) => (projection.forward_pre_activation(ctx, &pooled)?, true),
            None => (pooled, false),
        };
        Ok(ctx.tape.concat_channels_relu(&[&b1, &b2, &b3, &b4], &[true, true, true, b4_relu])?)
    }

    fn output_dims(&self, input: &[usize]) -> Result<Vec<usize>> {
        let [n, c, h, w] = nchw("Inception", input)?;
        if c != self.c_in {
            return Err(ModelError::Config(format!(
                "{} expects {} input channels, got {input:?}",
                self.branch1.conv.weight.name().trim_end_matches(".branch1.conv.weight"),
                self.c_in
            )));
        }
        Ok(vec![n, self.c_out(), h, w])
    }

    fn macs(&self, input: &[usize]) -> Result<u64> {
        let mut total = self.branch1.macs(input)?;
        for branch in [&self.branch2, &self.branch3] {
            let mut dims = input.to_vec();
            for block in branch {
                total += block.macs(&dims)?;
                dims = block.output_dims(&dims)?;
            }
        }
        if let Some(projection) = &self.branch4 {
            total += projection.macs(input)?;
        }
        Ok(total)
    }
}
