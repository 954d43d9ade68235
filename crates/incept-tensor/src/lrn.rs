//! Local response normalisation across channels.
//!
//! Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep
//! Convolutional Neural Networks", NIPS 2012, section 3.3, with `alpha`
//! divided by the window size as Caffe and PyTorch do:
//!
//! ```text
//! D_c = k + alpha / size * sum over c' in W(c) of x_c'^2
//! y_c = x_c * D_c^(-beta)
//! ```
//!
//! where the window `W(c)` contains the channels `c - size / 2 ..= c + (size - 1) / 2`
//! that exist (PyTorch's `LocalResponseNorm` pads the missing ones with
//! zeros, which is the same sum).

use rayon::prelude::*;

use crate::{Float, Result, Tensor, TensorError};

/// Parameters of [`lrn`].
///
/// PyTorch equivalent: `torch.nn.LocalResponseNorm(size, alpha, beta, k)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrnParams {
    /// Number of neighbouring channels in the window, the channel itself included.
    pub size: usize,
    /// Scale of the squared sum, divided by `size`.
    pub alpha: f64,
    /// Exponent.
    pub beta: f64,
    /// Additive constant.
    pub k: f64,
}

impl LrnParams {
    /// GoogLeNet's values: size 5, alpha 1e-4, beta 0.75, k 1.
    pub const GOOGLENET: LrnParams = LrnParams { size: 5, alpha: 1e-4, beta: 0.75, k: 1.0 };

    fn validate(&self, op: &'static str) -> Result<()> {
        let finite = self.alpha.is_finite() && self.beta.is_finite() && self.k.is_finite();
        if self.size == 0 || !finite || self.alpha < 0.0 || self.k <= 0.0 {
            return Err(TensorError::invalid(
                op,
                format!(
                    "size = {} must be at least 1, alpha = {} non-negative, beta = {} finite and k = {} positive",
                    self.size, self.alpha, self.beta, self.k
                ),
            ));
        }
        Ok(())
    }

    /// Returns the channels `[first, last)` in the window of channel `c` among `channels`.
    fn window(&self, c: usize, channels: usize) -> (usize, usize) {
        (c.saturating_sub(self.size / 2), (c + (self.size - 1) / 2 + 1).min(channels))
    }
}

/// Output of [`lrn`]: the normalised tensor and the denominator base `D`,
/// which the backward pass needs.
#[derive(Clone, Debug)]
pub struct LrnOutput<T: Float> {
    /// Normalised values, the shape of the input.
    pub output: Tensor<T>,
    /// `D = k + alpha / size * (windowed sum of squares)`, the shape of the input.
    pub scale: Tensor<T>,
}

fn expect_nchw<T: Float>(op: &'static str, x: &Tensor<T>) -> Result<[usize; 4]> {
    let &[n, c, h, w] = x.expect_rank(op, 4)? else { unreachable!() };
    Ok([n, c, h, w])
}

/// Local response normalisation across the channels of an NCHW tensor.
///
/// # Errors
/// [`TensorError`] if `x` is not 4-D, `size` is zero, `alpha` is negative,
/// `k` is not positive or a parameter is not finite.
pub fn lrn<T: Float>(x: &Tensor<T>, params: LrnParams) -> Result<LrnOutput<T>> {
    let op = "lrn";
    let [_, c, h, w] = expect_nchw(op, x)?;
    params.validate(op)?;
    let plane = h * w;
    let mut output = Tensor::zeros(x.dims());
    let mut scale = Tensor::zeros(x.dims());
    if x.numel() == 0 {
        return Ok(LrnOutput { output, scale });
    }
    let (k, alpha, beta) =
        (T::from_f64(params.k), T::from_f64(params.alpha / params.size as f64), T::from_f64(params.beta));
    let image = c * plane;
    output
        .data_mut()
        .par_chunks_mut(image)
        .zip(scale.data_mut().par_chunks_mut(image))
        .zip(x.data().par_chunks(image))
        .for_each(|((y, d), x)| {
            for ch in 0..c {
                let (first, last) = params.window(ch, c);
                let d_plane = &mut d[ch * plane..(ch + 1) * plane];
                d_plane.fill(T::zero());
                for other in first..last {
                    for (acc, &v) in d_plane.iter_mut().zip(&x[other * plane..(other + 1) * plane]) {
                        *acc = *acc + v * v;
                    }
                }
                let y_plane = &mut y[ch * plane..(ch + 1) * plane];
                for ((out, base), &v) in
                    y_plane.iter_mut().zip(d_plane.iter_mut()).zip(&x[ch * plane..(ch + 1) * plane])
                {
                    *base = k + alpha * *base;
                    *out = v * base.powf(-beta);
                }
            }
        });
    Ok(LrnOutput { output, scale })
}

/// Gradient of [`lrn`] given its input `x`, its `scale` output and the
/// upstream gradient `dy`:
///
/// ```text
/// dx_j = dy_j * D_j^(-beta) - 2 beta alpha / size * x_j * sum over c with j in W(c) of dy_c * x_c * D_c^(-beta - 1)
/// ```
///
/// # Errors
/// [`TensorError`] if the three tensors do not share one 4-D shape or the
/// parameters are invalid.
pub fn lrn_backward<T: Float>(
    x: &Tensor<T>,
    scale: &Tensor<T>,
    dy: &Tensor<T>,
    params: LrnParams,
) -> Result<Tensor<T>> {
    let op = "lrn_backward";
    let [_, c, h, w] = expect_nchw(op, x)?;
    params.validate(op)?;
    x.expect_same_shape(op, scale)?;
    x.expect_same_shape(op, dy)?;
    let plane = h * w;
    let mut dx = Tensor::zeros(x.dims());
    if x.numel() == 0 {
        return Ok(dx);
    }
    let beta = T::from_f64(params.beta);
    let factor = T::from_f64(2.0 * params.beta * params.alpha / params.size as f64);
    let image = c * plane;
    dx.data_mut()
        .par_chunks_mut(image)
        .zip(x.data().par_chunks(image).zip(scale.data().par_chunks(image)))
        .zip(dy.data().par_chunks(image))
        .for_each_init(Vec::new, |ratio, ((dx, (x, d)), dy)| {
            // ratio_c = dy_c * x_c * D_c^(-beta - 1), per pixel.
            ratio.clear();
            ratio.extend(dy.iter().zip(x).zip(d).map(|((&g, &v), &base)| g * v * base.powf(-beta - T::one())));
            for ch in 0..c {
                // Channel j = ch receives from every c whose window contains j:
                // c in [j - (size - 1) / 2, j + size / 2].
                let first = ch.saturating_sub((params.size - 1) / 2);
                let last = (ch + params.size / 2 + 1).min(c);
                let range = ch * plane..(ch + 1) * plane;
                let dx_plane = &mut dx[range.clone()];
                for ((out, &g), &base) in dx_plane.iter_mut().zip(&dy[range.clone()]).zip(&d[range.clone()]) {
                    *out = g * base.powf(-beta);
                }
                for other in first..last {
                    let ratio_plane = &ratio[other * plane..(other + 1) * plane];
                    for ((out, &v), &r) in dx_plane.iter_mut().zip(&x[range.clone()]).zip(ratio_plane) {
                        *out = *out - factor * v * r;
                    }
                }
            }
        });
    Ok(dx)
}
