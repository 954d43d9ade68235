//! Differentiable permute, slice, concat and split along any axis.

use incept_tensor::layout::{concat, permute, slice_axis};
use incept_tensor::{Float, Tensor};

use crate::{Result, Tape, Var};

impl<T: Float> Tape<T> {
    /// Reorders the axes; the gradient is permuted back.
    ///
    /// # Errors
    /// As [`incept_tensor::layout::permute`].
    pub fn permute(&self, x: &Var<T>, axes: &[usize]) -> Result<Var<T>> {
        let y = permute(x.value(), axes)?;
        let mut inverse = vec![0; axes.len()];
        for (out_axis, &in_axis) in axes.iter().enumerate() {
            inverse[in_axis] = out_axis;
        }
        Ok(self.record(y, &[x], Box::new(move |dy: &Tensor<T>| Ok(vec![Some(permute(dy, &inverse)?)]))))
    }

    /// Indices `start..start + len` of `axis`; the gradient is zero outside them.
    ///
    /// # Errors
    /// As [`incept_tensor::layout::slice_axis`].
    pub fn slice_axis(&self, x: &Var<T>, axis: usize, start: usize, len: usize) -> Result<Var<T>> {
        let y = slice_axis(x.value(), axis, start, len)?;
        let input_dims = x.dims().to_vec();
        Ok(self.record(
            y,
            &[x],
            Box::new(move |dy: &Tensor<T>| {
                // Pad dy with zeros before and after the slice along `axis`.
                let mut parts = Vec::with_capacity(3);
                let mut zeros_dims = input_dims.clone();
                zeros_dims[axis] = start;
                let before = Tensor::zeros(zeros_dims.as_slice());
                zeros_dims[axis] = input_dims[axis] - start - len;
                let after = Tensor::zeros(zeros_dims.as_slice());
                parts.extend([&before, dy, &after]);
                Ok(vec![Some(concat(&parts, axis)?)])
            }),
        ))
    }

    /// Concatenates along `axis`; each input receives its slice of the gradient.
    ///
    /// # Errors
    /// As [`incept_tensor::layout::concat`].
    pub fn concat(&self, xs: &[&Var<T>], axis: usize) -> Result<Var<T>> {
        let values: Vec<&Tensor<T>> = xs.iter().map(|v| v.value()).collect();
        let y = concat(&values, axis)?;
        let sizes: Vec<usize> = xs.iter().map(|v| v.dims()[axis]).collect();
        Ok(self.record(
            y,
            xs,
            Box::new(move |dy: &Tensor<T>| {
                let mut start = 0;
                let mut grads = Vec::with_capacity(sizes.len());
                for &len in &sizes {
                    grads.push(Some(slice_axis(dy, axis, start, len)?));
                    start += len;
                }
                Ok(grads)
            }),
        ))
    }

    /// Splits along `axis` into pieces of the given sizes, each a slice.
    ///
    /// # Errors
    /// As [`incept_tensor::layout::split`].
    pub fn split(&self, x: &Var<T>, axis: usize, sizes: &[usize]) -> Result<Vec<Var<T>>> {
        // Validates the sizes once, with split's message.
        incept_tensor::layout::split(x.value(), axis, sizes)?;
        let mut start = 0;
        sizes
            .iter()
            .map(|&len| {
                let piece = self.slice_axis(x, axis, start, len);
                start += len;
                piece
            })
            .collect()
    }
}
