//! Saving and loading safetensors checkpoints: round trips, files in
//! PyTorch's layout, malformed files, mismatched state dicts and atomic saves.

mod common;

use common::{RawTensor, encode, pytorch_tensors, raw_file, torchvision_keys, torchvision_tensors, write_with_crate};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use incept_autograd::{Tape, Var};
use incept_models::io::{
    MAX_HEADER_BYTES, MAX_METADATA_ENTRIES, load_safetensors, save_safetensors, write_safetensors,
};
use incept_models::layers::Linear;
use incept_models::{ForwardCtx, GoogLeNet, GoogLeNetConfig, Init, ModelError, Module, Stem, Variant};
use incept_tensor::Tensor;
use safetensors::{Dtype, SafeTensors};

/// Creates a fresh, empty directory for one test.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("incept-io-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn small_config(variant: Variant, seed: u64) -> GoogLeNetConfig {
    GoogLeNetConfig { width: 0.125, seed, ..GoogLeNetConfig::small(variant, 1, 10) }
}

/// Copies every parameter and buffer as `(name, dims, values)`, for exact comparisons.
fn snapshot<M: Module<f32> + ?Sized>(module: &M) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut state: Vec<_> = module
        .parameters()
        .iter()
        .map(|p| (p.name().to_string(), p.value().dims().to_vec(), p.value().data().to_vec()))
        .collect();
    state.extend(
        module.buffers().iter().map(|b| (b.name().to_string(), b.value().dims().to_vec(), b.value().data().to_vec())),
    );
    state
}

fn eval_logits(net: &GoogLeNet<f32>, input: &Tensor<f32>) -> Vec<f32> {
    let tape = Tape::inference();
    let out = net.forward(&ForwardCtx::eval(&tape), &Var::constant(input.clone())).unwrap();
    out.logits.value().data().to_vec()
}

/// Runs one training-mode forward pass so the batch-norm running statistics
/// and counters move away from their initial values.
fn train_step(net: &GoogLeNet<f32>) {
    let tape = Tape::new();
    let x = Var::constant(Tensor::randn([4, 1, 28, 28], 0.5, 2.0, 11));
    net.forward(&ForwardCtx::train(&tape, 0), &x).unwrap();
}

