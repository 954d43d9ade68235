//! Differentiable 2-D convolution, alone and with eval-mode batch norm folded in.

use std::sync::Arc;

use incept_tensor::batch_norm::fold_batch_norm;
use incept_tensor::conv::{Conv2dParams, conv2d, conv2d_backward, conv2d_relu};
use incept_tensor::elementwise::relu_backward;
use incept_tensor::{Float, Tensor};

use crate::{Result, Tape, Var};

/// Operands of an eval-mode batch normalisation. A tape can record the
/// affine parameters, while the running statistics are constants.
#[derive(Clone, Copy, Debug)]
pub struct EvalBatchNorm<'a, T: Float = f32> {
    /// Scale, `[C]`.
    pub gamma: &'a Var<T>,
    /// Shift, `[C]`.
    pub beta: &'a Var<T>,
    /// Running mean, `[C]`.
    pub running_mean: &'a Tensor<T>,
    /// Running variance, `[C]`.
    pub running_var: &'a Tensor<T>,
    /// Added to the variance before the square root.
    pub eps: T,
}

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

    /// Applies a convolution, then eval-mode batch normalisation and, when
    /// `relu` is set, a ReLU, as one convolution whose weight and bias have
    /// the batch norm folded in
    /// ([`incept_tensor::batch_norm::fold_batch_norm`]). The output is
    /// written once, where the three operations write it three times. The
    /// fold is computed on every call, so it always uses the current
    /// weights and statistics.
    ///
    /// The result equals `relu(batch_norm2d_eval(conv2d(x, weight, bias), ...))`
    /// up to float rounding, except where the fold overflows (see
    /// [`incept_tensor::batch_norm::fold_batch_norm`]).
    ///
    /// The backward pass gives `x`, `weight`, `bias`, `gamma` and `beta`
    /// the gradients the three operations would give them; the running
    /// statistics are constants.
    ///
    /// # Errors
    /// As [`incept_tensor::conv::conv2d`] and
    /// [`incept_tensor::batch_norm::fold_batch_norm`]: invalid shapes, a
    /// non-positive `eps` or corrupt running statistics.
    pub fn conv2d_batch_norm_eval(
        &self,
        x: &Var<T>,
        weight: &Var<T>,
        bias: Option<&Var<T>>,
        bn: EvalBatchNorm<'_, T>,
        params: Conv2dParams,
        relu: bool,
    ) -> Result<Var<T>> {
        let folded = fold_batch_norm(
            weight.value(),
            bias.map(Var::value),
            bn.gamma.value(),
            bn.beta.value(),
            bn.running_mean,
            bn.running_var,
            bn.eps,
        )?;
        let convolve = if relu { conv2d_relu } else { conv2d };
        let y = Arc::new(convolve(x.value(), &folded.weight, Some(&folded.bias), params)?);

        let mut inputs = vec![x, weight];
        inputs.extend(bias);
        inputs.extend([bn.gamma, bn.beta]);
        let needs_grad = self.is_recording() && inputs.iter().any(|v| v.requires_grad());
        let y_saved = (needs_grad && relu).then(|| Arc::clone(&y));
        let rule = FoldedBackward {
            x: x.shared_value(),
            weight: weight.shared_value(),
            folded_weight: folded.weight,
            bias: bias.map(Var::shared_value),
            gamma: bn.gamma.shared_value(),
            running_mean: bn.running_mean.data().to_vec(),
            running_var: bn.running_var.data().to_vec(),
            eps: bn.eps,
            params,
            input_grad: x.requires_grad(),
        };
        Ok(self.record(
            y,
            &inputs,
            Box::new(move |dy: &Tensor<T>| match &y_saved {
                Some(y) => rule.gradients(&relu_backward(y, dy)?),
                None => rule.gradients(dy),
            }),
        ))
    }
}

/// Saved operands of the backward pass of [`Tape::conv2d_batch_norm_eval`].
struct FoldedBackward<T: Float> {
    x: Arc<Tensor<T>>,
    weight: Arc<Tensor<T>>,
    folded_weight: Tensor<T>,
    bias: Option<Arc<Tensor<T>>>,
    gamma: Arc<Tensor<T>>,
    running_mean: Vec<T>,
    running_var: Vec<T>,
    eps: T,
    params: Conv2dParams,
    input_grad: bool,
}

impl<T: Float> FoldedBackward<T> {
    /// Returns the gradients of `[x, weight, bias (if any), gamma, beta]`
    /// given `dz`, the gradient of the folded convolution's output before
    /// the ReLU.
    ///
    /// With `r = 1 / sqrt(var + eps)` and `s = gamma * r` per output
    /// channel, the folded convolution has weight `W' = W * s` and bias
    /// `b' = (b - mean) * s + beta`. From its gradients `dW'` and `db'`:
    /// `dW = dW' * s`, `db = db' * s`, `dbeta = db'` and
    /// `dgamma = r * (sum(dW' * W) + db' * (b - mean))`, the sum running
    /// over the channel's row of weights. The arithmetic runs in f64.
    fn gradients(&self, dz: &Tensor<T>) -> Result<Vec<Option<Tensor<T>>>> {
        let grads = conv2d_backward(&self.x, &self.folded_weight, dz, self.params, self.input_grad)?;
        let (d_folded_w, d_folded_b) = (grads.weight, grads.bias);
        let c_out = self.running_mean.len();
        let row_len = self.weight.numel().checked_div(c_out).unwrap_or(0);
        let mut d_weight = Tensor::zeros(self.weight.dims());
        let mut d_bias = Vec::with_capacity(c_out);
        let mut d_gamma = Vec::with_capacity(c_out);
        for o in 0..c_out {
            let inv_std = 1.0 / (self.running_var[o].as_f64() + self.eps.as_f64()).sqrt();
            let scale = self.gamma.data()[o].as_f64() * inv_std;
            let row = o * row_len..(o + 1) * row_len;
            let mut dot = 0.0;
            let rows = d_folded_w.data()[row.clone()].iter().zip(&self.weight.data()[row.clone()]);
            for (d_w, (&d_w_folded, &w)) in d_weight.data_mut()[row].iter_mut().zip(rows) {
                *d_w = T::from_f64(d_w_folded.as_f64() * scale);
                dot += d_w_folded.as_f64() * w.as_f64();
            }
            let d_b = d_folded_b.data()[o].as_f64();
            let b = self.bias.as_ref().map_or(0.0, |b| b.data()[o].as_f64());
            d_bias.push(T::from_f64(d_b * scale));
            d_gamma.push(T::from_f64(inv_std * (dot + d_b * (b - self.running_mean[o].as_f64()))));
        }
        let mut out = vec![grads.input, Some(d_weight)];
        if self.bias.is_some() {
            out.push(Some(Tensor::from_vec(d_bias, [c_out])?));
        }
        out.push(Some(Tensor::from_vec(d_gamma, [c_out])?));
        out.push(Some(d_folded_b));
        Ok(out)
    }
}
