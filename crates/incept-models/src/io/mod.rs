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
pub use header::{MAX_HEADER_BYTES, MAX_METADATA_ENTRIES, MAX_TENSOR_RANK, read_safetensors_metadata};
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
            let items: Vec<String> = self.shapes.iter().map(describe_shape_mismatch).collect();
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
        for hint in self.hints() {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

impl StateDictMismatch {
    /// Suggests how to fix the problems found, most specific first. The
    /// specific hints recognise GoogLeNet's tensor names.
    fn hints(&self) -> Vec<String> {
        let mut hints = Vec::new();
        let file_has_aux_heads = self.missing.is_empty() && only_both_aux_heads(&self.unexpected);
        let model_has_aux_heads = self.unexpected.is_empty() && only_both_aux_heads(&self.missing);
        if file_has_aux_heads {
            hints.push(
                "the file has the auxiliary classifiers aux1 and aux2 and the model does not, so build the model \
                 with aux_logits: true (GoogLeNet::load_torchvision sets it from the file)"
                    .to_string(),
            );
        }
        if model_has_aux_heads {
            hints.push(
                "the model has the auxiliary classifiers aux1 and aux2 and the file does not, so build the model \
                 with aux_logits: false"
                    .to_string(),
            );
        }
        if let Some(m) = self.shapes.iter().find(|m| m.name == "conv1.conv.weight" && m.file.len() == 4) {
            let kernel = |dims: &[usize]| format!("{}x{}", dims[2], dims[3]);
            if m.model.len() == 4 && m.file[2..] != m.model[2..] {
                hints.push(format!(
                    "conv1 has {} kernels in the file and {} in the model, so the file was saved with the other \
                     stem (Stem::ImageNet has a 7x7 conv1, Stem::Small a 3x3 one)",
                    kernel(&m.file),
                    kernel(&m.model)
                ));
            }
        }

        let transposed = self.shapes.iter().filter(|m| is_transposed(m)).count();
        if transposed > 0 {
            hints.push(
                "a 2-D tensor marked (transposed) has the model's dimensions in reverse order, so it was \
                 probably saved as [in, out]; save it as [out, in], the layout of PyTorch's Linear weights"
                    .to_string(),
            );
        }

        // The hint below is left out when a hint above explains every difference.
        let names_differ = !self.missing.is_empty() || !self.unexpected.is_empty();
        let names_explained = !names_differ || file_has_aux_heads || model_has_aux_heads;
        let shapes_explained = transposed == self.shapes.len();
        if (names_differ || !self.shapes.is_empty()) && !(names_explained && shapes_explained) {
            hints.push(
                "the file was saved from a different network or config (for GoogLeNet: variant, stem, width, \
                 in_channels, num_classes, aux_logits), so build the model with the config the file was saved with"
                    .to_string(),
            );
        }
        if !self.dtypes.is_empty() {
            hints
                .push("convert the tensors to a supported dtype before saving (in PyTorch: model.float())".to_string());
        }
        hints
    }
}

/// Formats a shape mismatch and marks a transposed 2-D tensor.
fn describe_shape_mismatch(m: &ShapeMismatch) -> String {
    let note = if is_transposed(m) { " (transposed)" } else { "" };
    format!("{}: file {:?}, model {:?}{note}", m.name, m.file, m.model)
}

/// Returns true if the file stores a 2-D tensor with its dimensions
/// swapped, as a `fc.weight` exported as `[in, out]` is.
fn is_transposed(m: &ShapeMismatch) -> bool {
    m.file.len() == 2 && m.file.iter().rev().eq(&m.model)
}

/// Returns true if `names` are all tensors of GoogLeNet's auxiliary
/// classifiers and include both of them, as the names that a network with
/// the heads has and a file without them lacks (or the reverse). One head
/// alone, or other names besides, point to another cause.
fn only_both_aux_heads(names: &[String]) -> bool {
    names.iter().all(|n| n.starts_with("aux1.") || n.starts_with("aux2."))
        && names.iter().any(|n| n.starts_with("aux1."))
        && names.iter().any(|n| n.starts_with("aux2."))
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
