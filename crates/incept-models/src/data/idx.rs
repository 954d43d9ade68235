//! Reader for the IDX format of MNIST-style data sets.
//!
//! An IDX file is a big-endian header followed by the data in row-major
//! order. The header starts with a 4-byte magic number (two zero bytes, a
//! type code where 0x08 means unsigned bytes, and the number of dimensions),
//! followed by one `u32` size per dimension. Files may be gzip-compressed as a
//! whole, as the published MNIST and Fashion-MNIST files are.
//!
//! Neither the header nor the gzip stream is trusted: every size is checked
//! against the data the file can actually contain before a buffer of that
//! size is allocated.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::{ModelError, Result};

/// Magic number of an IDX file of unsigned-byte images (type 0x08, 3 dimensions).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;

/// Magic number of an IDX file of unsigned-byte labels (type 0x08, 1 dimension).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Maximum image height or width accepted by [`read_idx_images`].
///
/// MNIST-family images are 28x28. The limit rejects corrupt headers early.
/// The IDX format itself allows sides up to `u32::MAX`.
pub const MAX_IMAGE_SIDE: usize = 4096;

/// Upper bound on decompressed bytes per compressed byte of a deflate stream.
///
/// A length/distance pair copies at most 258 bytes and costs at least two
/// bits (one-bit codes for both), so one input byte yields at most
/// 4 * 258 = 1032 output bytes. Gzip framing only lowers the real ratio.
const DEFLATE_MAX_RATIO: u64 = 1032;

/// Bytes reserved up front for a gzip payload per byte of the compressed
/// file. A larger payload grows its buffer only as decompressed bytes
/// actually arrive, so a header that claims more than the stream contains
/// makes the reader reserve at most twice the file size. The four files in
/// `data/fashion-mnist` decompress to 1.79 to 1.96 times their size, so
/// each fits in one allocation.
const GZIP_RESERVE_PER_FILE_BYTE: u64 = 2;

