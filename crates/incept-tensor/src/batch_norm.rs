//! Batch normalisation over the channels of an NCHW tensor.
//!
//! Ioffe and Szegedy, "Batch Normalization: Accelerating Deep Network
//! Training by Reducing Internal Covariate Shift", ICML 2015.

use rayon::prelude::*;

use crate::{Float, Result, Tensor, TensorError};

/// Per-channel statistics of a training-mode forward pass, kept for the
/// backward pass and for the running-statistics update.
#[derive(Clone, Debug)]
pub struct BatchNormStats<T: Float> {
    /// Batch mean per channel.
    pub mean: Vec<T>,
    /// Biased batch variance per channel (divided by `N * H * W`).
    pub var: Vec<T>,
    /// `1 / sqrt(var + eps)` per channel.
    pub inv_std: Vec<T>,
    /// Elements per channel, `N * H * W`.
    pub count: usize,
}

fn check<T: Float>(op: &'static str, x: &Tensor<T>, per_channel: &[(&str, &Tensor<T>)]) -> Result<[usize; 4]> {
    let &[n, c, h, w] = x.expect_rank(op, 4)? else { unreachable!() };
    for (name, t) in per_channel {
        if t.dims() != [c] {
            return Err(TensorError::mismatch(
                op,
                &[x.dims(), t.dims()],
                format!("{name} must have shape [{c}], one value per channel"),
            ));
        }
    }
    Ok([n, c, h, w])
}

/// Applies `y = gamma * (x - mean) * inv_std + beta` plane by plane.
fn normalize<T: Float>(x: &Tensor<T>, c: usize, mean: &[T], inv_std: &[T], gamma: &[T], beta: &[T]) -> Tensor<T> {
    let plane = x.dims()[2] * x.dims()[3];
    let mut y = Tensor::zeros(x.dims());
    if plane == 0 {
        return y;
    }
    y.data_mut().par_chunks_mut(plane).zip(x.data().par_chunks(plane)).enumerate().for_each(|(p, (y, x))| {
        let ch = p % c;
        let scale = gamma[ch] * inv_std[ch];
        let shift = beta[ch] - mean[ch] * scale;
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x * scale + shift;
        }
    });
    y
}

/// Training-mode batch normalisation: normalises each channel with the
/// mean and biased variance of this batch.
///
/// PyTorch equivalent: `torch.nn.functional.batch_norm(x, None, None, gamma,
/// beta, training=True, eps=eps)`.
///
/// # Shapes
/// `x` is `[N, C, H, W]`; `gamma` and `beta` are `[C]`; the output has the
/// shape of `x`.
///
/// # Errors
/// [`TensorError`] if `x` is not 4-D, `gamma` or `beta` is not `[C]`, a
/// channel has fewer than two elements (its variance is undefined), or
/// `eps` is not positive.
pub fn batch_norm2d_train<T: Float>(
    x: &Tensor<T>,
    gamma: &Tensor<T>,
    beta: &Tensor<T>,
    eps: T,
) -> Result<(Tensor<T>, BatchNormStats<T>)> {
    let op = "batch_norm2d_train";
    let [n, c, h, w] = check(op, x, &[("gamma", gamma), ("beta", beta)])?;
    let count = n * h * w;
    if count < 2 {
        return Err(TensorError::invalid(
            op,
            format!(
                "each channel has {count} element(s) for input {:?}; training mode needs at least 2 (use a larger batch or eval mode)",
                x.dims()
            ),
        ));
    }
    if eps.partial_cmp(&T::zero()) != Some(std::cmp::Ordering::Greater) {
        return Err(TensorError::invalid(op, format!("eps = {eps} must be positive")));
    }
    let plane = h * w;
    let data = x.data();
    // Two passes per channel (mean, then squared deviations) for accuracy
    // with large means; the sums run in f64.
    let (mean, var): (Vec<T>, Vec<T>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = || (0..n).map(move |i| &data[(i * c + ch) * plane..(i * c + ch + 1) * plane]);
            let mut sum = 0.0f64;
            for p in planes() {
                sum += p.iter().map(|v| v.as_f64()).sum::<f64>();
            }
            let mean = sum / count as f64;
            let mut sq = 0.0f64;
            for p in planes() {
                sq += p.iter().map(|v| (v.as_f64() - mean) * (v.as_f64() - mean)).sum::<f64>();
            }
            (T::from_f64(mean), T::from_f64(sq / count as f64))
        })
        .unzip();
    let inv_std: Vec<T> = var.iter().map(|&v| T::one() / (v + eps).sqrt()).collect();
    let y = normalize(x, c, &mean, &inv_std, gamma.data(), beta.data());
    Ok((y, BatchNormStats { mean, var, inv_std, count }))
}

