//! Differentiable ReLU and dropout.

use std::sync::Arc;

use incept_tensor::elementwise::{dropout_mask, mul, relu, relu_backward};
use incept_tensor::{Float, Tensor};

use crate::{AutogradError, Result, Tape, Var};

impl<T: Float> Tape<T> {
    /// `max(x, 0)`; the backward pass shares the output instead of saving the input.
    pub fn relu(&self, x: &Var<T>) -> Var<T> {
        let y = Arc::new(relu(x.value()));
        let y_saved = (self.is_recording() && x.requires_grad()).then(|| Arc::clone(&y));
        self.record(
            y,
            &[x],
            Box::new(move |dy: &Tensor<T>| {
                let y = y_saved.expect("relu output is saved whenever the operation is recorded");
                Ok(vec![Some(relu_backward(&y, dy)?)])
            }),
        )
    }

    /// Inverted dropout: zeroes each element with probability `p` and scales
    /// the rest by `1 / (1 - p)`; the mask comes from `seed`. Use it only in
    /// training: in eval mode a network skips dropout altogether.
    ///
    /// PyTorch equivalent: `torch.nn.functional.dropout(x, p, training=True)`.
    ///
    /// # Errors
    /// [`AutogradError::InvalidArgument`] if `p` is not in `[0, 1)`.
    pub fn dropout(&self, x: &Var<T>, p: f64, seed: u64) -> Result<Var<T>> {
        if p == 0.0 {
            return Ok(x.clone());
        }
        let mask = dropout_mask::<T>(x.dims(), p, seed)
            .map_err(|e| AutogradError::InvalidArgument { op: "dropout", reason: e.to_string() })?;
        let y = mul(x.value(), &mask)?;
        Ok(self.record(y, &[x], Box::new(move |dy: &Tensor<T>| Ok(vec![Some(mul(dy, &mask)?)]))))
    }
}
