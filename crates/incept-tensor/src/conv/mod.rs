//! 2-D convolution by im2col and GEMM, forward and backward.
//!
//! Per image `n`, with `K = c_in * k_h * k_w` and `P = h_out * w_out`:
//!
//! - forward: `im2col(X_n) -> cols[K x P]`, then `Y_n[c_out x P] = W[c_out x K] * cols`;
//!   a 1x1 kernel with stride 1 and no padding skips im2col (`cols` is `X_n`).
//! - input gradient: `dcols[K x P] = W^T * dY_n`, then `col2im` adds `dcols` into `dX_n`.
//! - weight gradient: `dW[c_out x K] += dY_n * cols^T`; bias gradient: the sum of `dY`.
//!
//! On the portable GEMM backend, images are split across rayon workers,
//! each owning one `cols` buffer; with a single image the GEMM itself is
//! split over output-channel rows instead. For `f32` on the AVX2 and AVX-512
//! backends the whole batch is one packed GEMM with im2col fused into its
//! packing (see the `packed` module).

mod packed;

use rayon::prelude::*;

use crate::gemm::{MatMut, MatRef, MicroKernel, current_backend, gemm, gemm_par, micro_kernel};
use crate::window::valid_outputs;
use crate::{Float, Result, Tensor, TensorError};

/// Geometry of a 2-D convolution: stride, zero padding and dilation per axis
/// (height, width), and the number of channel groups. The kernel size comes
/// from the weight tensor.
///
/// PyTorch equivalent: the `stride`, `padding`, `dilation` and `groups`
/// arguments of `torch.nn.functional.conv2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    /// Step between output pixels, in input pixels.
    pub stride: (usize, usize),
    /// Zeros added on each side of the input.
    pub padding: (usize, usize),
    /// Spacing between kernel taps; 1 is a dense kernel.
    pub dilation: (usize, usize),
    /// Channel groups: input and output channels are split into this many
    /// equal groups, and each output group reads only its input group. 1 is a
    /// dense convolution; `groups == c_in` with `c_out` a multiple of it is
    /// depthwise.
    pub groups: usize,
}

impl Conv2dParams {
    /// A square geometry with the same stride and padding on both axes and
    /// no dilation.
    pub fn new(stride: usize, padding: usize) -> Self {
        Conv2dParams { stride: (stride, stride), padding: (padding, padding), dilation: (1, 1), groups: 1 }
    }

    /// The same geometry with `groups` channel groups.
    pub fn with_groups(self, groups: usize) -> Self {
        Conv2dParams { groups, ..self }
    }

    /// Output height for an input of height `h_in` and a kernel of height `k_h`,
    /// or `None` if the dilated kernel does not fit in the padded input.
    pub fn h_out(&self, h_in: usize, k_h: usize) -> Option<usize> {
        out_size(h_in, k_h, self.stride.0, self.padding.0, self.dilation.0)
    }

    /// Output width for an input of width `w_in` and a kernel of width `k_w`,
    /// or `None` if the dilated kernel does not fit in the padded input.
    pub fn w_out(&self, w_in: usize, k_w: usize) -> Option<usize> {
        out_size(w_in, k_w, self.stride.1, self.padding.1, self.dilation.1)
    }

    /// True when the convolution is a plain matrix product per image.
    fn is_pointwise(&self, k_h: usize, k_w: usize) -> bool {
        k_h == 1 && k_w == 1 && self.stride == (1, 1) && self.padding == (0, 0)
    }
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams::new(1, 0)
    }
}

fn out_size(size: usize, kernel: usize, stride: usize, padding: usize, dilation: usize) -> Option<usize> {
    let span = dilation.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
    let padded = padding.checked_mul(2)?.checked_add(size)?;
    (padded >= span && stride > 0).then(|| (padded - span) / stride + 1)
}

