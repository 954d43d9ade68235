//! GoogLeNet (Inception v1): the paper's network and torchvision's, for
//! 224x224 ImageNet images or, with a small-input stem, 28x28 and 32x32 images.
//!
//! Szegedy et al., "Going deeper with convolutions", CVPR 2015.

use incept_autograd::{Parameter, Tape, Var};
use incept_tensor::lrn::LrnParams;
use incept_tensor::{Float, Tensor};
use serde::{Deserialize, Serialize};

use crate::inception::{Inception, InceptionConfig, InceptionOptions, scale_channels};
use crate::layers::{AdaptiveAvgPool2d, AvgPool2d, BasicConv2d, ConvNorm, Dropout, Flatten, Linear, Lrn, MaxPool2d};
use crate::module::{Buffer, ForwardCtx, Init, Layer, Module, WeightInit};
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

/// GoogLeNet variant to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// The network of the paper: convolutions with biases and no batch norm,
    /// local response normalisation after the first pool and after conv3,
    /// true 5x5 branches, 3x3/2 max pools, auxiliary heads that start with a
    /// 5x5/3 average pool.
    Paper,
    /// torchvision's `googlenet`: every convolution without bias and followed
    /// by batch norm (eps 0.001), no LRN, 3x3 convolutions in the "5x5"
    /// branches, a 2x2/2 max pool before 5a, auxiliary heads that start with
    /// an adaptive average pool to 4x4. Its state dict loads without renaming.
    Torchvision,
}

/// The layers before Inception 3a.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// The paper's stem for 224x224 images: conv1 7x7/2, max pool 3x3/2,
    /// conv2 1x1, conv3 3x3, max pool 3x3/2 (LRN in the paper variant), an
    /// eight-fold downsampling to the 28x28 maps of Inception 3a.
    ImageNet,
    /// A stem for 28x28 and 32x32 images. Two things change: conv1 is 3x3
    /// with stride 1 and padding 1 instead of 7x7/2 with padding 3, and the
    /// first max pool (maxpool1) is removed, so the stem downsamples
    /// two-fold instead of eight-fold (28x28 images reach 3a at 14x14).
    /// The paper variant's auxiliary heads pool adaptively to 4x4, as
    /// torchvision's do, because its 5x5/3 pool needs a 14x14 4a map.
    /// Layer names, channel counts and everything after the stem are unchanged.
    Small,
}

/// Options of [`GoogLeNet`]. Start from [`GoogLeNetConfig::paper`],
/// [`GoogLeNetConfig::torchvision`] or [`GoogLeNetConfig::small`] and
/// change fields.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GoogLeNetConfig {
    /// Paper or torchvision layers.
    pub variant: Variant,
    /// ImageNet or small-input stem.
    pub stem: Stem,
    /// Number of output classes.
    pub num_classes: usize,
    /// Channels of the input images (3 for RGB, 1 for Fashion-MNIST).
    pub in_channels: usize,
    /// Multiplier on every channel count (1.0 is the paper's network).
    pub width: f64,
    /// Build the two auxiliary classifiers (after 4a and 4d).
    pub aux_logits: bool,
    /// Map inputs normalised with the ImageNet mean and std to the `(x - 0.5) / 0.5`
    /// normalisation that torchvision's pretrained GoogLeNet was trained
    /// with, as torchvision's `transform_input=True` does. Needs 3 input channels.
    pub transform_input: bool,
    /// Drop probability before the final classifier (0.4 in the paper, 0.2 in torchvision).
    pub dropout: f64,
    /// Drop probability inside the auxiliary classifiers (0.7).
    pub aux_dropout: f64,
    /// Initialisation of convolution and linear weights.
    pub init: WeightInit,
    /// Seed of the initial weights.
    pub seed: u64,
}

