//! Optimisers and learning-rate schedules.

use std::f64::consts::PI;

use incept_tensor::{Float, Tensor};

use crate::{AutogradError, Parameter, Result};

/// Formats a hyper-parameter for an error message: plain decimals for
/// ordinary values, scientific notation for huge or tiny ones (`1e300`, not
/// a 301-digit number).
fn readable(x: f64) -> String {
    if x != 0.0 && x.is_finite() && !(1e-4..1e6).contains(&x.abs()) { format!("{x:e}") } else { format!("{x}") }
}

/// Hyper-parameters of [`Sgd`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f64,
    /// Momentum factor; 0 disables momentum.
    pub momentum: f64,
    /// L2 penalty added to the gradient: `grad + weight_decay * value`.
    pub weight_decay: f64,
    /// Use Nesterov momentum.
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { lr: 0.01, momentum: 0.0, weight_decay: 0.0, nesterov: false }
    }
}

/// Stochastic gradient descent with momentum, Nesterov momentum and weight
/// decay, with the update rule of PyTorch's `torch.optim.SGD`:
///
/// ```text
/// g = grad + weight_decay * p
/// b = momentum * b + g          (b = g on the first step)
/// g = g + momentum * b          (Nesterov)   or   g = b
/// p = p - lr * g
/// ```
pub struct Sgd<T: Float = f32> {
    params: Vec<Parameter<T>>,
    velocity: Vec<Option<Tensor<T>>>,
    config: SgdConfig,
}

impl<T: Float> Sgd<T> {
    /// Creates an optimiser over `params`.
    ///
    /// # Errors
    /// [`AutogradError::InvalidArgument`] if a hyper-parameter is negative or
    /// not finite, or Nesterov is requested without momentum.
    pub fn new(params: Vec<Parameter<T>>, config: SgdConfig) -> Result<Self> {
        let invalid = |reason: String| AutogradError::InvalidArgument { op: "Sgd::new", reason };
        for (name, value) in [("lr", config.lr), ("momentum", config.momentum), ("weight_decay", config.weight_decay)] {
            // Checked in the parameters' own type: 1e300 is a finite f64
            // but an infinite f32.
            if !(T::from_f64(value).is_finite() && value >= 0.0) {
                return Err(invalid(format!(
                    "{name} = {} must be finite (in the parameters' {} type) and non-negative",
                    readable(value),
                    T::DTYPE
                )));
            }
        }
        if config.nesterov && config.momentum == 0.0 {
            return Err(invalid("Nesterov momentum requires momentum > 0".into()));
        }
        let velocity = params.iter().map(|_| None).collect();
        Ok(Sgd { params, velocity, config })
    }

    /// Current learning rate.
    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    /// Sets the learning rate (a schedule calls this before each step).
    ///
    /// # Errors
    /// [`AutogradError::InvalidArgument`] if `lr` is negative or not finite;
    /// the rate is then left unchanged.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        if !(T::from_f64(lr).is_finite() && lr >= 0.0) {
            return Err(AutogradError::InvalidArgument {
                op: "Sgd::set_lr",
                reason: format!(
                    "lr = {} must be finite (in the parameters' {} type) and non-negative",
                    readable(lr),
                    T::DTYPE
                ),
            });
        }
        self.config.lr = lr;
        Ok(())
    }

    /// Parameters this optimiser updates.
    pub fn params(&self) -> &[Parameter<T>] {
        &self.params
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&self) {
        crate::zero_grads(&self.params);
    }

    /// Applies one update to every parameter that has a gradient; the others
    /// are left untouched, as PyTorch does.
    pub fn step(&mut self) {
        let SgdConfig { lr, momentum, weight_decay, nesterov } = self.config;
        let (lr, momentum, weight_decay) = (T::from_f64(lr), T::from_f64(momentum), T::from_f64(weight_decay));
        for (param, velocity) in self.params.iter().zip(&mut self.velocity) {
            let Some(mut grad) = param.grad() else { continue };
            let value = param.value();
            if weight_decay != T::zero() {
                for (g, &p) in grad.data_mut().iter_mut().zip(value.data()) {
                    *g = *g + weight_decay * p;
                }
            }
            drop(value);
            if momentum != T::zero() {
                let buf = match velocity {
                    Some(buf) => {
                        for (b, &g) in buf.data_mut().iter_mut().zip(grad.data()) {
                            *b = momentum * *b + g;
                        }
                        buf
                    }
                    slot => slot.insert(grad.clone()),
                };
                if nesterov {
                    for (g, &b) in grad.data_mut().iter_mut().zip(buf.data()) {
                        *g = *g + momentum * b;
                    }
                } else {
                    grad.data_mut().copy_from_slice(buf.data());
                }
            }
            param.update(|value| {
                for (p, &g) in value.data_mut().iter_mut().zip(grad.data()) {
                    *p = *p - lr * g;
                }
            });
        }
    }
}

