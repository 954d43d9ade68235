//! The tape (Wengert list), variables and the reverse-mode walk.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use incept_tensor::broadcast::sum_to;
use incept_tensor::{Float, Tensor};

use crate::{AutogradError, Parameter, Result};

/// Local gradient rule of one recorded operation: given the gradient of its
/// output, returns one gradient per input, in input order (`None` for an
/// input that needs none). It owns the activations it saved, so running it
/// (which consumes it) frees them.
pub type BackwardFn<T> = Box<dyn FnOnce(&Tensor<T>) -> Result<Vec<Option<Tensor<T>>>>>;

struct Node<T: Float> {
    /// Shape of the node's value; gradients arriving with a broadcast shape
    /// are summed down to it.
    dims: Vec<usize>,
    inputs: Vec<usize>,
    backward: Option<BackwardFn<T>>,
    param: Option<Parameter<T>>,
}

static NEXT_TAPE_ID: AtomicU64 = AtomicU64::new(0);

/// A value flowing through a computation: a tensor plus, when it was
/// recorded, its position on a tape.
///
/// Cloning a `Var` is cheap (the tensor is shared).
#[derive(Clone, Debug)]
pub struct Var<T: Float = f32> {
    value: Arc<Tensor<T>>,
    node: Option<(u64, usize)>,
}

impl<T: Float> Var<T> {
    /// Wraps a value that no gradient flows into (an input image, say).
    pub fn constant(value: Tensor<T>) -> Self {
        Var { value: Arc::new(value), node: None }
    }

    /// Returns the tensor of this variable.
    pub fn value(&self) -> &Tensor<T> {
        &self.value
    }

    /// Dimensions of the value.
    pub fn dims(&self) -> &[usize] {
        self.value.dims()
    }

    /// True when the value was recorded on a tape, so a gradient can flow into it.
    pub fn requires_grad(&self) -> bool {
        self.node.is_some()
    }

    /// Returns the tensor, shared with this variable (no copy).
    pub fn shared_value(&self) -> Arc<Tensor<T>> {
        Arc::clone(&self.value)
    }
}

/// Records operations for one forward pass and differentiates them once.
///
/// A tape made by [`Tape::new`] records every operation that has a recorded
/// input; [`Tape::inference`] makes a tape that records nothing, so the very
/// same layer code runs with no saved activations and no gradient buffers.
/// [`Tape::backward`] consumes the tape: it is single-use, like one
/// training step.
pub struct Tape<T: Float = f32> {
    id: u64,
    recording: bool,
    nodes: RefCell<Vec<Node<T>>>,
}

impl<T: Float> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Tape<T> {
    /// Creates a tape that records operations for a backward pass.
    pub fn new() -> Self {
        Self::with_recording(true)
    }

    /// Creates a tape that records nothing, so operations only compute their outputs.
    pub fn inference() -> Self {
        Self::with_recording(false)
    }

    fn with_recording(recording: bool) -> Self {
        Tape { id: NEXT_TAPE_ID.fetch_add(1, Ordering::Relaxed), recording, nodes: RefCell::new(Vec::new()) }
    }

