//! Reading checkpoints: size limits, header checks and the all-or-nothing load.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use incept_tensor::{Float, Tensor};
use safetensors::tensor::{Metadata, TensorInfo};
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde::Deserialize;

use super::{DtypeMismatch, ShapeMismatch, StateDictMismatch, StateTensor, float_dtype, state_tensors};
use crate::{BufferKind, ModelError, Module, Result};

/// Largest JSON header, in bytes, that the loaders read: 16 MiB. The header
/// of torchvision's GoogLeNet with its auxiliary heads takes about 36 KB, so
/// the rest is room for metadata. A longer header is rejected before it is
/// read, which bounds the memory a malformed file can claim.
pub const MAX_HEADER_BYTES: u64 = 16 << 20;

/// Loads the weights of a safetensors file into `module` and returns the
/// file's metadata (empty if it has none).
///
/// Every parameter and buffer of `module` must be in the file under its
/// name with the module's shape, and the file must contain no other
/// tensor. The accepted data types are:
/// - float tensors: the model's type (`F32` for `f32`, `F64` for `f64`),
///   and `F32` for `f64` models, which widens exactly;
/// - [`BufferKind::Count`] buffers: `I64` as PyTorch writes them, and
///   `F32` or `F64`.
///
/// The whole file is checked before any value is set, so on error the
/// module is unchanged. The file is read into memory once; files larger
/// than the module's tensors in their widest accepted type plus
/// [`MAX_HEADER_BYTES`] are rejected before reading.
///
/// # Errors
/// - [`ModelError::Io`] if the file cannot be opened or read.
/// - [`ModelError::Format`] if the file is not a valid safetensors file or
///   is too large for the module. Invalid files include those shorter than
///   the 8-byte length prefix, with a header length past the end of the
///   file or above [`MAX_HEADER_BYTES`], with a header that is not UTF-8
///   JSON in the safetensors layout, and with data offsets that overlap,
///   leave gaps, overflow or do not end at the end of the file.
/// - [`ModelError::StateDict`] listing every missing, unexpected, reshaped
///   and wrongly typed tensor.
/// - [`ModelError::Config`] if two of the module's tensors share a name.
pub fn load_safetensors<T: Float, M: Module<T> + ?Sized>(module: &M, path: &Path) -> Result<BTreeMap<String, String>> {
    let tensors = state_tensors(module)?;
    let max_data_bytes = tensors
        .iter()
        .map(|t| t.with_value(|v| v.numel()).saturating_mul(max_element_bytes::<T>(t.kind())))
        .fold(0u64, |sum, bytes| sum.saturating_add(bytes as u64));
    let bytes = read_limited(path, max_data_bytes, tensors.len())?;
    let (header_len, header) = parse_header(path, &bytes)?;
    let data = &bytes[8 + header_len..];

    let values = decode_matching(path, &tensors, &header, data)?;
    for (tensor, value) in tensors.iter().zip(values) {
        // Cannot fail: decode_matching checked every shape.
        tensor.set_value(value)?;
    }
    Ok(header.metadata().clone().unwrap_or_default().into_iter().collect())
}

/// Widest element, in bytes, that [`load_safetensors`] accepts for a tensor of `kind`.
fn max_element_bytes<T: Float>(kind: BufferKind) -> usize {
    match kind {
        BufferKind::Float => size_of::<T>(),
        BufferKind::Count => 8,
    }
}

/// Data types [`load_safetensors`] accepts for a tensor of `kind` in a
/// model whose float type is `float`.
fn accepted_dtypes(kind: BufferKind, float: Dtype) -> Vec<Dtype> {
    match (kind, float) {
        (BufferKind::Float, Dtype::F64) => vec![Dtype::F64, Dtype::F32],
        (BufferKind::Float, float) => vec![float],
        (BufferKind::Count, _) => vec![Dtype::I64, Dtype::F32, Dtype::F64],
    }
}

