//! Parity with PyTorch: torchvision 0.20.1's GoogLeNet in eval mode and its
//! Inception 3a block in train mode, checked against the fixtures that
//! tools/make_fixtures.py wrote with torch 2.5.1.
//!
//! The fixtures store only PyTorch's outputs. Every weight, buffer and
//! input comes from a hash formula that this file reimplements, so both
//! sides start from bit-identical float32 values. Run with `--nocapture`
//! to see the measured errors.

use incept_autograd::{Tape, Var};
use incept_models::googlenet::INCEPTION_CONFIGS;
use incept_models::{
    BufferKind, ForwardCtx, GoogLeNet, GoogLeNetConfig, Inception, InceptionOptions, Init, Layer, Module,
};
use incept_tensor::Tensor;
use safetensors::{Dtype, SafeTensors};

const EVAL_FIXTURE: &str = "googlenet_torchvision_eval.safetensors";
const TRAIN_FIXTURE: &str = "inception3a_train.safetensors";

/// The layers whose outputs the eval fixture samples, in torchvision's module names.
const ACTIVATION_LAYERS: [&str; 9] =
    ["conv1", "maxpool1", "conv3", "maxpool2", "inception3a", "inception4a", "inception4e", "inception5b", "avgpool"];

/// Forward tolerance: max |ours - torch| over max |torch|. The eval
/// fixture's metadata records that float32 rounding alone moves torch's
/// logits (max |logit| 7.7) by up to 4.9e-6 against a float64 run.
const FORWARD_TOLERANCE: f64 = 1e-4;

/// Gradient tolerance: max |ours - torch| over the max |value| of that gradient.
const GRAD_TOLERANCE: f64 = 1e-3;

/// Absolute tolerance on running statistics, whose values are near 0 (mean) and 1 (variance).
const RUNNING_STATS_TOLERANCE: f64 = 1e-5;

// ---------------------------------------------------------------------------
// The weight formula of tools/make_fixtures.py

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const SPLITMIX_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
const SPLITMIX_MUL1: u64 = 0xbf58_476d_1ce4_e5b9;
const SPLITMIX_MUL2: u64 = 0x94d0_49bb_1331_11eb;

/// Hashes the UTF-8 bytes of `name` with 64-bit FNV-1a.
fn name_seed(name: &str) -> u64 {
    name.bytes().fold(FNV_OFFSET, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME))
}

/// Applies the splitmix64 output function to `x`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(SPLITMIX_GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(SPLITMIX_MUL1);
    z = (z ^ (z >> 27)).wrapping_mul(SPLITMIX_MUL2);
    z ^ (z >> 31)
}

/// Computes `u(name, index)`, a float64 in `[-1, 1)`, from the name's seed.
fn uniform(seed: u64, index: usize) -> f64 {
    let z = splitmix64(seed.wrapping_add(index as u64));
    // z >> 40 has 24 bits, so the division and the affine map are exact in f64.
    (z >> 40) as f64 / f64::powi(2.0, 24) * 2.0 - 1.0
}

/// Computes the float32 formula values of a state_dict key, rounding each
/// float64 value once, as `formula_values` in the script does.
///
/// # Panics
/// If the formula does not cover the key.
fn formula_values(name: &str, dims: &[usize]) -> Vec<f32> {
    let seed = name_seed(name);
    let numel: usize = dims.iter().product();
    let map: Box<dyn Fn(f64) -> f64> = if name.ends_with("bn.weight") {
        Box::new(|u| 1.0 + 0.1 * u)
    } else if name.ends_with("bn.bias") || name.ends_with("bn.running_mean") {
        Box::new(|u| 0.05 * u)
    } else if name.ends_with("bn.running_var") {
        // The script evaluates 1.0 + 0.2 * u * u left to right, as (0.2 * u) * u.
        Box::new(|u| 1.0 + (0.2 * u) * u)
    } else if name.ends_with(".weight") && dims.len() == 4 {
        let scale = (6.0 / (dims[1] * dims[2] * dims[3]) as f64).sqrt();
        Box::new(move |u| scale * u)
    } else if name.ends_with(".weight") && dims.len() == 2 {
        let scale = (3.0 / dims[1] as f64).sqrt();
        Box::new(move |u| scale * u)
    } else if name.ends_with(".bias") && dims.len() == 1 {
        Box::new(|u| 0.01 * u)
    } else {
        panic!("the fixture formula covers no tensor {name:?} with dims {dims:?}");
    };
    (0..numel).map(|i| map(uniform(seed, i)) as f32).collect()
}

