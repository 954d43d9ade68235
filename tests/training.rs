//! End to end: GoogLeNet learns real Fashion-MNIST images with incept's own
//! kernels, autograd and optimiser.

use std::path::Path;

use incept::autograd::{OneCycleLr, Sgd, SgdConfig, Tape, Var};
use incept::models::data::fashion_mnist;
use incept::models::{ForwardCtx, GoogLeNet, GoogLeNetConfig, Module, Variant};

fn accuracy(logits: &Var, labels: &[usize]) -> f64 {
    let classes = logits.dims()[1];
    let correct = logits
        .value()
        .data()
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, label)| {
            row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i) == Some(**label)
        })
        .count();
    correct as f64 / labels.len() as f64
}

#[test]
fn googlenet_learns_fashion_mnist_subset() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist");
    let (train, test) = fashion_mnist(&dir).unwrap();
    let (train, test) = (train.take(1024), test.take(500));
    let net = GoogLeNet::new(GoogLeNetConfig {
        width: 0.125,
        seed: 1,
        ..GoogLeNetConfig::small(Variant::Torchvision, 1, 10)
    })
    .unwrap();
    let (epochs, batch_size) = (3, 64);
    let schedule = OneCycleLr::new(0.1, epochs * train.len().div_ceil(batch_size)).unwrap();
    let config = SgdConfig { lr: schedule.lr_at(0), momentum: 0.9, weight_decay: 5e-4, nesterov: true };
    let mut sgd = Sgd::new(net.parameters(), config).unwrap();

    let mut losses = Vec::new();
    let mut step = 0;
    for epoch in 0..epochs {
        for (images, labels) in train.batches(batch_size, Some(epoch as u64)).unwrap() {
            sgd.set_lr(schedule.lr_at(step)).unwrap();
            sgd.zero_grad();
            let tape = Tape::new();
            let out = net.forward(&ForwardCtx::train(&tape, step as u64), &Var::constant(images)).unwrap();
            let loss = out.loss(&tape, &labels).unwrap();
            losses.push(loss.value().item().unwrap());
            drop(out);
            tape.backward(&loss).unwrap();
            sgd.step();
            step += 1;
        }
    }
    let first: f32 = losses[..4].iter().sum::<f32>() / 4.0;
    let last: f32 = losses[losses.len() - 4..].iter().sum::<f32>() / 4.0;
    assert!(last < 0.6 * first, "training loss went from {first} to {last}");

    let tape = Tape::inference();
    let (images, labels) = test.batches(test.len(), None).unwrap().next().unwrap();
    let out = net.forward(&ForwardCtx::eval(&tape), &Var::constant(images)).unwrap();
    let acc = accuracy(&out.logits, &labels);
    println!("loss {first:.3} -> {last:.3}, test accuracy {acc:.3}");
    // Chance is 10%; 48 steps on 1,024 images reach well above half.
    assert!(acc > 0.5, "test accuracy {acc} after {step} steps");
}

#[test]
fn training_is_reproducible_with_the_same_seed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist");
    let (train, _) = fashion_mnist(&dir).unwrap();
    let train = train.take(256);
    let run = || {
        let net = GoogLeNet::new(GoogLeNetConfig {
            width: 0.125,
            seed: 5,
            ..GoogLeNetConfig::small(Variant::Torchvision, 1, 10)
        })
        .unwrap();
        let config = SgdConfig { lr: 0.05, momentum: 0.9, weight_decay: 5e-4, nesterov: true };
        let mut sgd = Sgd::new(net.parameters(), config).unwrap();
        for (step, (images, labels)) in train.batches(64, Some(9)).unwrap().enumerate() {
            sgd.zero_grad();
            let tape = Tape::new();
            let out = net.forward(&ForwardCtx::train(&tape, step as u64), &Var::constant(images)).unwrap();
            let loss = out.loss(&tape, &labels).unwrap();
            drop(out);
            tape.backward(&loss).unwrap();
            sgd.step();
        }
        net.parameters().iter().map(|p| (*p.value()).clone()).collect::<Vec<_>>()
    };
    let first = run();
    let second = run();
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(a, b, "two runs with the same seeds must give bit-identical weights");
    }
}
