//! Element-wise arithmetic, ReLU and dropout masks.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::broadcast::broadcast_zip;
use crate::{Float, Result, Tensor, TensorError};

/// Tensors smaller than this are processed on the calling thread; splitting
/// them across workers costs more than the arithmetic.
const PARALLEL_MIN_LEN: usize = 1 << 15;

fn zip_map<T: Float>(
    op: &'static str,
    a: &Tensor<T>,
    b: &Tensor<T>,
    f: impl Fn(T, T) -> T + Sync,
) -> Result<Tensor<T>> {
    a.expect_same_shape(op, b)?;
    let mut out = Tensor::zeros(a.dims());
    if a.numel() < PARALLEL_MIN_LEN {
        for ((o, &x), &y) in out.data_mut().iter_mut().zip(a.data()).zip(b.data()) {
            *o = f(x, y);
        }
    } else {
        out.data_mut().par_iter_mut().zip(a.data().par_iter().zip(b.data())).for_each(|(o, (&x, &y))| *o = f(x, y));
    }
    Ok(out)
}

fn map<T: Float>(a: &Tensor<T>, f: impl Fn(T) -> T + Sync) -> Tensor<T> {
    let mut out = a.clone();
    if a.numel() < PARALLEL_MIN_LEN {
        out.data_mut().iter_mut().for_each(|v| *v = f(*v));
    } else {
        out.data_mut().par_iter_mut().for_each(|v| *v = f(*v));
    }
    out
}

/// Applies `f` element by element: in parallel when the shapes are equal,
/// through the broadcasting walk otherwise.
fn binary<T: Float>(op: &'static str, a: &Tensor<T>, b: &Tensor<T>, f: impl Fn(T, T) -> T + Sync) -> Result<Tensor<T>> {
    if a.dims() == b.dims() { zip_map(op, a, b, f) } else { broadcast_zip(op, a, b, f) }
}

/// Element-wise `a + b` with PyTorch's broadcasting rules.
///
/// # Errors
/// [`TensorError::ShapeMismatch`] if the shapes do not broadcast.
pub fn add<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    binary("add", a, b, |x, y| x + y)
}

/// Element-wise `a - b` with PyTorch's broadcasting rules.
///
/// # Errors
/// [`TensorError::ShapeMismatch`] if the shapes do not broadcast.
pub fn sub<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    binary("sub", a, b, |x, y| x - y)
}

/// Element-wise `a * b` with PyTorch's broadcasting rules.
///
/// # Errors
/// [`TensorError::ShapeMismatch`] if the shapes do not broadcast.
pub fn mul<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    binary("mul", a, b, |x, y| x * y)
}

/// Element-wise `a / b` with PyTorch's broadcasting rules; division by zero
/// gives an infinity or NaN, as in IEEE 754 and PyTorch.
///
/// # Errors
/// [`TensorError::ShapeMismatch`] if the shapes do not broadcast.
pub fn div<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
    binary("div", a, b, |x, y| x / y)
}

/// `alpha * a`.
pub fn scale<T: Float>(a: &Tensor<T>, alpha: T) -> Tensor<T> {
    map(a, |x| alpha * x)
}

/// `x + alpha`.
pub fn add_scalar<T: Float>(a: &Tensor<T>, alpha: T) -> Tensor<T> {
    map(a, |x| x + alpha)
}

/// `e^x` element by element.
pub fn exp<T: Float>(a: &Tensor<T>) -> Tensor<T> {
    map(a, T::exp)
}

/// Natural logarithm element by element: `-inf` at 0 and NaN below, as in IEEE 754.
pub fn ln<T: Float>(a: &Tensor<T>) -> Tensor<T> {
    map(a, T::ln)
}

/// Square root element by element: NaN for negative inputs, as in IEEE 754.
pub fn sqrt<T: Float>(a: &Tensor<T>) -> Tensor<T> {
    map(a, T::sqrt)
}

/// `max(x, 0)`. A NaN input stays NaN.
pub fn relu<T: Float>(x: &Tensor<T>) -> Tensor<T> {
    map(x, |v| if v < T::zero() { T::zero() } else { v })
}

/// Gradient of [`relu`] given its output `y`: `dy` where `y > 0`, else 0.
/// (At exactly zero the gradient is 0, as in PyTorch.)
///
/// # Errors
/// [`TensorError::ShapeMismatch`] if the shapes differ.
pub fn relu_backward<T: Float>(y: &Tensor<T>, dy: &Tensor<T>) -> Result<Tensor<T>> {
    zip_map("relu_backward", y, dy, |y, g| if y > T::zero() { g } else { T::zero() })
}

/// Sum of all elements, accumulated in f64.
pub fn sum_all<T: Float>(x: &Tensor<T>) -> T {
    T::from_f64(x.data().iter().map(|v| v.as_f64()).sum())
}

/// Mean of all elements, accumulated in f64; NaN for an empty tensor, as in PyTorch.
pub fn mean_all<T: Float>(x: &Tensor<T>) -> T {
    T::from_f64(x.data().iter().map(|v| v.as_f64()).sum::<f64>() / x.numel() as f64)
}

