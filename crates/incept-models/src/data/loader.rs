//! In-memory image classification data sets and their mini-batch iterator.

use std::iter::FusedIterator;
use std::path::Path;

use incept_tensor::Tensor;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::augment::{Augment, append_transformed};
use super::idx::{read_idx_images, read_idx_labels};
use crate::{ModelError, Result};

/// Per-channel mean and standard deviation that a data set's pixels were
/// normalised with.
///
/// A raw pixel of channel `c` scaled to [0, 1], `v`, is stored as
/// `(v - mean[c]) / std[c]`, as torchvision's `ToTensor` followed by
/// `Normalize(mean, std)` computes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl Normalization {
    /// Creates the statistics of a data set with `mean.len()` channels.
    ///
    /// # Errors
    /// [`ModelError::Config`] if `mean` is empty, `mean` and `std` differ in
    /// length, a mean is not finite, or a standard deviation is not finite
    /// and positive.
    pub fn new(mean: &[f32], std: &[f32]) -> Result<Self> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(ModelError::Config(format!(
                "normalisation has {} means and {} standard deviations, expected one of each per \
                 channel and at least one channel",
                mean.len(),
                std.len()
            )));
        }
        for (channel, (&m, &s)) in mean.iter().zip(std).enumerate() {
            if !m.is_finite() || !s.is_finite() || s <= 0.0 {
                return Err(ModelError::Config(format!(
                    "normalisation mean {m} and std {s} of channel {channel} are invalid, expected \
                     a finite mean and a finite positive std"
                )));
            }
        }
        Ok(Normalization { mean: mean.to_vec(), std: std.to_vec() })
    }

    /// Mean of each channel, with pixels scaled to [0, 1].
    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    /// Standard deviation of each channel, with pixels scaled to [0, 1].
    pub fn std(&self) -> &[f32] {
        &self.std
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Normalised value of a black pixel (raw value 0) in each channel,
    /// `-mean[c] / std[c]`.
    pub fn black_pixel(&self) -> Vec<f32> {
        self.mean.iter().zip(&self.std).map(|(&m, &s)| -m / s).collect()
    }
}

/// Settings of [`Dataset::batches_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    /// Images per batch, at least 1.
    pub batch_size: usize,
    /// Seed of the shuffle of the visiting order, or `None` for the stored
    /// order.
    pub shuffle_seed: Option<u64>,
    /// Whether to drop the final batch if it has fewer than `batch_size`
    /// images.
    pub drop_last: bool,
    /// Random crop and flip applied to each image, or `None` to copy images
    /// unchanged.
    pub augment: Option<Augment>,
}

impl BatchOptions {
    /// Creates options for batches of `batch_size` images in the stored
    /// order, with the last partial batch kept and no augmentation.
    pub fn new(batch_size: usize) -> Self {
        BatchOptions { batch_size, shuffle_seed: None, drop_last: false, augment: None }
    }
}

/// A labelled image classification data set held in memory.
///
/// Images are one NCHW tensor of shape `[n, channels, height, width]` with
/// one label per image. Every label is below `num_classes`. The data set may
/// also record the [`Normalization`] its pixels were stored with, which
/// augmentation needs to pad with black.
#[derive(Clone, Debug)]
pub struct Dataset {
    images: Tensor<f32>,
    labels: Vec<usize>,
    num_classes: usize,
    /// Statistics the pixels were normalised with, if known. Its channel
    /// count equals the images' channel count.
    normalization: Option<Normalization>,
}

