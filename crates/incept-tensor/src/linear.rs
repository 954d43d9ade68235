//! Fully connected layers through GEMM.

use crate::gemm::{MatRef, gemm_par};
use crate::{Float, Result, Tensor, TensorError};

fn check<T: Float>(op: &'static str, x: &Tensor<T>, weight: &Tensor<T>) -> Result<(usize, usize, usize)> {
    let &[n, f_in] = x.expect_rank(op, 2)? else { unreachable!() };
    let &[f_out, w_in] = weight.expect_rank(op, 2)? else { unreachable!() };
    if w_in != f_in {
        return Err(TensorError::mismatch(
            op,
            &[x.dims(), weight.dims()],
            format!(
                "the input has {f_in} features but the weight expects {w_in} (weight is [out_features, in_features])"
            ),
        ));
    }
    Ok((n, f_in, f_out))
}

/// `y = x W^T + b`.
///
/// PyTorch equivalent: `torch.nn.functional.linear(x, weight, bias)`.
///
/// # Shapes
/// `x` is `[N, in]`, `weight` is `[out, in]`, `bias` is `[out]`; the output is `[N, out]`.
///
/// # Errors
/// [`TensorError`] if a tensor has the wrong rank or the feature counts disagree.
pub fn linear<T: Float>(x: &Tensor<T>, weight: &Tensor<T>, bias: Option<&Tensor<T>>) -> Result<Tensor<T>> {
    let (n, f_in, f_out) = check("linear", x, weight)?;
    let mut y = Tensor::zeros([n, f_out]);
    if let Some(bias) = bias {
        if bias.dims() != [f_out] {
            return Err(TensorError::mismatch(
                "linear",
                &[weight.dims(), bias.dims()],
                format!("the bias must have shape [{f_out}]"),
            ));
        }
        if f_out > 0 {
            for row in y.data_mut().chunks_exact_mut(f_out) {
                row.copy_from_slice(bias.data());
            }
        }
    }
    // Y[N x out] = X[N x in] * W^T[in x out] + Y (the bias rows)
    gemm_par(
        T::one(),
        MatRef::row_major(x.data(), n, f_in),
        MatRef::row_major(weight.data(), f_out, f_in).t(),
        T::one(),
        y.data_mut(),
    );
    Ok(y)
}

/// Gradients of [`linear`]: `(dx, dW, db)` given the upstream gradient `dy` (`[N, out]`).
///
/// # Errors
/// [`TensorError`] if the shapes disagree with the forward pass.
pub fn linear_backward<T: Float>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    dy: &Tensor<T>,
) -> Result<(Tensor<T>, Tensor<T>, Tensor<T>)> {
    let (n, f_in, f_out) = check("linear_backward", x, weight)?;
    if dy.dims() != [n, f_out] {
        return Err(TensorError::mismatch(
            "linear_backward",
            &[x.dims(), weight.dims(), dy.dims()],
            format!("the output gradient must be [{n}, {f_out}]"),
        ));
    }
    let dy_mat = MatRef::row_major(dy.data(), n, f_out);
    let mut dx = Tensor::zeros([n, f_in]);
    // dX[N x in] = dY[N x out] * W[out x in]
    gemm_par(T::one(), dy_mat, MatRef::row_major(weight.data(), f_out, f_in), T::zero(), dx.data_mut());
    let mut dw = Tensor::zeros([f_out, f_in]);
    // dW[out x in] = dY^T[out x N] * X[N x in]
    gemm_par(T::one(), dy_mat.t(), MatRef::row_major(x.data(), n, f_in), T::zero(), dw.data_mut());
    let mut db = vec![T::zero(); f_out];
    if f_out > 0 {
        for row in dy.data().chunks_exact(f_out) {
            db.iter_mut().zip(row).for_each(|(d, &g)| *d = *d + g);
        }
    }
    Ok((dx, dw, Tensor::from_vec(db, [f_out])?))
}
