//! Naive reference kernels: direct loops in f64, written for obviousness
//! rather than speed. Tests use them as the oracle for the fast kernels.
//!
//! Each function takes the same geometry structs as its fast twin and
//! assumes the inputs already passed the fast kernel's validation, so these
//! functions panic on malformed input instead of returning errors.

use crate::Tensor;
use crate::conv::Conv2dParams;
use crate::pool::Pool2dParams;

fn nchw(x: &Tensor<f64>) -> [usize; 4] {
    let d = x.dims();
    assert_eq!(d.len(), 4, "reference kernels take NCHW tensors");
    [d[0], d[1], d[2], d[3]]
}

/// Reads `x[n, c, y, x]`, or 0 where `(y, x)` lies in the padding.
fn at_or_zero(x: &Tensor<f64>, n: usize, c: usize, y: isize, col: isize) -> f64 {
    let [_, cs, h, w] = nchw(x);
    if y < 0 || col < 0 || y >= h as isize || col >= w as isize {
        return 0.0;
    }
    x.data()[((n * cs + c) * h + y as usize) * w + col as usize]
}

/// Direct 7-loop convolution. Output channel `o` reads the `c_in / groups`
/// input channels of its group, `o / (c_out / groups)`.
pub fn conv2d(x: &Tensor<f64>, weight: &Tensor<f64>, bias: Option<&Tensor<f64>>, p: Conv2dParams) -> Tensor<f64> {
    let [n, _, h, w] = nchw(x);
    let [c_out, c_in, k_h, k_w] = nchw(weight);
    let h_out = p.h_out(h, k_h).expect("kernel fits");
    let w_out = p.w_out(w, k_w).expect("kernel fits");
    let mut y = Tensor::zeros([n, c_out, h_out, w_out]);
    let out = y.data_mut();
    for b in 0..n {
        for o in 0..c_out {
            for oy in 0..h_out {
                for ox in 0..w_out {
                    let mut acc = bias.map_or(0.0, |b| b.data()[o]);
                    let first_channel = o / (c_out / p.groups) * c_in;
                    for c in 0..c_in {
                        for i in 0..k_h {
                            for j in 0..k_w {
                                let iy = (oy * p.stride.0 + i * p.dilation.0) as isize - p.padding.0 as isize;
                                let ix = (ox * p.stride.1 + j * p.dilation.1) as isize - p.padding.1 as isize;
                                let input = at_or_zero(x, b, first_channel + c, iy, ix);
                                acc += weight.data()[((o * c_in + c) * k_h + i) * k_w + j] * input;
                            }
                        }
                    }
                    out[((b * c_out + o) * h_out + oy) * w_out + ox] = acc;
                }
            }
        }
    }
    y
}

