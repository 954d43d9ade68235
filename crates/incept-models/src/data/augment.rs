//! Random crop and horizontal flip, applied to each image while a mini-batch
//! is assembled.

/// Random crop with padding and random horizontal flip for training images.
///
/// [`super::Dataset::batches_with`] applies it to each image as it copies the
/// image into a batch. The result matches torchvision's
/// `RandomCrop(size, padding=crop_padding)` followed by
/// `RandomHorizontalFlip()`, both applied to raw pixels before `ToTensor` and
/// `Normalize`:
///
/// 1. The image is padded with `crop_padding` black pixels on every side.
///    Black is a raw value of 0, which after normalisation is
///    [`super::Dataset::black_pixel`] of its channel.
/// 2. A window of the original height and width is cut at a row and column
///    offset drawn uniformly from `0..=2 * crop_padding`, so an offset of
///    `crop_padding` returns the image unshifted.
/// 3. With `horizontal_flip`, the window is mirrored left to right with
///    probability 0.5.
///
/// The draws for an image depend only on `seed` and the image's position in
/// the epoch's visiting order. Batch size and shuffling do not change which
/// draws position `i` gets, and the generator is SplitMix64 implemented
/// here, so the same seed gives the same crops and flips with any version of
/// `rand`. Pass a different seed each epoch, for example one derived from the
/// epoch number, or every epoch repeats the same crops and flips position by
/// position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augment {
    /// Black pixels added on each side before cropping, 0 to disable
    /// cropping. Must be below the image height and width, so that every
    /// crop contains at least one image pixel.
    pub crop_padding: usize,
    /// Whether to mirror each image left to right with probability 0.5.
    pub horizontal_flip: bool,
    /// Seed of the per-image random draws.
    pub seed: u64,
}

/// Crop offset and flip drawn for one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ImageTransform {
    /// Row of the padded image at which the crop window starts, in
    /// `0..=2 * crop_padding`.
    pub(crate) top: usize,
    /// Column of the padded image at which the crop window starts, in
    /// `0..=2 * crop_padding`.
    pub(crate) left: usize,
    /// Whether the cropped window is mirrored left to right.
    pub(crate) flip: bool,
}

/// Random draws per image: crop row, crop column and flip.
const DRAWS_PER_IMAGE: u64 = 3;

impl Augment {
    /// Draws the crop offset and flip of the image at `position` in the
    /// epoch's visiting order.
    ///
    /// Draw `k` of position `i` is output number `3 * i + k` of a SplitMix64
    /// generator seeded with `seed`, so every image gets its own draws from
    /// one well-mixed stream.
    pub(crate) fn transform(&self, position: usize) -> ImageTransform {
        let first_draw = (position as u64).wrapping_mul(DRAWS_PER_IMAGE);
        let offsets = 2 * self.crop_padding + 1;

        let top = uniform_below(splitmix64(self.seed, first_draw), offsets);
        let left = uniform_below(splitmix64(self.seed, first_draw + 1), offsets);
        let flip_draw = splitmix64(self.seed, first_draw + 2);
        let flip = self.horizontal_flip && flip_draw >> 63 == 1;

        ImageTransform { top, left, flip }
    }
}

/// Increment of the SplitMix64 state: 2^64 divided by the golden ratio.
const SPLITMIX64_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

