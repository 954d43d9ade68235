//! Saving and loading weights in the [safetensors] format.
//!
//! A checkpoint contains every parameter and buffer of a [`Module`] under
//! its name, which is the key of the equivalent PyTorch `state_dict`. So a
//! file written by `safetensors.torch.save_file(model.state_dict(), path)`
//! for torchvision's GoogLeNet loads without renaming, and PyTorch can load
//! the files written here. Float tensors are stored in the model's float
//! type (`F32` for `f32` models), and [`BufferKind::Count`] buffers
//! (`num_batches_tracked`) as 0-D `I64` tensors, as PyTorch stores them.
//!
//! [`save_safetensors`] writes to a temporary file and renames it over the
//! target, so an existing checkpoint is either replaced whole or left as it
//! was. [`load_safetensors`] checks the whole file against the model first
//! and changes no weight unless every tensor matches.
//!
//! [`GoogLeNet::save`](crate::GoogLeNet::save) and
//! [`GoogLeNet::load`](crate::GoogLeNet::load) also store and restore the
//! network's config, and
//! [`GoogLeNet::load_torchvision`](crate::GoogLeNet::load_torchvision) reads
//! a file written by `tools/export_torchvision_googlenet.py`.
//!
//! [safetensors]: https://huggingface.co/docs/safetensors

mod googlenet;
mod header;
mod load;
mod save;

use std::collections::HashSet;
use std::fmt;

use incept_autograd::Parameter;
use incept_tensor::{Float, Tensor};
use safetensors::Dtype;

pub use googlenet::CONFIG_METADATA_KEY;
pub use header::{MAX_HEADER_BYTES, read_safetensors_metadata};
pub use load::load_safetensors;
pub use save::{save_safetensors, write_safetensors};

use crate::{Buffer, BufferKind, ModelError, Module, Result};

/// Everything [`load_safetensors`] found wrong when it compared a file with
/// a model. Names of the model's tensors are in the model's order, and
/// unexpected names are sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateDictMismatch {
    /// Names the model has and the file lacks.
    pub missing: Vec<String>,
    /// Names the file has and the model lacks.
    pub unexpected: Vec<String>,
    /// Tensors present in both with different shapes.
    pub shapes: Vec<ShapeMismatch>,
    /// Tensors stored with a data type the model cannot load.
    pub dtypes: Vec<DtypeMismatch>,
}

/// A tensor whose shape in the file differs from the model's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// State-dict key.
    pub name: String,
    /// Shape stored in the file.
    pub file: Vec<usize>,
    /// Shape of the model's tensor.
    pub model: Vec<usize>,
}

/// A tensor stored with a data type the model cannot load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DtypeMismatch {
    /// State-dict key.
    pub name: String,
    /// Data type in the file, as safetensors spells it (`"F64"`).
    pub file: String,
    /// Data types the model accepts for this tensor.
    pub accepted: Vec<String>,
}

impl StateDictMismatch {
    /// Returns true if the file matched the model.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.shapes.is_empty() && self.dtypes.is_empty()
    }
}

/// Names listed per kind of problem before the rest is summarised as "and N more".
const LISTED_NAMES: usize = 5;

/// Formats `items` as "a, b, c and 4 more".
fn list_some(items: &[String]) -> String {
    let listed = items.iter().take(LISTED_NAMES).cloned().collect::<Vec<_>>().join(", ");
    match items.len().saturating_sub(LISTED_NAMES) {
        0 => listed,
        rest => format!("{listed} and {rest} more"),
    }
}

impl fmt::Display for StateDictMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("{} missing ({})", self.missing.len(), list_some(&self.missing)));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!("{} unexpected ({})", self.unexpected.len(), list_some(&self.unexpected)));
        }
        if !self.shapes.is_empty() {
            let items: Vec<String> =
                self.shapes.iter().map(|m| format!("{}: file {:?}, model {:?}", m.name, m.file, m.model)).collect();
            let noun = if items.len() == 1 { "shape mismatch" } else { "shape mismatches" };
            parts.push(format!("{} {noun} ({})", items.len(), list_some(&items)));
        }
        if !self.dtypes.is_empty() {
            let items: Vec<String> = self
                .dtypes
                .iter()
                .map(|m| format!("{}: file {} instead of {}", m.name, m.file, m.accepted.join(" or ")))
                .collect();
            let noun = if items.len() == 1 { "dtype mismatch" } else { "dtype mismatches" };
            parts.push(format!("{} {noun} ({})", items.len(), list_some(&items)));
        }
        write!(f, "{}", parts.join(", "))?;
        if !self.missing.is_empty() || !self.unexpected.is_empty() || !self.shapes.is_empty() {
            write!(
                f,
                "; the file was saved from a different network or config (for GoogLeNet: variant, width, \
                 in_channels, num_classes, aux_logits), so build the model with the config the file was saved with"
            )?;
        }
        if !self.dtypes.is_empty() {
            write!(f, "; convert the tensors to a supported dtype before saving (in PyTorch: model.float())")?;
        }
        Ok(())
    }
}

/// One named tensor of a module's state: a parameter or a buffer.
enum StateTensor<T: Float> {
    Parameter(Parameter<T>),
    Buffer(Buffer<T>),
}

impl<T: Float> StateTensor<T> {
    fn name(&self) -> &str {
        match self {
            StateTensor::Parameter(p) => p.name(),
            StateTensor::Buffer(b) => b.name(),
        }
    }

    /// Storage kind; parameters are always float tensors.
    fn kind(&self) -> BufferKind {
        match self {
            StateTensor::Parameter(_) => BufferKind::Float,
            StateTensor::Buffer(b) => b.kind(),
        }
    }

    fn with_value<R>(&self, f: impl FnOnce(&Tensor<T>) -> R) -> R {
        match self {
            StateTensor::Parameter(p) => f(&p.value()),
            StateTensor::Buffer(b) => f(&b.value()),
        }
    }

    fn set_value(&self, value: Tensor<T>) -> Result<()> {
        match self {
            StateTensor::Parameter(p) => Ok(p.set_value(value)?),
            StateTensor::Buffer(b) => b.set_value(value),
        }
    }
}

/// Lists the module's parameters, then its buffers.
///
/// # Errors
/// [`ModelError::Config`] if two of them share a name, because a
/// checkpoint can hold only one tensor per name.
fn state_tensors<T: Float, M: Module<T> + ?Sized>(module: &M) -> Result<Vec<StateTensor<T>>> {
    let mut tensors: Vec<StateTensor<T>> = module.parameters().into_iter().map(StateTensor::Parameter).collect();
    tensors.extend(module.buffers().into_iter().map(StateTensor::Buffer));
    let mut seen = HashSet::new();
    for tensor in &tensors {
        if !seen.insert(tensor.name()) {
            return Err(ModelError::Config(format!(
                "the module has two parameters or buffers named {:?}; a checkpoint needs unique names",
                tensor.name()
            )));
        }
    }
    Ok(tensors)
}

/// Returns the safetensors dtype of the model's float type `T`.
fn float_dtype<T: Float>() -> Result<Dtype> {
    match T::DTYPE {
        "F32" => Ok(Dtype::F32),
        "F64" => Ok(Dtype::F64),
        other => Err(ModelError::Config(format!("float type {other} has no safetensors counterpart"))),
    }
}
