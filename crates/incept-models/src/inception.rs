//! The Inception module: four parallel branches concatenated on channels.
//!
//! Szegedy et al., "Going deeper with convolutions", CVPR 2015, Figure 2(b).

use incept_autograd::{Parameter, Var};
use incept_tensor::Float;
use incept_tensor::pool::Pool2dParams;

use crate::Result;
use crate::layers::BasicConv2d;
use crate::module::{ForwardCtx, Init, Module};

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

impl InceptionConfig {
    /// Output channels: the sum of the four branch outputs.
    pub fn c_out(&self) -> usize {
        self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj
    }

    /// Trainable parameters of the module [`Inception`] builds from this
    /// config (convolution weights without bias, and a scale and a shift per
    /// channel of each batch norm), or `None` if the count overflows `usize`.
    pub fn parameter_count(&self) -> Option<usize> {
        let c = self;
        let conv = |c_in: usize, c_out: usize, kernel: usize| {
            c_in.checked_mul(c_out)?.checked_mul(kernel * kernel)?.checked_add(c_out.checked_mul(2)?)
        };
        [
            conv(c.c_in, c.ch1x1, 1)?,
            conv(c.c_in, c.ch3x3_reduce, 1)?,
            conv(c.ch3x3_reduce, c.ch3x3, 3)?,
            conv(c.c_in, c.ch5x5_reduce, 1)?,
            conv(c.ch5x5_reduce, c.ch5x5, 5)?,
            conv(c.c_in, c.pool_proj, 1)?,
        ]
        .into_iter()
        .try_fold(0usize, |total, n| total.checked_add(n))
    }

    /// Multiplies every channel count by `width` and rounded to the nearest
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

/// The Inception module with 1x1 bottlenecks: a 1x1 branch, a 1x1-reduce then
/// 3x3 branch, a 1x1-reduce then 5x5 branch, and a 3x3/1 max pool then 1x1
/// projection branch, each convolution followed by batch norm and ReLU.
///
/// PyTorch equivalent: `torchvision.models.googlenet.Inception`, except that
/// the third branch here is a true 5x5 convolution (torchvision uses 3x3).
pub struct Inception<T: Float = f32> {
    config: InceptionConfig,
    branch1: BasicConv2d<T>,
    branch2: [BasicConv2d<T>; 2],
    branch3: [BasicConv2d<T>; 2],
    branch4: BasicConv2d<T>,
}

impl<T: Float> Inception<T> {
    /// Creates a module named `name`; parameters follow torchvision's names
    /// (`{name}.branch2.1.conv.weight`, ...).
    ///
    /// # Errors
    /// [`crate::ModelError::Config`] if a channel count is zero.
    pub fn new(name: &str, config: InceptionConfig, init: &mut Init) -> Result<Self> {
        let c = config;
        let block = |branch: &str, c_in, c_out, kernel, padding, init: &mut Init| {
            BasicConv2d::new(&format!("{name}.{branch}"), c_in, c_out, kernel, 1, padding, init)
        };
        Ok(Inception {
            config,
            branch1: block("branch1", c.c_in, c.ch1x1, 1, 0, init)?,
            branch2: [
                block("branch2.0", c.c_in, c.ch3x3_reduce, 1, 0, init)?,
                block("branch2.1", c.ch3x3_reduce, c.ch3x3, 3, 1, init)?,
            ],
            branch3: [
                block("branch3.0", c.c_in, c.ch5x5_reduce, 1, 0, init)?,
                block("branch3.1", c.ch5x5_reduce, c.ch5x5, 5, 2, init)?,
            ],
            branch4: block("branch4.1", c.c_in, c.pool_proj, 1, 0, init)?,
        })
    }

    /// Channel configuration.
    pub fn config(&self) -> &InceptionConfig {
        &self.config
    }

    /// Runs the four branches on `x` and concatenates them on channels.
    ///
    /// # Shapes
    /// `[N, c_in, H, W] -> [N, c_out, H, W]`: every branch preserves the size.
    ///
    /// # Errors
    /// A shape error if `x` does not have `c_in` channels.
    pub fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        let b1 = self.branch1.forward(ctx, x)?;
        let b2 = self.branch2[0].forward(ctx, x)?;
        let b2 = self.branch2[1].forward(ctx, &b2)?;
        let b3 = self.branch3[0].forward(ctx, x)?;
        let b3 = self.branch3[1].forward(ctx, &b3)?;
        let b4 = ctx.tape.max_pool2d(x, Pool2dParams::new(3, 1, 1, true))?;
        let b4 = self.branch4.forward(ctx, &b4)?;
        // TODO: branches could write straight into their channel range of one
        // buffer; the concat below copies every output once.
        Ok(ctx.tape.concat_channels(&[&b1, &b2, &b3, &b4])?)
    }
}

impl<T: Float> Module<T> for Inception<T> {
    fn parameters(&self) -> Vec<Parameter<T>> {
        [&self.branch1, &self.branch2[0], &self.branch2[1], &self.branch3[0], &self.branch3[1], &self.branch4]
            .into_iter()
            .flat_map(|b| b.parameters())
            .collect()
    }
}