/// The one-cycle learning-rate policy (Smith and Topurkoglu, "Super-Convergence",
/// 2017) with cosine annealing, as PyTorch's `OneCycleLR` defines it: the
/// rate rises from `max_lr / div_factor` to `max_lr` over the first
/// `pct_start` of the steps, then falls to `max_lr / (div_factor * final_div_factor)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneCycleLr {
    /// Peak learning rate.
    pub max_lr: f64,
    /// Total number of optimiser steps.
    pub total_steps: usize,
    /// Fraction of the steps spent increasing the rate (PyTorch's default is 0.3).
    pub pct_start: f64,
    /// Initial rate is `max_lr / div_factor` (PyTorch's default is 25).
    pub div_factor: f64,
    /// Final rate is the initial rate divided by this (PyTorch's default is 1e4).
    pub final_div_factor: f64,
}

impl OneCycleLr {
    /// A schedule with PyTorch's default shape (`pct_start` 0.3,
    /// `div_factor` 25, `final_div_factor` 1e4).
    ///
    /// # Errors
    /// [`AutogradError::InvalidArgument`] if `max_lr` is not a positive
    /// number or `total_steps` is zero.
    pub fn new(max_lr: f64, total_steps: usize) -> Result<Self> {
        if !(max_lr.is_finite() && max_lr > 0.0) || total_steps == 0 {
            return Err(AutogradError::InvalidArgument {
                op: "OneCycleLr::new",
                reason: format!(
                    "max_lr = {max_lr} must be a positive number and total_steps = {total_steps} at least 1"
                ),
            });
        }
        Ok(OneCycleLr { max_lr, total_steps, pct_start: 0.3, div_factor: 25.0, final_div_factor: 1e4 })
    }

    /// Learning rate for step `step` (0-based); steps past the end keep the final rate.
    pub fn lr_at(&self, step: usize) -> f64 {
        let initial = self.max_lr / self.div_factor;
        let last = initial / self.final_div_factor;
        // PyTorch places the peak at step `pct_start * total - 1` and the end
        // at `total - 1`. With 3 or fewer steps the peak falls before step 0,
        // so the schedule starts already annealing, as PyTorch's does.
        let peak = self.pct_start * self.total_steps as f64 - 1.0;
        let end = (self.total_steps as f64 - 1.0).max(peak);
        let step = (step as f64).min(end);
        // A weighted mean of `from` and `to`, which cannot overflow for any
        // finite rates (unlike `to + (from - to) * weight`).
        let cosine = |from: f64, to: f64, fraction: f64| {
            let weight = (1.0 + (PI * fraction).cos()) / 2.0;
            from * weight + to * (1.0 - weight)
        };
        if peak > 0.0 && step <= peak {
            cosine(initial, self.max_lr, step / peak)
        } else {
            let fraction = if end > peak { (step - peak) / (end - peak) } else { 1.0 };
            cosine(self.max_lr, last, fraction)
        }
    }
}
