//! Optimisers, schedules and end-to-end learning on synthetic tasks.

use std::sync::Arc;

use incept_autograd::{
    Adam, AdamConfig, CosineLr, LinearWarmup, LrSchedule, OneCycleLr, Parameter, Sgd, SgdConfig, StepLr, Tape, Var,
};
use incept_tensor::Tensor;
use incept_tensor::conv::Conv2dParams;
use incept_tensor::pool::Pool2dParams;

/// Gradient of `sum(w * c)` is `c`, so each step gets a known gradient.
fn step_with_gradient(params: &[Parameter<f64>], coefficients: &[Tensor<f64>]) {
    let tape = Tape::new();
    let mut total = None;
    for (p, c) in params.iter().zip(coefficients) {
        let term = tape.sum(&tape.mul(&tape.param(p), &Var::constant(c.clone())).unwrap());
        total = Some(match total {
            None => term,
            Some(t) => tape.add(&t, &term).unwrap(),
        });
    }
    tape.backward(&total.unwrap()).unwrap();
}

/// The Adam update written out for one scalar, step by step.
fn adam_by_hand(p0: f64, grads: &[f64], config: AdamConfig) -> f64 {
    let (mut p, mut m, mut v) = (p0, 0.0, 0.0);
    for (t, &g0) in grads.iter().enumerate() {
        let t = (t + 1) as i32;
        let mut g = g0;
        if config.decoupled {
            p *= 1.0 - config.lr * config.weight_decay;
        } else {
            g += config.weight_decay * p;
        }
        m = config.beta1 * m + (1.0 - config.beta1) * g;
        v = config.beta2 * v + (1.0 - config.beta2) * g * g;
        let m_hat = m / (1.0 - config.beta1.powi(t));
        let v_hat = v / (1.0 - config.beta2.powi(t));
        p -= config.lr * m_hat / (v_hat.sqrt() + config.eps);
    }
    p
}

#[test]
fn adam_and_adamw_follow_the_update_rule() {
    for config in [
        AdamConfig { lr: 0.1, ..AdamConfig::adam() },
        AdamConfig { lr: 0.1, weight_decay: 0.05, ..AdamConfig::adam() },
        AdamConfig { lr: 0.1, weight_decay: 0.05, ..AdamConfig::adamw() },
    ] {
        let initial = [1.5, -0.5];
        let params: Vec<Parameter<f64>> =
            initial.iter().enumerate().map(|(i, &v)| Parameter::new(format!("p{i}"), Tensor::full([1], v))).collect();
        let mut adam = Adam::new(params.clone(), config).unwrap();
        let gradients = [[0.3, -2.0], [-0.1, 1.0], [0.7, 0.5]];
        for g in gradients {
            adam.zero_grad();
            step_with_gradient(&params, &[Tensor::full([1], g[0]), Tensor::full([1], g[1])]);
            adam.step();
        }
        for (i, p) in params.iter().enumerate() {
            let expected = adam_by_hand(initial[i], &gradients.map(|g| g[i]), config);
            let got = p.value().data()[0];
            assert!((got - expected).abs() < 1e-12, "{config:?} p{i}: {got} vs {expected}");
        }
    }
    assert!(Adam::<f32>::new(vec![], AdamConfig { beta1: 1.0, ..AdamConfig::adam() }).is_err());
    assert!(Adam::<f32>::new(vec![], AdamConfig { lr: 1e300, ..AdamConfig::adam() }).is_err());
}

