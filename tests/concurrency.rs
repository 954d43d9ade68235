//! A model in eval mode is shared across threads: `GoogLeNet` is `Send +
//! Sync`, and concurrent inference gives the same logits as sequential runs.

use std::sync::Arc;
use std::thread;

use incept::autograd::{Tape, Var};
use incept::models::{ForwardCtx, GoogLeNet, GoogLeNetConfig, Variant};
use incept::tensor::Tensor;

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn models_are_send_and_sync() {
    assert_send_sync::<GoogLeNet<f32>>();
    assert_send_sync::<GoogLeNet<f64>>();
    assert_send_sync::<incept::models::Inception<f32>>();
    assert_send_sync::<incept::models::layers::Sequential<f32>>();
    assert_send_sync::<incept::autograd::Parameter<f32>>();
}

fn logits(net: &GoogLeNet, images: &Tensor<f32>) -> Vec<f32> {
    let tape = Tape::inference();
    let out = net.forward(&ForwardCtx::eval(&tape), &Var::constant(images.clone())).unwrap();
    out.logits.value().data().to_vec()
}

#[test]
fn concurrent_inference_matches_sequential() {
    for variant in [Variant::Torchvision, Variant::Paper] {
        let config = GoogLeNetConfig { width: 0.125, seed: 2, ..GoogLeNetConfig::small(variant, 1, 10) };
        let net = Arc::new(GoogLeNet::<f32>::new(config).unwrap());
        let inputs: Vec<Tensor<f32>> = (0..4).map(|i| Tensor::randn([3, 1, 28, 28], 0.0, 1.0, 40 + i)).collect();
        let sequential: Vec<Vec<f32>> = inputs.iter().map(|x| logits(&net, x)).collect();

        let handles: Vec<_> = inputs
            .iter()
            .cloned()
            .map(|x| {
                let net = Arc::clone(&net);
                // Each thread runs the same input several times while the others run theirs.
                thread::spawn(move || (0..3).map(|_| logits(&net, &x)).collect::<Vec<_>>())
            })
            .collect();
        for (expected, handle) in sequential.iter().zip(handles) {
            for got in handle.join().expect("an inference thread panicked") {
                assert_eq!(&got, expected, "{variant:?}");
            }
        }
    }
}
