//! `C += A * B^T` for two row-major operands, without packing.
//!
//! The weight gradient of a convolution is `dY[c_out x P] * cols[K x P]^T`:
//! both operands run along the pixels, so the packed GEMM would have to
//! transpose one of them element by element while packing. A dot-product
//! kernel reads both in place instead, keeping a `DOT_MR x DOT_NR` block of
//! 16-lane partial sums in registers.

use std::ops::Range;

use super::kernels::{DOT_MR, DOT_NR, DotKernel};

/// Depth per block. Each block ends in 16 horizontal sums per 4x4 tile,
/// which at a depth of 256 cost about half as much as the block's FMAs;
/// at 1024 the `DOT_MR` rows of A (16 KiB) still stay in the 48 KiB L1
/// while the rows of B stream past them from L2. Training-step CPU time,
/// one thread: 1470 ms at 256, 1390-1420 ms at 1024 (a busy machine).
const KC: usize = 1024;

/// A row-major matrix: `rows` rows of `k` values, `row_stride` apart.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub row_stride: usize,
}

impl Rows<'_> {
    /// Panics unless `rows` rows of `k` values fit in `data`.
    fn assert_fits(&self, k: usize, what: &str) {
        if self.rows > 0 && k > 0 {
            let last = (self.rows - 1) * self.row_stride + k;
            assert!(last <= self.data.len(), "dot gemm: {what} needs {last} elements, slice has {}", self.data.len());
        }
    }
}

/// Adds rows `rows` and columns `cols` of `A * B^T` over `k` steps to the
/// row-major C of `c_len` elements at `c` (rows `c_stride` apart):
/// `C[i][j] += sum_p A[i][p] * B[j][p]`. The sum for each element runs over
/// `p` in the same order whatever the block split, so callers may split C
/// across threads freely.
///
/// # Safety
/// `c` must point at `c_len` writable elements, and no other thread may
/// access the `rows x cols` block meanwhile.
///
/// # Panics
/// If an operand or the block does not fit its slice.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_nt_add(
    kernel: DotKernel,
    k: usize,
    a: Rows<'_>,
    b: Rows<'_>,
    c: *mut f32,
    c_len: usize,
    c_stride: usize,
    rows: Range<usize>,
    cols: Range<usize>,
) {
    if rows.is_empty() || cols.is_empty() || k == 0 {
        return;
    }
    a.assert_fits(k, "A");
    b.assert_fits(k, "B");
    assert!(rows.end <= a.rows, "dot gemm: rows past the end of A");
    assert!(cols.end <= b.rows, "dot gemm: columns past the end of B");
    let last = (rows.end - 1) * c_stride + cols.end;
    assert!(last <= c_len, "dot gemm: C needs {last} elements, slice has {c_len}");
    for k0 in (0..k).step_by(KC) {
        let kc = KC.min(k - k0);
        for i0 in rows.clone().step_by(DOT_MR) {
            let block_rows = DOT_MR.min(rows.end - i0);
            for j0 in cols.clone().step_by(DOT_NR) {
                let block_cols = DOT_NR.min(cols.end - j0);
                // SAFETY: the asserts above cover every row and column the
                // block reads and the block of C it writes, which the caller
                // guarantees is ours alone; the kernel was chosen for a
                // supported CPU.
                unsafe {
                    (kernel.run)(
                        kc,
                        a.data[i0 * a.row_stride + k0..].as_ptr(),
                        a.row_stride,
                        b.data[j0 * b.row_stride + k0..].as_ptr(),
                        b.row_stride,
                        c.add(i0 * c_stride + j0),
                        c_stride,
                        block_rows,
                        block_cols,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::{GemmBackend, micro_kernel};

    #[test]
    fn dot_kernel_matches_naive() {
        if !GemmBackend::Avx512.is_supported() {
            return;
        }
        let kernel = micro_kernel(GemmBackend::Avx512).and_then(|k| k.dot).expect("AVX-512 has a dot kernel");
        for &(m, n, k) in &[(1, 1, 1), (3, 5, 17), (4, 4, 16), (9, 7, 300), (13, 6, 513), (5, 3, 2100)] {
            let (lda, ldb, ldc) = (k + 3, k + 1, n + 2);
            let a: Vec<f32> = (0..m * lda).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let b: Vec<f32> = (0..n * ldb).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
            let mut c = vec![1.0f32; m * ldc];
            let a_rows = Rows { data: &a, rows: m, row_stride: lda };
            let b_rows = Rows { data: &b, rows: n, row_stride: ldb };
            // SAFETY: `c` has m * ldc elements and is borrowed mutably here.
            unsafe { gemm_nt_add(kernel, k, a_rows, b_rows, c.as_mut_ptr(), c.len(), ldc, 0..m, 0..n) };
            for i in 0..m {
                for j in 0..ldc {
                    let expected =
                        if j < n { 1.0 + (0..k).map(|p| a[i * lda + p] * b[j * ldb + p]).sum::<f32>() } else { 1.0 };
                    assert_eq!(c[i * ldc + j], expected, "m={m} n={n} k={k} C({i}, {j})");
                }
            }
        }
    }
}