#[test]
fn schedules_follow_their_formulas() {
    let step = StepLr::googlenet(0.1);
    assert_eq!(step.lr_at(0), 0.1);
    assert_eq!(step.lr_at(7), 0.1);
    assert!((step.lr_at(8) - 0.096).abs() < 1e-15);
    assert!((step.lr_at(16) - 0.1 * 0.96 * 0.96).abs() < 1e-15);

    let cosine = CosineLr { base_lr: 0.1, min_lr: 0.001, total_steps: 100 };
    assert_eq!(cosine.lr_at(0), 0.1);
    assert!((cosine.lr_at(50) - 0.0505).abs() < 1e-12);
    assert!((cosine.lr_at(100) - 0.001).abs() < 1e-15);
    assert!((cosine.lr_at(500) - 0.001).abs() < 1e-15);

    let warm = LinearWarmup { warmup_steps: 4, inner: cosine };
    assert!((warm.lr(0) - 0.025).abs() < 1e-12);
    assert!((warm.lr(3) - cosine.lr_at(3)).abs() < 1e-15);
    assert_eq!(warm.lr(10), cosine.lr_at(10));
    let one_cycle = OneCycleLr::new(0.1, 100).unwrap();
    assert_eq!(one_cycle.lr(29), one_cycle.lr_at(29));
}

/// Two Gaussian blobs in 2-D, labelled by which side of the line x = y they lie on.
fn blobs(n: usize, seed: u64) -> (Tensor<f32>, Vec<usize>) {
    let points = Tensor::<f32>::randn([n, 2], 0.0, 1.0, seed);
    let labels = points.data().chunks_exact(2).map(|p| usize::from(p[0] > p[1])).collect();
    (points, labels)
}

#[test]
fn two_layer_mlp_learns_blobs() {
    let w1 = Parameter::new("w1", Tensor::<f32>::randn([16, 2], 0.0, 0.5, 1));
    let b1 = Parameter::new("b1", Tensor::<f32>::zeros([16]));
    let w2 = Parameter::new("w2", Tensor::<f32>::randn([2, 16], 0.0, 0.5, 2));
    let b2 = Parameter::new("b2", Tensor::<f32>::zeros([2]));
    let params = vec![w1.clone(), b1.clone(), w2.clone(), b2.clone()];
    let mut adam = Adam::new(params, AdamConfig { lr: 0.05, ..AdamConfig::adam() }).unwrap();
    let (x, labels) = blobs(256, 3);
    let mut last = f32::INFINITY;
    for _ in 0..150 {
        adam.zero_grad();
        let tape = Tape::new();
        let h = tape.relu(&tape.linear(&Var::constant(x.clone()), &tape.param(&w1), Some(&tape.param(&b1))).unwrap());
        let logits = tape.linear(&h, &tape.param(&w2), Some(&tape.param(&b2))).unwrap();
        let loss = tape.cross_entropy(&logits, &labels).unwrap();
        last = loss.value().item().unwrap();
        tape.backward(&loss).unwrap();
        adam.step();
    }
    assert!(last < 0.1, "MLP loss after 150 Adam steps is {last}, expected below 0.1");
}

/// 8x8 images holding one bright horizontal (class 0) or vertical (class 1) bar.
fn bars(n: usize) -> (Tensor<f32>, Vec<usize>) {
    let mut data = vec![0.0f32; n * 64];
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let (class, line) = (i % 2, (i / 2) % 8);
        for j in 0..8 {
            let (row, col) = if class == 0 { (line, j) } else { (j, line) };
            data[i * 64 + row * 8 + col] = 1.0;
        }
        labels.push(class);
    }
    (Tensor::from_vec(data, [n, 1, 8, 8]).unwrap(), labels)
}

