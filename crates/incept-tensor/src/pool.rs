//! Max pooling and adaptive (including global) average pooling.

use rayon::prelude::*;

use crate::{Float, Result, Tensor, TensorError};

/// Geometry of a 2-D pooling window: size, stride and padding per axis
/// (height, width), and the rounding of the output size.
///
/// PyTorch equivalent: the `kernel_size`, `stride`, `padding` and
/// `ceil_mode` arguments of `torch.nn.MaxPool2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2dParams {
    /// Window size.
    pub kernel: (usize, usize),
    /// Step between windows.
    pub stride: (usize, usize),
    /// Implicit padding on each side; it never wins a max.
    pub padding: (usize, usize),
    /// Round the output size up instead of down.
    pub ceil_mode: bool,
}

impl Pool2dParams {
    /// A square window with the same stride and padding on both axes.
    pub fn new(kernel: usize, stride: usize, padding: usize, ceil_mode: bool) -> Self {
        Pool2dParams { kernel: (kernel, kernel), stride: (stride, stride), padding: (padding, padding), ceil_mode }
    }

    /// Output height for an input of height `h_in`, or `None` if no window fits.
    pub fn h_out(&self, h_in: usize) -> Option<usize> {
        pool_out_size(h_in, self.kernel.0, self.stride.0, self.padding.0, self.ceil_mode)
    }

    /// Output width for an input of width `w_in`, or `None` if no window fits.
    pub fn w_out(&self, w_in: usize) -> Option<usize> {
        pool_out_size(w_in, self.kernel.1, self.stride.1, self.padding.1, self.ceil_mode)
    }

    fn validate(&self, op: &'static str, h_in: usize, w_in: usize) -> Result<(usize, usize)> {
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        if k.0 == 0 || k.1 == 0 || s.0 == 0 || s.1 == 0 {
            return Err(TensorError::invalid(op, format!("kernel {k:?} and stride {s:?} must be at least 1")));
        }
        // PyTorch rejects the same case: a window could lie entirely in the
        // padding and would have no input element to take the max of.
        if 2 * p.0 > k.0 || 2 * p.1 > k.1 {
            return Err(TensorError::invalid(op, format!("padding {p:?} must be at most half the kernel {k:?}")));
        }
        match (self.h_out(h_in), self.w_out(w_in)) {
            (Some(h), Some(w)) if h > 0 && w > 0 => Ok((h, w)),
            _ => Err(TensorError::invalid(
                op,
                format!("window {k:?} with padding {p:?} does not fit the input {h_in}x{w_in}"),
            )),
        }
    }
}

/// PyTorch's pooling output size: `(size + 2p - k) / s + 1` rounded down,
/// or up with `ceil_mode`, where a last window that would start in the right
/// padding is dropped.
fn pool_out_size(size: usize, kernel: usize, stride: usize, padding: usize, ceil_mode: bool) -> Option<usize> {
    let padded = size + 2 * padding;
    if padded < kernel || stride == 0 {
        return None;
    }
    let span = padded - kernel;
    let mut out = if ceil_mode { span.div_ceil(stride) } else { span / stride } + 1;
    if ceil_mode && (out - 1) * stride >= size + padding {
        out -= 1;
    }
    Some(out)
}

fn expect_nchw<T: Float>(op: &'static str, x: &Tensor<T>) -> Result<[usize; 4]> {
    let &[n, c, h, w] = x.expect_rank(op, 4)? else { unreachable!() };
    Ok([n, c, h, w])
}

/// The result of [`max_pool2d`]: the pooled tensor and, for each output
/// element, the index within its input plane (`y * W + x`) of the maximum.
#[derive(Clone, Debug)]
pub struct MaxPoolOutput<T: Float> {
    /// Pooled values, `[N, C, H_out, W_out]`.
    pub output: Tensor<T>,
    /// Index of each maximum within its `H x W` input plane, as PyTorch's
    /// `return_indices=True` reports it.
    pub indices: Vec<u32>,
}