impl GoogLeNetConfig {
    /// Returns the paper's network for 224x224 RGB images and 1000 classes, with
    /// auxiliary heads and He initialisation ([`WeightInit::KaimingNormal`]).
    pub fn paper() -> Self {
        GoogLeNetConfig {
            variant: Variant::Paper,
            stem: Stem::ImageNet,
            num_classes: 1000,
            in_channels: 3,
            width: 1.0,
            aux_logits: true,
            transform_input: false,
            dropout: 0.4,
            aux_dropout: 0.7,
            init: WeightInit::KaimingNormal,
            seed: 0,
        }
    }

    /// Returns torchvision's `googlenet(weights=None)` (torchvision 0.20): 224x224
    /// RGB, 1000 classes, auxiliary heads, dropout 0.2, weights from a
    /// normal with std 0.01 truncated to `[-2, 2]`.
    pub fn torchvision() -> Self {
        GoogLeNetConfig {
            variant: Variant::Torchvision,
            dropout: 0.2,
            init: WeightInit::TruncatedNormal { std: 0.01 },
            ..Self::paper()
        }
    }

    /// Returns a network of `variant` with the small-input stem for
    /// `in_channels` x 28x28 or 32x32 images and `num_classes` classes. The
    /// torchvision variant starts from PyTorch's default initialisation, the
    /// one the training example was tuned with. The paper variant keeps He
    /// initialisation, because without batch norm it does not train from
    /// PyTorch's default.
    pub fn small(variant: Variant, in_channels: usize, num_classes: usize) -> Self {
        let (base, init) = match variant {
            Variant::Paper => (Self::paper(), WeightInit::KaimingNormal),
            Variant::Torchvision => (Self::torchvision(), WeightInit::PyTorchDefault),
        };
        GoogLeNetConfig { stem: Stem::Small, in_channels, num_classes, init, ..base }
    }

    /// Inception options of the variant.
    pub fn inception_options(&self) -> InceptionOptions {
        match self.variant {
            Variant::Paper => InceptionOptions::PAPER,
            Variant::Torchvision => InceptionOptions::TORCHVISION,
        }
    }

    fn conv_norm(&self) -> ConvNorm {
        self.inception_options().norm
    }

    /// Trainable parameters of the network [`GoogLeNet::new`] builds from
    /// this config, computed from the channel counts without allocating;
    /// `None` if the count overflows `usize`.
    pub fn parameter_count(&self) -> Option<usize> {
        let plan = Plan::new(self);
        let per_channel = match self.conv_norm() {
            ConvNorm::Bias => 1,
            ConvNorm::BatchNorm => 2,
        };
        let conv = |c_in: usize, c_out: usize, kernel: usize| {
            c_in.checked_mul(c_out)?.checked_mul(kernel * kernel)?.checked_add(c_out.checked_mul(per_channel)?)
        };
        let linear = |f_in: usize, f_out: usize| f_in.checked_mul(f_out)?.checked_add(f_out);
        let mut total = 0usize;
        for stem in &plan.stem {
            total = total.checked_add(conv(stem.c_in, stem.c_out, stem.kernel)?)?;
        }
        for (_, config) in &plan.inceptions {
            total = total.checked_add(config.parameter_count(self.inception_options())?)?;
        }
        if self.aux_logits {
            for aux_in in plan.aux_inputs {
                let head = conv(aux_in, plan.aux_conv, 1)?
                    .checked_add(linear(plan.aux_conv.checked_mul(AUX_POOL_CELLS)?, plan.aux_hidden)?)?
                    .checked_add(linear(plan.aux_hidden, self.num_classes)?)?;
                total = total.checked_add(head)?;
            }
        }
        total.checked_add(linear(plan.fc_in, self.num_classes)?)
    }

