//! Index arithmetic shared by the sliding-window kernels.

use std::ops::Range;

/// The output positions `o` in `0..out` whose input position
/// `o * stride + offset - padding` lies inside `0..size`.
///
/// Kernels loop over this range without per-element bounds checks and treat
/// the positions outside it as padding.
#[inline]
pub(crate) fn valid_outputs(out: usize, stride: usize, offset: usize, padding: usize, size: usize) -> Range<usize> {
    let lo = padding.saturating_sub(offset).div_ceil(stride);
    let hi = (size + padding).saturating_sub(offset).div_ceil(stride).min(out);
    lo.min(hi)..hi
}

#[cfg(test)]
mod tests {
    use super::valid_outputs;

    #[test]
    fn valid_outputs_matches_brute_force() {
        for out in 0..6 {
            for stride in 1..4 {
                for offset in 0..5 {
                    for padding in 0..4 {
                        for size in 0..7 {
                            let expected: Vec<usize> = (0..out)
                                .filter(|&o| {
                                    let pos = (o * stride + offset) as isize - padding as isize;
                                    pos >= 0 && pos < size as isize
                                })
                                .collect();
                            let got: Vec<usize> = valid_outputs(out, stride, offset, padding, size).collect();
                            assert_eq!(
                                got, expected,
                                "out {out} stride {stride} offset {offset} padding {padding} size {size}"
                            );
                        }
                    }
                }
            }
        }
    }
}
