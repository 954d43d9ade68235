//! The element types a tensor may hold.

use std::fmt::{Debug, Display};
use std::iter::Sum;

/// An element type of [`crate::Tensor`]: `f32` for the product, `f64` for
/// reference kernels and gradient checks.
///
/// The trait adds to [`num_traits::Float`] only what the kernels need: a
/// GEMM entry point and lossless-enough conversions.
pub trait Float: num_traits::Float + Default + Debug + Display + Sum + Send + Sync + 'static {
    /// Name of the type as PyTorch and safetensors spell it (`"F32"`).
    const DTYPE: &'static str;

    /// Computes `C <- alpha * A * B + beta * C` for an `m x k` matrix `A`,
    /// a `k x n` matrix `B` and an `m x n` matrix `C`, each given by a
    /// pointer and its row and column strides in elements.
    ///
    /// # Safety
    /// Every element addressed by the dimensions and strides must lie
    /// inside the allocation behind its pointer, and `c` must not alias `a`
    /// or `b`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// Returns the slice as `f32` when `Self` is `f32`, else `None`. Kernels
    /// that exist for `f32` only, such as incept's packed GEMM, use it.
    fn as_f32_slice(values: &[Self]) -> Option<&[f32]> {
        let _ = values;
        None
    }

    /// As [`Float::as_f32_slice`], mutably.
    fn as_f32_slice_mut(values: &mut [Self]) -> Option<&mut [f32]> {
        let _ = values;
        None
    }

    /// Converts from `f64`, rounding to nearest.
    fn from_f64(x: f64) -> Self;

    /// Converts to `f64` exactly (named apart from `ToPrimitive::to_f64`, which returns an `Option`).
    fn as_f64(self) -> f64;

    /// Converts from a count or an index.
    fn from_usize(x: usize) -> Self {
        Self::from_f64(x as f64)
    }
}

impl Float for f32 {
    const DTYPE: &'static str = "F32";

    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        beta: f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: the caller guarantees that every addressed element is in
        // bounds and that C does not alias A or B.
        unsafe { matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }

    fn as_f32_slice(values: &[f32]) -> Option<&[f32]> {
        Some(values)
    }

    fn as_f32_slice_mut(values: &mut [f32]) -> Option<&mut [f32]> {
        Some(values)
    }

    fn from_f64(x: f64) -> f32 {
        x as f32
    }

    fn as_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Float for f64 {
    const DTYPE: &'static str = "F64";

    unsafe fn gemm_raw(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        beta: f64,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: the caller guarantees that every addressed element is in
        // bounds and that C does not alias A or B.
        unsafe { matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }

    fn from_f64(x: f64) -> f64 {
        x
    }

    fn as_f64(self) -> f64 {
        self
    }
}