    fn validate(&self) -> Result<()> {
        if self.num_classes == 0 || self.in_channels == 0 {
            return Err(ModelError::Config(format!(
                "num_classes = {} and in_channels = {} must be at least 1",
                self.num_classes, self.in_channels
            )));
        }
        if !(self.width.is_finite() && self.width > 0.0) {
            return Err(ModelError::Config(format!("width = {} must be a positive number", self.width)));
        }
        for (name, p) in [("dropout", self.dropout), ("aux_dropout", self.aux_dropout)] {
            if !(0.0..1.0).contains(&p) {
                return Err(ModelError::Config(format!("{name} = {p} must be in [0, 1)")));
            }
        }
        if self.transform_input && self.in_channels != 3 {
            return Err(ModelError::Config(format!(
                "transform_input rescales the three ImageNet channels; in_channels = {} must be 3 or \
                 transform_input false",
                self.in_channels
            )));
        }
        // Checked before any weight is allocated, so an absurd width or class
        // count is an error instead of an allocation failure.
        match self.parameter_count() {
            Some(count) if count <= MAX_PARAMETERS => Ok(()),
            count => {
                let count = count.map_or("more than usize::MAX".to_string(), |c| c.to_string());
                Err(ModelError::Config(format!(
                    "width = {}, in_channels = {} and num_classes = {} give {count} parameters; \
                     at most {MAX_PARAMETERS} (16 GiB of f32) are supported",
                    self.width, self.in_channels, self.num_classes
                )))
            }
        }
    }
}

impl Default for GoogLeNetConfig {
    /// torchvision's network, [`GoogLeNetConfig::torchvision`].
    fn default() -> Self {
        Self::torchvision()
    }
}

/// Largest network [`GoogLeNet::new`] builds: 2^32 parameters, 16 GiB of
/// f32 weights before gradients and optimiser state.
pub const MAX_PARAMETERS: usize = 1 << 32;

/// Weight of each auxiliary loss in the training loss (0.3 in the paper).
pub const AUX_LOSS_WEIGHT: f64 = 0.3;

/// Index of the module after which each auxiliary head sits (4a and 4d).
const AUX_AFTER: [usize; 2] = [2, 5];

/// Cells of the 4x4 map each auxiliary head pools to before its conv.
const AUX_POOL_CELLS: usize = 16;

/// One stem convolution of a [`Plan`].
struct StemConv {
    name: &'static str,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
}