#[test]
fn small_conv_net_learns_bars() {
    let c1 = Parameter::new("c1", Tensor::<f32>::randn([8, 1, 3, 3], 0.0, 0.3, 4));
    let c2 = Parameter::new("c2", Tensor::<f32>::randn([8, 8, 3, 3], 0.0, 0.1, 5));
    let fc = Parameter::new("fc", Tensor::<f32>::randn([2, 8], 0.0, 0.3, 6));
    let fc_bias = Parameter::new("fc_bias", Tensor::<f32>::zeros([2]));
    let params = vec![c1.clone(), c2.clone(), fc.clone(), fc_bias.clone()];
    let config = SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 0.0, nesterov: true };
    let mut sgd = Sgd::new(params, config).unwrap();
    let (x, labels) = bars(32);
    let mut last = f32::INFINITY;
    for _ in 0..100 {
        sgd.zero_grad();
        let tape = Tape::new();
        let h = tape
            .relu(&tape.conv2d(&Var::constant(x.clone()), &tape.param(&c1), None, Conv2dParams::new(1, 1)).unwrap());
        let h = tape.max_pool2d(&h, Pool2dParams::new(2, 2, 0, false)).unwrap();
        let h = tape.relu(&tape.conv2d(&h, &tape.param(&c2), None, Conv2dParams::new(1, 1)).unwrap());
        let h = tape.flatten(&tape.global_avg_pool2d(&h).unwrap()).unwrap();
        let logits = tape.linear(&h, &tape.param(&fc), Some(&tape.param(&fc_bias))).unwrap();
        let loss = tape.cross_entropy(&logits, &labels).unwrap();
        last = loss.value().item().unwrap();
        tape.backward(&loss).unwrap();
        sgd.step();
    }
    assert!(last < 0.05, "conv net loss after 100 SGD steps is {last}, expected below 0.05");
}

#[test]
fn backward_frees_every_saved_activation() {
    let w = Parameter::new("w", Tensor::<f32>::randn([4, 2, 3, 3], 0.0, 0.3, 7));
    let tape = Tape::new();
    let x = tape.leaf(Tensor::randn([2, 2, 6, 6], 0.0, 1.0, 8));
    let input = x.shared_value();
    let conv = tape.conv2d(&x, &tape.param(&w), None, Conv2dParams::new(1, 1)).unwrap();
    let hidden = conv.shared_value();
    let activated = tape.relu(&conv);
    let pooled = tape.max_pool2d(&activated, Pool2dParams::new(2, 2, 0, false)).unwrap();
    let loss = tape.sum(&pooled);
    drop((conv, activated, pooled));
    // Before the walk, the convolution's gradient rule keeps the input for
    // the weight gradient. (ReLU saves its output, not the convolution's.)
    assert!(Arc::strong_count(&input) > 2, "the tape must keep the input for the weight gradient");
    tape.backward(&loss).unwrap();
    // After it, only `x` and the local handles remain.
    assert_eq!(Arc::strong_count(&input), 2, "x and `input`");
    assert_eq!(Arc::strong_count(&hidden), 1, "only `hidden`");
    assert_eq!(Arc::strong_count(&w.value()), 2, "the parameter and this temporary");
}

/// The fixture's formulas, as `tools/make_optimizer_fixtures.py` computes them.
fn fixture_initial(k: usize, n: usize) -> Vec<f64> {
    (0..n).map(|i| (0.5 * i as f64 + k as f64).cos()).collect()
}

fn fixture_gradient(k: usize, step: usize, n: usize) -> Vec<f64> {
    (0..n).map(|i| (0.7 * i as f64 + 1.3 * step as f64 + k as f64).sin()).collect()
}

/// An optimiser under test, driven one step at a time.
enum Optimiser {
    Sgd(Sgd<f64>),
    Adam(Adam<f64>),
}

impl Optimiser {
    fn step(&mut self) {
        match self {
            Optimiser::Sgd(sgd) => sgd.step(),
            Optimiser::Adam(adam) => adam.step(),
        }
    }
}

