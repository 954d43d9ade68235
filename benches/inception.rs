//! Criterion benchmarks of the convolution kernels, the naive against the
//! bottleneck Inception module, and the whole GoogLeNet at the training
//! example's size: width 0.25, 1x28x28 inputs, batch 128.
//!
//! Convolution benchmarks report throughput in multiply-accumulates (MAC)
//! per second, the network benchmarks in images per second.
//!
//! ```text
//! cargo bench --bench inception
//! INCEPT_BENCH_QUICK=1 cargo bench --bench inception    # warm-up and measurement cut to 0.5 s and 1 s
//! ```

mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use incept::autograd::{Sgd, SgdConfig, Tape, Var};
use incept::models::googlenet::INCEPTION_CONFIGS;
use incept::models::{
    ForwardCtx, GoogLeNet, GoogLeNetConfig, Inception, InceptionKind, InceptionOptions, Init, Layer, Module, Variant,
};
use incept::tensor::Tensor;
use incept::tensor::conv::{Conv2dParams, conv2d, conv2d_backward};

/// mimalloc keeps freed activations for reuse; see docs/performance.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Batch size of the training example.
const BATCH: usize = 128;

/// Channel multiplier of the training example's network.
const WIDTH: f64 = 0.25;

/// A stride-1 convolution with a square kernel on a square input.
struct ConvCase {
    name: &'static str,
    batch: usize,
    c_in: usize,
    c_out: usize,
    size: usize,
    kernel: usize,
    padding: usize,
}

impl ConvCase {
    fn params(&self) -> Conv2dParams {
        Conv2dParams::new(1, self.padding)
    }

    /// Multiply-accumulates of the forward pass: one per weight tap per
    /// output pixel per image.
    fn forward_macs(&self) -> u64 {
        let out_size = self.params().h_out(self.size, self.kernel).expect("kernel fits the padded input");
        (self.batch * self.c_out * self.c_in * self.kernel * self.kernel * out_size * out_size) as u64
    }

    /// Random input `[batch, c_in, size, size]` and weight `[c_out, c_in, k, k]`.
    fn tensors(&self, seed: u64) -> (Tensor<f32>, Tensor<f32>) {
        let x = Tensor::randn([self.batch, self.c_in, self.size, self.size], 0.0, 1.0, seed);
        let std = 1.0 / ((self.c_in * self.kernel * self.kernel) as f32).sqrt();
        let w = Tensor::randn([self.c_out, self.c_in, self.kernel, self.kernel], 0.0, std, seed + 1);
        (x, w)
    }
}

/// Convolutions of the width-0.25 network, all with "same" padding: conv2 of
/// the stem, the 1x1 branch of inception 4a and the 5x5 convolution of 4a's
/// third branch.
const LAYER_CASES: [ConvCase; 3] = [
    ConvCase { name: "3x3_16to48_28x28", batch: BATCH, c_in: 16, c_out: 48, size: 28, kernel: 3, padding: 1 },
    ConvCase { name: "1x1_120to48_7x7", batch: BATCH, c_in: 120, c_out: 48, size: 7, kernel: 1, padding: 0 },
    ConvCase { name: "5x5_4to12_7x7", batch: BATCH, c_in: 4, c_out: 12, size: 7, kernel: 5, padding: 2 },
];

/// Applies the settings of a group whose iterations take tens to hundreds
/// of milliseconds: 10 samples of a fixed iteration count.
fn configure_heavy(group: &mut BenchmarkGroup<'_, WallTime>, measurement_secs: u64) {
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    support::set_times(group, Duration::from_secs(2), Duration::from_secs(measurement_secs));
}

