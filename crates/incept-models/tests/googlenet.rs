//! Inception and GoogLeNet: shapes, names, parameter and multiply-accumulate
//! counts, and f64 gradient checks.

mod common;

use common::torchvision_keys;
use std::collections::HashSet;

use incept_autograd::{Parameter, Tape, Var, check_gradients};
use incept_models::googlenet::INCEPTION_CONFIGS;
use incept_models::inception::scale_channels;
use incept_models::{
    ForwardCtx, GoogLeNet, GoogLeNetConfig, Inception, InceptionConfig, InceptionKind, InceptionOptions, Init, Layer,
    Module, Stem, Variant,
};
use incept_tensor::Tensor;

fn small_config(variant: Variant, width: f64) -> GoogLeNetConfig {
    GoogLeNetConfig { width, seed: 3, ..GoogLeNetConfig::small(variant, 1, 10) }
}

fn all_options() -> Vec<InceptionOptions> {
    let mut options = Vec::new();
    for base in [InceptionOptions::PAPER, InceptionOptions::TORCHVISION] {
        for kind in [InceptionKind::Naive, InceptionKind::Bottleneck] {
            options.push(base.with_kind(kind));
        }
    }
    options
}

#[test]
fn inception_3a_has_the_paper_channels_and_weights() {
    let (_, config) = INCEPTION_CONFIGS[0];
    let module = Inception::<f32>::new("inception3a", config, &mut Init::new(0)).unwrap();
    assert_eq!(config.c_out(), 256);
    assert_eq!(module.c_out(), 256);
    // Convolution weights of the four branches (1x1, 1x1 + 3x3, 1x1 + 5x5, pool proj), 163,328 as
    // computed from Table 1's columns of GoogLeNet (Szegedy et al., CVPR 2015) ...
    let conv_weights = 192 * 64 + 192 * 96 + 96 * 9 * 128 + 192 * 16 + 16 * 25 * 32 + 192 * 32;
    assert_eq!(conv_weights, 163_328);
    // ... plus one bias per output channel of each of the six convolutions.
    let biases = 64 + 96 + 128 + 16 + 32 + 32;
    assert_eq!(module.num_parameters(), conv_weights + biases);
    // Each weight is used once per output pixel of the 28x28 map: 128.0M, the paper's 128M.
    assert_eq!(module.macs(&[1, 192, 28, 28]).unwrap(), 163_328 * 784);
}

#[test]
fn naive_3a_on_the_paper_input() {
    let (_, config) = INCEPTION_CONFIGS[0];
    let options = InceptionOptions::PAPER.with_kind(InceptionKind::Naive);
    let module = Inception::<f32>::with_options("naive3a", config, options, &mut Init::new(0)).unwrap();
    // 1x1, 3x3 and 5x5 convolutions on all 192 channels, plus the 192 pooled channels passed through.
    let weights = 192 * 64 + 192 * 9 * 128 + 192 * 25 * 32;
    assert_eq!(module.num_parameters(), weights + 64 + 128 + 32);
    assert_eq!(module.c_out(), 64 + 128 + 32 + 192);
    assert_eq!(module.macs(&[1, 192, 28, 28]).unwrap(), (weights * 784) as u64);
    let read_back = module.config();
    assert_eq!(read_back.ch3x3_reduce, 0);
    assert_eq!(read_back.pool_proj, 0);
}

#[test]
fn analytic_costs_match_built_layers() {
    for (name, config) in INCEPTION_CONFIGS {
        for width in [0.25, 1.0] {
            let scaled = config.scaled(scale_channels(config.c_in, width), width);
            for options in all_options() {
                let module = Inception::<f32>::with_options(name, scaled, options, &mut Init::new(0)).unwrap();
                let context = format!("{name} width {width} {options:?}");
                assert_eq!(scaled.parameter_count(options), Some(module.num_parameters()), "{context}");
                let (h, w) = (14, 9);
                let counted = module.macs(&[1, scaled.c_in, h, w]).unwrap();
                assert_eq!(scaled.macs(options, h, w), Some(counted), "{context}");
                assert_eq!(module.c_out(), scaled.c_out_of(options.kind), "{context}");
            }
        }
    }
}

