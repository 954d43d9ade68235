//! Checkpoints of [`GoogLeNet`]: weights with the config, and torchvision exports.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use incept_tensor::Float;

use super::header::{Header, open};
use super::load::load_opened;
use super::{load_safetensors, save_safetensors};
use crate::{GoogLeNet, GoogLeNetConfig, ModelError, Result};

/// Metadata key under which [`GoogLeNet::save`] stores the network's
/// [`GoogLeNetConfig`] as JSON.
pub const CONFIG_METADATA_KEY: &str = "incept.config";

/// Bytes of tensor data per parameter that [`GoogLeNet::load`] and
/// [`GoogLeNet::load_torchvision`] require before they build the network
/// a file describes: the size of `F16` and `BF16`, so that a half-precision
/// export is built and reported as a dtype mismatch. Narrower files are
/// rejected before the build.
const MIN_BYTES_PER_PARAMETER: u64 = 2;

/// Value of the `"format"` metadata key in files [`GoogLeNet::save`] writes;
/// PyTorch's `safetensors.torch.save_file` conventionally writes `"pt"`.
const FORMAT: &str = "incept";

impl<T: Float> GoogLeNet<T> {
    /// Saves the weights, the batch-norm running statistics and the config
    /// to a safetensors file that [`GoogLeNet::load`] reads back.
    ///
    /// The tensors have torchvision's names, so PyTorch can load the file
    /// of a [`GoogLeNetConfig::torchvision`] network with `load_state_dict`.
    /// The metadata contains `"format": "incept"` and the config as JSON
    /// under [`CONFIG_METADATA_KEY`]. The file is replaced atomically (see
    /// [`save_safetensors`]).
    ///
    /// # Errors
    /// [`ModelError::Io`] if the file cannot be written; an existing file
    /// is then left as it was.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let config = serde_json::to_string(&self.config).expect("GoogLeNetConfig serialises to JSON");
        let metadata =
            BTreeMap::from([("format".to_string(), FORMAT.to_string()), (CONFIG_METADATA_KEY.to_string(), config)]);
        save_safetensors(self, path.as_ref(), &metadata)
    }

    /// Builds the network described by a file that [`GoogLeNet::save`]
    /// wrote and loads its weights.
    ///
    /// # Errors
    /// [`ModelError::Format`] if the file has no valid config under
    /// [`CONFIG_METADATA_KEY`] (for files without one, build the network
    /// with [`GoogLeNet::new`] and call [`GoogLeNet::load_state_dict`], or
    /// use [`GoogLeNet::load_torchvision`]) or has too few bytes for the
    /// config's parameters, and every error of [`load_safetensors`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (file, header) = open(path)?;
        let format_error = |reason: String| ModelError::Format { path: path.to_path_buf(), reason };
        let Some(json) = header.metadata.get(CONFIG_METADATA_KEY) else {
            return Err(format_error(format!(
                "the metadata has no {CONFIG_METADATA_KEY:?} key, so GoogLeNet::save did not write this file; \
                 use GoogLeNet::load_torchvision for a torchvision export, or build the network with \
                 GoogLeNet::new and call load_state_dict"
            )));
        };
        let config: GoogLeNetConfig = serde_json::from_str(json)
            .map_err(|e| format_error(format!("the {CONFIG_METADATA_KEY:?} metadata is not a valid config: {e}")))?;
        Self::build_for_file(path, file, &header, config, "the stored config does not describe the file's tensors")
    }

    /// Builds torchvision's GoogLeNet for a file written by
    /// `tools/export_torchvision_googlenet.py` (or any safetensors file of
    /// torchvision's `state_dict`) and loads its weights.
    ///
    /// The config is [`GoogLeNetConfig::torchvision`] with three fields
    /// taken from the file:
    /// - `aux_logits` is true if the file has `aux1.` tensors.
    /// - `num_classes` is the length of a 1-D `fc.bias`, else the first
    ///   dimension of `fc.weight`. So a transposed `fc.weight` is reported
    ///   as a shape mismatch instead of changing the class count.
    /// - `transform_input` is the `"transform_input"` metadata (`"true"` or
    ///   `"false"`). Without that metadata it is false, torchvision's
    ///   default, although torchvision's pretrained ImageNet weights need
    ///   true. The export script records it.
    ///
    /// # Errors
    /// [`ModelError::Format`] if [`GoogLeNet::save`] wrote the file (it has
    /// a [`CONFIG_METADATA_KEY`]; load it with [`GoogLeNet::load`]), if it
    /// has no `fc.weight` of rank 2, an invalid `"transform_input"` value or
    /// too few bytes for the config's parameters, and every error of
    /// [`load_safetensors`], such as the dtype and shape mismatches of a
    /// file with `F16` weights.
    pub fn load_torchvision(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (file, header) = open(path)?;
        let format_error = |reason: String| ModelError::Format { path: path.to_path_buf(), reason };
        if header.metadata.contains_key(CONFIG_METADATA_KEY) {
            return Err(format_error(format!(
                "the metadata has an {CONFIG_METADATA_KEY:?} key, so GoogLeNet::save wrote this file; load it \
                 with GoogLeNet::load, which builds the network from the stored config"
            )));
        }
        let shape = |name: &str| header.tensors.get(name).map(|info| info.shape.as_slice());
        let num_classes = match (shape("fc.weight"), shape("fc.bias")) {
            (Some(&[_, _]), Some(&[classes])) => classes,
            (Some(&[classes, _]), _) => classes,
            (Some(shape), _) => {
                return Err(format_error(format!("fc.weight has shape {shape:?}, expected [classes, 1024]")));
            }
            (None, _) => {
                return Err(format_error(
                    "the file has no fc.weight tensor, so it is not a torchvision GoogLeNet state dict".to_string(),
                ));
            }
        };
        let transform_input = match header.metadata.get("transform_input").map(String::as_str) {
            Some("true") => true,
            Some("false") | None => false,
            Some(other) => {
                return Err(format_error(format!(
                    "the \"transform_input\" metadata is {other:?}; expected \"true\" or \"false\""
                )));
            }
        };
        let aux_logits = header.tensors.keys().any(|name| name.starts_with("aux1."));
        let config = GoogLeNetConfig { num_classes, aux_logits, transform_input, ..GoogLeNetConfig::torchvision() };
        let advice = "the file holds a smaller network than torchvision's GoogLeNet; build the network it was \
                      saved from with GoogLeNet::new and call load_state_dict";
        Self::build_for_file(path, file, &header, config, advice)
    }

    /// Loads the weights of a safetensors file into this network and returns
    /// the file's metadata: a [`load_safetensors`] into `self`.
    ///
    /// This is the path for files without a config. For torchvision's
    /// pretrained weights:
    ///
    /// ```no_run
    /// use incept_models::{GoogLeNet, GoogLeNetConfig};
    ///
    /// let config = GoogLeNetConfig { transform_input: true, ..GoogLeNetConfig::torchvision() };
    /// let net = GoogLeNet::<f32>::new(config)?;
    /// net.load_state_dict("googlenet_torchvision.safetensors")?;
    /// # Ok::<(), incept_models::ModelError>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`load_safetensors`]; on error the weights are unchanged.
    pub fn load_state_dict(&self, path: impl AsRef<Path>) -> Result<BTreeMap<String, String>> {
        load_safetensors(self, path.as_ref())
    }

    /// Builds the network for `config` and loads the weights of the opened
    /// file into it.
    ///
    /// The header's names, shapes and dtypes can only be compared with a
    /// built network, so the build is bounded first. The file must have at
    /// least [`MIN_BYTES_PER_PARAMETER`] bytes of tensor data per parameter
    /// of the config. A valid file, whose float tensors are `F32` or `F64`,
    /// always passes, and so does a half-precision export, which is then
    /// reported as a dtype mismatch. A damaged or hostile header cannot make
    /// the build allocate more than `size_of::<T>() / 2` bytes of parameters
    /// per byte of the file. `advice` ends the error message.
    fn build_for_file(path: &Path, file: File, header: &Header, config: GoogLeNetConfig, advice: &str) -> Result<Self> {
        let data_len = header.data_len();
        let parameters = config.parameter_count();
        if parameters.is_none_or(|count| (count as u64).saturating_mul(MIN_BYTES_PER_PARAMETER) > data_len) {
            let count = parameters.map_or("more than usize::MAX".to_string(), |count| count.to_string());
            return Err(ModelError::Format {
                path: path.to_path_buf(),
                reason: format!(
                    "the file has {data_len} bytes of tensor data, too few for the {count} parameters of the \
                     config {config:?} at {MIN_BYTES_PER_PARAMETER} bytes each (F16 or wider); {advice}"
                ),
            });
        }
        let net = GoogLeNet::new(config).map_err(|e| ModelError::Format {
            path: path.to_path_buf(),
            reason: format!("the config taken from the file cannot be built: {e}"),
        })?;
        load_opened(&net, path, file, header)?;
        Ok(net)
    }
}
