//! Data sets: IDX and CIFAR-10 binary file readers, an in-memory
//! [`Dataset`] with a mini-batch iterator that can crop and flip images, and
//! loaders for Fashion-MNIST and CIFAR-10.

mod augment;
mod cifar;
mod idx;
mod loader;

use std::io;
use std::path::{Path, PathBuf};

use crate::{ModelError, Result};

pub use augment::Augment;
pub use cifar::{
    CIFAR10_CLASSES, CIFAR10_IMAGE_LEN, CIFAR10_MEAN, CIFAR10_RECORD_LEN, CIFAR10_STD, Cifar10Batch, cifar10,
    read_cifar10_batch,
};
pub use idx::{IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, IdxImages, MAX_IMAGE_SIDE, read_idx_images, read_idx_labels};
pub use loader::{BatchOptions, Batches, Dataset, Normalization};

/// Fashion-MNIST class names, indexed by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] =
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

/// Mean pixel intensity of the Fashion-MNIST training set, with pixels
/// scaled to [0, 1].
///
/// Measured over all 60,000 training images (47,040,000 pixels) of Debian's
/// `dataset-fashion-mnist` 0.0~git20200523.55506a9-1: 0.286041.
pub const FASHION_MNIST_MEAN: f32 = 0.2860;

/// Standard deviation of the pixel intensity of the Fashion-MNIST training
/// set, with pixels scaled to [0, 1].
///
/// Population standard deviation over the same 47,040,000 pixels as
/// [`FASHION_MNIST_MEAN`]: 0.353024.
pub const FASHION_MNIST_STD: f32 = 0.3530;

const TRAIN_IMAGES_FILE: &str = "train-images-idx3-ubyte.gz";
const TRAIN_LABELS_FILE: &str = "train-labels-idx1-ubyte.gz";
const TEST_IMAGES_FILE: &str = "t10k-images-idx3-ubyte.gz";
const TEST_LABELS_FILE: &str = "t10k-labels-idx1-ubyte.gz";

/// Loads the Fashion-MNIST training and test sets from `dir`.
///
/// `dir` must contain `train-images-idx3-ubyte.gz`,
/// `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz` and
/// `t10k-labels-idx1-ubyte.gz`, the names of the published files, or the
/// same names without `.gz` for uncompressed copies. Both the full data set
/// (60,000 training and 10,000 test images) and the subset committed in
/// `data/fashion-mnist` (10,000 and 2,000) use these names. Pixels are
/// normalised with [`FASHION_MNIST_MEAN`] and [`FASHION_MNIST_STD`], which
/// both data sets record as their [`Normalization`].
/// Returns `(train, test)`.
///
/// # Errors
/// [`ModelError::Io`] naming `dir` if it is missing or not a directory.
/// [`ModelError::Io`] with kind [`io::ErrorKind::NotFound`] if one of the
/// four files is missing; the message names it and suggests `--data DIR`.
/// [`ModelError::Format`] if the training and test images differ in size.
/// Otherwise any error of [`Dataset::from_idx`].
pub fn fashion_mnist(dir: &Path) -> Result<(Dataset, Dataset)> {
    let expected_files = format!(
        "use a directory (the training example's --data DIR) that contains the four Fashion-MNIST IDX files \
         {TRAIN_IMAGES_FILE}, {TRAIN_LABELS_FILE}, {TEST_IMAGES_FILE} and {TEST_LABELS_FILE}, gzip-compressed or not"
    );
    check_data_dir(dir, &expected_files)?;
    let find = |name: &str| -> Result<PathBuf> {
        let gzip = dir.join(name);
        let raw = dir.join(name.trim_end_matches(".gz"));
        if gzip.exists() {
            return Ok(gzip);
        }
        if raw.exists() {
            return Ok(raw);
        }
        let message = format!("Fashion-MNIST file not found (also looked for {}); {expected_files}", raw.display());
        Err(ModelError::Io { path: gzip, source: io::Error::new(io::ErrorKind::NotFound, message) })
    };
    let paths = [find(TRAIN_IMAGES_FILE)?, find(TRAIN_LABELS_FILE)?, find(TEST_IMAGES_FILE)?, find(TEST_LABELS_FILE)?];

    let load = |images: &Path, labels: &Path| {
        Dataset::from_idx(images, labels, FASHION_MNIST_MEAN, FASHION_MNIST_STD, FASHION_MNIST_CLASSES.len())
    };
    let train = load(&paths[0], &paths[1])?;
    let test = load(&paths[2], &paths[3])?;
    let (train_size, test_size) = (&train.images().dims()[2..], &test.images().dims()[2..]);
    if train_size != test_size {
        return Err(ModelError::Format {
            path: paths[2].clone(),
            reason: format!(
                "test images are {}x{} but training images are {}x{}; both sets must come from the same data set",
                test_size[0], test_size[1], train_size[0], train_size[1]
            ),
        });
    }
    Ok((train, test))
}