impl Dataset {
    /// Creates a data set from images of shape `[n, channels, height, width]`
    /// and their `n` labels.
    ///
    /// The data set records no normalisation, so [`Dataset::black_pixel`] is
    /// 0 in every channel until [`Dataset::with_normalization`] sets it.
    ///
    /// # Errors
    /// [`ModelError::Config`] if `images` is not 4-D, if `num_classes` is 0,
    /// if the number of images and labels differ, or if a label is not below
    /// `num_classes`.
    pub fn new(images: Tensor<f32>, labels: Vec<usize>, num_classes: usize) -> Result<Self> {
        let dims = images.dims();
        if dims.len() != 4 {
            return Err(ModelError::Config(format!(
                "data set images must have shape [n, channels, height, width], got {dims:?}"
            )));
        }
        if num_classes == 0 {
            return Err(ModelError::Config("data set num_classes is 0, expected at least 1".to_string()));
        }
        if dims[0] != labels.len() {
            return Err(ModelError::Config(format!(
                "data set has {} images but {} labels, expected one label per image",
                dims[0],
                labels.len()
            )));
        }
        if let Some((index, label)) = first_label_out_of_range(&labels, num_classes) {
            return Err(ModelError::Config(format!(
                "data set label {label} at index {index} is out of range, expected a class \
                 index below {num_classes}"
            )));
        }

        Ok(Dataset { images, labels, num_classes, normalization: None })
    }

    /// Records that the pixels were normalised with per-channel `mean` and
    /// `std`, leaving the pixel values unchanged.
    ///
    /// Augmentation pads with [`Dataset::black_pixel`], which these
    /// statistics determine.
    ///
    /// # Errors
    /// [`ModelError::Config`] if [`Normalization::new`] rejects `mean` and
    /// `std`, or if their length differs from the number of image channels.
    pub fn with_normalization(mut self, mean: &[f32], std: &[f32]) -> Result<Self> {
        let normalization = Normalization::new(mean, std)?;
        let channels = self.images.dims()[1];
        if normalization.channels() != channels {
            return Err(ModelError::Config(format!(
                "normalisation has statistics for {} channels but the images have {channels}, \
                 expected one mean and one std per channel",
                normalization.channels()
            )));
        }
        self.normalization = Some(normalization);
        Ok(self)
    }

    /// Loads single-channel images and their labels from two IDX files and
    /// normalises the pixels.
    ///
    /// A pixel byte `p` becomes `(p / 255 - mean) / std`, so `mean` and `std`
    /// are statistics of pixels scaled to [0, 1]. The images get shape
    /// `[n, 1, rows, cols]`, and the data set records `mean` and `std` as its
    /// [`Normalization`].
    ///
    /// # Errors
    /// [`ModelError::Config`] if `mean` is not finite, `std` is not finite
    /// and positive, or `num_classes` is 0. Any error of
    /// [`super::read_idx_images`] and [`super::read_idx_labels`].
    /// [`ModelError::Format`] if
    /// the label file contains a different number of labels than the image
    /// file contains images, or a label that is not below `num_classes`.
    pub fn from_idx(images_path: &Path, labels_path: &Path, mean: f32, std: f32, num_classes: usize) -> Result<Self> {
        let normalization = Normalization::new(&[mean], &[std])?;
        if num_classes == 0 {
            return Err(ModelError::Config("data set num_classes is 0, expected at least 1".to_string()));
        }

        let images = read_idx_images(images_path)?;
        let raw_labels = read_idx_labels(labels_path)?;

        let labels_error = |reason: String| ModelError::Format { path: labels_path.to_path_buf(), reason };
        if raw_labels.len() != images.count {
            return Err(labels_error(format!(
                "contains {} labels but {} contains {} images, expected one label per image",
                raw_labels.len(),
                images_path.display(),
                images.count
            )));
        }
        let labels: Vec<usize> = raw_labels.into_iter().map(usize::from).collect();
        if let Some((index, label)) = first_label_out_of_range(&labels, num_classes) {
            return Err(labels_error(format!(
                "label {label} at index {index} is out of range, expected a class index below \
                 {num_classes}"
            )));
        }

        // One table entry per byte value is cheaper than a division per pixel.
        let table: [f32; 256] = std::array::from_fn(|byte| (byte as f32 / 255.0 - mean) / std);
        let pixels = images.pixels.iter().map(|&p| table[usize::from(p)]).collect();
        let images = Tensor::from_vec(pixels, [images.count, 1, images.rows, images.cols])?;

        Ok(Dataset { images, labels, num_classes, normalization: Some(normalization) })
    }

    /// Normalised images, shape `[n, channels, height, width]`.
    pub fn images(&self) -> &Tensor<f32> {
        &self.images
    }