/// Channel counts of every layer, derived from a config without allocating.
struct Plan {
    stem: [StemConv; 3],
    inceptions: Vec<(&'static str, InceptionConfig)>,
    aux_inputs: [usize; 2],
    aux_conv: usize,
    aux_hidden: usize,
    fc_in: usize,
}

impl Plan {
    fn new(config: &GoogLeNetConfig) -> Self {
        let w = config.width;
        let (c1, c2, c3) = (scale_channels(64, w), scale_channels(64, w), scale_channels(192, w));
        let (kernel, stride, padding) = match config.stem {
            Stem::ImageNet => (7, 2, 3),
            Stem::Small => (3, 1, 1),
        };
        let stem = [
            StemConv { name: "conv1", c_in: config.in_channels, c_out: c1, kernel, stride, padding },
            StemConv { name: "conv2", c_in: c1, c_out: c2, kernel: 1, stride: 1, padding: 0 },
            StemConv { name: "conv3", c_in: c2, c_out: c3, kernel: 3, stride: 1, padding: 1 },
        ];
        let mut c_in = c3;
        let mut inceptions = Vec::with_capacity(INCEPTION_CONFIGS.len());
        let mut aux_inputs = [0; 2];
        for (i, (name, full)) in INCEPTION_CONFIGS.iter().enumerate() {
            let scaled = full.scaled(c_in, w);
            c_in = scaled.c_out();
            if let Some(k) = AUX_AFTER.iter().position(|&a| a == i) {
                aux_inputs[k] = c_in;
            }
            inceptions.push((*name, scaled));
        }
        Plan {
            stem,
            inceptions,
            aux_inputs,
            aux_conv: scale_channels(128, w),
            aux_hidden: scale_channels(1024, w),
            fc_in: c_in,
        }
    }
}

/// The pooling layer an auxiliary head starts with.
pub(crate) enum AuxPool {
    /// The paper's 5x5/3 average pool (14x14 to 4x4).
    Fixed(AvgPool2d),
    /// torchvision's adaptive average pool to 4x4.
    Adaptive(AdaptiveAvgPool2d),
}

impl AuxPool {
    pub(crate) fn layer<T: Float>(&self) -> &dyn Layer<T> {
        match self {
            AuxPool::Fixed(pool) => pool,
            AuxPool::Adaptive(pool) => pool,
        }
    }
}

/// An auxiliary classifier: average pool to 4x4, 1x1 conv to 128 with
/// ReLU, flatten, FC to 1024 with ReLU, dropout 0.7, FC to the classes
/// (channel counts times the width).
///
/// PyTorch equivalent: `torchvision.models.googlenet.InceptionAux`; the
/// paper variant replaces its adaptive pool with a 5x5/3 average pool and
/// its batch norm with a bias.
pub struct InceptionAux<T: Float = f32> {
    pub(crate) pool: AuxPool,
    pub(crate) conv: BasicConv2d<T>,
    pub(crate) fc1: Linear<T>,
    pub(crate) dropout: Dropout,
    pub(crate) fc2: Linear<T>,
}

impl<T: Float> InceptionAux<T> {
    fn new(name: &str, c_in: usize, config: &GoogLeNetConfig, plan: &Plan, init: &mut Init) -> Result<Self> {
        let pool = match (config.variant, config.stem) {
            (Variant::Paper, Stem::ImageNet) => AuxPool::Fixed(AvgPool2d::new(5, 3, 0, false)),
            _ => AuxPool::Adaptive(AdaptiveAvgPool2d { output_size: (4, 4) }),
        };
        let norm = config.conv_norm();
        Ok(InceptionAux {
            pool,
            conv: BasicConv2d::new(&format!("{name}.conv"), c_in, plan.aux_conv, 1, 1, 0, norm, init)?,
            fc1: Linear::new(&format!("{name}.fc1"), plan.aux_conv * AUX_POOL_CELLS, plan.aux_hidden, init)?,
            dropout: Dropout::new(config.aux_dropout)?,
            fc2: Linear::new(&format!("{name}.fc2"), plan.aux_hidden, config.num_classes, init)?,
        })
    }

    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        let pooled_dims = self.pool.layer::<T>().output_dims(x.dims())?;
        if pooled_dims[2] * pooled_dims[3] != AUX_POOL_CELLS {
            return Err(ModelError::Config(format!(
                "the auxiliary heads' 5x5/3 average pool needs a 14x14 map after inception4a \
                 (a 224x224 input), got {:?}; use the small-input stem or disable aux_logits",
                x.dims()
            )));
        }
        let x = self.pool.layer().forward(ctx, x)?;
        let x = self.conv.forward(ctx, &x)?;
        let x = ctx.tape.flatten(&x)?;
        let x = ctx.tape.relu(&self.fc1.forward(ctx, &x)?);
        let x = self.dropout.forward(ctx, &x)?;
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

