//! The forward context, the `Module` and `Layer` traits, named buffers and
//! weight initialisation that every layer shares.

use std::cell::Cell;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use incept_autograd::{Parameter, Tape, Var};
use incept_tensor::{Float, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::{ModelError, Result};

/// Everything a forward pass needs besides the input: the tape to record
/// on, whether the network is training (batch statistics, dropout, auxiliary
/// heads) or evaluating, and a source of dropout seeds.
///
/// This is the train/eval switch: PyTorch keeps the mode as a flag on the
/// module (`model.train()`, `model.eval()`). incept passes it with every
/// forward call, so a model shared between a training loop and an
/// evaluation cannot be left in the wrong mode.
pub struct ForwardCtx<'a, T: Float = f32> {
    /// Tape that records the pass; an inference tape records nothing.
    pub tape: &'a Tape<T>,
    /// Training mode: batch-norm uses batch statistics and updates its
    /// running estimates, dropout is active and auxiliary heads run.
    pub training: bool,
    /// Eval mode only: run each convolution, batch norm and ReLU of a
    /// [`crate::layers::BasicConv2d`] as one convolution with the batch
    /// norm folded into its weights (true, the default), or as three
    /// operations, as training runs them (false). The outputs agree up to
    /// float rounding, and on a recording tape so do the gradients.
    /// Training ignores the flag.
    pub fold_batch_norm: bool,
    next_seed: Cell<u64>,
}

impl<'a, T: Float> ForwardCtx<'a, T> {
    /// Creates a training-mode context. Each dropout layer draws its mask from
    /// `seed`, `seed + 1`, ... in the order the layers run.
    pub fn train(tape: &'a Tape<T>, seed: u64) -> Self {
        ForwardCtx { tape, training: true, fold_batch_norm: true, next_seed: Cell::new(seed) }
    }

    /// Creates an eval-mode context: running statistics, no dropout, no
    /// auxiliary heads, and batch norm folded into the convolution before it.
    pub fn eval(tape: &'a Tape<T>) -> Self {
        ForwardCtx { tape, training: false, fold_batch_norm: true, next_seed: Cell::new(0) }
    }

    /// Returns the context with [`ForwardCtx::fold_batch_norm`] set to `fold`.
    pub fn with_batch_norm_folding(self, fold: bool) -> Self {
        ForwardCtx { fold_batch_norm: fold, ..self }
    }

    /// Returns a fresh seed for one dropout mask.
    pub fn dropout_seed(&self) -> u64 {
        let seed = self.next_seed.get();
        self.next_seed.set(seed.wrapping_add(1));
        seed
    }
}

/// Storage format of a buffer in a checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferKind {
    /// A floating-point statistic such as a running mean, stored in the
    /// model's float type.
    Float,
    /// An integer counter such as `num_batches_tracked`, stored as `I64`
    /// as PyTorch stores it. The value lives in a float tensor, which represents
    /// every integer up to 2^24 exactly in f32.
    Count,
}

struct BufferInner<T: Float> {
    name: String,
    kind: BufferKind,
    value: RwLock<Tensor<T>>,
}

/// A named tensor that belongs to a module's state but is not trained:
/// batch norm's running statistics and its batch counter.
///
/// PyTorch equivalent: a tensor registered with `register_buffer`; the name
/// is its `state_dict` key. Cloning a `Buffer` clones a handle.
#[derive(Clone)]
pub struct Buffer<T: Float = f32>(Arc<BufferInner<T>>);

impl<T: Float> fmt::Debug for Buffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Buffer({:?}, {:?}, {:?})", self.0.name, self.0.kind, self.value().dims())
    }
}

impl<T: Float> Buffer<T> {
    /// Creates a buffer.
    pub fn new(name: impl Into<String>, kind: BufferKind, value: Tensor<T>) -> Self {
        Buffer(Arc::new(BufferInner { name: name.into(), kind, value: RwLock::new(value) }))
    }

    /// Name, as in a PyTorch `state_dict`.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// Storage kind.
    pub fn kind(&self) -> BufferKind {
        self.0.kind
    }

    /// Borrows the current value; readers on other threads may hold it at
    /// the same time.
    pub fn value(&self) -> RwLockReadGuard<'_, Tensor<T>> {
        // Writers replace or update the value in one step, so a lock poisoned
        // by a panic elsewhere still guards a whole tensor.
        self.0.value.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the value.
    ///
    /// # Errors
    /// [`ModelError::Tensor`] if `value` does not have the current shape.
    pub fn set_value(&self, value: Tensor<T>) -> Result<()> {
        self.update(|current| -> Result<()> {
            current.expect_same_shape("Buffer::set_value", &value)?;
            *current = value;
            Ok(())
        })
    }

