//! Differentiable batch normalisation.

use incept_tensor::batch_norm::{BatchNormStats, batch_norm2d_backward, batch_norm2d_eval, batch_norm2d_train};
use incept_tensor::{Float, Tensor};

use crate::{Result, Tape, Var};

impl<T: Float> Tape<T> {
    /// Training-mode batch normalisation over the channels of `x`. Returns the
    /// output and the batch statistics (for the running-statistics update).
    ///
    /// # Errors
    /// As [`incept_tensor::batch_norm::batch_norm2d_train`].
    pub fn batch_norm2d_train(
        &self,
        x: &Var<T>,
        gamma: &Var<T>,
        beta: &Var<T>,
        eps: T,
    ) -> Result<(Var<T>, BatchNormStats<T>)> {
        let (y, stats) = batch_norm2d_train(x.value(), gamma.value(), beta.value(), eps)?;
        let (x_saved, gamma_saved, stats_saved) = (x.shared_value(), gamma.shared_value(), stats.clone());
        let y = self.record(
            y,
            &[x, gamma, beta],
            Box::new(move |dy: &Tensor<T>| {
                let (dx, dgamma, dbeta) = batch_norm2d_backward(&x_saved, &gamma_saved, &stats_saved, dy)?;
                Ok(vec![Some(dx), Some(dgamma), Some(dbeta)])
            }),
        );
        Ok((y, stats))
    }

    /// Eval-mode batch normalisation with fixed running statistics, an
    /// affine map per channel: `y = gamma * (x - mean) / sqrt(var + eps) + beta`.
    ///
    /// # Errors
    /// As [`incept_tensor::batch_norm::batch_norm2d_eval`].
    pub fn batch_norm2d_eval(
        &self,
        x: &Var<T>,
        gamma: &Var<T>,
        beta: &Var<T>,
        running_mean: &Tensor<T>,
        running_var: &Tensor<T>,
        eps: T,
    ) -> Result<Var<T>> {
        let y = batch_norm2d_eval(x.value(), gamma.value(), beta.value(), running_mean, running_var, eps)?;
        let [_, c, h, w] = [y.dims()[0], y.dims()[1], y.dims()[2], y.dims()[3]];
        let plane = h * w;
        let inv_std: Vec<T> = running_var.data().iter().map(|&v| T::one() / (v + eps).sqrt()).collect();
        let (x_saved, gamma_saved, mean) = (x.shared_value(), gamma.shared_value(), running_mean.data().to_vec());
        Ok(self.record(
            y,
            &[x, gamma, beta],
            Box::new(move |dy: &Tensor<T>| {
                let mut dx = dy.clone();
                let mut dgamma = vec![T::zero(); c];
                let mut dbeta = vec![T::zero(); c];
                if plane > 0 {
                    for (p, (dx, x)) in
                        dx.data_mut().chunks_exact_mut(plane).zip(x_saved.data().chunks_exact(plane)).enumerate()
                    {
                        let ch = p % c;
                        for (d, &x) in dx.iter_mut().zip(x) {
                            dbeta[ch] = dbeta[ch] + *d;
                            dgamma[ch] = dgamma[ch] + *d * (x - mean[ch]) * inv_std[ch];
                            *d = *d * gamma_saved.data()[ch] * inv_std[ch];
                        }
                    }
                }
                Ok(vec![Some(dx), Some(Tensor::from_vec(dgamma, [c])?), Some(Tensor::from_vec(dbeta, [c])?)])
            }),
        ))
    }
}