    /// True unless the tape was made by [`Tape::inference`].
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Number of recorded nodes (leaves and operations).
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// True when nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&self, node: Node<T>) -> (u64, usize) {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(node);
        (self.id, nodes.len() - 1)
    }

    /// A differentiable input whose gradient [`Gradients::get`] returns
    /// after the backward pass. On an inference tape it is a constant.
    pub fn leaf(&self, value: Tensor<T>) -> Var<T> {
        let dims = value.dims().to_vec();
        let node = self.recording.then(|| self.push(Node { dims, inputs: Vec::new(), backward: None, param: None }));
        Var { value: Arc::new(value), node }
    }

    /// Returns the current value of a parameter, recorded so that the backward pass
    /// adds its gradient to [`Parameter::grad`]. The tensor is shared, not copied.
    pub fn param(&self, param: &Parameter<T>) -> Var<T> {
        let value = param.value();
        let node = self.recording.then(|| {
            let dims = value.dims().to_vec();
            self.push(Node { dims, inputs: Vec::new(), backward: None, param: Some(param.clone()) })
        });
        Var { value, node }
    }

    /// Wraps the output of an operation (a tensor, or one already shared with
    /// `backward`). When recording and at least one
    /// input is recorded, stores `backward` and the input positions;
    /// otherwise drops `backward` (and whatever it saved) at once.
    ///
    /// # Panics
    /// If an input was recorded on another tape: mixing tapes is a bug in the
    /// calling code, not a data error.
    pub fn record(&self, value: impl Into<Arc<Tensor<T>>>, inputs: &[&Var<T>], backward: BackwardFn<T>) -> Var<T> {
        let value = value.into();
        let ids: Vec<Option<usize>> = inputs
            .iter()
            .map(|v| {
                v.node.map(|(tape, i)| {
                    assert_eq!(tape, self.id, "an input of this operation was recorded on another tape");
                    i
                })
            })
            .collect();
        if !self.recording || ids.iter().all(Option::is_none) {
            return Var { value, node: None };
        }
        // Inputs that are not recorded point at no node; usize::MAX marks them.
        let inputs = ids.into_iter().map(|i| i.unwrap_or(usize::MAX)).collect();
        let node = self.push(Node { dims: value.dims().to_vec(), inputs, backward: Some(backward), param: None });
        Var { value, node: Some(node) }
    }

    /// Differentiates the scalar `loss` with respect to every recorded leaf
    /// and parameter, walking the tape once in reverse.
    ///
    /// A value consumed by several operations receives the sum of their
    /// gradients. Parameter gradients are added to [`Parameter::grad`] (so
    /// they accumulate across calls until [`Parameter::zero_grad`]); leaf
    /// gradients are returned. A leaf or parameter that does not influence
    /// the loss gets no gradient at all (`None`), not a zero tensor. Each
    /// operation's saved activations are freed as the walk passes it.
    ///
    /// # Errors
    /// [`AutogradError::NonScalarLoss`] if `loss` has more than one element,
    /// [`AutogradError::NotRecorded`] if it was not recorded on this tape,
    /// and any error a gradient rule reports.
    pub fn backward(self, loss: &Var<T>) -> Result<Gradients<T>> {
        if loss.value.numel() != 1 {
            return Err(AutogradError::NonScalarLoss { shape: loss.dims().to_vec() });
        }
        self.backward_with(loss, Tensor::ones(loss.dims()))
    }

    /// Like [`Tape::backward`] but seeds the walk with the gradient `seed`
    /// of some scalar with respect to `output`, which may have any shape.
    ///
    /// # Errors
    /// [`AutogradError::NotRecorded`] if `output` was not recorded on this
    /// tape, a shape error if `seed` does not match it, and any error a
    /// gradient rule reports.
    pub fn backward_with(self, output: &Var<T>, seed: Tensor<T>) -> Result<Gradients<T>> {
        let root = match output.node {
            Some((tape, i)) if tape == self.id => i,
            _ => return Err(AutogradError::NotRecorded),
        };
        output.value.expect_same_shape("backward_with", &seed)?;
        let mut nodes = self.nodes.into_inner();
        nodes.truncate(root + 1);
        let mut grads: Vec<Option<Tensor<T>>> = (0..nodes.len()).map(|_| None).collect();
        grads[root] = Some(seed);
        let mut leaves = HashMap::new();
        while let Some(node) = nodes.pop() {
            let i = nodes.len();
            let Some(grad) = grads[i].take() else { continue };
            if let Some(param) = &node.param {
                param.accumulate_grad(&grad)?;
            }
            let Some(backward) = node.backward else {
                leaves.insert(i, grad);
                continue;
            };
            for (input, input_grad) in node.inputs.into_iter().zip(backward(&grad)?) {
                let (Some(mut input_grad), true) = (input_grad, input != usize::MAX) else { continue };
                // A rule returns the gradient at its output's shape; an input
                // that was broadcast receives the sum over the broadcast axes.
                // Inputs precede their consumers, so `nodes[input]` exists.
                if input_grad.dims() != nodes[input].dims.as_slice() {
                    input_grad = sum_to(&input_grad, &nodes[input].dims)?;
                }
                match &mut grads[input] {
                    Some(total) => total.add_assign(&input_grad)?,
                    slot => *slot = Some(input_grad),
                }
            }
        }
        Ok(Gradients { tape: self.id, leaves })
    }
}

/// Gradients of the leaves created with [`Tape::leaf`] (and of parameters,
/// which also receive theirs through [`Parameter::grad`]).
#[derive(Debug)]
pub struct Gradients<T: Float = f32> {
    tape: u64,
    leaves: HashMap<usize, Tensor<T>>,
}

impl<T: Float> Gradients<T> {
    /// Returns the gradient of `var`, or `None` if the loss does not depend on it
    /// (or it is not a leaf of the differentiated tape).
    pub fn get(&self, var: &Var<T>) -> Option<&Tensor<T>> {
        match var.node {
            Some((tape, i)) if tape == self.tape => self.leaves.get(&i),
            _ => None,
        }
    }
}
