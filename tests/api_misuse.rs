//! Misuse of the public API: each case returns an error that names the
//! problem, and NaN inputs flow through to the output without a panic.
//! Images smaller than a crop are covered here for the library; the classify
//! example's resize and center crop are in `classify_preprocess.rs`.

use incept::autograd::{Tape, Var};
use incept::models::data::{Augment, BatchOptions, Dataset};
use incept::models::{ForwardCtx, GoogLeNet, GoogLeNetConfig, Variant};
use incept::tensor::Tensor;
use incept::tensor::conv::{Conv2dParams, conv2d};
use incept::tensor::elementwise::slice_channels;
use incept::tensor::layout::slice_axis;
use incept::tensor::softmax::cross_entropy;
use incept::train::{TrainConfig, Trainer};

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

#[test]
fn crop_past_image_edge() {
    // A 300-row crop of a 224x224 image, as slice_axis is used to crop.
    let image = Tensor::<f32>::zeros([1, 3, 224, 224]);
    let err = message(slice_axis(&image, 2, 0, 300));
    assert_eq!(err, "slice_axis: invalid argument: indices 0..300 exceed the size 224 of axis 2 of [1, 3, 224, 224]");
}

#[test]
fn channel_range_overflowing_usize() {
    let x = Tensor::<f32>::zeros([1, 3, 2, 2]);
    let err = message(slice_channels(&x, 1, usize::MAX));
    assert_eq!(
        err,
        format!("slice_channels: invalid argument: channels 1..{} exceed the 3 channels of [1, 3, 2, 2]", usize::MAX)
    );
}

/// Two 2x3 grayscale images with labels 0 and 1.
fn tiny_images() -> Dataset {
    Dataset::new(Tensor::zeros([2, 1, 2, 3]), vec![0, 1], 10).unwrap()
}

const TINY_CROP_ERROR: &str = "invalid configuration: crop padding 2 is not below the image size 2x3, so some \
                               crops would contain no image pixel; use a padding of at most 1";

#[test]
fn crop_padding_not_below_image_size() {
    let augment = Augment { crop_padding: 2, horizontal_flip: false, seed: 0 };
    let options = BatchOptions { augment: Some(augment), ..BatchOptions::new(1) };
    let err = message(tiny_images().batches_with(&options));
    assert_eq!(err, TINY_CROP_ERROR);
}

#[test]
fn trainer_rejects_crop_padding_of_small_images() {
    let config = TrainConfig {
        model: GoogLeNetConfig { width: 0.125, ..GoogLeNetConfig::small(Variant::Torchvision, 1, 10) },
        epochs: 1,
        batch_size: 2,
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.0,
        seed: 0,
        crop_padding: 2,
        horizontal_flip: false,
        max_batches: None,
    };
    let err = message(Trainer::new(config, &tiny_images()));
    assert_eq!(err, TINY_CROP_ERROR);
}

#[test]
fn image_smaller_than_googlenet_input() {
    let config = GoogLeNetConfig { width: 0.125, ..GoogLeNetConfig::small(Variant::Torchvision, 1, 10) };
    let net = GoogLeNet::<f32>::new(config).unwrap();
    let tape = Tape::inference();
    let err = message(net.forward(&ForwardCtx::eval(&tape), &Var::constant(Tensor::zeros([1, 1, 3, 3]))));
    assert_eq!(
        err,
        "invalid configuration: this GoogLeNet needs images of at least 4x4 without auxiliary heads, got 3x3"
    );
}