/// Validated sizes of one convolution problem.
#[derive(Clone, Copy, Debug)]
struct ConvGeometry {
    batch: usize,
    c_in: usize,
    h_in: usize,
    w_in: usize,
    c_out: usize,
    k_h: usize,
    k_w: usize,
    h_out: usize,
    w_out: usize,
    params: Conv2dParams,
    groups: usize,
}

impl ConvGeometry {
    fn new<T: Float>(op: &'static str, x: &Tensor<T>, weight: &Tensor<T>, params: Conv2dParams) -> Result<Self> {
        let &[batch, c_in, h_in, w_in] = x.expect_rank(op, 4)? else { unreachable!() };
        let &[c_out, w_c_in, k_h, k_w] = weight.expect_rank(op, 4)? else { unreachable!() };
        let groups = params.groups;
        if groups == 0 || c_in % groups != 0 || c_out % groups != 0 {
            return Err(TensorError::invalid(
                op,
                format!("groups = {groups} must be at least 1 and divide both c_in = {c_in} and c_out = {c_out}"),
            ));
        }
        if w_c_in * groups != c_in {
            return Err(TensorError::mismatch(
                op,
                &[x.dims(), weight.dims()],
                format!(
                    "the input has {c_in} channels but the weight expects {} ({w_c_in} per group, {groups} groups; \
                     weight is [c_out, c_in / groups, k_h, k_w])",
                    w_c_in * groups
                ),
            ));
        }
        if k_h == 0 || k_w == 0 || c_out == 0 || c_in == 0 {
            return Err(TensorError::invalid(
                op,
                format!("weight shape {:?} has a zero dimension; every dimension must be at least 1", weight.dims()),
            ));
        }
        if h_in == 0 || w_in == 0 {
            return Err(TensorError::invalid(
                op,
                format!("input {:?} has an empty image plane; height and width must be at least 1", x.dims()),
            ));
        }
        let (s, d) = (params.stride, params.dilation);
        if s.0 == 0 || s.1 == 0 || d.0 == 0 || d.1 == 0 {
            return Err(TensorError::invalid(op, format!("stride {s:?} and dilation {d:?} must be at least 1")));
        }
        let (Some(h_out), Some(w_out)) = (params.h_out(h_in, k_h), params.w_out(w_in, k_w)) else {
            return Err(TensorError::invalid(
                op,
                format!(
                    "kernel {k_h}x{k_w} (dilation {d:?}) is larger than the input {h_in}x{w_in} with padding {:?}",
                    params.padding
                ),
            ));
        };
        Ok(ConvGeometry { batch, c_in, h_in, w_in, c_out, k_h, k_w, h_out, w_out, params, groups })
    }

    /// Rows of the im2col matrix: `c_in * k_h * k_w`.
    fn patch_len(&self) -> usize {
        self.c_in * self.k_h * self.k_w
    }

    /// Rows of the im2col matrix one group uses, and columns of its weight
    /// matrix: `c_in / groups * k_h * k_w`.
    fn group_patch_len(&self) -> usize {
        self.patch_len() / self.groups
    }

    /// Output channels of one group.
    fn group_c_out(&self) -> usize {
        self.c_out / self.groups
    }

    fn in_plane(&self) -> usize {
        self.c_in * self.h_in * self.w_in
    }

    fn out_pixels(&self) -> usize {
        self.h_out * self.w_out
    }

    fn pointwise(&self) -> bool {
        self.params.is_pointwise(self.k_h, self.k_w)
    }
}