/// Reads the whole file, rejecting it without reading if it is larger than
/// a checkpoint with `max_data_bytes` of tensor data can be.
fn read_limited(path: &Path, max_data_bytes: u64, tensor_count: usize) -> Result<Vec<u8>> {
    let io_error = |source| ModelError::Io { path: path.to_path_buf(), source };
    let limit = max_data_bytes.saturating_add(8 + MAX_HEADER_BYTES);
    let file = File::open(path).map_err(io_error)?;
    let len = file.metadata().map_err(io_error)?.len();
    let too_large = |len: u64| ModelError::Format {
        path: path.to_path_buf(),
        reason: format!(
            "the file has {len} bytes, more than the {limit} bytes a checkpoint of this model can have \
             ({tensor_count} tensors with {max_data_bytes} bytes of data, plus a header of at most \
             {MAX_HEADER_BYTES} bytes); it was saved from a larger model or is not a checkpoint"
        ),
    };
    if len > limit {
        return Err(too_large(len));
    }
    // The length can change between the check and the read, so the read is
    // capped too.
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io_error)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Checks the 8-byte little-endian header length at the start of a file of
/// `file_len` bytes and returns it.
fn header_length(path: &Path, file_len: u64, prefix: &[u8]) -> Result<usize> {
    let format_error = |reason: String| ModelError::Format { path: path.to_path_buf(), reason };
    let Ok(prefix) = <[u8; 8]>::try_from(prefix) else {
        return Err(format_error(format!(
            "the file has {file_len} bytes, fewer than the 8-byte header length that starts a safetensors \
             file; it is empty, truncated or not a safetensors file"
        )));
    };
    let header_len = u64::from_le_bytes(prefix);
    let rest = file_len - 8;
    if header_len > rest {
        return Err(format_error(format!(
            "the header length in the first 8 bytes is {header_len}, more than the {rest} bytes that \
             follow; the file is truncated or not a safetensors file"
        )));
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(format_error(format!(
            "the header is {header_len} bytes long, more than the {MAX_HEADER_BYTES} bytes this loader reads"
        )));
    }
    Ok(header_len as usize)
}

/// Checks the header length, then lets the safetensors crate parse and
/// validate the JSON header and data offsets.
fn parse_header(path: &Path, bytes: &[u8]) -> Result<(usize, Metadata)> {
    let header_len = header_length(path, bytes.len() as u64, bytes.get(..8).unwrap_or(bytes))?;
    check_offsets_in_file(path, &bytes[8..8 + header_len], bytes.len() - 8 - header_len)?;
    SafeTensors::read_metadata(bytes)
        .map_err(|e| ModelError::Format { path: path.to_path_buf(), reason: describe(&e, bytes.len()) })
}

/// Rejects a tensor whose data offsets point past the `data_len` bytes after
/// the header.
///
/// safetensors 0.8 adds the last offset to the header length unchecked,
/// which panics in builds with overflow checks when an offset is close to
/// `usize::MAX`. This check runs first, so a malformed file is an error in
/// every build. A header that does not parse is left to the crate, whose
/// error says why.
fn check_offsets_in_file(path: &Path, json: &[u8], data_len: usize) -> Result<()> {
    let Ok(raw) = serde_json::from_slice::<RawHeader>(json) else { return Ok(()) };
    for (name, info) in &raw.tensors {
        let (start, end) = info.data_offsets;
        if start > data_len || end > data_len {
            return Err(ModelError::Format {
                path: path.to_path_buf(),
                reason: format!(
                    "the data offsets [{start}, {end}] of tensor {name:?} point past the {data_len} data bytes \
                     after the header; the file is truncated or corrupt"
                ),
            });
        }
    }
    Ok(())
}

/// Says what a safetensors parse error means for the file.
fn describe(error: &SafeTensorError, file_len: usize) -> String {
    match error {
        SafeTensorError::InvalidHeader(e) => format!("the header is not valid UTF-8: {e}"),
        SafeTensorError::InvalidHeaderDeserialization(e) => {
            format!("the header is not a JSON object in the safetensors layout: {e}")
        }
        SafeTensorError::InvalidOffset(name) => format!(
            "the data offsets of tensor {name:?} do not start where the previous tensor ends, so tensors \
             overlap or leave a gap"
        ),
        SafeTensorError::TensorInvalidInfo => {
            "a tensor's data offsets do not span its number of elements times its dtype size".to_string()
        }
        SafeTensorError::ValidationOverflow => {
            "a tensor's shape overflows when multiplied out with its dtype size".to_string()
        }
        SafeTensorError::MetadataIncompleteBuffer => format!(
            "the tensors' data offsets do not end at the end of the file ({file_len} bytes); the file is \
             truncated or has trailing bytes"
        ),
        other => format!("invalid safetensors data: {other}"),
    }
}

