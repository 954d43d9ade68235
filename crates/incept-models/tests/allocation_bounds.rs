//! Peak heap use of the file readers on malformed files.
//!
//! A counting global allocator tracks the live heap bytes. Each case writes a
//! malformed file, builds the model the reader loads into, and then measures
//! only the reader call: the peak of live bytes above those live when the
//! call started. Every call must return an error that names the file and
//! allocate at most 4 times the file size plus 256 KiB ([`allowed_peak`]).
//!
//! The multiple covers what a reader keeps of a file before it can reject
//! it. A safetensors header with 16,384 minimal tensor entries takes 3.6
//! times its text, and the payload buffer of a gzip file is reserved up to
//! twice the file size. The f32 network that `load_torchvision` builds for
//! an F16 file takes 2.0 times the file. The allowance
//! covers fixed buffers such as the gzip decoder's state, about 85 KB. A
//! reader that reserved a size a header declares would exceed the bound by
//! far: the gzip case below declares 65 MB in 64 KB.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Display;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use common::{RawTensor, encode, pytorch_tensors, raw_file, torchvision_tensors, write_with_crate};
use flate2::Compression;
use flate2::write::GzEncoder;
use incept_models::data::{
    CIFAR10_RECORD_LEN, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, cifar10, read_cifar10_batch, read_idx_images,
    read_idx_labels,
};
use incept_models::io::{load_safetensors, read_safetensors_metadata};
use incept_models::layers::Linear;
use incept_models::{GoogLeNet, GoogLeNetConfig, Init, Variant};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use safetensors::Dtype;

/// The system allocator, counting the bytes it has handed out and not yet
/// taken back, and the peak of that count.
struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

fn record_growth(bytes: usize) {
    let live = LIVE_BYTES.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK_BYTES.fetch_max(live, Ordering::SeqCst);
}