#[test]
fn googlenet_parameter_count_matches_built_layers() {
    let configs = [
        GoogLeNetConfig::paper(),
        GoogLeNetConfig::torchvision(),
        GoogLeNetConfig { aux_logits: false, ..GoogLeNetConfig::paper() },
        small_config(Variant::Torchvision, 0.25),
        small_config(Variant::Paper, 0.25),
        GoogLeNetConfig { num_classes: 3, width: 0.1, ..small_config(Variant::Paper, 0.1) },
    ];
    for config in configs {
        let net = GoogLeNet::<f32>::new(config).unwrap();
        assert_eq!(config.parameter_count(), Some(net.num_parameters()), "{config:?}");
    }
}

#[test]
fn torchvision_totals_match_torchvision() {
    // sum(p.numel() for p in torchvision.models.googlenet(...).parameters()), torchvision 0.20.1.
    let with_aux = GoogLeNet::<f32>::new(GoogLeNetConfig::torchvision()).unwrap();
    assert_eq!(with_aux.num_parameters(), 13_004_888);
    let without =
        GoogLeNet::<f32>::new(GoogLeNetConfig { aux_logits: false, ..GoogLeNetConfig::torchvision() }).unwrap();
    assert_eq!(without.num_parameters(), 6_624_904);
}

#[test]
fn state_dict_keys_equal_torchvision() {
    for (aux_logits, file) in
        [(true, "torchvision_googlenet_keys.txt"), (false, "torchvision_googlenet_keys_noaux.txt")]
    {
        let net = GoogLeNet::<f32>::new(GoogLeNetConfig { aux_logits, ..GoogLeNetConfig::torchvision() }).unwrap();
        let mut ours: Vec<(String, Vec<usize>)> =
            net.parameters().iter().map(|p| (p.name().to_string(), p.value().dims().to_vec())).collect();
        ours.extend(net.buffers().iter().map(|b| (b.name().to_string(), b.value().dims().to_vec())));
        let mut expected: Vec<(String, Vec<usize>)> =
            torchvision_keys(file).into_iter().map(|(name, dims, _)| (name, dims)).collect();
        ours.sort();
        expected.sort();
        let missing: Vec<_> = expected.iter().filter(|k| !ours.contains(k)).collect();
        let unexpected: Vec<_> = ours.iter().filter(|k| !expected.contains(k)).collect();
        assert!(missing.is_empty(), "aux {aux_logits}: missing {missing:?}");
        assert!(unexpected.is_empty(), "aux {aux_logits}: unexpected {unexpected:?}");
    }
}

#[test]
fn parameter_names_are_unique() {
    for variant in [Variant::Paper, Variant::Torchvision] {
        let net = GoogLeNet::<f32>::new(small_config(variant, 0.25)).unwrap();
        let mut names: Vec<String> = net.parameters().iter().map(|p| p.name().to_string()).collect();
        names.extend(net.buffers().iter().map(|b| b.name().to_string()));
        let unique: HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{variant:?}: duplicate names");
    }
}

#[test]
fn paper_variant_has_biases_and_no_batch_norm() {
    let net = GoogLeNet::<f32>::new(GoogLeNetConfig::paper()).unwrap();
    let names: Vec<String> = net.parameters().iter().map(|p| p.name().to_string()).collect();
    assert!(names.iter().any(|n| n == "conv1.conv.bias"));
    assert!(names.iter().any(|n| n == "inception3a.branch3.1.conv.bias"));
    assert!(!names.iter().any(|n| n.contains(".bn.")));
    assert!(net.buffers().is_empty());
    let branch3 = net.parameters().into_iter().find(|p| p.name() == "inception3a.branch3.1.conv.weight").unwrap();
    assert_eq!(branch3.value().dims(), &[32, 16, 5, 5], "the paper's 5x5 branch is a true 5x5");
}

#[test]
fn inception_output_keeps_size_and_sums_channels() {
    let config =
        InceptionConfig { c_in: 5, ch1x1: 2, ch3x3_reduce: 3, ch3x3: 4, ch5x5_reduce: 1, ch5x5: 2, pool_proj: 3 };
    for options in all_options() {
        let module = Inception::<f32>::with_options("m", config, options, &mut Init::new(1)).unwrap();
        let tape = Tape::inference();
        let x = Var::constant(Tensor::randn([2, 5, 7, 6], 0.0, 1.0, 2));
        let y = module.forward(&ForwardCtx::eval(&tape), &x).unwrap();
        let c_out = if options.kind == InceptionKind::Naive { 2 + 4 + 2 + 5 } else { 11 };
        assert_eq!(y.dims(), &[2, c_out, 7, 6], "{options:?}");
        let bad = Var::constant(Tensor::zeros([2, 4, 7, 6]));
        let err = module.forward(&ForwardCtx::eval(&tape), &bad).expect_err("wrong channel count must fail");
        assert!(err.to_string().contains("expects 5 input channels"), "{err}");
    }
}