/// Copies the receptive fields of one image into the columns of `cols`
/// (`[c_in * k_h * k_w x h_out * w_out]`), writing zeros for padding.
fn im2col<T: Float>(g: &ConvGeometry, x: &[T], cols: &mut [T]) {
    debug_assert_eq!(x.len(), g.in_plane());
    debug_assert_eq!(cols.len(), g.patch_len() * g.out_pixels());
    let (s_h, s_w) = g.params.stride;
    let (p_h, p_w) = g.params.padding;
    let (d_h, d_w) = g.params.dilation;
    let mut rows = cols.chunks_exact_mut(g.out_pixels());
    for c in 0..g.c_in {
        let plane = &x[c * g.h_in * g.w_in..(c + 1) * g.h_in * g.w_in];
        for i in 0..g.k_h {
            let valid_oy = valid_outputs(g.h_out, s_h, i * d_h, p_h, g.h_in);
            for j in 0..g.k_w {
                let row = rows.next().expect("im2col: cols has c_in * k_h * k_w rows");
                let valid_ox = valid_outputs(g.w_out, s_w, j * d_w, p_w, g.w_in);
                for (oy, out) in row.chunks_exact_mut(g.w_out).enumerate() {
                    if !valid_oy.contains(&oy) || valid_ox.is_empty() {
                        out.fill(T::zero());
                        continue;
                    }
                    let iy = oy * s_h + i * d_h - p_h;
                    let src = &plane[iy * g.w_in..(iy + 1) * g.w_in];
                    out[..valid_ox.start].fill(T::zero());
                    out[valid_ox.end..].fill(T::zero());
                    let first = valid_ox.start * s_w + j * d_w - p_w;
                    if s_w == 1 {
                        out[valid_ox.clone()].copy_from_slice(&src[first..first + valid_ox.len()]);
                    } else {
                        for (o, &v) in out[valid_ox.clone()].iter_mut().zip(src[first..].iter().step_by(s_w)) {
                            *o = v;
                        }
                    }
                }
            }
        }
    }
}

/// Adds the columns of `cols` back into the image they were gathered from;
/// the adjoint of [`im2col`]. Padding positions are dropped.
fn col2im<T: Float>(g: &ConvGeometry, cols: &[T], x: &mut [T]) {
    debug_assert_eq!(x.len(), g.in_plane());
    let (s_h, s_w) = g.params.stride;
    let (p_h, p_w) = g.params.padding;
    let (d_h, d_w) = g.params.dilation;
    let mut rows = cols.chunks_exact(g.out_pixels());
    for c in 0..g.c_in {
        let plane = &mut x[c * g.h_in * g.w_in..(c + 1) * g.h_in * g.w_in];
        for i in 0..g.k_h {
            let valid_oy = valid_outputs(g.h_out, s_h, i * d_h, p_h, g.h_in);
            for j in 0..g.k_w {
                let row = rows.next().expect("col2im: cols has c_in * k_h * k_w rows");
                let valid_ox = valid_outputs(g.w_out, s_w, j * d_w, p_w, g.w_in);
                if valid_ox.is_empty() {
                    continue;
                }
                let first = valid_ox.start * s_w + j * d_w - p_w;
                for oy in valid_oy.clone() {
                    let iy = oy * s_h + i * d_h - p_h;
                    let dst = &mut plane[iy * g.w_in + first..(iy + 1) * g.w_in];
                    let src = &row[oy * g.w_out + valid_ox.start..oy * g.w_out + valid_ox.end];
                    for (d, &v) in dst.iter_mut().step_by(s_w).zip(src) {
                        *d = *d + v;
                    }
                }
            }
        }
    }
}

