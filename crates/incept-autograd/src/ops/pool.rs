//! Differentiable max and adaptive average pooling.

use incept_tensor::pool::{
    Pool2dParams, adaptive_avg_pool2d, adaptive_avg_pool2d_backward, avg_pool2d, avg_pool2d_backward, max_pool2d,
    max_pool2d_backward, max_pool2d_with_indices,
};
use incept_tensor::{Float, Tensor};

use crate::{Result, Tape, Var};

impl<T: Float> Tape<T> {
    /// 2-D max pooling. When the pass is recorded, the forward pass also
    /// stores the index of each window's winner for the backward pass; among
    /// tied maxima the first in row-major window order receives the whole
    /// gradient. Unrecorded (inference), it computes the values only.
    ///
    /// # Errors
    /// As [`incept_tensor::pool::max_pool2d`].
    pub fn max_pool2d(&self, x: &Var<T>, params: Pool2dParams) -> Result<Var<T>> {
        if !(self.is_recording() && x.requires_grad()) {
            return Ok(Var::constant(max_pool2d(x.value(), params)?));
        }
        let out = max_pool2d_with_indices(x.value(), params)?;
        let (indices, input_dims) = (out.indices, x.dims().to_vec());
        Ok(self.record(
            out.output,
            &[x],
            Box::new(move |dy: &Tensor<T>| Ok(vec![Some(max_pool2d_backward(dy, &indices, &input_dims)?)])),
        ))
    }

    /// 2-D average pooling; with `count_include_pad` the padding counts in
    /// each window's divisor.
    ///
    /// # Errors
    /// As [`incept_tensor::pool::avg_pool2d`].
    pub fn avg_pool2d(&self, x: &Var<T>, params: Pool2dParams, count_include_pad: bool) -> Result<Var<T>> {
        let y = avg_pool2d(x.value(), params, count_include_pad)?;
        let input_dims = x.dims().to_vec();
        Ok(self.record(
            y,
            &[x],
            Box::new(move |dy: &Tensor<T>| {
                Ok(vec![Some(avg_pool2d_backward(dy, &input_dims, params, count_include_pad)?)])
            }),
        ))
    }

    /// Adaptive average pooling to `out_h x out_w`.
    ///
    /// # Errors
    /// As [`incept_tensor::pool::adaptive_avg_pool2d`].
    pub fn adaptive_avg_pool2d(&self, x: &Var<T>, out_h: usize, out_w: usize) -> Result<Var<T>> {
        let y = adaptive_avg_pool2d(x.value(), out_h, out_w)?;
        let input_dims = x.dims().to_vec();
        Ok(self.record(
            y,
            &[x],
            Box::new(move |dy: &Tensor<T>| Ok(vec![Some(adaptive_avg_pool2d_backward(dy, &input_dims)?)])),
        ))
    }

    /// Global average pooling: `[N, C, H, W] -> [N, C, 1, 1]`.
    ///
    /// # Errors
    /// If `x` is not 4-D with a non-empty plane.
    pub fn global_avg_pool2d(&self, x: &Var<T>) -> Result<Var<T>> {
        self.adaptive_avg_pool2d(x, 1, 1)
    }
}
