//! The safetensors header: the length prefix, the JSON header and the
//! layout of the tensor data that follows it.
//!
//! A file is an 8-byte little-endian header length, a JSON header of that
//! many bytes, and the tensor data. Everything here reads at most the
//! prefix and the header, so a caller can compare the declared tensors with
//! a model before it reads or allocates anything for the data.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use safetensors::Dtype;
use safetensors::tensor::TensorInfo;
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::{ModelError, Result};

/// Largest JSON header, in bytes, that the loaders read: 16 MiB. The header
/// of torchvision's GoogLeNet with its auxiliary heads takes about 36 KB, so
/// the rest is room for metadata. A longer header is rejected before it is
/// read, which bounds the memory a malformed file can claim.
pub const MAX_HEADER_BYTES: u64 = 16 << 20;

/// The layout the JSON header must have, for error messages.
const HEADER_LAYOUT: &str = "a JSON object mapping tensor names to {dtype, shape, data_offsets}, \
                             with an optional \"__metadata__\" object of strings";

/// Reads the `__metadata__` strings of a safetensors file without loading
/// its tensors, for example to find the config a checkpoint was saved with
/// before building the model that loads it.
///
/// # Errors
/// [`ModelError::Io`] if the file cannot be read, [`ModelError::Format`] if
/// the length prefix or the JSON header is invalid.
pub fn read_safetensors_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let (_, header) = open(path)?;
    Ok(header.metadata)
}

/// The JSON header of a safetensors file, read without its tensor data.
pub(super) struct Header {
    /// Size of the whole file in bytes.
    pub(super) file_len: u64,
    /// Length of the JSON header in bytes, without the 8-byte prefix.
    pub(super) header_len: u64,
    /// The `__metadata__` strings.
    pub(super) metadata: BTreeMap<String, String>,
    /// Data type, shape and offsets of each tensor, by name.
    pub(super) tensors: BTreeMap<String, TensorInfo>,
}

impl Header {
    /// Bytes after the header, where the tensor data lies.
    pub(super) fn data_len(&self) -> u64 {
        self.file_len - 8 - self.header_len
    }
}

/// Opens a safetensors file and reads its header, at most
/// [`MAX_HEADER_BYTES`] of it. The returned file is positioned at the first
/// byte of tensor data. The data offsets are not checked here; call
/// [`check_layout`] before reading the data.
///
/// # Errors
/// [`ModelError::Io`] if the file cannot be read, [`ModelError::Format`] if
/// the length prefix or the JSON header is invalid.
pub(super) fn open(path: &Path) -> Result<(File, Header)> {
    let io_error = |source| ModelError::Io { path: path.to_path_buf(), source };
    let format_error = |reason: String| ModelError::Format { path: path.to_path_buf(), reason };
    let mut file = File::open(path).map_err(io_error)?;
    let file_len = file.metadata().map_err(io_error)?.len();
    let mut prefix = Vec::with_capacity(8);
    (&mut file).take(8).read_to_end(&mut prefix).map_err(io_error)?;
    // A file that grew after the size was taken is at least as long as what was read.
    let file_len = file_len.max(prefix.len() as u64);
    let header_len = header_length(file_len, &prefix).map_err(format_error)?;
    let mut json = vec![0; header_len as usize];
    file.read_exact(&mut json).map_err(io_error)?;
    let (metadata, tensors) = parse_header(&json).map_err(format_error)?;
    Ok((file, Header { file_len, header_len, metadata, tensors }))
}

/// Checks the 8-byte little-endian header length at the start of a file of
/// `file_len` bytes and returns it.
fn header_length(file_len: u64, prefix: &[u8]) -> std::result::Result<u64, String> {
    let Ok(prefix) = <[u8; 8]>::try_from(prefix) else {
        return Err(format!(
            "the file has {file_len} bytes, fewer than the 8-byte header length that starts a safetensors \
             file; it is empty, truncated or not a safetensors file"
        ));
    };
    let header_len = u64::from_le_bytes(prefix);
    let rest = file_len - 8;
    if header_len > rest {
        return Err(format!(
            "the header length in the first 8 bytes is {header_len}, more than the {rest} bytes that \
             follow; the file is truncated or not a safetensors file"
        ));
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(format!(
            "the header is {header_len} bytes long, more than the {MAX_HEADER_BYTES} bytes this loader reads"
        ));
    }
    Ok(header_len)
}

/// The parsed JSON header: the `__metadata__` strings and the tensor
/// entries by name.
type HeaderEntries = (BTreeMap<String, String>, BTreeMap<String, TensorInfo>);

/// Largest number of `__metadata__` entries the loaders read. Files written
/// by [`GoogLeNet::save`](crate::GoogLeNet::save) and the training
/// checkpoints have two.
pub const MAX_METADATA_ENTRIES: usize = 1024;

