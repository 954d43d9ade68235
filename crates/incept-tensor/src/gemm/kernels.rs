//! SIMD micro-kernels of the packed GEMM.
//!
//! A micro-kernel multiplies an `MR x kc` panel of A by a `kc x NR` panel of
//! B, keeping the `MR x NR` product in registers, and then stores it into C
//! with the [`TileStore`] epilogue. Element `(i, p)` of the A panel is at
//! `a + i * rsa + p * csa` and row `p` of the B panel (`NR` adjacent values)
//! at `b + p * rsb`, so one kernel reads both packed panels (`rsa = 1`,
//! `csa = MR`, `rsb = NR`) and matrices used in place. Rows and columns past
//! the edge of C are computed on the zero padding of packed panels and never
//! stored.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// The store step of a micro-kernel, which writes its `MR x NR` product
/// `acc` into C as `C = relu(acc + beta * C + bias[row])`, each part optional.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TileStore {
    /// Rows of the tile that exist in C, at most `MR`.
    pub rows: usize,
    /// Columns of the tile that exist in C, at most `NR`.
    pub cols: usize,
    /// Factor of the old C. With 0, C is not read, so it may contain NaN.
    pub beta: f32,
    /// Bias of the tile's first row, or null; row `i` adds `bias[i]`.
    pub bias: *const f32,
    /// Whether to apply `max(v, 0)`, keeping NaN.
    pub relu: bool,
}

/// A micro-kernel and the tile it computes.
#[derive(Clone, Copy)]
pub(crate) struct MicroKernel {
    /// Rows of C per tile.
    pub mr: usize,
    /// Columns of C per tile.
    pub nr: usize,
    /// Computes one tile.
    ///
    /// Arguments: `kc`, the A panel with its row and column strides, the B
    /// panel with its row stride, the first element of the tile in C, the
    /// row stride of C, and the epilogue. Columns are contiguous in B and C.
    ///
    /// # Safety
    /// The CPU must support the kernel's instructions; every element of the
    /// `MR x kc` A panel and of the `kc x NR` B panel must be readable; the
    /// `rows x cols` part of the tile must lie inside C's allocation;
    /// `bias`, if not null, must point at `rows` values.
    pub run: unsafe fn(usize, Panel, Panel, *mut f32, usize, &TileStore),
    /// A kernel for `C += A * B^T` with both operands row-major, when the
    /// backend has one.
    pub dot: Option<DotKernel>,
}

/// A micro-kernel for `C += A * B^T` where A (`DOT_MR x k`) and B
/// (`DOT_NR x k`) are both row-major, so the reduction runs along
/// contiguous memory in both and neither needs packing.
#[derive(Clone, Copy)]
pub(crate) struct DotKernel {
    /// Adds the `rows x cols` block of `A * B^T` over `k` steps to C.
    ///
    /// Arguments: `k`, A's first row and row stride, B's first row and row
    /// stride, C's first element and row stride, `rows`, `cols`.
    ///
    /// # Safety
    /// The CPU must support the kernel's instructions; `k` values of each
    /// of the `rows` rows of A and `cols` rows of B must be readable; the
    /// `rows x cols` block of C must be writable; `rows <= DOT_MR` and
    /// `cols <= DOT_NR`.
    #[allow(clippy::type_complexity)]
    pub run: unsafe fn(usize, *const f32, usize, *const f32, usize, *mut f32, usize, usize, usize),
}

/// Rows of A per dot-kernel call.
pub(crate) const DOT_MR: usize = 4;

/// Rows of B per dot-kernel call.
pub(crate) const DOT_NR: usize = 4;

/// A panel of A or B: its first element and strides in elements. `B` panels
/// use only `row_stride`, because their columns are adjacent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Panel {
    pub ptr: *const f32,
    pub row_stride: usize,
    pub col_stride: usize,
}

/// Largest `NR` of any kernel, so the driver can size stack buffers.
pub(crate) const MAX_NR: usize = 32;

/// Largest `MR` of any kernel.
pub(crate) const MAX_MR: usize = 8;

/// The AVX-512F kernel: 8 rows x 32 columns (two 16-lane vectors), 16
/// accumulators, so two FMA pipes with a 4-cycle latency stay busy.
#[cfg(target_arch = "x86_64")]
pub(crate) const AVX512: MicroKernel =
    MicroKernel { mr: 8, nr: 32, run: run_avx512, dot: Some(DotKernel { run: run_dot_avx512 }) };

