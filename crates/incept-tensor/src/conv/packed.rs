//! Convolution on incept's packed GEMM (f32, AVX2 or AVX-512).
//!
//! The whole batch is one GEMM per channel group: the columns of B and C run
//! across all images (`n = batch * h_out * w_out`), so the weights are
//! packed once per call and small late layers (7x7 outputs) still fill
//! whole tiles. B is the input read through im2col while it is packed, so
//! no column matrix is written in the forward pass or for the weight
//! gradient; bias and ReLU are applied as each tile of C is stored.
//!
//! - forward: `Y[c_out x N*P] = W[c_out x K] * im2col(X)[K x N*P]`.
//! - weight gradient: `dW[c_out x K] = dY[c_out x N*P] * im2col(X)^T[N*P x K]`,
//!   one product over the whole batch, so its summation order is fixed.
//! - input gradient: `dcols = W^T * dY` for a few images at a time, then
//!   `col2im`; a pointwise convolution writes `dX = W^T * dY` directly.

use rayon::prelude::*;

use super::{ConvGeometry, col2im};
use crate::gemm::MicroKernel;
use crate::gemm::packed::{Epilogue, Layout, PackB, StridedB, gemm_packed};
use crate::window::valid_outputs;

/// Largest column buffer, in elements, the input gradient fills at once
/// (64 MiB of f32); a batch whose columns need more is processed a few
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
}

/// The same matrix transposed: row = pixel of the batch, column = patch
/// element. This is B of the weight-gradient product.
struct Im2colTransposed<'a>(Im2col<'a>);

/// Where tap `p` of a patch reads: input channel and kernel offsets.
#[derive(Clone, Copy)]
struct Tap {
    channel: usize,
    /// Kernel row times the vertical dilation.
    dy: usize,
    /// Kernel column times the horizontal dilation.
    dx: usize,
}

/// A run of adjacent output pixels in one output row of one image.
#[derive(Clone, Copy, Default)]
struct RowRun {
    image: usize,
    oy: usize,
    first_ox: usize,
    len: usize,
}

impl Im2col<'_> {
    fn tap(&self, p: usize) -> Tap {
        let g = self.g;
        let taps = g.k_h * g.k_w;
        let (i, j) = ((p % taps) / g.k_w, p % g.k_w);
        Tap { channel: self.first_channel + p / taps, dy: i * g.params.dilation.0, dx: j * g.params.dilation.1 }
    }

    /// Calls `f(run, offset)` for the runs that cover batch pixels
    /// `first..first + count`, `offset` being the run's distance from `first`.
    fn for_each_run(&self, first: usize, count: usize, mut f: impl FnMut(RowRun, usize)) {
        let (pixels, w_out) = (self.g.out_pixels(), self.g.w_out);
        let mut pixel = first;
        while pixel < first + count {
            let (image, within) = (pixel / pixels, pixel % pixels);
            let (oy, ox) = (within / w_out, within % w_out);
            let len = (w_out - ox).min(first + count - pixel);
            f(RowRun { image, oy, first_ox: ox, len }, pixel - first);
            pixel += len;
        }
    }

    /// Calls `put(position, value)` for the pixels of `run` that tap `tap`
    /// reads inside the image (the rest is padding and stays zero),
    /// `position` counting from the run's first pixel.
    #[inline]
    fn read_run(&self, tap: Tap, run: RowRun, mut put: impl FnMut(usize, f32)) {
        let g = self.g;
        let (s_h, s_w) = g.params.stride;
        let (p_h, p_w) = g.params.padding;
        if !valid_outputs(g.h_out, s_h, tap.dy, p_h, g.h_in).contains(&run.oy) {
            return;
        }
        let valid_ox = valid_outputs(g.w_out, s_w, tap.dx, p_w, g.w_in);
        let lo = valid_ox.start.max(run.first_ox);
        let hi = valid_ox.end.min(run.first_ox + run.len);
        if lo >= hi {
            return;
        }
        let iy = run.oy * s_h + tap.dy - p_h;
        let plane = (run.image * g.c_in + tap.channel) * g.h_in * g.w_in;
        let row = &self.x[plane + iy * g.w_in..plane + (iy + 1) * g.w_in];
        let first_ix = lo * s_w + tap.dx - p_w;
        for (n, &v) in row[first_ix..].iter().step_by(s_w).take(hi - lo).enumerate() {
            put(lo - run.first_ox + n, v);
        }
    }
}