fn bench_conv2d(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d_forward");
    group.sample_size(10);
    // Criterion's default warm-up time is 3 s.
    support::set_times(&mut group, Duration::from_secs(3), Duration::from_secs(3));
    for (i, case) in LAYER_CASES.iter().enumerate() {
        let (x, w) = case.tensors(2 * i as u64);
        group.throughput(Throughput::Elements(case.forward_macs()));
        group.bench_function(case.name, |b| {
            b.iter(|| conv2d(black_box(&x), black_box(&w), None, case.params()).expect("valid conv2d shapes"));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("conv2d_backward");
    group.sample_size(10);
    // Criterion's default warm-up time is 3 s.
    support::set_times(&mut group, Duration::from_secs(3), Duration::from_secs(3));
    for (i, case) in LAYER_CASES.iter().enumerate() {
        let (x, w) = case.tensors(2 * i as u64);
        let dy = conv2d(&x, &w, None, case.params()).expect("valid conv2d shapes");
        // The weight gradient and the input gradient are one GEMM each, both
        // the size of the forward GEMM.
        group.throughput(Throughput::Elements(2 * case.forward_macs()));
        group.bench_function(case.name, |b| {
            b.iter(|| {
                conv2d_backward(black_box(&x), black_box(&w), black_box(&dy), case.params(), true)
                    .expect("valid conv2d_backward shapes")
            });
        });
    }
    group.finish();
}

/// Compares the two ways to turn 480 maps of 14x14 into 48 maps with a 5x5
/// receptive field, per image: a direct 5x5 convolution costs
/// 14 * 14 * 48 * 480 * 25 = 112.9M MAC, while a 1x1 reduction to 16 maps
/// and then the 5x5 convolution cost 1.5M + 3.8M = 5.3M MAC.
fn bench_bottleneck(c: &mut Criterion) {
    const BOTTLENECK_BATCH: usize = 8;
    let direct =
        ConvCase { name: "direct", batch: BOTTLENECK_BATCH, c_in: 480, c_out: 48, size: 14, kernel: 5, padding: 2 };
    let reduce =
        ConvCase { name: "reduce", batch: BOTTLENECK_BATCH, c_in: 480, c_out: 16, size: 14, kernel: 1, padding: 0 };
    let after_reduce = ConvCase {
        name: "after_reduce",
        batch: BOTTLENECK_BATCH,
        c_in: 16,
        c_out: 48,
        size: 14,
        kernel: 5,
        padding: 2,
    };

    let mut group = c.benchmark_group("bottleneck_480to48_14x14");
    configure_heavy(&mut group, 5);

    let (x, w_direct) = direct.tensors(10);
    group.throughput(Throughput::Elements(direct.forward_macs()));
    group.bench_function("direct_5x5", |b| {
        b.iter(|| conv2d(black_box(&x), black_box(&w_direct), None, direct.params()).expect("valid conv2d shapes"));
    });

    let (_, w_reduce) = reduce.tensors(12);
    let (_, w_after) = after_reduce.tensors(14);
    group.throughput(Throughput::Elements(reduce.forward_macs() + after_reduce.forward_macs()));
    group.bench_function("1x1_to_16_then_5x5", |b| {
        b.iter(|| {
            let reduced = conv2d(black_box(&x), black_box(&w_reduce), None, reduce.params()).expect("valid shapes");
            conv2d(&reduced, black_box(&w_after), None, after_reduce.params()).expect("valid shapes")
        });
    });
    group.finish();
}

/// Inception configs compared naive against bottleneck, with the side of
/// each one's input map in the 224x224 network.
const MODULE_CASES: [(usize, usize); 3] = [(0, 28), (6, 14), (8, 7)];

/// Naive against bottleneck Inception module (the paper's: biases, true
/// 5x5) at full width for 3a, 4e and 5b: forward in eval mode, and forward
/// plus backward in training mode, at batch 1 and 16. Throughput is in
/// forward multiply-accumulates (the backward pass adds about two more per
/// forward one).
fn bench_inception(c: &mut Criterion) {
    let bottleneck = InceptionOptions::PAPER;
    let naive = bottleneck.with_kind(InceptionKind::Naive);
    for (index, side) in MODULE_CASES {
        let (name, config) = INCEPTION_CONFIGS[index];
        let mut group = c.benchmark_group(format!("{name}_{side}x{side}"));
        configure_heavy(&mut group, 3);
        for (kind, options) in [("naive", naive), ("bottleneck", bottleneck)] {
            let module = Inception::<f32>::with_options(name, config, options, &mut Init::new(0))
                .expect("valid Inception config");
            for batch in [1, 16] {
                let x = Tensor::randn([batch, config.c_in, side, side], 0.0, 1.0, 20);
                // Layer::macs counts one sample.
                let macs = module.macs(x.dims()).expect("input has c_in channels") * batch as u64;
                group.throughput(Throughput::Elements(macs));
                let input = Var::constant(x.clone());
                group.bench_function(format!("{kind}/forward/batch{batch}"), |b| {
                    b.iter(|| {
                        let tape = Tape::inference();
                        module.forward(&ForwardCtx::eval(&tape), black_box(&input)).expect("input has c_in channels")
                    });
                });
                group.bench_function(format!("{kind}/forward_backward/batch{batch}"), |b| {
                    b.iter(|| {
                        let tape = Tape::new();
                        let input = tape.leaf(x.clone());
                        let y = module.forward(&ForwardCtx::train(&tape, 0), &input).expect("input has c_in channels");
                        let loss = tape.sum(&y);
                        drop(y);
                        tape.backward(&loss).expect("loss is a scalar on this tape")
                    });
                });
            }
        }
        group.finish();
    }
}

fn bench_googlenet(c: &mut Criterion) {
    let config = GoogLeNetConfig { width: WIDTH, ..GoogLeNetConfig::small(Variant::Torchvision, 1, 10) };
    let images = Var::constant(Tensor::randn([BATCH, 1, 28, 28], 0.0, 1.0, 30));
    let labels: Vec<usize> = (0..BATCH).map(|i| i % 10).collect();

    let mut group = c.benchmark_group("googlenet_w0.25_28x28");
    configure_heavy(&mut group, 8);
    group.throughput(Throughput::Elements(BATCH as u64));

    let net = GoogLeNet::<f32>::new(config).expect("valid GoogLeNet config");
    group.bench_function("inference_forward", |b| {
        b.iter(|| {
            let tape = Tape::inference();
            net.forward(&ForwardCtx::eval(&tape), black_box(&images)).expect("input is [N, 1, 28, 28]").logits
        });
    });

    // The optimiser settings of the training example, with a fixed learning
    // rate in place of its one-cycle schedule, which costs a few float operations
    // per step.
    let net = GoogLeNet::<f32>::new(config).expect("valid GoogLeNet config");
    let sgd_config = SgdConfig { lr: 0.01, momentum: 0.9, weight_decay: 5e-4, nesterov: true };
    let mut sgd = Sgd::new(net.parameters(), sgd_config).expect("valid SGD config");
    let mut step = 0_u64;
    group.bench_function("train_step", |b| {
        b.iter(|| {
            sgd.zero_grad();
            let tape = Tape::new();
            let ctx = ForwardCtx::train(&tape, step << 16);
            let out = net.forward(&ctx, black_box(&images)).expect("input is [N, 1, 28, 28]");
            let loss = out.loss(&tape, &labels).expect("one label per image");
            tape.backward(&loss).expect("loss is a scalar on this tape");
            sgd.step();
            step += 1;
        });
    });
    group.finish();
}

criterion_group!(benches, bench_conv2d, bench_bottleneck, bench_inception, bench_googlenet);
criterion_main!(benches);
