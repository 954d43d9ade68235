//! Trainable parameters.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use incept_tensor::{Float, Tensor};

use crate::Result;

struct ParamInner<T: Float> {
    name: String,
    value: RefCell<Rc<Tensor<T>>>,
    grad: RefCell<Option<Tensor<T>>>,
}

/// A long-lived, named, trainable tensor with an accumulated gradient.
///
/// Cloning a `Parameter` clones a handle: both handles see the same value
/// and gradient. Names follow PyTorch's `state_dict` keys
/// (`"conv1.conv.weight"`).
#[derive(Clone)]
pub struct Parameter<T: Float = f32>(Rc<ParamInner<T>>);

impl<T: Float> fmt::Debug for Parameter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Parameter({:?}, {:?})", self.0.name, self.value().dims())
    }
}

impl<T: Float> Parameter<T> {
    /// Creates a parameter with no gradient.
    pub fn new(name: impl Into<String>, value: Tensor<T>) -> Self {
        Parameter(Rc::new(ParamInner {
            name: name.into(),
            value: RefCell::new(Rc::new(value)),
            grad: RefCell::new(None),
        }))
    }

    /// Name, as in a PyTorch `state_dict`.
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The current value, shared (no copy).
    pub fn value(&self) -> Rc<Tensor<T>> {
        Rc::clone(&self.0.value.borrow())
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.0.value.borrow().numel()
    }

    /// Replaces the value.
    ///
    /// # Errors
    /// A shape error if `value` does not have the current shape.
    pub fn set_value(&self, value: Tensor<T>) -> Result<()> {
        self.0.value.borrow().expect_same_shape("Parameter::set_value", &value)?;
        *self.0.value.borrow_mut() = Rc::new(value);
        Ok(())
    }

    /// Changes the value in place through `f`. The tensor is copied first
    /// only if a tape still shares it.
    pub fn update(&self, f: impl FnOnce(&mut Tensor<T>)) {
        let mut value = self.0.value.borrow_mut();
        f(Rc::make_mut(&mut value));
    }

    /// The accumulated gradient, or `None` if no backward pass reached this
    /// parameter since the last [`Parameter::zero_grad`].
    pub fn grad(&self) -> Option<Tensor<T>> {
        self.0.grad.borrow().clone()
    }

    /// Runs `f` on the accumulated gradient without copying it.
    pub fn with_grad<R>(&self, f: impl FnOnce(Option<&Tensor<T>>) -> R) -> R {
        f(self.0.grad.borrow().as_ref())
    }

    /// Clears the accumulated gradient.
    pub fn zero_grad(&self) {
        *self.0.grad.borrow_mut() = None;
    }

    pub(crate) fn accumulate_grad(&self, grad: &Tensor<T>) -> Result<()> {
        let mut slot = self.0.grad.borrow_mut();
        match slot.as_mut() {
            Some(total) => total.add_assign(grad)?,
            None => {
                self.0.value.borrow().expect_same_shape("Parameter::accumulate_grad", grad)?;
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
