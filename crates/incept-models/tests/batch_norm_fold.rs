//! Eval-mode batch norm folded into the convolution before it, checked
//! against the unfolded conv -> batch norm -> ReLU pass: BasicConv2d alone
//! and the whole torchvision-variant GoogLeNet, with non-trivial
//! statistics, edge-case statistics, gradients on a recording tape, and
//! statistics changed between calls.

use incept_autograd::{Parameter, Tape, Var};
use incept_models::layers::{BasicConv2d, ConvNorm};
use incept_models::{BufferKind, ForwardCtx, GoogLeNet, GoogLeNetConfig, Init, Layer, Module, Variant};
use incept_tensor::{Float, Tensor};

/// Allowed max |folded - unfolded| over max |unfolded| in f32. The two
/// passes round differently: the folded one multiplies each weight by its
/// channel's scale before the convolution, the unfolded one scales the
/// convolution's sums. Each f32 rounding is at most 6e-8 relative. Through
/// the network's 57 convolutions the observed gap stays near 1e-6 (the
/// tests print it with `--nocapture`), so 1e-5 leaves a margin of about ten.
/// It is still 50 times smaller than the 5e-4 by which leaving out eps
/// would change a channel of unit variance.
const F32_TOLERANCE: f64 = 1e-5;

/// The same bound in f64, where each rounding is at most 2^-53 relative, so
/// a gap above 1e-12 would be an error in the fold, not rounding.
const F64_TOLERANCE: f64 = 1e-12;

/// Returns max |a - b| / max |b|.
fn relative_gap<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let scale = b.data().iter().map(|v| v.as_f64().abs()).fold(0.0, f64::max);
    assert!(scale > 0.0, "the reference output is all zeros, so the comparison would be empty");
    a.max_abs_diff(b).unwrap() / scale
}

/// Uniform values in `[low, high)`, from `seed`.
fn uniform<T: Float>(dims: &[usize], low: f64, high: f64, seed: u64) -> Tensor<T> {
    Tensor::rand_uniform(dims, T::from_f64(low), T::from_f64(high), seed)
}

/// Gives every batch norm of `module` a random scale, shift, mean and
/// variance. The variance is spread over [0.05, 2.05) and the mean over
/// [-0.5, 0.5), so no channel is close to the identity map.
fn randomise_batch_norm<T: Float>(module: &dyn Module<T>, seed: u64) {
    for (i, param) in module.parameters().iter().enumerate() {
        let dims = param.value().dims().to_vec();
        let seed = seed + i as u64;
        if param.name().ends_with("bn.weight") {
            param.set_value(uniform(&dims, 0.5, 1.5, seed)).unwrap();
        } else if param.name().ends_with("bn.bias") {
            param.set_value(uniform(&dims, -0.5, 0.5, seed)).unwrap();
        }
    }
    for (i, buffer) in module.buffers().iter().enumerate() {
        let dims = buffer.value().dims().to_vec();
        let seed = seed + 1000 + i as u64;
        if buffer.name().ends_with("running_mean") {
            buffer.set_value(uniform(&dims, -0.5, 0.5, seed)).unwrap();
        } else if buffer.name().ends_with("running_var") {
            buffer.set_value(uniform(&dims, 0.05, 2.05, seed)).unwrap();
        }
    }
}

/// Runs `layer` in eval mode on an inference tape, folded or not.
fn eval<T: Float>(layer: &dyn Layer<T>, x: &Tensor<T>, fold: bool) -> Tensor<T> {
    let tape = Tape::inference();
    let ctx = ForwardCtx::eval(&tape).with_batch_norm_folding(fold);
    layer.forward(&ctx, &Var::constant(x.clone())).unwrap().value().clone()
}

fn basic_conv<T: Float>(c_in: usize, c_out: usize, kernel: usize, stride: usize, seed: u64) -> BasicConv2d<T> {
    let block =
        BasicConv2d::new("block", c_in, c_out, kernel, stride, kernel / 2, ConvNorm::BatchNorm, &mut Init::new(seed))
            .unwrap();
    randomise_batch_norm(&block, seed);
    block
}