/// The AVX2 + FMA kernel: 6 rows x 16 columns (two 8-lane vectors), 12
/// accumulators plus two B vectors and a broadcast in 16 registers.
#[cfg(target_arch = "x86_64")]
pub(crate) const AVX2: MicroKernel = MicroKernel { mr: 6, nr: 16, run: run_avx2, dot: None };

#[cfg(target_arch = "x86_64")]
unsafe fn run_avx512(kc: usize, a: Panel, b: Panel, c: *mut f32, rsc: usize, store: &TileStore) {
    // SAFETY: forwarded from the caller, who checked avx512f support by
    // choosing this kernel.
    unsafe { kernel_8x32(kc, a, b, c, rsc, store) }
}

#[cfg(target_arch = "x86_64")]
unsafe fn run_avx2(kc: usize, a: Panel, b: Panel, c: *mut f32, rsc: usize, store: &TileStore) {
    // SAFETY: forwarded from the caller, who checked avx2 and fma support
    // by choosing this kernel.
    unsafe { kernel_6x16(kc, a, b, c, rsc, store) }
}

/// Lane mask selecting the first `n` of 16 lanes.
#[cfg(target_arch = "x86_64")]
fn lanes16(n: usize) -> __mmask16 {
    if n >= 16 { 0xffff } else { ((1u32 << n) - 1) as __mmask16 }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn kernel_8x32(kc: usize, a: Panel, b: Panel, c: *mut f32, rsc: usize, store: &TileStore) {
    const MR: usize = 8;
    let mut lo = [_mm512_setzero_ps(); MR];
    let mut hi = [_mm512_setzero_ps(); MR];
    // SAFETY: the caller guarantees that both panels are readable.
    unsafe {
        for p in 0..kc {
            let b_p = b.ptr.add(p * b.row_stride);
            let b_lo = _mm512_loadu_ps(b_p);
            let b_hi = _mm512_loadu_ps(b_p.add(16));
            let a_p = a.ptr.add(p * a.col_stride);
            // Constant bounds: the loop unrolls and the accumulators stay in registers.
            for i in 0..MR {
                let a_i = _mm512_set1_ps(*a_p.add(i * a.row_stride));
                lo[i] = _mm512_fmadd_ps(a_i, b_lo, lo[i]);
                hi[i] = _mm512_fmadd_ps(a_i, b_hi, hi[i]);
            }
        }
    }

    let mask_lo = lanes16(store.cols);
    let mask_hi = lanes16(store.cols.saturating_sub(16));
    let zero = _mm512_setzero_ps();
    let beta = _mm512_set1_ps(store.beta);
    for i in 0..MR {
        if i >= store.rows {
            break;
        }
        // `wrapping_add`: the upper half may lie past C when it is masked off entirely.
        let row_lo = c.wrapping_add(i * rsc);
        let row_hi = row_lo.wrapping_add(16);
        let (mut v_lo, mut v_hi) = (lo[i], hi[i]);
        // SAFETY: masked loads and stores touch only the `cols` columns of
        // row i < rows, which the caller guarantees are inside C, and
        // `bias` has `rows` values when it is not null.
        unsafe {
            if store.beta != 0.0 {
                v_lo = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask_lo, row_lo), v_lo);
                v_hi = _mm512_fmadd_ps(beta, _mm512_maskz_loadu_ps(mask_hi, row_hi), v_hi);
            }
            if !store.bias.is_null() {
                let bias = _mm512_set1_ps(*store.bias.add(i));
                v_lo = _mm512_add_ps(v_lo, bias);
                v_hi = _mm512_add_ps(v_hi, bias);
            }
            if store.relu {
                // vmaxps returns its second operand when either is NaN, so
                // NaN passes through as it does in the scalar ReLU.
                v_lo = _mm512_max_ps(zero, v_lo);
                v_hi = _mm512_max_ps(zero, v_hi);
            }
            _mm512_mask_storeu_ps(row_lo, mask_lo, v_lo);
            _mm512_mask_storeu_ps(row_hi, mask_hi, v_hi);
        }
    }
}

