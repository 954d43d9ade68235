//! Parameter and multiply-accumulate counts per layer, in the row
//! structure of Table 1 of Szegedy et al., "Going deeper with convolutions"
//! (CVPR 2015), "the paper" below, computed from a built model.

use std::fmt::Write as _;

use incept_tensor::Float;

use crate::googlenet::{AuxPool, GoogLeNet, INCEPTION_CONFIGS, InceptionAux};
use crate::layers::BasicConv2d;
use crate::module::{Layer, Module};
use crate::{ModelError, Result};

/// Weights of a convolution from `c_in` to `c_out` channels with a
/// `k_h` x `k_w` kernel (no bias).
pub fn conv_weights(c_in: usize, c_out: usize, k_h: usize, k_w: usize) -> u64 {
    (c_in * c_out * k_h * k_w) as u64
}

/// Multiply-accumulates of that convolution producing an `h_out` x `w_out`
/// map: every weight is used once per output pixel.
pub fn conv_macs(c_in: usize, c_out: usize, k_h: usize, k_w: usize, h_out: usize, w_out: usize) -> u64 {
    conv_weights(c_in, c_out, k_h, k_w) * (h_out * w_out) as u64
}

/// The header of [`CostSummary::to_csv`].
pub const CSV_HEADER: &str =
    "layer,type,patch_stride,output,depth,n1x1,n3x3_reduce,n3x3,n5x5_reduce,n5x5,pool_proj,params,macs";

/// One row of the cost table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CostRow {
    /// Layer name as in the model (`conv1`, `inception3a`, `aux1.fc1`);
    /// the paper's two-layer convolution row is `conv2+conv3`.
    pub layer: String,
    /// Layer type in the paper's words: `convolution`, `max pool`,
    /// `inception`, `avg pool`, `dropout (40%)`, `linear`, `softmax`, ...
    pub kind: String,
    /// Window and stride as `7x7/2`, for convolutions and pools.
    pub patch_stride: Option<String>,
    /// Output height, width and channels of one sample.
    pub output: [usize; 3],
    /// Layers with weights on the longest path through the row.
    pub depth: usize,
    /// The six Inception columns (`#1x1`, `#3x3 reduce`, `#3x3`,
    /// `#5x5 reduce`, `#5x5`, `pool proj`); `None` where the row has no
    /// such column. The `conv2+conv3` row fills `#3x3 reduce` and `#3x3`.
    pub columns: [Option<usize>; 6],
    /// Trainable parameters: weights, biases and batch-norm scales and shifts.
    pub params: u64,
    /// Multiply-accumulates of one forward pass for one sample, counting
    /// convolutions and fully connected layers only.
    pub macs: u64,
}

impl CostRow {
    fn new(layer: &str, kind: &str, output: &[usize]) -> Self {
        CostRow {
            layer: layer.to_string(),
            kind: kind.to_string(),
            patch_stride: None,
            output: output_hwc(output),
            depth: 0,
            columns: [None; 6],
            params: 0,
            macs: 0,
        }
    }

    /// Formats the output as the paper prints it, `112x112x64`.
    pub fn output_string(&self) -> String {
        let [h, w, c] = self.output;
        format!("{h}x{w}x{c}")
    }
}

/// `[N, C, H, W]` or `[N, F]` as `[H, W, C]`.
fn output_hwc(dims: &[usize]) -> [usize; 3] {
    match *dims {
        [_, c, h, w] => [h, w, c],
        [_, f] => [1, 1, f],
        _ => [0, 0, 0],
    }
}

/// Global average pooling against a fully connected layer on the last
/// feature map, the saving the paper's head makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GapSaving {
    /// Height, width and channels of the last feature map.
    pub map: [usize; 3],
    /// Output features of the fully connected layer it would need to keep
    /// the same width (the map's channels).
    pub features: usize,
    /// Weights of that fully connected layer: `h * w * c * features`.
    /// Global average pooling has none.
    pub fc_weights: u64,
}

/// The cost table of a model for one input size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CostSummary {
    /// Input height, width and channels.
    pub input: [usize; 3],
    /// Rows of the main network, in order.
    pub rows: Vec<CostRow>,
    /// Rows of the auxiliary classifiers, which run only in training.
    pub aux_rows: Vec<CostRow>,
    /// Why the auxiliary rows are missing although the model has the heads:
    /// for example the paper's 5x5/3 pool does not fit the input size.
    pub aux_note: Option<String>,
}

impl CostSummary {
    /// Parameters of the main network.
    pub fn total_params(&self) -> u64 {
        self.rows.iter().map(|r| r.params).sum()
    }

    /// Multiply-accumulates of the main network for one sample.
    pub fn total_macs(&self) -> u64 {
        self.rows.iter().map(|r| r.macs).sum()
    }

    /// Parameters of the auxiliary classifiers.
    pub fn aux_params(&self) -> u64 {
        self.aux_rows.iter().map(|r| r.params).sum()
    }

