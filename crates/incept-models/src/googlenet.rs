//! GoogLeNet (Inception v1) for small images, with auxiliary classifiers.
//!
//! Szegedy et al., "Going deeper with convolutions", CVPR 2015.

use incept_autograd::{Parameter, Tape, Var};
use incept_tensor::Float;
use incept_tensor::pool::Pool2dParams;

use crate::inception::{Inception, InceptionConfig, scale_channels};
use crate::layers::{BasicConv2d, Linear};
use crate::module::{ForwardCtx, Init, Module};
use crate::{ModelError, Result};

/// The nine Inception modules of Table 1 of the GoogLeNet paper, with their
/// input channels at full width: `(name, config)`.
pub const INCEPTION_CONFIGS: [(&str, InceptionConfig); 9] = [
    ("inception3a", cfg(192, 64, 96, 128, 16, 32, 32)),
    ("inception3b", cfg(256, 128, 128, 192, 32, 96, 64)),
    ("inception4a", cfg(480, 192, 96, 208, 16, 48, 64)),
    ("inception4b", cfg(512, 160, 112, 224, 24, 64, 64)),
    ("inception4c", cfg(512, 128, 128, 256, 24, 64, 64)),
    ("inception4d", cfg(512, 112, 144, 288, 32, 64, 64)),
    ("inception4e", cfg(528, 256, 160, 320, 32, 128, 128)),
    ("inception5a", cfg(832, 256, 160, 320, 32, 128, 128)),
    ("inception5b", cfg(832, 384, 192, 384, 48, 128, 128)),
];

const fn cfg(
    c_in: usize,
    ch1x1: usize,
    ch3x3_reduce: usize,
    ch3x3: usize,
    ch5x5_reduce: usize,
    ch5x5: usize,
    pool_proj: usize,
) -> InceptionConfig {
    InceptionConfig { c_in, ch1x1, ch3x3_reduce, ch3x3, ch5x5_reduce, ch5x5, pool_proj }
}

/// Options of [`GoogLeNet`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GoogLeNetConfig {
    /// Number of output classes.
    pub num_classes: usize,
    /// Channels of the input images (1 for Fashion-MNIST).
    pub in_channels: usize,
    /// Multiplier on every channel count (1.0 is the paper's network).
    pub width: f64,
    /// Build the two auxiliary classifiers (after 4a and 4d).
    pub aux_logits: bool,
    /// Drop probability before the final classifier (0.4 in the paper).
    pub dropout: f64,
    /// Drop probability inside the auxiliary classifiers (0.7 in the paper).
    pub aux_dropout: f64,
    /// Seed of the initial weights.
    pub seed: u64,
}

impl GoogLeNetConfig {
    /// Trainable parameters of the network [`GoogLeNet::new`] builds from
    /// this config, computed from the channel counts without allocating; `None`
    /// if the count overflows `usize`.
    pub fn parameter_count(&self) -> Option<usize> {
        let w = self.width;
        let conv_bn = |c_in: usize, c_out: usize, kernel: usize| {
            c_in.checked_mul(c_out)?.checked_mul(kernel * kernel)?.checked_add(c_out.checked_mul(2)?)
        };
        let linear = |f_in: usize, f_out: usize| f_in.checked_mul(f_out)?.checked_add(f_out);
        let (c1, c2) = (scale_channels(64, w), scale_channels(192, w));
        let mut total = conv_bn(self.in_channels, c1, 3)?.checked_add(conv_bn(c1, c2, 3)?)?;
        let mut c_in = c2;
        let mut aux_inputs = [0; 2];
        for (i, (_, full)) in INCEPTION_CONFIGS.iter().enumerate() {
            let config = full.scaled(c_in, w);
            total = total.checked_add(config.parameter_count()?)?;
            c_in = config.c_out();
            if let Some(k) = AUX_AFTER.iter().position(|&a| a == i) {
                aux_inputs[k] = c_in;
            }
        }
        if self.aux_logits {
            let (c_conv, hidden) = (scale_channels(128, w), scale_channels(1024, w));
            for aux_in in aux_inputs {
                let head = conv_bn(aux_in, c_conv, 1)?
                    .checked_add(linear(c_conv.checked_mul(4)?, hidden)?)?
                    .checked_add(linear(hidden, self.num_classes)?)?;
                total = total.checked_add(head)?;
            }
        }
        total.checked_add(linear(c_in, self.num_classes)?)
    }
}