/// 2-D max pooling.
///
/// Among tied maxima the first in row-major window order wins, and only it
/// receives the gradient in [`max_pool2d_backward`]. A NaN in a window wins,
/// as in PyTorch.
///
/// # Shapes
/// `x` is `[N, C, H, W]`; the output is `[N, C, H_out, W_out]` as given by
/// [`Pool2dParams::h_out`] and [`Pool2dParams::w_out`].
///
/// # Errors
/// [`TensorError`] if `x` is not 4-D, the window or stride is zero, the
/// padding exceeds half the window, or no window fits.
pub fn max_pool2d<T: Float>(x: &Tensor<T>, params: Pool2dParams) -> Result<MaxPoolOutput<T>> {
    let [n, c, h_in, w_in] = expect_nchw("max_pool2d", x)?;
    let (h_out, w_out) = params.validate("max_pool2d", h_in, w_in)?;
    if u32::try_from(h_in * w_in).is_err() {
        return Err(TensorError::invalid(
            "max_pool2d",
            format!("input plane {h_in}x{w_in} has more than 2^32 elements"),
        ));
    }
    let (out_plane, in_plane) = (h_out * w_out, h_in * w_in);
    let mut output = Tensor::zeros([n, c, h_out, w_out]);
    let mut indices = vec![0u32; n * c * out_plane];
    if out_plane == 0 || in_plane == 0 {
        return Ok(MaxPoolOutput { output, indices });
    }
    let (k, s, p) = (params.kernel, params.stride, params.padding);
    output
        .data_mut()
        .par_chunks_mut(out_plane)
        .zip(indices.par_chunks_mut(out_plane))
        .zip(x.data().par_chunks(in_plane))
        .for_each(|((y, idx), plane)| {
            for oy in 0..h_out {
                // The window is clipped to the input: padding never wins.
                let y0 = (oy * s.0).saturating_sub(p.0);
                let y1 = (oy * s.0 + k.0 - p.0).min(h_in);
                for ox in 0..w_out {
                    let x0 = (ox * s.1).saturating_sub(p.1);
                    let x1 = (ox * s.1 + k.1 - p.1).min(w_in);
                    let mut best = y0 * w_in + x0;
                    let mut best_val = plane[best];
                    for iy in y0..y1 {
                        for ix in x0..x1 {
                            let v = plane[iy * w_in + ix];
                            if v > best_val || (v.is_nan() && !best_val.is_nan()) {
                                best_val = v;
                                best = iy * w_in + ix;
                            }
                        }
                    }
                    y[oy * w_out + ox] = best_val;
                    idx[oy * w_out + ox] = best as u32;
                }
            }
        });
    Ok(MaxPoolOutput { output, indices })
}

/// Gradient of [`max_pool2d`]: each output gradient goes to the input
/// element that won its window; overlapping windows accumulate.
///
/// # Errors
/// [`TensorError`] if `input_dims` is not 4-D, `dy` does not have the same
/// batch and channels, or `indices` does not have one entry per element of `dy`
/// or points outside the input plane.
pub fn max_pool2d_backward<T: Float>(dy: &Tensor<T>, indices: &[u32], input_dims: &[usize]) -> Result<Tensor<T>> {
    let op = "max_pool2d_backward";
    let &[n, c, h_in, w_in] = input_dims else {
        return Err(TensorError::Rank { op, expected: 4, shape: input_dims.to_vec() });
    };
    let [dn, dc, h_out, w_out] = expect_nchw(op, dy)?;
    if (dn, dc) != (n, c) || indices.len() != dy.numel() {
        return Err(TensorError::mismatch(
            op,
            &[input_dims, dy.dims()],
            format!(
                "the output gradient must be [{n}, {c}, H_out, W_out] with one index per element ({} given)",
                indices.len()
            ),
        ));
    }
    let in_plane = h_in * w_in;
    if let Some(&bad) = indices.iter().find(|&&i| i as usize >= in_plane) {
        return Err(TensorError::invalid(op, format!("index {bad} is outside the {h_in}x{w_in} input plane")));
    }
    let mut dx = Tensor::zeros(input_dims);
    let out_plane = h_out * w_out;
    if in_plane == 0 || out_plane == 0 {
        return Ok(dx);
    }
    dx.data_mut()
        .par_chunks_mut(in_plane)
        .zip(dy.data().par_chunks(out_plane))
        .zip(indices.par_chunks(out_plane))
        .for_each(|((dx, dy), idx)| {
            for (&g, &i) in dy.iter().zip(idx) {
                dx[i as usize] = dx[i as usize] + g;
            }
        });
    Ok(dx)
}