#[test]
fn naive_pool_branch_passes_input_through() {
    // The last c_in channels of the naive module are the 3x3/1 max pool of
    // the input, negative values included (no ReLU on that branch).
    let config =
        InceptionConfig { c_in: 2, ch1x1: 1, ch3x3_reduce: 0, ch3x3: 1, ch5x5_reduce: 0, ch5x5: 1, pool_proj: 0 };
    let options = InceptionOptions::PAPER.with_kind(InceptionKind::Naive);
    let module = Inception::<f32>::with_options("m", config, options, &mut Init::new(1)).unwrap();
    let x = Tensor::from_vec((0..18).map(|v| -(v as f32)).collect(), [1, 2, 3, 3]).unwrap();
    let tape = Tape::inference();
    let y = module.forward(&ForwardCtx::eval(&tape), &Var::constant(x.clone())).unwrap();
    let pooled = incept_tensor::pool::max_pool2d(&x, incept_tensor::pool::Pool2dParams::new(3, 1, 1, true)).unwrap();
    assert_eq!(&y.value().data()[3 * 9..], pooled.data());
    assert!(pooled.data().iter().any(|&v| v < 0.0));
}

#[test]
fn inception_module_gradient_check() {
    let config =
        InceptionConfig { c_in: 3, ch1x1: 2, ch3x3_reduce: 2, ch3x3: 3, ch5x5_reduce: 1, ch5x5: 2, pool_proj: 2 };
    for options in all_options() {
        let module = Inception::<f64>::with_options("m", config, options, &mut Init::new(4)).unwrap();
        for (mode, training) in [("train", true), ("eval", false)] {
            let input = Tensor::randn([2, 3, 5, 5], 0.0, 1.0, 5);
            let report = check_gradients(&[input], 1e-6, |tape, v| {
                let ctx = if training { ForwardCtx::train(tape, 0) } else { ForwardCtx::eval(tape) };
                module.forward(&ctx, &v[0])
            })
            .unwrap();
            assert!(report.max_error < 1e-5, "{options:?} {mode}: {report:?}");
        }
    }
}

#[test]
fn small_stem_shapes_and_aux_heads() {
    for variant in [Variant::Paper, Variant::Torchvision] {
        for side in [28, 32] {
            let net = GoogLeNet::<f32>::new(small_config(variant, 0.125)).unwrap();
            let x = Var::constant(Tensor::randn([3, 1, side, side], 0.0, 1.0, 6));
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
        }
        let no_aux =
            GoogLeNet::<f32>::new(GoogLeNetConfig { aux_logits: false, ..small_config(variant, 0.125) }).unwrap();
        let tape = Tape::new();
        let x = Var::constant(Tensor::randn([2, 1, 28, 28], 0.0, 1.0, 6));
        assert!(no_aux.forward(&ForwardCtx::train(&tape, 0), &x).unwrap().aux.is_none());
    }
}

#[test]
fn imagenet_stem_runs_224_in_both_variants() {
    for config in [GoogLeNetConfig::paper(), GoogLeNetConfig::torchvision()] {
        let net = GoogLeNet::<f32>::new(GoogLeNetConfig { width: 0.125, num_classes: 7, ..config }).unwrap();
        let x = Var::constant(Tensor::randn([2, 3, 224, 224], 0.0, 1.0, 7));
        let tape = Tape::new();
        let out = net.forward(&ForwardCtx::train(&tape, 0), &x).unwrap();
        assert_eq!(out.logits.dims(), &[2, 7], "{:?}", config.variant);
        assert!(out.aux.is_some());
    }
}