/// Computes the output of one image: `Y_n = W * cols`, one GEMM per channel
/// group, then the epilogue (bias, ReLU).
fn forward_image<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    weight: &[T],
    epilogue: Epilogue<'_, T>,
    cols: &mut Vec<T>,
    y: &mut [T],
    split_rows: bool,
) {
    let (m, k, n) = (g.group_c_out(), g.group_patch_len(), g.out_pixels());
    let b: &[T] = if g.pointwise() {
        x
    } else {
        cols.resize(g.patch_len() * n, T::zero());
        im2col(g, x, cols);
        cols
    };
    // The rows of cols are ordered by input channel, so group `i` owns rows
    // `i * k ..`; its weights and outputs are likewise contiguous blocks.
    for group in 0..g.groups {
        // Y_n,g[c_out/groups x P] = W_g[c_out/groups x K_g] * cols_g[K_g x P]
        let w = MatRef::row_major(&weight[group * m * k..(group + 1) * m * k], m, k);
        let b = MatRef::row_major(&b[group * k * n..(group + 1) * k * n], k, n);
        let y = &mut y[group * m * n..(group + 1) * m * n];
        if split_rows {
            gemm_par(T::one(), w, b, T::zero(), y);
        } else {
            gemm(T::one(), w, b, T::zero(), MatMut::row_major(y, m, n));
        }
    }
    // Bias and ReLU while the output block is still in cache.
    match (epilogue.bias, epilogue.relu) {
        (Some(bias), false) => {
            for (plane, &b) in y.chunks_exact_mut(n).zip(bias) {
                plane.iter_mut().for_each(|v| *v = *v + b);
            }
        }
        (Some(bias), true) => {
            for (plane, &b) in y.chunks_exact_mut(n).zip(bias) {
                plane.iter_mut().for_each(|v| *v = relu_of(*v + b));
            }
        }
        (None, true) => y.iter_mut().for_each(|v| *v = relu_of(*v)),
        (None, false) => {}
    }
}

/// Operations the forward pass applies to each output block after its GEMM.
#[derive(Clone, Copy)]
struct Epilogue<'a, T> {
    bias: Option<&'a [T]>,
    relu: bool,
}

/// `max(v, 0)` that keeps NaN, like [`crate::elementwise::relu`].
fn relu_of<T: Float>(v: T) -> T {
    if v < T::zero() { T::zero() } else { v }
}

/// 2-D cross-correlation of `x` (`[N, C_in, H, W]`) with `weight`
/// (`[C_out, C_in, k_h, k_w]`) plus an optional `bias` (`[C_out]`).
///
/// PyTorch equivalent: `torch.nn.functional.conv2d(x, weight, bias, stride,
/// padding, dilation)`.
///
/// # Shapes
/// Returns `[N, C_out, H_out, W_out]` with `H_out = (H + 2 p_h - d_h (k_h - 1) - 1) / s_h + 1`
/// (floor division), and likewise for the width.
///
/// # Errors
/// [`TensorError`] if a tensor has the wrong rank, the channel counts or the
/// bias length disagree, a stride or dilation is zero, or the kernel does not
/// fit in the padded input.
pub fn conv2d<T: Float>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    params: Conv2dParams,
) -> Result<Tensor<T>> {
    conv2d_impl("conv2d", x, weight, bias, params, false)
}

/// [`conv2d`] followed by ReLU, applied while each output block is still in
/// cache: `max(conv2d(x, weight, bias), 0)`.
///
/// PyTorch equivalent: `torch.relu(torch.nn.functional.conv2d(...))`.
///
/// # Errors
/// As [`conv2d`].
pub fn conv2d_relu<T: Float>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    params: Conv2dParams,
) -> Result<Tensor<T>> {
    conv2d_impl("conv2d_relu", x, weight, bias, params, true)
}