/// Largest number of dimensions a tensor entry may declare.
pub const MAX_TENSOR_RANK: usize = 64;

/// Parses the JSON header into its metadata strings and tensor entries.
///
/// The header is read entry by entry and each entry is checked as it
/// arrives, so an error names the entry that is wrong and nothing is built
/// for the entries after it. Only the entries kept in the result take
/// memory: no JSON tree of the whole header is built, because one of
/// `[0,0,...]` would take 16 bytes per byte of text. Fields other than
/// `dtype`, `shape` and `data_offsets` are ignored, as the safetensors
/// crate does. A name that appears twice keeps its last entry.
fn parse_header(json: &[u8]) -> std::result::Result<HeaderEntries, String> {
    let text = std::str::from_utf8(json).map_err(|e| format!("the header is not valid UTF-8: {e}"))?;
    let not_json =
        |e: serde_json::Error| format!("the header is not valid JSON ({e}); a safetensors header is {HEADER_LAYOUT}");
    let kind = json_kind(text);
    if kind != "object" {
        // Syntax errors are reported before the kind, which is only known for valid JSON.
        serde_json::from_str::<IgnoredAny>(text).map_err(not_json)?;
        return Err(format!("the header is a JSON {kind}, not {HEADER_LAYOUT}"));
    }
    let mut metadata = BTreeMap::new();
    let mut tensors = BTreeMap::new();
    for_each_entry(text, |name, entry| {
        if name == "__metadata__" {
            metadata = parse_metadata(entry.get())?;
        } else {
            let info = parse_tensor_info(&name, entry.get())?;
            tensors.insert(name, info);
        }
        Ok(())
    })
    .map_err(|error| match error {
        EntryError::Syntax(e) => not_json(e),
        EntryError::Entry(reason) => reason,
    })?;
    Ok((metadata, tensors))
}

/// Parses the `__metadata__` entry, which safetensors defines as an object
/// of strings; `null` counts as no metadata.
fn parse_metadata(entry: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    match json_kind(entry) {
        "null" => return Ok(BTreeMap::new()),
        "object" => {}
        other => return Err(format!("\"__metadata__\" is a JSON {other}, not an object of strings")),
    }
    let mut metadata = BTreeMap::new();
    for_each_entry(entry, |key, value| {
        if metadata.len() == MAX_METADATA_ENTRIES {
            return Err(format!(
                "\"__metadata__\" has more than {MAX_METADATA_ENTRIES} entries, the most this loader reads"
            ));
        }
        let kind = json_kind(value.get());
        if kind != "string" {
            return Err(format!(
                "the \"__metadata__\" value of {key:?} is a JSON {kind}, but safetensors metadata values are strings"
            ));
        }
        let text: String = serde_json::from_str(value.get())
            .map_err(|e| format!("the \"__metadata__\" value of {key:?} is invalid: {e}"))?;
        metadata.insert(key, text);
        Ok(())
    })
    .map_err(|error| match error {
        // The whole header was valid JSON when this entry was cut from it.
        EntryError::Syntax(e) => format!("\"__metadata__\" is not valid JSON: {e}"),
        EntryError::Entry(reason) => reason,
    })?;
    Ok(metadata)
}

/// A tensor entry as the header spells it, with the rank bounded while the
/// shape is read.
#[derive(Deserialize)]
struct TensorEntry {
    dtype: Dtype,
    #[serde(deserialize_with = "deserialize_shape")]
    shape: Vec<usize>,
    data_offsets: (usize, usize),
}

/// Parses one tensor entry. Its fields keep serde's messages, which name
/// the field and the value, such as "missing field `shape`".
fn parse_tensor_info(name: &str, entry: &str) -> std::result::Result<TensorInfo, String> {
    let kind = json_kind(entry);
    if kind != "object" {
        return Err(format!(
            "the entry of tensor {name:?} is a JSON {kind}, not an object with dtype, shape and data_offsets"
        ));
    }
    let TensorEntry { dtype, shape, data_offsets } = serde_json::from_str(entry).map_err(|e| {
        format!("the entry of tensor {name:?} is not a valid {{dtype, shape, data_offsets}} object: {e}")
    })?;
    Ok(TensorInfo { dtype, shape, data_offsets })
}

/// Reads a shape array of at most [`MAX_TENSOR_RANK`] dimensions.
fn deserialize_shape<'de, D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Vec<usize>, D::Error> {
    struct ShapeVisitor;

    impl<'de> Visitor<'de> for ShapeVisitor {
        type Value = Vec<usize>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            write!(formatter, "an array of at most {MAX_TENSOR_RANK} dimensions")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Vec<usize>, A::Error> {
            let mut shape = Vec::new();
            while let Some(dim) = seq.next_element()? {
                if shape.len() == MAX_TENSOR_RANK {
                    return Err(de::Error::custom(format!(
                        "the shape has more than {MAX_TENSOR_RANK} dimensions, the most this loader reads"
                    )));
                }
                shape.push(dim);
            }
            Ok(shape)
        }
    }

    deserializer.deserialize_seq(ShapeVisitor)
}

