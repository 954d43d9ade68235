//! Convolution on incept's packed GEMM (f32, AVX2 or AVX-512).
//!
//! The whole batch is one GEMM per channel group: the columns of B and C run
//! across all images (`n = batch * h_out * w_out`), so the weights are
//! packed once per call and small late layers (7x7 outputs) still fill
//! whole tiles. B is the input read through im2col while it is packed, so
//! the forward pass writes no column matrix. Bias and ReLU are applied as
//! each tile of C is stored.
//!
//! - forward: `Y[c_out x N*P] = W[c_out x K] * im2col(X)[K x N*P]`.
//! - weight gradient: `dW[c_out x K] = dY[c_out x N*P] * im2col(X)^T[N*P x K]`.
//!   With a dot kernel (AVX-512) it is summed image by image in index order,
//!   from column matrices written a few images at a time. Without one (AVX2)
//!   it is one packed product over the whole batch, with im2col fused into
//!   the packing of B. Neither summation order depends on the thread count.
//! - input gradient: `dcols = W^T * dY` for a few images at a time, then
//!   `col2im`; a pointwise convolution writes `dX = W^T * dY` directly.

use std::ops::Range;

use rayon::prelude::*;

use super::{ConvGeometry, col2im, im2col};
use crate::gemm::dot::{Rows, gemm_nt_add};
use crate::gemm::packed::{Epilogue, Layout, PackB, StridedB, gemm_packed, gemm_packed_raw};
use crate::gemm::{DOT_MR, DOT_NR, DotKernel, MicroKernel};
use crate::window::valid_outputs;

/// Largest column buffer, in elements, that the input gradient fills at
/// once (64 MiB of f32). A batch whose columns need more is processed a few
/// images at a time.
const DCOLS_MAX_ELEMENTS: usize = 1 << 24;

/// The input of one channel group read through im2col: row
/// `p = (c - first_channel) * k_h * k_w + i * k_w + j` and column
/// `image * h_out * w_out + oy * w_out + ox` hold
/// `x[image, c, oy * s_h + i * d_h - p_h, ox * s_w + j * d_w - p_w]`, or 0 in
/// the padding.
struct Im2col<'a> {
    x: &'a [f32],
    g: &'a ConvGeometry,
    first_channel: usize,
    /// For each kernel row `i`, the output rows that read inside the image.
    valid_oy: Vec<Range<usize>>,
    /// For each kernel column `j`, the output columns that read inside the image.
    valid_ox: Vec<Range<usize>>,
}

/// The same matrix transposed: row = pixel of the batch, column = patch
/// element. This is B of the weight-gradient product.
struct Im2colTransposed<'a>(Im2col<'a>);

/// A tap of the kernel: input channel and kernel row and column.
#[derive(Clone, Copy, Debug)]
struct Tap {
    channel: usize,
    i: usize,
    j: usize,
}

/// A run of adjacent output pixels in one output row of one image, and
/// where it lands in the packed panel.
#[derive(Clone, Copy, Default)]
struct RowRun {
    image: usize,
    oy: usize,
    first_ox: usize,
    len: usize,
    /// Distance of the run's first pixel from the first pixel packed.
    offset: usize,
}

/// Initial capacity of a pack call's run list: enough for a 32-pixel panel
/// of 1-pixel-wide rows, and for a 256-pixel depth block of 4-pixel rows.
const INLINE_RUNS: usize = 64;

impl<'a> Im2col<'a> {
    fn new(x: &'a [f32], g: &'a ConvGeometry, first_channel: usize) -> Self {
        let (s_h, s_w) = g.params.stride;
        let (p_h, p_w) = g.params.padding;
        let (d_h, d_w) = g.params.dilation;
        let valid_oy = (0..g.k_h).map(|i| valid_outputs(g.h_out, s_h, i * d_h, p_h, g.h_in)).collect();
        let valid_ox = (0..g.k_w).map(|j| valid_outputs(g.w_out, s_w, j * d_w, p_w, g.w_in)).collect();
        Im2col { x, g, first_channel, valid_oy, valid_ox }
    }

    /// Returns the tap of patch row `p`.
    fn tap(&self, p: usize) -> Tap {
        let g = self.g;
        let taps = g.k_h * g.k_w;
        Tap { channel: self.first_channel + p / taps, i: (p % taps) / g.k_w, j: p % g.k_w }
    }

    /// Returns the tap of patch row `p + 1`, given that of `p`.
    fn next_tap(&self, tap: Tap) -> Tap {
        match (tap.i + 1 == self.g.k_h, tap.j + 1 == self.g.k_w) {
            (_, false) => Tap { j: tap.j + 1, ..tap },
            (false, true) => Tap { i: tap.i + 1, j: 0, ..tap },
            (true, true) => Tap { channel: tap.channel + 1, i: 0, j: 0 },
        }
    }