/// The input rows (or columns) that adaptive pooling averages for output
/// index `i`: `[floor(i * size / out), ceil((i + 1) * size / out))`, as
/// PyTorch's `adaptive_avg_pool2d` defines them.
fn adaptive_range(i: usize, size: usize, out: usize) -> (usize, usize) {
    (i * size / out, ((i + 1) * size).div_ceil(out))
}

/// Adaptive average pooling to an `out_h x out_w` output; with `(1, 1)` it
/// is global average pooling.
///
/// PyTorch equivalent: `torch.nn.functional.adaptive_avg_pool2d(x, (out_h, out_w))`.
///
/// # Shapes
/// `x` is `[N, C, H, W]`; the output is `[N, C, out_h, out_w]`.
///
/// # Errors
/// [`TensorError`] if `x` is not 4-D, or an output size is zero or exceeds the input size.
pub fn adaptive_avg_pool2d<T: Float>(x: &Tensor<T>, out_h: usize, out_w: usize) -> Result<Tensor<T>> {
    let op = "adaptive_avg_pool2d";
    let [n, c, h_in, w_in] = expect_nchw(op, x)?;
    check_adaptive(op, h_in, w_in, out_h, out_w)?;
    let mut y = Tensor::zeros([n, c, out_h, out_w]);
    if n * c == 0 {
        return Ok(y);
    }
    y.data_mut().par_chunks_mut(out_h * out_w).zip(x.data().par_chunks(h_in * w_in)).for_each(|(y, plane)| {
        for oy in 0..out_h {
            let (y0, y1) = adaptive_range(oy, h_in, out_h);
            for ox in 0..out_w {
                let (x0, x1) = adaptive_range(ox, w_in, out_w);
                let mut sum = T::zero();
                for row in plane[y0 * w_in..y1 * w_in].chunks_exact(w_in) {
                    sum = sum + row[x0..x1].iter().copied().sum::<T>();
                }
                y[oy * out_w + ox] = sum / T::from_usize((y1 - y0) * (x1 - x0));
            }
        }
    });
    Ok(y)
}

fn check_adaptive(op: &'static str, h_in: usize, w_in: usize, out_h: usize, out_w: usize) -> Result<()> {
    if out_h == 0 || out_w == 0 || out_h > h_in || out_w > w_in {
        return Err(TensorError::invalid(
            op,
            format!("output size {out_h}x{out_w} must be at least 1x1 and at most the input size {h_in}x{w_in}"),
        ));
    }
    Ok(())
}

/// Gradient of [`adaptive_avg_pool2d`]: each output gradient is spread
/// evenly over its window.
///
/// # Errors
/// [`TensorError`] if `input_dims` is not 4-D or `dy` is not
/// `[N, C, out_h, out_w]` for valid output sizes.
pub fn adaptive_avg_pool2d_backward<T: Float>(dy: &Tensor<T>, input_dims: &[usize]) -> Result<Tensor<T>> {
    let op = "adaptive_avg_pool2d_backward";
    let &[n, c, h_in, w_in] = input_dims else {
        return Err(TensorError::Rank { op, expected: 4, shape: input_dims.to_vec() });
    };
    let [dn, dc, out_h, out_w] = expect_nchw(op, dy)?;
    if (dn, dc) != (n, c) {
        return Err(TensorError::mismatch(op, &[input_dims, dy.dims()], "batch and channels must match"));
    }
    check_adaptive(op, h_in, w_in, out_h, out_w)?;
    let mut dx = Tensor::zeros(input_dims);
    if n * c == 0 {
        return Ok(dx);
    }
    dx.data_mut().par_chunks_mut(h_in * w_in).zip(dy.data().par_chunks(out_h * out_w)).for_each(|(dx, dy)| {
        for oy in 0..out_h {
            let (y0, y1) = adaptive_range(oy, h_in, out_h);
            for ox in 0..out_w {
                let (x0, x1) = adaptive_range(ox, w_in, out_w);
                let share = dy[oy * out_w + ox] / T::from_usize((y1 - y0) * (x1 - x0));
                for row in dx[y0 * w_in..y1 * w_in].chunks_exact_mut(w_in) {
                    row[x0..x1].iter_mut().for_each(|v| *v = *v + share);
                }
            }
        }
    });
    Ok(dx)
}
