//! Differentiable log-softmax and cross-entropy.

use std::sync::Arc;

use incept_tensor::softmax::{
    cross_entropy_smoothed, cross_entropy_smoothed_backward, log_softmax, log_softmax_axis, log_softmax_axis_backward,
    log_softmax_backward, softmax, softmax_backward,
};
use incept_tensor::{Float, Tensor};

use crate::{Result, Tape, Var};

impl<T: Float> Tape<T> {
    /// Log-softmax over the classes of `[N, C]` logits.
    ///
    /// # Errors
    /// As [`incept_tensor::softmax::log_softmax`].
    pub fn log_softmax(&self, x: &Var<T>) -> Result<Var<T>> {
        let y = Arc::new(log_softmax(x.value())?);
        let y_saved = Arc::clone(&y);
        Ok(self.record(y, &[x], Box::new(move |dy: &Tensor<T>| Ok(vec![Some(log_softmax_backward(&y_saved, dy)?)]))))
    }

    /// Log-softmax along `axis`; the backward pass shares the output.
    ///
    /// # Errors
    /// As [`incept_tensor::softmax::log_softmax_axis`].
    pub fn log_softmax_axis(&self, x: &Var<T>, axis: usize) -> Result<Var<T>> {
        let y = Arc::new(log_softmax_axis(x.value(), axis)?);
        let y_saved = Arc::clone(&y);
        Ok(self.record(
            y,
            &[x],
            Box::new(move |dy: &Tensor<T>| Ok(vec![Some(log_softmax_axis_backward(&y_saved, dy, axis)?)])),
        ))
    }

    /// Softmax along `axis`; the backward pass shares the output.
    ///
    /// # Errors
    /// As [`incept_tensor::softmax::softmax`].
    pub fn softmax(&self, x: &Var<T>, axis: usize) -> Result<Var<T>> {
        let y = Arc::new(softmax(x.value(), axis)?);
        let y_saved = Arc::clone(&y);
        Ok(self.record(y, &[x], Box::new(move |dy: &Tensor<T>| Ok(vec![Some(softmax_backward(&y_saved, dy, axis)?)]))))
    }

    /// Mean cross-entropy of `[N, C]` logits against class indices: a scalar.
    ///
    /// PyTorch equivalent: `torch.nn.functional.cross_entropy(logits, targets)`.
    ///
    /// # Errors
    /// As [`incept_tensor::softmax::cross_entropy`]: a target outside `0..C`
    /// or a target count other than `N`.
    pub fn cross_entropy(&self, logits: &Var<T>, targets: &[usize]) -> Result<Var<T>> {
        self.cross_entropy_smoothed(logits, targets, 0.0)
    }

    /// Mean cross-entropy against targets smoothed towards uniform by
    /// `smoothing`, as [`incept_tensor::softmax::cross_entropy_smoothed`].
    ///
    /// # Errors
    /// As [`incept_tensor::softmax::cross_entropy_smoothed`].
    pub fn cross_entropy_smoothed(&self, logits: &Var<T>, targets: &[usize], smoothing: f64) -> Result<Var<T>> {
        let (loss, probs) = cross_entropy_smoothed(logits.value(), targets, smoothing)?;
        let targets = targets.to_vec();
        Ok(self.record(
            Tensor::scalar(loss),
            &[logits],
            Box::new(move |dloss: &Tensor<T>| {
                Ok(vec![Some(cross_entropy_smoothed_backward(&probs, &targets, smoothing, dloss.item()?)?)])
            }),
        ))
    }
}