    /// Class index of each image.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Number of classes. Every label is below it.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Statistics the pixels were normalised with, or `None` if the data set
    /// was created by [`Dataset::new`] without [`Dataset::with_normalization`].
    pub fn normalization(&self) -> Option<&Normalization> {
        self.normalization.as_ref()
    }

    /// Stored value of a black pixel (raw value 0) in each channel:
    /// [`Normalization::black_pixel`] if the normalisation is known, else 0.
    pub fn black_pixel(&self) -> Vec<f32> {
        match &self.normalization {
            Some(normalization) => normalization.black_pixel(),
            None => vec![0.0; self.images.dims()[1]],
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Returns `true` if the data set has no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Keeps the first `n` images and labels, or all of them if there are
    /// fewer than `n`. Meant for short smoke runs.
    pub fn take(self, n: usize) -> Dataset {
        let n = n.min(self.len());
        let mut dims = self.images.dims().to_vec();
        let image_len = self.image_len();

        let mut pixels = self.images.into_vec();
        pixels.truncate(n * image_len);
        dims[0] = n;
        let images = Tensor::from_vec(pixels, dims).expect("the truncated buffer contains exactly n images");

        let mut labels = self.labels;
        labels.truncate(n);

        Dataset { images, labels, num_classes: self.num_classes, normalization: self.normalization }
    }

    /// Returns an iterator over mini-batches of `batch_size` images and their
    /// labels.
    ///
    /// Each batch is `(images, labels)` with images of shape
    /// `[b, channels, height, width]`. Every batch but the last has
    /// `b == batch_size`, and the last contains the remainder. Each image appears
    /// in exactly one batch. With `shuffle_seed` the order is a Fisher–Yates
    /// shuffle seeded from it: the same seed gives the same order with the
    /// same version of `rand`, whose `StdRng` algorithm may change between
    /// releases. Without it the order is the stored order.
    ///
    /// This is [`Dataset::batches_with`] with [`BatchOptions`] that keep the
    /// last partial batch and do not augment.
    ///
    /// # Errors
    /// [`ModelError::Config`] if `batch_size` is 0.
    pub fn batches(&self, batch_size: usize, shuffle_seed: Option<u64>) -> Result<Batches<'_>> {
        self.batches_with(&BatchOptions { shuffle_seed, ..BatchOptions::new(batch_size) })
    }

    /// Returns an iterator over mini-batches as [`Dataset::batches`] does,
    /// with the last partial batch optionally dropped and each image
    /// optionally augmented.
    ///
    /// With `drop_last`, the images of the final partial batch are skipped,
    /// so an epoch yields `len() / batch_size` batches, all full. Otherwise
    /// it yields `len().div_ceil(batch_size)` batches. With `augment`, each
    /// image is cropped and flipped as [`Augment`] describes while it is
    /// copied into its batch, so the data set itself stays unchanged and no
    /// second copy of it is made.
    ///
    /// # Errors
    /// [`ModelError::Config`] if `batch_size` is 0, or if
    /// `augment.crop_padding` is not below the image height and width.
    pub fn batches_with(&self, options: &BatchOptions) -> Result<Batches<'_>> {
        let batch_size = options.batch_size;
        if batch_size == 0 {
            return Err(ModelError::Config("batch size is 0, expected at least 1".to_string()));
        }
        if let Some(augment) = &options.augment {
            let [height, width] = [self.images.dims()[2], self.images.dims()[3]];
            if augment.crop_padding >= height.min(width) {
                return Err(ModelError::Config(format!(
                    "crop padding {} is not below the image size {height}x{width}, so some crops \
                     would contain no image pixel; use a padding of at most {}",
                    augment.crop_padding,
                    height.min(width).saturating_sub(1)
                )));
            }
        }

        let mut order: Vec<usize> = (0..self.len()).collect();
        if let Some(seed) = options.shuffle_seed {
            let mut rng = StdRng::seed_from_u64(seed);
            order.shuffle(&mut rng);
        }
        let end = if options.drop_last { order.len() - order.len() % batch_size } else { order.len() };

        Ok(Batches {
            dataset: self,
            order,
            batch_size,
            end,
            next: 0,
            augment: options.augment,
            pad_values: self.black_pixel(),
        })
    }

