//! Max pooling, average pooling and adaptive (including global) average pooling.

use std::ops::Range;

use rayon::prelude::*;

use self::stride1::{Stride1Scratch, max_plane_stride1, max_plane_stride1_with_indices};
use crate::window::valid_outputs;
use crate::{Float, Result, Tensor, TensorError};

mod avg;
mod stride1;

pub use avg::{avg_pool2d, avg_pool2d_backward};

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
        if h_in == 0 || w_in == 0 {
            return Err(TensorError::invalid(
                op,
                format!("input plane {h_in}x{w_in} is empty; height and width must be at least 1"),
            ));
        }
        // PyTorch rejects the same case: a window could lie entirely in the
        // padding and would have no input element to take the max of.
        if p.0 > k.0 / 2 || p.1 > k.1 / 2 {
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
/// padding is dropped. As in PyTorch, ceil mode allows a window larger than
/// the padded input (2x2/2 on a 1x1 input gives one output, whose window is
/// clipped to the input); `None` where PyTorch reports an output of size 0.
fn pool_out_size(size: usize, kernel: usize, stride: usize, padding: usize, ceil_mode: bool) -> Option<usize> {
    if stride == 0 || kernel == 0 {
        return None;
    }
    // i128 represents every usize sum below, and floor division matches
    // PyTorch's div_rtn for a negative numerator.
    let (size, kernel, stride, padding) = (size as i128, kernel as i128, stride as i128, padding as i128);
    let numerator = size + 2 * padding - kernel + if ceil_mode { stride - 1 } else { 0 };
    let mut out = numerator.div_euclid(stride) + 1;
    if ceil_mode && out >= 1 && (out - 1) * stride >= size + padding {
        out -= 1;
    }
    if out < 1 { None } else { usize::try_from(out).ok() }
}

fn expect_nchw<T: Float>(op: &'static str, x: &Tensor<T>) -> Result<[usize; 4]> {
    let &[n, c, h, w] = x.expect_rank(op, 4)? else { unreachable!() };
    Ok([n, c, h, w])
}

/// Validated sizes of one pooling problem, per plane.
#[derive(Clone, Copy)]
pub(crate) struct PlaneSizes {
    pub(crate) h_in: usize,
    pub(crate) w_in: usize,
    pub(crate) h_out: usize,
    pub(crate) w_out: usize,
}

fn max_pool_sizes<T: Float>(op: &'static str, x: &Tensor<T>, params: Pool2dParams) -> Result<(usize, PlaneSizes)> {
    let [n, c, h_in, w_in] = expect_nchw(op, x)?;
    let (h_out, w_out) = params.validate(op, h_in, w_in)?;
    if u32::try_from(h_in * w_in).is_err() {
        return Err(TensorError::invalid(
            op,
            format!("input plane {h_in}x{w_in} has 2^32 or more elements; indices are 32-bit"),
        ));
    }
    Ok((n * c, PlaneSizes { h_in, w_in, h_out, w_out }))
}

/// Rows of input `[y0, y1)` covered by the window of output row `oy`,
/// clipped to the input so that padding never wins.
fn window_rows(oy: usize, h_in: usize, params: &Pool2dParams) -> (usize, usize) {
    let (k, s, p) = (params.kernel.0, params.stride.0, params.padding.0);
    ((oy * s).saturating_sub(p), (oy * s + k - p).min(h_in))
}

/// 2-D max pooling.
///
/// A NaN anywhere in a window makes that output NaN, as in PyTorch.
///
/// PyTorch equivalent: `torch.nn.functional.max_pool2d(x, kernel, stride, padding, ceil_mode=...)`.
///
/// # Shapes
/// `x` is `[N, C, H, W]`; the output is `[N, C, H_out, W_out]` as given by
/// [`Pool2dParams::h_out`] and [`Pool2dParams::w_out`].
///
/// # Errors
/// [`TensorError`] if `x` is not 4-D, the window or stride is zero, the
/// padding exceeds half the window, or no window fits.
pub fn max_pool2d<T: Float>(x: &Tensor<T>, params: Pool2dParams) -> Result<Tensor<T>> {
    let (planes, sizes) = max_pool_sizes("max_pool2d", x, params)?;
    let PlaneSizes { h_in, w_in, h_out, w_out } = sizes;
    let mut output = Tensor::zeros([x.dims()[0], x.dims()[1], h_out, w_out]);
    if planes == 0 || h_in * w_in == 0 {
        return Ok(output);
    }
    let tap_columns = tap_columns(sizes, &params);
    output.data_mut().par_chunks_mut(h_out * w_out).zip(x.data().par_chunks(h_in * w_in)).for_each_init(
        || (Vec::new(), Stride1Scratch::default()),
        |(indices, scratch), (y, plane)| {
            if plane.iter().any(|v| v.is_nan()) {
                // Rare: the exact per-window scan gives PyTorch's NaN result.
                indices.resize(y.len(), 0);
                argmax_plane(plane, indices, sizes, &params);
                for (y, &i) in y.iter_mut().zip(indices.iter()) {
                    *y = plane[i as usize];
                }
            } else if params.stride == (1, 1) {
                max_plane_stride1(plane, y, sizes, &params, scratch);
            } else {
                max_plane(plane, y, sizes, &params, &tap_columns);
            }
        },
    );
    Ok(output)
}

/// Max-pools one NaN-free plane a row of outputs at a time. For each window
/// tap `(iy, j)` one pass runs over the outputs it reaches, so the inner loop
/// has no bounds branches and compiles to vector max instructions.
/// `tap_columns[j]` contains the outputs of a row whose tap `j` lies inside
/// the input. It is the same for every row, so the caller computes it once.
fn max_plane<T: Float>(
    plane: &[T],
    y: &mut [T],
    sizes: PlaneSizes,
    params: &Pool2dParams,
    tap_columns: &[Range<usize>],
) {
    let PlaneSizes { h_in, w_in, h_out, w_out } = sizes;
    let (s, p) = (params.stride.1, params.padding.1);
    for oy in 0..h_out {
        let (y0, y1) = window_rows(oy, h_in, params);
        let y_row = &mut y[oy * w_out..(oy + 1) * w_out];
        // Seed each output with an element of its window; every window has
        // one because validation rejects windows lying in the padding.
        for (ox, best) in y_row.iter_mut().enumerate() {
            *best = plane[y0 * w_in + (ox * s).saturating_sub(p)];
        }
        for iy in y0..y1 {
            let src = &plane[iy * w_in..(iy + 1) * w_in];
            for (j, columns) in tap_columns.iter().enumerate() {
                if columns.is_empty() {
                    continue;
                }
                let first = columns.start * s + j - p;
                let bests = &mut y_row[columns.clone()];
                if s == 1 {
                    let taps = &src[first..first + bests.len()];
                    for (best, &v) in bests.iter_mut().zip(taps) {
                        *best = if v > *best { v } else { *best };
                    }
                } else {
                    for (best, &v) in bests.iter_mut().zip(src[first..].iter().step_by(s)) {
                        *best = if v > *best { v } else { *best };
                    }
                }
            }
        }
    }
}

/// Writes, for each output of one plane, the in-plane index of the element
/// that wins its window under PyTorch's rule: a strictly larger value or any
/// NaN takes over, so ties keep the first maximum in row-major window order
/// and the last NaN wins.
fn argmax_plane<T: Float>(plane: &[T], indices: &mut [u32], sizes: PlaneSizes, params: &Pool2dParams) {
    let PlaneSizes { h_in, w_in, h_out, w_out } = sizes;
    let (k, s, p) = (params.kernel.1, params.stride.1, params.padding.1);
    for oy in 0..h_out {
        let (y0, y1) = window_rows(oy, h_in, params);
        for ox in 0..w_out {
            let x0 = (ox * s).saturating_sub(p);
            let x1 = (ox * s + k - p).min(w_in);
            let mut best = y0 * w_in + x0;
            for iy in y0..y1 {
                for ix in x0..x1 {
                    let v = plane[iy * w_in + ix];
                    if v > plane[best] || v.is_nan() {
                        best = iy * w_in + ix;
                    }
                }
            }
            indices[oy * w_out + ox] = best as u32;
        }
    }
}

/// Like [`argmax_plane`] for a NaN-free plane whose window maxima `best`
/// are already known: each window is scanned in row-major order until the
/// first element equal to its maximum, which is the first of tied maxima.
/// The equality test is almost always false until the hit, so the branch
/// predicts well, unlike the "is this larger" test of a full scan.
fn winners_by_value<T: Float>(plane: &[T], best: &[T], indices: &mut [u32], sizes: PlaneSizes, params: &Pool2dParams) {
    let PlaneSizes { h_in, w_in, h_out, w_out } = sizes;
    let (k, s, p) = (params.kernel.1, params.stride.1, params.padding.1);
    for oy in 0..h_out {
        let (y0, y1) = window_rows(oy, h_in, params);
        for ox in 0..w_out {
            let x0 = (ox * s).saturating_sub(p);
            let x1 = (ox * s + k - p).min(w_in);
            let target = best[oy * w_out + ox];
            let hit = (y0..y1).find_map(|iy| {
                let row = &plane[iy * w_in + x0..iy * w_in + x1];
                row.iter().position(|&v| v == target).map(|ix| iy * w_in + x0 + ix)
            });
            indices[oy * w_out + ox] = hit.expect("a window maximum is one of the window's elements") as u32;
        }
    }
}

/// Output columns of a row that each horizontal window tap reaches inside
/// the input; the same for every row and every plane.
fn tap_columns(sizes: PlaneSizes, params: &Pool2dParams) -> Vec<Range<usize>> {
    let (stride, padding) = (params.stride.1, params.padding.1);
    (0..params.kernel.1).map(|j| valid_outputs(sizes.w_out, stride, j, padding, sizes.w_in)).collect()
}

/// The result of [`max_pool2d_with_indices`].
#[derive(Clone, Debug)]
pub struct MaxPoolOutput<T: Float> {
    /// Pooled values, `[N, C, H_out, W_out]`.
    pub output: Tensor<T>,
    /// For each output, the index within its `H x W` input plane (`y * W + x`)
    /// of the element that won its window, as PyTorch's `return_indices=True`
    /// reports it: the first of tied maxima in row-major window order, or
    /// the last NaN.
    pub indices: Vec<u32>,
}

/// [`max_pool2d`] that also returns the index of each window's winner,
/// which [`max_pool2d_backward`] needs.
///
/// PyTorch equivalent: `torch.nn.functional.max_pool2d(..., return_indices=True)`.
///
/// # Errors
/// As [`max_pool2d`].
pub fn max_pool2d_with_indices<T: Float>(x: &Tensor<T>, params: Pool2dParams) -> Result<MaxPoolOutput<T>> {
    let (planes, sizes) = max_pool_sizes("max_pool2d_with_indices", x, params)?;
    let (in_plane, out_plane) = (sizes.h_in * sizes.w_in, sizes.h_out * sizes.w_out);
    let mut output = Tensor::zeros([x.dims()[0], x.dims()[1], sizes.h_out, sizes.w_out]);
    let mut indices = vec![0u32; planes * out_plane];
    if planes == 0 || in_plane == 0 || out_plane == 0 {
        return Ok(MaxPoolOutput { output, indices });
    }
    let tap_columns = tap_columns(sizes, &params);
    output
        .data_mut()
        .par_chunks_mut(out_plane)
        .zip(indices.par_chunks_mut(out_plane))
        .zip(x.data().par_chunks(in_plane))
        .for_each_init(Stride1Scratch::default, |scratch, ((y, indices), plane)| {
            if plane.iter().any(|v| v.is_nan()) {
                argmax_plane(plane, indices, sizes, &params);
                for (y, &i) in y.iter_mut().zip(indices.iter()) {
                    *y = plane[i as usize];
                }
                return;
            }
            // Stride 1 tracks winners while it takes the maxima. Otherwise,
            // and for windows of only -inf, values come first and then each
            // window's first element equal to its maximum.
            if params.stride == (1, 1) {
                if !max_plane_stride1_with_indices(plane, y, indices, sizes, &params, scratch) {
                    winners_by_value(plane, y, indices, sizes, &params);
                }
            } else {
                max_plane(plane, y, sizes, &params, &tap_columns);
                winners_by_value(plane, y, indices, sizes, &params);
            }
        });
    Ok(MaxPoolOutput { output, indices })
}

/// Gradient of max pooling: each output gradient goes to the input element
/// that won its window, given by the `indices` of
/// [`max_pool2d_with_indices`]; overlapping windows accumulate.
///
/// # Errors
/// [`TensorError`] if `input_dims` is not 4-D, `dy` does not have the same
/// batch and channels, or `indices` does not have one entry per element of
/// `dy` inside the input plane.
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
        .for_each(|((dx, dy), indices)| {
            for (&g, &i) in dy.iter().zip(indices) {
                dx[i as usize] = dx[i as usize] + g;
            }
        });
    Ok(dx)
}

/// Returns the input rows (or columns) that adaptive pooling averages for output
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
    // An output larger than the input is allowed, as in PyTorch: every
    // window still covers at least one input element.
    if out_h == 0 || out_w == 0 || h_in == 0 || w_in == 0 {
        return Err(TensorError::invalid(
            op,
            format!("output size {out_h}x{out_w} and input size {h_in}x{w_in} must both be at least 1x1"),
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
