//! Helpers shared by the integration tests: torchvision's key lists and
//! builders of safetensors files.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs;
use std::path::Path;

use incept_models::Module;
use safetensors::Dtype;
use safetensors::tensor::TensorView;

/// Reads the `name<TAB>dims<TAB>dtype` lines of a key list that
/// tools/make_fixtures.py wrote under tests/fixtures.
pub fn torchvision_keys(file: &str) -> Vec<(String, Vec<usize>, String)> {
    let path = format!("{}/../../tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let dims = fields[1].split(',').filter(|d| !d.is_empty()).map(|d| d.parse().unwrap()).collect();
            (fields[0].to_string(), dims, fields[2].to_string())
        })
        .collect()
}

/// Encodes `values` as little-endian `dtype` (F32, F64 or I64).
pub fn encode(values: &[f64], dtype: Dtype) -> Vec<u8> {
    let mut bytes = Vec::new();
    for &v in values {
        match dtype {
            Dtype::F32 => bytes.extend((v as f32).to_le_bytes()),
            Dtype::F64 => bytes.extend(v.to_le_bytes()),
            Dtype::I64 => bytes.extend((v as i64).to_le_bytes()),
            other => panic!("encode: unsupported {other:?}"),
        }
    }
    bytes
}

/// One tensor of a hand-made file: name, dtype, shape and raw bytes.
pub type RawTensor = (String, Dtype, Vec<usize>, Vec<u8>);

/// Writes `tensors` with the safetensors crate's own serialiser, as PyTorch's
/// `safetensors.torch.save_file` lays them out.
pub fn write_with_crate(path: &Path, tensors: &[RawTensor], metadata: &[(&str, &str)]) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| (name.clone(), TensorView::new(*dtype, shape.clone(), bytes).unwrap()))
        .collect();
    let metadata =
        (!metadata.is_empty()).then(|| metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    fs::write(path, safetensors::serialize(views, metadata).unwrap()).unwrap();
}

/// Returns tensors with torchvision's exact keys, shapes and dtypes, read
/// from a key list. Tensor `i` is filled with `i / 1000`, and every
/// `num_batches_tracked` is 3.
pub fn torchvision_tensors(keys_file: &str) -> Vec<RawTensor> {
    torchvision_keys(keys_file)
        .into_iter()
        .enumerate()
        .map(|(i, (name, dims, dtype))| {
            let numel = dims.iter().product::<usize>();
            let (dtype, values) = match dtype.as_str() {
                "float32" => (Dtype::F32, vec![i as f64 / 1000.0; numel]),
                "int64" => (Dtype::I64, vec![3.0; numel]),
                other => panic!("{keys_file}: unexpected dtype {other}"),
            };
            let bytes = encode(&values, dtype);
            (name, dtype, dims, bytes)
        })
        .collect()
}

/// Builds a safetensors file from a raw header string and data bytes.
pub fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend(data);
    bytes
}

/// Encodes the module's state as `F32` tensors, with count buffers as `I64` set to `count`.
pub fn pytorch_tensors<M: Module<f32> + ?Sized>(module: &M, count: i64) -> Vec<RawTensor> {
    let mut tensors: Vec<RawTensor> = module
        .parameters()
        .iter()
        .map(|p| {
            let values: Vec<f64> = p.value().data().iter().map(|&x| f64::from(x)).collect();
            (p.name().to_string(), Dtype::F32, p.value().dims().to_vec(), encode(&values, Dtype::F32))
        })
        .collect();
    for b in module.buffers() {
        let tensor = if b.name().ends_with("num_batches_tracked") {
            (b.name().to_string(), Dtype::I64, vec![], count.to_le_bytes().to_vec())
        } else {
            let values: Vec<f64> = b.value().data().iter().map(|&x| f64::from(x)).collect();
            (b.name().to_string(), Dtype::F32, b.value().dims().to_vec(), encode(&values, Dtype::F32))
        };
        tensors.push(tensor);
    }
    tensors
}
