//! Fast kernels against the naive reference kernels, on random and edge-case shapes.

use incept_tensor::batch_norm::{
    batch_norm2d_backward, batch_norm2d_eval, batch_norm2d_train, fold_batch_norm, update_running_stats,
};
use incept_tensor::conv::{Conv2dParams, conv2d, conv2d_backward, conv2d_relu};
use incept_tensor::elementwise::{
    add_scalar, concat_channels, dropout_mask, exp, ln, max_all, mean_all, relu, relu_backward, slice_channels, sqrt,
};
use incept_tensor::gemm::{GemmBackend, with_backend};
use incept_tensor::linear::{linear, linear_backward};
use incept_tensor::lrn::{LrnParams, lrn};
use incept_tensor::pool::{
    Pool2dParams, adaptive_avg_pool2d, adaptive_avg_pool2d_backward, avg_pool2d, avg_pool2d_backward, max_pool2d,
    max_pool2d_backward, max_pool2d_with_indices,
};
use incept_tensor::softmax::{
    cross_entropy, cross_entropy_backward, cross_entropy_smoothed, log_softmax, log_softmax_axis, log_softmax_backward,
    softmax,
};
use incept_tensor::{Tensor, TensorError, reference};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Relative-plus-absolute closeness: `|a - b| <= atol + rtol * |b|` for every element.
fn assert_close(actual: &Tensor<f64>, expected: &Tensor<f64>, rtol: f64, atol: f64, what: &str) {
    assert_eq!(actual.dims(), expected.dims(), "{what}: shape");
    for (i, (&a, &e)) in actual.data().iter().zip(expected.data()).enumerate() {
        assert!((a - e).abs() <= atol + rtol * e.abs(), "{what}: element {i} is {a}, expected {e}");
    }
}

fn randn(dims: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::randn(dims, 0.0, 1.0, seed)
}

/// One convolution problem: input and weight shapes plus geometry.
#[derive(Clone, Copy, Debug)]
struct ConvCase {
    x: [usize; 4],
    c_out: usize,
    kernel: (usize, usize),
    params: Conv2dParams,
}

fn conv_case(
    x: [usize; 4],
    c_out: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
) -> ConvCase {
    ConvCase { x, c_out, kernel, params: Conv2dParams { stride, padding, dilation, groups: 1 } }
}

/// Edge cases named in the design: padding >= kernel, stride > kernel, 1x1
/// with stride 2, batch 1, odd and non-square sizes, dilation.
fn conv_edge_cases() -> Vec<ConvCase> {
    vec![
        conv_case([2, 3, 5, 5], 4, (1, 1), (1, 1), (0, 0), (1, 1)),
        conv_case([1, 3, 5, 7], 2, (1, 1), (2, 2), (0, 0), (1, 1)),
        conv_case([2, 2, 4, 4], 3, (1, 1), (1, 1), (1, 1), (1, 1)),
        conv_case([1, 2, 6, 5], 3, (3, 3), (1, 1), (1, 1), (1, 1)),
        conv_case([3, 2, 7, 7], 2, (3, 3), (4, 4), (0, 0), (1, 1)),
        conv_case([2, 1, 3, 3], 2, (2, 2), (1, 1), (3, 3), (1, 1)),
        conv_case([2, 3, 9, 6], 4, (5, 3), (2, 1), (2, 0), (1, 1)),
        conv_case([1, 2, 9, 9], 2, (3, 3), (1, 2), (2, 1), (2, 2)),
        conv_case([2, 4, 1, 1], 3, (1, 1), (1, 1), (0, 0), (1, 1)),
        conv_case([1, 1, 28, 28], 4, (3, 3), (1, 1), (1, 1), (1, 1)),
        // Batch 1 with a product above the threshold that splits the GEMM
        // rows across threads.
        conv_case([1, 16, 28, 28], 64, (3, 3), (1, 1), (1, 1), (1, 1)),
        // Batches that split into several multi-image GEMM chunks, the last one partial.
        conv_case([9, 3, 4, 4], 5, (1, 1), (1, 1), (0, 0), (1, 1)),
        conv_case([9, 3, 4, 4], 5, (3, 3), (1, 1), (1, 1), (1, 1)),
        conv_case([7, 2, 7, 7], 3, (5, 5), (1, 1), (2, 2), (1, 1)),
        // Groups: depthwise, depthwise with a channel multiplier, grouped 1x1
        // (the pointwise path) and grouped with stride.
        grouped(conv_case([2, 4, 6, 6], 4, (3, 3), (1, 1), (1, 1), (1, 1)), 4),
        grouped(conv_case([1, 3, 5, 5], 6, (3, 3), (1, 1), (1, 1), (1, 1)), 3),
        grouped(conv_case([2, 6, 4, 4], 9, (1, 1), (1, 1), (0, 0), (1, 1)), 3),
        grouped(conv_case([1, 4, 7, 5], 2, (3, 2), (2, 1), (1, 0), (1, 1)), 2),
        grouped(conv_case([1, 16, 28, 28], 32, (3, 3), (1, 1), (1, 1), (1, 1)), 16),
    ]
}

fn grouped(case: ConvCase, groups: usize) -> ConvCase {
    ConvCase { params: case.params.with_groups(groups), ..case }
}

fn conv_weight_dims(case: &ConvCase) -> [usize; 4] {
    [case.c_out, case.x[1] / case.params.groups, case.kernel.0, case.kernel.1]
}

fn random_conv_cases(count: usize, seed: u64) -> Vec<ConvCase> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut cases = Vec::new();
    while cases.len() < count {
        let k = (rng.random_range(1..=5), rng.random_range(1..=5));
        let stride = (rng.random_range(1..=3), rng.random_range(1..=3));
        let padding = (rng.random_range(0..=3), rng.random_range(0..=3));
        let dilation = (rng.random_range(1..=2), rng.random_range(1..=2));
        let groups = rng.random_range(1..=3);
        let c_in = groups * rng.random_range(1..=2);
        let x = [rng.random_range(1..=3), c_in, rng.random_range(1..=10), rng.random_range(1..=10)];
        let c_out = groups * rng.random_range(1..=2);
        let case = grouped(conv_case(x, c_out, k, stride, padding, dilation), groups);
        if case.params.h_out(x[2], k.0).is_some() && case.params.w_out(x[3], k.1).is_some() {
            cases.push(case);
        }
    }
    cases
}

#[test]
fn conv2d_forward_matches_reference() {
    for (i, case) in conv_edge_cases().into_iter().chain(random_conv_cases(50, 1)).enumerate() {
        let x = randn(&case.x, 10 + i as u64);
        let w = randn(&conv_weight_dims(&case), 20 + i as u64);
        let b = randn(&[case.c_out], 30 + i as u64);
        let expected = reference::conv2d(&x, &w, Some(&b), case.params);
        let got = conv2d(&x, &w, Some(&b), case.params).unwrap();
        assert_close(&got, &expected, 1e-12, 1e-12, &format!("f64 {case:?}"));
        let got32 = conv2d(&x.cast::<f32>(), &w.cast(), Some(&b.cast()), case.params).unwrap();
        assert_close(&got32.cast(), &expected, 1e-4, 1e-4, &format!("f32 {case:?}"));
    }
}

#[test]
fn conv2d_relu_matches_reference() {
    for (i, case) in conv_edge_cases().into_iter().chain(random_conv_cases(20, 7)).enumerate() {
        let x = randn(&case.x, 1200 + i as u64);
        let w = randn(&conv_weight_dims(&case), 1300 + i as u64);
        let b = randn(&[case.c_out], 1400 + i as u64);
        let mut expected = reference::conv2d(&x, &w, Some(&b), case.params);
        expected.data_mut().iter_mut().for_each(|v| *v = v.max(0.0));
        let got = conv2d_relu(&x, &w, Some(&b), case.params).unwrap();
        assert_close(&got, &expected, 1e-12, 1e-12, &format!("with bias {case:?}"));
        let mut expected = reference::conv2d(&x, &w, None, case.params);
        expected.data_mut().iter_mut().for_each(|v| *v = v.max(0.0));
        let got = conv2d_relu(&x, &w, None, case.params).unwrap();
        assert_close(&got, &expected, 1e-12, 1e-12, &format!("without bias {case:?}"));
    }
}

