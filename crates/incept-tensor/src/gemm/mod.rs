//! General matrix multiply.
//!
//! Every entry point computes `C <- alpha * A * B + beta * C` with `A` of
//! `m x k`, `B` of `k x n` and `C` of `m x n`. Each matrix is a slice plus a
//! row and a column stride, so a transposed operand is the same slice with
//! its strides swapped and costs no copy.
//!
//! Two implementations exist. [`gemm`] and [`gemm_par`] call
//! `matrixmultiply` for any [`Float`]: the portable path. For `f32` on x86-64
//! incept has its own packed GEMM with AVX-512 and AVX2 micro-kernels, whose
//! B operand can be produced on the fly; the convolutions use it to read
//! their input through im2col without writing a column matrix. [`GemmBackend`]
//! selects between them, and [`gemm_f32`] runs a plain product on any of them.

mod backend;
pub(crate) mod dot;
mod kernels;
pub(crate) mod packed;

use rayon::prelude::*;

pub use backend::{BACKEND_ENV, GemmBackend, current_backend, with_backend};
pub(crate) use kernels::{DOT_MR, DOT_NR, DotKernel, MicroKernel};

use crate::{Float, Result};

/// Returns the micro-kernel of `backend`, or `None` for the portable path.
///
/// # Panics
/// If this CPU does not support `backend`; [`with_backend`] and
/// [`current_backend`] never hand out such a backend.
pub(crate) fn micro_kernel(backend: GemmBackend) -> Option<MicroKernel> {
    assert!(backend.is_supported(), "the {backend} GEMM backend is not supported on this CPU");
    match backend {
        GemmBackend::Portable => None,
        #[cfg(target_arch = "x86_64")]
        GemmBackend::Avx2 => Some(kernels::AVX2),
        #[cfg(target_arch = "x86_64")]
        GemmBackend::Avx512 => Some(kernels::AVX512),
        #[cfg(not(target_arch = "x86_64"))]
        _ => None,
    }
}

/// Computes `C <- A * B + beta * C` in `f32` with `backend`, splitting the
/// work across rayon workers when the product is large and the caller is
/// not itself a worker. When `beta` is zero, `C` is only written.
///
/// # Errors
/// [`crate::TensorError::InvalidArgument`] if this CPU does not support
/// `backend`.
///
/// # Panics
/// If the inner or outer dimensions of `A`, `B` and `C` disagree.
pub fn gemm_f32(
    backend: GemmBackend,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    beta: f32,
    c: MatMut<'_, f32>,
) -> Result<()> {
    with_backend(backend, || ())?;
    assert_eq!(a.cols, b.rows, "gemm: A is {}x{} but B is {}x{}", a.rows, a.cols, b.rows, b.cols);
    assert_eq!((a.rows, b.cols), (c.rows, c.cols), "gemm: A*B is {}x{} but C is {}x{}", a.rows, b.cols, c.rows, c.cols);
    let Some(kernel) = micro_kernel(backend) else {
        gemm(1.0, a, b, beta, c);
        return Ok(());
    };
    let b_source = packed::StridedB::new(b.data, packed::Layout::matrix(b.rows, b.cols, b.row_stride, b.col_stride));
    packed::gemm_packed(
        kernel,
        a.data,
        packed::Layout::matrix(a.rows, a.cols, a.row_stride, a.col_stride),
        &b_source,
        c.data,
        packed::Layout::matrix(c.rows, c.cols, c.row_stride, c.col_stride),
        packed::Epilogue { beta, bias: None, relu: false },
        true,
    );
    Ok(())
}

/// A read-only strided view of a matrix.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T: Float> MatRef<'a, T> {
    /// Views `data` as a row-major `rows x cols` matrix.
    ///
    /// # Panics
    /// If `data` has fewer than `rows * cols` elements.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// Views `data` as a `rows x cols` matrix whose element `(i, j)` is
    /// `data[i * row_stride + j * col_stride]`.
    ///
    /// # Panics
    /// If the last addressed element lies outside `data`.
    pub fn strided(data: &'a [T], rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Self {
        assert_in_bounds(data.len(), rows, cols, row_stride, col_stride);
        MatRef { data, rows, cols, row_stride, col_stride }
    }

    /// The transpose, as a view of the same elements.
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
}