/// Eval-mode batch normalisation with running statistics.
///
/// PyTorch equivalent: `torch.nn.functional.batch_norm(x, running_mean,
/// running_var, gamma, beta, training=False, eps=eps)`.
///
/// # Errors
/// [`TensorError`] if `x` is not 4-D, a per-channel tensor is not `[C]`,
/// `eps` is not positive, a running variance is negative or not finite, or
/// a running mean is not finite.
pub fn batch_norm2d_eval<T: Float>(
    x: &Tensor<T>,
    gamma: &Tensor<T>,
    beta: &Tensor<T>,
    running_mean: &Tensor<T>,
    running_var: &Tensor<T>,
    eps: T,
) -> Result<Tensor<T>> {
    let op = "batch_norm2d_eval";
    let [_, c, _, _] = check(
        op,
        x,
        &[("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)],
    )?;
    check_running_stats(op, running_mean, running_var, eps)?;
    let inv_std: Vec<T> = running_var.data().iter().map(|&v| T::one() / (v + eps).sqrt()).collect();
    Ok(normalize(x, c, running_mean.data(), &inv_std, gamma.data(), beta.data()))
}

/// Checks the operands that eval-mode normalisation divides by and
/// subtracts. `eps` must be positive, every running variance finite and
/// non-negative, and every running mean finite.
fn check_running_stats<T: Float>(
    op: &'static str,
    running_mean: &Tensor<T>,
    running_var: &Tensor<T>,
    eps: T,
) -> Result<()> {
    if eps.partial_cmp(&T::zero()) != Some(std::cmp::Ordering::Greater) {
        return Err(TensorError::invalid(op, format!("eps = {eps} must be positive")));
    }
    if let Some(bad) = running_var.data().iter().find(|v| !(v.is_finite() && **v >= T::zero())) {
        return Err(TensorError::invalid(
            op,
            format!("running variance {bad} must be finite and non-negative; the statistics are corrupt"),
        ));
    }
    if let Some(bad) = running_mean.data().iter().find(|v| !v.is_finite()) {
        return Err(TensorError::invalid(op, format!("running mean {bad} must be finite; the statistics are corrupt")));
    }
    Ok(())
}

/// A convolution's weight and bias with an eval-mode batch normalisation
/// folded in, from [`fold_batch_norm`].
#[derive(Clone, Debug)]
pub struct FoldedConv<T: Float> {
    /// `weight * s` with `s = gamma / sqrt(running_var + eps)` per output
    /// channel, in the convolution weight's shape.
    pub weight: Tensor<T>,
    /// `(bias - running_mean) * s + beta`, `[C_out]`, where `bias` is the
    /// convolution bias, or 0 without one.
    pub bias: Tensor<T>,
}

/// Folds eval-mode batch normalisation into the convolution before it, so
/// that `conv2d(x, folded.weight, Some(&folded.bias))` computes
/// `batch_norm2d_eval(conv2d(x, weight, bias), gamma, beta, running_mean, running_var, eps)`
/// in one pass. With `s = gamma / sqrt(running_var + eps)` per output
/// channel, the folded weight is `weight * s` and the folded bias is
/// `(bias - running_mean) * s + beta`.
///
/// Precision: `s` and the folded bias are computed in f64 and rounded to
/// `T` once, so `bias - running_mean` loses no digits to cancellation.
/// Each folded weight is one product in `T` of the weight and the rounded
/// `s`, at most about one ulp from the exact value. The unfolded pass
/// computes its per-channel scale in `T` with four roundings. Products in
/// f64 would save half an ulp, but over the 5.6M convolution weights of
/// the 224x224 GoogLeNet they took 0.82 ms against 0.53 ms in `T` (f32, one
/// thread, the machine of docs/performance.md).
///
/// Non-finite parameters make the folded values non-finite in the same
/// channels in which the unfolded pass produces non-finite outputs.
/// NOTE: a finite `weight * s` beyond `T`'s range (3.4e38 for f32)
/// overflows to infinity, where the unfolded pass, which scales the
/// convolution's output instead, can stay finite for small inputs. This
/// function does not check for it.
///
/// PyTorch equivalent: `torch.nn.utils.fusion.fuse_conv_bn_weights(weight,
/// bias, running_mean, running_var, eps, gamma, beta)`.
///
/// # Shapes
/// `weight` is `[C_out, ...]` (any grouping; only the first axis is used);
/// `bias`, `gamma`, `beta`, `running_mean` and `running_var` are `[C_out]`.
///
/// # Errors
/// [`TensorError`] if `weight` has no axes or a per-channel tensor is not
/// `[C_out]`, and as [`batch_norm2d_eval`] for `eps` and the running statistics.
pub fn fold_batch_norm<T: Float>(
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    gamma: &Tensor<T>,
    beta: &Tensor<T>,
    running_mean: &Tensor<T>,
    running_var: &Tensor<T>,
    eps: T,
) -> Result<FoldedConv<T>> {
    let op = "fold_batch_norm";
    let Some(&c_out) = weight.dims().first() else {
        return Err(TensorError::invalid(op, "the weight is 0-D, but it needs an output-channel axis: [C_out, ...]"));
    };
    let per_channel = [("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)];
    for (name, t) in bias.map(|b| ("bias", b)).into_iter().chain(per_channel) {
        if t.dims() != [c_out] {
            return Err(TensorError::mismatch(
                op,
                &[weight.dims(), t.dims()],
                format!("{name} must have shape [{c_out}], one value per output channel"),
            ));
        }
    }
    check_running_stats(op, running_mean, running_var, eps)?;

    let row_len = weight.numel().checked_div(c_out).unwrap_or(0);
    let mut folded = Vec::with_capacity(weight.numel());
    let mut folded_bias = Vec::with_capacity(c_out);
    for o in 0..c_out {
        let scale = gamma.data()[o].as_f64() / (running_var.data()[o].as_f64() + eps.as_f64()).sqrt();
        let scale_t = T::from_f64(scale);
        folded.extend(weight.data()[o * row_len..(o + 1) * row_len].iter().map(|&w| w * scale_t));
        let b = bias.map_or(0.0, |b| b.data()[o].as_f64());
        folded_bias.push(T::from_f64((b - running_mean.data()[o].as_f64()) * scale + beta.data()[o].as_f64()));
    }
    Ok(FoldedConv { weight: Tensor::from_vec(folded, weight.dims())?, bias: Tensor::from_vec(folded_bias, [c_out])? })
}

/// Gradients of [`batch_norm2d_train`] with respect to `x`, `gamma` and `beta`.
///
/// With `x_hat = (x - mean) * inv_std` and `M = N * H * W` per channel:
/// `dbeta = sum(dy)`, `dgamma = sum(dy * x_hat)` and
/// `dx = gamma * inv_std / M * (M * dy - dbeta - x_hat * dgamma)`.
///
/// # Errors
/// [`TensorError`] if the shapes disagree with the forward pass.
pub fn batch_norm2d_backward<T: Float>(
    x: &Tensor<T>,
    gamma: &Tensor<T>,
    stats: &BatchNormStats<T>,
    dy: &Tensor<T>,
) -> Result<(Tensor<T>, Tensor<T>, Tensor<T>)> {
    let op = "batch_norm2d_backward";
    let [n, c, h, w] = check(op, x, &[("gamma", gamma)])?;
    x.expect_same_shape(op, dy)?;
    if stats.mean.len() != c || stats.count != n * h * w {
        return Err(TensorError::invalid(op, "the statistics come from an input of another shape"));
    }
    let plane = h * w;
    let (xd, dyd) = (x.data(), dy.data());
    let (dgamma, dbeta): (Vec<T>, Vec<T>) = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mean, inv_std) = (stats.mean[ch], stats.inv_std[ch]);
            let mut dgamma = 0.0f64;
            let mut dbeta = 0.0f64;
            for i in 0..n {
                let range = (i * c + ch) * plane..(i * c + ch + 1) * plane;
                for (&x, &g) in xd[range.clone()].iter().zip(&dyd[range]) {
                    dbeta += g.as_f64();
                    dgamma += (g * (x - mean) * inv_std).as_f64();
                }
            }
            (T::from_f64(dgamma), T::from_f64(dbeta))
        })
        .unzip();
    let mut dx = Tensor::zeros(x.dims());
    if plane > 0 {
        let m = T::from_usize(stats.count);
        dx.data_mut().par_chunks_mut(plane).zip(xd.par_chunks(plane).zip(dyd.par_chunks(plane))).enumerate().for_each(
            |(p, (dx, (x, dy)))| {
                let ch = p % c;
                let (mean, inv_std) = (stats.mean[ch], stats.inv_std[ch]);
                let scale = gamma.data()[ch] * inv_std / m;
                for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
                    let x_hat = (x - mean) * inv_std;
                    *dx = scale * (m * g - dbeta[ch] - x_hat * dgamma[ch]);
                }
            },
        );
    }
    Ok((dx, Tensor::from_vec(dgamma, [c])?, Tensor::from_vec(dbeta, [c])?))
}