impl Default for GoogLeNetConfig {
    fn default() -> Self {
        GoogLeNetConfig {
            num_classes: 10,
            in_channels: 1,
            width: 1.0,
            aux_logits: true,
            dropout: 0.4,
            aux_dropout: 0.7,
            seed: 0,
        }
    }
}

/// Largest network [`GoogLeNet::new`] builds: 2^32 parameters, 16 GiB of
/// f32 weights before gradients and optimiser state.
pub const MAX_PARAMETERS: usize = 1 << 32;

/// Weight of each auxiliary loss in the training loss (0.3 in the paper).
pub const AUX_LOSS_WEIGHT: f64 = 0.3;

/// An auxiliary classifier: adaptive average pool to 2x2, 1x1 conv to 128
/// (times the width), FC to 1024 (times the width) with ReLU, dropout, FC
/// to the classes.
///
/// PyTorch equivalent: `torchvision.models.googlenet.InceptionAux`, pooling
/// to 2x2 instead of 4x4 because the small-input network's 4a/4d maps are 7x7.
pub struct InceptionAux<T: Float = f32> {
    conv: BasicConv2d<T>,
    fc1: Linear<T>,
    fc2: Linear<T>,
    dropout: f64,
}

impl<T: Float> InceptionAux<T> {
    fn new(name: &str, c_in: usize, config: &GoogLeNetConfig, init: &mut Init) -> Result<Self> {
        let c_conv = scale_channels(128, config.width);
        let hidden = scale_channels(1024, config.width);
        Ok(InceptionAux {
            conv: BasicConv2d::new(&format!("{name}.conv"), c_in, c_conv, 1, 1, 0, init)?,
            fc1: Linear::new(&format!("{name}.fc1"), c_conv * 4, hidden, init)?,
            fc2: Linear::new(&format!("{name}.fc2"), hidden, config.num_classes, init)?,
            dropout: config.aux_dropout,
        })
    }

    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        let tape = ctx.tape;
        let x = tape.adaptive_avg_pool2d(x, 2, 2)?;
        let x = self.conv.forward(ctx, &x)?;
        let x = tape.flatten(&x)?;
        let x = tape.relu(&self.fc1.forward(ctx, &x)?);
        let x = tape.dropout(&x, self.dropout, ctx.dropout_seed())?;
        self.fc2.forward(ctx, &x)
    }
}

impl<T: Float> Module<T> for InceptionAux<T> {
    fn parameters(&self) -> Vec<Parameter<T>> {
        let mut params = self.conv.parameters();
        params.extend(self.fc1.parameters());
        params.extend(self.fc2.parameters());
        params
    }
}

/// The outputs of one forward pass.
pub struct GoogLeNetOutput<T: Float = f32> {
    /// Main classifier logits, `[N, num_classes]`.
    pub logits: Var<T>,
    /// Logits of the auxiliary classifiers after 4a and 4d; present only in
    /// training mode with `aux_logits`.
    pub aux: Option<[Var<T>; 2]>,
}

impl<T: Float> GoogLeNetOutput<T> {
    /// The training loss: cross-entropy of the main logits plus
    /// [`AUX_LOSS_WEIGHT`] times each auxiliary cross-entropy.
    ///
    /// # Errors
    /// If `targets` does not hold one class index per sample.
    pub fn loss(&self, tape: &Tape<T>, targets: &[usize]) -> Result<Var<T>> {
        let mut loss = tape.cross_entropy(&self.logits, targets)?;
        if let Some(aux) = &self.aux {
            for logits in aux {
                let aux_loss = tape.cross_entropy(logits, targets)?;
                loss = tape.add(&loss, &tape.scale(&aux_loss, T::from_f64(AUX_LOSS_WEIGHT)))?;
            }
        }
        Ok(loss)
    }
}