/// Lane mask for `_mm256_maskload_ps`: the first `n` of 8 lanes set.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lanes8(n: usize) -> __m256i {
    let n = n.min(8) as i32;
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn kernel_6x16(kc: usize, a: Panel, b: Panel, c: *mut f32, rsc: usize, store: &TileStore) {
    const MR: usize = 6;
    let mut lo = [_mm256_setzero_ps(); MR];
    let mut hi = [_mm256_setzero_ps(); MR];
    // SAFETY: the caller guarantees that both panels are readable.
    unsafe {
        for p in 0..kc {
            let b_p = b.ptr.add(p * b.row_stride);
            let b_lo = _mm256_loadu_ps(b_p);
            let b_hi = _mm256_loadu_ps(b_p.add(8));
            let a_p = a.ptr.add(p * a.col_stride);
            for i in 0..MR {
                let a_i = _mm256_broadcast_ss(&*a_p.add(i * a.row_stride));
                lo[i] = _mm256_fmadd_ps(a_i, b_lo, lo[i]);
                hi[i] = _mm256_fmadd_ps(a_i, b_hi, hi[i]);
            }
        }
    }

    let mask_lo = lanes8(store.cols);
    let mask_hi = lanes8(store.cols.saturating_sub(8));
    let zero = _mm256_setzero_ps();
    let beta = _mm256_set1_ps(store.beta);
    for i in 0..MR {
        if i >= store.rows {
            break;
        }
        let row_lo = c.wrapping_add(i * rsc);
        let row_hi = row_lo.wrapping_add(8);
        let (mut v_lo, mut v_hi) = (lo[i], hi[i]);
        // SAFETY: as in `kernel_8x32`; masked-off lanes are neither read
        // nor written.
        unsafe {
            if store.beta != 0.0 {
                v_lo = _mm256_fmadd_ps(beta, _mm256_maskload_ps(row_lo, mask_lo), v_lo);
                v_hi = _mm256_fmadd_ps(beta, _mm256_maskload_ps(row_hi, mask_hi), v_hi);
            }
            if !store.bias.is_null() {
                let bias = _mm256_set1_ps(*store.bias.add(i));
                v_lo = _mm256_add_ps(v_lo, bias);
                v_hi = _mm256_add_ps(v_hi, bias);
            }
            if store.relu {
                v_lo = _mm256_max_ps(zero, v_lo);
                v_hi = _mm256_max_ps(zero, v_hi);
            }
            _mm256_maskstore_ps(row_lo, mask_lo, v_lo);
            _mm256_maskstore_ps(row_hi, mask_hi, v_hi);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn run_dot_avx512(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    // SAFETY: forwarded from the caller, who checked avx512f support by
    // choosing this kernel.
    unsafe { dot_4x4(k, a, lda, b, ldb, c, ldc, rows, cols) }
}

/// `C[i][j] += sum_p A[i][p] * B[j][p]` for a 4 x 4 block: 16 accumulators
/// of 16 lanes each, reduced across lanes at the end. Rows past `rows` or
/// `cols` read row 0 again and their sums are dropped.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn dot_4x4(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
) {
    let a_rows: [*const f32; DOT_MR] = std::array::from_fn(|i| a.wrapping_add(if i < rows { i * lda } else { 0 }));
    let b_rows: [*const f32; DOT_NR] = std::array::from_fn(|j| b.wrapping_add(if j < cols { j * ldb } else { 0 }));
    let mut acc = [[_mm512_setzero_ps(); DOT_NR]; DOT_MR];
    let full = k / 16 * 16;
    // SAFETY: the caller guarantees k readable values in every row used,
    // and rows past `rows` / `cols` alias row 0.
    unsafe {
        let mut p = 0;
        while p < full {
            let bv: [__m512; DOT_NR] = std::array::from_fn(|j| _mm512_loadu_ps(b_rows[j].add(p)));
            for i in 0..DOT_MR {
                let av = _mm512_loadu_ps(a_rows[i].add(p));
                for j in 0..DOT_NR {
                    acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
                }
            }
            p += 16;
        }
        if full < k {
            let mask = lanes16(k - full);
            let bv: [__m512; DOT_NR] = std::array::from_fn(|j| _mm512_maskz_loadu_ps(mask, b_rows[j].add(full)));
            for i in 0..DOT_MR {
                let av = _mm512_maskz_loadu_ps(mask, a_rows[i].add(full));
                for j in 0..DOT_NR {
                    acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
                }
            }
        }
        // Constant bounds keep `acc` in registers; the tests skip absent rows and columns.
        for (i, acc_row) in acc.iter().enumerate() {
            for (j, &sum) in acc_row.iter().enumerate() {
                if i < rows && j < cols {
                    *c.add(i * ldc + j) += _mm512_reduce_add_ps(sum);
                }
            }
        }
    }
}