#[test]
fn basic_conv2d_folded_matches_unfolded() {
    // 1x1 (no im2col), 3x3 and a strided 7x7, as GoogLeNet's layers are.
    for (case, (c_in, c_out, kernel, stride)) in [(16, 8, 1, 1), (6, 10, 3, 1), (3, 12, 7, 2)].into_iter().enumerate() {
        let seed = 10 + case as u64;
        let x32 = Tensor::<f32>::randn([2, c_in, 15, 13], 0.0, 1.0, seed);
        let block32 = basic_conv::<f32>(c_in, c_out, kernel, stride, seed);
        let gap32 = relative_gap(&eval(&block32, &x32, true), &eval(&block32, &x32, false));

        let x64 = Tensor::<f64>::randn([2, c_in, 15, 13], 0.0, 1.0, seed);
        let block64 = basic_conv::<f64>(c_in, c_out, kernel, stride, seed);
        let gap64 = relative_gap(&eval(&block64, &x64, true), &eval(&block64, &x64, false));

        eprintln!("BasicConv2d {kernel}x{kernel}/{stride} {c_in}->{c_out}: f32 gap {gap32:.3e}, f64 gap {gap64:.3e}");
        assert!(gap32 <= F32_TOLERANCE, "{kernel}x{kernel}: f32 gap {gap32:e}");
        assert!(gap64 <= F64_TOLERANCE, "{kernel}x{kernel}: f64 gap {gap64:e}");
    }
}

/// GoogLeNet, torchvision variant, small-input stem, width 0.25, with
/// random batch-norm affine parameters and running statistics near those
/// of its activations.
///
/// Statistics drawn independently of the activations would make every
/// channel's output nearly constant after a few layers, and the logits
/// nearly the same for every image. So the statistics come from 30
/// training-mode passes, after which momentum 0.1 leaves 4% of the initial
/// values. Then each mean moves by up to 0.2 standard deviations and each
/// variance by a factor in [0.7, 1.4), so that they are not exactly any
/// batch's statistics.
fn small_googlenet<T: Float>() -> GoogLeNet<T> {
    let config = GoogLeNetConfig { width: 0.25, seed: 7, ..GoogLeNetConfig::small(Variant::Torchvision, 1, 10) };
    let net = GoogLeNet::<T>::new(config).unwrap();
    randomise_batch_norm(&net, 70);
    for step in 0..30 {
        let tape = Tape::inference();
        let x = Var::constant(Tensor::randn([8, 1, 28, 28], T::zero(), T::one(), 100 + step));
        net.forward(&ForwardCtx::train(&tape, step), &x).unwrap();
    }
    let buffers = net.buffers();
    for (i, layer) in buffers.chunks_exact(3).enumerate() {
        let [mean, var, count] = layer else { unreachable!("chunks_exact(3) yields three buffers") };
        assert!(mean.name().ends_with("running_mean"), "{layer:?}");
        assert!(var.name().ends_with("running_var"), "{layer:?}");
        assert_eq!(count.kind(), BufferKind::Count, "{layer:?}");
        let c = mean.value().numel();
        let shift: Tensor<T> = uniform(&[c], -0.2, 0.2, 200 + i as u64);
        let factor: Tensor<T> = uniform(&[c], 0.7, 1.4, 300 + i as u64);
        let std: Vec<T> = var.value().data().iter().map(|v| v.sqrt()).collect();
        mean.update(|m| m.data_mut().iter_mut().zip(shift.data()).zip(&std).for_each(|((m, &d), &s)| *m = *m + d * s));
        var.update(|v| v.data_mut().iter_mut().zip(factor.data()).for_each(|(v, &f)| *v = *v * f));
    }
    net
}

/// Runs `net` in eval mode on an inference tape and returns the logits.
fn logits<T: Float>(net: &GoogLeNet<T>, x: &Tensor<T>, fold: bool) -> Tensor<T> {
    let tape = Tape::inference();
    let ctx = ForwardCtx::eval(&tape).with_batch_norm_folding(fold);
    net.forward(&ctx, &Var::constant(x.clone())).unwrap().logits.value().clone()
}

