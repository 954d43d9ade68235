//! Average pooling over fixed windows.

use rayon::prelude::*;

use super::{Pool2dParams, expect_nchw};
use crate::{Float, Result, Tensor, TensorError};

/// One output's window: the clipped input rows and columns it sums, and the
/// divisor PyTorch uses for it.
struct AvgWindow {
    rows: (usize, usize),
    cols: (usize, usize),
    divisor: usize,
}

/// PyTorch's average-pooling window for output `(oy, ox)`. The window is
/// first cut at the far padding edge (`size + padding`), which only matters
/// for the last window in ceil mode; its area then is the divisor when
/// `count_include_pad` is set. Clipped to the input, its area is the divisor
/// otherwise.
fn avg_window(
    oy: usize,
    ox: usize,
    h_in: usize,
    w_in: usize,
    params: &Pool2dParams,
    count_include_pad: bool,
) -> AvgWindow {
    let span = |o: usize, size: usize, k: usize, s: usize, p: usize| {
        let start = (o * s) as isize - p as isize;
        let end = (start + k as isize).min((size + p) as isize);
        let padded_len = (end - start) as usize;
        let clipped = (start.max(0) as usize, end.clamp(0, size as isize) as usize);
        (padded_len, clipped)
    };
    let (h_len, rows) = span(oy, h_in, params.kernel.0, params.stride.0, params.padding.0);
    let (w_len, cols) = span(ox, w_in, params.kernel.1, params.stride.1, params.padding.1);
    let divisor = if count_include_pad { h_len * w_len } else { (rows.1 - rows.0) * (cols.1 - cols.0) };
    AvgWindow { rows, cols, divisor }
}

/// 2-D average pooling. With `count_include_pad` the padding counts as zeros
/// in the divisor; without it, each window is divided by the number of input
/// elements it covers.
///
/// PyTorch equivalent: `torch.nn.functional.avg_pool2d(x, kernel, stride,
/// padding, ceil_mode, count_include_pad)`.
///
/// # Shapes
/// `x` is `[N, C, H, W]`; the output is `[N, C, H_out, W_out]` as given by
/// [`Pool2dParams::h_out`] and [`Pool2dParams::w_out`].
///
/// # Errors
/// [`TensorError`] if `x` is not 4-D, the plane is empty, the window or
/// stride is zero, the padding exceeds half the window, or no window fits.
pub fn avg_pool2d<T: Float>(x: &Tensor<T>, params: Pool2dParams, count_include_pad: bool) -> Result<Tensor<T>> {
    let op = "avg_pool2d";
    let [n, c, h_in, w_in] = expect_nchw(op, x)?;
    let (h_out, w_out) = params.validate(op, h_in, w_in)?;
    let mut y = Tensor::zeros([n, c, h_out, w_out]);
    if n * c == 0 {
        return Ok(y);
    }
    y.data_mut().par_chunks_mut(h_out * w_out).zip(x.data().par_chunks(h_in * w_in)).for_each(|(y, plane)| {
        for oy in 0..h_out {
            for ox in 0..w_out {
                let window = avg_window(oy, ox, h_in, w_in, &params, count_include_pad);
                let mut sum = T::zero();
                for iy in window.rows.0..window.rows.1 {
                    sum = sum + plane[iy * w_in + window.cols.0..iy * w_in + window.cols.1].iter().copied().sum::<T>();
                }
                y[oy * w_out + ox] = sum / T::from_usize(window.divisor);
            }
        }
    });
    Ok(y)
}

/// Gradient of [`avg_pool2d`]: each output gradient is divided by its
/// window's divisor and added to every input element of the window.
///
/// # Errors
/// As [`avg_pool2d`] for `input_dims`, and a shape error if `dy` does not
/// have the output shape.
pub fn avg_pool2d_backward<T: Float>(
    dy: &Tensor<T>,
    input_dims: &[usize],
    params: Pool2dParams,
    count_include_pad: bool,
) -> Result<Tensor<T>> {
    let op = "avg_pool2d_backward";
    let &[n, c, h_in, w_in] = input_dims else {
        return Err(TensorError::Rank { op, expected: 4, shape: input_dims.to_vec() });
    };
    let (h_out, w_out) = params.validate(op, h_in, w_in)?;
    if dy.dims() != [n, c, h_out, w_out] {
        return Err(TensorError::mismatch(
            op,
            &[input_dims, dy.dims()],
            format!("the output gradient must have the output shape {:?}", [n, c, h_out, w_out]),
        ));
    }
    let mut dx = Tensor::zeros(input_dims);
    if n * c == 0 {
        return Ok(dx);
    }
    dx.data_mut().par_chunks_mut(h_in * w_in).zip(dy.data().par_chunks(h_out * w_out)).for_each(|(dx, dy)| {
        for oy in 0..h_out {
            for ox in 0..w_out {
                let window = avg_window(oy, ox, h_in, w_in, &params, count_include_pad);
                let share = dy[oy * w_out + ox] / T::from_usize(window.divisor);
                for iy in window.rows.0..window.rows.1 {
                    for v in &mut dx[iy * w_in + window.cols.0..iy * w_in + window.cols.1] {
                        *v = *v + share;
                    }
                }
            }
        }
    });
    Ok(dx)
}
