//! Differentiable reductions along an axis and matrix products.

use incept_tensor::broadcast::expand;
use incept_tensor::reduce::{matmul, mean_axis, sum_axis, transpose_last};
use incept_tensor::{Float, Tensor};

use crate::{Result, Tape, Var};

/// Spreads the gradient of a reduction along `axis` back over the input's
/// shape, multiplied by `factor`.
fn spread<T: Float>(dy: &Tensor<T>, input_dims: &[usize], axis: usize, factor: T) -> Result<Tensor<T>> {
    let mut keep_dims = input_dims.to_vec();
    keep_dims[axis] = 1;
    let mut grad = expand(&dy.clone().reshape(keep_dims)?, input_dims)?;
    grad.data_mut().iter_mut().for_each(|v| *v = *v * factor);
    Ok(grad)
}

impl<T: Float> Tape<T> {
    /// Sum along `axis`.
    ///
    /// # Errors
    /// As [`incept_tensor::reduce::sum_axis`].
    pub fn sum_axis(&self, x: &Var<T>, axis: usize, keepdim: bool) -> Result<Var<T>> {
        let y = sum_axis(x.value(), axis, keepdim)?;
        let input_dims = x.dims().to_vec();
        Ok(self.record(
            y,
            &[x],
            Box::new(move |dy: &Tensor<T>| Ok(vec![Some(spread(dy, &input_dims, axis, T::one())?)])),
        ))
    }

    /// Mean along `axis`.
    ///
    /// # Errors
    /// As [`incept_tensor::reduce::mean_axis`].
    pub fn mean_axis(&self, x: &Var<T>, axis: usize, keepdim: bool) -> Result<Var<T>> {
        let y = mean_axis(x.value(), axis, keepdim)?;
        let input_dims = x.dims().to_vec();
        let factor = T::one() / T::from_usize(input_dims[axis]);
        Ok(self.record(y, &[x], Box::new(move |dy: &Tensor<T>| Ok(vec![Some(spread(dy, &input_dims, axis, factor)?)]))))
    }

    /// Matrix product, as [`incept_tensor::reduce::matmul`]; with a shared
    /// `[k, n]` right-hand side, its gradient sums over the batch.
    ///
    /// # Errors
    /// As [`incept_tensor::reduce::matmul`].
    pub fn matmul(&self, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        let y = matmul(a.value(), b.value())?;
        let (a_saved, b_saved) = (a.shared_value(), b.shared_value());
        Ok(self.record(
            y,
            &[a, b],
            Box::new(move |dy: &Tensor<T>| {
                // dA = dY B^T; dB = A^T dY (per batch, summed by the tape when B is shared).
                let da = matmul(dy, &transpose_last(&b_saved)?)?;
                let db = matmul(&transpose_last(&a_saved)?, dy)?;
                Ok(vec![Some(da), Some(db)])
            }),
        ))
    }
}
