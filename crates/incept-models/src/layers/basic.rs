//! Fully connected layer, dropout, ReLU, flatten and the sequential container.

use incept_autograd::{Parameter, Var};
use incept_tensor::Float;

use crate::module::{Buffer, ForwardCtx, Init, Layer, Module};
use crate::{ModelError, Result};

/// A fully connected layer, `y = x W^T + b`.
///
/// PyTorch equivalent: `torch.nn.Linear(in_features, out_features)`.
///
/// # Shapes
/// `[N, in_features] -> [N, out_features]`.
pub struct Linear<T: Float = f32> {
    /// Weight, `[out_features, in_features]`.
    pub weight: Parameter<T>,
    /// Bias, `[out_features]`.
    pub bias: Parameter<T>,
}

impl<T: Float> Linear<T> {
    /// Creates a layer whose weight comes from `init` and whose bias has
    /// PyTorch's default.
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
            weight: Parameter::new(format!("{name}.weight"), init.weight(&[out_features, in_features], in_features)?),
            bias: Parameter::new(format!("{name}.bias"), init.bias(&[out_features], in_features)),
        })
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.value().dims()[1]
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.value().dims()[0]
    }
}

impl<T: Float> Module<T> for Linear<T> {
    fn parameters(&self) -> Vec<Parameter<T>> {
        vec![self.weight.clone(), self.bias.clone()]
    }
}

impl<T: Float> Layer<T> for Linear<T> {
    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        let tape = ctx.tape;
        Ok(tape.linear(x, &tape.param(&self.weight), Some(&tape.param(&self.bias)))?)
    }

    fn output_dims(&self, input: &[usize]) -> Result<Vec<usize>> {
        match *input {
            [n, f] if f == self.in_features() => Ok(vec![n, self.out_features()]),
            _ => Err(ModelError::Config(format!(
                "{} expects an input [N, {}], got {input:?}",
                self.weight.name(),
                self.in_features()
            ))),
        }
    }

    fn macs(&self, input: &[usize]) -> Result<u64> {
        self.output_dims(input)?;
        Ok(self.weight.numel() as u64)
    }
}

/// Inverted dropout: in training each element is zeroed with probability
/// `p` and the rest are scaled by `1 / (1 - p)`; in evaluation it is the identity.
///
/// PyTorch equivalent: `torch.nn.Dropout(p)`.
///
/// # Shapes
/// Any shape, unchanged.
pub struct Dropout {
    /// Drop probability, in `[0, 1)`.
    pub p: f64,
}

impl Dropout {
    /// Creates the layer.
    ///
    /// # Errors
    /// [`ModelError::Config`] if `p` is outside `[0, 1)`.
    pub fn new(p: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(ModelError::Config(format!("dropout probability p = {p} must be in [0, 1)")));
        }
        Ok(Dropout { p })
    }
}

impl<T: Float> Module<T> for Dropout {
    fn parameters(&self) -> Vec<Parameter<T>> {
        Vec::new()
    }
}

impl<T: Float> Layer<T> for Dropout {
    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        if !ctx.training {
            return Ok(x.clone());
        }
        Ok(ctx.tape.dropout(x, self.p, ctx.dropout_seed())?)
    }

    fn output_dims(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }
}

/// `max(x, 0)`.
///
/// PyTorch equivalent: `torch.nn.ReLU()`.
///
/// # Shapes
/// Any shape, unchanged.
pub struct ReLU;

impl<T: Float> Module<T> for ReLU {
    fn parameters(&self) -> Vec<Parameter<T>> {
        Vec::new()
    }
}

impl<T: Float> Layer<T> for ReLU {
    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        Ok(ctx.tape.relu(x))
    }

    fn output_dims(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }
}

/// Flattens every axis after the batch axis.
///
/// PyTorch equivalent: `torch.nn.Flatten()`.
///
/// # Shapes
/// `[N, d1, d2, ...] -> [N, d1 * d2 * ...]`.
pub struct Flatten;

impl<T: Float> Module<T> for Flatten {
    fn parameters(&self) -> Vec<Parameter<T>> {
        Vec::new()
    }
}

impl<T: Float> Layer<T> for Flatten {
    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        Ok(ctx.tape.flatten(x)?)
    }

    fn output_dims(&self, input: &[usize]) -> Result<Vec<usize>> {
        match input.split_first() {
            Some((&n, rest)) => Ok(vec![n, rest.iter().product()]),
            None => Err(ModelError::Config("Flatten needs a batch axis, got a 0-D input".into())),
        }
    }
}

/// Layers applied one after another.
///
/// PyTorch equivalent: `torch.nn.Sequential`. Unlike PyTorch, the children's
/// parameter names are whatever each layer was built with, so a container
/// adds no `0.`, `1.` prefixes of its own.
///
/// ```
/// use incept_autograd::{Tape, Var};
/// use incept_models::layers::{Flatten, Linear, ReLU, Sequential};
/// use incept_models::{ForwardCtx, Init, Layer};
/// use incept_tensor::Tensor;
///
/// let mut init = Init::new(0);
/// let mlp = Sequential::<f32>::new()
///     .push(Flatten)
///     .push(Linear::new("fc1", 12, 8, &mut init).unwrap())
///     .push(ReLU)
///     .push(Linear::new("fc2", 8, 3, &mut init).unwrap());
/// let tape = Tape::inference();
/// let y = mlp.forward(&ForwardCtx::eval(&tape), &Var::constant(Tensor::ones([2, 3, 2, 2]))).unwrap();
/// assert_eq!(y.dims(), &[2, 3]);
/// ```
pub struct Sequential<T: Float = f32> {
    layers: Vec<Box<dyn Layer<T> + Send + Sync>>,
}

impl<T: Float> Default for Sequential<T> {
    fn default() -> Self {
        Sequential { layers: Vec::new() }
    }
}

impl<T: Float> Sequential<T> {
    /// Creates an empty container, the identity.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer.
    pub fn push(mut self, layer: impl Layer<T> + Send + Sync + 'static) -> Self {
        self.layers.push(Box::new(layer));
        self
    }

    /// Returns the layers in order.
    pub fn layers(&self) -> &[Box<dyn Layer<T> + Send + Sync>] {
        &self.layers
    }
}

impl<T: Float> Module<T> for Sequential<T> {
    fn parameters(&self) -> Vec<Parameter<T>> {
        self.layers.iter().flat_map(|l| l.parameters()).collect()
    }

    fn buffers(&self) -> Vec<Buffer<T>> {
        self.layers.iter().flat_map(|l| l.buffers()).collect()
    }
}

impl<T: Float> Layer<T> for Sequential<T> {
    fn forward(&self, ctx: &ForwardCtx<'_, T>, x: &Var<T>) -> Result<Var<T>> {
        let mut x = x.clone();
        for layer in &self.layers {
            x = layer.forward(ctx, &x)?;
        }
        Ok(x)
    }

    fn output_dims(&self, input: &[usize]) -> Result<Vec<usize>> {
        let mut dims = input.to_vec();
        for layer in &self.layers {
            dims = layer.output_dims(&dims)?;
        }
        Ok(dims)
    }

    fn macs(&self, input: &[usize]) -> Result<u64> {
        let mut dims = input.to_vec();
        let mut total = 0;
        for layer in &self.layers {
            total += layer.macs(&dims)?;
            dims = layer.output_dims(&dims)?;
        }
        Ok(total)
    }
}