    /// Changes the value in place through `f`.
    pub fn update<R>(&self, f: impl FnOnce(&mut Tensor<T>) -> R) -> R {
        f(&mut self.0.value.write().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A layer or network: named parameters and buffers.
///
/// Names are dotted paths equal to the keys of the `state_dict` of the
/// equivalent PyTorch module, so weights exported from torchvision load
/// without renaming.
pub trait Module<T: Float = f32> {
    /// Lists every trainable parameter in a fixed order.
    fn parameters(&self) -> Vec<Parameter<T>>;

    /// Lists every buffer (state that is saved but not trained) in a fixed
    /// order. Most layers have none.
    fn buffers(&self) -> Vec<Buffer<T>> {
        Vec::new()
    }

    /// Total number of trainable scalars.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(Parameter::numel).sum()
    }
}

/// A module with one input and one output, the unit [`crate::layers::Sequential`] chains.
pub trait Layer<T: Float = f32>: Module<T> {
    /// Applies the layer. `ctx` selects training or evaluation.
    ///
    /// # Errors
    /// A shape error if `x` does not fit the layer.
    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>>;

    /// Returns the output dims for input dims `[N, C, H, W]` (or `[N, F]`
    /// for layers on flat features) without running the layer.
    ///
    /// # Errors
    /// A shape error if the input does not fit the layer.
    fn output_dims(&self, input: &[usize]) -> Result<Vec<usize>>;

    /// Multiply-accumulates of one forward pass over one sample of input
    /// dims `input` (batch axis included but ignored). Counts the
    /// products of convolutions and fully connected layers only, as the
    /// GoogLeNet paper's "ops" column does; pooling, normalisation and
    /// activations count 0.
    fn macs(&self, input: &[usize]) -> Result<u64> {
        let _ = input;
        Ok(0)
    }
}

/// Initialisation scheme of convolution and fully connected weights.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WeightInit {
    /// PyTorch's layer defaults: weight and bias from
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` (Kaiming-uniform with `a = sqrt(5)`).
    /// Spelled `"pytorch_default"` in JSON; the `"py_torch_default"` that
    /// older checkpoints contain is read too.
    #[serde(rename = "pytorch_default", alias = "py_torch_default")]
    PyTorchDefault,
    /// Weights from a normal distribution with mean 0 and this standard
    /// deviation, truncated to `[-2, 2]`, as torchvision's GoogLeNet does
    /// (`trunc_normal_(w, std=0.01, a=-2, b=2)`); biases keep PyTorch's default.
    TruncatedNormal {
        /// Standard deviation before truncation.
        std: f64,
    },
    /// He initialisation for layers followed by ReLU: weights from a normal
    /// distribution with mean 0 and standard deviation `sqrt(2 / fan_in)`,
    /// biases 0. It keeps the activations' scale from layer to layer in a
    /// network without batch norm, where PyTorch's default shrinks them by
    /// about `sqrt(1/6)` per convolution and a 22-layer GoogLeNet does not
    /// train.
    ///
    /// PyTorch equivalent: `kaiming_normal_(w, mode="fan_in", nonlinearity="relu")`
    /// and `zeros_(b)`.
    KaimingNormal,
}

/// A seeded source of initial weights.
pub struct Init {
    rng: StdRng,
    weights: WeightInit,
}

impl Init {
    /// Creates a source with PyTorch's default initialisation whose draws
    /// are the same for the same seed.
    pub fn new(seed: u64) -> Self {
        Init::with(seed, WeightInit::PyTorchDefault)
    }

    /// Creates a source that initialises weights with `weights`.
    pub fn with(seed: u64, weights: WeightInit) -> Self {
        Init { rng: StdRng::seed_from_u64(seed), weights }
    }

    /// Draws a weight tensor of `dims` whose layer has `fan_in` inputs per output.
    ///
    /// # Errors
    /// [`ModelError::Config`] if the truncated normal's `std` is not a positive number.
    pub fn weight<T: Float>(&mut self, dims: &[usize], fan_in: usize) -> Result<Tensor<T>> {
        match self.weights {
            WeightInit::PyTorchDefault => Ok(self.fan_in_uniform(dims, fan_in)),
            WeightInit::TruncatedNormal { std } => self.truncated_normal(dims, std, -2.0, 2.0),
            WeightInit::KaimingNormal => {
                let std = (2.0 / fan_in.max(1) as f64).sqrt();
                self.truncated_normal(dims, std, f64::NEG_INFINITY, f64::INFINITY)
            }
        }
    }

    /// Draws a bias of `dims`: zeros with [`WeightInit::KaimingNormal`], otherwise
    /// PyTorch's default, `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
    pub fn bias<T: Float>(&mut self, dims: &[usize], fan_in: usize) -> Tensor<T> {
        match self.weights {
            WeightInit::KaimingNormal => Tensor::zeros(dims),
            _ => self.fan_in_uniform(dims, fan_in),
        }
    }

    /// PyTorch's default for `Conv2d` and `Linear` weights and biases:
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` (Kaiming-uniform with `a = sqrt(5)`).
    pub fn fan_in_uniform<T: Float>(&mut self, dims: &[usize], fan_in: usize) -> Tensor<T> {
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        let seed = self.rng.random();
        Tensor::rand_uniform(dims, T::from_f64(-bound), T::from_f64(bound), seed)
    }

    /// Draws from a normal distribution with mean 0 and `std`, redrawing
    /// values outside `[low, high]`.
    ///
    /// PyTorch equivalent: `torch.nn.init.trunc_normal_(w, 0, std, low, high)`.
    ///
    /// # Errors
    /// [`ModelError::Config`] if `std` is not a positive number or `[low, high]`
    /// does not contain 0.
    pub fn truncated_normal<T: Float>(&mut self, dims: &[usize], std: f64, low: f64, high: f64) -> Result<Tensor<T>> {
        // Containing the mean keeps the acceptance rate above 0 for any std.
        if !(std.is_finite() && std > 0.0 && low <= 0.0 && 0.0 <= high) {
            return Err(ModelError::Config(format!(
                "truncated normal: std = {std} must be a positive number and [{low}, {high}] must contain 0"
            )));
        }
        let normal = Normal::new(0.0, std).expect("std is positive and finite");
        let numel: usize = dims.iter().product();
        let mut data = Vec::with_capacity(numel);
        while data.len() < numel {
            let v: f64 = normal.sample(&mut self.rng);
            if (low..=high).contains(&v) {
                data.push(T::from_f64(v));
            }
        }
        Ok(Tensor::from_vec(data, dims)?)
    }
}