#[test]
fn conv2d_backward_matches_reference() {
    for (i, case) in conv_edge_cases().into_iter().chain(random_conv_cases(50, 2)).enumerate() {
        let x = randn(&case.x, 40 + i as u64);
        let w = randn(&conv_weight_dims(&case), 50 + i as u64);
        let y = reference::conv2d(&x, &w, None, case.params);
        let dy = randn(y.dims(), 60 + i as u64);
        let (dx, dw, db) = reference::conv2d_backward(&x, &w, &dy, case.params);
        let grads = conv2d_backward(&x, &w, &dy, case.params, true).unwrap();
        assert_close(grads.input.as_ref().unwrap(), &dx, 1e-12, 1e-12, &format!("dx {case:?}"));
        assert_close(&grads.weight, &dw, 1e-12, 1e-12, &format!("dw {case:?}"));
        assert_close(&grads.bias, &db, 1e-12, 1e-12, &format!("db {case:?}"));
        let without_dx = conv2d_backward(&x, &w, &dy, case.params, false).unwrap();
        assert!(without_dx.input.is_none());
        assert_close(&without_dx.weight, &dw, 1e-12, 1e-12, &format!("dw without dx {case:?}"));
    }
}

/// Integer values in -3..=3: every product and sum in these tests is then
/// exact in f32, so each backend must equal the f64 reference bit for bit.
fn small_ints(dims: &[usize], seed: u64) -> Tensor<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let len = dims.iter().product();
    Tensor::from_vec((0..len).map(|_| f64::from(rng.random_range(-3i32..=3))).collect(), dims).unwrap()
}

fn supported_backends() -> Vec<GemmBackend> {
    GemmBackend::ALL.into_iter().filter(|b| b.is_supported()).collect()
}

/// Runs `conv2d`, `conv2d_relu` and `conv2d_backward` in f32 on `backend`
/// with integer data and compares them with the f64 reference exactly.
fn check_conv_exact(backend: GemmBackend, case: &ConvCase, seed: u64) {
    let what = format!("{backend} {case:?}");
    let x = small_ints(&case.x, seed);
    let w = small_ints(&conv_weight_dims(case), seed + 1);
    let b = small_ints(&[case.c_out], seed + 2);
    let expected = reference::conv2d(&x, &w, Some(&b), case.params);
    let (x32, w32, b32) = (x.cast::<f32>(), w.cast::<f32>(), b.cast::<f32>());
    with_backend(backend, || {
        let got = conv2d(&x32, &w32, Some(&b32), case.params).unwrap();
        assert_eq!(got.cast::<f64>(), expected, "forward {what}");

        let got = conv2d_relu(&x32, &w32, Some(&b32), case.params).unwrap();
        assert_eq!(got.cast::<f64>(), relu(&expected), "forward with ReLU {what}");

        let dy = small_ints(expected.dims(), seed + 3);
        let (dx, dw, db) = reference::conv2d_backward(&x, &w, &dy, case.params);
        let grads = conv2d_backward(&x32, &w32, &dy.cast(), case.params, true).unwrap();
        assert_eq!(grads.input.unwrap().cast::<f64>(), dx, "input gradient {what}");
        assert_eq!(grads.weight.cast::<f64>(), dw, "weight gradient {what}");
        assert_eq!(grads.bias.cast::<f64>(), db, "bias gradient {what}");
    })
    .unwrap();
}

#[test]
fn conv2d_backends_match_reference_exactly() {
    // The last case spans three depth blocks of the packed GEMM (k = 576)
    // and is large enough to be split across workers.
    let large = conv_case([2, 64, 14, 14], 96, (3, 3), (1, 1), (1, 1), (1, 1));
    let cases = conv_edge_cases().into_iter().chain(random_conv_cases(40, 11)).chain([large]);
    for (i, case) in cases.enumerate() {
        for backend in supported_backends() {
            check_conv_exact(backend, &case, 5000 + 10 * i as u64);
        }
    }
}

#[test]
fn conv2d_relu_keeps_nan_on_every_backend() {
    let mut x = Tensor::<f32>::ones([2, 3, 5, 5]);
    x.data_mut()[3 * 25 + 7] = f32::NAN; // image 1, channel 0, row 1, column 2
    let w = Tensor::<f32>::full([4, 3, 1, 1], -1.0);
    for backend in supported_backends() {
        let y = with_backend(backend, || conv2d_relu(&x, &w, None, Conv2dParams::default()).unwrap()).unwrap();
        for (i, v) in y.data().iter().enumerate() {
            let in_nan_pixel = i / 100 == 1 && i % 25 == 7;
            assert_eq!(v.is_nan(), in_nan_pixel, "{backend} element {i} is {v}");
            if !in_nan_pixel {
                assert_eq!(*v, 0.0, "{backend} element {i}");
            }
        }
    }
}

#[test]
fn conv2d_rejects_bad_shapes() {
    let x = Tensor::<f32>::zeros([1, 3, 5, 5]);
    let err = conv2d(&x, &Tensor::zeros([4, 2, 3, 3]), None, Conv2dParams::default()).unwrap_err();
    assert!(matches!(err, TensorError::ShapeMismatch { op: "conv2d", .. }), "{err}");
    assert!(err.to_string().contains("3 channels"), "{err}");
    let err = conv2d(&x, &Tensor::zeros([4, 3, 7, 7]), None, Conv2dParams::default()).unwrap_err();
    assert!(err.to_string().contains("larger than the input"), "{err}");
    let err = conv2d(&x, &Tensor::zeros([4, 3, 3, 3]), None, Conv2dParams::new(0, 0)).unwrap_err();
    assert!(err.to_string().contains("stride"), "{err}");
    let err = conv2d(&x, &Tensor::zeros([4, 3, 3, 3]), Some(&Tensor::zeros([3])), Conv2dParams::default()).unwrap_err();
    assert!(err.to_string().contains("bias"), "{err}");
    let err = conv2d(&Tensor::<f32>::zeros([3, 5, 5]), &Tensor::zeros([4, 3, 3, 3]), None, Conv2dParams::default())
        .unwrap_err();
    assert!(matches!(err, TensorError::Rank { expected: 4, .. }), "{err}");
}

