//! Softmax along any axis; log-softmax and cross-entropy over the last axis
//! of a `[N, C]` tensor.

use crate::{Float, Result, Tensor, TensorError};

fn rows<T: Float>(op: &'static str, x: &Tensor<T>) -> Result<(usize, usize)> {
    let &[n, c] = x.expect_rank(op, 2)? else { unreachable!() };
    if c == 0 {
        return Err(TensorError::invalid(op, format!("input {:?} has no classes", x.dims())));
    }
    Ok((n, c))
}

/// `log(softmax(x))` along each row, computed as `x - max - log(sum(exp(x - max)))`
/// so large logits do not overflow.
///
/// PyTorch equivalent: `torch.nn.functional.log_softmax(x, dim=1)`.
///
/// # Errors
/// [`TensorError`] if `x` is not `[N, C]` with `C >= 1`.
pub fn log_softmax<T: Float>(x: &Tensor<T>) -> Result<Tensor<T>> {
    let (_, c) = rows("log_softmax", x)?;
    let mut y = x.clone();
    for row in y.data_mut().chunks_exact_mut(c) {
        let max = row.iter().copied().fold(T::neg_infinity(), T::max);
        let log_sum = row.iter().map(|&v| (v - max).exp()).sum::<T>().ln();
        row.iter_mut().for_each(|v| *v = *v - max - log_sum);
    }
    Ok(y)
}

/// Gradient of [`log_softmax`] given its output `y`:
/// `dx = dy - softmax(x) * sum(dy)` per row.
///
/// # Errors
/// [`TensorError`] if the shapes differ or are not `[N, C]`.
pub fn log_softmax_backward<T: Float>(y: &Tensor<T>, dy: &Tensor<T>) -> Result<Tensor<T>> {
    let (_, c) = rows("log_softmax_backward", y)?;
    y.expect_same_shape("log_softmax_backward", dy)?;
    let mut dx = dy.clone();
    for (dx, y) in dx.data_mut().chunks_exact_mut(c).zip(y.data().chunks_exact(c)) {
        let total: T = dx.iter().copied().sum();
        dx.iter_mut().zip(y).for_each(|(d, &y)| *d = *d - y.exp() * total);
    }
    Ok(dx)
}

fn check_targets(op: &'static str, n: usize, c: usize, targets: &[usize]) -> Result<()> {
    if targets.len() != n {
        return Err(TensorError::invalid(op, format!("{} targets given for a batch of {n}", targets.len())));
    }
    if let Some((i, &t)) = targets.iter().enumerate().find(|&(_, &t)| t >= c) {
        return Err(TensorError::invalid(op, format!("target {t} of sample {i} is not a class index in 0..{c}")));
    }
    Ok(())
}

/// Mean cross-entropy between the softmax of `logits` and class `targets`.
/// Returns the loss and the softmax probabilities (which the backward pass needs).
///
/// PyTorch equivalent: `torch.nn.functional.cross_entropy(logits, targets)`.
///
/// # Errors
/// [`TensorError`] if `logits` is not `[N, C]` with `N >= 1`, or `targets`
/// does not hold `N` indices below `C`.
pub fn cross_entropy<T: Float>(logits: &Tensor<T>, targets: &[usize]) -> Result<(T, Tensor<T>)> {
    cross_entropy_smoothed(logits, targets, 0.0)
}

/// [`cross_entropy`] against targets smoothed towards the uniform
/// distribution: the target class gets `1 - smoothing + smoothing / C` and
/// every other class `smoothing / C` (Szegedy et al., "Rethinking the
/// Inception Architecture", CVPR 2016). Returns the loss and the softmax
/// probabilities.
///
/// PyTorch equivalent: `torch.nn.functional.cross_entropy(logits, targets, label_smoothing=smoothing)`.
///
/// # Errors
/// As [`cross_entropy`], and [`TensorError::InvalidArgument`] if
/// `smoothing` is not in `[0, 1]`.
pub fn cross_entropy_smoothed<T: Float>(
    logits: &Tensor<T>,
    targets: &[usize],
    smoothing: f64,
) -> Result<(T, Tensor<T>)> {
    let op = "cross_entropy";
    let (n, c) = rows(op, logits)?;
    if n == 0 {
        return Err(TensorError::invalid(op, "the mean over an empty batch is undefined"));
    }
    check_targets(op, n, c, targets)?;
    check_smoothing(op, smoothing)?;
    let mut log_probs = log_softmax(logits)?;
    let uniform = smoothing / c as f64;
    let loss: f64 = log_probs
        .data()
        .chunks_exact(c)
        .zip(targets)
        .map(|(row, &t)| {
            let all: f64 = row.iter().map(|v| v.as_f64()).sum();
            -(1.0 - smoothing) * row[t].as_f64() - uniform * all
        })
        .sum();
    log_probs.data_mut().iter_mut().for_each(|v| *v = v.exp());
    Ok((T::from_f64(loss / n as f64), log_probs))
}

fn check_smoothing(op: &'static str, smoothing: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&smoothing) {
        return Err(TensorError::invalid(op, format!("label smoothing {smoothing} must be in [0, 1]")));
    }
    Ok(())
}

/// Gradient of [`cross_entropy`] with respect to the logits, scaled by the
/// upstream gradient `dloss`: `(softmax - one_hot(targets)) * dloss / N`.
///
/// # Errors
/// [`TensorError`] if `probs` is not `[N, C]` or the targets do not match it.
pub fn cross_entropy_backward<T: Float>(probs: &Tensor<T>, targets: &[usize], dloss: T) -> Result<Tensor<T>> {
    cross_entropy_smoothed_backward(probs, targets, 0.0, dloss)
}