/// A writable strided view of a matrix.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T: Float> MatMut<'a, T> {
    /// Views `data` as a row-major `rows x cols` matrix.
    ///
    /// # Panics
    /// If `data` has fewer than `rows * cols` elements.
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// Views `data` as a `rows x cols` matrix whose element `(i, j)` is
    /// `data[i * row_stride + j * col_stride]`.
    ///
    /// # Panics
    /// If the last addressed element lies outside `data`, or if two
    /// elements of the view share a slot of `data` (a zero stride, for
    /// example), because a GEMM writes each element of C once, possibly
    /// from several threads at a time.
    pub fn strided(data: &'a mut [T], rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Self {
        assert_in_bounds(data.len(), rows, cols, row_stride, col_stride);
        assert!(
            !overlaps(rows, cols, row_stride, col_stride),
            "writable matrix view {rows}x{cols} with strides ({row_stride}, {col_stride}) maps two elements \
             to the same slot; use strides under which every element has its own slot"
        );
        MatMut { data, rows, cols, row_stride, col_stride }
    }
}

/// Panics unless every element of the view lies inside a slice of `len`
/// elements and both strides fit in `isize`, as `matrixmultiply` takes
/// them. The arithmetic is checked, so huge strides cannot wrap around to
/// an offset inside the slice.
fn assert_in_bounds(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) {
    assert!(
        isize::try_from(row_stride.max(col_stride)).is_ok(),
        "matrix view strides ({row_stride}, {col_stride}) must not exceed isize::MAX"
    );
    if rows == 0 || cols == 0 {
        return;
    }
    let last = (rows - 1)
        .checked_mul(row_stride)
        .zip((cols - 1).checked_mul(col_stride))
        .and_then(|(row, col)| row.checked_add(col));
    let Some(last) = last else {
        panic!("matrix view {rows}x{cols} with strides ({row_stride}, {col_stride}) addresses past usize::MAX");
    };
    assert!(
        last < len,
        "matrix view {rows}x{cols} with strides ({row_stride}, {col_stride}) needs {} elements, slice has {len}",
        last + 1
    );
}

/// True when two elements `(i, j) != (i', j')` of a `rows x cols` view
/// have the same offset, that is when `di * row_stride == dj * col_stride`
/// for some `|di| < rows` and `|dj| < cols`, not both zero. With
/// `g = gcd(row_stride, col_stride)`, the smallest such pair is
/// `(col_stride / g, row_stride / g)`.
fn overlaps(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    if rows == 0 || cols == 0 {
        return false;
    }
    if (rows > 1 && row_stride == 0) || (cols > 1 && col_stride == 0) {
        return true;
    }
    if rows <= 1 || cols <= 1 {
        return false;
    }
    let g = packed::gcd(row_stride, col_stride);
    col_stride / g < rows && row_stride / g < cols
}

/// Products with fewer multiply-accumulates than this run on the calling
/// thread: below it, handing rows to another core costs more than it saves.
const PARALLEL_MIN_MACS: usize = 1 << 21;

/// Computes `C <- alpha * A * B + beta * C` on the calling thread.
///
/// When `beta` is zero, `C` is only written, so it may hold anything
/// (including NaN) beforehand.
///
/// # Panics
/// If the inner or outer dimensions of `A`, `B` and `C` disagree.
pub fn gemm<T: Float>(alpha: T, a: MatRef<'_, T>, b: MatRef<'_, T>, beta: T, c: MatMut<'_, T>) {
    assert_eq!(a.cols, b.rows, "gemm: A is {}x{} but B is {}x{}", a.rows, a.cols, b.rows, b.cols);
    assert_eq!((a.rows, b.cols), (c.rows, c.cols), "gemm: A*B is {}x{} but C is {}x{}", a.rows, b.cols, c.rows, c.cols);
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: every view was bounds-checked on construction for its own
    // rows, columns and strides, the dimensions were checked above, and C
    // is borrowed mutably, so it aliases neither A nor B. `MatMut::strided`
    // rejects a C whose elements share a slot, which sgemm and dgemm do not
    // allow, and the constructors reject strides above isize::MAX.
    unsafe {
        T::gemm_raw(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            c.data.as_mut_ptr(),
            c.row_stride as isize,
            c.col_stride as isize,
        );
    }
}

