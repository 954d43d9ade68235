//! Criterion benchmarks of the full 224x224 GoogLeNet (torchvision variant):
//! eval-mode forward at batch 1 and 16, and a training step at batch 16 with
//! the auxiliary heads, the workloads `tools/bench_reference.py` times in
//! PyTorch and onnxruntime. The `_unfolded` eval benchmarks run conv, batch
//! norm and ReLU as three operations instead of folding the batch norm
//! into the convolution, for comparison.
//!
//! ```text
//! cargo bench --bench googlenet
//! INCEPT_BENCH_QUICK=1 cargo bench --bench googlenet    # warm-up and measurement cut to 0.5 s and 1 s
//! ```

mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use incept::autograd::{Sgd, SgdConfig, Tape, Var};
use incept::models::{ForwardCtx, GoogLeNet, GoogLeNetConfig, Module};
use incept::tensor::Tensor;

/// mimalloc keeps freed activations for reuse; see docs/performance.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn bench_googlenet(c: &mut Criterion) {
    let mut group = c.benchmark_group("googlenet_224");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    support::set_times(&mut group, Duration::from_secs(3), Duration::from_secs(10));

    let eval_net = GoogLeNet::<f32>::new(GoogLeNetConfig { aux_logits: false, ..GoogLeNetConfig::torchvision() })
        .expect("torchvision config is valid");
    for batch in [1, 16] {
        let images = Var::constant(Tensor::randn([batch, 3, 224, 224], 0.0, 1.0, 1));
        group.throughput(Throughput::Elements(batch as u64));
        for (suffix, fold) in [("", true), ("_unfolded", false)] {
            group.bench_function(format!("eval_batch{batch}{suffix}"), |b| {
                b.iter(|| {
                    let tape = Tape::inference();
                    eval_net
                        .forward(&ForwardCtx::eval(&tape).with_batch_norm_folding(fold), black_box(&images))
                        .expect("input is [N, 3, 224, 224]")
                        .logits
                });
            });
        }
    }

    // A training step as PyTorch's reference runs it: auxiliary heads on,
    // SGD with momentum 0.9, batch 16.
    let net = GoogLeNet::<f32>::new(GoogLeNetConfig::torchvision()).expect("torchvision config is valid");
    let batch = 16;
    let images = Var::constant(Tensor::randn([batch, 3, 224, 224], 0.0, 1.0, 2));
    let labels: Vec<usize> = (0..batch).map(|i| i * 61 % 1000).collect();
    let config = SgdConfig { lr: 0.01, momentum: 0.9, weight_decay: 0.0, nesterov: false };
    let mut sgd = Sgd::new(net.parameters(), config).expect("valid SGD config");
    let mut step = 0_u64;
    group.throughput(Throughput::Elements(batch as u64));
    group.bench_function("train_step_batch16_aux", |b| {
        b.iter(|| {
            sgd.zero_grad();
            let tape = Tape::new();
            let out = net.forward(&ForwardCtx::train(&tape, step), black_box(&images)).expect("input fits");
            let loss = out.loss(&tape, &labels).expect("one label per image");
            drop(out);
            tape.backward(&loss).expect("loss is a scalar on this tape");
            sgd.step();
            step += 1;
        });
    });
    group.finish();
}

criterion_group!(benches, bench_googlenet);
criterion_main!(benches);
