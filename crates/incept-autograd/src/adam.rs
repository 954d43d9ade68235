//! Adam and AdamW.
//!
//! Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015;
//! Loshchilov and Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.

use incept_tensor::{Float, Tensor};

use crate::{AutogradError, Parameter, Result};

/// Hyper-parameters of [`Adam`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first-moment (mean) estimate.
    pub beta1: f64,
    /// Decay of the second-moment (uncentred variance) estimate.
    pub beta2: f64,
    /// Added to the denominator for numerical stability.
    pub eps: f64,
    /// Weight decay: added to the gradient as an L2 penalty (Adam), or
    /// applied to the weights directly when `decoupled` is set (AdamW).
    pub weight_decay: f64,
    /// Decoupled weight decay: `p <- p * (1 - lr * weight_decay)` before the
    /// Adam step, as AdamW does.
    pub decoupled: bool,
}

impl AdamConfig {
    /// PyTorch's `torch.optim.Adam` defaults: lr 1e-3, betas (0.9, 0.999),
    /// eps 1e-8, no weight decay.
    pub fn adam() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }

    /// PyTorch's `torch.optim.AdamW` defaults: Adam's, with decoupled weight
    /// decay 0.01.
    pub fn adamw() -> Self {
        AdamConfig { weight_decay: 0.01, decoupled: true, ..Self::adam() }
    }
}

/// Per-parameter state: the moment estimates and the number of steps taken.
struct Moments<T: Float> {
    mean: Tensor<T>,
    variance: Tensor<T>,
    steps: i32,
}

/// Adam, or AdamW with [`AdamConfig::decoupled`], following the update of
/// PyTorch's `torch.optim.Adam` and `AdamW` (no AMSGrad):
///
/// ```text
/// p = p * (1 - lr * wd)                 (AdamW)   or   g = g + wd * p   (Adam)
/// m = beta1 * m + (1 - beta1) * g
/// v = beta2 * v + (1 - beta2) * g^2
/// p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
/// ```
pub struct Adam<T: Float = f32> {
    params: Vec<Parameter<T>>,
    state: Vec<Option<Moments<T>>>,
    config: AdamConfig,
}

impl<T: Float> Adam<T> {
    /// Creates an optimiser over `params`.
    ///
    /// # Errors
    /// [`AutogradError::InvalidArgument`] if `lr`, `eps` or `weight_decay`
    /// is negative or not finite in `T`, or a beta is outside `[0, 1)`.
    pub fn new(params: Vec<Parameter<T>>, config: AdamConfig) -> Result<Self> {
        let invalid = |reason: String| AutogradError::InvalidArgument { op: "Adam::new", reason };
        for (name, value) in [("lr", config.lr), ("eps", config.eps), ("weight_decay", config.weight_decay)] {
            if !(T::from_f64(value).is_finite() && value >= 0.0) {
                return Err(invalid(format!("{name} = {value:e} must be finite in {} and non-negative", T::DTYPE)));
            }
        }
        for (name, value) in [("beta1", config.beta1), ("beta2", config.beta2)] {
            if !(0.0..1.0).contains(&value) {
                return Err(invalid(format!("{name} = {value} must be in [0, 1)")));
            }
        }
        let state = params.iter().map(|_| None).collect();
        Ok(Adam { params, state, config })
    }

    /// Current learning rate.
    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    /// Sets the learning rate (a schedule calls this before each step).
    ///
    /// # Errors
    /// [`AutogradError::InvalidArgument`] if `lr` is negative or not finite
    /// in `T`; the rate is then left unchanged.
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        if !(T::from_f64(lr).is_finite() && lr >= 0.0) {
            return Err(AutogradError::InvalidArgument {
                op: "Adam::set_lr",
                reason: format!("lr = {lr:e} must be finite in {} and non-negative", T::DTYPE),
            });
        }
        self.config.lr = lr;
        Ok(())
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&self) {
        crate::zero_grads(&self.params);
    }

    /// Applies one update to every parameter that has a gradient; the others
    /// are left untouched and their step count does not advance, as in PyTorch.
    pub fn step(&mut self) {
        let AdamConfig { lr, beta1, beta2, eps, weight_decay, decoupled } = self.config;
        for (param, state) in self.params.iter().zip(&mut self.state) {
            let Some(mut grad) = param.grad() else { continue };
            let value = param.value();
            let moments = state.get_or_insert_with(|| Moments {
                mean: Tensor::zeros(value.dims()),
                variance: Tensor::zeros(value.dims()),
                steps: 0,
            });
            moments.steps = moments.steps.saturating_add(1);
            if weight_decay != 0.0 && !decoupled {
                let wd = T::from_f64(weight_decay);
                grad.data_mut().iter_mut().zip(value.data()).for_each(|(g, &p)| *g = *g + wd * p);
            }
            drop(value);
            let (b1, b2) = (T::from_f64(beta1), T::from_f64(beta2));
            for ((m, v), &g) in moments.mean.data_mut().iter_mut().zip(moments.variance.data_mut()).zip(grad.data()) {
                *m = b1 * *m + (T::one() - b1) * g;
                *v = b2 * *v + (T::one() - b2) * g * g;
            }
            let bias1 = 1.0 - beta1.powi(moments.steps);
            let bias2_sqrt = (1.0 - beta2.powi(moments.steps)).sqrt();
            let (step_size, bias2_sqrt, eps) = (T::from_f64(lr / bias1), T::from_f64(bias2_sqrt), T::from_f64(eps));
            let shrink = T::from_f64(1.0 - lr * weight_decay);
            param.update(|p| {
                let moments = (moments.mean.data().iter()).zip(moments.variance.data());
                for (p, (&m, &v)) in p.data_mut().iter_mut().zip(moments) {
                    if decoupled {
                        *p = *p * shrink;
                    }
                    *p = *p - step_size * m / (v.sqrt() / bias2_sqrt + eps);
                }
            });
        }
    }
}