/// Largest element; NaN if any element is NaN, as in PyTorch.
///
/// # Errors
/// [`TensorError::InvalidArgument`] for an empty tensor, which has no maximum.
pub fn max_all<T: Float>(x: &Tensor<T>) -> Result<T> {
    let (&first, rest) = x
        .data()
        .split_first()
        .ok_or_else(|| TensorError::invalid("max_all", format!("shape {:?} is empty and has no maximum", x.dims())))?;
    let mut best = first;
    for &v in rest {
        if best.is_nan() {
            break;
        }
        if v > best || v.is_nan() {
            best = v;
        }
    }
    Ok(best)
}

/// An inverted-dropout mask: each element is 0 with probability `p` and
/// `1 / (1 - p)` otherwise, so `x * mask` keeps the expected value of `x`.
/// The same seed gives the same mask.
///
/// # Errors
/// [`TensorError::InvalidArgument`] if `p` is not in `[0, 1)`.
pub fn dropout_mask<T: Float>(dims: &[usize], p: f64, seed: u64) -> Result<Tensor<T>> {
    if !(0.0..1.0).contains(&p) {
        return Err(TensorError::invalid("dropout_mask", format!("drop probability p = {p} must be in [0, 1)")));
    }
    let keep = T::from_f64(1.0 / (1.0 - p));
    let mut rng = StdRng::seed_from_u64(seed);
    let mut mask = Tensor::zeros(dims);
    for m in mask.data_mut() {
        *m = if rng.random::<f64>() < p { T::zero() } else { keep };
    }
    Ok(mask)
}

/// Concatenates NCHW tensors along the channel axis.
///
/// PyTorch equivalent: `torch.cat(xs, dim=1)`.
///
/// # Errors
/// [`TensorError`] if `xs` is empty, a tensor is not 4-D, or batch, height
/// or width differ.
pub fn concat_channels<T: Float>(xs: &[&Tensor<T>]) -> Result<Tensor<T>> {
    concat_channels_relu(xs, &vec![false; xs.len()])
}

/// Concatenates NCHW tensors along the channel axis, applying ReLU to the
/// tensors whose flag in `relu` is set while copying them. An Inception
/// module ends every branch with a ReLU, so each branch's activation pass
/// writes straight into its channel range of the output and the concat
/// costs no pass of its own.
///
/// PyTorch equivalent: `torch.cat([x.relu() if r else x for x, r in zip(xs, relu)], dim=1)`.
///
/// # Errors
/// [`TensorError`] as [`concat_channels`], or if `relu` does not have one
/// flag per tensor.
pub fn concat_channels_relu<T: Float>(xs: &[&Tensor<T>], relu: &[bool]) -> Result<Tensor<T>> {
    let op = "concat_channels";
    let first = xs.first().ok_or_else(|| TensorError::invalid(op, "at least one tensor is required"))?;
    if relu.len() != xs.len() {
        return Err(TensorError::invalid(
            op,
            format!("{} ReLU flags given for {} tensors; pass one per tensor", relu.len(), xs.len()),
        ));
    }
    let &[n, _, h, w] = first.expect_rank(op, 4)? else { unreachable!() };
    let mut c_total = 0;
    for x in xs {
        let &[xn, xc, xh, xw] = x.expect_rank(op, 4)? else { unreachable!() };
        if (xn, xh, xw) != (n, h, w) {
            let shapes: Vec<&[usize]> = xs.iter().map(|t| t.dims()).collect();
            return Err(TensorError::mismatch(op, &shapes, "batch, height and width must agree"));
        }
        c_total += xc;
    }
    let plane = h * w;
    let mut out = Vec::with_capacity(n * c_total * plane);
    for i in 0..n {
        for (x, &apply_relu) in xs.iter().zip(relu) {
            let len = x.dims()[1] * plane;
            let src = &x.data()[i * len..(i + 1) * len];
            if apply_relu {
                // `v < 0 ? 0 : v` keeps NaN as NaN, as torch.relu does.
                out.extend(src.iter().map(|&v| if v < T::zero() { T::zero() } else { v }));
            } else {
                out.extend_from_slice(src);
            }
        }
    }
    Tensor::from_vec(out, [n, c_total, h, w])
}

/// Copies channels `start..start + len` of an NCHW tensor.
///
/// PyTorch equivalent: `x[:, start:start + len]`.
///
/// # Errors
/// [`TensorError`] if `x` is not 4-D or the range exceeds its channels.
pub fn slice_channels<T: Float>(x: &Tensor<T>, start: usize, len: usize) -> Result<Tensor<T>> {
    let op = "slice_channels";
    let &[n, c, h, w] = x.expect_rank(op, 4)? else { unreachable!() };
    if start.checked_add(len).is_none_or(|end| end > c) {
        return Err(TensorError::invalid(
            op,
            format!("channels {start}..{} exceed the {c} channels of {:?}", start.saturating_add(len), x.dims()),
        ));
    }
    let plane = h * w;
    let mut out = Vec::with_capacity(n * len * plane);
    for i in 0..n {
        let base = (i * c + start) * plane;
        out.extend_from_slice(&x.data()[base..base + len * plane]);
    }
    Tensor::from_vec(out, [n, len, h, w])
}