/// Direct-loop gradients of [`conv2d`], groups included: `(dx, dweight, dbias)`.
pub fn conv2d_backward(
    x: &Tensor<f64>,
    weight: &Tensor<f64>,
    dy: &Tensor<f64>,
    p: Conv2dParams,
) -> (Tensor<f64>, Tensor<f64>, Tensor<f64>) {
    let [n, c_in_total, h, w] = nchw(x);
    let [c_out, c_in, k_h, k_w] = nchw(weight);
    let [_, _, h_out, w_out] = nchw(dy);
    let mut dx = Tensor::zeros(x.dims());
    let mut dw = Tensor::zeros(weight.dims());
    let mut db = Tensor::zeros([c_out]);
    for b in 0..n {
        for o in 0..c_out {
            for oy in 0..h_out {
                for ox in 0..w_out {
                    let g = dy.data()[((b * c_out + o) * h_out + oy) * w_out + ox];
                    db.data_mut()[o] += g;
                    let first_channel = o / (c_out / p.groups) * c_in;
                    for c in 0..c_in {
                        for i in 0..k_h {
                            for j in 0..k_w {
                                let iy = (oy * p.stride.0 + i * p.dilation.0) as isize - p.padding.0 as isize;
                                let ix = (ox * p.stride.1 + j * p.dilation.1) as isize - p.padding.1 as isize;
                                let w_idx = ((o * c_in + c) * k_h + i) * k_w + j;
                                dw.data_mut()[w_idx] += g * at_or_zero(x, b, first_channel + c, iy, ix);
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    let channel = first_channel + c;
                                    let x_idx = ((b * c_in_total + channel) * h + iy as usize) * w + ix as usize;
                                    dx.data_mut()[x_idx] += g * weight.data()[w_idx];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

/// Max pooling over an explicitly padded copy of the input (padding is
/// -inf); ties go to the first maximum in row-major window order and the
/// last NaN wins over numbers. Returns
/// the output and the flat in-plane index of each maximum.
pub fn max_pool2d(x: &Tensor<f64>, p: Pool2dParams) -> (Tensor<f64>, Vec<u32>) {
    let [n, c, h, w] = nchw(x);
    let h_out = p.h_out(h).expect("window fits");
    let w_out = p.w_out(w).expect("window fits");
    let mut y = Tensor::zeros([n, c, h_out, w_out]);
    let mut indices = vec![0u32; n * c * h_out * w_out];
    for plane in 0..n * c {
        for oy in 0..h_out {
            for ox in 0..w_out {
                let mut best = f64::NEG_INFINITY;
                let mut best_idx = u32::MAX;
                for i in 0..p.kernel.0 {
                    for j in 0..p.kernel.1 {
                        let iy = (oy * p.stride.0 + i) as isize - p.padding.0 as isize;
                        let ix = (ox * p.stride.1 + j) as isize - p.padding.1 as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let idx = iy as usize * w + ix as usize;
                        let v = x.data()[plane * h * w + idx];
                        // PyTorch's rule: a larger value or any NaN takes over.
                        if best_idx == u32::MAX || v > best || v.is_nan() {
                            best = v;
                            best_idx = idx as u32;
                        }
                    }
                }
                let out = (plane * h_out + oy) * w_out + ox;
                y.data_mut()[out] = best;
                indices[out] = best_idx;
            }
        }
    }
    (y, indices)
}

/// Adaptive average pooling with PyTorch's window bounds
/// `[floor(i * H / out), ceil((i + 1) * H / out))`.
pub fn adaptive_avg_pool2d(x: &Tensor<f64>, out_h: usize, out_w: usize) -> Tensor<f64> {
    let [n, c, h, w] = nchw(x);
    let mut y = Tensor::zeros([n, c, out_h, out_w]);
    for plane in 0..n * c {
        for oy in 0..out_h {
            let (y0, y1) = ((oy * h) / out_h, ((oy + 1) * h).div_ceil(out_h));
            for ox in 0..out_w {
                let (x0, x1) = ((ox * w) / out_w, ((ox + 1) * w).div_ceil(out_w));
                let mut sum = 0.0;
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        sum += x.data()[(plane * h + iy) * w + ix];
                    }
                }
                y.data_mut()[(plane * out_h + oy) * out_w + ox] = sum / ((y1 - y0) * (x1 - x0)) as f64;
            }
        }
    }
    y
}

/// Batch normalisation with the given per-channel mean and variance.
pub fn batch_norm2d(x: &Tensor<f64>, gamma: &[f64], beta: &[f64], mean: &[f64], var: &[f64], eps: f64) -> Tensor<f64> {
    let [n, c, h, w] = nchw(x);
    let mut y = x.clone();
    for b in 0..n {
        for ch in 0..c {
            for i in 0..h * w {
                let idx = (b * c + ch) * h * w + i;
                y.data_mut()[idx] = gamma[ch] * (x.data()[idx] - mean[ch]) / (var[ch] + eps).sqrt() + beta[ch];
            }
        }
    }
    y
}

/// Per-channel mean and biased variance of an NCHW tensor.
pub fn channel_stats(x: &Tensor<f64>) -> (Vec<f64>, Vec<f64>) {
    let [n, c, h, w] = nchw(x);
    let count = (n * h * w) as f64;
    let mut mean = vec![0.0; c];
    let mut var = vec![0.0; c];
    for ch in 0..c {
        let values = || (0..n).flat_map(move |b| (0..h * w).map(move |i| x.data()[(b * c + ch) * h * w + i]));
        mean[ch] = values().sum::<f64>() / count;
        var[ch] = values().map(|v| (v - mean[ch]).powi(2)).sum::<f64>() / count;
    }
    (mean, var)
}

/// `y[i, o] = sum_k x[i, k] * weight[o, k] + bias[o]`.
pub fn linear(x: &Tensor<f64>, weight: &Tensor<f64>, bias: Option<&Tensor<f64>>) -> Tensor<f64> {
    let (n, f_in) = (x.dims()[0], x.dims()[1]);
    let f_out = weight.dims()[0];
    let mut y = Tensor::zeros([n, f_out]);
    for i in 0..n {
        for o in 0..f_out {
            let mut acc = bias.map_or(0.0, |b| b.data()[o]);
            for k in 0..f_in {
                acc += x.data()[i * f_in + k] * weight.data()[o * f_in + k];
            }
            y.data_mut()[i * f_out + o] = acc;
        }
    }
    y
}

/// `log(exp(x_j) / sum_k exp(x_k))` per row, from the textbook definition
/// with the row maximum subtracted first.
pub fn log_softmax(x: &Tensor<f64>) -> Tensor<f64> {
    let c = x.dims()[1];
    let mut y = x.clone();
    for row in y.data_mut().chunks_mut(c) {
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let denom: f64 = row.iter().map(|v| (v - max).exp()).sum();
        for v in row.iter_mut() {
            *v = ((*v - max).exp() / denom).ln();
        }
    }
    y
}

/// Mean of `-log_softmax(x)[i, targets[i]]`.
pub fn cross_entropy(logits: &Tensor<f64>, targets: &[usize]) -> f64 {
    let c = logits.dims()[1];
    let lp = log_softmax(logits);
    let total: f64 = targets.iter().enumerate().map(|(i, &t)| -lp.data()[i * c + t]).sum();
    total / targets.len() as f64
}

/// Local response normalisation across channels from its definition:
/// `y_c = x_c / (k + alpha / size * sum of x_c'^2 over c' in c - size/2 ..= c + (size-1)/2)^beta`.
pub fn lrn(x: &Tensor<f64>, params: crate::lrn::LrnParams) -> Tensor<f64> {
    let [n, c, h, w] = nchw(x);
    let mut y = x.clone();
    let at = |b: usize, ch: usize, i: usize| x.data()[(b * c + ch) * h * w + i];
    for b in 0..n {
        for ch in 0..c {
            for i in 0..h * w {
                let lo = ch as isize - (params.size / 2) as isize;
                let hi = ch as isize + ((params.size - 1) / 2) as isize;
                let mut sum = 0.0;
                for other in lo..=hi {
                    if other >= 0 && (other as usize) < c {
                        sum += at(b, other as usize, i).powi(2);
                    }
                }
                let base = params.k + params.alpha / params.size as f64 * sum;
                y.data_mut()[(b * c + ch) * h * w + i] = at(b, ch, i) / base.powf(params.beta);
            }
        }
    }
    y
}

/// Average pooling from PyTorch's definition: the window `[o * s - p, o * s - p + k)`
/// is cut at `size + p`; with `count_include_pad` the cut window's area is the
/// divisor, otherwise the number of input elements in it.
pub fn avg_pool2d(x: &Tensor<f64>, p: Pool2dParams, count_include_pad: bool) -> Tensor<f64> {
    let [n, c, h, w] = nchw(x);
    let h_out = p.h_out(h).expect("window fits");
    let w_out = p.w_out(w).expect("window fits");
    let mut y = Tensor::zeros([n, c, h_out, w_out]);
    for plane in 0..n * c {
        for oy in 0..h_out {
            for ox in 0..w_out {
                let (mut sum, mut inside, mut padded) = (0.0, 0usize, 0usize);
                for i in 0..p.kernel.0 {
                    for j in 0..p.kernel.1 {
                        let iy = (oy * p.stride.0 + i) as isize - p.padding.0 as isize;
                        let ix = (ox * p.stride.1 + j) as isize - p.padding.1 as isize;
                        if iy >= (h + p.padding.0) as isize || ix >= (w + p.padding.1) as isize {
                            continue;
                        }
                        padded += 1;
                        if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize {
                            sum += x.data()[(plane * h + iy as usize) * w + ix as usize];
                            inside += 1;
                        }
                    }
                }
                let divisor = if count_include_pad { padded } else { inside };
                y.data_mut()[(plane * h_out + oy) * w_out + ox] = sum / divisor as f64;
            }
        }
    }
    y
}

/// Triple-loop matrix product of `[m, k]` and `[k, n]`.
pub fn matmul(a: &Tensor<f64>, b: &Tensor<f64>) -> Tensor<f64> {
    let (m, k, n) = (a.dims()[0], a.dims()[1], b.dims()[1]);
    let mut c = Tensor::zeros([m, n]);
    for i in 0..m {
        for j in 0..n {
            c.data_mut()[i * n + j] = (0..k).map(|p| a.data()[i * k + p] * b.data()[p * n + j]).sum();
        }
    }
    c
}