/// Compares the file's tensors with the module's and, if all match,
/// converts them to the module's float type in the module's order.
///
/// # Errors
/// [`ModelError::StateDict`] with every problem found.
fn decode_matching<T: Float>(
    path: &Path,
    tensors: &[StateTensor<T>],
    header: &Metadata,
    data: &[u8],
) -> Result<Vec<Tensor<T>>> {
    let float = float_dtype::<T>()?;
    let mut mismatch = StateDictMismatch::default();
    let mut values = Vec::with_capacity(tensors.len());
    for tensor in tensors {
        let name = tensor.name();
        let Some(info) = header.info(name) else {
            mismatch.missing.push(name.to_string());
            continue;
        };
        let accepted = accepted_dtypes(tensor.kind(), float);
        let model_shape = tensor.with_value(|value| value.dims().to_vec());
        let dtype_ok = accepted.contains(&info.dtype);
        let shape_ok = info.shape == model_shape;
        if !dtype_ok {
            mismatch.dtypes.push(DtypeMismatch {
                name: name.to_string(),
                file: format!("{:?}", info.dtype),
                accepted: accepted.iter().map(|d| format!("{d:?}")).collect(),
            });
        }
        if !shape_ok {
            mismatch.shapes.push(ShapeMismatch {
                name: name.to_string(),
                file: info.shape.clone(),
                model: model_shape,
            });
        }
        // Once the load is bound to fail, converting the rest only costs memory.
        if mismatch.is_empty() {
            values.push(decode(path, name, info, data)?);
        }
    }
    let model_names: HashSet<&str> = tensors.iter().map(StateTensor::name).collect();
    let mut unexpected: Vec<String> =
        header.tensors().into_keys().filter(|name| !model_names.contains(name.as_str())).collect();
    unexpected.sort();
    mismatch.unexpected = unexpected;

    if mismatch.is_empty() {
        Ok(values)
    } else {
        Err(ModelError::StateDict { path: path.to_path_buf(), mismatch: Box::new(mismatch) })
    }
}

/// Converts one tensor of an accepted dtype from little-endian bytes.
fn decode<T: Float>(path: &Path, name: &str, info: &TensorInfo, data: &[u8]) -> Result<Tensor<T>> {
    let (start, end) = info.data_offsets;
    // SafeTensors::read_metadata has checked the offsets against the data;
    // this guards the slice instead of relying on it.
    let Some(bytes) = data.get(start..end) else {
        return Err(ModelError::Format {
            path: path.to_path_buf(),
            reason: format!("the data of tensor {name:?} lies outside the file"),
        });
    };
    let values: Vec<T> = match info.dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| T::from_f64(f64::from(f32::from_le_bytes(b.try_into().expect("4-byte chunk")))))
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| T::from_f64(f64::from_le_bytes(b.try_into().expect("8-byte chunk"))))
            .collect(),
        Dtype::I64 => bytes
            .chunks_exact(8)
            .map(|b| T::from_f64(i64::from_le_bytes(b.try_into().expect("8-byte chunk")) as f64))
            .collect(),
        other => unreachable!("accepted_dtypes admits only F32, F64 and I64, not {other:?}"),
    };
    Ok(Tensor::from_vec(values, info.shape.clone())?)
}

/// Reads the `__metadata__` strings of a safetensors file without loading
/// its tensors, for example to find the config a checkpoint was saved with
/// before building the model that loads it.
///
/// # Errors
/// [`ModelError::Io`] if the file cannot be read, [`ModelError::Format`] if
/// the length prefix or the JSON header is invalid.
pub fn read_safetensors_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    Ok(read_header(path)?.metadata)
}

/// The JSON header of a safetensors file, read without its tensor data.
pub(super) struct Header {
    /// Size of the whole file in bytes.
    pub(super) file_len: u64,
    /// The `__metadata__` strings.
    pub(super) metadata: BTreeMap<String, String>,
    /// Data type, shape and offsets of each tensor, by name.
    pub(super) tensors: BTreeMap<String, TensorInfo>,
}

#[derive(Deserialize)]
struct RawHeader {
    #[serde(rename = "__metadata__", default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    tensors: BTreeMap<String, TensorInfo>,
}

/// Reads and parses only the header of a safetensors file, at most
/// [`MAX_HEADER_BYTES`] of it. The data offsets are not checked here;
/// [`load_safetensors`] checks them when it loads the weights.
///
/// # Errors
/// [`ModelError::Io`] if the file cannot be read, [`ModelError::Format`] if
/// the length prefix or the JSON is invalid.
pub(super) fn read_header(path: &Path) -> Result<Header> {
    let io_error = |source| ModelError::Io { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(io_error)?;
    let file_len = file.metadata().map_err(io_error)?.len();
    let mut prefix = Vec::with_capacity(8);
    (&mut file).take(8).read_to_end(&mut prefix).map_err(io_error)?;
    let header_len = header_length(path, file_len.max(prefix.len() as u64), &prefix)?;
    let mut json = vec![0; header_len];
    file.read_exact(&mut json).map_err(io_error)?;
    let raw: RawHeader = serde_json::from_slice(&json).map_err(|e| ModelError::Format {
        path: path.to_path_buf(),
        reason: format!("the header is not a JSON object in the safetensors layout: {e}"),
    })?;
    Ok(Header { file_len, metadata: raw.metadata.unwrap_or_default(), tensors: raw.tensors })
}