/// Builds the input or output-gradient tensor `1.0 * u(name, i)`.
fn input_tensor(name: &str, dims: &[usize]) -> Tensor<f32> {
    let seed = name_seed(name);
    let numel: usize = dims.iter().product();
    let values = (0..numel).map(|i| uniform(seed, i) as f32).collect();
    Tensor::from_vec(values, dims).unwrap()
}

/// Overwrites every parameter and float buffer of `module` with formula
/// values, named by their state_dict keys. Batch counters
/// (`num_batches_tracked`) keep their value, as the script leaves them.
fn fill_by_formula(module: &dyn Module<f32>) {
    for param in module.parameters() {
        let dims = param.value().dims().to_vec();
        let values = formula_values(param.name(), &dims);
        param.set_value(Tensor::from_vec(values, dims).unwrap()).unwrap();
    }
    for buffer in module.buffers() {
        if buffer.kind() == BufferKind::Count {
            continue;
        }
        let dims = buffer.value().dims().to_vec();
        let values = formula_values(buffer.name(), &dims);
        buffer.set_value(Tensor::from_vec(values, dims).unwrap()).unwrap();
    }
}

// ---------------------------------------------------------------------------
// Fixture access and comparison

/// A safetensors fixture file read into memory.
struct Fixture {
    file: &'static str,
    bytes: Vec<u8>,
}

impl Fixture {
    fn open(file: &'static str) -> Self {
        let path = format!("{}/../../tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        Fixture { file, bytes }
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).unwrap_or_else(|e| panic!("{}: invalid safetensors: {e:?}", self.file))
    }

    /// Lists every tensor name that starts with `prefix`, sorted.
    fn keys_with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> =
            self.tensors().names().into_iter().filter(|key| key.starts_with(prefix)).map(String::from).collect();
        keys.sort();
        keys
    }

    /// Reads the F32 tensor `key` as its dims and row-major values.
    fn f32(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let tensors = self.tensors();
        let view = tensors.tensor(key).unwrap_or_else(|e| panic!("{}: tensor {key:?} not found: {e:?}", self.file));
        assert_eq!(view.dtype(), Dtype::F32, "{}: tensor {key:?}", self.file);
        let values = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        (view.shape().to_vec(), values)
    }

    /// Reads the one value of the F32 tensor `key`, such as a stored max |value|.
    fn scalar(&self, key: &str) -> f64 {
        let (_, values) = self.f32(key);
        assert_eq!(values.len(), 1, "{}: tensor {key:?} should hold one value", self.file);
        f64::from(values[0])
    }

    /// Reads the I64 tensor `key` as dims, such as a stored activation shape.
    fn dims(&self, key: &str) -> Vec<usize> {
        let tensors = self.tensors();
        let view = tensors.tensor(key).unwrap_or_else(|e| panic!("{}: tensor {key:?} not found: {e:?}", self.file));
        assert_eq!(view.dtype(), Dtype::I64, "{}: tensor {key:?}", self.file);
        view.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap()) as usize).collect()
    }
}

/// Picks `count` values of `values` at indices `(k * len) / count`, the
/// sampling the script applies to the flattened tensor.
fn sample(values: &[f32], count: usize) -> Vec<f32> {
    (0..count).map(|k| values[k * values.len() / count]).collect()
}

/// Returns max |a_i - b_i| in f64.
fn max_abs_diff(ours: &[f32], torch: &[f32]) -> f64 {
    assert_eq!(ours.len(), torch.len(), "compared slices differ in length");
    ours.iter().zip(torch).map(|(&a, &b)| (f64::from(a) - f64::from(b)).abs()).fold(0.0, f64::max)
}

/// Returns max |value| in f64.
fn max_abs(values: &[f32]) -> f64 {
    values.iter().map(|&v| f64::from(v).abs()).fold(0.0, f64::max)
}

/// Prints the error of one comparison and asserts that it is at most
/// `tolerance` times `scale`.
fn assert_close(label: &str, ours: &[f32], torch: &[f32], scale: f64, tolerance: f64) {
    let error = max_abs_diff(ours, torch);
    let relative = error / scale;
    eprintln!("{label}: max |ours - torch| = {error:.3e}, {relative:.3e} of scale {scale:.4}");
    assert!(
        relative <= tolerance,
        "{label}: max |ours - torch| = {error:.3e} is {relative:.3e} of scale {scale:.4}, above the tolerance {tolerance:e}"
    );
}

// ---------------------------------------------------------------------------
// Eval-mode GoogLeNet

/// Builds torchvision's GoogLeNet without auxiliary heads, filled with the formula.
fn formula_googlenet(transform_input: bool) -> GoogLeNet<f32> {
    let config = GoogLeNetConfig { aux_logits: false, transform_input, ..GoogLeNetConfig::torchvision() };
    let net = GoogLeNet::<f32>::new(config).unwrap();
    fill_by_formula(&net);
    net
}