/// Returns output number `index` (counting from 0) of the SplitMix64
/// generator seeded with `seed`.
///
/// The constants and output mix are those of Vigna's reference
/// `splitmix64.c`. Its state after `n + 1` steps is
/// `seed + (n + 1) * GAMMA`, so any output can be computed directly.
fn splitmix64(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(SPLITMIX64_GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Maps a uniform 64-bit draw to `0..n` by multiplying and keeping the high
/// 64 bits. The bias is below `n / 2^64`.
fn uniform_below(draw: u64, n: usize) -> usize {
    ((u128::from(draw) * n as u128) >> 64) as usize
}

/// Appends the crop window and optional mirror of one image to `out`.
///
/// `image` is one image in CHW layout, `channels * height * width` values.
/// `pad_values` contains one value per channel for pixels of the window that
/// fall into the padding. The window starts at row `transform.top` and column
/// `transform.left` of the image padded by `padding` on every side.
pub(crate) fn append_transformed(
    image: &[f32],
    [channels, height, width]: [usize; 3],
    padding: usize,
    pad_values: &[f32],
    transform: ImageTransform,
    out: &mut Vec<f32>,
) {
    debug_assert_eq!(image.len(), channels * height * width);
    debug_assert_eq!(pad_values.len(), channels);

    // Output column x shows image column x + left - padding, which exists for
    // x in first_column..end_column. Both bounds are clamped to the width.
    let first_column = padding.saturating_sub(transform.left).min(width);
    let end_column = (width + padding).saturating_sub(transform.left).clamp(first_column, width);
    let source_start = first_column + transform.left - padding;
    let source_end = source_start + (end_column - first_column);

    for (plane, &pad) in image.chunks_exact(height * width).zip(pad_values) {
        for y in 0..height {
            let row_start = out.len();
            // Output row y shows image row y + top - padding.
            let source_row = (y + transform.top).checked_sub(padding).filter(|&row| row < height);
            match source_row {
                None => out.resize(row_start + width, pad),
                Some(row) => {
                    let row = &plane[row * width..(row + 1) * width];
                    out.resize(row_start + first_column, pad);
                    out.extend_from_slice(&row[source_start..source_end]);
                    out.resize(row_start + width, pad);
                }
            }
            if transform.flip {
                out[row_start..].reverse();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1x3x4 image whose values are 1 to 12 in row-major order.
    const IMAGE: [f32; 12] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0];

    fn transformed(padding: usize, top: usize, left: usize, flip: bool) -> Vec<f32> {
        let mut out = Vec::new();
        let transform = ImageTransform { top, left, flip };
        append_transformed(&IMAGE, [1, 3, 4], padding, &[0.0], transform, &mut out);
        out
    }

    #[test]
    fn centred_crop_is_identity() {
        assert_eq!(transformed(0, 0, 0, false), IMAGE);
        assert_eq!(transformed(1, 1, 1, false), IMAGE);
        assert_eq!(transformed(2, 2, 2, false), IMAGE);
    }

    #[test]
    fn crop_at_origin_shifts_down_right() {
        // The window starts one pixel above and left of the image, so pixel
        // (0, 0) with value 1 moves to (1, 1).
        let expected = [
            0.0, 0.0, 0.0, 0.0, //
            0.0, 1.0, 2.0, 3.0, //
            0.0, 5.0, 6.0, 7.0,
        ];

        assert_eq!(transformed(1, 0, 0, false), expected);
    }

    #[test]
    fn crop_at_far_corner_shifts_up_left() {
        // Pixel (2, 3) with value 12 moves to (0, 1).
        let expected = [
            11.0, 12.0, 0.0, 0.0, //
            0.0, 0.0, 0.0, 0.0, //
            0.0, 0.0, 0.0, 0.0,
        ];

        assert_eq!(transformed(2, 4, 4, false), expected);
    }

    #[test]
    fn crop_moves_marked_pixel_exactly() {
        // Pixel (1, 2) with value 7 must land at (1 + padding - top,
        // 2 + padding - left) for every offset that keeps it in the window.
        let padding = 2;
        for top in 0..=2 * padding {
            for left in 0..=2 * padding {
                let out = transformed(padding, top, left, false);
                let (row, column) = ((1 + padding).checked_sub(top), (2 + padding).checked_sub(left));
                let positions: Vec<usize> = (0..12).filter(|&i| out[i] == 7.0).collect();
                match (row.filter(|&r| r < 3), column.filter(|&c| c < 4)) {
                    (Some(r), Some(c)) => assert_eq!(positions, [r * 4 + c], "top {top}, left {left}"),
                    _ => assert!(positions.is_empty(), "top {top}, left {left}: {out:?}"),
                }
            }
        }
    }

    #[test]
    fn flip_mirrors_rows() {
        let expected = [
            4.0, 3.0, 2.0, 1.0, //
            8.0, 7.0, 6.0, 5.0, //
            12.0, 11.0, 10.0, 9.0,
        ];

        assert_eq!(transformed(0, 0, 0, true), expected);
    }

    #[test]
    fn flip_applies_after_crop() {
        let expected = [
            0.0, 0.0, 0.0, 0.0, //
            3.0, 2.0, 1.0, 0.0, //
            7.0, 6.0, 5.0, 0.0,
        ];

        assert_eq!(transformed(1, 0, 0, true), expected);
    }

    #[test]
    fn padding_uses_each_channel_value() {
        // Two 2x2 channels and a crop that leaves only pixel (1, 1) inside.
        let image = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let transform = ImageTransform { top: 2, left: 2, flip: false };
        let mut out = vec![99.0];

        append_transformed(&image, [2, 2, 2], 1, &[-2.0, -0.5], transform, &mut out);

        assert_eq!(out, [99.0, 4.0, -2.0, -2.0, -2.0, 8.0, -0.5, -0.5, -0.5]);
    }

    #[test]
    fn draws_cover_every_offset() {
        let augment = Augment { crop_padding: 2, horizontal_flip: true, seed: 11 };
        let mut top_counts = [0usize; 5];
        let mut left_counts = [0usize; 5];
        let mut flips = 0;

        let images = 5000;
        for position in 0..images {
            let transform = augment.transform(position);
            top_counts[transform.top] += 1;
            left_counts[transform.left] += 1;
            flips += usize::from(transform.flip);
        }

        // Each of the 5 offsets expects 1000 hits with a standard deviation
        // of about 28, and flips expect 2500 with a standard deviation of 35.
        for count in top_counts.iter().chain(&left_counts) {
            assert!((850..1150).contains(count), "offset counts {top_counts:?} {left_counts:?}");
        }
        assert!((2300..2700).contains(&flips), "{flips} flips in {images} images");
    }

    #[test]
    fn draws_respect_disabled_parts() {
        let augment = Augment { crop_padding: 0, horizontal_flip: false, seed: 5 };

        for position in 0..200 {
            assert_eq!(augment.transform(position), ImageTransform { top: 0, left: 0, flip: false });
        }
    }

    #[test]
    fn draws_depend_on_seed_and_position() {
        let first = Augment { crop_padding: 4, horizontal_flip: true, seed: 1 };
        let second = Augment { seed: 2, ..first };

        let draws = |augment: Augment| (0..100).map(|i| augment.transform(i)).collect::<Vec<_>>();

        assert_eq!(draws(first), draws(first));
        assert_ne!(draws(first), draws(second));
        assert_ne!(first.transform(0), first.transform(1));
    }

    #[test]
    fn splitmix64_matches_reference_outputs() {
        // The widely published first two outputs of Vigna's splitmix64.c
        // seeded with 0.
        assert_eq!(splitmix64(0, 0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(0, 1), 0x6e78_9e6a_a1b9_65f4);
    }
}