#[test]
fn full_width_channels_follow_table_1() {
    let net = GoogLeNet::<f32>::new(GoogLeNetConfig::paper()).unwrap();
    let outputs: Vec<usize> = net.inceptions().iter().map(|m| m.c_out()).collect();
    assert_eq!(outputs, [256, 480, 512, 512, 512, 528, 832, 832, 1024]);
    let inputs: Vec<usize> = net.inceptions().iter().map(|m| m.config().c_in).collect();
    assert_eq!(inputs, [192, 256, 480, 512, 512, 512, 528, 832, 832]);
}

#[test]
fn rejects_bad_config_and_input() {
    let base = small_config(Variant::Torchvision, 0.125);
    assert!(GoogLeNet::<f32>::new(GoogLeNetConfig { width: 0.0, ..base }).is_err());
    assert!(GoogLeNet::<f32>::new(GoogLeNetConfig { num_classes: 0, ..base }).is_err());
    assert!(GoogLeNet::<f32>::new(GoogLeNetConfig { dropout: 1.0, ..base }).is_err());
    let err = GoogLeNet::<f32>::new(GoogLeNetConfig { transform_input: true, ..base }).err().unwrap();
    assert!(err.to_string().contains("in_channels = 1 must be 3"), "{err}");

    let net = GoogLeNet::<f32>::new(base).unwrap();
    let tape = Tape::inference();
    let eval = ForwardCtx::eval(&tape);
    let err = net.forward(&eval, &Var::constant(Tensor::zeros([1, 3, 28, 28]))).err().unwrap();
    assert!(err.to_string().contains("[N, 1, H, W]"), "{err}");
    // 4 -> 2 (maxpool2) -> 1 (maxpool3) -> 1 (maxpool4, 2x2/2 in ceil mode,
    // clipped as PyTorch clips it); a 3x3 image leaves maxpool2 at 1x1, where
    // maxpool3's 3x3/2 window cannot start.
    let err = net.forward(&eval, &Var::constant(Tensor::zeros([1, 1, 3, 3]))).err().unwrap();
    assert!(err.to_string().contains("needs images of at least 4x4 without auxiliary heads, got 3x3"), "{err}");
    assert!(net.forward(&eval, &Var::constant(Tensor::zeros([1, 1, 4, 4]))).is_ok());
    // The auxiliary heads pool adaptively, so training needs no larger image.
    let train_tape = Tape::new();
    let x = Var::constant(Tensor::randn([2, 1, 4, 4], 0.0, 1.0, 3));
    assert!(net.forward(&ForwardCtx::train(&train_tape, 0), &x).unwrap().aux.is_some());

    let paper = GoogLeNet::<f32>::new(GoogLeNetConfig { width: 0.125, ..GoogLeNetConfig::paper() }).unwrap();
    let train_tape = Tape::new();
    let err = paper.forward(&ForwardCtx::train(&train_tape, 0), &Var::constant(Tensor::zeros([2, 3, 64, 64]))).err();
    let err = err.expect("a 64x64 image is too small for the 5x5/3 auxiliary pool");
    assert!(err.to_string().contains("in training with auxiliary heads, got 64x64"), "{err}");

    for config in [
        GoogLeNetConfig { width: 1e300, ..base },
        GoogLeNetConfig { width: 1000.0, ..base },
        GoogLeNetConfig { num_classes: usize::MAX, width: 0.25, ..base },
        GoogLeNetConfig { in_channels: 1 << 62, width: 0.25, ..base },
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
    // A step of 1e-5 moves some conv1 pre-activations across a ReLU kink;
    // 1e-6 stays within one linear piece.
    let h = 1e-6;
    (loss_at(h) - loss_at(-h)) / (2.0 * h)
}

#[test]
fn training_loss_gradient_check() {
    // The whole network in f64, aux heads and dropout included (fixed seeds),
    // on 16x16 inputs so the check stays fast. The paper variant adds LRN.
    for variant in [Variant::Torchvision, Variant::Paper] {
        let config = GoogLeNetConfig { width: 0.05, seed: 9, ..GoogLeNetConfig::small(variant, 1, 10) };
        let net = GoogLeNet::<f64>::new(config).unwrap();
        let x = Tensor::randn([2, 1, 16, 16], 0.0, 1.0, 10);
        let labels = [3, 7];

        let report = check_gradients(std::slice::from_ref(&x), 1e-6, |tape, v| {
            net.forward(&ForwardCtx::train(tape, 11), &v[0])?.loss(tape, &labels)
        })
        .unwrap();
        assert!(report.max_error < 1e-5, "{variant:?} input gradient: {report:?}");

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
            "conv2.conv.weight",
            "inception3a.branch3.1.conv.weight",
            "inception4d.branch2.0.conv.weight",
            "aux1.fc1.weight",
            "aux2.conv.conv.weight",
            "fc.bias",
        ];
        for name in pick {
            let param = params.iter().find(|p| p.name() == name).expect(name);
            let grad = param.grad().expect("every parameter on the loss path has a gradient");
            for index in [0, param.numel() / 2, param.numel() - 1] {
                let numeric = numeric_param_grad(&net, param, index, &x, &labels);
                let analytic = grad.data()[index];
                let error = (analytic - numeric).abs() / 1f64.max(analytic.abs()).max(numeric.abs());
                assert!(error < 1e-5, "{variant:?} {}[{index}]: analytic {analytic}, numeric {numeric}", param.name());
            }
        }
    }
}

