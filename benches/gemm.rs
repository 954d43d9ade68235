//! Criterion benchmarks of f32 `gemm` (one thread), `gemm_par` (rows of C
//! split across rayon workers) and incept's packed GEMM (`gemm_f32` with each
//! SIMD backend this CPU supports, tiles split across rayon workers) on
//! square matrices and on the per-image GEMMs of the convolutions in
//! `benches/conv.rs`.
//!
//! Throughput is in multiply-accumulates (MAC): criterion's `elem/s` is
//! MAC/s, and 1 MAC = 2 FLOP, so GFLOP/s = 2 x the printed Gelem/s.
//!
//! ```text
//! cargo bench --bench gemm
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use incept::tensor::gemm::{GemmBackend, MatMut, MatRef, gemm, gemm_f32, gemm_par};

/// mimalloc keeps freed activations for reuse; see docs/performance.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Shape of `C <- A * B` with `A` of `m x k` and `B` of `k x n`, all row-major.
struct GemmShape {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
}

impl GemmShape {
    fn macs(&self) -> u64 {
        (self.m * self.k * self.n) as u64
    }
}

const SQUARE: [GemmShape; 3] = [
    GemmShape { name: "256", m: 256, k: 256, n: 256 },
    GemmShape { name: "512", m: 512, k: 512, n: 512 },
    GemmShape { name: "1024", m: 1024, k: 1024, n: 1024 },
];

/// The forward GEMM of one image for each layer of `benches/conv.rs`:
/// `m = c_out`, `k = c_in * k_h * k_w` and `n = h_out * w_out`.
const CONV: [GemmShape; 6] = [
    GemmShape { name: "conv1_7x7s2_3to64_224", m: 64, k: 3 * 7 * 7, n: 112 * 112 },
    GemmShape { name: "conv2_1x1_64to64_56", m: 64, k: 64, n: 56 * 56 },
    GemmShape { name: "conv2_3x3_64to192_56", m: 192, k: 64 * 3 * 3, n: 56 * 56 },
    GemmShape { name: "4a_1x1_480to16_14", m: 16, k: 480, n: 14 * 14 },
    GemmShape { name: "4a_5x5_16to48_14", m: 48, k: 16 * 5 * 5, n: 14 * 14 },
    GemmShape { name: "5b_3x3_192to384_7", m: 384, k: 192 * 3 * 3, n: 7 * 7 },
];

/// Fills a matrix with small values that neither overflow nor turn
/// subnormal, so the timing does not depend on the data.
fn operand(len: usize, seed: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7 + seed) % 17) as f32 / 8.0 - 1.0).collect()
}

/// Applies settings that keep the whole run to about a minute: 10 samples
/// of a fixed iteration count after a short warm-up.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(2));
}

/// Benchmarks every shape through `gemm` and through `gemm_par`.
fn bench_shapes(c: &mut Criterion, group_name: &str, shapes: &[GemmShape]) {
    let mut group = c.benchmark_group(group_name);
    configure(&mut group);
    for shape in shapes {
        let GemmShape { m, k, n, .. } = *shape;
        let a = operand(m * k, 1);
        let b = operand(k * n, 2);
        let mut out = vec![0.0f32; m * n];
        group.throughput(Throughput::Elements(shape.macs()));
        group.bench_function(format!("gemm/{}", shape.name), |bencher| {
            bencher.iter(|| {
                let a = MatRef::row_major(black_box(&a), m, k);
                let b = MatRef::row_major(black_box(&b), k, n);
                gemm(1.0, a, b, 0.0, MatMut::row_major(&mut out, m, n));
            });
        });
        group.bench_function(format!("gemm_par/{}", shape.name), |bencher| {
            bencher.iter(|| {
                let a = MatRef::row_major(black_box(&a), m, k);
                let b = MatRef::row_major(black_box(&b), k, n);
                gemm_par(1.0, a, b, 0.0, &mut out);
            });
        });
        for backend in [GemmBackend::Avx2, GemmBackend::Avx512].into_iter().filter(|b| b.is_supported()) {
            group.bench_function(format!("packed_{backend}/{}", shape.name), |bencher| {
                bencher.iter(|| {
                    let a = MatRef::row_major(black_box(&a), m, k);
                    let b = MatRef::row_major(black_box(&b), k, n);
                    gemm_f32(backend, a, b, 0.0, MatMut::row_major(&mut out, m, n)).unwrap();
                });
            });
        }
    }
    group.finish();
}

fn bench_square(c: &mut Criterion) {
    bench_shapes(c, "gemm_square_f32", &SQUARE);
}

fn bench_conv_shapes(c: &mut Criterion) {
    bench_shapes(c, "gemm_conv_f32", &CONV);
}

criterion_group!(benches, bench_square, bench_conv_shapes);
criterion_main!(benches);
