//! Copies that rearrange a tensor: permuting axes, slicing and
//! concatenating along any axis.

use crate::broadcast::for_each_offset;
use crate::shape::around_axis as around;
use crate::{Float, Result, Tensor, TensorError};

/// Reorders the axes: output axis `i` is input axis `axes[i]` (a copy).
///
/// PyTorch equivalent: `x.permute(axes).contiguous()`.
///
/// # Errors
/// [`TensorError::InvalidArgument`] if `axes` is not a permutation of
/// `0..rank`.
pub fn permute<T: Float>(x: &Tensor<T>, axes: &[usize]) -> Result<Tensor<T>> {
    let rank = x.dims().len();
    let mut seen = vec![false; rank];
    let valid = axes.len() == rank && axes.iter().all(|&a| a < rank && !std::mem::replace(&mut seen[a], true));
    if !valid {
        return Err(TensorError::invalid(
            "permute",
            format!("axes {axes:?} must be a permutation of 0..{rank} for shape {:?}", x.dims()),
        ));
    }
    let in_strides: Vec<usize> = (0..rank).map(|a| x.dims()[a + 1..].iter().product()).collect();
    let out_dims: Vec<usize> = axes.iter().map(|&a| x.dims()[a]).collect();
    let strides: Vec<usize> = axes.iter().map(|&a| in_strides[a]).collect();
    let mut out = Tensor::zeros(out_dims.as_slice());
    let mut slots = out.data_mut().iter_mut();
    for_each_offset(&out_dims, &strides, |offset| {
        *slots.next().expect("one offset per output element") = x.data()[offset];
    });
    Ok(out)
}

/// Copies indices `start..start + len` of `axis`.
///
/// PyTorch equivalent: `x.narrow(axis, start, len).contiguous()`.
///
/// # Errors
/// [`TensorError::InvalidArgument`] if `axis` is out of range or the slice
/// extends past the axis.
pub fn slice_axis<T: Float>(x: &Tensor<T>, axis: usize, start: usize, len: usize) -> Result<Tensor<T>> {
    let op = "slice_axis";
    let (outer, size, inner) = around(op, x.dims(), axis)?;
    if start.checked_add(len).is_none_or(|end| end > size) {
        return Err(TensorError::invalid(
            op,
            format!(
                "indices {start}..{} exceed the size {size} of axis {axis} of {:?}",
                start.saturating_add(len),
                x.dims()
            ),
        ));
    }
    let mut dims = x.dims().to_vec();
    dims[axis] = len;
    let mut data = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        data.extend_from_slice(&x.data()[(o * size + start) * inner..(o * size + start + len) * inner]);
    }
    Tensor::from_vec(data, dims)
}

/// Concatenates tensors along `axis`; every other size must agree.
///
/// PyTorch equivalent: `torch.cat(xs, dim=axis)`.
///
/// # Errors
/// [`TensorError`] if `xs` is empty, the ranks differ, `axis` is out of
/// range, or another axis differs in size.
pub fn concat<T: Float>(xs: &[&Tensor<T>], axis: usize) -> Result<Tensor<T>> {
    let op = "concat";
    let first = xs.first().ok_or_else(|| TensorError::invalid(op, "at least one tensor is required"))?;
    let (outer, _, inner) = around(op, first.dims(), axis)?;
    let mut total = 0;
    for x in xs {
        let same_elsewhere = x.dims().len() == first.dims().len()
            && x.dims().iter().zip(first.dims()).enumerate().all(|(a, (s, f))| a == axis || s == f);
        if !same_elsewhere {
            let shapes: Vec<&[usize]> = xs.iter().map(|t| t.dims()).collect();
            return Err(TensorError::mismatch(op, &shapes, format!("all sizes except axis {axis} must agree")));
        }
        total += x.dims()[axis];
    }
    let mut dims = first.dims().to_vec();
    dims[axis] = total;
    let mut data = Vec::with_capacity(outer * total * inner);
    for o in 0..outer {
        for x in xs {
            let block = x.dims()[axis] * inner;
            data.extend_from_slice(&x.data()[o * block..(o + 1) * block]);
        }
    }
    Tensor::from_vec(data, dims)
}

/// Splits `x` along `axis` into consecutive pieces of the given sizes, the
/// inverse of [`concat`].
///
/// PyTorch equivalent: `torch.split(x, sizes, dim=axis)`.
///
/// # Errors
/// [`TensorError::InvalidArgument`] if `axis` is out of range or the sizes
/// do not add up to the axis size.
pub fn split<T: Float>(x: &Tensor<T>, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor<T>>> {
    let (_, size, _) = around("split", x.dims(), axis)?;
    let total = sizes.iter().try_fold(0usize, |acc, &s| acc.checked_add(s));
    if total != Some(size) {
        return Err(TensorError::invalid(
            "split",
            format!("sizes {sizes:?} must add up to {size}, the size of axis {axis} of {:?}", x.dims()),
        ));
    }
    let mut start = 0;
    sizes
        .iter()
        .map(|&len| {
            let piece = slice_axis(x, axis, start, len);
            start += len;
            piece
        })
        .collect()
}