/// The reason [`for_each_entry`] stopped before the end of the object.
enum EntryError {
    /// The text is not valid JSON.
    Syntax(serde_json::Error),
    /// The callback rejected an entry.
    Entry(String),
}

/// Calls `entry` with the key and the raw JSON value of each entry of the
/// JSON object `text`, in order. After the first entry it rejects, the rest
/// of the object is checked for syntax without allocating, and its error
/// is returned.
fn for_each_entry<'de>(
    text: &'de str,
    mut entry: impl FnMut(String, &'de RawValue) -> std::result::Result<(), String>,
) -> std::result::Result<(), EntryError> {
    struct EntryVisitor<'a, 'de> {
        entry: &'a mut dyn FnMut(String, &'de RawValue) -> std::result::Result<(), String>,
    }

    impl<'de> Visitor<'de> for EntryVisitor<'_, 'de> {
        /// The rejection of an entry, if there was one.
        type Value = Option<String>;

        fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
            formatter.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Option<String>, A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                let value: &'de RawValue = map.next_value()?;
                if let Err(reason) = (self.entry)(key, value) {
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                    return Ok(Some(reason));
                }
            }
            Ok(None)
        }
    }

    let mut deserializer = serde_json::Deserializer::from_str(text);
    let rejected = deserializer.deserialize_map(EntryVisitor { entry: &mut entry }).map_err(EntryError::Syntax)?;
    deserializer.end().map_err(EntryError::Syntax)?;
    match rejected {
        Some(reason) => Err(EntryError::Entry(reason)),
        None => Ok(()),
    }
}

/// Names the JSON type of the valid JSON `text` as the JSON specification
/// does, from its first character.
fn json_kind(text: &str) -> &'static str {
    match text.trim_start().bytes().next() {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

/// Checks that the tensors' data offsets tile the data after the header
/// exactly: in offset order, each tensor starts where the previous one ends,
/// spans its shape times its dtype size, and the last one ends at the end
/// of the file. Returns the length of the data in bytes.
///
/// The arithmetic is checked and done in `u64`, so offsets and shapes near
/// the integer limits are errors, not panics.
///
/// # Errors
/// [`ModelError::Format`] naming the first tensor that breaks the layout.
pub(super) fn check_layout(path: &Path, header: &Header) -> Result<usize> {
    let format_error = |reason: String| ModelError::Format { path: path.to_path_buf(), reason };
    let data_len = header.data_len();
    let mut by_offset: Vec<(&String, &TensorInfo)> = header.tensors.iter().collect();
    by_offset.sort_by_key(|(_, info)| info.data_offsets);

    let mut previous_end = 0u64;
    for (name, info) in by_offset {
        let (start, end) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
        if start > data_len || end > data_len {
            return Err(format_error(format!(
                "the data offsets [{start}, {end}] of tensor {name:?} point past the {data_len} data bytes \
                 after the header; the file is truncated or corrupt"
            )));
        }
        if start != previous_end {
            return Err(format_error(format!(
                "tensor {name:?} starts at data offset {start}, but the tensor before it ends at {previous_end}, \
                 so tensors overlap or leave a gap"
            )));
        }
        let Some(size) = tensor_bytes(info) else {
            return Err(format_error(format!(
                "the shape {:?} of tensor {name:?} overflows when multiplied out with the size of {:?}, or \
                 does not fill whole bytes",
                info.shape, info.dtype
            )));
        };
        if end < start || end - start != size {
            return Err(format_error(format!(
                "the data offsets [{start}, {end}] of tensor {name:?} do not span its number of elements times \
                 its dtype size: shape {:?} of {:?} takes {size} bytes",
                info.shape, info.dtype
            )));
        }
        previous_end = end;
    }
    if previous_end != data_len {
        return Err(format_error(format!(
            "the tensors' data ends at offset {previous_end}, but {data_len} bytes follow the header, so the \
             data offsets do not end at the end of the file; it has trailing bytes or is not a checkpoint"
        )));
    }
    // Cannot fail: data_len equals a data offset, which is a usize.
    Ok(usize::try_from(data_len).expect("a data offset fits usize"))
}

/// Bytes of a tensor's data: its element count times its dtype size, or
/// `None` if that overflows `u64` or is not a whole number of bytes.
fn tensor_bytes(info: &TensorInfo) -> Option<u64> {
    let elements = info.shape.iter().try_fold(1u64, |product, &dim| product.checked_mul(dim as u64))?;
    let bits = elements.checked_mul(info.dtype.bitsize() as u64)?;
    (bits % 8 == 0).then_some(bits / 8)
}
