//! Reader for the binary version of CIFAR-10.
//!
//! The "CIFAR-10 binary version" (<https://www.cs.toronto.edu/~kriz/cifar.html>)
//! unpacks to `cifar-10-batches-bin` with five training files,
//! `data_batch_1.bin` to `data_batch_5.bin`, and `test_batch.bin`, each of
//! 10,000 records. A record is 3073 bytes: one label byte (0 to 9) followed
//! by the 32x32 red plane, the green plane and the blue plane, each 1024
//! bytes in row-major order. The files have no header, so a file's size is
//! all there is to check its record count against.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use incept_tensor::Tensor;

use super::{Dataset, check_data_dir};
use crate::{ModelError, Result};

/// CIFAR-10 class names, indexed by label, as listed in `batches.meta.txt`.
pub const CIFAR10_CLASSES: [&str; 10] =
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Mean of the red, green and blue channels of the CIFAR-10 training set,
/// with pixels scaled to [0, 1].
///
/// These are the widely published values, not measured here, because the
/// data set is not part of this repository. Computed over torchvision's copy
/// of the 50,000 training images they are 0.49140, 0.48216 and 0.44653
/// (<https://github.com/MadryLab/robustness/issues/70>).
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];

/// Standard deviation of the red, green and blue channels of the CIFAR-10
/// training set, with pixels scaled to [0, 1].
///
/// Widely published values, not measured here, of the population standard
/// deviation over all training pixels of a channel: 0.24703, 0.24349 and
/// 0.26159 in the same source as [`CIFAR10_MEAN`]. Many training scripts
/// instead copy 0.2023, 0.1994 and 0.2010, which is a different statistic.
pub const CIFAR10_STD: [f32; 3] = [0.2470, 0.2435, 0.2616];

/// Bytes in one record of a CIFAR-10 binary file: one label byte and
/// [`CIFAR10_IMAGE_LEN`] pixel bytes.
pub const CIFAR10_RECORD_LEN: usize = 1 + CIFAR10_IMAGE_LEN;

/// Pixel bytes in one CIFAR-10 image: 3 channels of 32x32.
pub const CIFAR10_IMAGE_LEN: usize = CHANNELS * SIDE * SIDE;

const CHANNELS: usize = 3;
const SIDE: usize = 32;
const TRAIN_FILES: [&str; 5] =
    ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"];
const TEST_FILE: &str = "test_batch.bin";

/// Directory that the CIFAR-10 binary archive unpacks to.
const ARCHIVE_DIR: &str = "cifar-10-batches-bin";
const ARCHIVE_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

/// Records of one CIFAR-10 binary file, such as `data_batch_1.bin`. A
/// "batch" here is the data set's name for a file, not a mini-batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cifar10Batch {
    /// Pixels of every image in record order, [`CIFAR10_IMAGE_LEN`] bytes
    /// per image in the layout `[3, 32, 32]` (red, green, blue planes).
    pub pixels: Vec<u8>,
    /// Label of every image, each below 10.
    pub labels: Vec<u8>,
}

