//! Misuse of the public API: each case returns an error that names the
//! problem, and NaN inputs flow through to the output without a panic.

use incept::autograd::{Tape, Var};
use incept::models::{ForwardCtx, GoogLeNet, GoogLeNetConfig, Variant};
use incept::tensor::Tensor;
use incept::tensor::conv::{Conv2dParams, conv2d};
use incept::tensor::softmax::cross_entropy;

fn message<T, E: std::fmt::Display>(result: Result<T, E>) -> String {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn conv2d_channel_mismatch() {
    let x = Tensor::<f32>::zeros([1, 3, 8, 8]);
    let w = Tensor::<f32>::zeros([4, 2, 3, 3]);
    let err = message(conv2d(&x, &w, None, Conv2dParams::new(1, 1)));
    assert_eq!(
        err,
        "conv2d: incompatible shapes [[1, 3, 8, 8], [4, 2, 3, 3]]: the input has 3 channels but the weight \
         expects 2 (2 per group, 1 groups; weight is [c_out, c_in / groups, k_h, k_w])"
    );
}

#[test]
fn conv2d_kernel_larger_than_padded_input() {
    let x = Tensor::<f32>::zeros([1, 1, 4, 4]);
    let w = Tensor::<f32>::zeros([1, 1, 7, 7]);
    let err = message(conv2d(&x, &w, None, Conv2dParams::new(1, 1)));
    assert_eq!(
        err,
        "conv2d: invalid argument: kernel 7x7 (dilation (1, 1)) is larger than the input 4x4 with padding (1, 1)"
    );
}

#[test]
fn conv2d_zero_stride() {
    let x = Tensor::<f32>::zeros([1, 1, 4, 4]);
    let w = Tensor::<f32>::zeros([1, 1, 3, 3]);
    let err = message(conv2d(&x, &w, None, Conv2dParams::new(0, 1)));
    assert_eq!(err, "conv2d: invalid argument: stride (0, 0) and dilation (1, 1) must be at least 1");
}

#[test]
fn conv2d_zero_size_batch_is_empty() {
    let x = Tensor::<f32>::zeros([0, 1, 4, 4]);
    let w = Tensor::<f32>::zeros([2, 1, 3, 3]);
    let y = conv2d(&x, &w, None, Conv2dParams::new(1, 1)).unwrap();
    assert_eq!(y.dims(), &[0, 2, 4, 4]);
}

#[test]
fn labels_out_of_range() {
    let logits = Tensor::<f32>::zeros([2, 10]);
    let err = message(cross_entropy(&logits, &[3, 10]));
    assert_eq!(err, "cross_entropy: invalid argument: target 10 of sample 1 is not a class index in 0..10");
}

#[test]
fn empty_batch_loss() {
    let logits = Tensor::<f32>::zeros([0, 10]);
    let err = message(cross_entropy(&logits, &[]));
    assert_eq!(err, "cross_entropy: invalid argument: the mean over an empty batch is undefined");
}

#[test]
fn nan_input_propagates_through_googlenet() {
    let config = GoogLeNetConfig { width: 0.125, ..GoogLeNetConfig::small(Variant::Torchvision, 1, 10) };
    let net = GoogLeNet::<f32>::new(config).unwrap();
    let mut x = Tensor::<f32>::randn([2, 1, 28, 28], 0.0, 1.0, 1);
    x.data_mut()[5] = f32::NAN;
    let tape = Tape::inference();
    let out = net.forward(&ForwardCtx::eval(&tape), &Var::constant(x)).unwrap();
    assert!(out.logits.value().data()[..10].iter().any(|v| v.is_nan()), "the image with a NaN gives NaN logits");
}