/// Gradient of [`cross_entropy_smoothed`] with respect to the logits:
/// `(softmax - smoothed_targets) * dloss / N`.
///
/// # Errors
/// As [`cross_entropy_backward`], and if `smoothing` is not in `[0, 1]`.
pub fn cross_entropy_smoothed_backward<T: Float>(
    probs: &Tensor<T>,
    targets: &[usize],
    smoothing: f64,
    dloss: T,
) -> Result<Tensor<T>> {
    let op = "cross_entropy_backward";
    let (n, c) = rows(op, probs)?;
    check_targets(op, n, c, targets)?;
    check_smoothing(op, smoothing)?;
    let scale = dloss / T::from_usize(n.max(1));
    let (uniform, keep) = (T::from_f64(smoothing / c as f64), T::from_f64(1.0 - smoothing));
    let mut dx = probs.clone();
    for (row, &t) in dx.data_mut().chunks_exact_mut(c).zip(targets) {
        row.iter_mut().for_each(|v| *v = *v - uniform);
        row[t] = row[t] - keep;
        row.iter_mut().for_each(|v| *v = *v * scale);
    }
    Ok(dx)
}

/// Sizes `(outer, len, inner)` around `axis`, rejecting an out-of-range or
/// empty axis.
fn around_axis(op: &'static str, dims: &[usize], axis: usize) -> Result<(usize, usize, usize)> {
    let sizes = crate::shape::around_axis(op, dims, axis)?;
    if sizes.1 == 0 {
        return Err(TensorError::invalid(op, format!("axis {axis} of shape {dims:?} is empty")));
    }
    Ok(sizes)
}

/// `exp(x - max) / sum(exp(x - max))` along `axis`; subtracting the maximum
/// keeps logits that are far apart (1e4, say) from overflowing.
///
/// PyTorch equivalent: `torch.softmax(x, dim=axis)`.
///
/// # Errors
/// [`TensorError::InvalidArgument`] if `axis` is out of range or empty.
pub fn softmax<T: Float>(x: &Tensor<T>, axis: usize) -> Result<Tensor<T>> {
    let (outer, len, inner) = around_axis("softmax", x.dims(), axis)?;
    let mut y = x.clone();
    let data = y.data_mut();
    for o in 0..outer {
        for i in 0..inner {
            let at = |l: usize| (o * len + l) * inner + i;
            let max = (0..len).map(|l| data[at(l)]).fold(T::neg_infinity(), T::max);
            let mut total = T::zero();
            for l in 0..len {
                data[at(l)] = (data[at(l)] - max).exp();
                total = total + data[at(l)];
            }
            for l in 0..len {
                data[at(l)] = data[at(l)] / total;
            }
        }
    }
    Ok(y)
}

/// Gradient of [`softmax`] given its output `y`:
/// `dx = y * (dy - sum(dy * y))`, the sum along `axis`.
///
/// # Errors
/// [`TensorError`] if the shapes differ or `axis` is out of range or empty.
pub fn softmax_backward<T: Float>(y: &Tensor<T>, dy: &Tensor<T>, axis: usize) -> Result<Tensor<T>> {
    let (outer, len, inner) = around_axis("softmax_backward", y.dims(), axis)?;
    y.expect_same_shape("softmax_backward", dy)?;
    let mut dx = dy.clone();
    for o in 0..outer {
        for i in 0..inner {
            let at = |l: usize| (o * len + l) * inner + i;
            let dot: T = (0..len).map(|l| dy.data()[at(l)] * y.data()[at(l)]).sum();
            for l in 0..len {
                dx.data_mut()[at(l)] = y.data()[at(l)] * (dy.data()[at(l)] - dot);
            }
        }
    }
    Ok(dx)
}

/// `log(softmax(x))` along `axis`, computed as `x - max - log(sum(exp(x - max)))`
/// so that large logits do not overflow and tiny probabilities keep their
/// precision.
///
/// PyTorch equivalent: `torch.log_softmax(x, dim=axis)`.
///
/// # Errors
/// [`TensorError::InvalidArgument`] if `axis` is out of range or empty.
pub fn log_softmax_axis<T: Float>(x: &Tensor<T>, axis: usize) -> Result<Tensor<T>> {
    let (outer, len, inner) = around_axis("log_softmax_axis", x.dims(), axis)?;
    let mut y = x.clone();
    let data = y.data_mut();
    for o in 0..outer {
        for i in 0..inner {
            let at = |l: usize| (o * len + l) * inner + i;
            let max = (0..len).map(|l| data[at(l)]).fold(T::neg_infinity(), T::max);
            let log_sum = (0..len).map(|l| (data[at(l)] - max).exp()).sum::<T>().ln();
            for l in 0..len {
                data[at(l)] = data[at(l)] - max - log_sum;
            }
        }
    }
    Ok(y)
}

/// Gradient of [`log_softmax_axis`] given its output `y`:
/// `dx = dy - softmax(x) * sum(dy)`, the sum along `axis`.
///
/// # Errors
/// [`TensorError`] if the shapes differ or `axis` is out of range or empty.
pub fn log_softmax_axis_backward<T: Float>(y: &Tensor<T>, dy: &Tensor<T>, axis: usize) -> Result<Tensor<T>> {
    let (outer, len, inner) = around_axis("log_softmax_axis_backward", y.dims(), axis)?;
    y.expect_same_shape("log_softmax_axis_backward", dy)?;
    let mut dx = dy.clone();
    for o in 0..outer {
        for i in 0..inner {
            let at = |l: usize| (o * len + l) * inner + i;
            let total: T = (0..len).map(|l| dy.data()[at(l)]).sum();
            for l in 0..len {
                dx.data_mut()[at(l)] = dy.data()[at(l)] - y.data()[at(l)].exp() * total;
            }
        }
    }
    Ok(dx)
}
