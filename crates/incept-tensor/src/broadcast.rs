//! PyTorch's broadcasting rules for element-wise operations.
//!
//! Shapes are aligned at their last axis. Two sizes are compatible when they
//! are equal or one of them is 1; the output takes the larger, and a missing
//! leading axis counts as 1. A size-1 axis is read with stride 0, so no
//! input is copied.

use crate::{Float, Result, Tensor, TensorError};

/// The shape that `a` and `b` broadcast to.
///
/// # Errors
/// [`TensorError::ShapeMismatch`] naming `op` and the first axis, counted
/// from the right, where the sizes differ and neither is 1.
pub fn broadcast_shape(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let size_at = |dims: &[usize], axis: usize| {
        let offset = rank - dims.len();
        if axis < offset { 1 } else { dims[axis - offset] }
    };
    (0..rank)
        .map(|axis| match (size_at(a, axis), size_at(b, axis)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            (x, y) => Err(TensorError::mismatch(
                op,
                &[a, b],
                format!("sizes {x} and {y} at axis {axis} of the broadcast shape differ and neither is 1"),
            )),
        })
        .collect()
}

/// Element strides of `dims` read as the broadcast shape `out`: 0 on axes
/// where `dims` has size 1 or no axis at all.
pub(crate) fn broadcast_strides(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let offset = out.len() - dims.len();
    let mut strides = vec![0; out.len()];
    let mut stride = 1;
    for (axis, &size) in dims.iter().enumerate().rev() {
        if size != 1 {
            strides[axis + offset] = stride;
        }
        stride *= size;
    }
    strides
}

/// Calls `f` with the offset `sum(index[a] * strides[a])` of every
/// multi-index of `dims`, in row-major order: the element walk shared by
/// broadcasting reductions and axis permutations.
pub(crate) fn for_each_offset(dims: &[usize], strides: &[usize], mut f: impl FnMut(usize)) {
    debug_assert_eq!(dims.len(), strides.len());
    if dims.contains(&0) {
        return;
    }
    let rank = dims.len();
    let mut index = vec![0usize; rank];
    let mut offset = 0usize;
    loop {
        f(offset);
        let mut axis = rank;
        loop {
            if axis == 0 {
                return;
            }
            axis -= 1;
            index[axis] += 1;
            offset += strides[axis];
            if index[axis] < dims[axis] {
                break;
            }
            offset -= strides[axis] * dims[axis];
            index[axis] = 0;
        }
    }
}

/// Applies `f` to every pair of elements of `a` and `b` broadcast together.
pub(crate) fn broadcast_zip<T: Float>(
    op: &'static str,
    a: &Tensor<T>,
    b: &Tensor<T>,
    f: impl Fn(T, T) -> T,
) -> Result<Tensor<T>> {
    let out_dims = broadcast_shape(op, a.dims(), b.dims())?;
    let (stride_a, stride_b) = (broadcast_strides(a.dims(), &out_dims), broadcast_strides(b.dims(), &out_dims));
    let mut out = Tensor::zeros(out_dims.as_slice());
    let rank = out_dims.len();
    if out.numel() == 0 {
        return Ok(out);
    }
    if rank == 0 {
        out.data_mut()[0] = f(a.data()[0], b.data()[0]);
        return Ok(out);
    }
    // Walk the output row by row (the last axis), carrying a multi-index
    // over the outer axes and the matching offsets into `a` and `b`.
    let inner = out_dims[rank - 1];
    let (inner_a, inner_b) = (stride_a[rank - 1], stride_b[rank - 1]);
    let mut index = vec![0usize; rank - 1];
    let (mut base_a, mut base_b) = (0usize, 0usize);
    for row in out.data_mut().chunks_exact_mut(inner) {
        for (j, o) in row.iter_mut().enumerate() {
            *o = f(a.data()[base_a + j * inner_a], b.data()[base_b + j * inner_b]);
        }
        for axis in (0..rank - 1).rev() {
            index[axis] += 1;
            base_a += stride_a[axis];
            base_b += stride_b[axis];
            if index[axis] < out_dims[axis] {
                break;
            }
            base_a -= stride_a[axis] * out_dims[axis];
            base_b -= stride_b[axis] * out_dims[axis];
            index[axis] = 0;
        }
    }
    Ok(out)
}

/// Sums `x` down to `dims`, the inverse of broadcasting `dims` to `x`'s
/// shape: the gradient of a broadcast input is the output gradient summed
/// over the axes it was broadcast along.
///
/// # Errors
/// [`TensorError::ShapeMismatch`] if `dims` does not broadcast to `x`'s shape.
pub fn sum_to<T: Float>(x: &Tensor<T>, dims: &[usize]) -> Result<Tensor<T>> {
    let op = "sum_to";
    if x.dims() == dims {
        return Ok(x.clone());
    }
    let out_dims = broadcast_shape(op, dims, x.dims())?;
    if out_dims != x.dims() {
        return Err(TensorError::mismatch(op, &[x.dims(), dims], "the target shape must broadcast to the input shape"));
    }
    let strides = broadcast_strides(dims, x.dims());
    let mut out = Tensor::zeros(dims);
    let mut values = x.data().iter();
    let sums = out.data_mut();
    for_each_offset(x.dims(), &strides, |offset| {
        let v = *values.next().expect("one offset per element of x");
        sums[offset] = sums[offset] + v;
    });
    Ok(out)
}

/// Copies `x` broadcast to `dims`.
///
/// PyTorch equivalent: `x.expand(dims).contiguous()`.
///
/// # Errors
/// [`TensorError::ShapeMismatch`] if `x`'s shape does not broadcast to `dims`.
pub fn expand<T: Float>(x: &Tensor<T>, dims: &[usize]) -> Result<Tensor<T>> {
    let out_dims = broadcast_shape("expand", x.dims(), dims)?;
    if out_dims != dims {
        return Err(TensorError::mismatch("expand", &[x.dims(), dims], "the input must broadcast to the target shape"));
    }
    broadcast_zip("expand", x, &Tensor::zeros(dims), |v, _| v)
}
