//! Differentiable 2-D convolution.

use incept_tensor::conv::{Conv2dParams, conv2d, conv2d_backward};
use incept_tensor::{Float, Tensor};

use crate::{Result, Tape, Var};

impl<T: Float> Tape<T> {
    /// 2-D convolution of `x` (`[N, C_in, H, W]`) with `weight`
    /// (`[C_out, C_in, k_h, k_w]`) and an optional `bias` (`[C_out]`).
    ///
    /// The backward pass computes the input gradient only when `x` is
    /// recorded, so the first layer of a network skips its col2im.
    ///
    /// # Errors
    /// As [`incept_tensor::conv::conv2d`].
    pub fn conv2d(&self, x: &Var<T>, weight: &Var<T>, bias: Option<&Var<T>>, params: Conv2dParams) -> Result<Var<T>> {
        let y = conv2d(x.value(), weight.value(), bias.map(Var::value), params)?;
        let (x_saved, w_saved) = (x.shared_value(), weight.shared_value());
        let input_grad = x.requires_grad();
        let has_bias = bias.is_some();
        let mut inputs = vec![x, weight];
        inputs.extend(bias);
        Ok(self.record(
            y,
            &inputs,
            Box::new(move |dy: &Tensor<T>| {
                let grads = conv2d_backward(&x_saved, &w_saved, dy, params, input_grad)?;
                let mut out = vec![grads.input, Some(grads.weight)];
                if has_bias {
                    out.push(Some(grads.bias));
                }
                Ok(out)
            }),
        ))
    }
}
