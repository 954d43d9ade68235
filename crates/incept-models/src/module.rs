//! The forward context, parameter listing and weight initialisation that
//! every layer shares.

use std::cell::Cell;

use incept_autograd::{Parameter, Tape};
use incept_tensor::{Float, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Everything a forward pass needs besides the input: the tape to record
/// on, whether the network is training (batch statistics, dropout, auxiliary
/// heads) or evaluating, and a source of dropout seeds.
pub struct ForwardCtx<'a, T: Float = f32> {
    /// Tape that records the pass; an inference tape records nothing.
    pub tape: &'a Tape<T>,
    /// Training mode: batch-norm uses batch statistics and updates its
    /// running estimates, dropout is active and auxiliary heads run.
    pub training: bool,
    next_seed: Cell<u64>,
}

impl<'a, T: Float> ForwardCtx<'a, T> {
    /// Creates a training-mode context. Each dropout layer draws its mask from
    /// `seed`, `seed + 1`, ... in the order the layers run.
    pub fn train(tape: &'a Tape<T>, seed: u64) -> Self {
        ForwardCtx { tape, training: true, next_seed: Cell::new(seed) }
    }

    /// Creates an eval-mode context: running statistics, no dropout, no auxiliary heads.
    pub fn eval(tape: &'a Tape<T>) -> Self {
        ForwardCtx { tape, training: false, next_seed: Cell::new(0) }
    }

    /// Returns a fresh seed for one dropout mask.
    pub fn dropout_seed(&self) -> u64 {
        let seed = self.next_seed.get();
        self.next_seed.set(seed.wrapping_add(1));
        seed
    }
}

/// A layer or network with trainable parameters.
pub trait Module<T: Float = f32> {
    /// Lists every trainable parameter in a fixed order, named as PyTorch's
    /// `state_dict` would name it.
    fn parameters(&self) -> Vec<Parameter<T>>;

    /// Total number of trainable scalars.
    fn num_parameters(&self) -> usize {
        self.parameters().iter().map(Parameter::numel).sum()
    }
}

/// A seeded source of initial weights.
pub struct Init {
    rng: StdRng,
}

impl Init {
    /// Creates a source whose draws are the same for the same seed.
    pub fn new(seed: u64) -> Self {
        Init { rng: StdRng::seed_from_u64(seed) }
    }

    /// PyTorch's default for `Conv2d` and `Linear` weights and biases:
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` (Kaiming-uniform with `a = sqrt(5)`).
    pub fn fan_in_uniform<T: Float>(&mut self, dims: &[usize], fan_in: usize) -> Tensor<T> {
        let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
        let seed = self.rng.random();
        Tensor::rand_uniform(dims, T::from_f64(-bound), T::from_f64(bound), seed)
    }
}