fn conv2d_impl<T: Float>(
    op: &'static str,
    x: &Tensor<T>,
    weight: &Tensor<T>,
    bias: Option<&Tensor<T>>,
    params: Conv2dParams,
    relu: bool,
) -> Result<Tensor<T>> {
    let g = ConvGeometry::new(op, x, weight, params)?;
    if let Some(bias) = bias
        && bias.dims() != [g.c_out]
    {
        return Err(TensorError::mismatch(
            op,
            &[weight.dims(), bias.dims()],
            format!("the bias must have shape [{}] (one value per output channel)", g.c_out),
        ));
    }
    let out_len = g.c_out * g.out_pixels();
    let dims = [g.batch, g.c_out, g.h_out, g.w_out];
    if out_len == 0 || g.batch == 0 {
        return Ok(Tensor::zeros(dims));
    }
    if let Some(kernel) = packed_kernel::<T>()? {
        let bias = bias.map(|b| f32_of(b.data()));
        let (x, weight) = (f32_of(x.data()), f32_of(weight.data()));
        let len = g.batch * out_len;
        // The packed GEMM writes every output element, so the buffer is
        // not zeroed first.
        let mut data: Vec<T> = Vec::with_capacity(len);
        // T is f32 on this path (packed_kernel returns None otherwise).
        let y_ptr = data.as_mut_ptr().cast::<f32>();
        // SAFETY: the buffer has capacity for `len` elements, `forward`
        // writes all of them, and only then does `set_len` expose them.
        unsafe {
            packed::forward(kernel, &g, x, weight, bias, relu, y_ptr, len);
            data.set_len(len);
        }
        return Tensor::from_vec(data, dims);
    }
    let mut y = Tensor::zeros(dims);
    let epilogue = Epilogue { bias: bias.map(|b| b.data()), relu };
    let (x, weight) = (x.data(), weight.data());
    if g.batch == 1 {
        let mut cols = Vec::new();
        forward_image(&g, x, weight, epilogue, &mut cols, y.data_mut(), true);
    } else {
        y.data_mut().par_chunks_mut(out_len).zip(x.par_chunks(g.in_plane())).for_each_init(
            Vec::new,
            |cols, (y_n, x_n)| {
                forward_image(&g, x_n, weight, epilogue, cols, y_n, false);
            },
        );
    }
    Ok(y)
}

/// Returns the micro-kernel of the current GEMM backend when `T` is `f32`,
/// else `None` (the portable path).
///
/// # Errors
/// As [`current_backend`].
fn packed_kernel<T: Float>() -> Result<Option<MicroKernel>> {
    if T::as_f32_slice(&[]).is_none() {
        return Ok(None);
    }
    Ok(micro_kernel(current_backend()?))
}

/// Gradients of [`conv2d`] with respect to its three inputs.
#[derive(Clone, Debug)]
pub struct Conv2dGrads<T: Float> {
    /// Gradient of the input, `[N, C_in, H, W]`; `None` when not requested.
    pub input: Option<Tensor<T>>,
    /// Gradient of the weight, `[C_out, C_in, k_h, k_w]`.
    pub weight: Tensor<T>,
    /// Gradient of the bias, `[C_out]`.
    pub bias: Tensor<T>,
}

/// Per-worker state of the backward pass: one im2col buffer and partial
/// sums of the weight and bias gradients.
struct BackwardAcc<T> {
    cols: Vec<T>,
    dcols: Vec<T>,
    weight: Vec<T>,
    bias: Vec<T>,
}

impl<T: Float> BackwardAcc<T> {
    fn new(g: &ConvGeometry) -> Self {
        BackwardAcc {
            cols: Vec::new(),
            dcols: Vec::new(),
            weight: vec![T::zero(); g.c_out * g.group_patch_len()],
            bias: vec![T::zero(); g.c_out],
        }
    }

    fn merge(mut self, other: Self) -> Self {
        self.weight.iter_mut().zip(&other.weight).for_each(|(a, &b)| *a = *a + b);
        self.bias.iter_mut().zip(&other.bias).for_each(|(a, &b)| *a = *a + b);
        self
    }
}

