//! Reading checkpoints: the comparison with the model and the all-or-nothing load.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use incept_tensor::{Float, Tensor};
use safetensors::Dtype;
use safetensors::tensor::TensorInfo;

use super::header::{Header, check_layout, open};
use super::{DtypeMismatch, ShapeMismatch, StateDictMismatch, StateTensor, float_dtype, state_tensors};
use crate::{BufferKind, ModelError, Module, Result};

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
/// The loader reads the header first, at most [`MAX_HEADER_BYTES`] of it,
/// and compares the names, shapes and dtypes it declares with the module's.
/// Only if they all match does it check the data offsets and read the
/// data, which then has exactly the size of the module's tensors in the
/// file's dtypes. So whatever the file contains, the loader keeps in memory at most
/// the parsed header, that data and one decoded copy of the module's
/// tensors. The whole file is checked before any value is set, so on error
/// the module is unchanged.
///
/// [`MAX_HEADER_BYTES`]: super::MAX_HEADER_BYTES
/// [`MAX_METADATA_ENTRIES`]: super::MAX_METADATA_ENTRIES
/// [`MAX_TENSOR_RANK`]: super::MAX_TENSOR_RANK
///
/// # Errors
/// - [`ModelError::Io`] if the file cannot be opened or read.
/// - [`ModelError::Format`] if the file is not a valid safetensors file.
///   Invalid files include those shorter than the 8-byte length prefix,
///   with a header length past the end of the file or above
///   [`MAX_HEADER_BYTES`], with a header that is not UTF-8 JSON in the
///   safetensors layout, and with more than [`MAX_METADATA_ENTRIES`]
///   metadata entries or a shape of more than [`MAX_TENSOR_RANK`]
///   dimensions. If the tensors match the module, data offsets
///   that overlap, leave gaps, point past the end of the file or do not end
///   at its end are invalid too.
/// - [`ModelError::StateDict`] listing every missing, unexpected, reshaped
///   and wrongly typed tensor.
/// - [`ModelError::Config`] if two of the module's tensors share a name.
pub fn load_safetensors<T: Float, M: Module<T> + ?Sized>(module: &M, path: &Path) -> Result<BTreeMap<String, String>> {
    let (file, header) = open(path)?;
    load_opened(module, path, file, &header)?;
    Ok(header.metadata)
}

/// Loads the tensors of a file whose header [`open`] has read into
/// `module`, as [`load_safetensors`] describes.
pub(super) fn load_opened<T: Float, M: Module<T> + ?Sized>(
    module: &M,
    path: &Path,
    file: File,
    header: &Header,
) -> Result<()> {
    let tensors = state_tensors(module)?;
    compare(path, &tensors, header)?;
    let data_len = check_layout(path, header)?;
    let data = read_data(path, file, data_len)?;

    let mut values = Vec::with_capacity(tensors.len());
    for tensor in &tensors {
        // compare() found every name in the header.
        let info = &header.tensors[tensor.name()];
        values.push(decode(path, tensor.name(), info, &data)?);
    }
    for (tensor, value) in tensors.iter().zip(values) {
        // Cannot fail: compare() checked every shape.
        tensor.set_value(value)?;
    }
    Ok(())
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

/// Compares the names, shapes and dtypes that the header declares with the
/// module's tensors.
///
/// # Errors
/// [`ModelError::StateDict`] with every problem found.
fn compare<T: Float>(path: &Path, tensors: &[StateTensor<T>], header: &Header) -> Result<()> {
    let float = float_dtype::<T>()?;
    let mut mismatch = StateDictMismatch::default();
    for tensor in tensors {
        let name = tensor.name();
        let Some(info) = header.tensors.get(name) else {
            mismatch.missing.push(name.to_string());
            continue;
        };
        let accepted = accepted_dtypes(tensor.kind(), float);
        if !accepted.contains(&info.dtype) {
            mismatch.dtypes.push(DtypeMismatch {
                name: name.to_string(),
                file: format!("{:?}", info.dtype),
                accepted: accepted.iter().map(|d| format!("{d:?}")).collect(),
            });
        }
        let model_shape = tensor.with_value(|value| value.dims().to_vec());
        if info.shape != model_shape {
            mismatch.shapes.push(ShapeMismatch {
                name: name.to_string(),
                file: info.shape.clone(),
                model: model_shape,
            });
        }
    }
    let model_names: HashSet<&str> = tensors.iter().map(StateTensor::name).collect();
    // The header's map is sorted by name, so this list is too.
    mismatch.unexpected = header.tensors.keys().filter(|name| !model_names.contains(name.as_str())).cloned().collect();

    if mismatch.is_empty() {
        Ok(())
    } else {
        Err(ModelError::StateDict { path: path.to_path_buf(), mismatch: Box::new(mismatch) })
    }
}

/// Reads the `data_len` bytes of tensor data from `file`, which is
/// positioned just after the header.
fn read_data(path: &Path, file: File, data_len: usize) -> Result<Vec<u8>> {
    let mut data = Vec::with_capacity(data_len);
    // One byte more than expected is read to notice a file that grew.
    file.take(data_len as u64 + 1)
        .read_to_end(&mut data)
        .map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    if data.len() != data_len {
        return Err(ModelError::Format {
            path: path.to_path_buf(),
            reason: format!(
                "the header declares {data_len} bytes of tensor data, but {} bytes were read; the file \
                 changed while it was being read",
                data.len()
            ),
        });
    }
    Ok(data)
}

/// Converts one tensor of an accepted dtype from little-endian bytes.
fn decode<T: Float>(path: &Path, name: &str, info: &TensorInfo, data: &[u8]) -> Result<Tensor<T>> {
    let (start, end) = info.data_offsets;
    // check_layout has checked the offsets against the data; this guards
    // the slice instead of relying on it.
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