    /// Multiply-accumulates of the auxiliary classifiers for one sample.
    pub fn aux_macs(&self) -> u64 {
        self.aux_rows.iter().map(|r| r.macs).sum()
    }

    /// The weights a fully connected layer on the flattened last feature
    /// map (the input of the average pool) would need, against none for
    /// global average pooling; `None` if the table has no average pool.
    pub fn gap_saving(&self) -> Option<GapSaving> {
        let pool = self.rows.iter().position(|r| r.kind == "avg pool")?;
        let map = self.rows[..pool].last()?.output;
        let features = map[2];
        Some(GapSaving { map, features, fc_weights: (map[0] * map[1] * map[2] * features) as u64 })
    }

    /// Every row, main network then auxiliary classifiers, as CSV with
    /// [`CSV_HEADER`]; empty cells where a row has no value.
    pub fn to_csv(&self) -> String {
        let mut csv = String::from(CSV_HEADER);
        csv.push('\n');
        for row in self.rows.iter().chain(&self.aux_rows) {
            let columns: Vec<String> = row.columns.iter().map(|c| c.map_or(String::new(), |v| v.to_string())).collect();
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{},{}",
                row.layer,
                row.kind,
                row.patch_stride.as_deref().unwrap_or(""),
                row.output_string(),
                row.depth,
                columns.join(","),
                row.params,
                row.macs
            );
        }
        csv
    }
}

/// Prefixes an error with the layer it came from.
fn in_layer(layer: &str, error: ModelError) -> ModelError {
    match error {
        ModelError::Config(message) => ModelError::Config(format!("{layer}: {message}")),
        other => ModelError::Config(format!("{layer}: {other}")),
    }
}

/// Appends one row per layer with the layer's own parameters and cost.
struct RowBuilder {
    rows: Vec<CostRow>,
    dims: Vec<usize>,
}

impl RowBuilder {
    fn conv<T: Float>(&mut self, layer: &str, block: &BasicConv2d<T>) -> Result<()> {
        let out = block.output_dims(&self.dims).map_err(|e| in_layer(layer, e))?;
        let k = block.conv.kernel();
        let mut row = CostRow::new(layer, "convolution", &out);
        row.patch_stride = Some(format!("{k}x{k}/{}", block.conv.params.stride.0));
        row.depth = 1;
        row.params = block.num_parameters() as u64;
        row.macs = block.macs(&self.dims)?;
        self.rows.push(row);
        self.dims = out;
        Ok(())
    }

    fn no_weights<T: Float>(
        &mut self,
        layer: &str,
        kind: &str,
        patch: Option<String>,
        op: &dyn Layer<T>,
    ) -> Result<()> {
        let out = op.output_dims(&self.dims).map_err(|e| in_layer(layer, e))?;
        let mut row = CostRow::new(layer, kind, &out);
        row.patch_stride = patch;
        self.rows.push(row);
        self.dims = out;
        Ok(())
    }

    fn linear<T: Float>(&mut self, layer: &str, fc: &crate::layers::Linear<T>) -> Result<()> {
        let out = fc.output_dims(&self.dims).map_err(|e| in_layer(layer, e))?;
        let mut row = CostRow::new(layer, "linear", &out);
        row.depth = 1;
        row.params = fc.num_parameters() as u64;
        row.macs = fc.macs(&self.dims)?;
        self.rows.push(row);
        self.dims = out;
        Ok(())
    }
}

fn patch(kernel: (usize, usize), stride: (usize, usize)) -> Option<String> {
    Some(format!("{}x{}/{}", kernel.0, kernel.1, stride.0))
}

fn dropout_kind(p: f64) -> String {
    format!("dropout ({}%)", (p * 100.0).round())
}