/// Adds one image's contribution to the weight and bias gradients and, if
/// `dx` is given, writes that image's input gradient. Each channel group has
/// its own GEMMs, on its blocks of `cols`, `W` and `dY`.
fn backward_image<T: Float>(
    g: &ConvGeometry,
    x: &[T],
    weight: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    acc: &mut BackwardAcc<T>,
) {
    let (m, k, n) = (g.group_c_out(), g.group_patch_len(), g.out_pixels());
    for (db, plane) in acc.bias.iter_mut().zip(dy.chunks_exact(n)) {
        *db = *db + plane.iter().copied().sum::<T>();
    }
    let cols: &[T] = if g.pointwise() {
        x
    } else {
        acc.cols.resize(g.patch_len() * n, T::zero());
        im2col(g, x, &mut acc.cols);
        &acc.cols
    };
    for group in 0..g.groups {
        let dy_mat = MatRef::row_major(&dy[group * m * n..(group + 1) * m * n], m, n);
        let cols_mat = MatRef::row_major(&cols[group * k * n..(group + 1) * k * n], k, n);
        // dW_g[c_out/groups x K_g] += dY_n,g[c_out/groups x P] * cols_g^T[P x K_g]
        let dw = &mut acc.weight[group * m * k..(group + 1) * m * k];
        gemm_par(T::one(), dy_mat, cols_mat.t(), T::one(), dw);
    }
    let Some(dx) = dx else { return };
    if !g.pointwise() {
        acc.dcols.resize(g.patch_len() * n, T::zero());
    }
    for group in 0..g.groups {
        let dy_mat = MatRef::row_major(&dy[group * m * n..(group + 1) * m * n], m, n);
        let w_t = MatRef::row_major(&weight[group * m * k..(group + 1) * m * k], m, k).t();
        // dcols_g[K_g x P] = W_g^T[K_g x c_out/groups] * dY_n,g[c_out/groups x P];
        // for a pointwise convolution dcols is dX_n itself.
        let dcols = if g.pointwise() { &mut *dx } else { &mut acc.dcols[..] };
        gemm_par(T::one(), w_t, dy_mat, T::zero(), &mut dcols[group * k * n..(group + 1) * k * n]);
    }
    if !g.pointwise() {
        dx.fill(T::zero());
        col2im(g, &acc.dcols, dx);
    }
}

/// Number of image groups the backward pass splits a batch into. It is a
/// constant, not the thread count, so results do not depend on the machine;
/// 16 keeps two to eight workers busy.
const BACKWARD_CHUNKS: usize = 16;