/// Updates running statistics as PyTorch does:
/// `running = (1 - momentum) * running + momentum * batch`, using the
/// unbiased batch variance (`var * M / (M - 1)`).
///
/// # Errors
/// [`TensorError`] if the running tensors do not have one value per channel
/// of `stats`, or `momentum` is outside `[0, 1]`.
pub fn update_running_stats<T: Float>(
    running_mean: &mut Tensor<T>,
    running_var: &mut Tensor<T>,
    stats: &BatchNormStats<T>,
    momentum: T,
) -> Result<()> {
    let op = "update_running_stats";
    let c = stats.mean.len();
    if running_mean.dims() != [c] || running_var.dims() != [c] {
        return Err(TensorError::mismatch(
            op,
            &[running_mean.dims(), running_var.dims()],
            format!("running statistics must have shape [{c}]"),
        ));
    }
    if !(momentum >= T::zero() && momentum <= T::one()) {
        return Err(TensorError::invalid(op, format!("momentum = {momentum} must be in [0, 1]")));
    }
    let m = stats.count as f64;
    let unbias = T::from_f64(m / (m - 1.0).max(1.0));
    let keep = T::one() - momentum;
    for (r, &b) in running_mean.data_mut().iter_mut().zip(&stats.mean) {
        *r = keep * *r + momentum * b;
    }
    for (r, &v) in running_var.data_mut().iter_mut().zip(&stats.var) {
        *r = keep * *r + momentum * v * unbias;
    }
    Ok(())
}