    /// Splits batch pixels `first..first + count` into runs within output rows.
    fn runs(&self, first: usize, count: usize, runs: &mut Vec<RowRun>) {
        let (pixels, w_out) = (self.g.out_pixels(), self.g.w_out);
        runs.clear();
        let mut pixel = first;
        while pixel < first + count {
            let (image, within) = (pixel / pixels, pixel % pixels);
            let (oy, ox) = (within / w_out, within % w_out);
            let len = (w_out - ox).min(first + count - pixel);
            runs.push(RowRun { image, oy, first_ox: ox, len, offset: pixel - first });
            pixel += len;
        }
    }

    /// Finds the part of `run` that `tap` reads inside the image: the
    /// positions (counted from the run's first pixel), the input row and the
    /// index of the first value read. Returns `None` when the whole run is
    /// padding.
    #[inline]
    fn clip(&self, tap: Tap, run: &RowRun) -> Option<(Range<usize>, &'a [f32], usize)> {
        let g = self.g;
        if !self.valid_oy[tap.i].contains(&run.oy) {
            return None;
        }
        let valid_ox = &self.valid_ox[tap.j];
        let lo = valid_ox.start.max(run.first_ox);
        let hi = valid_ox.end.min(run.first_ox + run.len);
        if lo >= hi {
            return None;
        }
        let iy = run.oy * g.params.stride.0 + tap.i * g.params.dilation.0 - g.params.padding.0;
        let plane = (run.image * g.c_in + tap.channel) * g.h_in * g.w_in;
        let row = &self.x[plane + iy * g.w_in..plane + (iy + 1) * g.w_in];
        let first_ix = lo * g.params.stride.1 + tap.j * g.params.dilation.1 - g.params.padding.1;
        Some((lo - run.first_ox..hi - run.first_ox, row, first_ix))
    }
}

impl PackB for Im2col<'_> {
    fn pack(&self, k0: usize, kc: usize, j0: usize, width: usize, nr: usize, dst: &mut [f32]) {
        let mut runs = Vec::with_capacity(INLINE_RUNS);
        self.runs(j0, width, &mut runs);
        let s_w = self.g.params.stride.1;
        let mut tap = self.tap(k0);
        for row in dst[..kc * nr].chunks_exact_mut(nr) {
            row.fill(0.0);
            for run in &runs {
                let Some((positions, src, first_ix)) = self.clip(tap, run) else { continue };
                let out = &mut row[run.offset + positions.start..run.offset + positions.end];
                if s_w == 1 {
                    out.copy_from_slice(&src[first_ix..first_ix + out.len()]);
                } else {
                    for (o, &v) in out.iter_mut().zip(src[first_ix..].iter().step_by(s_w)) {
                        *o = v;
                    }
                }
            }
            tap = self.next_tap(tap);
        }
    }
}

impl PackB for Im2colTransposed<'_> {
    fn pack(&self, k0: usize, kc: usize, j0: usize, width: usize, nr: usize, dst: &mut [f32]) {
        let dst = &mut dst[..kc * nr];
        dst.fill(0.0);
        let mut runs = Vec::with_capacity(INLINE_RUNS);
        self.0.runs(k0, kc, &mut runs);
        let s_w = self.0.g.params.stride.1;
        let mut tap = self.0.tap(j0);
        for column in 0..width {
            for run in &runs {
                let Some((positions, src, first_ix)) = self.0.clip(tap, run) else { continue };
                let start = (run.offset + positions.start) * nr + column;
                let out = dst[start..].iter_mut().step_by(nr);
                for (o, &v) in out.zip(src[first_ix..].iter().step_by(s_w)).take(positions.len()) {
                    *o = v;
                }
            }
            tap = self.0.next_tap(tap);
        }
    }
}

/// Computes `y = conv2d(x, weight) + bias`, then ReLU if `relu`, for the
/// whole batch, writing every one of the `y_len` elements at `y` and reading
/// none.
///
/// # Safety
/// `y` must be valid for writes of `y_len = batch * c_out * h_out * w_out`
/// elements, which may be uninitialised, and nothing else may access them
/// during the call.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn forward(
    kernel: MicroKernel,
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: *mut f32,
    y_len: usize,
) {
    let (m, k, pixels) = (g.group_c_out(), g.group_patch_len(), g.out_pixels());
    assert_eq!(y_len, g.batch * g.c_out * pixels, "conv output buffer has the wrong length");
    let c_in_group = g.c_in / g.groups;
    for group in 0..g.groups {
        let w = &weight[group * m * k..(group + 1) * m * k];
        let c_layout = Layout::batched(m, pixels, g.batch, pixels, g.c_out * pixels);
        let epilogue = Epilogue { beta: 0.0, bias: bias.map(|b| &b[group * m..(group + 1) * m]), relu };
        // The group's output channels start `group * m` planes into each image.
        let offset = group * m * pixels;
        let (y, y_len) = (y.wrapping_add(offset), y_len - offset);
        let w_layout = Layout::matrix(m, k, k, 1);
        // SAFETY: forwarded from the caller; with beta 0 nothing is read.
        unsafe {
            if g.pointwise() {
                // A 1x1 convolution with stride 1 reads the input planes as they are.
                let layout = Layout::batched(k, pixels, g.batch, pixels, g.c_in * pixels);
                let b = StridedB::new(&x[group * c_in_group * pixels..], layout);
                gemm_packed_raw(kernel, w, w_layout, &b, y, y_len, c_layout, epilogue, true);
            } else {
                let b = Im2col::new(x, g, group * c_in_group);
                gemm_packed_raw(kernel, w, w_layout, &b, y, y_len, c_layout, epilogue, true);
            }
        }
    }
}

