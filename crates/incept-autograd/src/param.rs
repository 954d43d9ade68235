//! Trainable parameters.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use incept_tensor::{Float, Tensor};

use crate::Result;

struct ParamInner<T: Float> {
    name: String,
    value: RwLock<Arc<Tensor<T>>>,
    grad: Mutex<Option<Tensor<T>>>,
}

/// A long-lived, named, trainable tensor with an accumulated gradient.
///
/// Cloning a `Parameter` clones a handle: both handles see the same value
/// and gradient. Handles are `Send + Sync`, so a model can run inference
/// from several threads at once; the value sits behind a read-write lock
/// and the gradient behind a mutex. Names follow PyTorch's `state_dict` keys
/// (`"conv1.conv.weight"`).
#[derive(Clone)]
pub struct Parameter<T: Float = f32>(Arc<ParamInner<T>>);

impl<T: Float> fmt::Debug for Parameter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Parameter({:?}, {:?})", self.0.name, self.value().dims())
    }
}

impl<T: Float> Parameter<T> {
    /// Creates a parameter with no gradient.
    pub fn new(name: impl Into<String>, value: Tensor<T>) -> Self {
        Parameter(Arc::new(ParamInner {
            name: name.into(),
            value: RwLock::new(Arc::new(value)),
            grad: Mutex::new(None),
        }))
    }

    /// Name, as in a PyTorch `state_dict`.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The current value, shared (no copy).
    pub fn value(&self) -> Arc<Tensor<T>> {
        Arc::clone(&self.read_value())
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.read_value().numel()
    }

    /// Replaces the value.
    ///
    /// # Errors
    /// A shape error if `value` does not have the current shape.
    pub fn set_value(&self, value: Tensor<T>) -> Result<()> {
        let mut slot = self.write_value();
        slot.expect_same_shape("Parameter::set_value", &value)?;
        *slot = Arc::new(value);
        Ok(())
    }

    /// Changes the value in place through `f`. The tensor is copied first
    /// only if a tape still shares it.
    pub fn update(&self, f: impl FnOnce(&mut Tensor<T>)) {
        let mut value = self.write_value();
        f(Arc::make_mut(&mut value));
    }

    /// The accumulated gradient, or `None` if no backward pass reached this
    /// parameter since the last [`Parameter::zero_grad`].
    pub fn grad(&self) -> Option<Tensor<T>> {
        self.lock_grad().clone()
    }

    /// Runs `f` on the accumulated gradient without copying it.
    pub fn with_grad<R>(&self, f: impl FnOnce(Option<&Tensor<T>>) -> R) -> R {
        f(self.lock_grad().as_ref())
    }

    /// Clears the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.lock_grad() = None;
    }

    // A panic while a lock was held leaves the value it guarded whole (every
    // write replaces or updates it in one step), so a poisoned lock is used as is.
    fn read_value(&self) -> RwLockReadGuard<'_, Arc<Tensor<T>>> {
        self.0.value.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_value(&self) -> RwLockWriteGuard<'_, Arc<Tensor<T>>> {
        self.0.value.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_grad(&self) -> MutexGuard<'_, Option<Tensor<T>>> {
        self.0.grad.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn accumulate_grad(&self, grad: &Tensor<T>) -> Result<()> {
        let mut slot = self.lock_grad();
        match slot.as_mut() {
            Some(total) => total.add_assign(grad)?,
            None => {
                self.read_value().expect_same_shape("Parameter::accumulate_grad", grad)?;
                *slot = Some(grad.clone());
            }
        }
        Ok(())
    }
}

/// Clears the gradients of every parameter in `params`.
pub fn zero_grads<T: Float>(params: &[Parameter<T>]) {
    params.iter().for_each(Parameter::zero_grad);
}
