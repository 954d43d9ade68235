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
    /// use [`GoogLeNet::load_torchvision`]) or is too small for the
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
        Self::build_for_file(path, file, &header, config)
    }

    /// Builds torchvision's GoogLeNet for a file written by
    /// `tools/export_torchvision_googlenet.py` (or any safetensors file of
    /// torchvision's `state_dict`) and loads its weights.
    ///
    /// The config is [`GoogLeNetConfig::torchvision`] with three fields
    /// taken from the file: `aux_logits` is true if the file has `aux1.`
    /// tensors, `num_classes` is the first dimension of `fc.weight`, and
    /// `transform_input` is the `"transform_input"` metadata (`"true"` or
    /// `"false"`). Without that metadata it is false, torchvision's
    /// default, although torchvision's pretrained ImageNet weights need
    /// true; the export script records it.
    ///
    /// # Errors
    /// [`ModelError::Format`] if the file has no `fc.weight` of rank 2 or an
    /// invalid `"transform_input"` value, and every error of
    /// [`load_safetensors`].
    pub fn load_torchvision(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (file, header) = open(path)?;
        let format_error = |reason: String| ModelError::Format { path: path.to_path_buf(), reason };
        let num_classes = match header.tensors.get("fc.weight").map(|info| info.shape.as_slice()) {
            Some(&[classes, _]) => classes,
            Some(shape) => {
                return Err(format_error(format!("fc.weight has shape {shape:?}, expected [classes, 1024]")));
            }
            None => {
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
        Self::build_for_file(path, file, &header, config)
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
    /// The file must be large enough to hold the config's parameters as
    /// `F32`. That check comes first, so a small file with a large config
    /// cannot make the build allocate more than about twice the file's size.
    fn build_for_file(path: &Path, file: File, header: &Header, config: GoogLeNetConfig) -> Result<Self> {
        let format_error = |reason: String| ModelError::Format { path: path.to_path_buf(), reason };
        let needed = config.parameter_count().map(|count| count.saturating_mul(4) as u64);
        if needed.is_none_or(|needed| needed > header.file_len) {
            let count = config.parameter_count().map_or("more than usize::MAX".to_string(), |c| c.to_string());
            return Err(format_error(format!(
                "the file has {} bytes, too few for the {count} parameters of its config {config:?}; \
                 the config or the file is damaged",
                header.file_len
            )));
        }
        let net = GoogLeNet::new(config)
            .map_err(|e| format_error(format!("the config stored in the file cannot be built: {e}")))?;
        load_opened(&net, path, file, header)?;
        Ok(net)
    }
}