#[test]
fn stem_names_do_not_change_with_small_stem() {
    let imagenet = GoogLeNet::<f32>::new(GoogLeNetConfig { width: 0.25, ..GoogLeNetConfig::torchvision() }).unwrap();
    let small = GoogLeNet::<f32>::new(GoogLeNetConfig { stem: Stem::Small, ..*imagenet.config() }).unwrap();
    let names = |net: &GoogLeNet<f32>| net.parameters().iter().map(|p| p.name().to_string()).collect::<Vec<_>>();
    assert_eq!(names(&imagenet), names(&small));
    let conv1 = |net: &GoogLeNet<f32>| net.parameters()[0].value().dims().to_vec();
    assert_eq!(conv1(&imagenet), [16, 3, 7, 7]);
    assert_eq!(conv1(&small), [16, 3, 3, 3]);
}

#[test]
fn activations_come_in_requested_order() {
    let net = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 0.125)).unwrap();
    let x = Var::constant(Tensor::randn([2, 1, 28, 28], 0.0, 1.0, 12));
    let tape = Tape::inference();
    let ctx = ForwardCtx::eval(&tape);
    let names = ["fc", "conv1", "inception3a", "avgpool"];
    let (output, activations) = net.forward_with_activations(&ctx, &x, &names).unwrap();

    let returned: Vec<&str> = activations.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(returned, names);
    assert_eq!(activations[0].1.value().data(), output.logits.value().data(), "fc output is the logits");
    // The small stem keeps 28x28 through conv1; maxpool2 halves it (ceil mode) before 3a.
    assert_eq!(activations[1].1.dims(), &[2, 8, 28, 28]);
    assert_eq!(activations[2].1.dims(), &[2, 32, 14, 14]);
    assert_eq!(activations[3].1.dims(), &[2, 128, 1, 1]);

    let plain = net.forward(&ctx, &x).unwrap();
    assert_eq!(plain.logits.value().data(), output.logits.value().data());
}

#[test]
fn activations_reject_unknown_layer_names() {
    let small = GoogLeNet::<f32>::new(small_config(Variant::Torchvision, 0.125)).unwrap();
    assert!(!small.layer_names().contains(&"maxpool1"), "the small stem has no maxpool1");
    let x = Var::constant(Tensor::zeros([1, 1, 28, 28]));
    let tape = Tape::inference();
    let ctx = ForwardCtx::eval(&tape);
    for name in ["maxpool1", "inception6a", "aux1", ""] {
        let error = small.forward_with_activations(&ctx, &x, &["conv1", name]).err().expect(name).to_string();
        assert!(error.contains(&format!("{name:?}")), "{name:?}: {error}");
    }

    let imagenet = GoogLeNet::<f32>::new(GoogLeNetConfig { width: 0.125, ..GoogLeNetConfig::torchvision() }).unwrap();
    let expected = [
        "conv1",
        "maxpool1",
        "conv2",
        "conv3",
        "maxpool2",
        "inception3a",
        "inception3b",
        "maxpool3",
        "inception4a",
        "inception4b",
        "inception4c",
        "inception4d",
        "inception4e",
        "maxpool4",
        "inception5a",
        "inception5b",
        "avgpool",
        "dropout",
        "fc",
    ];
    assert_eq!(imagenet.layer_names(), expected);
}
