//! The auxiliary classifiers: absent at inference, weighted 0.3 in the
//! training loss, and adding their gradients linearly to the early layers.

use incept_autograd::{Tape, Var};
use incept_models::googlenet::AUX_LOSS_WEIGHT;
use incept_models::{ForwardCtx, GoogLeNet, GoogLeNetConfig, Module, Variant};
use incept_tensor::Tensor;

fn config(variant: Variant) -> GoogLeNetConfig {
    GoogLeNetConfig { width: 0.05, seed: 21, ..GoogLeNetConfig::small(variant, 1, 10) }
}

/// Builds the network without heads and gives it the weights of `with_heads`.
fn twin_without_heads(with_heads: &GoogLeNet<f64>) -> GoogLeNet<f64> {
    let without = GoogLeNet::<f64>::new(GoogLeNetConfig { aux_logits: false, ..*with_heads.config() }).unwrap();
    let source = with_heads.parameters();
    for param in without.parameters() {
        let twin = source.iter().find(|p| p.name() == param.name()).unwrap();
        param.set_value((*twin.value()).clone()).unwrap();
    }
    without
}

#[test]
fn eval_output_ignores_aux_heads() {
    for variant in [Variant::Paper, Variant::Torchvision] {
        let with_heads = GoogLeNet::<f64>::new(config(variant)).unwrap();
        let without = twin_without_heads(&with_heads);
        assert!(with_heads.num_parameters() > without.num_parameters());
        let x = Var::constant(Tensor::randn([3, 1, 28, 28], 0.0, 1.0, 4));
        let run = |net: &GoogLeNet<f64>| {
            let tape = Tape::inference();
            let out = net.forward(&ForwardCtx::eval(&tape), &x).unwrap();
            assert!(out.aux.is_none());
            out.logits.value().clone()
        };
        assert_eq!(run(&with_heads), run(&without), "{variant:?}");
    }
}

#[test]
fn train_loss_is_main_plus_weighted_aux() {
    for variant in [Variant::Paper, Variant::Torchvision] {
        let net = GoogLeNet::<f64>::new(config(variant)).unwrap();
        let x = Var::constant(Tensor::randn([4, 1, 28, 28], 0.0, 1.0, 5));
        let labels = [0, 3, 9, 3];
        let tape = Tape::new();
        let out = net.forward(&ForwardCtx::train(&tape, 8), &x).unwrap();
        let total = out.loss(&tape, &labels).unwrap().value().item().unwrap();
        let aux = out.aux.as_ref().expect("training mode runs both heads");

        // Cross-entropy written out from the logits.
        let by_hand = |logits: &Var<f64>| {
            let rows = logits.value().data().chunks_exact(10);
            let sum: f64 = rows
                .zip(labels)
                .map(|(row, label)| {
                    let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let log_sum = row.iter().map(|v| (v - max).exp()).sum::<f64>().ln() + max;
                    log_sum - row[label]
                })
                .sum();
            sum / labels.len() as f64
        };
        let expected = by_hand(&out.logits) + AUX_LOSS_WEIGHT * (by_hand(&aux[0]) + by_hand(&aux[1]));
        assert_eq!(AUX_LOSS_WEIGHT, 0.3);
        assert!((total - expected).abs() < 1e-12 * expected.abs(), "{variant:?}: {total} vs {expected}");
    }
}

#[test]
fn conv1_gradient_is_sum_of_three_losses() {
    let net = GoogLeNet::<f64>::new(config(Variant::Paper)).unwrap();
    let x = Tensor::randn([4, 1, 28, 28], 0.0, 1.0, 6);
    let labels = [1, 2, 3, 4];
    let conv1 = net.parameters().into_iter().find(|p| p.name() == "conv1.conv.weight").unwrap();

    // `part` selects the loss term: None for the whole loss, Some(0) the
    // main loss, Some(1) and Some(2) the weighted auxiliary losses.
    let gradient = |part: Option<usize>| {
        conv1.zero_grad();
        let tape = Tape::new();
        let out = net.forward(&ForwardCtx::train(&tape, 31), &Var::constant(x.clone())).unwrap();
        let aux = out.aux.clone().unwrap();
        let weight = AUX_LOSS_WEIGHT;
        let loss = match part {
            None => out.loss(&tape, &labels).unwrap(),
            Some(0) => tape.cross_entropy(&out.logits, &labels).unwrap(),
            Some(k) => tape.scale(&tape.cross_entropy(&aux[k - 1], &labels).unwrap(), weight),
        };
        drop((out, aux));
        tape.backward(&loss).unwrap();
        conv1.grad().unwrap()
    };
    let whole = gradient(None);
    let parts = [gradient(Some(0)), gradient(Some(1)), gradient(Some(2))];
    let mut largest = 0.0f64;
    for (i, &g) in whole.data().iter().enumerate() {
        let sum: f64 = parts.iter().map(|p| p.data()[i]).sum();
        largest = largest.max(g.abs());
        assert!((g - sum).abs() <= 1e-12 * g.abs().max(1e-6), "element {i}: {g} vs {sum}");
    }
    assert!(largest > 0.0, "conv1 receives a gradient");
    // Each auxiliary head contributes a gradient of its own to conv1.
    assert!(parts[1].data().iter().any(|&g| g != 0.0));
    assert!(parts[2].data().iter().any(|&g| g != 0.0));
}