/// Writes the weight gradient `dw` (`[c_out, c_in / groups, k_h, k_w]`) for
/// the whole batch; `dw` must hold zeros.
pub(super) fn weight_grad(kernel: MicroKernel, g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    if let Some(dot) = kernel.dot {
        weight_grad_dot(dot, g, x, dy, dw);
        return;
    }
    let (m, k, pixels) = (g.group_c_out(), g.group_patch_len(), g.out_pixels());
    let c_in_group = g.c_in / g.groups;
    for group in 0..g.groups {
        let a_layout = Layout::batched(m, pixels, g.batch, pixels, g.c_out * pixels);
        let b = Im2colTransposed(Im2col::new(x, g, group * c_in_group));
        let dw = &mut dw[group * m * k..(group + 1) * m * k];
        let epilogue = Epilogue { beta: 0.0, bias: None, relu: false };
        gemm_packed(kernel, &dy[group * m * pixels..], a_layout, &b, dw, Layout::matrix(m, k, k, 1), epilogue, true);
    }
}

/// [`weight_grad`] with a dot-product kernel: `dW_g += dY_n,g * cols_n,g^T`
/// image by image, with the column matrices of a few images written at a
/// time (a pointwise convolution reads the input planes in place). Workers
/// split the rows and columns of `dW`; each element sums its images in
/// order, so the result does not depend on the thread count.
fn weight_grad_dot(kernel: DotKernel, g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (m, k, pixels) = (g.group_c_out(), g.group_patch_len(), g.out_pixels());
    let cols_per_image = if g.pointwise() { 0 } else { g.patch_len() * pixels };
    let images_per_step = (DCOLS_MAX_ELEMENTS / cols_per_image.max(1)).clamp(1, g.batch);
    let mut cols = vec![0.0f32; cols_per_image * images_per_step];
    let blocks = weight_grad_blocks(g.groups, m, k, rayon::current_num_threads());
    assert_eq!(dw.len(), g.groups * m * k, "weight gradient has c_out * K_g elements");
    let shared = SharedRows(dw.as_mut_ptr());
    for first in (0..g.batch).step_by(images_per_step) {
        let images = first..(first + images_per_step).min(g.batch);
        if !g.pointwise() {
            let x = &x[images.start * g.in_plane()..images.end * g.in_plane()];
            let cols = &mut cols[..cols_per_image * images.len()];
            cols.par_chunks_mut(cols_per_image).zip(x.par_chunks(g.in_plane())).for_each(|(c, x_n)| im2col(g, x_n, c));
        }
        let run = |block: &(Range<usize>, Range<usize>)| {
            let (rows, columns) = block.clone();
            // Blocks never straddle groups: see `weight_grad_blocks`.
            let group = rows.start / m;
            let local_rows = rows.start - group * m..rows.end - group * m;
            for image in images.clone() {
                let dy_n = &dy[(image * g.c_out + group * m) * pixels..(image * g.c_out + (group + 1) * m) * pixels];
                let b_data = if g.pointwise() {
                    &x[image * g.in_plane() + group * k * pixels..image * g.in_plane() + (group + 1) * k * pixels]
                } else {
                    let n = image - images.start;
                    &cols[n * cols_per_image + group * k * pixels..n * cols_per_image + (group + 1) * k * pixels]
                };
                let a = Rows { data: dy_n, rows: m, row_stride: pixels };
                let b = Rows { data: b_data, rows: k, row_stride: pixels };
                // SAFETY: the group's block of dW lies inside `dw`, which is
                // borrowed mutably for the whole loop, and each block of
                // rows and columns belongs to one task.
                unsafe {
                    let dw_group = shared.ptr().add(group * m * k);
                    gemm_nt_add(kernel, pixels, a, b, dw_group, m * k, k, local_rows.clone(), columns.clone());
                }
            }
        };
        if rayon::current_thread_index().is_none() && rayon::current_num_threads() > 1 {
            blocks.par_iter().for_each(run);
        } else {
            blocks.iter().for_each(run);
        }
    }
}

