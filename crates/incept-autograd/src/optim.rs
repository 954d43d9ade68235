//! Stochastic gradient descent.

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

    /// Returns each parameter's momentum buffer (PyTorch's
    /// `momentum_buffer`), paired with the parameter, in parameter order;
    /// `None` before the parameter's first update. A checkpoint saves these
    /// so that a resumed run takes the same steps as an uninterrupted one.
    pub fn momentum_buffers(&self) -> impl Iterator<Item = (&Parameter<T>, Option<&Tensor<T>>)> {
        self.params.iter().zip(self.velocity.iter().map(Option::as_ref))
    }

    /// Replaces the momentum buffer of the parameter at `index` in
    /// [`Sgd::params`]; `None` clears it, as before the first update.
    ///
    /// # Errors
    /// [`AutogradError::InvalidArgument`] if `index` is out of range or the
    /// buffer's shape differs from the parameter's; nothing changes then.
    pub fn set_momentum_buffer(&mut self, index: usize, buffer: Option<Tensor<T>>) -> Result<()> {
        let invalid = |reason: String| AutogradError::InvalidArgument { op: "Sgd::set_momentum_buffer", reason };
        let Some(param) = self.params.get(index) else {
            return Err(invalid(format!("index {index} is out of range for {} parameters", self.params.len())));
        };
        if let Some(buffer) = &buffer {
            let expected = param.value();
            if buffer.dims() != expected.dims() {
                return Err(invalid(format!(
                    "{}: buffer shape {:?} differs from the parameter's {:?}",
                    param.name(),
                    buffer.dims(),
                    expected.dims()
                )));
            }
        }
        self.velocity[index] = buffer;
        Ok(())
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
