//! Differentiable local response normalisation.

use incept_tensor::lrn::{LrnParams, lrn, lrn_backward};
use incept_tensor::{Float, Tensor};

use crate::{Result, Tape, Var};

impl<T: Float> Tape<T> {
    /// Local response normalisation across channels; the backward pass
    /// keeps the input and the denominator base.
    ///
    /// # Errors
    /// As [`incept_tensor::lrn::lrn`].
    pub fn lrn(&self, x: &Var<T>, params: LrnParams) -> Result<Var<T>> {
        let out = lrn(x.value(), params)?;
        let (x_saved, scale) = (x.shared_value(), out.scale);
        Ok(self.record(
            out.output,
            &[x],
            Box::new(move |dy: &Tensor<T>| Ok(vec![Some(lrn_backward(&x_saved, &scale, dy, params)?)])),
        ))
    }
}