/// Splits the weight gradient (`groups` blocks of `m` rows by `k` columns)
/// into blocks of rows (global row indices) and columns for the workers,
/// never across a group, with about four blocks per worker.
fn weight_grad_blocks(groups: usize, m: usize, k: usize, workers: usize) -> Vec<(Range<usize>, Range<usize>)> {
    let per_group = (4 * workers).div_ceil(groups).max(1);
    let row_blocks = per_group.min(m.div_ceil(DOT_MR)).min(2);
    let col_blocks = per_group.div_ceil(row_blocks).min(k.div_ceil(DOT_NR));
    let rows_per_block = m.div_ceil(row_blocks).next_multiple_of(DOT_MR);
    let cols_per_block = k.div_ceil(col_blocks).next_multiple_of(DOT_NR);
    let mut blocks = Vec::new();
    for group in 0..groups {
        for first_row in (0..m).step_by(rows_per_block) {
            for first_col in (0..k).step_by(cols_per_block) {
                let rows = group * m + first_row..group * m + (first_row + rows_per_block).min(m);
                blocks.push((rows, first_col..(first_col + cols_per_block).min(k)));
            }
        }
    }
    blocks
}

/// The weight gradient as a raw pointer, so that workers can write
/// disjoint blocks of it.
#[derive(Clone, Copy)]
struct SharedRows(*mut f32);

// SAFETY: workers write disjoint blocks, and the slice outlives the loop.
unsafe impl Send for SharedRows {}
unsafe impl Sync for SharedRows {}

impl SharedRows {
    /// The pointer; a method, so that closures capture the whole wrapper.
    fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// Writes the input gradient `dx` (`[N, C_in, H, W]`) for the whole batch.
pub(super) fn input_grad(kernel: MicroKernel, g: &ConvGeometry, weight: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (m, k, pixels) = (g.group_c_out(), g.group_patch_len(), g.out_pixels());
    let c_in_group = g.c_in / g.groups;
    let no_epilogue = Epilogue { beta: 0.0, bias: None, relu: false };
    // A = W_g^T, read in place from the row-major weight.
    let w_t = |group: usize| (&weight[group * m * k..(group + 1) * m * k], Layout::matrix(k, m, 1, k));
    let dy_source = |group: usize, images: std::ops::Range<usize>| {
        let layout = Layout::batched(m, pixels, images.len(), pixels, g.c_out * pixels);
        StridedB::new(&dy[images.start * g.c_out * pixels + group * m * pixels..], layout)
    };
    if g.pointwise() {
        for group in 0..g.groups {
            let (w, w_layout) = w_t(group);
            let c_layout = Layout::batched(k, pixels, g.batch, pixels, g.c_in * pixels);
            let dx = &mut dx[group * c_in_group * pixels..];
            gemm_packed(kernel, w, w_layout, &dy_source(group, 0..g.batch), dx, c_layout, no_epilogue, true);
        }
        return;
    }
    let cols_per_image = g.patch_len() * pixels;
    let images_per_step = (DCOLS_MAX_ELEMENTS / cols_per_image).clamp(1, g.batch);
    // Not zeroed: the GEMMs below write every element before col2im reads it.
    let mut dcols: Vec<f32> = Vec::with_capacity(cols_per_image * images_per_step);
    for first in (0..g.batch).step_by(images_per_step) {
        let images = first..(first + images_per_step).min(g.batch);
        let len = cols_per_image * images.len();
        // dcols contains each image's [K x P] column matrix, one after
        // another, and group `group` writes rows `group * k..(group + 1) * k` of each.
        for group in 0..g.groups {
            let (w, w_layout) = w_t(group);
            let c_layout = Layout::batched(k, pixels, images.len(), pixels, cols_per_image);
            let b = dy_source(group, images.clone());
            let offset = group * k * pixels;
            // SAFETY: the capacity covers `len` elements from the start, and
            // with beta 0 the GEMM only writes.
            unsafe {
                let c = dcols.as_mut_ptr().add(offset);
                gemm_packed_raw(kernel, w, w_layout, &b, c, len - offset, c_layout, no_epilogue, true);
            }
        }
        // SAFETY: the groups together wrote all `len` elements (every row
        // of every image's block), so they are initialised.
        unsafe { dcols.set_len(len.max(dcols.len())) };
        let dcols = &dcols[..len];
        let dx = &mut dx[images.start * g.in_plane()..images.end * g.in_plane()];
        dx.par_chunks_mut(g.in_plane()).zip(dcols.par_chunks(cols_per_image)).for_each(|(dx_n, dcols_n)| {
            dx_n.fill(0.0);
            col2im(g, dcols_n, dx_n);
        });
    }
}