/// Builds the eval fixture's input, `1.0 * u("input", i)` of dims `[1, 3, 224, 224]`.
fn eval_input() -> Var<f32> {
    Var::constant(input_tensor("input", &[1, 3, 224, 224]))
}

/// Runs `net` in eval mode and compares its logits with the fixture tensor `key`.
fn check_eval_logits(net: &GoogLeNet<f32>, key: &str) {
    let fixture = Fixture::open(EVAL_FIXTURE);
    let (torch_dims, torch_logits) = fixture.f32(key);

    let tape = Tape::inference();
    let output = net.forward(&ForwardCtx::eval(&tape), &eval_input()).unwrap();

    assert_eq!(output.logits.dims(), torch_dims.as_slice());
    let scale = max_abs(&torch_logits);
    assert_close(key, output.logits.value().data(), &torch_logits, scale, FORWARD_TOLERANCE);
}

#[test]
fn formula_matches_selftest_values() {
    // Values printed by `python3 tools/make_fixtures.py --selftest`.
    assert_eq!(name_seed("input"), 0x1ebb_ae8f_5810_b65b);

    let expected_u =
        [-0.8043633699417114, -0.705042839050293, 0.14816880226135254, 0.7054555416107178, 0.9394503831863403];
    let seed = name_seed("input");
    for (i, &expected) in expected_u.iter().enumerate() {
        assert_eq!(uniform(seed, i), expected, "u(\"input\", {i})");
    }

    let weight = formula_values("conv1.conv.weight", &[64, 3, 7, 7]);
    let expected_bits = [0xbd53_8081_u32, 0x3dde_e922, 0xbcfe_305c, 0xbce8_4620, 0x3e14_27c8];
    for (i, &bits) in expected_bits.iter().enumerate() {
        assert_eq!(weight[i].to_bits(), bits, "conv1.conv.weight[{i}] = {}", weight[i]);
    }

    // The script prints each float32 widened to float64, which the f64 literals below equal exactly.
    let running_var = formula_values("conv1.bn.running_var", &[64]);
    let expected_var =
        [1.1410911083221436, 1.0655059814453125, 1.1130039691925049, 1.0997644662857056, 1.0084601640701294];
    for (i, &expected) in expected_var.iter().enumerate() {
        assert_eq!(f64::from(running_var[i]), expected, "conv1.bn.running_var[{i}]");
    }
}

#[test]
fn formula_matches_fixture_input() {
    let fixture = Fixture::open(EVAL_FIXTURE);
    let (_, head) = fixture.f32("input_head");
    let input = eval_input();
    let ours = &input.value().data()[..head.len()];
    let ours_bits: Vec<u32> = ours.iter().map(|v| v.to_bits()).collect();
    let torch_bits: Vec<u32> = head.iter().map(|v| v.to_bits()).collect();
    assert_eq!(ours_bits, torch_bits, "first {} input values differ: ours {ours:?}, torch {head:?}", head.len());
}

#[test]
fn eval_logits_match_torchvision() {
    check_eval_logits(&formula_googlenet(false), "logits");
}

#[test]
fn eval_logits_with_transform_input() {
    check_eval_logits(&formula_googlenet(true), "logits_transform_input");
}

#[test]
fn eval_activations_match_torchvision() {
    let fixture = Fixture::open(EVAL_FIXTURE);
    let net = formula_googlenet(false);
    let tape = Tape::inference();
    let (output, activations) =
        net.forward_with_activations(&ForwardCtx::eval(&tape), &eval_input(), &ACTIVATION_LAYERS).unwrap();
    assert_eq!(activations.len(), ACTIVATION_LAYERS.len());

    for ((name, activation), &layer) in activations.iter().zip(&ACTIVATION_LAYERS) {
        assert_eq!(name, layer);
        let torch_dims = fixture.dims(&format!("act_shape.{layer}"));
        assert_eq!(activation.dims(), torch_dims.as_slice(), "{layer} dims");

        let (_, torch_sample) = fixture.f32(&format!("act.{layer}"));
        let ours = sample(activation.value().data(), torch_sample.len());
        let scale = fixture.scalar(&format!("act_absmax.{layer}"));
        assert_close(&format!("act.{layer} (sampled)"), &ours, &torch_sample, scale, FORWARD_TOLERANCE);
    }

    // The forward that records activations must produce the same logits.
    let (_, torch_logits) = fixture.f32("logits");
    let scale = max_abs(&torch_logits);
    assert_close(
        "logits via forward_with_activations",
        output.logits.value().data(),
        &torch_logits,
        scale,
        FORWARD_TOLERANCE,
    );
}