impl Cifar10Batch {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Returns `true` if there are no images. [`read_cifar10_batch`] rejects
    /// empty files, so its results are never empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Reads one file of the CIFAR-10 binary version.
///
/// The file size is checked before any buffer is allocated, and the buffers
/// together take exactly the file size.
///
/// # Errors
/// [`ModelError::Io`] if the file cannot be opened or read.
/// [`ModelError::Format`] if the file is empty, its size is not a multiple of
/// [`CIFAR10_RECORD_LEN`], or a record's label is 10 or more.
pub fn read_cifar10_batch(path: &Path) -> Result<Cifar10Batch> {
    let io_error = |source| ModelError::Io { path: path.to_path_buf(), source };
    let format_error = |reason| ModelError::Format { path: path.to_path_buf(), reason };

    let file = File::open(path).map_err(io_error)?;
    let file_len = file.metadata().map_err(io_error)?.len();
    let count = record_count(path, file_len)?;

    // record_count guarantees count * CIFAR10_RECORD_LEN == file_len fits in usize.
    let mut pixels = Vec::with_capacity(count * CIFAR10_IMAGE_LEN);
    let mut labels = Vec::with_capacity(count);
    let mut reader = BufReader::new(file);
    let mut record = [0u8; CIFAR10_RECORD_LEN];
    for index in 0..count {
        let offset = index * CIFAR10_RECORD_LEN;
        if let Err(source) = reader.read_exact(&mut record) {
            if source.kind() != io::ErrorKind::UnexpectedEof {
                return Err(io_error(source));
            }
            return Err(format_error(format!(
                "file ends inside record {index} (byte {offset}) although it was {file_len} bytes \
                 when opened; it changed while being read"
            )));
        }

        let label = record[0];
        if usize::from(label) >= CIFAR10_CLASSES.len() {
            return Err(format_error(format!(
                "record {index} (byte {offset}) has label {label}, expected a CIFAR-10 class \
                 index from 0 to 9"
            )));
        }
        labels.push(label);
        pixels.extend_from_slice(&record[1..]);
    }

    Ok(Cifar10Batch { pixels, labels })
}

/// Returns the number of records in a CIFAR-10 binary file of `file_len`
/// bytes, or the format error that explains why that size is invalid.
fn record_count(path: &Path, file_len: u64) -> Result<usize> {
    let format_error = |reason| ModelError::Format { path: path.to_path_buf(), reason };
    let record_len = CIFAR10_RECORD_LEN as u64;

    if file_len == 0 {
        return Err(format_error(format!(
            "file is empty, expected one or more CIFAR-10 records of {record_len} bytes \
             (1 label byte and {CIFAR10_IMAGE_LEN} pixel bytes)"
        )));
    }
    let (whole, extra) = (file_len / record_len, file_len % record_len);
    if extra != 0 {
        return Err(format_error(format!(
            "file size {file_len} bytes is not a multiple of the CIFAR-10 record size of \
             {record_len} bytes (1 label byte and {CIFAR10_IMAGE_LEN} pixel bytes): it contains \
             {whole} whole records and {extra} more bytes, so it is truncated or not a CIFAR-10 \
             binary file"
        )));
    }
    usize::try_from(file_len)
        .map(|_| whole as usize)
        .map_err(|_| format_error(format!("file of {file_len} bytes is larger than this platform can address")))
}

/// Loads the CIFAR-10 training and test sets from `dir`.
///
/// `dir` must contain `data_batch_1.bin` to `data_batch_5.bin` and
/// `test_batch.bin`, either directly or in the `cifar-10-batches-bin`
/// directory that the binary archive unpacks to. The files may contain fewer
/// than the published 10,000 records each, so subsets load too. The training
/// set is the five training files in order.
///
/// Images get shape `[n, 3, 32, 32]`. A pixel byte `p` of channel `c`
/// becomes `(p / 255 - CIFAR10_MEAN[c]) / CIFAR10_STD[c]`, and both data sets
/// record these statistics as their [`super::Normalization`]. The full
/// training set takes 614 MB as `f32` (50,000 x 3072 x 4 bytes). Peak memory
/// is that plus one file's bytes, because each file is converted as soon as
/// it is read. Returns `(train, test)`.
///
/// # Errors
/// [`ModelError::Io`] naming `dir` if it is missing or not a directory.
/// [`ModelError::Io`] with kind [`io::ErrorKind::NotFound`] if one of the
/// six files is missing; the message names it and the archive to download.
/// Otherwise any error of [`read_cifar10_batch`].
pub fn cifar10(dir: &Path) -> Result<(Dataset, Dataset)> {
    let expected_files = format!(
        "download the CIFAR-10 binary version ({ARCHIVE_URL}) and unpack it into a directory, which creates \
         {ARCHIVE_DIR} with data_batch_1.bin to data_batch_5.bin and {TEST_FILE}, or put those six files \
         directly into a directory, and pass that directory"
    );
    check_data_dir(dir, &expected_files)?;
    let base = cifar10_base_dir(dir);
    let find = |name: &str| -> Result<PathBuf> {
        let path = base.join(name);
        if path.is_file() {
            return Ok(path);
        }
        let message = format!(
            "CIFAR-10 file not found; download the CIFAR-10 binary version ({ARCHIVE_URL}) and \
             unpack it into {}, which creates {ARCHIVE_DIR} with data_batch_1.bin to \
             data_batch_5.bin and {TEST_FILE}, or put those six files directly into that \
             directory",
            dir.display()
        );
        Err(ModelError::Io { path, source: io::Error::new(io::ErrorKind::NotFound, message) })
    };
    let train_paths = TRAIN_FILES.iter().map(|name| find(name)).collect::<Result<Vec<_>>>()?;
    let test_path = find(TEST_FILE)?;

    let train = load_cifar10_files(&train_paths)?;
    let test = load_cifar10_files(&[test_path])?;
    Ok((train, test))
}

/// Returns `dir` if it contains one of the CIFAR-10 files, else its
/// `cifar-10-batches-bin` subdirectory if that exists, else `dir`, whose
/// missing files are then reported.
fn cifar10_base_dir(dir: &Path) -> PathBuf {
    let has_files = |candidate: &Path| TRAIN_FILES.iter().chain([&TEST_FILE]).any(|name| candidate.join(name).exists());
    let nested = dir.join(ARCHIVE_DIR);
    if !has_files(dir) && nested.is_dir() { nested } else { dir.to_path_buf() }
}

/// Reads CIFAR-10 binary files in order into one normalised data set.
fn load_cifar10_files(paths: &[PathBuf]) -> Result<Dataset> {
    // Size the output from the checked file sizes, so it is allocated once
    // and takes 4 bytes per pixel byte of the files.
    let mut total_records = 0usize;
    for path in paths {
        let file_len = std::fs::metadata(path).map_err(|source| ModelError::Io { path: path.clone(), source })?.len();
        total_records += record_count(path, file_len)?;
    }
    let max_pixels = isize::MAX as usize / size_of::<f32>();
    let Some(pixel_count) = total_records.checked_mul(CIFAR10_IMAGE_LEN).filter(|&count| count <= max_pixels) else {
        return Err(ModelError::Format {
            path: paths.last().cloned().unwrap_or_default(),
            reason: format!(
                "the CIFAR-10 files up to this one contain {total_records} images, more than this \
                 platform can address as f32 pixels"
            ),
        });
    };
    let mut images = Vec::with_capacity(pixel_count);
    let mut labels = Vec::with_capacity(total_records);

    // One table entry per byte value and channel is cheaper than a division
    // per pixel.
    let tables: [[f32; 256]; CHANNELS] =
        std::array::from_fn(|c| std::array::from_fn(|byte| (byte as f32 / 255.0 - CIFAR10_MEAN[c]) / CIFAR10_STD[c]));
    for path in paths {
        let batch = read_cifar10_batch(path)?;
        for image in batch.pixels.chunks_exact(CIFAR10_IMAGE_LEN) {
            for (plane, table) in image.chunks_exact(SIDE * SIDE).zip(&tables) {
                images.extend(plane.iter().map(|&p| table[usize::from(p)]));
            }
        }
        labels.extend(batch.labels.iter().map(|&label| usize::from(label)));
    }

    let count = labels.len();
    let images = Tensor::from_vec(images, [count, CHANNELS, SIDE, SIDE])?;
    Dataset::new(images, labels, CIFAR10_CLASSES.len())?.with_normalization(&CIFAR10_MEAN, &CIFAR10_STD)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_support::TempDir;

    /// Encodes one record whose pixel `i` of channel `c` is
    /// `(seed + 3 * i + 101 * c) % 256`.
    fn record(label: u8, seed: usize) -> Vec<u8> {
        let mut bytes = vec![label];
        for c in 0..CHANNELS {
            bytes.extend((0..SIDE * SIDE).map(|i| ((seed + 3 * i + 101 * c) % 256) as u8));
        }
        bytes
    }

    /// Encodes a file of one record per label, record `k` built with seed `k`.
    fn records(labels: &[u8]) -> Vec<u8> {
        labels.iter().enumerate().flat_map(|(k, &label)| record(label, k)).collect()
    }

    fn format_reason(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(ModelError::Format { reason, .. }) => reason,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    /// Writes the six CIFAR-10 files into `dir`: training file `k` (from 1)
    /// contains one record of label `k`, and the test file two of labels 9, 0.
    fn write_cifar10_files(dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        for (k, name) in TRAIN_FILES.iter().enumerate() {
            std::fs::write(dir.join(name), record(k as u8 + 1, k)).unwrap();
        }
        std::fs::write(dir.join(TEST_FILE), records(&[9, 0])).unwrap();
    }

    #[test]
    fn batch_reads_labels_and_pixels() {
        let dir = TempDir::new("cifar-good");
        let path = dir.write("data_batch_1.bin", &records(&[3, 0, 9]));

        let batch = read_cifar10_batch(&path).unwrap();

        assert_eq!(batch.len(), 3);
        assert_eq!(batch.labels, [3, 0, 9]);
        assert_eq!(batch.pixels.len(), 3 * CIFAR10_IMAGE_LEN);
        for k in 0..3 {
            let image = &batch.pixels[k * CIFAR10_IMAGE_LEN..(k + 1) * CIFAR10_IMAGE_LEN];
            assert_eq!(image, &record(0, k)[1..], "image {k}");
        }
    }

    #[test]
    fn batch_size_not_multiple_rejected() {
        let dir = TempDir::new("cifar-size");
        let mut bytes = records(&[1]);
        bytes.extend_from_slice(&[0; 10]);
        let path = dir.write("data_batch_1.bin", &bytes);

        let reason = format_reason(read_cifar10_batch(&path));

        assert!(reason.contains("file size 3083 bytes"), "{reason}");
        assert!(reason.contains("record size of 3073 bytes"), "{reason}");
        assert!(reason.contains("1 whole records and 10 more bytes"), "{reason}");
    }

    #[test]
    fn batch_truncated_last_record_rejected() {
        let dir = TempDir::new("cifar-truncated");
        let bytes = records(&[1, 2]);
        let path = dir.write("test_batch.bin", &bytes[..bytes.len() - 1]);

        let error = read_cifar10_batch(&path).unwrap_err();

        match &error {
            ModelError::Format { path: error_path, reason } => {
                assert_eq!(error_path, &path);
                assert!(reason.contains("file size 6145 bytes"), "{reason}");
                assert!(reason.contains("1 whole records and 3072 more bytes"), "{reason}");
                assert!(reason.contains("truncated"), "{reason}");
            }
            other => panic!("expected a format error, got {other:?}"),
        }
        assert!(error.to_string().contains("test_batch.bin"), "{error}");
    }

    #[test]
    fn batch_empty_file_rejected() {
        let dir = TempDir::new("cifar-empty");
        let path = dir.write("data_batch_1.bin", b"");

        let reason = format_reason(read_cifar10_batch(&path));

        assert!(reason.contains("file is empty"), "{reason}");
        assert!(reason.contains("3073 bytes"), "{reason}");
    }

    #[test]
    fn batch_label_out_of_range_rejected() {
        let dir = TempDir::new("cifar-label");
        let path = dir.write("data_batch_1.bin", &records(&[9, 10, 4]));

        let reason = format_reason(read_cifar10_batch(&path));

        assert!(reason.contains("record 1 (byte 3073) has label 10"), "{reason}");
        assert!(reason.contains("0 to 9"), "{reason}");
    }

    #[test]
    fn batch_missing_file_is_io_error() {
        let dir = TempDir::new("cifar-missing-batch");
        let path = dir.path().join("data_batch_1.bin");

        match read_cifar10_batch(&path) {
            Err(ModelError::Io { path: error_path, source }) => {
                assert_eq!(error_path, path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }

    #[test]
    fn loader_reads_all_files_in_order() {
        let dir = TempDir::new("cifar-load");
        write_cifar10_files(dir.path());

        let (train, test) = cifar10(dir.path()).unwrap();

        assert_eq!(train.images().dims(), &[5, 3, 32, 32]);
        assert_eq!(train.labels(), &[1, 2, 3, 4, 5]);
        assert_eq!(train.num_classes(), 10);
        assert_eq!(test.images().dims(), &[2, 3, 32, 32]);
        assert_eq!(test.labels(), &[9, 0]);
    }

    #[test]
    fn loader_normalises_each_channel() {
        let dir = TempDir::new("cifar-normalise");
        write_cifar10_files(dir.path());
        // Training file 3 contains record(3, 2), whose first pixel of channel c
        // is (2 + 101 * c) % 256: 2, 103 and 204.
        let raw_first_pixels = [2.0f32, 103.0, 204.0];

        let (train, test) = cifar10(dir.path()).unwrap();

        let image = &train.images().data()[2 * CIFAR10_IMAGE_LEN..3 * CIFAR10_IMAGE_LEN];
        for (c, raw) in raw_first_pixels.into_iter().enumerate() {
            let expected = (raw / 255.0 - CIFAR10_MEAN[c]) / CIFAR10_STD[c];
            let got = image[c * SIDE * SIDE];
            assert!((got - expected).abs() < 1e-6, "channel {c}: got {got}, expected {expected}");
        }
        for dataset in [&train, &test] {
            let normalization = dataset.normalization().unwrap();
            assert_eq!(normalization.mean(), CIFAR10_MEAN);
            assert_eq!(normalization.std(), CIFAR10_STD);
        }
    }

    #[test]
    fn loader_black_pixel_per_channel() {
        let dir = TempDir::new("cifar-black");
        write_cifar10_files(dir.path());

        let (train, _) = cifar10(dir.path()).unwrap();

        let black = train.black_pixel();
        let expected = [-0.4914 / 0.2470, -0.4822 / 0.2435, -0.4465 / 0.2616];
        assert_eq!(black.len(), 3);
        for (c, (got, want)) in black.into_iter().zip(expected).enumerate() {
            assert!((got - want).abs() < 1e-6, "channel {c}: got {got}, expected {want}");
        }
    }

    #[test]
    fn loader_accepts_archive_directory() {
        let dir = TempDir::new("cifar-nested");
        write_cifar10_files(&dir.path().join(ARCHIVE_DIR));

        let (train, test) = cifar10(dir.path()).unwrap();

        assert_eq!(train.len(), 5);
        assert_eq!(test.len(), 2);
    }

    #[test]
    fn loader_missing_file_names_download() {
        let dir = TempDir::new("cifar-missing");

        let error = cifar10(dir.path()).unwrap_err();

        match &error {
            ModelError::Io { path, source } => {
                assert_eq!(path, &dir.path().join("data_batch_1.bin"));
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
        let message = error.to_string();
        assert!(message.contains("data_batch_1.bin"), "{message}");
        assert!(message.contains(ARCHIVE_URL), "{message}");
        assert!(message.contains(ARCHIVE_DIR), "{message}");
    }

    #[test]
    fn loader_rejects_file_as_directory() {
        let dir = TempDir::new("cifar-file");
        let file = dir.write("data_batch_1.bin", &records(&[1]));

        let error = cifar10(&file).unwrap_err();

        match &error {
            ModelError::Io { path, source } => {
                assert_eq!(path, &file);
                assert_eq!(source.kind(), io::ErrorKind::NotADirectory);
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
        let message = error.to_string();
        assert!(message.starts_with(&format!("{}: not a directory; ", file.display())), "{message}");
        assert!(message.contains(ARCHIVE_URL), "{message}");
    }

    #[test]
    fn loader_missing_test_file_named() {
        let dir = TempDir::new("cifar-missing-test");
        write_cifar10_files(dir.path());
        std::fs::remove_file(dir.path().join(TEST_FILE)).unwrap();

        let error = cifar10(dir.path()).unwrap_err();

        match &error {
            ModelError::Io { path, source } => {
                assert_eq!(path, &dir.path().join(TEST_FILE));
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }

    #[test]
    fn loader_reports_invalid_file() {
        let dir = TempDir::new("cifar-invalid");
        write_cifar10_files(dir.path());
        std::fs::write(dir.path().join("data_batch_4.bin"), records(&[11])).unwrap();

        match cifar10(dir.path()) {
            Err(ModelError::Format { path, reason }) => {
                assert_eq!(path, dir.path().join("data_batch_4.bin"));
                assert!(reason.contains("label 11"), "{reason}");
            }
            other => panic!("expected a format error, got {other:?}"),
        }
    }
}