    /// Number of values in one image (`channels * height * width`).
    fn image_len(&self) -> usize {
        self.images.dims()[1..].iter().product()
    }

    /// Shape of one image, `[channels, height, width]`.
    fn image_shape(&self) -> [usize; 3] {
        let dims = self.images.dims();
        [dims[1], dims[2], dims[3]]
    }
}

fn first_label_out_of_range(labels: &[usize], num_classes: usize) -> Option<(usize, usize)> {
    labels.iter().copied().enumerate().find(|&(_, label)| label >= num_classes)
}

/// Iterator over the mini-batches of a [`Dataset`], created by
/// [`Dataset::batches`] or [`Dataset::batches_with`].
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    dataset: &'a Dataset,
    /// Image indices in visiting order.
    order: Vec<usize>,
    batch_size: usize,
    /// Number of positions of `order` visited: all of them, or with
    /// `drop_last` only the whole batches.
    end: usize,
    /// Position in `order` of the next batch's first image.
    next: usize,
    augment: Option<Augment>,
    /// Value of padded pixels in each channel, the data set's black pixel.
    pad_values: Vec<f32>,
}

impl Iterator for Batches<'_> {
    type Item = (Tensor<f32>, Vec<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let first_position = self.next;
        let end = (self.next + self.batch_size).min(self.end);
        let indices = &self.order[self.next..end];
        self.next = end;

        let image_len = self.dataset.image_len();
        let source = self.dataset.images.data();
        let mut pixels = Vec::with_capacity(indices.len() * image_len);
        let mut labels = Vec::with_capacity(indices.len());
        for (position, &index) in (first_position..).zip(indices) {
            let image = &source[index * image_len..(index + 1) * image_len];
            match &self.augment {
                None => pixels.extend_from_slice(image),
                Some(augment) => append_transformed(
                    image,
                    self.dataset.image_shape(),
                    augment.crop_padding,
                    &self.pad_values,
                    augment.transform(position),
                    &mut pixels,
                ),
            }
            labels.push(self.dataset.labels[index]);
        }

        let mut dims = self.dataset.images.dims().to_vec();
        dims[0] = indices.len();
        let images = Tensor::from_vec(pixels, dims).expect("the batch buffer contains exactly b images");
        Some((images, labels))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = (self.end - self.next).div_ceil(self.batch_size);
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for Batches<'_> {}

impl FusedIterator for Batches<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::append_transformed;
    use crate::data::test_support::{TempDir, gzip, idx_images_bytes, idx_labels_bytes};

    /// Builds a data set of `n` 2x3 single-channel images in which every value of
    /// image `i` is `i`, with label `i % 3`.
    fn indexed_dataset(n: usize) -> Dataset {
        let pixels = (0..n).flat_map(|i| [i as f32; 6]).collect();
        let images = Tensor::from_vec(pixels, [n, 1, 2, 3]).unwrap();
        let labels = (0..n).map(|i| i % 3).collect();
        Dataset::new(images, labels, 3).unwrap()
    }

    /// Image indices in the order the batches visit them, checking that each
    /// image's values and label belong to the same index.
    fn visit_order(dataset: &Dataset, batch_size: usize, seed: Option<u64>) -> Vec<usize> {
        let mut order = Vec::new();
        for (images, labels) in dataset.batches(batch_size, seed).unwrap() {
            assert_eq!(images.dims()[0], labels.len());
            assert_eq!(&images.dims()[1..], &[1, 2, 3]);
            for (image, label) in images.data().chunks(6).zip(labels) {
                let index = image[0] as usize;
                assert!(image.iter().all(|&v| v == index as f32));
                assert_eq!(label, index % 3);
                order.push(index);
            }
        }
        order
    }

    fn sorted(mut values: Vec<usize>) -> Vec<usize> {
        values.sort_unstable();
        values
    }

    #[test]
    fn from_idx_normalises_pixels() {
        let dir = TempDir::new("loader-normalise");
        let images = dir.write("images.gz", &gzip(&idx_images_bytes(2, 1, 2, &[0, 255, 51, 102])));
        let labels = dir.write("labels.gz", &gzip(&idx_labels_bytes(&[4, 0])));

        let dataset = Dataset::from_idx(&images, &labels, 0.5, 0.25, 5).unwrap();

        assert_eq!(dataset.len(), 2);
        assert_eq!(dataset.num_classes(), 5);
        assert_eq!(dataset.labels(), &[4, 0]);
        assert_eq!(dataset.images().dims(), &[2, 1, 1, 2]);
        let expected = [-2.0, 2.0, -1.2, -0.4];
        for (&got, want) in dataset.images().data().iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "got {got}, expected {want}");
        }
    }

    #[test]
    fn from_idx_label_out_of_range() {
        let dir = TempDir::new("loader-label-range");
        let images = dir.write("images", &idx_images_bytes(3, 1, 1, &[1, 2, 3]));
        let labels = dir.write("labels", &idx_labels_bytes(&[0, 9, 10]));

        match Dataset::from_idx(&images, &labels, 0.0, 1.0, 10) {
            Err(ModelError::Format { path, reason }) => {
                assert_eq!(path, labels);
                assert!(reason.contains("label 10 at index 2"), "{reason}");
                assert!(reason.contains("below 10"), "{reason}");
            }
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn from_idx_count_mismatch() {
        let dir = TempDir::new("loader-count");
        let images = dir.write("images", &idx_images_bytes(3, 1, 1, &[1, 2, 3]));
        let labels = dir.write("labels", &idx_labels_bytes(&[0, 1]));

        match Dataset::from_idx(&images, &labels, 0.0, 1.0, 10) {
            Err(ModelError::Format { path, reason }) => {
                assert_eq!(path, labels);
                assert!(reason.contains("2 labels"), "{reason}");
                assert!(reason.contains("3 images"), "{reason}");
            }
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    #[test]
    fn from_idx_invalid_normalisation() {
        let dir = TempDir::new("loader-normalisation");
        let images = dir.write("images", &idx_images_bytes(1, 1, 1, &[1]));
        let labels = dir.write("labels", &idx_labels_bytes(&[0]));

        for (mean, std) in [(0.0, 0.0), (0.0, -1.0), (f32::NAN, 1.0), (0.0, f32::INFINITY)] {
            let result = Dataset::from_idx(&images, &labels, mean, std, 2);
            assert!(matches!(result, Err(ModelError::Config(_))), "mean {mean}, std {std}: {result:?}");
        }
    }

    #[test]
    fn new_rejects_inconsistent_input() {
        let images = Tensor::from_vec(vec![0.0; 4], [2, 1, 1, 2]).unwrap();
        let flat = Tensor::from_vec(vec![0.0; 4], [2, 2]).unwrap();

        let wrong_rank = Dataset::new(flat, vec![0, 1], 2);
        let no_classes = Dataset::new(images.clone(), vec![0, 0], 0);
        let count_mismatch = Dataset::new(images.clone(), vec![0], 2);
        let out_of_range = Dataset::new(images, vec![0, 2], 2);

        assert!(matches!(wrong_rank, Err(ModelError::Config(_))));
        assert!(matches!(no_classes, Err(ModelError::Config(_))));
        assert!(matches!(count_mismatch, Err(ModelError::Config(_))));
        assert!(matches!(out_of_range, Err(ModelError::Config(_))));
    }

    #[test]
    fn batches_cover_all_in_order() {
        let dataset = indexed_dataset(10);

        let order = visit_order(&dataset, 3, None);

        assert_eq!(order, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn shuffled_batches_cover_all_once() {
        let dataset = indexed_dataset(10);

        let order = visit_order(&dataset, 3, Some(7));

        assert_eq!(sorted(order.clone()), (0..10).collect::<Vec<_>>());
        assert_ne!(order, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn shuffle_seed_determines_order() {
        let dataset = indexed_dataset(50);

        let first = visit_order(&dataset, 8, Some(1));
        let again = visit_order(&dataset, 8, Some(1));
        let other = visit_order(&dataset, 8, Some(2));

        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn last_batch_is_partial() {
        let dataset = indexed_dataset(10);

        let batches = dataset.batches(4, Some(3)).unwrap();
        assert_eq!(batches.len(), 3);
        let sizes: Vec<usize> = batches.map(|(_, labels)| labels.len()).collect();

        assert_eq!(sizes, [4, 4, 2]);
    }

    #[test]
    fn exact_batches_have_no_remainder() {
        let dataset = indexed_dataset(8);

        let sizes: Vec<usize> = dataset.batches(4, None).unwrap().map(|(images, _)| images.dims()[0]).collect();

        assert_eq!(sizes, [4, 4]);
    }

    #[test]
    fn batch_size_zero_rejected() {
        let dataset = indexed_dataset(4);

        let result = dataset.batches(0, None);

        assert!(matches!(result, Err(ModelError::Config(_))));
    }

    #[test]
    fn take_keeps_first_images() {
        let dataset = indexed_dataset(10);

        let first = dataset.clone().take(4);
        let all = dataset.take(100);

        assert_eq!(first.len(), 4);
        assert_eq!(first.images().dims(), &[4, 1, 2, 3]);
        assert_eq!(first.labels(), &[0, 1, 2, 0]);
        assert_eq!(visit_order(&first, 3, None), [0, 1, 2, 3]);
        assert_eq!(all.len(), 10);
    }

    #[test]
    fn take_zero_is_empty() {
        let empty = indexed_dataset(5).take(0);

        assert!(empty.is_empty());
        assert_eq!(empty.images().dims(), &[0, 1, 2, 3]);
        assert_eq!(empty.batches(2, Some(1)).unwrap().count(), 0);
    }

    /// Builds a data set of `n` 2-channel 3x4 images whose every value is
    /// `i + 1` for image `i`, with label `i`, so each label names one image.
    fn labelled_dataset(n: usize) -> Dataset {
        let pixels = (0..n).flat_map(|i| [(i + 1) as f32; 24]).collect();
        let images = Tensor::from_vec(pixels, [n, 2, 3, 4]).unwrap();
        Dataset::new(images, (0..n).collect(), n.max(1)).unwrap()
    }

    /// Collects `(images, labels)` of every batch.
    fn collect_batches(dataset: &Dataset, options: &BatchOptions) -> Vec<(Vec<f32>, Vec<usize>)> {
        dataset.batches_with(options).unwrap().map(|(images, labels)| (images.into_vec(), labels)).collect()
    }

    fn augmented_options(batch_size: usize, seed: u64) -> BatchOptions {
        BatchOptions {
            batch_size,
            shuffle_seed: Some(3),
            drop_last: false,
            augment: Some(Augment { crop_padding: 2, horizontal_flip: true, seed }),
        }
    }

    #[test]
    fn normalization_black_pixel() {
        let normalization = Normalization::new(&[0.5, 0.25], &[0.25, 0.5]).unwrap();

        assert_eq!(normalization.channels(), 2);
        assert_eq!(normalization.mean(), [0.5, 0.25]);
        assert_eq!(normalization.std(), [0.25, 0.5]);
        assert_eq!(normalization.black_pixel(), [-2.0, -0.5]);
    }

    #[test]
    fn normalization_rejects_invalid_statistics() {
        let cases: [(&[f32], &[f32]); 6] = [
            (&[], &[]),
            (&[0.5], &[0.2, 0.2]),
            (&[0.5, f32::NAN], &[0.2, 0.2]),
            (&[0.5], &[0.0]),
            (&[0.5], &[-0.1]),
            (&[0.5], &[f32::INFINITY]),
        ];

        for (mean, std) in cases {
            let result = Normalization::new(mean, std);
            assert!(matches!(result, Err(ModelError::Config(_))), "mean {mean:?}, std {std:?}: {result:?}");
        }
    }

    #[test]
    fn new_dataset_black_pixel_is_zero() {
        let dataset = labelled_dataset(2);

        assert!(dataset.normalization().is_none());
        assert_eq!(dataset.black_pixel(), [0.0, 0.0]);
    }

    #[test]
    fn with_normalization_sets_black_pixel() {
        let dataset = labelled_dataset(2).with_normalization(&[0.5, 0.25], &[0.25, 0.5]).unwrap();

        assert_eq!(dataset.normalization().unwrap().mean(), [0.5, 0.25]);
        assert_eq!(dataset.black_pixel(), [-2.0, -0.5]);
        assert_eq!(dataset.images().data()[0], 1.0, "pixel values must stay unchanged");
        assert_eq!(dataset.take(1).black_pixel(), [-2.0, -0.5]);
    }

    #[test]
    fn with_normalization_checks_channel_count() {
        let result = labelled_dataset(2).with_normalization(&[0.5], &[0.25]);

        match result {
            Err(ModelError::Config(message)) => {
                assert!(message.contains("1 channels but the images have 2"), "{message}");
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn from_idx_records_normalization() {
        let dir = TempDir::new("loader-records-normalization");
        let images = dir.write("images", &idx_images_bytes(1, 1, 1, &[1]));
        let labels = dir.write("labels", &idx_labels_bytes(&[0]));

        let dataset = Dataset::from_idx(&images, &labels, 0.5, 0.25, 2).unwrap();

        let normalization = dataset.normalization().unwrap();
        assert_eq!(normalization.mean(), [0.5]);
        assert_eq!(normalization.std(), [0.25]);
        assert_eq!(dataset.black_pixel(), [-2.0]);
    }

    #[test]
    fn batches_match_batches_with() {
        let dataset = labelled_dataset(10);
        let options = BatchOptions { shuffle_seed: Some(4), ..BatchOptions::new(3) };

        let simple: Vec<_> = dataset.batches(3, Some(4)).unwrap().map(|(i, l)| (i.into_vec(), l)).collect();

        assert_eq!(simple, collect_batches(&dataset, &options));
    }

    #[test]
    fn drop_last_drops_partial_batch() {
        let dataset = labelled_dataset(10);
        let options = BatchOptions { shuffle_seed: Some(2), drop_last: true, ..BatchOptions::new(4) };

        let mut batches = dataset.batches_with(&options).unwrap();
        assert_eq!(batches.len(), 2);
        let first = batches.next().unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches.size_hint(), (1, Some(1)));
        let second = batches.next().unwrap();
        assert_eq!(batches.len(), 0);

        assert!(batches.next().is_none());
        assert_eq!(first.1.len(), 4);
        assert_eq!(second.1.len(), 4);
        let mut seen: Vec<usize> = first.1.into_iter().chain(second.1).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 8, "each image at most once");
    }

    #[test]
    fn drop_last_batch_counts() {
        // (images, batch size, batches without drop_last, batches with it)
        let cases = [(10, 4, 3, 2), (8, 4, 2, 2), (3, 4, 1, 0), (0, 4, 0, 0), (7, 1, 7, 7)];

        for (n, batch_size, kept, dropped) in cases {
            let dataset = labelled_dataset(n);
            let keep = BatchOptions::new(batch_size);
            let drop = BatchOptions { drop_last: true, ..keep };

            let keep_batches = dataset.batches_with(&keep).unwrap();
            let drop_batches = dataset.batches_with(&drop).unwrap();
            assert_eq!(keep_batches.len(), kept, "{n} images, batch size {batch_size}");
            assert_eq!(drop_batches.len(), dropped, "{n} images, batch size {batch_size}, drop_last");
            assert_eq!(keep_batches.count(), kept, "{n} images, batch size {batch_size}");
            let sizes: Vec<usize> = drop_batches.map(|(_, labels)| labels.len()).collect();
            assert_eq!(sizes, vec![batch_size; dropped], "{n} images, batch size {batch_size}, drop_last");
        }
    }

    #[test]
    fn augmented_epoch_visits_each_image_once() {
        let dataset = labelled_dataset(23);

        let mut labels: Vec<usize> =
            collect_batches(&dataset, &augmented_options(5, 9)).into_iter().flat_map(|(_, labels)| labels).collect();

        labels.sort_unstable();
        assert_eq!(labels, (0..23).collect::<Vec<_>>());
    }

    #[test]
    fn augmented_images_follow_their_draws() {
        // Every output image must equal its source image transformed with the
        // draws of its position in the epoch, whatever the batch size.
        let dataset = labelled_dataset(23).with_normalization(&[0.5, 0.25], &[0.25, 0.5]).unwrap();
        let options = augmented_options(5, 9);
        let augment = options.augment.unwrap();

        let mut position = 0;
        for (images, labels) in collect_batches(&dataset, &options) {
            for (image, label) in images.chunks_exact(24).zip(labels) {
                let source = &dataset.images().data()[label * 24..(label + 1) * 24];
                let mut expected = Vec::new();
                let transform = augment.transform(position);
                append_transformed(source, [2, 3, 4], 2, &[-2.0, -0.5], transform, &mut expected);
                assert_eq!(image, expected, "position {position}, image {label}, {transform:?}");
                position += 1;
            }
        }
        assert_eq!(position, 23);
    }

    #[test]
    fn augmented_padding_is_normalised_black() {
        let dataset = labelled_dataset(1).with_normalization(&[0.5, 0.25], &[0.25, 0.5]).unwrap();
        let pad = 2;
        // Find a seed whose single draw starts the window at row 0, so the
        // first `pad` rows of the output are all padding.
        let seed = (0..)
            .find(|&seed| Augment { crop_padding: pad, horizontal_flip: false, seed }.transform(0).top == 0)
            .unwrap();
        let options = BatchOptions {
            augment: Some(Augment { crop_padding: pad, horizontal_flip: false, seed }),
            ..BatchOptions::new(1)
        };

        let (images, _) = dataset.batches_with(&options).unwrap().next().unwrap();

        let image = images.data();
        for (c, black) in [-2.0, -0.5].into_iter().enumerate() {
            let padded_rows = &image[c * 12..c * 12 + pad * 4];
            assert!(padded_rows.iter().all(|&v| v == black), "channel {c}: {padded_rows:?}");
            assert!(image[c * 12..(c + 1) * 12].contains(&1.0), "channel {c} keeps an image pixel");
        }
    }

    #[test]
    fn augment_seed_determines_batches() {
        let dataset = labelled_dataset(40);

        let first = collect_batches(&dataset, &augmented_options(8, 1));
        let again = collect_batches(&dataset, &augmented_options(8, 1));
        let other = collect_batches(&dataset, &augmented_options(8, 2));

        assert_eq!(first, again);
        assert_ne!(first, other);
        let labels = |batches: &[(Vec<f32>, Vec<usize>)]| batches.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>();
        assert_eq!(labels(&first), labels(&other), "the augment seed must not change the order");
    }

    #[test]
    fn augmentation_ignores_batch_size() {
        let dataset = labelled_dataset(40);

        let flatten =
            |batches: Vec<(Vec<f32>, Vec<usize>)>| batches.into_iter().flat_map(|(i, _)| i).collect::<Vec<_>>();
        let small = flatten(collect_batches(&dataset, &augmented_options(3, 6)));
        let large = flatten(collect_batches(&dataset, &augmented_options(16, 6)));

        assert_eq!(small, large);
    }

    #[test]
    fn augment_changes_images() {
        let dataset = labelled_dataset(40);
        let plain = BatchOptions { augment: None, ..augmented_options(8, 1) };

        let augmented = collect_batches(&dataset, &augmented_options(8, 1));

        assert_ne!(augmented, collect_batches(&dataset, &plain));
    }

    #[test]
    fn crop_padding_must_be_below_image_size() {
        // The images are 3x4, so a padding of 3 could cut a window of padding only.
        let dataset = labelled_dataset(2);
        let options = |crop_padding| BatchOptions {
            augment: Some(Augment { crop_padding, horizontal_flip: false, seed: 0 }),
            ..BatchOptions::new(1)
        };

        assert!(dataset.batches_with(&options(2)).is_ok());
        match dataset.batches_with(&options(3)) {
            Err(ModelError::Config(message)) => {
                assert!(message.contains("crop padding 3"), "{message}");
                assert!(message.contains("3x4"), "{message}");
                assert!(message.contains("at most 2"), "{message}");
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn batches_with_rejects_zero_batch_size() {
        let dataset = labelled_dataset(2);

        let result = dataset.batches_with(&BatchOptions { drop_last: true, ..BatchOptions::new(0) });

        assert!(matches!(result, Err(ModelError::Config(_))));
    }
}