fn record_shrink(bytes: usize) {
    LIVE_BYTES.fetch_sub(bytes, Ordering::SeqCst);
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and returns its result, so `System` upholds the `GlobalAlloc`
// contract. The counters are atomics and never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's guarantees for `layout` are passed on to `System`.
        let pointer = unsafe { System.alloc(layout) };
        if !pointer.is_null() {
            record_growth(layout.size());
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let pointer = unsafe { System.alloc_zeroed(layout) };
        if !pointer.is_null() {
            record_growth(layout.size());
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: `pointer` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(pointer, layout) };
        record_shrink(layout.size());
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `pointer` came from `System` with `layout`, and the caller
        // guarantees that `new_size` is valid for its alignment.
        let moved = unsafe { System.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            if new_size >= layout.size() {
                record_growth(new_size - layout.size());
            } else {
                record_shrink(layout.size() - new_size);
            }
        }
        moved
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Held by each test from start to end. The counters are global, so the
/// setup of one test would otherwise count toward the peak of another.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Multiple of the file size that a rejected file may make a reader allocate.
const BYTES_PER_FILE_BYTE: usize = 4;

/// Fixed allowance on top of [`BYTES_PER_FILE_BYTE`], for the reader's own
/// buffers: the path and error strings, `BufReader`'s 8 KiB and the gzip
/// decoder's state with its 32 KiB window.
const ALLOWANCE: usize = 256 << 10;

/// Largest peak of live heap bytes allowed while a reader rejects a file of
/// `file_len` bytes.
fn allowed_peak(file_len: usize) -> usize {
    BYTES_PER_FILE_BYTE * file_len + ALLOWANCE
}

/// Runs `call` and returns its result and the peak of live heap bytes above
/// the bytes live when it started.
fn measure<R>(call: impl FnOnce() -> R) -> (R, usize) {
    let before = LIVE_BYTES.load(Ordering::SeqCst);
    PEAK_BYTES.store(before, Ordering::SeqCst);
    let result = call();
    let peak = PEAK_BYTES.load(Ordering::SeqCst);
    (result, peak.saturating_sub(before))
}

/// A directory under the system temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("incept-alloc-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Measures `read` on the file at `path`, which must be rejected with an
/// error naming the file, and checks the peak against [`allowed_peak`].
/// Run with `--nocapture` to see each peak.
fn check_rejected<T, E: Display>(reader: &str, path: &Path, read: impl FnOnce(&Path) -> Result<T, E>) {
    let file_len = fs::metadata(path).unwrap().len() as usize;
    let (result, peak) = measure(|| read(path));
    let name = path.file_name().unwrap().to_string_lossy();
    eprintln!("{reader:<24} {name:<28} file {file_len:>10} B  peak {peak:>10} B");
    let message = match result {
        Ok(_) => panic!("{reader} {name}: expected an error, the file was accepted"),
        Err(err) => err.to_string(),
    };
    assert!(message.contains(name.as_ref()), "{reader} {name}: the error must name the file: {message}");
    let allowed = allowed_peak(file_len);
    assert!(
        peak <= allowed,
        "{reader} {name}: allocated up to {peak} bytes for a {file_len}-byte file, more than the {allowed} \
         allowed ({BYTES_PER_FILE_BYTE} x file size + {ALLOWANCE}): {message}"
    );
}

/// Random bytes, which gzip cannot compress.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut bytes = vec![0; len];
    StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Encodes an IDX header with `magic` and the sizes as given, followed by `payload`.
fn idx_bytes(magic: u32, sizes: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut bytes: Vec<u8> = std::iter::once(magic).chain(sizes.iter().copied()).flat_map(u32::to_be_bytes).collect();
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn safetensors_headers_not_trusted() {
    let _serial = serial();
    let dir = TempDir::new("safetensors");
    let huge = 1usize << 62;
    let two_tensors = |bias: &str, weight: &str| format!(r#"{{"fc.bias":{bias},"fc.weight":{weight}}}"#);
    let f32_entry = |shape: &str, start: u64, end: u64| {
        format!(r#"{{"dtype":"F32","shape":{shape},"data_offsets":[{start},{end}]}}"#)
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("header-past-end.safetensors", [1000u64.to_le_bytes().as_slice(), b"{}"].concat()),
        ("header-u64-max.safetensors", [u64::MAX.to_le_bytes().as_slice(), &[b' '; 1024]].concat()),
        ("not-json.safetensors", raw_file(&"not json ".repeat(100), &[])),
        (
            "shape-overflow.safetensors",
            raw_file(
                &two_tensors(&f32_entry(&format!("[{huge}]"), 0, 8), &f32_entry(&format!("[{huge},1024]"), 8, 24)),
                &[0; 24],
            ),
        ),
        (
            "shape-overflow-u64.safetensors",
            raw_file(&two_tensors(&f32_entry("[2]", 0, 8), &f32_entry(&format!("[{huge},{huge}]"), 8, 24)), &[0; 24]),
        ),
        (
            "offsets-past-end.safetensors",
            raw_file(&two_tensors(&f32_entry("[2]", 0, 8), &f32_entry("[2,2]", 8, 1 << 40)), &[0; 24]),
        ),
        (
            "offsets-near-u64-max.safetensors",
            raw_file(&two_tensors(&f32_entry("[2]", 0, 8), &f32_entry("[2,2]", u64::MAX - 16, u64::MAX)), &[0; 24]),
        ),
        ("overlap.safetensors", raw_file(&two_tensors(&f32_entry("[2]", 0, 8), &f32_entry("[2,2]", 4, 20)), &[0; 24])),
        (
            "f16-and-i64.safetensors",
            raw_file(
                r#"{"fc.bias":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},"fc.weight":{"dtype":"I64","shape":[2,2],"data_offsets":[4,36]}}"#,
                &[0; 36],
            ),
        ),
        ("missing-tensor.safetensors", raw_file(&format!(r#"{{"fc.bias":{}}}"#, f32_entry("[2]", 0, 8)), &[0; 8])),
        (
            "unexpected-tensor.safetensors",
            raw_file(
                &format!(
                    r#"{{"extra":{},"fc.bias":{},"fc.weight":{}}}"#,
                    f32_entry("[1]", 24, 28),
                    f32_entry("[2]", 0, 8),
                    f32_entry("[2,2]", 8, 24)
                ),
                &[0; 28],
            ),
        ),
        // A JSON tree of this header would take 16 bytes per byte of text.
        ("numbers-array.safetensors", raw_file(&format!(r#"{{"t":[{}0]}}"#, "0,".repeat(1 << 19)), &[])),
        // Stops at the 1025th metadata entry.
        (
            "many-metadata.safetensors",
            raw_file(
                &format!(
                    r#"{{"__metadata__":{{{}"end":3}}}}"#,
                    (0..1 << 16).map(|i| format!(r#""{i:x}":"","#)).collect::<String>()
                ),
                &[],
            ),
        ),
        // Valid entries are kept until the layout check rejects them; sorted
        // names leave the map's nodes half full, the most memory per byte.
        (
            "many-tensors.safetensors",
            raw_file(
                &format!(
                    "{{{}}}",
                    (0..1 << 14)
                        .map(|i| format!(r#""{i:04x}":{{"dtype":"F32","shape":[],"data_offsets":[0,0]}}"#))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                &[],
            ),
        ),
        (
            "long-shape.safetensors",
            raw_file(
                &format!(r#"{{"t":{{"dtype":"F32","shape":[{}1],"data_offsets":[0,4]}}}}"#, "1,".repeat(1 << 19)),
                &[0; 4],
            ),
        ),
    ];

    let layer = Linear::<f32>::new("fc", 2, 2, &mut Init::new(1)).unwrap();
    let config = GoogLeNetConfig { width: 0.125, ..GoogLeNetConfig::small(Variant::Torchvision, 1, 10) };
    let net = GoogLeNet::<f32>::new(config).unwrap();
    for (name, bytes) in &cases {
        let path = dir.write(name, bytes);
        check_rejected("load_safetensors", &path, |path| load_safetensors(&layer, path));
        check_rejected("load_state_dict", &path, |path| net.load_state_dict(path));
        check_rejected("GoogLeNet::load", &path, |path| GoogLeNet::<f32>::load(path));
        check_rejected("load_torchvision", &path, |path| GoogLeNet::<f32>::load_torchvision(path));
    }
    for name in ["header-past-end.safetensors", "header-u64-max.safetensors", "not-json.safetensors"] {
        check_rejected("read_safetensors_metadata", &dir.0.join(name), read_safetensors_metadata);
    }
}

#[test]
fn googlenet_checkpoints_not_trusted() {
    let _serial = serial();
    let dir = TempDir::new("googlenet");
    let config = GoogLeNetConfig { width: 0.125, ..GoogLeNetConfig::small(Variant::Torchvision, 1, 10) };
    let net = GoogLeNet::<f32>::new(config).unwrap();
    let valid = pytorch_tensors(&net, 0);
    let config_json = serde_json::to_string(&config).unwrap();
    let metadata = [("incept.config", config_json.as_str())];

    let truncated = {
        let path = dir.0.join("valid.safetensors");
        write_with_crate(&path, &valid, &metadata);
        let bytes = fs::read(&path).unwrap();
        bytes[..bytes.len() / 2].to_vec()
    };
    let mut f64_tensor = valid.clone();
    let conv = &mut f64_tensor[0];
    let numel = conv.2.iter().product::<usize>();
    *conv = (conv.0.clone(), Dtype::F64, conv.2.clone(), encode(&vec![0.5; numel], Dtype::F64));
    let missing: Vec<RawTensor> = valid.iter().filter(|(name, ..)| name != "fc.weight").cloned().collect();
    let mut unexpected = valid.clone();
    unexpected.push(("extra.weight".to_string(), Dtype::F32, vec![2], encode(&[1.0, 2.0], Dtype::F32)));

    let path = dir.write("truncated.safetensors", &truncated);
    check_rejected("load_state_dict", &path, |path| net.load_state_dict(path));
    check_rejected("GoogLeNet::load", &path, |path| GoogLeNet::<f32>::load(path));
    check_rejected("load_torchvision", &path, |path| GoogLeNet::<f32>::load_torchvision(path));
    let cases =
        [("f64.safetensors", f64_tensor), ("missing.safetensors", missing), ("unexpected.safetensors", unexpected)];
    for (name, tensors) in cases {
        let path = dir.0.join(name);
        write_with_crate(&path, &tensors, &metadata);
        check_rejected("load_state_dict", &path, |path| net.load_state_dict(path));
        check_rejected("GoogLeNet::load", &path, |path| GoogLeNet::<f32>::load(path));
        check_rejected("load_torchvision", &path, |path| GoogLeNet::<f32>::load_torchvision(path));
    }
}

#[test]
fn torchvision_narrow_dtypes_not_trusted() {
    let _serial = serial();
    let dir = TempDir::new("torchvision-narrow");
    // F16 passes the size check, so the network is built before the dtypes
    // are compared; F8 has too few bytes for the network and is rejected first.
    for (dtype, name) in [(Dtype::F16, "f16.safetensors"), (Dtype::F8_E4M3, "f8.safetensors")] {
        let tensors: Vec<RawTensor> = torchvision_tensors("torchvision_googlenet_keys_noaux.txt")
            .into_iter()
            .map(|(tensor, stored, dims, bytes)| match stored {
                Dtype::F32 => (tensor, dtype, dims, vec![0; bytes.len() / 4 * dtype.bitsize() / 8]),
                _ => (tensor, stored, dims, bytes),
            })
            .collect();
        let path = dir.0.join(name);
        write_with_crate(&path, &tensors, &[("format", "pt")]);
        drop(tensors);
        check_rejected("load_torchvision", &path, |path| GoogLeNet::<f32>::load_torchvision(path));
    }
}

#[test]
fn idx_headers_not_trusted() {
    let _serial = serial();
    let dir = TempDir::new("idx");
    let pixels = random_bytes(64 << 10, 1);
    let images = idx_bytes(IDX_IMAGES_MAGIC, &[(64 << 10) / 784, 28, 28], &pixels[..(64 << 10) / 784 * 784]);
    let compressed = gzip(&images);
    // The maximum number of pixel bytes a header may declare for this gzip file before the
    // deflate ratio check rejects it unread.
    let within_ratio = (compressed.len() as u32 * 1000) / 784;
    let image_cases: Vec<(&str, Vec<u8>)> = vec![
        ("2-pow-31-images.idx", idx_bytes(IDX_IMAGES_MAGIC, &[1 << 31, 28, 28], &[0; 1008])),
        ("huge-header.idx.gz", gzip(&idx_bytes(IDX_IMAGES_MAGIC, &[1_000_000, 1000, 1000], &[1, 2, 3]))),
        ("cut-stream.idx.gz", compressed[..compressed.len() / 2].to_vec()),
        ("count-within-ratio.idx.gz", gzip(&idx_bytes(IDX_IMAGES_MAGIC, &[within_ratio, 28, 28], &pixels))),
        ("truncated-payload.idx", images[..images.len() - 100].to_vec()),
    ];
    for (name, bytes) in &image_cases {
        check_rejected("read_idx_images", &dir.write(name, bytes), read_idx_images);
    }
    let labels = random_bytes(16 << 10, 2);
    let label_cases: Vec<(&str, Vec<u8>)> = vec![
        ("labels-2-pow-31.idx", idx_bytes(IDX_LABELS_MAGIC, &[1 << 31], &labels[..1016])),
        ("labels-within-ratio.idx.gz", gzip(&idx_bytes(IDX_LABELS_MAGIC, &[16_000_000], &labels))),
    ];
    for (name, bytes) in &label_cases {
        check_rejected("read_idx_labels", &dir.write(name, bytes), read_idx_labels);
    }
}

#[test]
fn cifar10_sizes_not_trusted() {
    let _serial = serial();
    let dir = TempDir::new("cifar");
    let mut records = random_bytes(3 * CIFAR10_RECORD_LEN, 3);
    for record in records.chunks_exact_mut(CIFAR10_RECORD_LEN) {
        record[0] %= 10;
    }
    let mut bad_label = records.clone();
    bad_label[2 * CIFAR10_RECORD_LEN] = 10;
    let cases: Vec<(&str, Vec<u8>)> =
        vec![("not-multiple.bin", [records.as_slice(), &[0; 5]].concat()), ("label-out-of-range.bin", bad_label)];
    for (name, bytes) in &cases {
        check_rejected("read_cifar10_batch", &dir.write(name, bytes), read_cifar10_batch);
    }

    let set = TempDir::new("cifar-set");
    for name in ["data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin"] {
        set.write(name, &records);
    }
    set.write("data_batch_5.bin", &[records.as_slice(), &[0; 5]].concat());
    set.write("test_batch.bin", &records);
    let path = set.0.join("data_batch_5.bin");
    check_rejected("cifar10", &path, |_| cifar10(&set.0));
}