    fn buffers(&self) -> Vec<Buffer<T>> {
        self.conv.buffers()
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

/// Outputs of named layers as `(name, output)` pairs, in the order of the
/// `names` argument of [`GoogLeNet::forward_with_activations`].
pub type Activations<T = f32> = Vec<(String, Var<T>)>;

/// GoogLeNet, in the paper's form or torchvision's (see [`Variant`]).
///
/// Layout of the 224x224 network, as Table 1 of the paper lists it, with
/// torchvision's layer names (channel counts times `width`):
///
/// | layer | output |
/// |---|---|
/// | conv1 7x7/2 pad 3 | 112x112x64 |
/// | maxpool1 3x3/2 ceil (then LRN in the paper variant) | 56x56x64 |
/// | conv2 1x1, conv3 3x3 pad 1 (then LRN in the paper variant) | 56x56x192 |
/// | maxpool2 3x3/2 ceil | 28x28x192 |
/// | inception 3a, 3b | 28x28x480 |
/// | maxpool3 3x3/2 ceil | 14x14x480 |
/// | inception 4a-4e (auxiliary heads after 4a and 4d) | 14x14x832 |
/// | maxpool4: 3x3/2 ceil (paper), 2x2/2 ceil (torchvision) | 7x7x832 |
/// | inception 5a, 5b | 7x7x1024 |
/// | global average pool, dropout, fc | num_classes |
///
/// Every convolution is followed by ReLU, after batch norm in the
/// torchvision variant. [`Stem::Small`] describes the stem for 28x28 and
/// 32x32 images. Train-mode forward returns the main and auxiliary
/// logits; eval-mode forward never runs the auxiliary heads.
///
/// PyTorch equivalent: `torchvision.models.googlenet(weights=None,
/// aux_logits, transform_input, init_weights=True)` for
/// [`GoogLeNetConfig::torchvision`].
pub struct GoogLeNet<T: Float = f32> {
    pub(crate) config: GoogLeNetConfig,
    pub(crate) conv1: BasicConv2d<T>,
    /// `None` with the small-input stem.
    pub(crate) maxpool1: Option<MaxPool2d>,
    /// LRN after maxpool1 and after conv3; `None` in the torchvision variant.
    pub(crate) lrn: Option<Lrn>,
    pub(crate) conv2: BasicConv2d<T>,
    pub(crate) conv3: BasicConv2d<T>,
    pub(crate) maxpool2: MaxPool2d,
    pub(crate) maxpool3: MaxPool2d,
    pub(crate) maxpool4: MaxPool2d,
    pub(crate) inceptions: Vec<Inception<T>>,
    pub(crate) aux1: Option<InceptionAux<T>>,
    pub(crate) aux2: Option<InceptionAux<T>>,
    pub(crate) avgpool: AdaptiveAvgPool2d,
    pub(crate) dropout: Dropout,
    pub(crate) fc: Linear<T>,
}

impl<T: Float> GoogLeNet<T> {
    /// Builds the network with freshly initialised weights.
    ///
    /// # Errors
    /// [`ModelError::Config`] if the class count or input channels are zero,
    /// the width is not positive, a dropout probability is outside `[0, 1)`,
    /// `transform_input` is set without 3 input channels, or the network
    /// would have more than [`MAX_PARAMETERS`] parameters.
    pub fn new(config: GoogLeNetConfig) -> Result<Self> {
        config.validate()?;
        let plan = Plan::new(&config);
        let mut init = Init::with(config.seed, config.init);
        let norm = config.conv_norm();
        let [s1, s2, s3] = &plan.stem;
        let stem_conv = |s: &StemConv, init: &mut Init| {
            BasicConv2d::new(s.name, s.c_in, s.c_out, s.kernel, s.stride, s.padding, norm, init)
        };
        let conv1 = stem_conv(s1, &mut init)?;
        let conv2 = stem_conv(s2, &mut init)?;
        let conv3 = stem_conv(s3, &mut init)?;
        let options = config.inception_options();
        let inceptions = plan
            .inceptions
            .iter()
            .map(|(name, module)| Inception::with_options(name, *module, options, &mut init))
            .collect::<Result<Vec<_>>>()?;
        let (aux1, aux2) = if config.aux_logits {
            (
                Some(InceptionAux::new("aux1", plan.aux_inputs[0], &config, &plan, &mut init)?),
                Some(InceptionAux::new("aux2", plan.aux_inputs[1], &config, &plan, &mut init)?),
            )
        } else {
            (None, None)
        };
        let fc = Linear::new("fc", plan.fc_in, config.num_classes, &mut init)?;
        let maxpool4 = match config.variant {
            Variant::Paper => MaxPool2d::new(3, 2, 0, true),
            Variant::Torchvision => MaxPool2d::new(2, 2, 0, true),
        };
        Ok(GoogLeNet {
            config,
            conv1,
            maxpool1: (config.stem == Stem::ImageNet).then(|| MaxPool2d::new(3, 2, 0, true)),
            lrn: (config.variant == Variant::Paper).then_some(Lrn { params: LrnParams::GOOGLENET }),
            conv2,
            conv3,
            maxpool2: MaxPool2d::new(3, 2, 0, true),
            maxpool3: MaxPool2d::new(3, 2, 0, true),
            maxpool4,
            inceptions,
            aux1,
            aux2,
            avgpool: AdaptiveAvgPool2d { output_size: (1, 1) },
            dropout: Dropout::new(config.dropout)?,
            fc,
        })
    }

    /// Returns the options the network was built with.
    pub fn config(&self) -> &GoogLeNetConfig {
        &self.config
    }

    /// Returns the nine Inception modules, 3a to 5b.
    pub fn inceptions(&self) -> &[Inception<T>] {
        &self.inceptions
    }

    /// Returns the output dims of every main-path layer for an input
    /// `[N, C, H, W]`, in order, with the layer's name. The first error names
    /// the layer that does not fit.
    pub(crate) fn trace_dims(&self, input: &[usize]) -> Result<Vec<(String, Vec<usize>)>> {
        let mut dims = input.to_vec();
        let mut trace = Vec::new();
        let mut step = |name: &str, layer: &dyn Layer<T>, dims: &mut Vec<usize>| -> Result<()> {
            *dims = layer.output_dims(dims)?;
            trace.push((name.to_string(), dims.clone()));
            Ok(())
        };
        step("conv1", &self.conv1, &mut dims)?;
        if let Some(pool) = &self.maxpool1 {
            step("maxpool1", pool, &mut dims)?;
        }
        step("conv2", &self.conv2, &mut dims)?;
        step("conv3", &self.conv3, &mut dims)?;
        step("maxpool2", &self.maxpool2, &mut dims)?;
        for (i, module) in self.inceptions.iter().enumerate() {
            match i {
                2 => step("maxpool3", &self.maxpool3, &mut dims)?,
                7 => step("maxpool4", &self.maxpool4, &mut dims)?,
                _ => {}
            }
            step(INCEPTION_CONFIGS[i].0, module, &mut dims)?;
        }
        step("avgpool", &self.avgpool, &mut dims)?;
        step("flatten", &Flatten, &mut dims)?;
        step("fc", &self.fc, &mut dims)?;
        Ok(trace)
    }

    /// Checks the input's shape and returns an error with the smallest
    /// image that fits if it is too small.
    fn check_input(&self, dims: &[usize], with_aux: bool) -> Result<()> {
        if dims.len() != 4 || dims[1] != self.config.in_channels {
            return Err(ModelError::Config(format!(
                "GoogLeNet expects input [N, {}, H, W], got {dims:?}",
                self.config.in_channels
            )));
        }
        let fits = |h: usize, w: usize| {
            let Ok(trace) = self.trace_dims(&[1, dims[1], h, w]) else { return false };
            // The auxiliary heads read the 4a map, so their first pool must fit it.
            !with_aux
                || trace.iter().find(|(name, _)| name == "inception4a").is_some_and(|(_, d)| {
                    let head = self.aux1.as_ref().expect("with_aux implies the heads exist");
                    head.pool.layer::<T>().output_dims(d).is_ok()
                })
        };
        let (h, w) = (dims[2], dims[3]);
        if !fits(h, w) {
            let min = (1..4096).find(|&side| fits(side.max(h), side.max(w))).unwrap_or(4096);
            let mode = if with_aux { "in training with auxiliary heads" } else { "without auxiliary heads" };
            return Err(ModelError::Config(format!(
                "this GoogLeNet needs images of at least {min}x{min} {mode}, got {h}x{w}"
            )));
        }
        Ok(())
    }

    /// Maps ImageNet-normalised inputs to the `(x - 0.5) / 0.5` scale of
    /// torchvision's pretrained weights: channel `c` becomes
    /// `x * (std[c] / 0.5) + (mean[c] - 0.5) / 0.5`, as torchvision's
    /// `GoogLeNet._transform_input` computes it.
    fn transform_input(&self, tape: &Tape<T>, x: &Var<T>) -> Result<Var<T>> {
        const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
        const STD: [f64; 3] = [0.229, 0.224, 0.225];
        let scale = Tensor::from_vec(STD.iter().map(|&s| T::from_f64(s / 0.5)).collect(), [1, 3, 1, 1])?;
        let shift = Tensor::from_vec(MEAN.iter().map(|&m| T::from_f64((m - 0.5) / 0.5)).collect(), [1, 3, 1, 1])?;
        let scaled = tape.mul(x, &Var::constant(scale))?;
        Ok(tape.add(&scaled, &Var::constant(shift))?)
    }

    /// Runs the network. Auxiliary heads run only in training mode.
    ///
    /// # Shapes
    /// `[N, in_channels, H, W] -> [N, num_classes]`. The design sizes are
    /// 224x224 ([`Stem::ImageNet`]) and 28x28 or 32x32 ([`Stem::Small`]);
    /// other sizes work while every pool has a window, and the error names
    /// the smallest size that fits. Training also needs at least two values
    /// per channel at every batch norm.
    ///
    /// # Errors
    /// [`ModelError::Config`] if the input channels differ or the image is
    /// smaller than the pooling stages need.
    pub fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<GoogLeNetOutput<T>> {
        self.forward_observed(ctx, x, &mut |_, _| {})
    }

    /// Runs the network as [`GoogLeNet::forward`] does and also returns the
    /// outputs of the main-path layers named in `names`, in the order of
    /// `names`.
    ///
    /// The names are torchvision's module names, listed by
    /// [`GoogLeNet::layer_names`]. Each activation is what a forward hook
    /// on that torchvision module receives as output: `conv1` is after
    /// batch norm (or bias) and ReLU, and `avgpool` is `[N, C, 1, 1]`. In
    /// the paper variant, `maxpool1` and `conv3` are taken before the LRN
    /// that follows them.
    ///
    /// # Errors
    /// As [`GoogLeNet::forward`], and [`ModelError::Config`] if a name is
    /// not in [`GoogLeNet::layer_names`].
    pub fn forward_with_activations(
        &self,
        ctx: &ForwardCtx<'_, T>,
        x: &Var<T>,
        names: &[&str],
    ) -> Result<(GoogLeNetOutput<T>, Activations<T>)> {
        let available = self.layer_names();
        if let Some(unknown) = names.iter().find(|name| !available.contains(name)) {
            return Err(ModelError::Config(format!(
                "GoogLeNet has no main-path layer named {unknown:?}; expected one of {}",
                available.join(", ")
            )));
        }
        let mut captured: Vec<Option<Var<T>>> = vec![None; names.len()];
        let output = self.forward_observed(ctx, x, &mut |layer, value| {
            for (slot, name) in captured.iter_mut().zip(names) {
                if *name == layer {
                    *slot = Some(value.clone());
                }
            }
        })?;
        let activations = names
            .iter()
            .zip(captured)
            .map(|(name, value)| (name.to_string(), value.expect("forward runs every layer in layer_names")))
            .collect();
        Ok((output, activations))
    }

    /// Lists the main-path layers in the order they run, by torchvision's
    /// module names: `conv1`, `maxpool1` (absent with
    /// [`Stem::Small`]), `conv2`, `conv3`, `maxpool2`, `inception3a` to
    /// `inception5b` with `maxpool3` and `maxpool4` between the stages,
    /// `avgpool`, `dropout` and `fc`.
    pub fn layer_names(&self) -> Vec<&'static str> {
        let mut names = vec!["conv1"];
        if self.maxpool1.is_some() {
            names.push("maxpool1");
        }
        names.extend(["conv2", "conv3", "maxpool2"]);
        for (i, (name, _)) in INCEPTION_CONFIGS.iter().enumerate() {
            if let Some((pool_name, _)) = self.pool_before(i) {
                names.push(pool_name);
            }
            names.push(name);
        }
        names.extend(["avgpool", "dropout", "fc"]);
        names
    }

    /// Returns the max pool that runs before Inception module `i` (0 is 3a), with its name.
    fn pool_before(&self, i: usize) -> Option<(&'static str, &MaxPool2d)> {
        match i {
            2 => Some(("maxpool3", &self.maxpool3)),
            7 => Some(("maxpool4", &self.maxpool4)),
            _ => None,
        }
    }

    /// Runs the network and passes each main-path layer's name and output
    /// to `observe` right after the layer runs.
    fn forward_observed(
        &self,
        ctx: &ForwardCtx<'_, T>,
        x: &Var<T>,
        observe: &mut dyn FnMut(&str, &Var<T>),
    ) -> Result<GoogLeNetOutput<T>> {
        let tape = ctx.tape;
        let with_aux = ctx.training && self.aux1.is_some();
        self.check_input(x.dims(), with_aux)?;
        let mut x = if self.config.transform_input { self.transform_input(tape, x)? } else { x.clone() };
        x = self.conv1.forward(ctx, &x)?;
        observe("conv1", &x);
        if let Some(pool) = &self.maxpool1 {
            x = pool.forward(ctx, &x)?;
            observe("maxpool1", &x);
        }
        if let Some(lrn) = &self.lrn {
            x = lrn.forward(ctx, &x)?;
        }
        x = self.conv2.forward(ctx, &x)?;
        observe("conv2", &x);
        x = self.conv3.forward(ctx, &x)?;
        observe("conv3", &x);
        if let Some(lrn) = &self.lrn {
            x = lrn.forward(ctx, &x)?;
        }
        x = self.maxpool2.forward(ctx, &x)?;
        observe("maxpool2", &x);
        let mut aux_logits = Vec::new();
        for (i, module) in self.inceptions.iter().enumerate() {
            if let Some((pool_name, pool)) = self.pool_before(i) {
                x = pool.forward(ctx, &x)?;
                observe(pool_name, &x);
            }
            x = module.forward(ctx, &x)?;
            observe(INCEPTION_CONFIGS[i].0, &x);
            if with_aux {
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
        x = self.avgpool.forward(ctx, &x)?;
        observe("avgpool", &x);
        x = tape.flatten(&x)?;
        x = self.dropout.forward(ctx, &x)?;
        observe("dropout", &x);
        let logits = self.fc.forward(ctx, &x)?;
        observe("fc", &logits);
        // Both heads ran, or (eval mode, or no heads built) neither did.
        let aux = <[Var<T>; 2]>::try_from(aux_logits).ok();
        Ok(GoogLeNetOutput { logits, aux })
    }

    /// Returns every module with parameters or buffers, in state-dict order.
    fn children(&self) -> Vec<&dyn Module<T>> {
        let mut children: Vec<&dyn Module<T>> = vec![&self.conv1, &self.conv2, &self.conv3];
        children.extend(self.inceptions.iter().map(|m| m as &dyn Module<T>));
        children.extend(self.aux1.iter().chain(&self.aux2).map(|m| m as &dyn Module<T>));
        children.push(&self.fc);
        children
    }
}

impl<T: Float> Module<T> for GoogLeNet<T> {
    fn parameters(&self) -> Vec<Parameter<T>> {
        self.children().into_iter().flat_map(Module::parameters).collect()
    }

    fn buffers(&self) -> Vec<Buffer<T>> {
        self.children().into_iter().flat_map(Module::buffers).collect()
    }
}
