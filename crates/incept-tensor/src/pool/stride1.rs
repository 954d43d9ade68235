//! Max pooling values with stride 1, vectorised over whole planes.
//!
//! With stride 1, every window tap `(i, j)` reads the padded plane shifted by
//! `i` rows and `j` columns. Over a copy of the plane padded with -inf and
//! flattened with the padded row length `w_pad`, output `(oy, ox)` sits at
//! `q = oy * w_pad + ox` and tap `(i, j)` reads `q + i * w_pad + j`. One
//! contiguous pass per tap over all `q` replaces per-row loops whose 4 to 14
//! outputs are too short for vector instructions. Positions with
//! `ox >= w_out` are computed and discarded.

use super::{PlaneSizes, Pool2dParams};
use crate::Float;

/// Per-worker buffers, reused across planes.
pub(crate) struct Stride1Scratch<T> {
    padded: Vec<T>,
    best: Vec<T>,
    /// Number of the window tap that currently wins each output.
    winner: Vec<u32>,
    /// Input-index offset of each window tap, filled once per plane.
    tap_delta: Vec<isize>,
}

impl<T> Default for Stride1Scratch<T> {
    fn default() -> Self {
        Stride1Scratch { padded: Vec::new(), best: Vec::new(), winner: Vec::new(), tap_delta: Vec::new() }
    }
}

struct PaddedGeometry {
    w_pad: usize,
    /// Flattened extent that covers every output position.
    extent: usize,
}

/// Copies `plane` into `scratch.padded`, surrounded by -inf.
fn pad<T: Float>(
    plane: &[T],
    sizes: PlaneSizes,
    params: &Pool2dParams,
    scratch: &mut Stride1Scratch<T>,
) -> PaddedGeometry {
    let PlaneSizes { h_in, w_in, h_out, w_out } = sizes;
    let (p_h, p_w) = params.padding;
    let w_pad = w_in + 2 * p_w;
    scratch.padded.clear();
    scratch.padded.resize((h_in + 2 * p_h) * w_pad, T::neg_infinity());
    for (row, src) in plane.chunks_exact(w_in).enumerate() {
        let start = (row + p_h) * w_pad + p_w;
        scratch.padded[start..start + w_in].copy_from_slice(src);
    }
    PaddedGeometry { w_pad, extent: (h_out - 1) * w_pad + w_out }
}

/// Max-pools one NaN-free plane with stride 1.
pub(crate) fn max_plane_stride1<T: Float>(
    plane: &[T],
    y: &mut [T],
    sizes: PlaneSizes,
    params: &Pool2dParams,
    scratch: &mut Stride1Scratch<T>,
) {
    debug_assert_eq!(params.stride, (1, 1));
    let geometry = pad(plane, sizes, params, scratch);
    let Stride1Scratch { padded, best, .. } = scratch;
    best.clear();
    // -inf is a valid seed for values because every window contains an input element.
    best.resize(geometry.extent, T::neg_infinity());
    for i in 0..params.kernel.0 {
        for j in 0..params.kernel.1 {
            let offset = i * geometry.w_pad + j;
            let taps = &padded[offset..offset + geometry.extent];
            for (b, &v) in best.iter_mut().zip(taps) {
                *b = if v > *b { v } else { *b };
            }
        }
    }
    for (out_row, best_row) in y.chunks_exact_mut(sizes.w_out).zip(best.chunks(geometry.w_pad)) {
        out_row.copy_from_slice(&best_row[..sizes.w_out]);
    }
}

/// Marks an output whose window has no element above -inf yet.
const NO_WINNER: u32 = u32::MAX;

/// Max-pools one NaN-free plane with stride 1 and records, for each output,
/// the input-plane index of the first maximum in row-major window order
/// (PyTorch's tie rule), in the same pass over the taps.
///
/// Returns false, leaving `indices` partly written, if some window holds
/// only -inf inputs: no tap beats the -inf seed there, so the caller must
/// find those winners another way.
pub(crate) fn max_plane_stride1_with_indices<T: Float>(
    plane: &[T],
    y: &mut [T],
    indices: &mut [u32],
    sizes: PlaneSizes,
    params: &Pool2dParams,
    scratch: &mut Stride1Scratch<T>,
) -> bool {
    debug_assert_eq!(params.stride, (1, 1));
    let geometry = pad(plane, sizes, params, scratch);
    let Stride1Scratch { padded, best, winner, tap_delta } = scratch;
    best.clear();
    best.resize(geometry.extent, T::neg_infinity());
    winner.clear();
    winner.resize(geometry.extent, NO_WINNER);
    // Taps run in row-major window order and only a strictly larger value
    // replaces the winner, so the first of tied maxima wins. Padding is
    // -inf and never wins. `winner` keeps the tap number, not a position,
    // so converting it to an input index needs no division.
    let mut tap = 0u32;
    for i in 0..params.kernel.0 {
        for j in 0..params.kernel.1 {
            let offset = i * geometry.w_pad + j;
            let taps = &padded[offset..offset + geometry.extent];
            for ((b, w), &v) in best.iter_mut().zip(winner.iter_mut()).zip(taps) {
                // A mask select instead of a branch, which random data
                // would mispredict half the time; this form vectorises.
                let mask = 0u32.wrapping_sub(u32::from(v > *b));
                *w = (*w & !mask) | (tap & mask);
                *b = if v > *b { v } else { *b };
            }
            tap += 1;
        }
    }
    // Tap (i, j) of output (oy, ox) reads input (oy + i - p_h, ox + j - p_w).
    let (p_h, p_w) = (params.padding.0 as isize, params.padding.1 as isize);
    let w_in = sizes.w_in as isize;
    let k_w = params.kernel.1;
    tap_delta.clear();
    tap_delta.extend((0..params.kernel.0 * k_w).map(|t| (t / k_w) as isize * w_in + (t % k_w) as isize));
    let mut complete = true;
    for oy in 0..sizes.h_out {
        let row = oy * geometry.w_pad;
        let base = (oy as isize - p_h) * w_in - p_w;
        for ox in 0..sizes.w_out {
            let (q, out) = (row + ox, oy * sizes.w_out + ox);
            y[out] = best[q];
            let tap = winner[q];
            if tap == NO_WINNER {
                complete = false;
                continue;
            }
            indices[out] = (base + ox as isize + tap_delta[tap as usize]) as u32;
        }
    }
    complete
}