/// Gradients of [`conv2d`] given the upstream gradient `dy`.
///
/// The input gradient is computed only when `input_grad` is true (the first
/// layer of a network never needs it).
///
/// # Shapes
/// `x`, `weight` as for [`conv2d`]; `dy` is `[N, C_out, H_out, W_out]`.
///
/// # Errors
/// As [`conv2d`], and if `dy` does not have the output shape.
pub fn conv2d_backward<T: Float>(
    x: &Tensor<T>,
    weight: &Tensor<T>,
    dy: &Tensor<T>,
    params: Conv2dParams,
    input_grad: bool,
) -> Result<Conv2dGrads<T>> {
    let g = ConvGeometry::new("conv2d_backward", x, weight, params)?;
    let expected = [g.batch, g.c_out, g.h_out, g.w_out];
    if dy.dims() != expected {
        return Err(TensorError::mismatch(
            "conv2d_backward",
            &[x.dims(), weight.dims(), dy.dims()],
            format!("the output gradient must have the output shape {expected:?}"),
        ));
    }
    let out_len = g.c_out * g.out_pixels();
    let mut dx = input_grad.then(|| Tensor::zeros(x.dims()));
    if let Some(kernel) = packed_kernel::<T>()? {
        return backward_packed(kernel, &g, x, weight, dy, dx);
    }
    let (x_data, w_data, dy_data) = (x.data(), weight.data(), dy.data());
    let mut acc = BackwardAcc::new(&g);
    if g.batch > 0 && out_len > 0 {
        // Images are summed in fixed chunks, and the chunk sums are added
        // in index order, so the weight gradient is bit-for-bit the same on
        // every run whatever the thread count or scheduling.
        let images_per_chunk = g.batch.div_ceil(BACKWARD_CHUNKS);
        let chunk_sums: Vec<BackwardAcc<T>> = match dx.as_mut() {
            // One image: run it on this thread, so that its GEMMs split their
            // rows across the workers (inside a worker they run serially).
            _ if g.batch == 1 => {
                let mut acc = BackwardAcc::new(&g);
                let dx = dx.as_mut().map(|dx| dx.data_mut());
                backward_image(&g, x_data, w_data, dy_data, dx, &mut acc);
                vec![acc]
            }
            Some(dx) => dx
                .data_mut()
                .par_chunks_mut(g.in_plane() * images_per_chunk)
                .zip(x_data.par_chunks(g.in_plane() * images_per_chunk))
                .zip(dy_data.par_chunks(out_len * images_per_chunk))
                .map(|((dx, x), dy)| {
                    let mut acc = BackwardAcc::new(&g);
                    let images = x.chunks_exact(g.in_plane()).zip(dy.chunks_exact(out_len));
                    for ((x_n, dy_n), dx_n) in images.zip(dx.chunks_exact_mut(g.in_plane())) {
                        backward_image(&g, x_n, w_data, dy_n, Some(dx_n), &mut acc);
                    }
                    acc
                })
                .collect(),
            None => x_data
                .par_chunks(g.in_plane() * images_per_chunk)
                .zip(dy_data.par_chunks(out_len * images_per_chunk))
                .map(|(x, dy)| {
                    let mut acc = BackwardAcc::new(&g);
                    for (x_n, dy_n) in x.chunks_exact(g.in_plane()).zip(dy.chunks_exact(out_len)) {
                        backward_image(&g, x_n, w_data, dy_n, None, &mut acc);
                    }
                    acc
                })
                .collect(),
        };
        acc = chunk_sums.into_iter().fold(acc, BackwardAcc::merge);
    }
    Ok(Conv2dGrads {
        input: dx,
        weight: Tensor::from_vec(acc.weight, weight.dims())?,
        bias: Tensor::from_vec(acc.bias, [g.c_out])?,
    })
}

/// `values` as `f32`; only called on the packed path, which exists for `f32` only.
fn f32_of<T: Float>(values: &[T]) -> &[f32] {
    T::as_f32_slice(values).expect("packed_kernel returns Some only for f32")
}

/// [`conv2d_backward`] on the packed GEMM; `T` is `f32`.
fn backward_packed<T: Float>(
    kernel: MicroKernel,
    g: &ConvGeometry,
    x: &Tensor<T>,
    weight: &Tensor<T>,
    dy: &Tensor<T>,
    mut dx: Option<Tensor<T>>,
) -> Result<Conv2dGrads<T>> {
    let (x_data, w_data, dy_data) = (f32_of(x.data()), f32_of(weight.data()), f32_of(dy.data()));
    let mut dw = Tensor::<T>::zeros(weight.dims());
    let mut db = Tensor::<T>::zeros([g.c_out]);
    let pixels = g.out_pixels();
    if g.batch > 0 && pixels > 0 {
        // Bias gradient: per channel, the sum over images of the sum over pixels.
        let db_data = T::as_f32_slice_mut(db.data_mut()).expect("T is f32");
        for image in dy_data.chunks_exact(g.c_out * pixels) {
            for (db, plane) in db_data.iter_mut().zip(image.chunks_exact(pixels)) {
                *db += plane.iter().sum::<f32>();
            }
        }
        let dw_data = T::as_f32_slice_mut(dw.data_mut()).expect("T is f32");
        packed::weight_grad(kernel, g, x_data, dy_data, dw_data);
        if let Some(dx) = dx.as_mut() {
            let dx_data = T::as_f32_slice_mut(dx.data_mut()).expect("T is f32");
            packed::input_grad(kernel, g, w_data, dy_data, dx_data);
        }
    }
    Ok(Conv2dGrads { input: dx, weight: dw, bias: db })
}
