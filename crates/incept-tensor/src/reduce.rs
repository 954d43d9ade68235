//! Reductions along one axis, arg-max, and matrix products.

use crate::gemm::{MatMut, MatRef, gemm, gemm_par};
use crate::shape::around_axis;
use crate::{Float, Result, Tensor, TensorError};

/// Shape after reducing `axis`: size 1 there with `keepdim`, removed otherwise.
fn reduced_dims(dims: &[usize], axis: usize, keepdim: bool) -> Vec<usize> {
    let mut out = dims.to_vec();
    if keepdim {
        out[axis] = 1;
    } else {
        out.remove(axis);
    }
    out
}

/// Sum along `axis`.
///
/// PyTorch equivalent: `x.sum(dim=axis, keepdim=keepdim)`.
///
/// # Errors
/// [`TensorError::InvalidArgument`] if `axis` is out of range.
pub fn sum_axis<T: Float>(x: &Tensor<T>, axis: usize, keepdim: bool) -> Result<Tensor<T>> {
    let (outer, len, inner) = around_axis("sum_axis", x.dims(), axis)?;
    let mut out = Tensor::zeros(reduced_dims(x.dims(), axis, keepdim));
    if inner == 0 {
        return Ok(out);
    }
    for (o, dst) in out.data_mut().chunks_exact_mut(inner).enumerate() {
        for l in 0..len {
            let src = &x.data()[(o * len + l) * inner..(o * len + l + 1) * inner];
            dst.iter_mut().zip(src).for_each(|(d, &v)| *d = *d + v);
        }
    }
    debug_assert_eq!(out.numel(), outer * inner);
    Ok(out)
}

/// Mean along `axis`; the mean of an empty axis is NaN, as in PyTorch.
///
/// PyTorch equivalent: `x.mean(dim=axis, keepdim=keepdim)`.
///
/// # Errors
/// [`TensorError::InvalidArgument`] if `axis` is out of range.
pub fn mean_axis<T: Float>(x: &Tensor<T>, axis: usize, keepdim: bool) -> Result<Tensor<T>> {
    let len = T::from_usize(*x.dims().get(axis).unwrap_or(&1));
    let mut out = sum_axis(x, axis, keepdim)?;
    out.data_mut().iter_mut().for_each(|v| *v = *v / len);
    Ok(out)
}

/// Maximum along `axis` and the index of the first maximum; a NaN counts as
/// the maximum, as in PyTorch.
///
/// PyTorch equivalent: `x.max(dim=axis, keepdim=keepdim)`.
///
/// # Errors
/// [`TensorError::InvalidArgument`] if `axis` is out of range or has size 0.
pub fn max_axis<T: Float>(x: &Tensor<T>, axis: usize, keepdim: bool) -> Result<(Tensor<T>, Vec<usize>)> {
    let op = "max_axis";
    let (outer, len, inner) = around_axis(op, x.dims(), axis)?;
    if len == 0 {
        return Err(TensorError::invalid(
            op,
            format!("axis {axis} of shape {:?} is empty and has no maximum", x.dims()),
        ));
    }
    let mut values = Tensor::zeros(reduced_dims(x.dims(), axis, keepdim));
    let mut indices = vec![0usize; outer * inner];
    for o in 0..outer {
        for i in 0..inner {
            let mut best = 0;
            for l in 1..len {
                let (v, b) = (x.data()[(o * len + l) * inner + i], x.data()[(o * len + best) * inner + i]);
                if !b.is_nan() && (v > b || v.is_nan()) {
                    best = l;
                }
            }
            values.data_mut()[o * inner + i] = x.data()[(o * len + best) * inner + i];
            indices[o * inner + i] = best;
        }
    }
    Ok((values, indices))
}

/// Index of the first maximum along `axis`, laid out in the shape of `x`
/// without that axis.
///
/// PyTorch equivalent: `x.argmax(dim=axis)`.
///
/// # Errors
/// As [`max_axis`].
pub fn argmax<T: Float>(x: &Tensor<T>, axis: usize) -> Result<Vec<usize>> {
    Ok(max_axis(x, axis, false)?.1)
}

/// Matrix product of `[m, k] x [k, n]`, `[b, m, k] x [b, k, n]`, or
/// `[b, m, k] x [k, n]` (one right-hand matrix shared by the batch).
///
/// PyTorch equivalent: `torch.matmul(a, b)` for these shapes.
///
/// # Errors
/// [`TensorError::ShapeMismatch`] if the inner sizes or the batch sizes
/// differ, or the ranks are not one of the three forms.
pub fn matmul<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    let op = "matmul";
    let ((batch, m, k), (b_batch, k2, n)) = match (a.dims(), b.dims()) {
        (&[m, k], &[k2, n]) => ((1, m, k), (1, k2, n)),
        (&[batch, m, k], &[b_batch, k2, n]) => ((batch, m, k), (b_batch, k2, n)),
        (&[batch, m, k], &[k2, n]) => ((batch, m, k), (1, k2, n)),
        _ => {
            return Err(TensorError::mismatch(
                op,
                &[a.dims(), b.dims()],
                "expected [m, k] x [k, n], [b, m, k] x [b, k, n] or [b, m, k] x [k, n]",
            ));
        }
    };
    if k != k2 || (b.dims().len() == 3 && b_batch != batch) {
        return Err(TensorError::mismatch(op, &[a.dims(), b.dims()], "inner sizes or batch sizes differ"));
    }
    let mut dims = a.dims().to_vec();
    *dims.last_mut().expect("rank is 2 or 3") = n;
    let mut out = Tensor::zeros(dims);
    if m * n == 0 {
        return Ok(out);
    }
    for (t, c) in out.data_mut().chunks_exact_mut(m * n).enumerate() {
        let a_t = MatRef::row_major(&a.data()[t * m * k..(t + 1) * m * k], m, k);
        let b_offset = if b.dims().len() == 3 { t * k * n } else { 0 };
        let b_t = MatRef::row_major(&b.data()[b_offset..b_offset + k * n], k, n);
        if batch == 1 {
            gemm_par(T::one(), a_t, b_t, T::zero(), c);
        } else {
            gemm(T::one(), a_t, b_t, T::zero(), MatMut::row_major(c, m, n));
        }
    }
    Ok(out)
}

/// Swaps the last two axes of a rank-2 or rank-3 tensor (a copy).
///
/// PyTorch equivalent: `x.transpose(-2, -1).contiguous()`.
///
/// # Errors
/// [`TensorError::Rank`] if `x` is not rank 2 or 3.
pub fn transpose_last<T: Float>(x: &Tensor<T>) -> Result<Tensor<T>> {
    let (batch, rows, cols) = match *x.dims() {
        [r, c] => (1, r, c),
        [b, r, c] => (b, r, c),
        _ => return Err(TensorError::Rank { op: "transpose_last", expected: 2, shape: x.dims().to_vec() }),
    };
    let mut dims = x.dims().to_vec();
    let rank = dims.len();
    dims.swap(rank - 2, rank - 1);
    let mut out = Tensor::zeros(dims);
    for t in 0..batch {
        for r in 0..rows {
            for c in 0..cols {
                out.data_mut()[(t * cols + c) * rows + r] = x.data()[(t * rows + r) * cols + c];
            }
        }
    }
    Ok(out)
}
