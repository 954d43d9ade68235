//! Inception and GoogLeNet: shapes, names, parameter counts and f64 gradient checks.

use std::collections::HashSet;

use incept_autograd::{Parameter, Tape, Var, check_gradients};
use incept_models::googlenet::INCEPTION_CONFIGS;
use incept_models::{ForwardCtx, GoogLeNet, GoogLeNetConfig, Inception, InceptionConfig, Init, Module};
use incept_tensor::Tensor;

fn small_config(width: f64) -> GoogLeNetConfig {
    GoogLeNetConfig { width, seed: 3, ..Default::default() }
}

#[test]
fn inception_3a_has_the_paper_channels_and_weights() {
    let (_, config) = INCEPTION_CONFIGS[0];
    let module = Inception::<f32>::new("inception3a", config, &mut Init::new(0)).unwrap();
    assert_eq!(config.c_out(), 256);
    // Convolution weights of the four branches (1x1, 1x1 + 3x3, 1x1 + 5x5, pool proj), 163,328 as
    // computed from Table 1's columns of GoogLeNet (Szegedy et al., CVPR 2015) ...
    let conv_weights = 192 * 64 + 192 * 96 + 96 * 9 * 128 + 192 * 16 + 16 * 25 * 32 + 192 * 32;
    assert_eq!(conv_weights, 163_328);
    // ... plus one scale and one shift per output channel of each of the six batch norms.
    let bn = 2 * (64 + 96 + 128 + 16 + 32 + 32);
    assert_eq!(module.num_parameters(), conv_weights + bn);
}

#[test]
fn parameter_counts_match_built_layers() {
    for (_, config) in INCEPTION_CONFIGS {
        for width in [0.25, 1.0] {
            let scaled = config.scaled(incept_models::inception::scale_channels(config.c_in, width), width);
            let module = Inception::<f32>::new("m", scaled, &mut Init::new(0)).unwrap();
            assert_eq!(scaled.parameter_count(), Some(module.num_parameters()), "{scaled:?}");
        }
    }
    for (width, aux_logits, num_classes) in [(0.25, true, 10), (0.25, false, 10), (1.0, true, 1000), (0.1, true, 3)] {
        let config = GoogLeNetConfig { width, aux_logits, num_classes, ..Default::default() };
        let net = GoogLeNet::<f32>::new(config).unwrap();
        assert_eq!(config.parameter_count(), Some(net.num_parameters()), "{config:?}");
    }
}

#[test]
fn inception_output_keeps_size_and_sums_channels() {
    let config =
        InceptionConfig { c_in: 5, ch1x1: 2, ch3x3_reduce: 3, ch3x3: 4, ch5x5_reduce: 1, ch5x5: 2, pool_proj: 3 };
    let module = Inception::<f32>::new("m", config, &mut Init::new(1)).unwrap();
    let tape = Tape::inference();
    let x = Var::constant(Tensor::randn([2, 5, 7, 6], 0.0, 1.0, 2));
    let y = module.forward(&ForwardCtx::eval(&tape), &x).unwrap();
    assert_eq!(y.dims(), &[2, 11, 7, 6]);
    let bad = Var::constant(Tensor::zeros([2, 4, 7, 6]));
    let err = module.forward(&ForwardCtx::eval(&tape), &bad).expect_err("wrong channel count must fail");
    assert!(err.to_string().contains("4 channels"), "{err}");
}

#[test]
fn inception_module_gradient_check() {
    let config =
        InceptionConfig { c_in: 3, ch1x1: 2, ch3x3_reduce: 2, ch3x3: 3, ch5x5_reduce: 1, ch5x5: 2, pool_proj: 2 };
    let module = Inception::<f64>::new("m", config, &mut Init::new(4)).unwrap();
    for (mode, training) in [("train", true), ("eval", false)] {
        let input = Tensor::randn([2, 3, 5, 5], 0.0, 1.0, 5);
        let report = check_gradients(&[input], 1e-6, |tape, v| {
            let ctx = if training { ForwardCtx::train(tape, 0) } else { ForwardCtx::eval(tape) };
            module.forward(&ctx, &v[0])
        })
        .unwrap();
        assert!(report.max_error < 1e-5, "{mode}: {report:?}");
    }
}

