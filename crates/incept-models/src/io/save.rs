//! Writing checkpoints: the safetensors layout and the atomic file replace.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};

use incept_tensor::{Float, Tensor};
use safetensors::Dtype;
use safetensors::tensor::TensorInfo;
use serde_json::{Map, Value};

use super::{StateTensor, float_dtype, state_tensors};
use crate::{BufferKind, ModelError, Module, Result};

/// Saves every parameter and buffer of `module` to `path` in safetensors
/// format, with `metadata` as the header's `__metadata__` strings.
///
/// Float tensors are stored as `F32` for `f32` models and `F64` for `f64`
/// models, [`BufferKind::Count`] buffers as 0-D `I64`. The file is written
/// to a temporary file in the same directory (`.{name}.tmp-{pid}-{n}`),
/// synced, and renamed over `path`, so readers see either the old file or
/// the complete new one. The rename replaces a symbolic link at `path`
/// itself, not the file it points to, and the new file gets the default
/// permissions instead of the old file's.
///
/// # Errors
/// [`ModelError::Io`] naming `path` if it is a directory or the temporary
/// file cannot be created, written, synced or renamed. The temporary file is then removed, and an
/// existing file at `path` is left as it was. [`ModelError::Config`] if two
/// tensors share a name or a count buffer does not hold a whole number.
pub fn save_safetensors<T: Float, M: Module<T> + ?Sized>(
    module: &M,
    path: &Path,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let layout = Layout::new(module, metadata)?;
    write_atomically(path, |file| layout.write_to(file))
}

/// Writes every parameter and buffer of `module` in safetensors format to
/// `writer`, the same bytes [`save_safetensors`] puts in a file.
///
/// # Errors
/// [`ModelError::Io`] with the path `<writer>` if `writer` fails, and the
/// errors of [`save_safetensors`] for the module's tensors.
pub fn write_safetensors<T: Float, M: Module<T> + ?Sized, W: Write>(
    module: &M,
    mut writer: W,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let layout = Layout::new(module, metadata)?;
    layout.write_to(&mut writer).map_err(|source| ModelError::Io { path: PathBuf::from("<writer>"), source })
}

/// A module's tensors in file order with the encoded header.
struct Layout<T: Float> {
    /// The length prefix and the JSON header, padded with spaces to a
    /// multiple of 8 bytes so the data starts 8-byte aligned.
    prefix: Vec<u8>,
    tensors: Vec<(StateTensor<T>, Dtype)>,
}

impl<T: Float> Layout<T> {
    fn new<M: Module<T> + ?Sized>(module: &M, metadata: &BTreeMap<String, String>) -> Result<Self> {
        let float = float_dtype::<T>()?;
        let mut tensors: Vec<(StateTensor<T>, Dtype)> = Vec::new();
        for tensor in state_tensors(module)? {
            let dtype = match tensor.kind() {
                BufferKind::Float => float,
                BufferKind::Count => {
                    tensor.with_value(|value| check_counts(tensor.name(), value))?;
                    Dtype::I64
                }
            };
            tensors.push((tensor, dtype));
        }
        // Eight-byte tensors come first, as the safetensors reference writer
        // orders them, so every tensor is aligned to its element size. The
        // sort is stable, so each group keeps the module's order.
        tensors.sort_by_key(|(_, dtype)| std::cmp::Reverse(dtype.bitsize()));

        let mut header = Map::new();
        if !metadata.is_empty() {
            let strings = metadata.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            header.insert("__metadata__".to_string(), Value::Object(strings));
        }
        let mut offset = 0usize;
        for (tensor, dtype) in &tensors {
            let shape = tensor.with_value(|value| value.dims().to_vec());
            let bytes = shape.iter().product::<usize>() * dtype.bitsize() / 8;
            let info = TensorInfo { dtype: *dtype, shape, data_offsets: (offset, offset + bytes) };
            offset += bytes;
            let info = serde_json::to_value(info).expect("TensorInfo serialises to a JSON object");
            header.insert(tensor.name().to_string(), info);
        }
        let mut json = serde_json::to_vec(&Value::Object(header)).expect("string maps serialise to JSON");
        json.resize(json.len().next_multiple_of(8), b' ');

        let mut prefix = Vec::with_capacity(8 + json.len());
        prefix.extend_from_slice(&(json.len() as u64).to_le_bytes());
        prefix.extend_from_slice(&json);
        Ok(Layout { prefix, tensors })
    }

    /// Writes the header, then each tensor's little-endian bytes, one tensor
    /// at a time so at most one tensor is copied at once.
    fn write_to<W: Write + ?Sized>(&self, writer: &mut W) -> io::Result<()> {
        writer.write_all(&self.prefix)?;
        let mut bytes = Vec::new();
        for (tensor, dtype) in &self.tensors {
            bytes.clear();
            tensor.with_value(|value| encode(value, *dtype, &mut bytes));
            writer.write_all(&bytes)?;
        }
        writer.flush()
    }
}