#[test]
fn optimisers_match_pytorch_fixture() {
    let fixture = include_str!("fixtures/optimizers.txt");
    let shapes: [&[usize]; 2] = [&[2, 3], &[3]];
    for name in ["sgd_momentum", "sgd_nesterov_decay", "adam_l2", "adamw"] {
        let params: Vec<Parameter<f64>> = shapes
            .iter()
            .enumerate()
            .map(|(k, dims)| {
                let n = dims.iter().product();
                Parameter::new(format!("p{k}"), Tensor::from_vec(fixture_initial(k, n), *dims).unwrap())
            })
            .collect();
        let mut optimiser = match name {
            "sgd_momentum" => Optimiser::Sgd(
                Sgd::new(params.clone(), SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 0.0, nesterov: false })
                    .unwrap(),
            ),
            "sgd_nesterov_decay" => Optimiser::Sgd(
                Sgd::new(params.clone(), SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 0.01, nesterov: true })
                    .unwrap(),
            ),
            "adam_l2" => Optimiser::Adam(
                Adam::new(params.clone(), AdamConfig { lr: 0.01, weight_decay: 0.05, ..AdamConfig::adam() }).unwrap(),
            ),
            _ => Optimiser::Adam(
                Adam::new(params.clone(), AdamConfig { lr: 0.01, weight_decay: 0.05, ..AdamConfig::adamw() }).unwrap(),
            ),
        };
        for step in 0..3 {
            incept_autograd::zero_grads(&params);
            let coefficients: Vec<Tensor<f64>> = params
                .iter()
                .enumerate()
                .map(|(k, p)| Tensor::from_vec(fixture_gradient(k, step, p.numel()), p.value().dims()).unwrap())
                .collect();
            step_with_gradient(&params, &coefficients);
            optimiser.step();
            for (k, p) in params.iter().enumerate() {
                let prefix = format!("{name} {step} {k} ");
                let line = fixture.lines().find(|l| l.starts_with(&prefix)).expect("the fixture has every step");
                let expected: Vec<f64> = line[prefix.len()..].split_whitespace().map(|v| v.parse().unwrap()).collect();
                for (i, (&got, &want)) in p.value().data().iter().zip(&expected).enumerate() {
                    assert!((got - want).abs() < 1e-6, "{name} step {step} p{k}[{i}]: {got} vs PyTorch {want}");
                }
                assert_eq!(p.value().numel(), expected.len());
            }
        }
    }
}

#[test]
fn sgd_restored_momentum_continues_identically() {
    let config = SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 1e-2, nesterov: true };
    let coefficients = [Tensor::from_vec(vec![1.0, -2.0, 0.5], [3]).unwrap()];
    let start = || vec![Parameter::new("w", Tensor::from_vec(vec![0.3, -0.1, 0.7], [3]).unwrap())];

    // Uninterrupted: four steps.
    let params = start();
    let mut sgd = Sgd::new(params.clone(), config).unwrap();
    for _ in 0..4 {
        sgd.zero_grad();
        step_with_gradient(&params, &coefficients);
        sgd.step();
    }
    let expected = params[0].value().data().to_vec();

    // Interrupted after two steps: copy the weights and momentum into a fresh optimiser.
    let params = start();
    let mut sgd = Sgd::new(params.clone(), config).unwrap();
    for _ in 0..2 {
        sgd.zero_grad();
        step_with_gradient(&params, &coefficients);
        sgd.step();
    }
    let saved: Vec<Option<Tensor<f64>>> = sgd.momentum_buffers().map(|(_, b)| b.cloned()).collect();
    assert!(saved[0].is_some());
    let resumed = vec![Parameter::new("w", (*params[0].value()).clone())];
    let mut sgd = Sgd::new(resumed.clone(), config).unwrap();
    for (index, buffer) in saved.into_iter().enumerate() {
        sgd.set_momentum_buffer(index, buffer).unwrap();
    }
    for _ in 0..2 {
        sgd.zero_grad();
        step_with_gradient(&resumed, &coefficients);
        sgd.step();
    }
    assert_eq!(resumed[0].value().data(), &expected[..]);

    let err = sgd.set_momentum_buffer(0, Some(Tensor::zeros([4]))).unwrap_err();
    assert!(err.to_string().contains("buffer shape [4] differs from the parameter's [3]"), "{err}");
    assert!(sgd.set_momentum_buffer(1, None).is_err());
}