impl PackB for Im2col<'_> {
    fn pack(&self, k0: usize, kc: usize, j0: usize, width: usize, nr: usize, dst: &mut [f32]) {
        let mut runs = [RowRun::default(); crate::gemm::MAX_NR];
        let mut offsets = [0usize; crate::gemm::MAX_NR];
        let mut count = 0;
        self.for_each_run(j0, width, |run, offset| {
            runs[count] = run;
            offsets[count] = offset;
            count += 1;
        });
        for (p, row) in dst[..kc * nr].chunks_exact_mut(nr).enumerate() {
            row.fill(0.0);
            let tap = self.tap(k0 + p);
            for (&run, &offset) in runs[..count].iter().zip(&offsets[..count]) {
                let out = &mut row[offset..offset + run.len];
                self.read_run(tap, run, |position, v| out[position] = v);
            }
        }
    }
}

impl PackB for Im2colTransposed<'_> {
    fn pack(&self, k0: usize, kc: usize, j0: usize, width: usize, nr: usize, dst: &mut [f32]) {
        let dst = &mut dst[..kc * nr];
        dst.fill(0.0);
        for column in 0..width {
            let tap = self.0.tap(j0 + column);
            self.0.for_each_run(k0, kc, |run, offset| {
                self.0.read_run(tap, run, |position, v| dst[(offset + position) * nr + column] = v);
            });
        }
    }
}

/// Computes `y = conv2d(x, weight) + bias`, then ReLU if `relu`, for the
/// whole batch. `y` may hold anything beforehand.
pub(super) fn forward(
    kernel: MicroKernel,
    g: &ConvGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) {
    let (m, k, pixels) = (g.group_c_out(), g.group_patch_len(), g.out_pixels());
    let c_in_group = g.c_in / g.groups;
    for group in 0..g.groups {
        let w = &weight[group * m * k..(group + 1) * m * k];
        let c_layout = Layout::batched(m, pixels, g.batch, pixels, g.c_out * pixels);
        let epilogue = Epilogue { beta: 0.0, bias: bias.map(|b| &b[group * m..(group + 1) * m]), relu };
        let y = &mut y[group * m * pixels..];
        if g.pointwise() {
            // A 1x1 convolution with stride 1 reads the input planes as they are.
            let layout = Layout::batched(k, pixels, g.batch, pixels, g.c_in * pixels);
            let b = StridedB::new(&x[group * c_in_group * pixels..], layout);
            gemm_packed(kernel, w, Layout::matrix(m, k, k, 1), &b, y, c_layout, epilogue, true);
        } else {
            let b = Im2col { x, g, first_channel: group * c_in_group };
            gemm_packed(kernel, w, Layout::matrix(m, k, k, 1), &b, y, c_layout, epilogue, true);
        }
    }
}

/// Writes the weight gradient `dw` (`[c_out, c_in / groups, k_h, k_w]`) for
/// the whole batch.
pub(super) fn weight_grad(kernel: MicroKernel, g: &ConvGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let (m, k, pixels) = (g.group_c_out(), g.group_patch_len(), g.out_pixels());
    let c_in_group = g.c_in / g.groups;
    for group in 0..g.groups {
        let a_layout = Layout::batched(m, pixels, g.batch, pixels, g.c_out * pixels);
        let b = Im2colTransposed(Im2col { x, g, first_channel: group * c_in_group });
        let dw = &mut dw[group * m * k..(group + 1) * m * k];
        let epilogue = Epilogue { beta: 0.0, bias: None, relu: false };
        gemm_packed(kernel, &dy[group * m * pixels..], a_layout, &b, dw, Layout::matrix(m, k, k, 1), epilogue, true);
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
    let mut dcols = vec![0.0f32; cols_per_image * images_per_step];
    for first in (0..g.batch).step_by(images_per_step) {
        let images = first..(first + images_per_step).min(g.batch);
        let dcols = &mut dcols[..cols_per_image * images.len()];
        // dcols holds each image's [K x P] column matrix, one after another.
        for group in 0..g.groups {
            let (w, w_layout) = w_t(group);
            let c_layout = Layout::batched(k, pixels, images.len(), pixels, cols_per_image);
            let b = dy_source(group, images.clone());
            gemm_packed(kernel, w, w_layout, &b, &mut dcols[group * k * pixels..], c_layout, no_epilogue, true);
        }
        let dx = &mut dx[images.start * g.in_plane()..images.end * g.in_plane()];
        dx.par_chunks_mut(g.in_plane()).zip(dcols.par_chunks(cols_per_image)).for_each(|(dx_n, dcols_n)| {
            dx_n.fill(0.0);
            col2im(g, dcols_n, dx_n);
        });
    }
}