/// Bytes of trailing data counted for an error message after the payload.
const TRAILING_PROBE_LEN: u64 = 1 << 20;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Images read from an IDX file, stored row-major as `[count, rows, cols]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Image height in pixels.
    pub rows: usize,
    /// Image width in pixels.
    pub cols: usize,
    /// Pixel intensities, `count * rows * cols` bytes.
    pub pixels: Vec<u8>,
}

/// Reads an IDX file of unsigned-byte images, gzip-compressed or raw.
///
/// Compression is detected from the gzip magic bytes (0x1f 0x8b), not from
/// the file name.
///
/// # Errors
/// [`ModelError::Io`] if the file cannot be opened or read.
/// [`ModelError::Format`] if the magic number is not [`IDX_IMAGES_MAGIC`],
/// the image count is 0, a side is 0 or above [`MAX_IMAGE_SIDE`], the gzip
/// stream is corrupt, or the file contains fewer or more pixel bytes than the
/// header declares.
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    let mut reader = IdxReader::open(path)?;
    reader.read_magic(IDX_IMAGES_MAGIC)?;

    let count = reader.read_u32("image count")?;
    let rows = reader.read_u32("row count")?;
    let cols = reader.read_u32("column count")?;
    reader.check_nonzero("images", count)?;
    reader.check_side("row count", rows)?;
    reader.check_side("column count", cols)?;

    // Cannot overflow: count < 2^32 and both sides are at most 2^12.
    let pixel_count = count as u64 * rows as u64 * cols as u64;
    let pixels = reader.read_payload(pixel_count, "pixel")?;

    Ok(IdxImages { count: to_usize(path, count)?, rows: to_usize(path, rows)?, cols: to_usize(path, cols)?, pixels })
}

/// Reads an IDX file of unsigned-byte labels, gzip-compressed or raw.
///
/// Compression is detected as in [`read_idx_images`].
///
/// # Errors
/// [`ModelError::Io`] if the file cannot be opened or read.
/// [`ModelError::Format`] if the magic number is not [`IDX_LABELS_MAGIC`],
/// the label count is 0, the gzip stream is corrupt, or the file contains fewer
/// or more label bytes than the header declares.
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    let mut reader = IdxReader::open(path)?;
    reader.read_magic(IDX_LABELS_MAGIC)?;

    let count = reader.read_u32("label count")?;
    reader.check_nonzero("labels", count)?;

    reader.read_payload(u64::from(count), "label")
}

/// An open IDX file that tracks how many decompressed bytes it has consumed.
struct IdxReader {
    path: PathBuf,
    /// Size of the file on disk, compressed if `gzip` is set.
    file_len: u64,
    gzip: bool,
    source: Box<dyn Read>,
    /// Decompressed bytes read so far.
    offset: u64,
}

impl IdxReader {
    fn open(path: &Path) -> Result<Self> {
        let io_error = |source| ModelError::Io { path: path.to_path_buf(), source };

        let mut file = File::open(path).map_err(io_error)?;
        let file_len = file.metadata().map_err(io_error)?.len();

        let mut start = [0u8; 2];
        let start_len = read_full(&mut file, &mut start).map_err(io_error)?;
        file.rewind().map_err(io_error)?;
        let gzip = start_len == 2 && start == GZIP_MAGIC;

        // MultiGzDecoder accepts concatenated gzip members, as gunzip does.
        let source: Box<dyn Read> =
            if gzip { Box::new(MultiGzDecoder::new(BufReader::new(file))) } else { Box::new(file) };

        Ok(IdxReader { path: path.to_path_buf(), file_len, gzip, source, offset: 0 })
    }

    fn format_error(&self, reason: String) -> ModelError {
        ModelError::Format { path: self.path.clone(), reason }
    }

    /// Converts a read failure. In a gzip file every failure after opening
    /// comes from the decoder and means corrupt data, so it is a format error.
    fn read_error(&self, source: io::Error, context: &str) -> ModelError {
        if self.gzip {
            self.format_error(format!("gzip decompression failed {context}: {source}"))
        } else {
            ModelError::Io { path: self.path.clone(), source }
        }
    }

    fn describe_file(&self) -> String {
        let encoding = if self.gzip { "gzip-compressed" } else { "raw" };
        format!("{encoding} file of {} bytes", self.file_len)
    }

    /// Reads one big-endian `u32` header field.
    fn read_u32(&mut self, field: &str) -> Result<u32> {
        let mut bytes = [0u8; 4];
        let context = format!("in the IDX header at byte {}", self.offset);
        let len = read_full(&mut self.source, &mut bytes).map_err(|e| self.read_error(e, &context))?;
        if len < bytes.len() {
            return Err(self.format_error(format!(
                "file ends inside the IDX header: the {field} needs 4 bytes at byte {}, \
                 found {len} ({})",
                self.offset,
                self.describe_file()
            )));
        }
        self.offset += 4;
        Ok(u32::from_be_bytes(bytes))
    }

    fn read_magic(&mut self, expected: u32) -> Result<()> {
        let found = self.read_u32("magic number")?;
        if found != expected {
            return Err(self.format_error(format!(
                "IDX magic number is 0x{found:08x} ({}), expected 0x{expected:08x} ({})",
                describe_magic(found),
                describe_magic(expected)
            )));
        }
        Ok(())
    }

    fn check_nonzero(&self, items: &str, count: u32) -> Result<()> {
        if count == 0 {
            return Err(self.format_error(format!("IDX header declares 0 {items}, expected at least 1")));
        }
        Ok(())
    }

    fn check_side(&self, field: &str, side: u32) -> Result<()> {
        if side == 0 || side as usize > MAX_IMAGE_SIDE {
            return Err(
                self.format_error(format!("IDX header declares a {field} of {side}, expected 1 to {MAX_IMAGE_SIDE}"))
            );
        }
        Ok(())
    }

    /// Reads exactly `len` payload bytes and checks that nothing follows them.
    ///
    /// The declared size is checked against what the file can contain
    /// before any buffer of that size is reserved.
    fn read_payload(mut self, len: u64, item: &str) -> Result<Vec<u8>> {
        let total = self.offset + len;
        self.check_declared_size(len, total, item)?;

        let len_usize = usize::try_from(len).map_err(|_| {
            self.format_error(format!("IDX header declares {len} {item} bytes, more than this platform can address"))
        })?;
        let capacity = if self.gzip {
            let reserve = self.file_len.saturating_mul(GZIP_RESERVE_PER_FILE_BYTE);
            len_usize.min(usize::try_from(reserve).unwrap_or(usize::MAX))
        } else {
            len_usize
        };
        let mut payload = Vec::with_capacity(capacity);

        // On error, read_to_end has already appended every byte it read, so
        // payload.len() is the number of bytes that did arrive.
        let read = self.source.by_ref().take(len).read_to_end(&mut payload);
        if let Err(source) = read {
            let context = format!("after {} of the {len} {item} bytes the header declares", payload.len());
            return Err(self.read_error(source, &context));
        }
        if payload.len() != len_usize {
            return Err(self.format_error(format!(
                "file is truncated: the IDX header declares {len} {item} bytes, found {}",
                payload.len()
            )));
        }

        self.check_no_trailing_data(len, item)?;
        Ok(payload)
    }

    fn check_declared_size(&self, len: u64, total: u64, item: &str) -> Result<()> {
        if self.gzip {
            let max_total = self.file_len.saturating_mul(DEFLATE_MAX_RATIO);
            if total > max_total {
                return Err(self.format_error(format!(
                    "IDX header declares {len} {item} bytes ({total} bytes with the header), \
                     but a gzip file of {} bytes decompresses to at most {max_total} bytes \
                     (deflate's maximum ratio is {DEFLATE_MAX_RATIO}:1); the file is \
                     truncated or its header is corrupt",
                    self.file_len
                )));
            }
        } else if self.file_len < total {
            return Err(self.format_error(format!(
                "file is truncated: the IDX header declares {len} {item} bytes, so the file \
                 should be {total} bytes, found {}",
                self.file_len
            )));
        } else if self.file_len > total {
            return Err(self.format_error(format!(
                "file has {} trailing bytes: the IDX header declares {len} {item} bytes, so \
                 the file should be {total} bytes, found {}",
                self.file_len - total,
                self.file_len
            )));
        }
        Ok(())
    }

    fn check_no_trailing_data(&mut self, len: u64, item: &str) -> Result<()> {
        let mut probe = self.source.by_ref().take(TRAILING_PROBE_LEN);
        let trailing = match io::copy(&mut probe, &mut io::sink()) {
            Ok(trailing) => trailing,
            Err(source) if !self.gzip => return Err(self.read_error(source, "")),
            Err(source) => {
                return Err(self.format_error(format!(
                    "file has trailing data after the {len} {item} bytes the IDX header \
                     declares, expected none, and the trailing data is not valid gzip: {source}"
                )));
            }
        };
        if trailing > 0 {
            let amount =
                if trailing == TRAILING_PROBE_LEN { format!("at least {trailing}") } else { trailing.to_string() };
            return Err(self.format_error(format!(
                "file has {amount} trailing bytes after the {len} {item} bytes the IDX header \
                 declares, expected none"
            )));
        }
        Ok(())
    }
}

fn describe_magic(magic: u32) -> String {
    let [zero_high, zero_low, type_code, dims] = magic.to_be_bytes();
    if zero_high != 0 || zero_low != 0 {
        return "not an IDX file, whose magic number starts with two zero bytes".to_string();
    }
    let type_name = match type_code {
        0x08 => "unsigned bytes",
        0x09 => "signed bytes",
        0x0b => "i16",
        0x0c => "i32",
        0x0d => "f32",
        0x0e => "f64",
        _ => "unknown type",
    };
    let plural = if dims == 1 { "" } else { "s" };
    format!("{type_name}, {dims} dimension{plural}")
}

/// Reads until `buf` is full or the input ends, and returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

fn to_usize(path: &Path, value: u32) -> Result<usize> {
    usize::try_from(value).map_err(|_| ModelError::Format {
        path: path.to_path_buf(),
        reason: format!("IDX size {value} does not fit in this platform's usize"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_support::{TempDir, gzip, idx_images_bytes, idx_labels_bytes};

    fn format_reason(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(ModelError::Format { reason, .. }) => reason,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    fn sample_pixels(count: usize, rows: usize, cols: usize) -> Vec<u8> {
        (0..count * rows * cols).map(|i| (i * 7 % 256) as u8).collect()
    }

    #[test]
    fn images_round_trip_raw() {
        let dir = TempDir::new("images-raw");
        let pixels = sample_pixels(3, 4, 5);
        let path = dir.write("images.idx", &idx_images_bytes(3, 4, 5, &pixels));

        let images = read_idx_images(&path).unwrap();

        assert_eq!(images.count, 3);
        assert_eq!(images.rows, 4);
        assert_eq!(images.cols, 5);
        assert_eq!(images.pixels, pixels);
    }

    #[test]
    fn images_round_trip_gzip() {
        let dir = TempDir::new("images-gzip");
        let pixels = sample_pixels(3, 4, 5);
        let path = dir.write("images.idx.gz", &gzip(&idx_images_bytes(3, 4, 5, &pixels)));

        let images = read_idx_images(&path).unwrap();

        assert_eq!(images.count, 3);
        assert_eq!(images.rows, 4);
        assert_eq!(images.cols, 5);
        assert_eq!(images.pixels, pixels);
    }

    #[test]
    fn labels_round_trip_raw_and_gzip() {
        let dir = TempDir::new("labels");
        let labels = vec![0, 9, 3, 3, 255];
        let raw = dir.write("labels.idx", &idx_labels_bytes(&labels));
        let compressed = dir.write("labels.idx.gz", &gzip(&idx_labels_bytes(&labels)));

        assert_eq!(read_idx_labels(&raw).unwrap(), labels);
        assert_eq!(read_idx_labels(&compressed).unwrap(), labels);
    }

    #[test]
    fn concatenated_gzip_members_read() {
        let dir = TempDir::new("gzip-members");
        let bytes = idx_labels_bytes(&[4, 5, 6, 7]);
        let mut members = gzip(&bytes[..5]);
        members.extend_from_slice(&gzip(&bytes[5..]));
        let path = dir.write("labels.idx.gz", &members);

        assert_eq!(read_idx_labels(&path).unwrap(), [4, 5, 6, 7]);
    }

    #[test]
    fn gzip_detected_by_content_not_name() {
        let dir = TempDir::new("gzip-by-content");
        let labels = vec![1, 2, 3];
        let raw_named_gz = dir.write("labels.gz", &idx_labels_bytes(&labels));
        let gzip_named_raw = dir.write("labels.idx", &gzip(&idx_labels_bytes(&labels)));

        assert_eq!(read_idx_labels(&raw_named_gz).unwrap(), labels);
        assert_eq!(read_idx_labels(&gzip_named_raw).unwrap(), labels);
    }

    #[test]
    fn wrong_magic_names_both_values() {
        let dir = TempDir::new("wrong-magic");
        let labels_path = dir.write("labels.idx", &idx_labels_bytes(&[1, 2]));
        let images_path = dir.write("images.idx", &idx_images_bytes(1, 2, 2, &[0; 4]));

        let reason = format_reason(read_idx_images(&labels_path));
        assert!(reason.contains("0x00000801"), "{reason}");
        assert!(reason.contains("expected 0x00000803"), "{reason}");

        let reason = format_reason(read_idx_labels(&images_path));
        assert!(reason.contains("0x00000803"), "{reason}");
        assert!(reason.contains("expected 0x00000801"), "{reason}");
    }

    #[test]
    fn non_idx_file_rejected() {
        let dir = TempDir::new("not-idx");
        let path = dir.write("text.idx", b"hello, this is not an IDX file");

        let reason = format_reason(read_idx_labels(&path));
        assert!(reason.contains("not an IDX file"), "{reason}");
    }

    #[test]
    fn empty_file_rejected() {
        let dir = TempDir::new("empty");
        let path = dir.write("empty.idx", b"");

        let reason = format_reason(read_idx_images(&path));
        assert!(reason.contains("inside the IDX header"), "{reason}");
        assert!(reason.contains("found 0"), "{reason}");
    }

    #[test]
    fn truncated_header_rejected() {
        let dir = TempDir::new("truncated-header");
        let bytes = idx_images_bytes(1, 2, 2, &[0; 4]);
        let raw = dir.write("images.idx", &bytes[..10]);
        let compressed = dir.write("images.idx.gz", &gzip(&bytes[..10]));

        for path in [raw, compressed] {
            let reason = format_reason(read_idx_images(&path));
            assert!(reason.contains("row count"), "{reason}");
            assert!(reason.contains("found 2"), "{reason}");
        }
    }

    #[test]
    fn zero_sizes_rejected() {
        let dir = TempDir::new("zero-sizes");
        let zero_count = dir.write("count.idx", &idx_images_bytes(0, 2, 2, &[]));
        let zero_rows = dir.write("rows.idx", &idx_images_bytes(1, 0, 2, &[]));
        let zero_cols = dir.write("cols.idx", &idx_images_bytes(1, 2, 0, &[]));
        let zero_labels = dir.write("labels.idx", &idx_labels_bytes(&[]));

        let reason = format_reason(read_idx_images(&zero_count));
        assert!(reason.contains("declares 0 images"), "{reason}");
        let reason = format_reason(read_idx_images(&zero_rows));
        assert!(reason.contains("row count of 0"), "{reason}");
        let reason = format_reason(read_idx_images(&zero_cols));
        assert!(reason.contains("column count of 0"), "{reason}");
        let reason = format_reason(read_idx_labels(&zero_labels));
        assert!(reason.contains("declares 0 labels"), "{reason}");
    }

    #[test]
    fn oversized_side_rejected() {
        let dir = TempDir::new("oversized-side");
        let path = dir.write("images.idx", &idx_images_bytes(1, 5000, 2, &[]));

        let reason = format_reason(read_idx_images(&path));
        assert!(reason.contains("row count of 5000"), "{reason}");
        assert!(reason.contains("expected 1 to 4096"), "{reason}");
    }

    #[test]
    fn truncated_raw_payload_rejected() {
        let dir = TempDir::new("truncated-raw");
        let bytes = idx_images_bytes(2, 3, 3, &sample_pixels(2, 3, 3));
        let path = dir.write("images.idx", &bytes[..bytes.len() - 5]);

        let reason = format_reason(read_idx_images(&path));
        assert!(reason.contains("truncated"), "{reason}");
        assert!(reason.contains("should be 34 bytes, found 29"), "{reason}");
    }

    #[test]
    fn truncated_gzip_payload_rejected() {
        let dir = TempDir::new("truncated-gzip");
        let bytes = idx_images_bytes(2, 3, 3, &sample_pixels(2, 3, 3));
        let path = dir.write("images.idx.gz", &gzip(&bytes[..bytes.len() - 5]));

        let reason = format_reason(read_idx_images(&path));
        assert!(reason.contains("truncated"), "{reason}");
        assert!(reason.contains("declares 18 pixel bytes, found 13"), "{reason}");
    }

    #[test]
    fn cut_gzip_stream_rejected() {
        let dir = TempDir::new("cut-gzip");
        let pixels = sample_pixels(20, 8, 8);
        let compressed = gzip(&idx_images_bytes(20, 8, 8, &pixels));
        let path = dir.write("images.idx.gz", &compressed[..compressed.len() / 2]);

        let reason = format_reason(read_idx_images(&path));
        assert!(reason.contains("gzip decompression failed") || reason.contains("truncated"), "{reason}");
    }

    #[test]
    fn trailing_bytes_rejected() {
        let dir = TempDir::new("trailing");
        let mut bytes = idx_labels_bytes(&[1, 2, 3]);
        bytes.extend_from_slice(&[7, 7]);
        let raw = dir.write("labels.idx", &bytes);
        let compressed = dir.write("labels.idx.gz", &gzip(&bytes));

        let reason = format_reason(read_idx_labels(&raw));
        assert!(reason.contains("2 trailing bytes"), "{reason}");
        let reason = format_reason(read_idx_labels(&compressed));
        assert!(reason.contains("2 trailing bytes"), "{reason}");
        assert!(reason.contains("expected none"), "{reason}");
    }

    #[test]
    fn trailing_garbage_after_gzip_rejected() {
        let dir = TempDir::new("trailing-garbage");
        let mut bytes = gzip(&idx_labels_bytes(&[1, 2, 3]));
        bytes.extend_from_slice(b"garbage");
        let path = dir.write("labels.idx.gz", &bytes);

        let reason = format_reason(read_idx_labels(&path));
        assert!(reason.contains("trailing data"), "{reason}");
        assert!(reason.contains("not valid gzip"), "{reason}");
    }

    #[test]
    fn huge_raw_header_rejected() {
        let dir = TempDir::new("huge-raw");
        // 1,000,000 images of 1000x1000 claim 10^12 pixels in a 16-byte file.
        let path = dir.write("images.idx", &idx_images_bytes(1_000_000, 1000, 1000, &[]));

        let reason = format_reason(read_idx_images(&path));
        assert!(reason.contains("declares 1000000000000 pixel bytes"), "{reason}");
        assert!(reason.contains("found 16"), "{reason}");
    }

    #[test]
    fn idx_2_pow_31_images_rejected() {
        let dir = TempDir::new("2-31");
        // 2^31 images of 28x28 declared, 1,024 bytes in the file.
        let path = dir.write("images.idx", &idx_images_bytes(1 << 31, 28, 28, &[0; 1008]));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1024);

        let reason = format_reason(read_idx_images(&path));
        assert!(reason.contains("declares 1683627180032 pixel bytes"), "{reason}");
        assert!(reason.contains("found 1024"), "{reason}");
    }

    #[test]
    fn huge_gzip_header_rejected() {
        let dir = TempDir::new("huge-gzip");
        // The header claims 10^12 pixel bytes. The deflate ratio check must
        // reject it before the reader reserves a buffer or decompresses.
        let path = dir.write("images.idx.gz", &gzip(&idx_images_bytes(1_000_000, 1000, 1000, &[1, 2, 3])));
        let file_len = std::fs::metadata(&path).unwrap().len();
        assert!(file_len < 100, "test file is {file_len} bytes");

        let reason = format_reason(read_idx_images(&path));
        assert!(reason.contains("declares 1000000000000 pixel bytes"), "{reason}");
        assert!(reason.contains("decompresses to at most"), "{reason}");
    }

    #[test]
    fn missing_file_is_io_error() {
        let dir = TempDir::new("missing");
        let path = dir.path().join("absent.idx");

        match read_idx_labels(&path) {
            Err(ModelError::Io { path: error_path, source }) => {
                assert_eq!(error_path, path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }
}