impl<T: Float> GoogLeNet<T> {
    /// Computes the cost table for one `in_channels` x `h` x `w` input from
    /// the built layers: every row's output size comes from the layers'
    /// shape rules, its parameters from the allocated tensors and its
    /// multiply-accumulates from the weights' shapes and the output size.
    ///
    /// # Errors
    /// [`crate::ModelError::Config`] if the image is too small for a layer.
    pub fn cost_summary(&self, h: usize, w: usize) -> Result<CostSummary> {
        let input = vec![1, self.config.in_channels, h, w];
        let mut b = RowBuilder { rows: Vec::new(), dims: input.clone() };
        b.conv("conv1", &self.conv1)?;
        if let Some(pool) = &self.maxpool1 {
            b.no_weights::<T>("maxpool1", "max pool", patch(pool.params.kernel, pool.params.stride), pool)?;
        }
        if let Some(lrn) = &self.lrn {
            b.no_weights::<T>("lrn1", "local response norm", None, lrn)?;
        }

        // The paper prints conv2 (the 1x1 reduction) and conv3 as one row of depth 2.
        let out2 = self.conv2.output_dims(&b.dims).map_err(|e| in_layer("conv2", e))?;
        let out3 = self.conv3.output_dims(&out2).map_err(|e| in_layer("conv3", e))?;
        let mut row = CostRow::new("conv2+conv3", "convolution", &out3);
        let k = self.conv3.conv.kernel();
        row.patch_stride = Some(format!("{k}x{k}/{}", self.conv3.conv.params.stride.0));
        row.depth = 2;
        row.columns[1] = Some(self.conv2.c_out());
        row.columns[2] = Some(self.conv3.c_out());
        row.params = (self.conv2.num_parameters() + self.conv3.num_parameters()) as u64;
        row.macs = self.conv2.macs(&b.dims)? + self.conv3.macs(&out2)?;
        b.rows.push(row);
        b.dims = out3;
        if let Some(lrn) = &self.lrn {
            b.no_weights::<T>("lrn2", "local response norm", None, lrn)?;
        }
        let pool = &self.maxpool2;
        b.no_weights::<T>("maxpool2", "max pool", patch(pool.params.kernel, pool.params.stride), pool)?;

        let mut aux_inputs = Vec::new();
        for (i, module) in self.inceptions.iter().enumerate() {
            let stage_pool = match i {
                2 => Some(("maxpool3", &self.maxpool3)),
                7 => Some(("maxpool4", &self.maxpool4)),
                _ => None,
            };
            if let Some((name, pool)) = stage_pool {
                b.no_weights::<T>(name, "max pool", patch(pool.params.kernel, pool.params.stride), pool)?;
            }
            let name = INCEPTION_CONFIGS[i].0;
            let out = module.output_dims(&b.dims).map_err(|e| in_layer(name, e))?;
            let mut row = CostRow::new(name, "inception", &out);
            let c = module.config();
            let column = |v: usize| (v > 0).then_some(v);
            row.columns = [
                column(c.ch1x1),
                column(c.ch3x3_reduce),
                column(c.ch3x3),
                column(c.ch5x5_reduce),
                column(c.ch5x5),
                column(c.pool_proj),
            ];
            row.depth = 2;
            row.params = module.num_parameters() as u64;
            row.macs = module.macs(&b.dims)?;
            b.rows.push(row);
            b.dims = out;
            if i == 2 || i == 5 {
                aux_inputs.push(b.dims.clone());
            }
        }

        let [_, _, map_h, map_w] = [b.dims[0], b.dims[1], b.dims[2], b.dims[3]];
        b.no_weights::<T>("avgpool", "avg pool", Some(format!("{map_h}x{map_w}/1")), &self.avgpool)?;
        b.dims = vec![1, b.dims[1]];
        b.no_weights::<T>("dropout", &dropout_kind(self.dropout.p), None, &self.dropout)?;
        b.linear("fc", &self.fc)?;
        let classes = b.dims.clone();
        b.rows.push(CostRow::new("softmax", "softmax", &classes));
        let rows = b.rows;

        // The heads run only in training, so a head that does not fit this
        // input size leaves the main table intact and explains itself.
        let mut aux_rows = Vec::new();
        let mut aux_note = None;
        for (name, head, dims) in [("aux1", &self.aux1, aux_inputs.first()), ("aux2", &self.aux2, aux_inputs.get(1))] {
            let (Some(head), Some(dims)) = (head, dims) else { continue };
            match aux_head_rows(name, head, dims) {
                Ok(head_rows) => aux_rows.extend(head_rows),
                Err(err) => {
                    aux_rows.clear();
                    aux_note = Some(match err {
                        ModelError::Config(message) => message,
                        other => other.to_string(),
                    });
                    break;
                }
            }
        }
        Ok(CostSummary { input: [h, w, self.config.in_channels], rows, aux_rows, aux_note })
    }
}

fn aux_head_rows<T: Float>(name: &str, head: &InceptionAux<T>, input: &[usize]) -> Result<Vec<CostRow>> {
    let mut b = RowBuilder { rows: Vec::new(), dims: input.to_vec() };
    match &head.pool {
        AuxPool::Fixed(pool) => {
            b.no_weights::<T>(&format!("{name}.pool"), "avg pool", patch(pool.params.kernel, pool.params.stride), pool)?
        }
        AuxPool::Adaptive(pool) => b.no_weights::<T>(&format!("{name}.pool"), "adaptive avg pool", None, pool)?,
    }
    b.conv(&format!("{name}.conv"), &head.conv)?;
    let [_, c, h, w] = [b.dims[0], b.dims[1], b.dims[2], b.dims[3]];
    b.dims = vec![1, c * h * w];
    b.linear(&format!("{name}.fc1"), &head.fc1)?;
    b.no_weights::<T>(&format!("{name}.dropout"), &dropout_kind(head.dropout.p), None, &head.dropout)?;
    b.linear(&format!("{name}.fc2"), &head.fc2)?;
    Ok(b.rows)
}