/// Checks that every element of a count buffer is a whole number that
/// `I64` holds.
fn check_counts<T: Float>(name: &str, value: &Tensor<T>) -> Result<()> {
    // 2^63 is the first float above i64::MAX.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    for &x in value.data() {
        let x = x.as_f64();
        if !(x.fract() == 0.0 && (-LIMIT..LIMIT).contains(&x)) {
            return Err(ModelError::Config(format!(
                "count buffer {name} is {x}, not a whole number that fits I64, so it cannot be saved"
            )));
        }
    }
    Ok(())
}

/// Appends `value`'s elements to `out` as little-endian `dtype` values;
/// counts were checked by [`check_counts`].
fn encode<T: Float>(value: &Tensor<T>, dtype: Dtype, out: &mut Vec<u8>) {
    out.reserve(value.numel() * dtype.bitsize() / 8);
    for &x in value.data() {
        match dtype {
            // Exact, because the model's type is f32 when the dtype is F32.
            Dtype::F32 => out.extend_from_slice(&(x.as_f64() as f32).to_le_bytes()),
            Dtype::F64 => out.extend_from_slice(&x.as_f64().to_le_bytes()),
            Dtype::I64 => out.extend_from_slice(&(x.as_f64() as i64).to_le_bytes()),
            other => unreachable!("Layout::new assigns only F32, F64 and I64, not {other:?}"),
        }
    }
}

/// Distinguishes the temporary files of concurrent saves within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Replaces `path` with the bytes `write` produces, through a temporary file
/// in the same directory that is synced and then renamed over `path`.
///
/// POSIX `rename` replaces the target atomically, so a crash or an error
/// leaves either the old file or the new one. The directory is synced after
/// the rename so the rename itself survives a power loss. A failure of that
/// last step is ignored because some file systems cannot sync a directory.
///
/// # Errors
/// [`ModelError::Io`] naming `path`; the temporary file is removed first.
pub(super) fn write_atomically(path: &Path, write: impl FnOnce(&mut File) -> io::Result<()>) -> Result<()> {
    let io_error = |source| ModelError::Io { path: path.to_path_buf(), source };
    // Checked before the temporary file is written; the rename would fail
    // with an OS message that does not say which path is the directory.
    if is_directory(path) {
        return Err(io_error(is_a_directory(path)));
    }
    let Some(file_name) = path.file_name() else {
        return Err(io_error(io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file")));
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let counter = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let temp_path = dir.join(format!(".{}.tmp-{}-{counter}", file_name.to_string_lossy(), process::id()));

    let mut file = OpenOptions::new().write(true).create_new(true).open(&temp_path).map_err(io_error)?;
    let written = write(&mut file).and_then(|()| file.sync_all());
    drop(file);
    if let Err(source) = written.and_then(|()| fs::rename(&temp_path, path)) {
        // The error being reported matters more than a failed clean-up.
        let _ = fs::remove_file(&temp_path);
        // A directory created at `path` while the file was written.
        let source = if is_directory(path) { is_a_directory(path) } else { source };
        return Err(io_error(source));
    }
    sync_directory(dir);
    Ok(())
}

/// Returns true if `path` itself is a directory. A symbolic link to one is
/// not, because the rename replaces the link.
fn is_directory(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_dir())
}

/// Builds the error for a save whose target path is a directory.
fn is_a_directory(path: &Path) -> io::Error {
    let example = path.join("model.safetensors");
    io::Error::new(
        io::ErrorKind::IsADirectory,
        format!("the path is a directory; give the path of a file, such as {}", example.display()),
    )
}

#[cfg(unix)]
fn sync_directory(dir: &Path) {
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
}

#[cfg(not(unix))]
fn sync_directory(_dir: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::load_safetensors;
    use crate::layers::Linear;
    use crate::module::Init;

    /// A writer that accepts `remaining` bytes, then fails like a full disk.
    struct FailAfter<W> {
        inner: W,
        remaining: usize,
    }

    impl<W: Write> Write for FailAfter<W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.remaining == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "injected failure: no space left"));
            }
            let n = buf.len().min(self.remaining);
            self.remaining -= n;
            self.inner.write(&buf[..n])
        }

        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("incept-save-{name}-{}", process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn failed_write_keeps_previous_file() {
        let dir = temp_dir("failed-write");
        let path = dir.join("linear.safetensors");
        let saved = Linear::<f32>::new("fc", 4, 3, &mut Init::new(1)).unwrap();
        save_safetensors(&saved, &path, &BTreeMap::new()).unwrap();
        let before = fs::read(&path).unwrap();

        let other = Linear::<f32>::new("fc", 4, 3, &mut Init::new(2)).unwrap();
        let layout = Layout::new(&other, &BTreeMap::new()).unwrap();
        let err = write_atomically(&path, |file| layout.write_to(&mut FailAfter { inner: file, remaining: 40 }))
            .expect_err("the injected failure must be reported");

        assert!(err.to_string().contains("linear.safetensors"), "{err}");
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), before, "the previous checkpoint must be unchanged");
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec!["linear.safetensors"], "the temporary file must be removed");

        let reloaded = Linear::<f32>::new("fc", 4, 3, &mut Init::new(3)).unwrap();
        load_safetensors(&reloaded, &path).unwrap();
        assert_eq!(reloaded.weight.value().data(), saved.weight.value().data());
        fs::remove_dir_all(&dir).unwrap();
    }
}