// ---------------------------------------------------------------------------
// Train-mode Inception 3a

/// The result of one train-mode forward and backward pass of Inception 3a.
struct TrainStep {
    module: Inception<f32>,
    output: Tensor<f32>,
    grad_input: Tensor<f32>,
}

/// Runs torchvision's Inception(192, 64, 96, 128, 16, 32, 32) in train
/// mode on the formula input `input3a` and differentiates
/// `sum(output * g)` with `g` the formula tensor `grad_output3a`.
fn inception3a_train_step() -> TrainStep {
    let (name, config) = INCEPTION_CONFIGS[0];
    assert_eq!(name, "inception3a");
    let module =
        Inception::<f32>::with_options(name, config, InceptionOptions::TORCHVISION, &mut Init::new(0)).unwrap();
    fill_by_formula(&module);

    let tape = Tape::new();
    let ctx = ForwardCtx::train(&tape, 0);
    let x = tape.leaf(input_tensor("input3a", &[2, 192, 7, 7]));
    let y = module.forward(&ctx, &x).unwrap();
    assert_eq!(y.dims(), &[2, 256, 7, 7]);
    let g = Var::constant(input_tensor("grad_output3a", y.dims()));
    let loss = tape.sum(&tape.mul(&y, &g).unwrap());
    let output = y.value().clone();

    let grads = tape.backward(&loss).unwrap();
    let grad_input = grads.get(&x).expect("the loss depends on the input").clone();
    TrainStep { module, output, grad_input }
}

#[test]
fn train_3a_output_and_input_grad() {
    let fixture = Fixture::open(TRAIN_FIXTURE);
    let step = inception3a_train_step();

    let (_, torch_output) = fixture.f32("output");
    let ours = sample(step.output.data(), torch_output.len());
    assert_close("train 3a output (sampled)", &ours, &torch_output, fixture.scalar("output_absmax"), FORWARD_TOLERANCE);

    assert_eq!(step.grad_input.dims(), &[2, 192, 7, 7]);
    let (_, torch_grad) = fixture.f32("grad_input");
    let ours = sample(step.grad_input.data(), torch_grad.len());
    assert_close(
        "train 3a grad_input (sampled)",
        &ours,
        &torch_grad,
        fixture.scalar("grad_input_absmax"),
        GRAD_TOLERANCE,
    );
}

#[test]
fn train_3a_parameter_grads() {
    let fixture = Fixture::open(TRAIN_FIXTURE);
    let step = inception3a_train_step();
    let params = step.module.parameters();

    // Every parameter gradient in the fixture has a parameter here, and the reverse.
    let mut ours: Vec<String> = params.iter().map(|p| format!("grad.{}", p.name())).collect();
    ours.sort();
    assert_eq!(ours, fixture.keys_with_prefix("grad."));

    for param in &params {
        let name = param.name();
        let grad = param.grad().unwrap_or_else(|| panic!("{name} received no gradient"));
        assert_eq!(grad.dims(), param.value().dims(), "{name} gradient dims");
        let (_, torch_grad) = fixture.f32(&format!("grad.{name}"));
        assert_eq!(torch_grad.len(), param.numel().min(64), "{name}: samples stored");
        let ours = sample(grad.data(), torch_grad.len());
        let scale = fixture.scalar(&format!("grad_absmax.{name}"));
        assert_close(&format!("grad.{name} (sampled)"), &ours, &torch_grad, scale, GRAD_TOLERANCE);
    }
}

#[test]
fn train_3a_running_stats() {
    let fixture = Fixture::open(TRAIN_FIXTURE);
    let step = inception3a_train_step();
    let buffers = step.module.buffers();

    let mut ours: Vec<String> =
        buffers.iter().filter(|b| b.kind() == BufferKind::Float).map(|b| format!("running.{}", b.name())).collect();
    ours.sort();
    assert_eq!(ours, fixture.keys_with_prefix("running."));

    for buffer in &buffers {
        let name = buffer.name();
        let value = buffer.value();
        match buffer.kind() {
            // PyTorch counts one batch per train-mode forward.
            BufferKind::Count => assert_eq!(value.data(), &[1.0], "{name}"),
            BufferKind::Float => {
                let (_, torch_stats) = fixture.f32(&format!("running.{name}"));
                let ours = sample(value.data(), torch_stats.len());
                assert_close(&format!("running.{name} (sampled)"), &ours, &torch_stats, 1.0, RUNNING_STATS_TOLERANCE);
            }
        }
    }
}
