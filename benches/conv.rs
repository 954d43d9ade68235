//! Criterion benchmarks of `conv2d` and `conv2d_backward` on six convolutions
//! of the full-size GoogLeNet (width 1, 224x224 inputs), at batch 1 and 16.
//!
//! Throughput is in multiply-accumulates (MAC): criterion's `elem/s` is
//! MAC/s, and 1 MAC = 2 FLOP, so GFLOP/s = 2 x the printed Gelem/s.
//!
//! ```text
//! cargo bench --bench conv
//! INCEPT_BENCH_QUICK=1 cargo bench --bench conv    # warm-up and measurement cut to 0.5 s and 1 s
//! ```

mod support;

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use incept::tensor::Tensor;
use incept::tensor::conv::{Conv2dParams, conv2d, conv2d_backward};

/// mimalloc keeps freed activations for reuse; see docs/performance.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Batch sizes. At batch 1 both passes split each large GEMM over rows of
/// the output; at batch 16 they split the batch over images.
const BATCHES: [usize; 2] = [1, 16];

/// One convolution of GoogLeNet with a square kernel on a square input.
struct ConvLayer {
    name: &'static str,
    c_in: usize,
    c_out: usize,
    size: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl ConvLayer {
    fn params(&self) -> Conv2dParams {
        Conv2dParams::new(self.stride, self.padding)
    }

    fn out_size(&self) -> usize {
        self.params().h_out(self.size, self.kernel).expect("kernel fits the padded input")
    }

    /// Multiply-accumulates of the forward pass: one per weight tap per
    /// output pixel per image.
    fn forward_macs(&self, batch: usize) -> u64 {
        let out_pixels = self.out_size() * self.out_size();
        (batch * self.c_out * self.c_in * self.kernel * self.kernel * out_pixels) as u64
    }

    /// Random input `[batch, c_in, size, size]` and weight `[c_out, c_in, k, k]`.
    fn tensors(&self, batch: usize, seed: u64) -> (Tensor<f32>, Tensor<f32>) {
        let x = Tensor::randn([batch, self.c_in, self.size, self.size], 0.0, 1.0, seed);
        let std = 1.0 / ((self.c_in * self.kernel * self.kernel) as f32).sqrt();
        let w = Tensor::randn([self.c_out, self.c_in, self.kernel, self.kernel], 0.0, std, seed + 1);
        (x, w)
    }
}

/// Layers of the 224x224 GoogLeNet. The first three are its stem's conv1 and
/// conv2 (a 1x1 reduction, then 3x3), which the 28x28 model in `incept_models`
/// replaces. The last three are the 5x5 branch of inception 4a (1x1
/// reduction, then 5x5) and the 3x3 convolution of inception 5b, with the
/// channel counts of `INCEPTION_CONFIGS`.
const LAYERS: [ConvLayer; 6] = [
    ConvLayer { name: "conv1_7x7s2_3to64_224", c_in: 3, c_out: 64, size: 224, kernel: 7, stride: 2, padding: 3 },
    ConvLayer { name: "conv2_1x1_64to64_56", c_in: 64, c_out: 64, size: 56, kernel: 1, stride: 1, padding: 0 },
    ConvLayer { name: "conv2_3x3_64to192_56", c_in: 64, c_out: 192, size: 56, kernel: 3, stride: 1, padding: 1 },
    ConvLayer { name: "4a_1x1_480to16_14", c_in: 480, c_out: 16, size: 14, kernel: 1, stride: 1, padding: 0 },
    ConvLayer { name: "4a_5x5_16to48_14", c_in: 16, c_out: 48, size: 14, kernel: 5, stride: 1, padding: 2 },
    ConvLayer { name: "5b_3x3_192to384_7", c_in: 192, c_out: 384, size: 7, kernel: 3, stride: 1, padding: 1 },
];

/// Applies settings that keep the 24 benchmarks to about two minutes: 10
/// samples of a fixed iteration count after a short warm-up.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    support::set_times(group, Duration::from_secs(1), Duration::from_secs(2));
}

fn bench_forward(c: &mut Criterion) {
    for batch in BATCHES {
        let mut group = c.benchmark_group(format!("conv_forward_batch{batch}"));
        configure(&mut group);
        for (i, layer) in LAYERS.iter().enumerate() {
            let (x, w) = layer.tensors(batch, 2 * i as u64);
            group.throughput(Throughput::Elements(layer.forward_macs(batch)));
            group.bench_function(layer.name, |b| {
                b.iter(|| conv2d(black_box(&x), black_box(&w), None, layer.params()).expect("valid conv2d shapes"));
            });
        }
        group.finish();
    }
}

fn bench_backward(c: &mut Criterion) {
    for batch in BATCHES {
        let mut group = c.benchmark_group(format!("conv_backward_batch{batch}"));
        configure(&mut group);
        for (i, layer) in LAYERS.iter().enumerate() {
            let (x, w) = layer.tensors(batch, 2 * i as u64);
            let dy = conv2d(&x, &w, None, layer.params()).expect("valid conv2d shapes");
            // The weight gradient and the input gradient are one GEMM each,
            // both the size of the forward GEMM. The input gradient is
            // requested for conv1 too, although a network never needs it there.
            group.throughput(Throughput::Elements(2 * layer.forward_macs(batch)));
            group.bench_function(layer.name, |b| {
                b.iter(|| {
                    conv2d_backward(black_box(&x), black_box(&w), black_box(&dy), layer.params(), true)
                        .expect("valid conv2d_backward shapes")
                });
            });
        }
        group.finish();
    }
}

/// The stem's 3x3 convolution of the small-input network (16 to 48 channels
/// at 28x28, batch 64) on ordinary inputs and on inputs scaled into the
/// subnormal range (1e-39), where some CPUs slow down by orders of
/// magnitude. If the two times match, flush-to-zero is not needed here.
fn bench_subnormal(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d_subnormal_inputs");
    group.sample_size(10);
    support::set_times(&mut group, Duration::from_secs(1), Duration::from_secs(2));
    let params = Conv2dParams::new(1, 1);
    let w = Tensor::<f32>::randn([48, 16, 3, 3], 0.0, 0.1, 2);
    for (name, scale) in [("normal", 1.0f32), ("subnormal", 1e-39f32)] {
        let mut x = Tensor::<f32>::randn([64, 16, 28, 28], 0.0, 1.0, 1);
        x.data_mut().iter_mut().for_each(|v| *v *= scale);
        let dy = conv2d(&x, &w, None, params).expect("valid shapes");
        group.bench_function(format!("forward_{name}"), |b| {
            b.iter(|| conv2d(black_box(&x), black_box(&w), None, params).expect("valid shapes"))
        });
        group.bench_function(format!("backward_{name}"), |b| {
            b.iter(|| {
                conv2d_backward(black_box(&x), black_box(&w), black_box(&dy), params, true).expect("valid shapes")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_forward, bench_backward, bench_subnormal);
criterion_main!(benches);