#[test]
fn conv2d_rejects_empty_and_overflowing_geometry() {
    let params = Conv2dParams::new(1, 1);
    let err = conv2d(&Tensor::<f32>::zeros([2, 0, 5, 5]), &Tensor::zeros([4, 0, 3, 3]), None, params).unwrap_err();
    assert!(err.to_string().contains("zero dimension"), "{err}");
    let err = conv2d(&Tensor::<f32>::zeros([2, 3, 5, 0]), &Tensor::zeros([4, 3, 1, 1]), None, params).unwrap_err();
    assert!(err.to_string().contains("empty image plane"), "{err}");
    let dy = Tensor::<f32>::zeros([2, 4, 5, 5]);
    let err = conv2d_backward(&Tensor::zeros([2, 0, 5, 5]), &Tensor::zeros([4, 0, 3, 3]), &dy, params, true);
    assert!(err.is_err());
    let huge = Conv2dParams { stride: (1, 1), padding: (0, 0), dilation: (usize::MAX / 2 + 1, 1), groups: 1 };
    let err = conv2d(&Tensor::<f32>::zeros([1, 1, 5, 3]), &Tensor::zeros([1, 1, 3, 1]), None, huge).unwrap_err();
    assert!(err.to_string().contains("larger than the input"), "{err}");
    let err = conv2d(&Tensor::<f32>::zeros([1, 4, 5, 5]), &Tensor::zeros([3, 2, 3, 3]), None, params.with_groups(2));
    assert!(err.unwrap_err().to_string().contains("groups = 2 must be at least 1 and divide"));
    let err = conv2d(&Tensor::<f32>::zeros([1, 4, 5, 5]), &Tensor::zeros([4, 4, 3, 3]), None, params.with_groups(2));
    assert!(err.unwrap_err().to_string().contains("expects 8 (4 per group, 2 groups"));
    assert!(
        conv2d(&Tensor::<f32>::zeros([1, 4, 5, 5]), &Tensor::zeros([4, 4, 3, 3]), None, params.with_groups(0)).is_err()
    );
    // An empty batch is valid and gives an empty output, as in PyTorch.
    let y = conv2d(&Tensor::<f32>::zeros([0, 3, 5, 5]), &Tensor::zeros([4, 3, 3, 3]), None, params).unwrap();
    assert_eq!(y.dims(), &[0, 4, 5, 5]);
}

#[test]
fn conv2d_backward_is_deterministic() {
    let x = randn(&[37, 3, 9, 9], 700).cast::<f32>();
    let w = randn(&[5, 3, 3, 3], 701).cast::<f32>();
    let dy = randn(&[37, 5, 9, 9], 702).cast::<f32>();
    let first = conv2d_backward(&x, &w, &dy, Conv2dParams::new(1, 1), true).unwrap();
    for _ in 0..5 {
        let again = conv2d_backward(&x, &w, &dy, Conv2dParams::new(1, 1), true).unwrap();
        assert_eq!(again.weight, first.weight);
        assert_eq!(again.bias, first.bias);
        assert_eq!(again.input, first.input);
    }
}

/// Runs `conv2d_relu` and `conv2d_backward` on `backend` with random
/// (not integer) data, so that any change in summation order shows.
fn conv_outputs(backend: GemmBackend, case: &ConvCase, seed: u64) -> [Tensor<f32>; 4] {
    let x = randn(&case.x, seed).cast::<f32>();
    let w = randn(&conv_weight_dims(case), seed + 1).cast::<f32>();
    let b = randn(&[case.c_out], seed + 2).cast::<f32>();
    with_backend(backend, || {
        let y = conv2d_relu(&x, &w, Some(&b), case.params).unwrap();
        let dy = randn(y.dims(), seed + 3).cast::<f32>();
        let grads = conv2d_backward(&x, &w, &dy, case.params, true).unwrap();
        [y, grads.input.unwrap(), grads.weight, grads.bias]
    })
    .unwrap()
}

#[test]
fn conv2d_same_on_split_and_serial_gemm() {
    // Inside `serial.install` the kernels run on the worker of a one-thread
    // pool, so the packed GEMM keeps one task and the weight gradient one
    // block per group. On this thread they split across the global pool.
    // NOTE: with a single CPU (or RAYON_NUM_THREADS=1) both runs are serial
    // and the test compares a path with itself.
    let serial = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let cases = [
        conv_case([3, 64, 14, 14], 96, (3, 3), (1, 1), (1, 1), (1, 1)),
        conv_case([2, 32, 40, 40], 67, (3, 3), (1, 1), (1, 1), (1, 1)),
        conv_case([5, 48, 7, 7], 130, (1, 1), (1, 1), (0, 0), (1, 1)),
        conv_case([2, 3, 64, 64], 20, (7, 7), (2, 2), (3, 3), (1, 1)),
        grouped(conv_case([4, 16, 28, 28], 32, (3, 3), (1, 1), (1, 1), (1, 1)), 16),
        grouped(conv_case([3, 12, 20, 18], 12, (3, 2), (1, 2), (2, 1), (2, 1)), 3),
    ];
    let names = ["output", "input gradient", "weight gradient", "bias gradient"];
    for backend in supported_backends() {
        for (i, case) in cases.iter().enumerate() {
            let seed = 8000 + 10 * i as u64;
            let split = conv_outputs(backend, case, seed);
            let one_worker = serial.install(|| conv_outputs(backend, case, seed));
            for ((name, a), b) in names.iter().zip(&split).zip(&one_worker) {
                let same_bits = a.data().iter().zip(b.data()).all(|(x, y)| x.to_bits() == y.to_bits());
                assert!(same_bits, "{backend} {name} differs between split and serial runs, {case:?}");
            }
        }
    }
}

#[test]
fn shapes_that_overflow_are_rejected() {
    let err = Tensor::<f32>::from_vec(vec![], [1 << 32, 1 << 32]).unwrap_err();
    assert!(matches!(err, TensorError::ElementCount { .. }), "{err}");
    let result = std::panic::catch_unwind(|| Tensor::<f32>::zeros([1 << 32, 1 << 32]));
    let message = *result.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("more than usize::MAX elements"), "{message}");
    assert!(Tensor::<f32>::zeros([4]).reshape([1 << 32, 1 << 32, 4]).is_err());
}

#[test]
fn pool_output_sizes_follow_pytorch() {
    // (input, kernel, stride, padding, ceil_mode, size PyTorch 2.x reports)
    let cases = [
        (112, 3, 2, 0, true, 56),
        (56, 3, 2, 0, true, 28),
        (28, 3, 2, 0, true, 14),
        (14, 3, 2, 0, true, 7),
        (7, 3, 2, 0, true, 3),
        (7, 3, 2, 1, true, 4),
        (7, 3, 2, 0, false, 3),
        (28, 3, 2, 0, false, 13),
        // The last window would start in the right padding, so it is dropped.
        (5, 2, 2, 1, true, 3),
        (6, 3, 3, 0, true, 2),
        (1, 1, 2, 0, true, 1),
    ];
    for (size, k, s, p, ceil, expected) in cases {
        let params = Pool2dParams::new(k, s, p, ceil);
        assert_eq!(params.h_out(size), Some(expected), "size {size} k {k} s {s} p {p} ceil {ceil}");
    }
}

fn pool_cases() -> Vec<([usize; 4], Pool2dParams)> {
    let mut cases = vec![
        ([2, 3, 28, 28], Pool2dParams::new(3, 2, 0, true)),
        ([1, 2, 7, 7], Pool2dParams::new(3, 2, 1, true)),
        ([2, 2, 7, 7], Pool2dParams::new(3, 2, 0, false)),
        ([1, 1, 5, 5], Pool2dParams::new(2, 2, 1, true)),
        ([2, 2, 6, 9], Pool2dParams { kernel: (2, 3), stride: (3, 1), padding: (1, 1), ceil_mode: true }),
        ([1, 3, 4, 4], Pool2dParams::new(1, 3, 0, false)),
        // Stride 1, the Inception pool branch, takes its own plane-wide path.
        ([2, 3, 14, 14], Pool2dParams::new(3, 1, 1, true)),
        ([1, 2, 4, 4], Pool2dParams::new(3, 1, 1, true)),
        ([2, 2, 7, 7], Pool2dParams::new(3, 1, 0, false)),
        ([1, 1, 5, 7], Pool2dParams { kernel: (2, 3), stride: (1, 1), padding: (1, 1), ceil_mode: false }),
        ([1, 1, 1, 1], Pool2dParams::new(3, 1, 1, true)),
    ];
    let mut rng = StdRng::seed_from_u64(3);
    // At least 50 random cases after the named ones.
    let wanted = cases.len() + 50;
    while cases.len() < wanted {
        let k = (rng.random_range(1..=4), rng.random_range(1..=4));
        let params = Pool2dParams {
            kernel: k,
            stride: (rng.random_range(1..=4), rng.random_range(1..=4)),
            padding: (rng.random_range(0..=k.0 / 2), rng.random_range(0..=k.1 / 2)),
            ceil_mode: rng.random(),
        };
        let x = [rng.random_range(1..=2), rng.random_range(1..=3), rng.random_range(1..=9), rng.random_range(1..=9)];
        if matches!((params.h_out(x[2]), params.w_out(x[3])), (Some(h), Some(w)) if h > 0 && w > 0) {
            cases.push((x, params));
        }
    }
    cases
}

