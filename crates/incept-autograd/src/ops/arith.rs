//! Differentiable arithmetic and shape operations.

use std::sync::Arc;

use incept_tensor::elementwise::{
    add, add_scalar, concat_channels, concat_channels_relu, div, exp, ln, mul, relu_backward, scale, slice_channels,
    sqrt, sub, sum_all,
};
use incept_tensor::{Float, Tensor, TensorError};

use crate::{AutogradError, Result, Tape, Var};

impl<T: Float> Tape<T> {
    /// `a + b` with PyTorch's broadcasting rules. Like every rule here, its
    /// gradient is returned at the output's shape; the tape sums it down to
    /// each input's shape.
    ///
    /// # Errors
    /// A shape error if the shapes do not broadcast.
    pub fn add(&self, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        let y = add(a.value(), b.value())?;
        Ok(self.record(y, &[a, b], Box::new(|dy: &Tensor<T>| Ok(vec![Some(dy.clone()), Some(dy.clone())]))))
    }

    /// `a - b` with PyTorch's broadcasting rules.
    ///
    /// # Errors
    /// A shape error if the shapes do not broadcast.
    pub fn sub(&self, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        let y = sub(a.value(), b.value())?;
        Ok(self.record(y, &[a, b], Box::new(|dy: &Tensor<T>| Ok(vec![Some(dy.clone()), Some(scale(dy, -T::one()))]))))
    }

    /// `a / b` element by element with PyTorch's broadcasting rules.
    ///
    /// # Errors
    /// A shape error if the shapes do not broadcast.
    pub fn div(&self, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        let y = div(a.value(), b.value())?;
        let (a_saved, b_saved) = (a.shared_value(), b.shared_value());
        Ok(self.record(
            y,
            &[a, b],
            Box::new(move |dy: &Tensor<T>| {
                // d(a / b) = da / b - a db / b^2
                let da = div(dy, &b_saved)?;
                let db = scale(&div(&mul(&da, &a_saved)?, &b_saved)?, -T::one());
                Ok(vec![Some(da), Some(db)])
            }),
        ))
    }

    /// `a * b` element by element with PyTorch's broadcasting rules.
    ///
    /// # Errors
    /// A shape error if the shapes do not broadcast.
    pub fn mul(&self, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        let y = mul(a.value(), b.value())?;
        let (a_saved, b_saved) = (a.shared_value(), b.shared_value());
        Ok(self.record(
            y,
            &[a, b],
            Box::new(move |dy: &Tensor<T>| Ok(vec![Some(mul(dy, &b_saved)?), Some(mul(dy, &a_saved)?)])),
        ))
    }

    /// `alpha * x`.
    pub fn scale(&self, x: &Var<T>, alpha: T) -> Var<T> {
        let y = scale(x.value(), alpha);
        self.record(y, &[x], Box::new(move |dy: &Tensor<T>| Ok(vec![Some(scale(dy, alpha))])))
    }

    /// `x + alpha`.
    pub fn add_scalar(&self, x: &Var<T>, alpha: T) -> Var<T> {
        let y = add_scalar(x.value(), alpha);
        self.record(y, &[x], Box::new(|dy: &Tensor<T>| Ok(vec![Some(dy.clone())])))
    }

    /// `e^x`; the backward pass shares the output, which is its own derivative.
    pub fn exp(&self, x: &Var<T>) -> Var<T> {
        let y = Arc::new(exp(x.value()));
        let y_saved = Arc::clone(&y);
        self.record(y, &[x], Box::new(move |dy: &Tensor<T>| Ok(vec![Some(mul(dy, &y_saved)?)])))
    }

    /// Natural logarithm; its gradient is `dy / x`.
    pub fn ln(&self, x: &Var<T>) -> Var<T> {
        let y = ln(x.value());
        let x_saved = x.shared_value();
        self.record(y, &[x], Box::new(move |dy: &Tensor<T>| Ok(vec![Some(div(dy, &x_saved)?)])))
    }

