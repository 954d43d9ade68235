//! Differentiable fully connected layer.

use incept_tensor::linear::{linear, linear_backward};
use incept_tensor::{Float, Tensor};

use crate::{Result, Tape, Var};

impl<T: Float> Tape<T> {
    /// `y = x W^T + b` with `x` of `[N, in]` and `weight` of `[out, in]`.
    ///
    /// # Errors
    /// As [`incept_tensor::linear::linear`].
    pub fn linear(&self, x: &Var<T>, weight: &Var<T>, bias: Option<&Var<T>>) -> Result<Var<T>> {
        let y = linear(x.value(), weight.value(), bias.map(Var::value))?;
        let (x_saved, w_saved) = (x.shared_value(), weight.shared_value());
        let has_bias = bias.is_some();
        let mut inputs = vec![x, weight];
        inputs.extend(bias);
        Ok(self.record(
            y,
            &inputs,
            Box::new(move |dy: &Tensor<T>| {
                let (dx, dw, db) = linear_backward(&x_saved, &w_saved, dy)?;
                let mut out = vec![Some(dx), Some(dw)];
                if has_bias {
                    out.push(Some(db));
                }
                Ok(out)
            }),
        ))
    }
}