/// Checks that `dir` exists and is a directory, before a loader looks for
/// its files in it. `expected_files` ends the message and describes what the
/// directory must contain.
fn check_data_dir(dir: &Path, expected_files: &str) -> Result<()> {
    let (kind, problem) = match std::fs::metadata(dir) {
        Ok(metadata) if metadata.is_dir() => return Ok(()),
        Ok(_) => (io::ErrorKind::NotADirectory, "not a directory"),
        Err(source) if source.kind() == io::ErrorKind::NotFound => (io::ErrorKind::NotFound, "directory not found"),
        Err(source) => return Err(ModelError::Io { path: dir.to_path_buf(), source }),
    };
    let source = io::Error::new(kind, format!("{problem}; {expected_files}"));
    Err(ModelError::Io { path: dir.to_path_buf(), source })
}

/// Temporary directories and synthetic IDX files for the data tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use flate2::Compression;
    use flate2::write::GzEncoder;

    /// A directory under the system temp directory, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        /// Creates an empty directory whose name is unique to this process
        /// and this call.
        pub(crate) fn new(name: &str) -> Self {
            static NEXT_ID: AtomicUsize = AtomicUsize::new(0);
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!("incept-models-test-{}-{id}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }

        /// Writes `bytes` to the file `name` in this directory and returns its path.
        pub(crate) fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Encodes an IDX image file. The header sizes are written as given, so
    /// they may disagree with `pixels` on purpose.
    pub(crate) fn idx_images_bytes(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16 + pixels.len());
        for field in [super::IDX_IMAGES_MAGIC, count, rows, cols] {
            bytes.extend_from_slice(&field.to_be_bytes());
        }
        bytes.extend_from_slice(pixels);
        bytes
    }

    /// Encodes an IDX label file whose header count is `labels.len()`.
    pub(crate) fn idx_labels_bytes(labels: &[u8]) -> Vec<u8> {
        let count = u32::try_from(labels.len()).unwrap();
        let mut bytes = Vec::with_capacity(8 + labels.len());
        for field in [super::IDX_LABELS_MAGIC, count] {
            bytes.extend_from_slice(&field.to_be_bytes());
        }
        bytes.extend_from_slice(labels);
        bytes
    }

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED_SUBSET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/fashion-mnist");

    fn class_counts(labels: &[usize]) -> [usize; 10] {
        let mut counts = [0; 10];
        for &label in labels {
            counts[label] += 1;
        }
        counts
    }

    fn mean_and_std(values: &[f32]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let variance = values.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
        (mean, variance.sqrt())
    }

    #[test]
    fn committed_subset_loads() {
        let (train, test) = fashion_mnist(Path::new(COMMITTED_SUBSET)).unwrap();

        assert_eq!(train.len(), 10_000);
        assert_eq!(train.images().dims(), &[10_000, 1, 28, 28]);
        assert_eq!(train.num_classes(), 10);
        assert!(train.labels().iter().all(|&label| label < 10));

        assert_eq!(test.len(), 2_000);
        assert_eq!(test.images().dims(), &[2_000, 1, 28, 28]);
        assert_eq!(test.num_classes(), 10);
        assert!(test.labels().iter().all(|&label| label < 10));
    }

    #[test]
    fn committed_subset_class_counts() {
        // The same counts are listed in data/fashion-mnist/README.md.
        let (train, test) = fashion_mnist(Path::new(COMMITTED_SUBSET)).unwrap();

        assert_eq!(class_counts(train.labels()), [942, 1027, 1016, 1019, 974, 989, 1021, 1022, 990, 1000]);
        assert_eq!(class_counts(test.labels()), [200, 203, 214, 190, 219, 195, 197, 200, 194, 188]);
    }

    #[test]
    fn committed_subset_normalised() {
        // The constants come from the full training set, so the subset's
        // statistics are close to, not exactly, 0 and 1.
        let (train, _) = fashion_mnist(Path::new(COMMITTED_SUBSET)).unwrap();

        let (mean, std) = mean_and_std(train.images().data());
        assert!(mean.abs() < 0.01, "normalised mean is {mean}");
        assert!((std - 1.0).abs() < 0.01, "normalised std is {std}");
    }

    #[test]
    fn data_dir_missing_or_a_file() {
        let dir = test_support::TempDir::new("fashion-not-dir");
        let missing = dir.path().join("missing");
        let file = dir.write("file", b"not a directory");

        for (path, kind, problem) in [
            (missing, io::ErrorKind::NotFound, "directory not found"),
            (file, io::ErrorKind::NotADirectory, "not a directory"),
        ] {
            let error = fashion_mnist(&path).unwrap_err();
            match &error {
                ModelError::Io { path: error_path, source } => {
                    assert_eq!(error_path, &path);
                    assert_eq!(source.kind(), kind);
                }
                other => panic!("expected an I/O error, got {other:?}"),
            }
            let message = error.to_string();
            assert!(message.starts_with(&format!("{}: {problem}; ", path.display())), "{message}");
            assert!(message.contains("--data DIR"), "{message}");
        }
    }

    #[test]
    fn missing_file_suggests_data_flag() {
        let dir = test_support::TempDir::new("fashion-missing");

        let error = fashion_mnist(dir.path()).unwrap_err();

        match &error {
            ModelError::Io { path, source } => {
                assert_eq!(path, &dir.path().join(TRAIN_IMAGES_FILE));
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
        let message = error.to_string();
        assert!(message.contains(TRAIN_IMAGES_FILE), "{message}");
        assert!(message.contains("--data DIR"), "{message}");
    }

    /// Writes a Fashion-MNIST-named set of raw IDX files: training images of
    /// `train_side` pixels square and test images of `test_side`.
    fn write_raw_set(dir: &test_support::TempDir, train_side: u32, test_side: u32) {
        let images = |side: u32| test_support::idx_images_bytes(2, side, side, &vec![7; (2 * side * side) as usize]);
        dir.write("train-images-idx3-ubyte", &images(train_side));
        dir.write("train-labels-idx1-ubyte", &test_support::idx_labels_bytes(&[1, 2]));
        dir.write("t10k-images-idx3-ubyte", &images(test_side));
        dir.write("t10k-labels-idx1-ubyte", &test_support::idx_labels_bytes(&[3, 4]));
    }

    #[test]
    fn uncompressed_files_load_without_gz_suffix() {
        let dir = test_support::TempDir::new("fashion-raw");
        write_raw_set(&dir, 28, 28);

        let (train, test) = fashion_mnist(dir.path()).unwrap();

        assert_eq!(train.labels(), &[1, 2]);
        assert_eq!(test.images().dims(), &[2, 1, 28, 28]);
    }

    #[test]
    fn train_and_test_sizes_must_match() {
        let dir = test_support::TempDir::new("fashion-sizes");
        write_raw_set(&dir, 28, 14);

        let message = fashion_mnist(dir.path()).unwrap_err().to_string();

        assert!(message.contains("test images are 14x14 but training images are 28x28"), "{message}");
    }
}