#[test]
fn round_trip_both_variants() {
    let dir = test_dir("round-trip");
    let input = Tensor::randn([2, 1, 28, 28], 0.0, 1.0, 5);
    for variant in [Variant::Paper, Variant::Torchvision] {
        let net = GoogLeNet::<f32>::new(small_config(variant, 1)).unwrap();
        train_step(&net);
        let path = dir.join(format!("{variant:?}.safetensors"));
        net.save(&path).unwrap();

        let loaded = GoogLeNet::<f32>::load(&path).unwrap();
        assert_eq!(loaded.config(), net.config(), "{variant:?}: config");
        assert!(snapshot(&loaded) == snapshot(&net), "{variant:?}: parameters and buffers differ");
        assert_eq!(eval_logits(&loaded, &input), eval_logits(&net, &input), "{variant:?}: eval logits");

        let other_seed = GoogLeNet::<f32>::new(small_config(variant, 2)).unwrap();
        assert_ne!(eval_logits(&other_seed, &input), eval_logits(&net, &input), "{variant:?}: seeds must differ");
        let metadata = other_seed.load_state_dict(&path).unwrap();
        assert_eq!(metadata.get("format").map(String::as_str), Some("incept"), "{variant:?}");
        assert_eq!(eval_logits(&other_seed, &input), eval_logits(&net, &input), "{variant:?}: load_state_dict");
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn saved_file_has_pytorch_dtypes() {
    let dir = test_dir("dtypes");
    let net = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 1)).unwrap();
    train_step(&net);
    train_step(&net);
    let path = dir.join("net.safetensors");
    net.save(&path).unwrap();

    let bytes = fs::read(&path).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(file.len(), net.parameters().len() + net.buffers().len());
    let counter = file.tensor("conv1.bn.num_batches_tracked").unwrap();
    assert_eq!(counter.dtype(), Dtype::I64);
    assert_eq!(counter.shape(), &[] as &[usize]);
    assert_eq!(counter.data(), &2i64.to_le_bytes());
    let weight = file.tensor("fc.weight").unwrap();
    assert_eq!(weight.dtype(), Dtype::F32);
    let fc = net.parameters().into_iter().find(|p| p.name() == "fc.weight").unwrap();
    assert_eq!(weight.shape(), fc.value().dims());
    let running_var = file.tensor("conv1.bn.running_var").unwrap();
    assert_eq!(running_var.dtype(), Dtype::F32);

    let (_, metadata) = SafeTensors::read_metadata(&bytes).unwrap();
    let metadata = metadata.metadata().clone().unwrap();
    let config: GoogLeNetConfig = serde_json::from_str(&metadata["incept.config"]).unwrap();
    assert_eq!(&config, net.config());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn write_safetensors_matches_saved_file() {
    let dir = test_dir("writer");
    let net = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 1)).unwrap();
    let metadata = BTreeMap::from([("note".to_string(), "test".to_string())]);
    let path = dir.join("net.safetensors");
    save_safetensors(&net, &path, &metadata).unwrap();
    let mut written = Vec::new();
    write_safetensors(&net, &mut written, &metadata).unwrap();
    assert!(fs::read(&path).unwrap() == written, "save_safetensors and write_safetensors must agree");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pytorch_layout_file_loads() {
    let dir = test_dir("pytorch-layout");
    let source = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 1)).unwrap();
    train_step(&source);
    let path = dir.join("state_dict.safetensors");
    write_with_crate(&path, &pytorch_tensors(&source, 7), &[("format", "pt")]);

    let net = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 2)).unwrap();
    let metadata = net.load_state_dict(&path).unwrap();
    assert_eq!(metadata, BTreeMap::from([("format".to_string(), "pt".to_string())]));
    let count = net.buffers().into_iter().find(|b| b.name() == "inception5b.branch4.1.bn.num_batches_tracked").unwrap();
    assert_eq!(count.value().data(), &[7.0]);
    let params =
        |m: &GoogLeNet<f32>| snapshot(m).into_iter().filter(|(n, _, _)| !n.ends_with("tracked")).collect::<Vec<_>>();
    assert!(params(&net) == params(&source), "weights and running statistics must load unchanged");
    fs::remove_dir_all(&dir).unwrap();
}

/// Writes a file with torchvision's exact keys, shapes and dtypes. Tensor
/// `i` is filled with `i / 1000`, and every `num_batches_tracked` is 3.
fn write_torchvision_file(path: &Path, keys_file: &str, metadata: &[(&str, &str)]) {
    write_with_crate(path, &torchvision_tensors(keys_file), metadata);
}