#[test]
fn googlenet_folded_matches_unfolded() {
    let x32 = Tensor::<f32>::randn([4, 1, 28, 28], 0.0, 1.0, 71);
    let net32 = small_googlenet::<f32>();
    let (folded, unfolded) = (logits(&net32, &x32, true), logits(&net32, &x32, false));
    let gap32 = relative_gap(&folded, &unfolded);

    let x64 = x32.cast::<f64>();
    let net64 = small_googlenet::<f64>();
    for (p64, p32) in net64.parameters().iter().zip(net32.parameters()) {
        p64.set_value(p32.value().cast()).unwrap();
    }
    for (b64, b32) in net64.buffers().iter().zip(net32.buffers()) {
        b64.set_value(b32.value().cast()).unwrap();
    }
    let exact = logits(&net64, &x64, false);
    let gap64 = relative_gap(&logits(&net64, &x64, true), &exact);
    let folded_error = relative_gap(&folded.cast::<f64>(), &exact);
    let unfolded_error = relative_gap(&unfolded.cast::<f64>(), &exact);

    eprintln!("GoogLeNet logits: f32 folded vs unfolded {gap32:.3e}, f64 folded vs unfolded {gap64:.3e}");
    eprintln!("GoogLeNet logits, f32 against f64: folded {folded_error:.3e}, unfolded {unfolded_error:.3e}");
    assert!(gap32 <= F32_TOLERANCE, "f32 gap {gap32:e}");
    assert!(gap64 <= F64_TOLERANCE, "f64 gap {gap64:e}");
    // The folded pass is about as accurate as the unfolded one. The factor
    // of 2 allows for which pass happens to round closer on these inputs.
    assert!(folded_error <= 2.0 * unfolded_error, "folded {folded_error:e}, unfolded {unfolded_error:e}");

    // The comparison above is only strong if the logits depend on the
    // image, so the logits of two images must differ.
    let (first, second) = (&unfolded.data()[..10], &unfolded.data()[10..20]);
    let spread = first.iter().zip(second).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    let max_logit = unfolded.data().iter().map(|v| v.abs()).fold(0.0, f32::max);
    assert!(spread > 0.01 * max_logit, "logits of two images differ by {spread}, max |logit| {max_logit}");
}

#[test]
fn zero_variance_uses_eps() {
    // running_var = 0 leaves eps alone under the square root: the scale is
    // gamma / sqrt(0.001), about 31.6 gamma.
    let x = Tensor::<f32>::randn([2, 4, 9, 9], 0.0, 1.0, 20);
    let block = basic_conv::<f32>(4, 6, 3, 1, 20);
    let bn = block.bn.as_ref().unwrap();
    bn.running_var.set_value(Tensor::zeros([6])).unwrap();
    let (folded, unfolded) = (eval(&block, &x, true), eval(&block, &x, false));
    assert!(folded.data().iter().all(|v| v.is_finite()));
    let gap = relative_gap(&folded, &unfolded);
    eprintln!("zero variance: f32 gap {gap:.3e}");
    assert!(gap <= F32_TOLERANCE, "{gap:e}");
}

#[test]
fn nan_scale_poisons_only_its_channel() {
    // A NaN gamma makes its channel NaN in both passes (the fused ReLU keeps
    // NaN) and leaves the other channels as they were.
    let x = Tensor::<f32>::randn([1, 3, 5, 5], 0.0, 1.0, 21);
    let block = basic_conv::<f32>(3, 4, 3, 1, 21);
    let gamma = block.bn.as_ref().unwrap().weight.as_ref().unwrap();
    gamma.update(|g| g.data_mut()[2] = f32::NAN);
    let (folded, unfolded) = (eval(&block, &x, true), eval(&block, &x, false));
    for (c, (f, u)) in folded.data().chunks_exact(25).zip(unfolded.data().chunks_exact(25)).enumerate() {
        if c == 2 {
            assert!(f.iter().chain(u).all(|v| v.is_nan()), "channel 2: folded {f:?}, unfolded {u:?}");
        } else {
            let gap = f.iter().zip(u).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(gap <= 1e-5, "channel {c}: gap {gap}");
        }
    }
}

#[test]
fn corrupt_statistics_are_rejected_either_way() {
    let x = Tensor::<f32>::randn([1, 3, 5, 5], 0.0, 1.0, 22);
    let block = basic_conv::<f32>(3, 4, 3, 1, 22);
    let bn = block.bn.as_ref().unwrap();
    bn.running_var.update(|v| v.data_mut()[1] = -0.5);
    for fold in [true, false] {
        let tape = Tape::inference();
        let ctx = ForwardCtx::eval(&tape).with_batch_norm_folding(fold);
        let err = block.forward(&ctx, &Var::constant(x.clone())).expect_err("a negative variance must be rejected");
        assert!(err.to_string().contains("running variance -0.5 must be finite and non-negative"), "{fold}: {err}");
    }
}