#[test]
fn googlenet_small_input_shapes_and_aux_heads() {
    let net = GoogLeNet::<f32>::new(small_config(0.125)).unwrap();
    let x = Var::constant(Tensor::randn([3, 1, 28, 28], 0.0, 1.0, 6));
    let tape = Tape::new();
    let out = net.forward(&ForwardCtx::train(&tape, 0), &x).unwrap();
    assert_eq!(out.logits.dims(), &[3, 10]);
    let aux = out.aux.as_ref().expect("training mode runs the auxiliary heads");
    assert_eq!(aux[0].dims(), &[3, 10]);
    assert_eq!(aux[1].dims(), &[3, 10]);

    let tape = Tape::inference();
    let out = net.forward(&ForwardCtx::eval(&tape), &x).unwrap();
    assert!(out.aux.is_none(), "eval mode never runs the auxiliary heads");
    assert!(tape.is_empty());

    let no_aux = GoogLeNet::<f32>::new(GoogLeNetConfig { aux_logits: false, ..small_config(0.125) }).unwrap();
    let tape = Tape::new();
    assert!(no_aux.forward(&ForwardCtx::train(&tape, 0), &x).unwrap().aux.is_none());
    assert!(no_aux.num_parameters() < net.num_parameters());
}

#[test]
fn googlenet_full_width_channels_follow_table_1() {
    let net = GoogLeNet::<f32>::new(small_config(1.0)).unwrap();
    let outputs: Vec<usize> = net.inceptions().iter().map(|m| m.config().c_out()).collect();
    assert_eq!(outputs, [256, 480, 512, 512, 512, 528, 832, 832, 1024]);
    let inputs: Vec<usize> = net.inceptions().iter().map(|m| m.config().c_in).collect();
    assert_eq!(inputs, [192, 256, 480, 512, 512, 512, 528, 832, 832]);
}

#[test]
fn googlenet_parameter_names_are_unique_torchvision_style() {
    let net = GoogLeNet::<f32>::new(small_config(0.25)).unwrap();
    let names: Vec<String> = net.parameters().iter().map(|p| p.name().to_string()).collect();
    let unique: HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "duplicate parameter names");
    for expected in [
        "conv1.conv.weight",
        "conv1.bn.weight",
        "inception3a.branch1.conv.weight",
        "inception3a.branch2.1.conv.weight",
        "inception4e.branch3.1.bn.bias",
        "inception5b.branch4.1.conv.weight",
        "aux1.conv.conv.weight",
        "aux2.fc2.bias",
        "fc.weight",
        "fc.bias",
    ] {
        assert!(names.iter().any(|n| n == expected), "missing {expected}");
    }
}

#[test]
fn googlenet_rejects_bad_config_and_input() {
    assert!(GoogLeNet::<f32>::new(GoogLeNetConfig { width: 0.0, ..Default::default() }).is_err());
    assert!(GoogLeNet::<f32>::new(GoogLeNetConfig { num_classes: 0, ..Default::default() }).is_err());
    assert!(GoogLeNet::<f32>::new(GoogLeNetConfig { dropout: 1.0, ..Default::default() }).is_err());
    let net = GoogLeNet::<f32>::new(small_config(0.125)).unwrap();
    let tape = Tape::inference();
    let err = net.forward(&ForwardCtx::eval(&tape), &Var::constant(Tensor::zeros([1, 3, 28, 28]))).err().unwrap();
    assert!(err.to_string().contains("[N, 1, H, W]"), "{err}");
    let err = net.forward(&ForwardCtx::eval(&tape), &Var::constant(Tensor::zeros([1, 1, 5, 5]))).err().unwrap();
    assert!(err.to_string().contains("at least 6x6 without auxiliary heads, got 5x5"), "{err}");
    assert!(net.forward(&ForwardCtx::eval(&tape), &Var::constant(Tensor::zeros([1, 1, 6, 6]))).is_ok());
    let train_tape = Tape::new();
    let ctx = ForwardCtx::train(&train_tape, 0);
    let err = net.forward(&ctx, &Var::constant(Tensor::zeros([2, 1, 28, 7]))).err().unwrap();
    assert!(err.to_string().contains("at least 8x8 in training with auxiliary heads, got 28x7"), "{err}");
    assert!(net.forward(&ctx, &Var::constant(Tensor::randn([1, 1, 8, 8], 0.0, 1.0, 1))).is_ok());
    for config in [
        GoogLeNetConfig { width: 1e300, ..Default::default() },
        GoogLeNetConfig { width: 1000.0, ..Default::default() },
        GoogLeNetConfig { num_classes: usize::MAX, width: 0.25, ..Default::default() },
        GoogLeNetConfig { in_channels: 1 << 62, width: 0.25, ..Default::default() },
    ] {
        let err = GoogLeNet::<f32>::new(config).err().expect("an oversized network must be rejected");
        assert!(err.to_string().contains("parameters; at most 4294967296"), "{err}");
    }
}