/// GoogLeNet with a stem for 28x28 inputs.
///
/// Layout (channel counts times `width`), for a 28x28 input:
///
/// | layer | output |
/// |---|---|
/// | conv1 3x3/1 pad 1, BN, ReLU | 28x28x64 |
/// | conv2 3x3/1 pad 1, BN, ReLU | 28x28x192 |
/// | max pool 3x3/2 ceil | 14x14x192 |
/// | inception 3a, 3b | 14x14x480 |
/// | max pool 3x3/2 ceil | 7x7x480 |
/// | inception 4a-4e (aux heads after 4a and 4d) | 7x7x832 |
/// | max pool 3x3/2 pad 1 ceil | 4x4x832 |
/// | inception 5a, 5b | 4x4x1024 |
/// | global average pool, dropout 0.4, linear | num_classes |
///
/// The Inception modules are the paper's nine, with true 5x5 convolutions
/// and batch norm after every convolution. The 224x224 stem of the paper
/// (7x7/2 conv, pools and LRN) is replaced by two 3x3 convolutions: it
/// downsamples eight-fold before 3a (224 to 28), and a 28x28 image has no room for that.
pub struct GoogLeNet<T: Float = f32> {
    config: GoogLeNetConfig,
    conv1: BasicConv2d<T>,
    conv2: BasicConv2d<T>,
    inceptions: Vec<Inception<T>>,
    aux1: Option<InceptionAux<T>>,
    aux2: Option<InceptionAux<T>>,
    fc: Linear<T>,
}

/// Index of the module after which each auxiliary head sits (4a and 4d).
const AUX_AFTER: [usize; 2] = [2, 5];

/// The max pool before 3a and before 4a: 3x3, stride 2, ceil mode.
const STAGE_POOL: Pool2dParams = Pool2dParams { kernel: (3, 3), stride: (2, 2), padding: (0, 0), ceil_mode: true };

/// The max pool before 5a, padded so that 7x7 maps become 4x4 (3x3 without padding).
const LAST_STAGE_POOL: Pool2dParams = Pool2dParams { kernel: (3, 3), stride: (2, 2), padding: (1, 1), ceil_mode: true };

/// Returns the side lengths of the 3a, 4a and 5a feature maps for an input
/// side, or `None` if a pool does not fit. The auxiliary heads also need the
/// 4a map to be at least 2 wide for their 2x2 pool.
fn feature_map_sides(side: usize, with_aux: bool) -> Option<[usize; 3]> {
    let s3 = STAGE_POOL.h_out(side).filter(|&s| s > 0)?;
    let s4 = STAGE_POOL.h_out(s3).filter(|&s| s > 0)?;
    let s5 = LAST_STAGE_POOL.h_out(s4).filter(|&s| s > 0)?;
    (!with_aux || s4 >= 2).then_some([s3, s4, s5])
}

impl<T: Float> GoogLeNet<T> {
    /// Builds the network with freshly initialised weights.
    ///
    /// # Errors
    /// [`ModelError::Config`] if the class count or input channels are zero,
    /// the width is not positive, or a dropout probability is outside `[0, 1)`.
    pub fn new(config: GoogLeNetConfig) -> Result<Self> {
        if config.num_classes == 0 || config.in_channels == 0 {
            return Err(ModelError::Config(format!(
                "num_classes = {} and in_channels = {} must be at least 1",
                config.num_classes, config.in_channels
            )));
        }
        if !(config.width.is_finite() && config.width > 0.0) {
            return Err(ModelError::Config(format!("width = {} must be a positive number", config.width)));
        }
        for (name, p) in [("dropout", config.dropout), ("aux_dropout", config.aux_dropout)] {
            if !(0.0..1.0).contains(&p) {
                return Err(ModelError::Config(format!("{name} = {p} must be in [0, 1)")));
            }
        }
        // Checked before any weight is allocated, so an absurd width or class
        // count is an error instead of an allocation failure.
        match config.parameter_count() {
            Some(count) if count <= MAX_PARAMETERS => {}
            count => {
                let count = count.map_or("more than usize::MAX".to_string(), |c| c.to_string());
                return Err(ModelError::Config(format!(
                    "width = {}, in_channels = {} and num_classes = {} give {count} parameters; \
                     at most {MAX_PARAMETERS} (16 GiB of f32) are supported",
                    config.width, config.in_channels, config.num_classes
                )));
            }
        }
        let mut init = Init::new(config.seed);
        let w = config.width;
        let conv1 = BasicConv2d::new("conv1", config.in_channels, scale_channels(64, w), 3, 1, 1, &mut init)?;
        let conv2 = BasicConv2d::new("conv2", conv1.c_out(), scale_channels(192, w), 3, 1, 1, &mut init)?;
        let mut c_in = conv2.c_out();
        let mut inceptions = Vec::with_capacity(INCEPTION_CONFIGS.len());
        let mut aux_inputs = [0; 2];
        for (i, (name, full)) in INCEPTION_CONFIGS.iter().enumerate() {
            let module = Inception::new(name, full.scaled(c_in, w), &mut init)?;
            c_in = module.config().c_out();
            if let Some(k) = AUX_AFTER.iter().position(|&a| a == i) {
                aux_inputs[k] = c_in;
            }
            inceptions.push(module);
        }
        let (aux1, aux2) = if config.aux_logits {
            (
                Some(InceptionAux::new("aux1", aux_inputs[0], &config, &mut init)?),
                Some(InceptionAux::new("aux2", aux_inputs[1], &config, &mut init)?),
            )
        } else {
            (None, None)
        };
        let fc = Linear::new("fc", c_in, config.num_classes, &mut init)?;
        Ok(GoogLeNet { config, conv1, conv2, inceptions, aux1, aux2, fc })
    }