#[test]
fn torchvision_key_list_loads() {
    let dir = test_dir("torchvision");
    let path = dir.join("googlenet_torchvision.safetensors");
    let metadata = [("format", "pt"), ("source", "hand-made"), ("transform_input", "true"), ("aux_logits", "true")];
    write_torchvision_file(&path, "torchvision_googlenet_keys.txt", &metadata);
    let keys = torchvision_keys("torchvision_googlenet_keys.txt");

    let net = GoogLeNet::<f32>::new(GoogLeNetConfig::torchvision()).unwrap();
    let loaded_metadata = net.load_state_dict(&path).unwrap();
    assert_eq!(loaded_metadata.get("transform_input").map(String::as_str), Some("true"));
    let state = snapshot(&net);
    assert_eq!(state.len(), keys.len());
    for (i, (name, dims, dtype)) in keys.iter().enumerate() {
        let (_, our_dims, values) = state.iter().find(|(n, _, _)| n == name).unwrap();
        assert_eq!(our_dims, dims, "{name}");
        let expected = if dtype == "int64" { 3.0 } else { i as f32 / 1000.0 };
        assert!(values.iter().all(|&v| v == expected), "{name}: expected every value {expected}");
    }

    let from_file = GoogLeNet::<f32>::load_torchvision(&path).unwrap();
    let expected = GoogLeNetConfig { transform_input: true, ..GoogLeNetConfig::torchvision() };
    assert_eq!(from_file.config(), &expected);
    assert!(snapshot(&from_file) == state);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn torchvision_export_without_aux_loads() {
    let dir = test_dir("torchvision-noaux");
    let path = dir.join("googlenet_noaux.safetensors");
    write_torchvision_file(&path, "torchvision_googlenet_keys_noaux.txt", &[("transform_input", "false")]);

    let net = GoogLeNet::<f32>::load_torchvision(&path).unwrap();
    assert!(!net.config().aux_logits);
    assert!(!net.config().transform_input);
    assert_eq!(net.config().num_classes, 1000);

    let with_aux = GoogLeNet::<f32>::new(GoogLeNetConfig::torchvision()).unwrap();
    let err = with_aux.load_state_dict(&path).expect_err("the aux heads are missing from the file");
    let message = err.to_string();
    assert!(message.contains("googlenet_noaux.safetensors"), "{message}");
    assert!(message.contains("missing (aux1.conv.conv.weight, "), "{message}");
    assert!(message.contains("so build the model with aux_logits: false"), "{message}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn aux_heads_missing_from_model() {
    let dir = test_dir("extra-aux");
    let path = dir.join("googlenet_aux.safetensors");
    write_torchvision_file(&path, "torchvision_googlenet_keys.txt", &[]);
    let net = GoogLeNet::<f32>::new(GoogLeNetConfig { aux_logits: false, ..GoogLeNetConfig::torchvision() }).unwrap();

    let err = net.load_state_dict(&path).expect_err("the model has no aux heads to load into");
    let message = err.to_string();
    assert!(message.contains("googlenet_aux.safetensors: state dict does not match the model: "), "{message}");
    assert!(message.contains("20 unexpected (aux1.conv.bn.bias, "), "{message}");
    assert!(message.contains("so build the model with aux_logits: true"), "{message}");
    assert!(!message.contains("bytes"), "the file size must not hide the mismatch: {message}");
    assert!(!message.contains("different network or config"), "the aux heads explain everything: {message}");
    let ModelError::StateDict { mismatch, .. } = err else { panic!("expected ModelError::StateDict, got {err:?}") };
    assert_eq!(mismatch.unexpected.len(), 20);
    assert!(mismatch.unexpected.iter().all(|name| name.starts_with("aux1.") || name.starts_with("aux2.")));
    assert!(mismatch.missing.is_empty(), "{:?}", mismatch.missing);
    assert!(mismatch.shapes.is_empty(), "{:?}", mismatch.shapes);
    assert!(mismatch.dtypes.is_empty(), "{:?}", mismatch.dtypes);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn stem_mismatch_names_the_stem() {
    let dir = test_dir("stem");
    let small_stem = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 1)).unwrap();
    let path = dir.join("small-stem.safetensors");
    save_safetensors(&small_stem, &path, &BTreeMap::new()).unwrap();
    let imagenet_stem =
        GoogLeNet::<f32>::new(GoogLeNetConfig { stem: Stem::ImageNet, ..small_config(Variant::Torchvision, 1) })
            .unwrap();

    let err = imagenet_stem.load_state_dict(&path).expect_err("conv1 has another kernel size");
    let message = err.to_string();
    assert!(
        message.contains("1 shape mismatch (conv1.conv.weight: file [8, 1, 3, 3], model [8, 1, 7, 7])"),
        "{message}"
    );
    assert!(message.contains("conv1 has 3x3 kernels in the file and 7x7 in the model"), "{message}");
    assert!(message.contains("saved with the other stem"), "{message}");
    assert!(message.contains("(for GoogLeNet: variant, stem, width, "), "{message}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_torchvision_reports_half_precision() {
    let dir = test_dir("torchvision-half");
    for dtype in [Dtype::F16, Dtype::BF16] {
        let tensors: Vec<RawTensor> = torchvision_tensors("torchvision_googlenet_keys_noaux.txt")
            .into_iter()
            .map(|(name, stored, dims, bytes)| match stored {
                Dtype::F32 => (name, dtype, dims, vec![0; bytes.len() / 2]),
                _ => (name, stored, dims, bytes),
            })
            .collect();
        let float_tensors = tensors.iter().filter(|(_, stored, ..)| *stored == dtype).count();
        let path = dir.join(format!("{dtype:?}.safetensors"));
        write_with_crate(&path, &tensors, &[("format", "pt")]);

        let err = GoogLeNet::<f32>::load_torchvision(&path).err().expect("half-precision weights must be rejected");
        let message = err.to_string();
        let expected = format!("{float_tensors} dtype mismatches (conv1.conv.weight: file {dtype:?} instead of F32, ");
        assert!(message.contains(&expected), "{dtype:?}: expected {expected:?} in {message}");
        assert!(message.contains("model.float()"), "{dtype:?}: {message}");
        assert!(!message.contains("too few"), "{dtype:?}: {message}");
        let ModelError::StateDict { mismatch, .. } = err else { panic!("{dtype:?}: expected StateDict, got {err:?}") };
        assert_eq!(mismatch.dtypes.len(), float_tensors, "{dtype:?}");
        assert!(mismatch.missing.is_empty(), "{dtype:?}: {message}");
        assert!(mismatch.unexpected.is_empty(), "{dtype:?}: {message}");
        assert!(mismatch.shapes.is_empty(), "{dtype:?}: {message}");
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_torchvision_reports_transposed_fc() {
    let dir = test_dir("torchvision-transposed");
    let mut tensors = torchvision_tensors("torchvision_googlenet_keys_noaux.txt");
    let fc = tensors.iter_mut().find(|(name, ..)| name == "fc.weight").unwrap();
    assert_eq!(fc.2, [1000, 1024]);
    fc.2 = vec![1024, 1000];
    let path = dir.join("transposed.safetensors");
    write_with_crate(&path, &tensors, &[]);

    let err = GoogLeNet::<f32>::load_torchvision(&path).err().expect("a transposed fc.weight must be rejected");
    let message = err.to_string();
    assert!(
        message.contains("1 shape mismatch (fc.weight: file [1024, 1000], model [1000, 1024] (transposed))"),
        "{message}"
    );
    assert!(message.contains("probably saved as [in, out]"), "{message}");
    assert!(!message.contains("different network or config"), "{message}");
    assert!(!message.contains("too few"), "{message}");
    let ModelError::StateDict { mismatch, .. } = err else { panic!("expected StateDict, got {err:?}") };
    assert_eq!(mismatch.shapes.len(), 1, "{message}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_torchvision_points_to_load() {
    let dir = test_dir("torchvision-incept");
    let net = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 1)).unwrap();
    let path = dir.join("incept.safetensors");
    net.save(&path).unwrap();

    let err = GoogLeNet::<f32>::load_torchvision(&path).err().expect("an incept checkpoint has its own config");
    let message = err.to_string();
    assert!(matches!(err, ModelError::Format { .. }), "{err:?}");
    assert!(message.contains("incept.safetensors"), "{message}");
    assert!(message.contains("\"incept.config\" key, so GoogLeNet::save wrote this file"), "{message}");
    assert!(message.contains("load it with GoogLeNet::load"), "{message}");
    GoogLeNet::<f32>::load(&path).expect("GoogLeNet::load reads the same file");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_torchvision_rejects_smaller_network() {
    let dir = test_dir("torchvision-small");
    let net = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 1)).unwrap();
    let path = dir.join("small.safetensors");
    write_with_crate(&path, &pytorch_tensors(&net, 0), &[("format", "pt")]);

    let err = GoogLeNet::<f32>::load_torchvision(&path).err().expect("a width-0.125 network is not torchvision's");
    let message = err.to_string();
    assert!(matches!(err, ModelError::Format { .. }), "{err:?}");
    assert!(message.contains("bytes of tensor data, too few for the "), "{message}");
    assert!(message.contains("the file holds a smaller network than torchvision's GoogLeNet"), "{message}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn declared_shapes_near_usize_max() {
    let dir = test_dir("huge-shapes");
    let huge = 1usize << 62;
    let path = dir.join("huge.safetensors");
    let header = format!(
        r#"{{"fc.bias":{{"dtype":"F32","shape":[{huge}],"data_offsets":[0,8]}},"fc.weight":{{"dtype":"F32","shape":[{huge},1024],"data_offsets":[8,24]}}}}"#
    );
    fs::write(&path, raw_file(&header, &[0; 24])).unwrap();

    let layer = Linear::<f32>::new("fc", 2, 2, &mut Init::new(1)).unwrap();
    let err = load_safetensors(&layer, &path).expect_err("the shapes differ from the layer's");
    assert!(err.to_string().contains(&format!("fc.bias: file [{huge}], model [2]")), "{err}");

    let err = GoogLeNet::<f32>::load_torchvision(&path).err().expect("2^62 classes cannot be built");
    assert!(err.to_string().contains("too few for the more than usize::MAX parameters"), "{err}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn init_spelling_round_trip() {
    let dir = test_dir("init-spelling");
    let config = small_config(Variant::Torchvision, 1);
    let json = serde_json::to_string(&config).unwrap();
    assert!(json.contains(r#""init":{"kind":"pytorch_default"}"#), "{json}");
    assert_eq!(serde_json::from_str::<GoogLeNetConfig>(&json).unwrap(), config);

    // Checkpoints saved before the rename spell it "py_torch_default".
    let old_json = json.replace("pytorch_default", "py_torch_default");
    assert_eq!(serde_json::from_str::<GoogLeNetConfig>(&old_json).unwrap(), config);
    let net = GoogLeNet::<f32>::new(config).unwrap();
    let path = dir.join("old-spelling.safetensors");
    save_safetensors(&net, &path, &BTreeMap::from([("incept.config".to_string(), old_json)])).unwrap();
    assert_eq!(GoogLeNet::<f32>::load(&path).unwrap().config(), &config);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mismatch_lists_every_problem() {
    let dir = test_dir("mismatch");
    let net = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 1)).unwrap();
    let mut tensors: Vec<RawTensor> = pytorch_tensors(&net, 0)
        .into_iter()
        .filter(|(name, ..)| name != "aux1.fc1.weight" && name != "aux1.fc1.bias")
        .collect();
    let fc = tensors.iter_mut().find(|(name, ..)| name == "fc.weight").unwrap();
    let fc_in = fc.2[1];
    *fc = ("fc.weight".to_string(), Dtype::F32, vec![3, fc_in], encode(&vec![0.0; 3 * fc_in], Dtype::F32));
    let conv = tensors.iter_mut().find(|(name, ..)| name == "conv1.conv.weight").unwrap();
    let numel = conv.2.iter().product::<usize>();
    *conv = (conv.0.clone(), Dtype::F64, conv.2.clone(), encode(&vec![0.0; numel], Dtype::F64));
    tensors.push(("extra.weight".to_string(), Dtype::F32, vec![1], encode(&[1.0], Dtype::F32)));
    let path = dir.join("bad.safetensors");
    write_with_crate(&path, &tensors, &[]);

    let before = snapshot(&net);
    let err = net.load_state_dict(&path).expect_err("a mismatched file must be rejected");
    let message = err.to_string();
    let expected = format!(
        "bad.safetensors: state dict does not match the model: 2 missing (aux1.fc1.weight, aux1.fc1.bias), \
         1 unexpected (extra.weight), 1 shape mismatch (fc.weight: file [3, {fc_in}], model [10, {fc_in}]), \
         1 dtype mismatch (conv1.conv.weight: file F64 instead of F32); "
    );
    assert!(message.contains(&expected), "{message}\nexpected it to contain\n{expected}");
    assert!(message.contains("build the model with the config the file was saved with"), "{message}");
    assert!(message.contains("model.float()"), "{message}");
    let ModelError::StateDict { mismatch, .. } = err else { panic!("expected ModelError::StateDict, got {err:?}") };
    assert_eq!(mismatch.missing, ["aux1.fc1.weight", "aux1.fc1.bias"]);
    assert_eq!(mismatch.unexpected, ["extra.weight"]);
    assert_eq!(mismatch.shapes.len(), 1);
    assert_eq!(mismatch.dtypes.len(), 1);
    assert!(snapshot(&net) == before, "a rejected file must leave the model unchanged");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn long_mismatch_lists_are_shortened() {
    let dir = test_dir("long-list");
    let path = dir.join("empty.safetensors");
    write_with_crate(&path, &[], &[]);
    let net = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 1)).unwrap();
    let total = net.parameters().len() + net.buffers().len();
    let err = net.load_state_dict(&path).expect_err("an empty state dict must be rejected");
    let message = err.to_string();
    assert!(message.contains(&format!("{total} missing (conv1.conv.weight, ")), "{message}");
    assert!(message.contains(&format!(" and {} more)", total - 5)), "{message}");
    assert!(!message.contains("aux_logits: false"), "an empty file lacks more than the aux heads: {message}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failed_load_leaves_model_unchanged() {
    let dir = test_dir("unchanged");
    let source = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 1)).unwrap();
    let mut tensors = pytorch_tensors(&source, 5);
    // fc.bias comes last in the module's order, so every other tensor
    // matches before the mismatch is found.
    let bias = tensors.iter_mut().find(|(name, ..)| name == "fc.bias").unwrap();
    *bias = ("fc.bias".to_string(), Dtype::F32, vec![11], encode(&[0.0; 11], Dtype::F32));
    let path = dir.join("late-mismatch.safetensors");
    write_with_crate(&path, &tensors, &[]);

    let net = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 2)).unwrap();
    train_step(&net);
    let before = snapshot(&net);
    let err = net.load_state_dict(&path).expect_err("fc.bias has the wrong shape");
    assert!(err.to_string().contains("fc.bias: file [11], model [10]"), "{err}");
    assert!(snapshot(&net) == before, "no tensor may change when the load fails");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn f64_model_loads_f32_file() {
    let dir = test_dir("f64");
    let net = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 1)).unwrap();
    train_step(&net);
    let path = dir.join("f32.safetensors");
    net.save(&path).unwrap();

    let wide = GoogLeNet::<f64>::load(&path).unwrap();
    let narrow: Vec<f64> = net.parameters().iter().flat_map(|p| p.value().data().to_vec()).map(f64::from).collect();
    let widened: Vec<f64> = wide.parameters().iter().flat_map(|p| p.value().data().to_vec()).collect();
    assert!(narrow == widened, "F32 values must widen exactly");

    let f64_path = dir.join("f64.safetensors");
    wide.save(&f64_path).unwrap();
    let err = GoogLeNet::<f32>::load(&f64_path).err().expect("an f32 model must not narrow F64 weights");
    assert!(err.to_string().contains("conv1.conv.weight: file F64 instead of F32"), "{err}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_without_config_names_alternatives() {
    let dir = test_dir("no-config");
    let net = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 1)).unwrap();
    let path = dir.join("plain.safetensors");
    save_safetensors(&net, &path, &BTreeMap::new()).unwrap();
    let err = GoogLeNet::<f32>::load(&path).err().expect("a file without a config must be rejected");
    let message = err.to_string();
    assert!(message.contains("plain.safetensors"), "{message}");
    assert!(message.contains("\"incept.config\""), "{message}");
    assert!(message.contains("load_state_dict"), "{message}");
    assert!(message.contains("load_torchvision"), "{message}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_rejects_bad_config_metadata() {
    let dir = test_dir("bad-config");
    let net = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 1)).unwrap();
    let huge = GoogLeNetConfig { width: 8.0, num_classes: 100_000, ..*net.config() };
    let cases = [
        ("not-json", "{width".to_string(), "is not a valid config"),
        ("bad-field", r#"{"variant": "resnet"}"#.to_string(), "is not a valid config"),
        ("huge", serde_json::to_string(&huge).unwrap(), "too few for the"),
        (
            "zero-classes",
            serde_json::to_string(&GoogLeNetConfig { num_classes: 0, ..*net.config() }).unwrap(),
            "cannot be built",
        ),
    ];
    for (name, config, problem) in cases {
        let path = dir.join(format!("{name}.safetensors"));
        let metadata = BTreeMap::from([("incept.config".to_string(), config)]);
        save_safetensors(&net, &path, &metadata).unwrap();
        let err = GoogLeNet::<f32>::load(&path).err().unwrap_or_else(|| panic!("{name}: load must fail"));
        let message = err.to_string();
        assert!(message.contains(&format!("{name}.safetensors")), "{name}: {message}");
        assert!(message.contains(problem), "{name}: {message}");
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_files_are_errors() {
    let dir = test_dir("malformed");
    // fc.weight [2, 2] and fc.bias [2]: 24 bytes of F32 data.
    let layer = Linear::<f32>::new("fc", 2, 2, &mut Init::new(1)).unwrap();
    let valid_header = r#"{"fc.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"fc.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]}}"#;
    let mut not_utf8 = 4u64.to_le_bytes().to_vec();
    not_utf8.extend([0xff, 0xfe, 0xfd, 0xfc]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "fewer than the 8-byte header length"),
        ("short", vec![1, 2, 3], "fewer than the 8-byte header length"),
        ("header-past-end", [1000u64.to_le_bytes().as_slice(), b"{}"].concat(), "is 1000, more than the 2 bytes"),
        ("header-huge", u64::MAX.to_le_bytes().to_vec(), "more than the 0 bytes that follow"),
        ("not-utf8", not_utf8, "not valid UTF-8"),
        ("not-json", raw_file("not json", &[]), "the header is not valid JSON (expected ident at line 1 column 2)"),
        ("json-array", raw_file("[1, 2]", &[]), "the header is a JSON array, not a JSON object mapping tensor names"),
        ("tensor-not-object", raw_file(r#"{"fc.bias":3}"#, &[]), "tensor \"fc.bias\" is a JSON number, not an object"),
        (
            "missing-field",
            raw_file(r#"{"fc.bias":{"dtype":"F32","shape":[2]}}"#, &[0; 8]),
            "not a valid {dtype, shape, data_offsets} object: missing field `data_offsets`",
        ),
        (
            "unknown-dtype",
            raw_file(r#"{"fc.bias":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#, &[0; 8]),
            "unknown variant `Q4`",
        ),
        (
            "metadata-not-strings",
            raw_file(r#"{"__metadata__":{"epoch":3}}"#, &[]),
            "the \"__metadata__\" value of \"epoch\" is a JSON number, but safetensors metadata values are strings",
        ),
        ("metadata-not-object", raw_file(r#"{"__metadata__":[]}"#, &[]), "\"__metadata__\" is a JSON array"),
        (
            "overlap",
            raw_file(
                r#"{"fc.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"fc.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[4,20]}}"#,
                &[0; 24],
            ),
            "overlap or leave a gap",
        ),
        (
            "gap",
            raw_file(
                r#"{"fc.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"fc.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[12,28]}}"#,
                &[0; 28],
            ),
            "overlap or leave a gap",
        ),
        (
            "offsets-past-end",
            raw_file(
                r#"{"fc.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"fc.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[8,40]}}"#,
                &[0; 24],
            ),
            "the data offsets [8, 40] of tensor \"fc.weight\" point past the 24 data bytes",
        ),
        (
            "offsets-near-u64-max",
            raw_file(
                r#"{"fc.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"fc.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[18446744073709551599,18446744073709551615]}}"#,
                &[0; 24],
            ),
            "point past the 24 data bytes",
        ),
        (
            "offsets-not-shape",
            raw_file(
                r#"{"fc.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,12]},"fc.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[12,28]}}"#,
                &[0; 28],
            ),
            "do not span its number of elements times its dtype size: shape [2] of F32 takes 8 bytes",
        ),
        ("truncated", raw_file(valid_header, &[0; 20]), "point past the 20 data bytes"),
        (
            "metadata-1025-entries",
            raw_file(
                &format!(
                    r#"{{"__metadata__":{{{}}}}}"#,
                    (0..=MAX_METADATA_ENTRIES).map(|i| format!(r#""{i}":"""#)).collect::<Vec<_>>().join(",")
                ),
                &[],
            ),
            "\"__metadata__\" has more than 1024 entries, the most this loader reads",
        ),
        (
            "rank-65",
            raw_file(
                &format!(r#"{{"fc.bias":{{"dtype":"F32","shape":[{}],"data_offsets":[0,4]}}}}"#, ["1"; 65].join(",")),
                &[0; 4],
            ),
            "the shape has more than 64 dimensions, the most this loader reads",
        ),
        ("trailing", raw_file(valid_header, &[0; 28]), "do not end at the end of the file"),
        ("trailing-17-mib", raw_file(valid_header, &vec![0; 17 << 20]), "do not end at the end of the file"),
    ];
    for (name, bytes, problem) in cases {
        let path = dir.join(format!("{name}.safetensors"));
        fs::write(&path, &bytes).unwrap();
        let before = snapshot(&layer);
        let err = load_safetensors(&layer, &path).expect_err(name);
        let message = err.to_string();
        assert!(matches!(err, ModelError::Format { .. }), "{name}: expected a format error, got {err:?}");
        assert!(message.contains(&format!("{name}.safetensors")), "{name}: {message}");
        assert!(message.contains(problem), "{name}: expected {problem:?} in {message}");
        assert!(!message.contains("struct"), "{name}: serde's type names must not leak: {message}");
        assert!(snapshot(&layer) == before, "{name}: the layer must be unchanged");
    }

    let valid = dir.join("valid.safetensors");
    fs::write(&valid, raw_file(valid_header, &encode(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], Dtype::F32))).unwrap();
    load_safetensors(&layer, &valid).expect("the hand-made valid file loads");
    assert_eq!(layer.bias.value().data(), &[1.0, 2.0]);
    assert_eq!(layer.weight.value().data(), &[3.0, 4.0, 5.0, 6.0]);

    let missing = dir.join("missing.safetensors");
    let err = load_safetensors(&layer, &missing).expect_err("a missing file must be an error");
    assert!(matches!(err, ModelError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.safetensors"), "{err}");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn huge_files_are_rejected_unread() {
    let dir = test_dir("huge-files");
    let layer = Linear::<f32>::new("fc", 2, 2, &mut Init::new(1)).unwrap();
    let valid_header = r#"{"fc.bias":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"fc.weight":{"dtype":"F32","shape":[2,2],"data_offsets":[8,24]}}"#;
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        ("trailing", raw_file(valid_header, &[0; 24]), "do not end at the end of the file".to_string()),
        (
            "header-too-long",
            (MAX_HEADER_BYTES + 1).to_le_bytes().to_vec(),
            format!("more than the {MAX_HEADER_BYTES} bytes this loader reads"),
        ),
    ];
    for (name, bytes, problem) in cases {
        let path = dir.join(format!("{name}.safetensors"));
        let file = fs::File::create(&path).unwrap();
        (&file).write_all(&bytes).unwrap();
        // 64 GiB, more than a test can afford to read. set_len leaves the
        // rest a hole, so the file takes almost no disk space on ext4 or tmpfs.
        file.set_len(64 << 30).unwrap();
        drop(file);
        let err = load_safetensors(&layer, &path).expect_err(name);
        assert!(matches!(err, ModelError::Format { .. }), "{name}: expected a format error, got {err:?}");
        assert!(err.to_string().contains(&problem), "{name}: expected {problem:?} in {err}");
    }
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dtype_other_than_f32_is_rejected() {
    let dir = test_dir("dtype");
    let layer = Linear::<f32>::new("fc", 2, 2, &mut Init::new(1)).unwrap();
    let path = dir.join("half.safetensors");
    let tensors: Vec<RawTensor> = vec![
        ("fc.bias".to_string(), Dtype::F16, vec![2], vec![0; 4]),
        ("fc.weight".to_string(), Dtype::I64, vec![2, 2], vec![0; 32]),
    ];
    write_with_crate(&path, &tensors, &[]);
    let err = load_safetensors(&layer, &path).expect_err("F16 and I64 weights must be rejected");
    let message = err.to_string();
    assert!(message.contains("half.safetensors"), "{message}");
    assert!(
        message.contains("2 dtype mismatches (fc.weight: file I64 instead of F32, fc.bias: file F16 instead of F32)"),
        "{message}"
    );
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_cleans_up_temporary_files() {
    let dir = test_dir("cleanup");
    let net = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 1)).unwrap();
    let path = dir.join("net.safetensors");
    net.save(&path).unwrap();
    net.save(&path).unwrap();
    assert_eq!(file_names(&dir), ["net.safetensors"], "a successful save leaves only the target");

    // The directory is detected before any temporary file is written.
    let occupied = dir.join("occupied.safetensors");
    fs::create_dir(&occupied).unwrap();
    let err = net.save(&occupied).expect_err("saving over a directory must fail");
    assert!(matches!(err, ModelError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains("occupied.safetensors: the path is a directory; give the path of a file"),
        "{err}"
    );
    assert_eq!(file_names(&dir), ["net.safetensors", "occupied.safetensors"], "no temporary file may remain");
    assert!(occupied.is_dir());

    let err = net.save(dir.join("no-such-dir").join("net.safetensors")).expect_err("a missing directory must fail");
    assert!(err.to_string().contains("no-such-dir"), "{err}");
    assert_eq!(file_names(&dir), ["net.safetensors", "occupied.safetensors"]);

    GoogLeNet::<f32>::load(&path).expect("the last good save still loads");
    fs::remove_dir_all(&dir).unwrap();
}