#[test]
fn max_pool2d_matches_reference() {
    for (i, (dims, params)) in pool_cases().into_iter().enumerate() {
        let x = randn(&dims, 70 + i as u64);
        let (expected, expected_idx) = reference::max_pool2d(&x, params);
        let got = max_pool2d(&x, params).unwrap();
        assert_close(&got, &expected, 0.0, 0.0, &format!("{dims:?} {params:?}"));
        assert_eq!(max_pool2d_with_indices(&x, params).unwrap().indices, expected_idx, "{dims:?} {params:?}");
        let got32 = max_pool2d(&x.cast::<f32>(), params).unwrap();
        assert_close(&got32.cast(), &expected.cast::<f32>().cast(), 0.0, 0.0, &format!("f32 {dims:?} {params:?}"));
        assert_eq!(
            max_pool2d_with_indices(&x.cast::<f32>(), params).unwrap().indices,
            expected_idx,
            "f32 {dims:?} {params:?}"
        );
    }
}

#[test]
fn max_pool2d_backward_routes_to_argmax() {
    for (i, (dims, params)) in pool_cases().into_iter().enumerate() {
        let x = randn(&dims, 80 + i as u64);
        let out = max_pool2d_with_indices(&x, params).unwrap();
        assert_eq!(out.output, max_pool2d(&x, params).unwrap(), "values with and without indices agree");
        let dy = randn(out.output.dims(), 90 + i as u64);
        let dx = max_pool2d_backward(&dy, &out.indices, &dims).unwrap();
        // Reference: scatter-add dy onto the reference argmax.
        let (_, idx) = reference::max_pool2d(&x, params);
        let mut expected = Tensor::<f64>::zeros(dims);
        let (plane_in, plane_out) = (dims[2] * dims[3], out.output.dims()[2] * out.output.dims()[3]);
        for (o, (&g, &k)) in dy.data().iter().zip(&idx).enumerate() {
            expected.data_mut()[(o / plane_out) * plane_in + k as usize] += g;
        }
        assert_close(&dx, &expected, 1e-15, 0.0, &format!("{dims:?} {params:?}"));
    }
}