    /// Square root; its gradient is `dy / (2 sqrt(x))`.
    pub fn sqrt(&self, x: &Var<T>) -> Var<T> {
        let y = Arc::new(sqrt(x.value()));
        let y_saved = Arc::clone(&y);
        self.record(
            y,
            &[x],
            Box::new(move |dy: &Tensor<T>| Ok(vec![Some(scale(&div(dy, &y_saved)?, T::from_f64(0.5)))])),
        )
    }

    /// Sum of all elements, as a 0-D tensor.
    pub fn sum(&self, x: &Var<T>) -> Var<T> {
        let y = Tensor::scalar(sum_all(x.value()));
        let dims = x.dims().to_vec();
        self.record(y, &[x], Box::new(move |dy: &Tensor<T>| Ok(vec![Some(Tensor::full(dims, dy.item()?))])))
    }

    /// The same elements with another shape of equal size (a flatten, say).
    ///
    /// # Errors
    /// A shape error if the element counts differ.
    pub fn reshape(&self, x: &Var<T>, dims: &[usize]) -> Result<Var<T>> {
        let y = x.value().clone().reshape(dims)?;
        let input_dims = x.dims().to_vec();
        Ok(self.record(y, &[x], Box::new(move |dy: &Tensor<T>| Ok(vec![Some(dy.clone().reshape(input_dims)?)]))))
    }

    /// `[N, C, H, W] -> [N, C * H * W]`.
    ///
    /// # Errors
    /// A rank error if `x` has no batch axis.
    pub fn flatten(&self, x: &Var<T>) -> Result<Var<T>> {
        let Some((&n, rest)) = x.dims().split_first() else {
            return Err(AutogradError::Tensor(TensorError::invalid("flatten", "a 0-D tensor has no batch axis")));
        };
        self.reshape(x, &[n, rest.iter().product()])
    }

    /// Concatenates NCHW tensors along the channel axis.
    ///
    /// # Errors
    /// As [`incept_tensor::elementwise::concat_channels`].
    pub fn concat_channels(&self, xs: &[&Var<T>]) -> Result<Var<T>> {
        let values: Vec<&Tensor<T>> = xs.iter().map(|v| v.value()).collect();
        let y = concat_channels(&values)?;
        let channels: Vec<usize> = xs.iter().map(|v| v.dims()[1]).collect();
        Ok(self.record(
            y,
            xs,
            Box::new(move |dy: &Tensor<T>| {
                let mut start = 0;
                let mut grads = Vec::with_capacity(channels.len());
                for &c in &channels {
                    grads.push(Some(slice_channels(dy, start, c)?));
                    start += c;
                }
                Ok(grads)
            }),
        ))
    }

    /// Concatenates NCHW tensors along the channel axis, applying ReLU to
    /// those whose flag in `relu` is set; the ReLU pass is the copy into the
    /// output, so the concat costs no pass of its own. The backward pass
    /// shares the output instead of saving the inputs.
    ///
    /// # Errors
    /// As [`incept_tensor::elementwise::concat_channels_relu`].
    pub fn concat_channels_relu(&self, xs: &[&Var<T>], relu: &[bool]) -> Result<Var<T>> {
        let values: Vec<&Tensor<T>> = xs.iter().map(|v| v.value()).collect();
        let y = Arc::new(concat_channels_relu(&values, relu)?);
        let channels: Vec<usize> = xs.iter().map(|v| v.dims()[1]).collect();
        let relu = relu.to_vec();
        let y_saved = (self.is_recording() && relu.iter().any(|&r| r)).then(|| Arc::clone(&y));
        Ok(self.record(
            y,
            xs,
            Box::new(move |dy: &Tensor<T>| {
                let mut start = 0;
                let mut grads = Vec::with_capacity(channels.len());
                for (&c, &apply_relu) in channels.iter().zip(&relu) {
                    let mut grad = slice_channels(dy, start, c)?;
                    if apply_relu {
                        let y = y_saved.as_ref().expect("the output is saved whenever a ReLU flag is set");
                        grad = relu_backward(&slice_channels(y, start, c)?, &grad)?;
                    }
                    grads.push(Some(grad));
                    start += c;
                }
                Ok(grads)
            }),
        ))
    }
}