/// Computes `C <- alpha * A * B + beta * C` for a row-major, contiguous `C`,
/// splitting the rows of `C` across rayon workers when the product is large
/// and the caller is not already running on a rayon worker (so batch-level
/// parallelism is never multiplied by row-level parallelism).
///
/// # Panics
/// As [`gemm`].
pub fn gemm_par<T: Float>(alpha: T, a: MatRef<'_, T>, b: MatRef<'_, T>, beta: T, c: &mut [T]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let workers = rayon::current_num_threads();
    let nested = rayon::current_thread_index().is_some();
    if nested || workers < 2 || m < 2 || m * k * n < PARALLEL_MIN_MACS {
        gemm(alpha, a, b, beta, MatMut::row_major(c, m, n));
        return;
    }
    assert_eq!(a.cols, b.rows, "gemm_par: A is {}x{} but B is {}x{}", a.rows, a.cols, b.rows, b.cols);
    assert!(c.len() >= m * n, "gemm_par: C has {} elements, needs {}", c.len(), m * n);
    let rows_per_task = m.div_ceil(workers);
    c[..m * n].par_chunks_mut(rows_per_task * n).enumerate().for_each(|(task, c_rows)| {
        let first = task * rows_per_task;
        let rows = c_rows.len() / n;
        let offset = first * a.row_stride;
        let a_rows =
            MatRef { data: &a.data[offset..], rows, cols: k, row_stride: a.row_stride, col_stride: a.col_stride };
        assert_in_bounds(a_rows.data.len(), rows, k, a.row_stride, a.col_stride);
        gemm(alpha, a_rows, b, beta, MatMut::row_major(c_rows, rows, n));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Naive triple loop in f64 on integer-valued inputs, so the comparison
    /// is exact.
    fn naive(m: usize, k: usize, n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a[i * k + p] * b[p * n + j];
                }
            }
        }
        c
    }

    fn ints(len: usize, seed: usize) -> Vec<f64> {
        (0..len).map(|i| ((i * 7 + seed * 13) % 11) as f64 - 5.0).collect()
    }

    #[test]
    fn gemm_matches_naive_on_tile_edges() {
        for &(m, k, n) in &[(1, 1, 1), (3, 5, 7), (8, 8, 8), (9, 17, 33), (65, 3, 2), (4, 0, 5)] {
            let a = ints(m * k, 1);
            let b = ints(k * n, 2);
            let mut c = vec![f64::NAN; m * n];
            gemm(1.0, MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), 0.0, MatMut::row_major(&mut c, m, n));
            assert_eq!(c, naive(m, k, n, &a, &b), "m={m} k={k} n={n}");
        }
    }

    #[test]
    fn gemm_transposed_views_match() {
        let (m, k, n) = (5, 6, 7);
        let a = ints(m * k, 3);
        let b = ints(k * n, 4);
        // Store A^T (k x m) and B^T (n x k), then read them transposed.
        let mut at = vec![0.0; k * m];
        for i in 0..m {
            for p in 0..k {
                at[p * m + i] = a[i * k + p];
            }
        }
        let mut bt = vec![0.0; n * k];
        for p in 0..k {
            for j in 0..n {
                bt[j * k + p] = b[p * n + j];
            }
        }
        let mut c = vec![f64::NAN; m * n];
        gemm(
            1.0,
            MatRef::row_major(&at, k, m).t(),
            MatRef::row_major(&bt, n, k).t(),
            0.0,
            MatMut::row_major(&mut c, m, n),
        );
        assert_eq!(c, naive(m, k, n, &a, &b));
    }

    #[test]
    fn gemm_accumulates_with_alpha_and_beta() {
        let (m, k, n) = (3, 4, 5);
        let a = ints(m * k, 5);
        let b = ints(k * n, 6);
        let mut c = vec![1.0; m * n];
        gemm(2.0, MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), 3.0, MatMut::row_major(&mut c, m, n));
        let expected: Vec<f64> = naive(m, k, n, &a, &b).iter().map(|x| 2.0 * x + 3.0).collect();
        assert_eq!(c, expected);
    }

    #[test]
    fn gemm_par_matches_serial_on_large_product() {
        let (m, k, n) = (131, 129, 127);
        let a = ints(m * k, 7);
        let b = ints(k * n, 8);
        let mut c = vec![f64::NAN; m * n];
        gemm_par(1.0, MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), 0.0, &mut c);
        assert_eq!(c, naive(m, k, n, &a, &b));
    }

    /// Sizes on both sides of the micro-kernel tiles (16x16 for f32 and 8x8
    /// for f64 with AVX-512, 8x8 and 8x4 with AVX2 in matrixmultiply 0.3) and
    /// of its 64-row cache block.
    const EDGE_SIZES: [usize; 13] = [1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65];

    /// Every pair of storage orders for A and B: NN, NT, TN and TT.
    const LAYOUTS: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

    /// Converts integer-valued f64 test data to `T` exactly.
    fn cast<T: Float>(values: &[f64]) -> Vec<T> {
        values.iter().map(|&x| T::from_f64(x)).collect()
    }

    /// An operand of a test product, stored either row-major or as its
    /// transpose, which `view` reads back through `MatRef::t`.
    struct Operand<T> {
        data: Vec<T>,
        rows: usize,
        cols: usize,
        transposed: bool,
    }

    impl<T: Float> Operand<T> {
        /// Stores the row-major `rows x cols` matrix `values`, transposed in
        /// memory when `transposed` is true.
        fn new(values: &[f64], rows: usize, cols: usize, transposed: bool) -> Self {
            let stored = if transposed {
                let mut t = vec![0.0; values.len()];
                for i in 0..rows {
                    for j in 0..cols {
                        t[j * rows + i] = values[i * cols + j];
                    }
                }
                t
            } else {
                values.to_vec()
            };
            Operand { data: cast(&stored), rows, cols, transposed }
        }

        /// Returns a view of the `rows x cols` matrix, whatever its storage order.
        fn view(&self) -> MatRef<'_, T> {
            if self.transposed {
                MatRef::row_major(&self.data, self.cols, self.rows).t()
            } else {
                MatRef::row_major(&self.data, self.rows, self.cols)
            }
        }
    }

    fn layout_name(a_transposed: bool, b_transposed: bool) -> String {
        let letter = |transposed| if transposed { 'T' } else { 'N' };
        format!("{}{}", letter(a_transposed), letter(b_transposed))
    }

    /// Checks `gemm` with `beta = 0` against the naive product for every
    /// layout of A and B, starting from a C full of NaN.
    fn check_layouts<T: Float>(m: usize, k: usize, n: usize) {
        let a = ints(m * k, m + k);
        let b = ints(k * n, k + n);
        let expected = naive(m, k, n, &a, &b);
        for (a_transposed, b_transposed) in LAYOUTS {
            let layout = layout_name(a_transposed, b_transposed);
            let a_op = Operand::<T>::new(&a, m, k, a_transposed);
            let b_op = Operand::<T>::new(&b, k, n, b_transposed);
            let mut c = vec![T::nan(); m * n];
            gemm(T::one(), a_op.view(), b_op.view(), T::zero(), MatMut::row_major(&mut c, m, n));
            let c: Vec<f64> = c.iter().map(|x| x.as_f64()).collect();
            assert!(c.iter().all(|x| !x.is_nan()), "{} {layout} m={m} k={k} n={n}: NaN left in C", T::DTYPE);
            assert_eq!(c, expected, "{} {layout} m={m} k={k} n={n}", T::DTYPE);
        }
    }

    #[test]
    fn gemm_layouts_on_tile_edges() {
        // Each size appears once as m, once as k and once as n, paired with
        // sizes four and eight places further on, instead of all 13^3 triples.
        for (i, &m) in EDGE_SIZES.iter().enumerate() {
            let k = EDGE_SIZES[(i + 4) % EDGE_SIZES.len()];
            let n = EDGE_SIZES[(i + 8) % EDGE_SIZES.len()];
            check_layouts::<f32>(m, k, n);
            check_layouts::<f64>(m, k, n);
        }
    }

    /// Checks `gemm` into a `C` view with row stride `n + padding`. The view
    /// must be written in full and the padding columns must keep their sentinel.
    fn check_strided_c<T: Float>(m: usize, k: usize, n: usize, padding: usize) {
        let row_stride = n + padding;
        let sentinel = T::from_f64(-999.0);
        let a = ints(m * k, 9);
        let b = ints(k * n, 10);
        let expected = naive(m, k, n, &a, &b);
        let (a_t, b_t) = (cast::<T>(&a), cast::<T>(&b));
        let mut c = vec![sentinel; m * row_stride];
        for row in c.chunks_exact_mut(row_stride) {
            row[..n].fill(T::nan());
        }
        let c_view = MatMut::strided(&mut c, m, n, row_stride, 1);
        gemm(T::one(), MatRef::row_major(&a_t, m, k), MatRef::row_major(&b_t, k, n), T::zero(), c_view);
        for (i, row) in c.chunks_exact(row_stride).enumerate() {
            let written: Vec<f64> = row[..n].iter().map(|x| x.as_f64()).collect();
            assert_eq!(written, expected[i * n..(i + 1) * n], "{} row {i} of C, m={m} k={k} n={n}", T::DTYPE);
            assert!(
                row[n..].iter().all(|&x| x == sentinel),
                "{} padding of row {i} was overwritten, m={m} k={k} n={n}",
                T::DTYPE
            );
        }
    }

    #[test]
    fn gemm_strided_c_keeps_padding() {
        for &(m, k, n, padding) in &[(1, 1, 1, 1), (9, 7, 17, 3), (17, 33, 15, 5), (65, 16, 33, 7)] {
            check_strided_c::<f32>(m, k, n, padding);
            check_strided_c::<f64>(m, k, n, padding);
        }
    }

    /// Checks `gemm_par` with `beta = 0` against the naive product for every
    /// layout of A and B, starting from a C full of NaN.
    fn check_gemm_par<T: Float>(m: usize, k: usize, n: usize) {
        let a = ints(m * k, 11);
        let b = ints(k * n, 12);
        let expected = naive(m, k, n, &a, &b);
        for (a_transposed, b_transposed) in LAYOUTS {
            let layout = layout_name(a_transposed, b_transposed);
            let a_op = Operand::<T>::new(&a, m, k, a_transposed);
            let b_op = Operand::<T>::new(&b, k, n, b_transposed);
            let mut c = vec![T::nan(); m * n];
            gemm_par(T::one(), a_op.view(), b_op.view(), T::zero(), &mut c);
            let c: Vec<f64> = c.iter().map(|x| x.as_f64()).collect();
            assert_eq!(c, expected, "{} {layout} m={m} k={k} n={n}", T::DTYPE);
        }
    }

    #[test]
    fn gemm_par_above_parallel_threshold() {
        // NOTE: with a single rayon worker (one CPU) this runs the serial path.
        // The 67 rows split unevenly across two or three workers, and k = 257
        // crosses matrixmultiply's 256-deep cache block.
        let (m, k, n) = (67, 257, 129);
        assert!(m * k * n >= PARALLEL_MIN_MACS, "{} MACs should reach the threshold", m * k * n);
        check_gemm_par::<f32>(m, k, n);
        check_gemm_par::<f64>(m, k, n);
    }

    #[test]
    fn gemm_par_below_parallel_threshold() {
        let (m, k, n) = (33, 17, 65);
        assert!(m * k * n < PARALLEL_MIN_MACS, "{} MACs should stay below the threshold", m * k * n);
        check_gemm_par::<f32>(m, k, n);
        check_gemm_par::<f64>(m, k, n);
    }

    /// Lists the backends this CPU can run.
    fn supported_backends() -> Vec<GemmBackend> {
        GemmBackend::ALL.into_iter().filter(|b| b.is_supported()).collect()
    }

    /// Checks `gemm_f32` on `backend` against the naive product for every
    /// layout of A and B, with `beta = 0` on a C full of NaN and with
    /// `beta = 1` on a C of ones.
    fn check_backend(backend: GemmBackend, m: usize, k: usize, n: usize) {
        let a = ints(m * k, m + 2 * k);
        let b = ints(k * n, k + 3 * n);
        let expected = naive(m, k, n, &a, &b);
        for (a_transposed, b_transposed) in LAYOUTS {
            let case = format!("{backend} {} m={m} k={k} n={n}", layout_name(a_transposed, b_transposed));
            let a_op = Operand::<f32>::new(&a, m, k, a_transposed);
            let b_op = Operand::<f32>::new(&b, k, n, b_transposed);
            let mut c = vec![f32::NAN; m * n];
            gemm_f32(backend, a_op.view(), b_op.view(), 0.0, MatMut::row_major(&mut c, m, n)).unwrap();
            let got: Vec<f64> = c.iter().map(|&x| f64::from(x)).collect();
            assert_eq!(got, expected, "{case}, beta 0");

            let mut c = vec![1.0f32; m * n];
            gemm_f32(backend, a_op.view(), b_op.view(), 1.0, MatMut::row_major(&mut c, m, n)).unwrap();
            let got: Vec<f64> = c.iter().map(|&x| f64::from(x)).collect();
            let plus_one: Vec<f64> = expected.iter().map(|x| x + 1.0).collect();
            assert_eq!(got, plus_one, "{case}, beta 1");
        }
    }

    #[test]
    fn gemm_f32_backends_match_naive_on_tile_edges() {
        for backend in supported_backends() {
            for (i, &m) in EDGE_SIZES.iter().enumerate() {
                let k = EDGE_SIZES[(i + 4) % EDGE_SIZES.len()];
                let n = EDGE_SIZES[(i + 8) % EDGE_SIZES.len()];
                check_backend(backend, m, k, n);
            }
        }
    }

    #[test]
    fn gemm_f32_backends_match_naive_across_blocks() {
        // k = 600 spans three depth blocks of 256; n = 700 spans several
        // column tasks; m = 67 leaves a partial row panel for both kernels;
        // the product is large enough to be split across workers.
        for backend in supported_backends() {
            // k = 0 with several column panels: B has no rows to read in place.
            for &(m, k, n) in &[(67, 600, 129), (9, 5, 700), (300, 40, 33), (5, 0, 7), (5, 0, 70), (3, 0, 300)] {
                check_backend(backend, m, k, n);
            }
        }
    }

    #[test]
    fn gemm_f32_backends_write_strided_c() {
        let (m, k, n) = (19, 23, 37);
        let a = cast::<f32>(&ints(m * k, 1));
        let b = cast::<f32>(&ints(k * n, 2));
        let expected = naive(m, k, n, &ints(m * k, 1), &ints(k * n, 2));
        for backend in supported_backends() {
            // C stored transposed: column stride m, so every tile goes through scratch.
            let mut c_t = vec![f32::NAN; n * m];
            let c_view = MatMut::strided(&mut c_t, m, n, 1, m);
            gemm_f32(backend, MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), 0.0, c_view).unwrap();
            for i in 0..m {
                for j in 0..n {
                    assert_eq!(f64::from(c_t[j * m + i]), expected[i * n + j], "{backend} C({i}, {j})");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "addresses past usize::MAX")]
    fn view_rejects_wrapping_strides() {
        // (5 - 1) * 2^62 wraps to 0 in unchecked arithmetic.
        let data = [0.0f32; 4];
        MatRef::strided(&data, 5, 1, 1 << 62, 1);
    }

    #[test]
    #[should_panic(expected = "must not exceed isize::MAX")]
    fn view_rejects_strides_above_isize_max() {
        let data = [0.0f32; 4];
        MatRef::strided(&data, 1, 4, usize::MAX, 1);
    }

    #[test]
    #[should_panic(expected = "maps two elements to the same slot")]
    fn writable_view_rejects_zero_row_stride() {
        let mut c = [0.0f32; 8];
        MatMut::strided(&mut c, 4, 8, 0, 1);
    }

    #[test]
    fn overlap_check_matches_brute_force() {
        for rows in 0..5 {
            for cols in 0..5 {
                for row_stride in 0..7 {
                    for col_stride in 0..7 {
                        let mut offsets: Vec<usize> =
                            (0..rows).flat_map(|i| (0..cols).map(move |j| i * row_stride + j * col_stride)).collect();
                        let count = offsets.len();
                        offsets.sort_unstable();
                        offsets.dedup();
                        assert_eq!(
                            overlaps(rows, cols, row_stride, col_stride),
                            offsets.len() < count,
                            "{rows}x{cols} with strides ({row_stride}, {col_stride})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "gemm: A is 2x3 but B is 4x2")]
    fn gemm_rejects_inner_dimension_mismatch() {
        let a = [0.0f32; 6];
        let b = [0.0f32; 8];
        let mut c = [0.0f32; 4];
        gemm(1.0, MatRef::row_major(&a, 2, 3), MatRef::row_major(&b, 4, 2), 0.0, MatMut::row_major(&mut c, 2, 2));
    }
}
