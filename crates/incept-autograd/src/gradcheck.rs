//! Finite-difference gradient checking in f64.

use incept_tensor::Tensor;

use crate::{AutogradError, Tape, Var};

/// The outcome of [`check_gradients`]: the worst disagreement between the
/// analytic and the numeric gradient, and where it occurred.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCheckReport {
    /// Largest `|analytic - numeric| / max(1, |analytic|, |numeric|)` over all
    /// checked elements: an absolute error for small gradients and a
    /// relative one for large gradients.
    pub max_error: f64,
    /// Input index and flat element index of the worst element.
    pub worst: (usize, usize),
    /// Analytic gradient at the worst element.
    pub analytic: f64,
    /// Central-difference gradient at the worst element.
    pub numeric: f64,
    /// Number of elements checked.
    pub checked: usize,
}

/// Compares the gradient that the tape computes for `f` with central
/// differences `(g(x + h) - g(x - h)) / 2h`, for every element of every input.
///
/// `f` maps the inputs (recorded as leaves) to an output of any shape. The
/// scalar differentiated is `g = sum(f(inputs) * r)` for a fixed random `r`,
/// so every output element carries a different, non-trivial upstream gradient.
/// `f` must be deterministic (use fixed seeds for dropout). Parameters that
/// `f` records receive gradients of `g` in [`crate::Parameter::grad`], as in
/// any backward pass.
///
/// # Errors
/// Any error `f` or the backward pass returns; `f` may use any error type
/// that an [`AutogradError`] converts into.
pub fn check_gradients<E: From<AutogradError>>(
    inputs: &[Tensor<f64>],
    step: f64,
    f: impl Fn(&Tape<f64>, &[Var<f64>]) -> Result<Var<f64>, E>,
) -> Result<GradCheckReport, E> {
    let tape = Tape::new();
    let vars: Vec<Var<f64>> = inputs.iter().map(|t| tape.leaf(t.clone())).collect();
    let output = f(&tape, &vars)?;
    let weights = Tensor::<f64>::rand_uniform(output.dims(), -1.0, 1.0, 0x5eed);
    let objective = |value: &Tensor<f64>| -> f64 { value.data().iter().zip(weights.data()).map(|(a, b)| a * b).sum() };
    let grads = tape.backward_with(&output, weights.clone())?;

    let evaluate = |inputs: &[Tensor<f64>]| -> Result<f64, E> {
        let tape = Tape::inference();
        let vars: Vec<Var<f64>> = inputs.iter().map(|t| Var::constant(t.clone())).collect();
        Ok(objective(f(&tape, &vars)?.value()))
    };
    let mut report = GradCheckReport { max_error: 0.0, worst: (0, 0), analytic: 0.0, numeric: 0.0, checked: 0 };
    let mut shifted = inputs.to_vec();
    for (i, var) in vars.iter().enumerate() {
        let zeros = Tensor::zeros(var.dims());
        let analytic = grads.get(var).unwrap_or(&zeros);
        for j in 0..inputs[i].numel() {
            let original = inputs[i].data()[j];
            shifted[i].data_mut()[j] = original + step;
            let plus = evaluate(&shifted)?;
            shifted[i].data_mut()[j] = original - step;
            let minus = evaluate(&shifted)?;
            shifted[i].data_mut()[j] = original;
            let numeric = (plus - minus) / (2.0 * step);
            let a = analytic.data()[j];
            let error = (a - numeric).abs() / 1f64.max(a.abs()).max(numeric.abs());
            report.checked += 1;
            if error > report.max_error || report.checked == 1 {
                report =
                    GradCheckReport { max_error: error, worst: (i, j), analytic: a, numeric, checked: report.checked };
            }
        }
    }
    Ok(report)
}