    /// Returns the options the network was built with.
    pub fn config(&self) -> &GoogLeNetConfig {
        &self.config
    }

    /// Returns the nine Inception modules, 3a to 5b.
    pub fn inceptions(&self) -> &[Inception<T>] {
        &self.inceptions
    }

    /// Runs the network. Auxiliary heads run only in training mode.
    ///
    /// # Shapes
    /// `[N, in_channels, H, W] -> [N, num_classes]`. 28x28 is the design
    /// size; the pooling stages need `H, W >= 6`, or `>= 8` in training with
    /// auxiliary heads. Training also needs at least two values per channel
    /// at every batch norm, so batch 1 needs a 4a map of at least 2x2
    /// (images of at least 8x8) even without auxiliary heads.
    ///
    /// # Errors
    /// [`ModelError::Config`] if the input channels differ or the image is
    /// smaller than the pooling stages need (the message gives the minimum).
    pub fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<GoogLeNetOutput<T>> {
        let tape = ctx.tape;
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != self.config.in_channels {
            return Err(ModelError::Config(format!(
                "GoogLeNet expects input [N, {}, H, W], got {dims:?}",
                self.config.in_channels
            )));
        }
        let with_aux = ctx.training && self.aux1.is_some();
        let (h, w) = (dims[2], dims[3]);
        if feature_map_sides(h, with_aux).is_none() || feature_map_sides(w, with_aux).is_none() {
            let min =
                (1..).find(|&side| feature_map_sides(side, with_aux).is_some()).expect("a large side always fits");
            let mode = if with_aux { "in training with auxiliary heads" } else { "without auxiliary heads" };
            return Err(ModelError::Config(format!(
                "GoogLeNet needs images of at least {min}x{min} {mode}, got {h}x{w}"
            )));
        }
        let pool = STAGE_POOL;
        let mut x = self.conv1.forward(ctx, x)?;
        x = self.conv2.forward(ctx, &x)?;
        x = tape.max_pool2d(&x, pool)?;
        let mut aux_logits = Vec::new();
        for (i, module) in self.inceptions.iter().enumerate() {
            match i {
                2 => x = tape.max_pool2d(&x, pool)?,
                7 => x = tape.max_pool2d(&x, LAST_STAGE_POOL)?,
                _ => {}
            }
            x = module.forward(ctx, &x)?;
            if ctx.training {
                let head = match i {
                    i if i == AUX_AFTER[0] => self.aux1.as_ref(),
                    i if i == AUX_AFTER[1] => self.aux2.as_ref(),
                    _ => None,
                };
                if let Some(head) = head {
                    aux_logits.push(head.forward(ctx, &x)?);
                }
            }
        }
        x = tape.global_avg_pool2d(&x)?;
        x = tape.flatten(&x)?;
        if ctx.training {
            x = tape.dropout(&x, self.config.dropout, ctx.dropout_seed())?;
        }
        let logits = self.fc.forward(ctx, &x)?;
        // Both heads ran, or (eval mode, or no heads built) neither did.
        let aux = <[Var<T>; 2]>::try_from(aux_logits).ok();
        Ok(GoogLeNetOutput { logits, aux })
    }
}

impl<T: Float> Module<T> for GoogLeNet<T> {
    fn parameters(&self) -> Vec<Parameter<T>> {
        let mut params = self.conv1.parameters();
        params.extend(self.conv2.parameters());
        for module in &self.inceptions {
            params.extend(module.parameters());
        }
        for head in self.aux1.iter().chain(&self.aux2) {
            params.extend(head.parameters());
        }
        params.extend(self.fc.parameters());
        params
    }
}