#[test]
fn changed_weights_and_statistics_are_used() {
    // The fold is computed on every call: changes made in place between
    // calls, by a training pass or by hand, reach the next eval output.
    let x = Tensor::<f32>::randn([2, 5, 8, 8], 0.0, 1.0, 23);
    let block = basic_conv::<f32>(5, 7, 3, 1, 23);
    let before = eval(&block, &x, true);

    let tape = Tape::inference();
    block.forward(&ForwardCtx::train(&tape, 0), &Var::constant(x.clone())).unwrap();
    let after_training = eval(&block, &x, true);
    assert!(relative_gap(&after_training, &before) > 1e-3, "the running statistics moved");
    assert!(relative_gap(&after_training, &eval(&block, &x, false)) <= F32_TOLERANCE);

    let bn = block.bn.as_ref().unwrap();
    block.conv.weight.update(|w| w.data_mut().iter_mut().for_each(|v| *v = -*v));
    bn.bias.as_ref().unwrap().update(|b| b.data_mut()[0] = 3.0);
    bn.running_mean.update(|m| m.data_mut()[1] = 2.0);
    let after_edit = eval(&block, &x, true);
    assert!(relative_gap(&after_edit, &after_training) > 1e-3, "the edits changed the output");
    assert!(relative_gap(&after_edit, &eval(&block, &x, false)) <= F32_TOLERANCE);
}

/// Runs one training-mode forward and backward pass of a fresh network and
/// returns the logits, the auxiliary logits, the parameter gradients and
/// the buffers, all as f32 bits.
fn training_step_bits(fold: bool) -> Vec<Vec<u32>> {
    let config = GoogLeNetConfig { width: 0.25, seed: 8, ..GoogLeNetConfig::small(Variant::Torchvision, 1, 10) };
    let net = GoogLeNet::<f32>::new(config).unwrap();
    let x = Var::constant(Tensor::randn([4, 1, 28, 28], 0.0, 1.0, 24));
    let tape = Tape::new();
    let out = net.forward(&ForwardCtx::train(&tape, 3).with_batch_norm_folding(fold), &x).unwrap();
    let bits = |t: &Tensor<f32>| t.data().iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    let mut all = vec![bits(out.logits.value())];
    all.extend(out.aux.iter().flatten().map(|aux| bits(aux.value())));
    let loss = out.loss(&tape, &[1, 2, 3, 4]).unwrap();
    drop(out);
    tape.backward(&loss).unwrap();
    all.extend(net.parameters().iter().map(|p| bits(&p.grad().expect("every parameter is on the loss path"))));
    all.extend(net.buffers().iter().map(|b| bits(&b.value())));
    all
}

#[test]
fn training_ignores_the_fold_flag() {
    assert_eq!(training_step_bits(true), training_step_bits(false));
}

/// Runs `block` in eval mode on a recording tape and returns the gradients
/// of `sum(output * r)` for a fixed random `r`: the input's first, then
/// every parameter's.
fn eval_gradients(block: &BasicConv2d<f64>, x: &Tensor<f64>, fold: bool, relu: bool) -> Vec<Tensor<f64>> {
    let params = block.parameters();
    incept_autograd::zero_grads(&params);
    let tape = Tape::new();
    let ctx = ForwardCtx::eval(&tape).with_batch_norm_folding(fold);
    let input = tape.leaf(x.clone());
    let y = if relu { block.forward(&ctx, &input) } else { block.forward_pre_activation(&ctx, &input) }.unwrap();
    let r = Var::constant(Tensor::randn(y.dims(), 0.0, 1.0, 25));
    let loss = tape.sum(&tape.mul(&y, &r).unwrap());
    let grads = tape.backward(&loss).unwrap();
    let mut all = vec![grads.get(&input).expect("the output depends on the input").clone()];
    all.extend(params.iter().map(|p: &Parameter<f64>| p.grad().expect("every parameter gets a gradient")));
    all
}

#[test]
fn eval_gradients_match_unfolded() {
    // Eval mode on a recording tape (input saliency, or fine-tuning with
    // frozen statistics) gives the input, the convolution weight, gamma and
    // beta the gradients of the unfolded pass.
    let x = Tensor::<f64>::randn([2, 3, 6, 6], 0.0, 1.0, 26);
    let block = basic_conv::<f64>(3, 5, 3, 1, 26);
    for relu in [true, false] {
        let folded = eval_gradients(&block, &x, true, relu);
        let unfolded = eval_gradients(&block, &x, false, relu);
        assert_eq!(folded.len(), 4, "input, conv weight, gamma, beta");
        for (i, (f, u)) in folded.iter().zip(&unfolded).enumerate() {
            let gap = relative_gap(f, u);
            assert!(gap <= F64_TOLERANCE, "relu {relu}, gradient {i}: gap {gap:e}");
        }
    }
}