/// Central difference of the training loss with respect to one element of a parameter.
fn numeric_param_grad(
    net: &GoogLeNet<f64>,
    param: &Parameter<f64>,
    index: usize,
    x: &Tensor<f64>,
    labels: &[usize],
) -> f64 {
    let loss_at = |delta: f64| -> f64 {
        let mut value = (*param.value()).clone();
        value.data_mut()[index] += delta;
        param.set_value(value).unwrap();
        let tape = Tape::inference();
        let out = net.forward(&ForwardCtx::train(&tape, 11), &Var::constant(x.clone())).unwrap();
        let loss = out.loss(&tape, labels).unwrap().value().item().unwrap();
        let mut value = (*param.value()).clone();
        value.data_mut()[index] -= delta;
        param.set_value(value).unwrap();
        loss
    };
    let h = 1e-5;
    (loss_at(h) - loss_at(-h)) / (2.0 * h)
}

#[test]
fn googlenet_training_loss_gradient_check() {
    // The whole network in f64, aux heads and dropout included (fixed seeds),
    // on 16x16 inputs so the check stays fast.
    let net = GoogLeNet::<f64>::new(GoogLeNetConfig { width: 0.05, seed: 9, ..Default::default() }).unwrap();
    let x = Tensor::randn([2, 1, 16, 16], 0.0, 1.0, 10);
    let labels = [3, 7];

    let report = check_gradients(std::slice::from_ref(&x), 1e-6, |tape, v| {
        net.forward(&ForwardCtx::train(tape, 11), &v[0])?.loss(tape, &labels)
    })
    .unwrap();
    assert!(report.max_error < 1e-5, "input gradient: {report:?}");

    // The check above ran a backward pass too, which added to the parameter gradients.
    let params = net.parameters();
    incept_autograd::zero_grads(&params);
    let tape = Tape::new();
    let out = net.forward(&ForwardCtx::train(&tape, 11), &Var::constant(x.clone())).unwrap();
    let loss = out.loss(&tape, &labels).unwrap();
    drop(out);
    tape.backward(&loss).unwrap();
    let pick = [
        "conv1.conv.weight",
        "inception3a.branch3.1.conv.weight",
        "inception4d.branch2.0.bn.weight",
        "aux1.fc1.weight",
        "aux2.conv.bn.bias",
        "fc.bias",
    ];
    for name in pick {
        let param = params.iter().find(|p| p.name().starts_with(name) || p.name().contains(name)).expect(name);
        let grad = param.grad().expect("every parameter on the loss path has a gradient");
        for index in [0, param.numel() / 2, param.numel() - 1] {
            let numeric = numeric_param_grad(&net, param, index, &x, &labels);
            let analytic = grad.data()[index];
            let error = (analytic - numeric).abs() / 1f64.max(analytic.abs()).max(numeric.abs());
            assert!(error < 1e-5, "{}[{index}]: analytic {analytic}, numeric {numeric}", param.name());
        }
    }
}