#[test]
fn max_pool2d_ties_go_to_first_element() {
    let x = Tensor::<f32>::from_vec(vec![1.0, 1.0, 1.0, 1.0], [1, 1, 2, 2]).unwrap();
    let params = Pool2dParams::new(2, 2, 0, false);
    let indices = max_pool2d_with_indices(&x, params).unwrap().indices;
    assert_eq!(indices, vec![0]);
    let dx = max_pool2d_backward(&Tensor::<f32>::ones([1, 1, 1, 1]), &indices, x.dims()).unwrap();
    assert_eq!(dx.data(), &[1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn max_pool2d_ties_and_infinities_with_stride_one() {
    let params = Pool2dParams::new(3, 1, 1, true);
    let flat = Tensor::<f32>::full([1, 1, 3, 3], 2.0);
    // Each window's first input element in row-major order wins a tie.
    assert_eq!(max_pool2d_with_indices(&flat, params).unwrap().indices, vec![0, 0, 1, 0, 0, 1, 3, 3, 4]);
    let low = Tensor::<f32>::full([1, 1, 3, 3], f32::NEG_INFINITY);
    assert_eq!(max_pool2d_with_indices(&low, params).unwrap().indices, vec![0, 0, 1, 0, 0, 1, 3, 3, 4]);
    assert!(max_pool2d(&low, params).unwrap().data().iter().all(|&v| v == f32::NEG_INFINITY));
}

#[test]
fn max_pool2d_propagates_nan_like_pytorch() {
    let nan = f64::NAN;
    let x = Tensor::<f64>::from_vec(vec![1.0, nan, 3.0, nan, 0.0, 2.0, 5.0, 4.0, 6.0], [1, 1, 3, 3]).unwrap();
    let params = Pool2dParams::new(2, 1, 0, false);
    let got = max_pool2d(&x, params).unwrap();
    let (expected, expected_idx) = reference::max_pool2d(&x, params);
    // Windows 0, 1 and 2 contain a NaN; the last NaN in window order wins.
    let indices = max_pool2d_with_indices(&x, params).unwrap().indices;
    assert_eq!(indices, vec![3, 1, 3, 8]);
    assert_eq!(indices, expected_idx);
    assert!(got.data()[..3].iter().all(|v| v.is_nan()));
    assert_eq!(got.data()[3], 6.0);
    assert_eq!(expected.data()[3], 6.0);
}

#[test]
fn max_pool2d_rejects_bad_geometry() {
    let x = Tensor::<f32>::zeros([1, 1, 4, 4]);
    let err = max_pool2d(&x, Pool2dParams::new(2, 2, 2, false)).unwrap_err();
    assert!(err.to_string().contains("at most half"), "{err}");
    let err = max_pool2d(&x, Pool2dParams::new(5, 1, 0, false)).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
    let err = max_pool2d(&x, Pool2dParams::new(2, 0, 0, false)).unwrap_err();
    assert!(err.to_string().contains("stride"), "{err}");
    let err = max_pool2d(&Tensor::<f32>::zeros([1, 1, 0, 2]), Pool2dParams::new(2, 1, 1, false)).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let huge_padding = Pool2dParams::new(2, 1, usize::MAX / 2 + 1, false);
    let err = max_pool2d(&x, huge_padding).unwrap_err();
    assert!(err.to_string().contains("at most half"), "{err}");
}

#[test]
fn avg_pool2d_matches_reference() {
    for (i, (dims, params)) in pool_cases().into_iter().enumerate() {
        for count_include_pad in [true, false] {
            let what = format!("{dims:?} {params:?} count_include_pad {count_include_pad}");
            let x = randn(&dims, 800 + i as u64);
            let expected = reference::avg_pool2d(&x, params, count_include_pad);
            assert_close(&avg_pool2d(&x, params, count_include_pad).unwrap(), &expected, 1e-12, 1e-12, &what);
            let got32 = avg_pool2d(&x.cast::<f32>(), params, count_include_pad).unwrap();
            assert_close(&got32.cast(), &expected, 1e-4, 1e-5, &format!("f32 {what}"));
            // Backward is the adjoint: <pool(x), dy> == <x, pool_backward(dy)>.
            let dy = randn(expected.dims(), 900 + i as u64);
            let dx = avg_pool2d_backward(&dy, &dims, params, count_include_pad).unwrap();
            let lhs: f64 = expected.data().iter().zip(dy.data()).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.data().iter().zip(dx.data()).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-10, "{what}: {lhs} vs {rhs}");
        }
    }
}

#[test]
fn avg_pool2d_divisor_follows_pytorch() {
    // 3x3 input of ones, 2x2 windows, stride 2, padding 1, ceil mode: the
    // four windows hold one, two, two and four input elements. With
    // count_include_pad every window divides by its full area of 4 (PyTorch's
    // rule), without it by the elements it holds.
    let x = Tensor::<f64>::ones([1, 1, 3, 3]);
    let params = Pool2dParams::new(2, 2, 1, true);
    let with_pad = avg_pool2d(&x, params, true).unwrap();
    assert_eq!(with_pad.data(), &[0.25, 0.5, 0.5, 1.0]);
    let without_pad = avg_pool2d(&x, params, false).unwrap();
    assert_eq!(without_pad.data(), &[1.0, 1.0, 1.0, 1.0]);
}

#[test]
fn lrn_matches_reference() {
    let cases = [
        ([2, 7, 3, 3], LrnParams::GOOGLENET),
        // Fewer channels than the window: every channel is at an edge.
        ([1, 3, 2, 2], LrnParams::GOOGLENET),
        ([2, 6, 2, 3], LrnParams { size: 4, alpha: 0.5, beta: 0.75, k: 2.0 }),
        ([1, 4, 1, 1], LrnParams { size: 1, alpha: 1.0, beta: 1.5, k: 1.0 }),
        ([3, 9, 4, 1], LrnParams { size: 3, alpha: 2.0, beta: 0.5, k: 0.5 }),
    ];
    for (i, (dims, params)) in cases.into_iter().enumerate() {
        let x = randn(&dims, 1000 + i as u64);
        let expected = reference::lrn(&x, params);
        assert_close(&lrn(&x, params).unwrap().output, &expected, 1e-12, 1e-12, &format!("{dims:?} {params:?}"));
        let got32 = lrn(&x.cast::<f32>(), params).unwrap().output;
        assert_close(&got32.cast(), &expected, 1e-4, 1e-5, &format!("f32 {dims:?} {params:?}"));
    }
    let x = Tensor::<f32>::zeros([1, 2, 2, 2]);
    let err = lrn(&x, LrnParams { size: 0, ..LrnParams::GOOGLENET }).unwrap_err();
    assert!(err.to_string().contains("size = 0"), "{err}");
    assert!(lrn(&x, LrnParams { k: 0.0, ..LrnParams::GOOGLENET }).is_err());
    assert!(lrn(&Tensor::<f32>::zeros([2, 2]), LrnParams::GOOGLENET).is_err());
}

#[test]
fn adaptive_avg_pool2d_matches_reference() {
    let cases = [
        ([2, 3, 7, 7], (2, 2)),
        ([1, 2, 14, 14], (2, 2)),
        ([2, 2, 5, 7], (3, 2)),
        ([1, 4, 4, 4], (1, 1)),
        ([2, 1, 3, 3], (3, 3)),
        ([1, 1, 10, 3], (4, 1)),
        // Outputs larger than the input, as PyTorch allows: 3x3 to 4x4 (the
        // auxiliary heads on a small map) and 1x2 to 3x5.
        ([2, 2, 3, 3], (4, 4)),
        ([1, 1, 1, 2], (3, 5)),
    ];
    for (i, (dims, (oh, ow))) in cases.into_iter().enumerate() {
        let x = randn(&dims, 100 + i as u64);
        let expected = reference::adaptive_avg_pool2d(&x, oh, ow);
        assert_close(&adaptive_avg_pool2d(&x, oh, ow).unwrap(), &expected, 1e-12, 1e-12, &format!("{dims:?}"));
        // Backward is the adjoint: <pool(x), dy> == <x, pool_backward(dy)>.
        let dy = randn(expected.dims(), 200 + i as u64);
        let dx = adaptive_avg_pool2d_backward(&dy, &dims).unwrap();
        let lhs: f64 = expected.data().iter().zip(dy.data()).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.data().iter().zip(dx.data()).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-10, "{dims:?}: {lhs} vs {rhs}");
    }
    assert!(adaptive_avg_pool2d(&Tensor::<f32>::zeros([1, 1, 2, 2]), 0, 3).is_err());
    assert!(adaptive_avg_pool2d(&Tensor::<f32>::zeros([1, 1, 0, 2]), 1, 1).is_err());
}

#[test]
fn ceil_mode_windows_larger_than_input_match_pytorch() {
    // Output sizes PyTorch 2.5 gives for these cases; the window is clipped to the input.
    let cases = [
        ((1, 1), Pool2dParams::new(2, 2, 0, true), (1, 1)),
        ((2, 2), Pool2dParams::new(3, 2, 0, true), (1, 1)),
        ((3, 3), Pool2dParams::new(5, 3, 0, true), (1, 1)),
        ((7, 7), Pool2dParams::new(2, 2, 0, true), (4, 4)),
        ((14, 14), Pool2dParams::new(3, 2, 0, true), (7, 7)),
    ];
    for ((h, w), params, expected) in cases {
        assert_eq!((params.h_out(h), params.w_out(w)), (Some(expected.0), Some(expected.1)), "{h}x{w} {params:?}");
        let x = randn(&[1, 2, h, w], 17);
        let (values, indices) = reference::max_pool2d(&x, params);
        let out = max_pool2d_with_indices(&x, params).unwrap();
        assert_eq!(out.output.data(), values.data(), "{h}x{w} {params:?}");
        assert_eq!(out.indices, indices);
        let avg = avg_pool2d(&x, params, true).unwrap();
        assert_close(&avg, &reference::avg_pool2d(&x, params, true), 1e-12, 1e-12, "avg");
    }
    // Without ceil mode, or with a window that cannot start inside, there is no output.
    assert_eq!(Pool2dParams::new(3, 2, 0, false).h_out(2), None);
    assert_eq!(Pool2dParams::new(3, 2, 0, true).h_out(1), None);
    assert!(max_pool2d(&randn(&[1, 1, 1, 1], 1), Pool2dParams::new(3, 2, 0, true)).is_err());
}

#[test]
fn batch_norm_matches_reference() {
    for (i, dims) in [[4, 3, 5, 5], [1, 2, 3, 4], [8, 1, 1, 1], [2, 5, 7, 3]].into_iter().enumerate() {
        let x = Tensor::<f64>::randn(dims, 3.0, 2.0, 300 + i as u64);
        let c = dims[1];
        let gamma = randn(&[c], 310 + i as u64);
        let beta = randn(&[c], 320 + i as u64);
        let (mean, var) = reference::channel_stats(&x);
        let (y, stats) = batch_norm2d_train(&x, &gamma, &beta, 1e-5).unwrap();
        let expected = reference::batch_norm2d(&x, gamma.data(), beta.data(), &mean, &var, 1e-5);
        assert_close(&y, &expected, 1e-10, 1e-10, &format!("train {dims:?}"));
        let y32 = batch_norm2d_train(&x.cast::<f32>(), &gamma.cast(), &beta.cast(), 1e-5).unwrap().0;
        assert_close(&y32.cast(), &expected, 1e-4, 1e-4, &format!("train f32 {dims:?}"));

        let running_mean = randn(&[c], 330 + i as u64);
        let running_var = Tensor::<f64>::rand_uniform([c], 0.5, 2.0, 340 + i as u64);
        let y = batch_norm2d_eval(&x, &gamma, &beta, &running_mean, &running_var, 1e-3).unwrap();
        let expected =
            reference::batch_norm2d(&x, gamma.data(), beta.data(), running_mean.data(), running_var.data(), 1e-3);
        assert_close(&y, &expected, 1e-12, 1e-12, &format!("eval {dims:?}"));

        // Backward against central differences of sum(y * dy) over x, gamma and beta.
        let dy = randn(&dims, 350 + i as u64);
        let (dx, dgamma, dbeta) = batch_norm2d_backward(&x, &gamma, &stats, &dy).unwrap();
        let objective = |x: &Tensor<f64>, g: &Tensor<f64>, b: &Tensor<f64>| -> f64 {
            let y = batch_norm2d_train(x, g, b, 1e-5).unwrap().0;
            y.data().iter().zip(dy.data()).map(|(a, b)| a * b).sum()
        };
        let h = 1e-6;
        for j in 0..x.numel() {
            let (mut plus, mut minus) = (x.clone(), x.clone());
            plus.data_mut()[j] += h;
            minus.data_mut()[j] -= h;
            let numeric = (objective(&plus, &gamma, &beta) - objective(&minus, &gamma, &beta)) / (2.0 * h);
            assert!((numeric - dx.data()[j]).abs() < 1e-5, "dx[{j}] {dims:?}: {} vs {numeric}", dx.data()[j]);
        }
        for j in 0..c {
            let (mut plus, mut minus) = (gamma.clone(), gamma.clone());
            plus.data_mut()[j] += h;
            minus.data_mut()[j] -= h;
            let numeric = (objective(&x, &plus, &beta) - objective(&x, &minus, &beta)) / (2.0 * h);
            assert!((numeric - dgamma.data()[j]).abs() < 1e-5, "dgamma[{j}]");
            let (mut plus, mut minus) = (beta.clone(), beta.clone());
            plus.data_mut()[j] += h;
            minus.data_mut()[j] -= h;
            let numeric = (objective(&x, &gamma, &plus) - objective(&x, &gamma, &minus)) / (2.0 * h);
            assert!((numeric - dbeta.data()[j]).abs() < 1e-5, "dbeta[{j}]");
        }
    }
}

#[test]
fn batch_norm_running_stats_use_unbiased_variance() {
    let x = Tensor::<f64>::from_vec(vec![1.0, 3.0, 5.0, 7.0], [4, 1, 1, 1]).unwrap();
    let (_, stats) = batch_norm2d_train(&x, &Tensor::ones([1]), &Tensor::zeros([1]), 1e-5).unwrap();
    let mut mean = Tensor::zeros([1]);
    let mut var = Tensor::ones([1]);
    update_running_stats(&mut mean, &mut var, &stats, 0.1).unwrap();
    // Batch mean 4, biased variance 5, unbiased 20 / 3.
    assert!((mean.data()[0] - 0.4).abs() < 1e-12);
    assert!((var.data()[0] - (0.9 + 0.1 * 20.0 / 3.0)).abs() < 1e-12);
}

#[test]
fn batch_norm_rejects_single_element_channels() {
    let x = Tensor::<f32>::zeros([1, 2, 1, 1]);
    let err = batch_norm2d_train(&x, &Tensor::ones([2]), &Tensor::zeros([2]), 1e-5).unwrap_err();
    assert!(err.to_string().contains("at least 2"), "{err}");
    let err = batch_norm2d_train(&Tensor::<f32>::zeros([2, 2, 1, 1]), &Tensor::ones([3]), &Tensor::zeros([2]), 1e-5)
        .unwrap_err();
    assert!(err.to_string().contains("gamma"), "{err}");
    let (ones, zeros) = (Tensor::<f32>::ones([2]), Tensor::<f32>::zeros([2]));
    let negative = Tensor::from_vec(vec![1.0, -0.5], [2]).unwrap();
    let err = batch_norm2d_eval(&x, &ones, &zeros, &zeros, &negative, 1e-5).unwrap_err();
    assert!(err.to_string().contains("running variance -0.5"), "{err}");
    let err = batch_norm2d_eval(&x, &ones, &zeros, &zeros, &ones, 0.0).unwrap_err();
    assert!(err.to_string().contains("eps"), "{err}");
}

#[test]
fn folded_batch_norm_matches_conv_then_batch_norm() {
    // (input, weight, geometry, with a conv bias). The grouped case checks
    // that the fold scales whole rows of the weight whatever the grouping.
    let cases = [
        ([2, 3, 7, 6], [5, 3, 3, 3], Conv2dParams::new(1, 1), false),
        ([1, 8, 5, 5], [4, 8, 1, 1], Conv2dParams::new(1, 0), true),
        ([2, 4, 9, 9], [6, 2, 3, 3], Conv2dParams::new(2, 1).with_groups(2), true),
    ];
    for (i, (x_dims, w_dims, params, with_bias)) in cases.into_iter().enumerate() {
        let seed = 400 + 10 * i as u64;
        let c = w_dims[0];
        let (x, weight) = (randn(&x_dims, seed), randn(&w_dims, seed + 1));
        let bias = with_bias.then(|| randn(&[c], seed + 2));
        let (gamma, beta, mean) = (randn(&[c], seed + 3), randn(&[c], seed + 4), randn(&[c], seed + 5));
        // One channel has zero variance, where eps alone keeps the division finite.
        let mut var = Tensor::<f64>::rand_uniform([c], 0.1, 3.0, seed + 6);
        var.data_mut()[0] = 0.0;

        let folded = fold_batch_norm(&weight, bias.as_ref(), &gamma, &beta, &mean, &var, 1e-3).unwrap();
        assert_eq!(folded.weight.dims(), weight.dims());
        assert_eq!(folded.bias.dims(), &[c]);
        let y = conv2d(&x, &folded.weight, Some(&folded.bias), params).unwrap();
        let conv = conv2d(&x, &weight, bias.as_ref(), params).unwrap();
        let expected = batch_norm2d_eval(&conv, &gamma, &beta, &mean, &var, 1e-3).unwrap();
        assert_close(&y, &expected, 1e-12, 1e-12, &format!("case {i}"));

        let y_relu = conv2d_relu(&x, &folded.weight, Some(&folded.bias), params).unwrap();
        assert_close(&y_relu, &relu(&expected), 1e-12, 1e-12, &format!("case {i} with ReLU"));
    }
}

#[test]
fn fold_batch_norm_rejects_bad_operands() {
    let weight = Tensor::<f32>::ones([3, 2, 1, 1]);
    let (ones, zeros) = (Tensor::<f32>::ones([3]), Tensor::<f32>::zeros([3]));
    let short = Tensor::<f32>::ones([2]);

    let err = fold_batch_norm(&weight, None, &short, &zeros, &zeros, &ones, 1e-3).unwrap_err();
    assert!(err.to_string().contains("gamma must have shape [3]"), "{err}");
    let err = fold_batch_norm(&weight, Some(&short), &ones, &zeros, &zeros, &ones, 1e-3).unwrap_err();
    assert!(err.to_string().contains("bias must have shape [3]"), "{err}");
    let err = fold_batch_norm(&Tensor::scalar(1.0), None, &ones, &zeros, &zeros, &ones, 1e-3).unwrap_err();
    assert!(err.to_string().contains("0-D"), "{err}");

    let negative = Tensor::from_vec(vec![1.0, -0.5, 1.0], [3]).unwrap();
    let err = fold_batch_norm(&weight, None, &ones, &zeros, &zeros, &negative, 1e-3).unwrap_err();
    assert!(err.to_string().contains("running variance -0.5"), "{err}");
    let nan_mean = Tensor::from_vec(vec![0.0, f32::NAN, 0.0], [3]).unwrap();
    let err = fold_batch_norm(&weight, None, &ones, &zeros, &nan_mean, &ones, 1e-3).unwrap_err();
    assert!(err.to_string().contains("running mean NaN"), "{err}");
    let err = fold_batch_norm(&weight, None, &ones, &zeros, &zeros, &ones, 0.0).unwrap_err();
    assert!(err.to_string().contains("eps"), "{err}");
}

#[test]
fn linear_matches_reference() {
    for (i, (n, f_in, f_out)) in
        [(1, 1, 1), (4, 7, 3), (128, 256, 10), (3, 300, 513), (2, 5, 0)].into_iter().enumerate()
    {
        let x = randn(&[n, f_in], 400 + i as u64);
        let w = randn(&[f_out, f_in], 410 + i as u64);
        let b = randn(&[f_out], 420 + i as u64);
        assert_close(&linear(&x, &w, Some(&b)).unwrap(), &reference::linear(&x, &w, Some(&b)), 1e-12, 1e-12, "linear");
        // Backward via the reference: dx = dy W, dW = dy^T x, db = column sums of dy.
        let dy = randn(&[n, f_out], 430 + i as u64);
        let (dx, dw, db) = linear_backward(&x, &w, &dy).unwrap();
        let w_t = Tensor::from_vec(
            (0..f_in * f_out).map(|j| w.data()[(j % f_out) * f_in + j / f_out]).collect(),
            [f_in, f_out],
        )
        .unwrap();
        assert_close(&dx, &reference::linear(&dy, &w_t, None), 1e-12, 1e-12, "dx");
        let dy_t =
            Tensor::from_vec((0..n * f_out).map(|j| dy.data()[(j % n) * f_out + j / n]).collect(), [f_out, n]).unwrap();
        let x_t =
            Tensor::from_vec((0..n * f_in).map(|j| x.data()[(j % n) * f_in + j / n]).collect(), [f_in, n]).unwrap();
        assert_close(&dw, &reference::linear(&dy_t, &x_t, None), 1e-12, 1e-12, "dw");
        let expected_db: Vec<f64> = (0..f_out).map(|o| (0..n).map(|r| dy.data()[r * f_out + o]).sum()).collect();
        assert_close(&db, &Tensor::from_vec(expected_db, [f_out]).unwrap(), 1e-12, 1e-12, "db");
    }
    let err = linear(&Tensor::<f32>::zeros([2, 3]), &Tensor::zeros([4, 5]), None).unwrap_err();
    assert!(err.to_string().contains("3 features"), "{err}");
}

#[test]
fn log_softmax_and_cross_entropy_match_reference() {
    for (i, (n, c)) in [(1, 1), (4, 10), (7, 3)].into_iter().enumerate() {
        let x = Tensor::<f64>::randn([n, c], 0.0, 5.0, 500 + i as u64);
        let y = log_softmax(&x).unwrap();
        assert_close(&y, &reference::log_softmax(&x), 1e-12, 1e-12, "log_softmax");
        let targets: Vec<usize> = (0..n).map(|r| (r * 7) % c).collect();
        let (loss, probs) = cross_entropy(&x, &targets).unwrap();
        assert!((loss - reference::cross_entropy(&x, &targets)).abs() < 1e-12);
        let dx = cross_entropy_backward(&probs, &targets, 2.0).unwrap();
        let dy = randn(&[n, c], 510 + i as u64);
        let dls = log_softmax_backward(&y, &dy).unwrap();
        let h = 1e-6;
        for j in 0..x.numel() {
            let (mut plus, mut minus) = (x.clone(), x.clone());
            plus.data_mut()[j] += h;
            minus.data_mut()[j] -= h;
            let numeric = 2.0
                * (reference::cross_entropy(&plus, &targets) - reference::cross_entropy(&minus, &targets))
                / (2.0 * h);
            assert!((numeric - dx.data()[j]).abs() < 1e-6, "cross-entropy dx[{j}]");
            let dot = |t: &Tensor<f64>| -> f64 {
                reference::log_softmax(t).data().iter().zip(dy.data()).map(|(a, b)| a * b).sum()
            };
            let numeric = (dot(&plus) - dot(&minus)) / (2.0 * h);
            assert!((numeric - dls.data()[j]).abs() < 1e-6, "log_softmax dx[{j}]");
        }
    }
    // Large logits do not overflow.
    let x = Tensor::<f32>::from_vec(vec![1000.0, 0.0, -1000.0], [1, 3]).unwrap();
    let y = log_softmax(&x).unwrap();
    assert!(y.data().iter().all(|v| !v.is_nan()));
    assert_eq!(y.data()[0], 0.0);
    // Label smoothing: with targets spread uniformly (smoothing 1) the loss
    // is the mean of -log p over the classes; with 0 it is plain cross-entropy.
    let logits = Tensor::<f64>::randn([4, 6], 0.0, 2.0, 1700);
    let targets = [0, 5, 2, 2];
    let lp = reference::log_softmax(&logits);
    let uniform: f64 = -lp.data().iter().sum::<f64>() / 24.0;
    assert!((cross_entropy_smoothed(&logits, &targets, 1.0).unwrap().0 - uniform).abs() < 1e-12);
    assert_eq!(cross_entropy_smoothed(&logits, &targets, 0.0).unwrap().0, cross_entropy(&logits, &targets).unwrap().0);
    let mixed = cross_entropy_smoothed(&logits, &targets, 0.1).unwrap().0;
    let expected = 0.9 * reference::cross_entropy(&logits, &targets) + 0.1 * uniform;
    assert!((mixed - expected).abs() < 1e-12, "{mixed} vs {expected}");
    assert!(cross_entropy_smoothed(&logits, &targets, 1.5).is_err());
    let err = cross_entropy(&x, &[3]).unwrap_err();
    assert!(err.to_string().contains("target 3"), "{err}");
    assert!(cross_entropy(&x, &[0, 1]).is_err());
}

#[test]
fn softmax_along_any_axis() {
    let x = Tensor::<f64>::randn([2, 3, 4], 0.0, 2.0, 1100);
    for axis in 0..3 {
        let y = softmax(&x, axis).unwrap();
        let exp_sum = incept_tensor::reduce::sum_axis(&y, axis, false).unwrap();
        assert!(exp_sum.data().iter().all(|s| (s - 1.0).abs() < 1e-12), "axis {axis} sums to one");
    }
    // Along the last axis it is exp(log_softmax) of each row.
    let rows = Tensor::<f64>::randn([3, 5], 0.0, 2.0, 1101);
    let expected = reference::log_softmax(&rows);
    let got = softmax(&rows, 1).unwrap();
    for (a, b) in got.data().iter().zip(expected.data()) {
        assert!((a - b.exp()).abs() < 1e-12);
    }
    // Along any axis, log_softmax_axis is the log of softmax.
    for axis in 0..3 {
        let log_y = log_softmax_axis(&x, axis).unwrap();
        let y = softmax(&x, axis).unwrap();
        for (a, b) in log_y.data().iter().zip(y.data()) {
            assert!((a - b.ln()).abs() < 1e-12, "axis {axis}");
        }
    }
    assert_close(&log_softmax_axis(&rows, 1).unwrap(), &expected, 1e-12, 1e-12, "log_softmax_axis on rows");
    // Logits 1e4 apart neither overflow nor produce NaN.
    let far = Tensor::<f32>::from_vec(vec![0.0, 1e4, -1e4], [1, 3]).unwrap();
    assert_eq!(softmax(&far, 1).unwrap().data(), &[0.0, 1.0, 0.0]);
    assert_eq!(log_softmax_axis(&far, 1).unwrap().data(), &[-1e4, 0.0, -2e4]);
    assert!(softmax(&far, 2).is_err());
}

#[test]
fn unary_math_and_whole_tensor_reductions() {
    let x = Tensor::<f64>::from_vec(vec![0.0, 1.0, 4.0, 9.0], [2, 2]).unwrap();
    assert_eq!(sqrt(&x).data(), &[0.0, 1.0, 2.0, 3.0]);
    assert_eq!(add_scalar(&x, 1.0).data(), &[1.0, 2.0, 5.0, 10.0]);
    assert_eq!(exp(&Tensor::<f64>::zeros([2])).data(), &[1.0, 1.0]);
    assert_eq!(ln(&exp(&x)).data(), x.data());
    assert!(ln(&Tensor::<f64>::zeros([1])).data()[0] == f64::NEG_INFINITY);
    assert_eq!(mean_all(&x), 3.5);
    assert_eq!(max_all(&x).unwrap(), 9.0);
    let with_nan = Tensor::<f64>::from_vec(vec![1.0, f64::NAN, 5.0], [3]).unwrap();
    assert!(max_all(&with_nan).unwrap().is_nan(), "NaN propagates through max, as in PyTorch");
    assert!(max_all(&Tensor::<f64>::zeros([0])).is_err());
    assert!(mean_all(&Tensor::<f64>::zeros([0])).is_nan());
}

#[test]
fn matmul_matches_reference_on_random_shapes() {
    let mut rng = StdRng::seed_from_u64(12);
    for i in 0..50 {
        let (m, k, n) = (rng.random_range(1..=20), rng.random_range(1..=20), rng.random_range(1..=20));
        let a = randn(&[m, k], 1500 + i);
        let b = randn(&[k, n], 1600 + i);
        let got = incept_tensor::reduce::matmul(&a, &b).unwrap();
        assert_close(&got, &reference::matmul(&a, &b), 1e-12, 1e-12, &format!("{m}x{k} * {k}x{n}"));
    }
}

#[test]
fn relu_concat_slice_and_dropout() {
    let x = Tensor::<f32>::from_vec(vec![-1.0, 0.0, 2.0, -3.0], [1, 1, 2, 2]).unwrap();
    let y = relu(&x);
    assert_eq!(y.data(), &[0.0, 0.0, 2.0, 0.0]);
    assert_eq!(relu_backward(&y, &Tensor::ones([1, 1, 2, 2])).unwrap().data(), &[0.0, 0.0, 1.0, 0.0]);

    let a = randn(&[2, 2, 3, 3], 600);
    let b = randn(&[2, 3, 3, 3], 601);
    let cat = concat_channels(&[&a, &b]).unwrap();
    assert_eq!(cat.dims(), &[2, 5, 3, 3]);
    assert_eq!(slice_channels(&cat, 0, 2).unwrap(), a);
    assert_eq!(slice_channels(&cat, 2, 3).unwrap(), b);
    assert_eq!(cat.data()[18..45], b.data()[..27]);
    assert!(concat_channels(&[&a, &randn(&[2, 1, 4, 3], 0)]).is_err());
    assert!(slice_channels(&cat, 4, 2).is_err());

    let mask = dropout_mask::<f64>(&[10_000], 0.4, 7).unwrap();
    let kept = mask.data().iter().filter(|&&m| m > 0.0).count();
    assert!((5_700..=6_300).contains(&kept), "kept {kept} of 10000 at p = 0.4");
    assert!(mask.data().iter().all(|&m| m == 0.0 || (m - 1.0 / 0.6).abs() < 1e-12));
    assert_eq!(mask, dropout_mask(&[10_000], 0.4, 7).unwrap());
    assert!(dropout_mask::<f32>(&[1], 1.0, 0).is_err());
}

/// Fifty seeded random configurations each for the kernels whose named
/// cases are tested above: batch norm, LRN, linear, log-softmax with
/// cross-entropy, and adaptive average pooling.
#[test]
fn random_configurations_match_reference() {
    let mut rng = StdRng::seed_from_u64(99);
    for i in 0..50u64 {
        let dims = [rng.random_range(1..=4), rng.random_range(1..=6), rng.random_range(1..=5), rng.random_range(1..=5)];
        let x = Tensor::<f64>::randn(dims, 1.0, 2.0, 2000 + i);
        let c = dims[1];
        let (gamma, beta) = (randn(&[c], 2100 + i), randn(&[c], 2200 + i));
        if dims[0] * dims[2] * dims[3] >= 2 {
            let (mean, var) = reference::channel_stats(&x);
            let (y, _) = batch_norm2d_train(&x, &gamma, &beta, 1e-5).unwrap();
            let expected = reference::batch_norm2d(&x, gamma.data(), beta.data(), &mean, &var, 1e-5);
            assert_close(&y, &expected, 1e-10, 1e-10, &format!("batch norm {dims:?}"));
        }

        let params = LrnParams {
            size: rng.random_range(1..=7),
            alpha: rng.random_range(0.0..2.0),
            beta: rng.random_range(0.25..1.5),
            k: rng.random_range(0.5..2.0),
        };
        assert_close(
            &lrn(&x, params).unwrap().output,
            &reference::lrn(&x, params),
            1e-12,
            1e-12,
            &format!("lrn {dims:?} {params:?}"),
        );

        let (n, f_in, f_out) = (rng.random_range(1..=8), rng.random_range(1..=20), rng.random_range(1..=12));
        let (xl, w, b) = (randn(&[n, f_in], 2300 + i), randn(&[f_out, f_in], 2400 + i), randn(&[f_out], 2500 + i));
        assert_close(
            &linear(&xl, &w, Some(&b)).unwrap(),
            &reference::linear(&xl, &w, Some(&b)),
            1e-12,
            1e-12,
            "linear",
        );

        let classes = rng.random_range(1..=12);
        let logits = Tensor::<f64>::randn([n, classes], 0.0, 4.0, 2600 + i);
        let targets: Vec<usize> = (0..n).map(|_| rng.random_range(0..classes)).collect();
        assert_close(&log_softmax(&logits).unwrap(), &reference::log_softmax(&logits), 1e-12, 1e-12, "log_softmax");
        let (loss, _) = cross_entropy(&logits, &targets).unwrap();
        assert!((loss - reference::cross_entropy(&logits, &targets)).abs() < 1e-12, "cross-entropy");

        let (out_h, out_w) = (rng.random_range(1..=dims[2]), rng.random_range(1..=dims[3]));
        let expected = reference::adaptive_avg_pool2d(&x, out_h, out_w);
        assert_close(&adaptive_avg_pool2d(&x, out_h, out_w).unwrap(), &expected, 1e-12, 1e-12, "adaptive_avg_pool2d");
    }
}

#[test]
fn zero_size_batch_is_empty_or_an_error() {
    let x = Tensor::<f32>::zeros([0, 3, 8, 8]);
    let w = Tensor::<f32>::zeros([4, 3, 3, 3]);
    assert_eq!(conv2d(&x, &w, None, Conv2dParams::new(1, 1)).unwrap().dims(), &[0, 4, 8, 8]);
    let pool = Pool2dParams::new(3, 2, 0, true);
    assert_eq!(max_pool2d(&x, pool).unwrap().dims(), &[0, 3, 4, 4]);
    assert_eq!(avg_pool2d(&x, pool, true).unwrap().dims(), &[0, 3, 4, 4]);
    assert_eq!(adaptive_avg_pool2d(&x, 1, 1).unwrap().dims(), &[0, 3, 1, 1]);
    assert_eq!(lrn(&x, LrnParams::GOOGLENET).unwrap().output.dims(), &[0, 3, 8, 8]);
    let (ones, zeros) = (Tensor::<f32>::ones([3]), Tensor::<f32>::zeros([3]));
    assert_eq!(batch_norm2d_eval(&x, &ones, &zeros, &zeros, &ones, 1e-5).unwrap().dims(), &[0, 3, 8, 8]);
    assert!(batch_norm2d_train(&x, &ones, &zeros, 1e-5).is_err(), "no statistics from an empty batch");
    let rows = Tensor::<f32>::zeros([0, 5]);
    assert_eq!(linear(&rows, &Tensor::zeros([2, 5]), None).unwrap().dims(), &[0, 2]);
    assert_eq!(log_softmax(&rows).unwrap().dims(), &[0, 5]);
    assert!(cross_entropy(&rows, &[]).is_err(), "the mean over an empty batch is undefined");
}

#[test]
fn max_pool2d_stride_one_mixed_infinities_match_reference() {
    // The left columns are -inf, so some 3x3 windows hold only -inf inputs
    // and the others have a finite winner; both must match the reference.
    let params = Pool2dParams::new(3, 1, 1, true);
    let mut x = randn(&[2, 3, 6, 7], 404);
    for (i, v) in x.data_mut().iter_mut().enumerate() {
        if i % 7 < 3 {
            *v = f64::NEG_INFINITY;
        }
    }
    let (expected, expected_idx) = reference::max_pool2d(&x, params);
    let out = max_pool2d_with_indices(&x, params).unwrap();
    assert_eq!(out.indices, expected_idx);
    assert_eq!(out.output.data(), expected.data());
}
