//! Finite-difference gradient checks (f64) for every differentiable operation,
//! plus the graph shapes that make accumulation matter.

use incept_autograd::{
    AutogradError, EvalBatchNorm, GradCheckReport, OneCycleLr, Parameter, Result, Sgd, SgdConfig, Tape, Var,
    check_gradients,
};
use incept_tensor::Tensor;
use incept_tensor::conv::Conv2dParams;
use incept_tensor::lrn::LrnParams;
use incept_tensor::pool::Pool2dParams;

/// Central-difference step; with f64 the truncation and rounding errors are
/// both near 1e-9 for the smooth parts of these functions.
const STEP: f64 = 1e-6;
const TOLERANCE: f64 = 1e-6;

fn randn(dims: &[usize], seed: u64) -> Tensor<f64> {
    Tensor::randn(dims, 0.0, 1.0, seed)
}

fn assert_passes(report: GradCheckReport, what: &str) {
    assert!(report.checked > 0, "{what}: nothing was checked");
    assert!(
        report.max_error < TOLERANCE,
        "{what}: worst error {:.3e} at input {} element {} (analytic {}, numeric {})",
        report.max_error,
        report.worst.0,
        report.worst.1,
        report.analytic,
        report.numeric
    );
}

#[test]
fn gradcheck_detects_a_wrong_gradient() {
    // A deliberately wrong rule (gradient 3x where it should be 2x) must fail.
    let report = check_gradients(&[randn(&[3], 1)], STEP, |tape, v| {
        let y = v[0].value().clone();
        Ok::<_, AutogradError>(tape.record(
            incept_tensor::elementwise::scale(&y, 2.0),
            &[&v[0]],
            Box::new(|dy: &Tensor<f64>| Ok(vec![Some(incept_tensor::elementwise::scale(dy, 3.0))])),
        ))
    })
    .unwrap();
    assert!(report.max_error > 0.1, "{report:?}");
}

#[test]
fn conv2d_gradients() {
    let cases: [([usize; 4], [usize; 4], Conv2dParams); 9] = [
        ([2, 3, 5, 5], [4, 3, 3, 3], Conv2dParams::new(1, 1)),
        ([1, 2, 6, 7], [3, 2, 1, 1], Conv2dParams::new(1, 0)),
        ([2, 2, 5, 5], [2, 2, 1, 1], Conv2dParams::new(2, 0)),
        ([1, 2, 7, 7], [2, 2, 3, 3], Conv2dParams::new(4, 0)),
        ([2, 1, 3, 3], [2, 1, 2, 2], Conv2dParams::new(1, 3)),
        ([1, 3, 8, 6], [2, 3, 5, 3], Conv2dParams { stride: (2, 1), padding: (2, 1), dilation: (1, 1), groups: 1 }),
        ([1, 2, 7, 7], [2, 2, 3, 3], Conv2dParams { stride: (1, 1), padding: (2, 2), dilation: (2, 2), groups: 1 }),
        ([2, 4, 5, 5], [4, 1, 3, 3], Conv2dParams::new(1, 1).with_groups(4)),
        ([1, 4, 4, 4], [6, 2, 1, 1], Conv2dParams::new(1, 0).with_groups(2)),
    ];
    for (i, (x, w, params)) in cases.into_iter().enumerate() {
        let inputs = [randn(&x, 10 + i as u64), randn(&w, 20 + i as u64), randn(&[w[0]], 30 + i as u64)];
        let report = check_gradients(&inputs, STEP, |tape, v| tape.conv2d(&v[0], &v[1], Some(&v[2]), params)).unwrap();
        assert_passes(report, &format!("conv2d {x:?} {w:?} {params:?}"));
    }
}

#[test]
fn max_pool2d_gradients() {
    let cases = [
        ([2, 2, 6, 6], Pool2dParams::new(3, 2, 0, true)),
        ([1, 3, 7, 7], Pool2dParams::new(3, 2, 1, true)),
        ([1, 1, 5, 5], Pool2dParams::new(2, 2, 1, true)),
        ([2, 1, 7, 7], Pool2dParams::new(2, 3, 0, false)),
        ([1, 2, 4, 5], Pool2dParams::new(3, 1, 1, false)),
    ];
    for (i, (x, params)) in cases.into_iter().enumerate() {
        // Distinct values spaced far beyond the step, so no window has a tie
        // that a finite difference could flip.
        let n: usize = x.iter().product();
        let mut values: Vec<f64> = (0..n).map(|j| (j as f64) * 0.01).collect();
        let mut state = 40 + i as u64;
        for j in (1..n).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            values.swap(j, (state >> 33) as usize % (j + 1));
        }
        let input = Tensor::from_vec(values, x).unwrap();
        let report = check_gradients(&[input], STEP, |tape, v| tape.max_pool2d(&v[0], params)).unwrap();
        assert_passes(report, &format!("max_pool2d {x:?} {params:?}"));
    }
}

#[test]
fn max_pool2d_tie_sends_gradient_to_first_maximum() {
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![5.0, 5.0, 1.0, 5.0], [1, 1, 2, 2]).unwrap());
    let y = tape.max_pool2d(&x, Pool2dParams::new(2, 2, 0, false)).unwrap();
    let loss = tape.sum(&y);
    let grads = tape.backward(&loss).unwrap();
    assert_eq!(grads.get(&x).unwrap().data(), &[1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn adaptive_avg_pool2d_gradients() {
    for (i, (x, out)) in [
        ([2, 2, 7, 7], (2, 2)),
        ([1, 3, 5, 5], (1, 1)),
        ([1, 1, 5, 7], (3, 2)),
        ([2, 1, 4, 4], (4, 4)),
        ([1, 2, 14, 14], (2, 2)),
    ]
    .into_iter()
    .enumerate()
    {
        let report =
            check_gradients(&[randn(&x, 50 + i as u64)], STEP, |tape, v| tape.adaptive_avg_pool2d(&v[0], out.0, out.1))
                .unwrap();
        assert_passes(report, &format!("adaptive_avg_pool2d {x:?} {out:?}"));
    }
}

#[test]
fn avg_pool2d_gradients() {
    let cases = [
        ([2, 2, 6, 6], Pool2dParams::new(3, 2, 0, true)),
        ([1, 3, 7, 7], Pool2dParams::new(3, 2, 1, true)),
        ([1, 1, 5, 5], Pool2dParams::new(2, 2, 1, true)),
        ([2, 1, 7, 7], Pool2dParams::new(2, 3, 0, false)),
        ([1, 2, 4, 5], Pool2dParams::new(3, 1, 1, false)),
    ];
    for (i, (x, params)) in cases.into_iter().enumerate() {
        for count_include_pad in [true, false] {
            let report = check_gradients(&[randn(&x, 140 + i as u64)], STEP, |tape, v| {
                tape.avg_pool2d(&v[0], params, count_include_pad)
            })
            .unwrap();
            assert_passes(report, &format!("avg_pool2d {x:?} {params:?} count_include_pad {count_include_pad}"));
        }
    }
}

#[test]
fn lrn_gradients() {
    let params = [
        LrnParams::GOOGLENET,
        LrnParams { size: 4, alpha: 0.5, beta: 0.75, k: 2.0 },
        LrnParams { size: 1, alpha: 1.0, beta: 1.5, k: 1.0 },
        LrnParams { size: 3, alpha: 2.0, beta: 0.5, k: 0.5 },
        LrnParams { size: 7, alpha: 1.0, beta: 0.75, k: 1.0 },
    ];
    for (i, (x, params)) in
        [[2, 3, 2, 2], [1, 6, 3, 1], [1, 2, 2, 3], [2, 5, 1, 2], [1, 4, 2, 2]].into_iter().zip(params).enumerate()
    {
        let report = check_gradients(&[randn(&x, 150 + i as u64)], STEP, |tape, v| tape.lrn(&v[0], params)).unwrap();
        assert_passes(report, &format!("lrn {x:?} {params:?}"));
    }
}

#[test]
fn batch_norm_train_gradients() {
    for (i, x) in [[4, 2, 3, 3], [2, 3, 2, 2], [8, 1, 1, 1], [1, 2, 3, 5], [3, 4, 2, 1]].into_iter().enumerate() {
        let c = x[1];
        let inputs = [randn(&x, 60 + i as u64), randn(&[c], 61 + i as u64), randn(&[c], 62 + i as u64)];
        let report = check_gradients(&inputs, STEP, |tape, v| {
            Ok::<_, AutogradError>(tape.batch_norm2d_train(&v[0], &v[1], &v[2], 1e-5)?.0)
        })
        .unwrap();
        assert_passes(report, &format!("batch_norm2d_train {x:?}"));
    }
}

#[test]
fn batch_norm_eval_gradients() {
    for (i, x) in [[2, 2, 3, 3], [1, 3, 2, 2], [4, 1, 1, 1], [1, 2, 3, 5], [2, 4, 2, 1]].into_iter().enumerate() {
        let c = x[1];
        let mean = randn(&[c], 70 + i as u64);
        let var = Tensor::rand_uniform([c], 0.5, 2.0, 71 + i as u64);
        let inputs = [randn(&x, 72 + i as u64), randn(&[c], 73 + i as u64), randn(&[c], 74 + i as u64)];
        let report =
            check_gradients(&inputs, STEP, |tape, v| tape.batch_norm2d_eval(&v[0], &v[1], &v[2], &mean, &var, 1e-3))
                .unwrap();
        assert_passes(report, &format!("batch_norm2d_eval {x:?}"));
    }
}

#[test]
fn conv2d_batch_norm_eval_gradients() {
    // (input, weight, geometry, with a conv bias, with the ReLU)
    let cases = [
        ([2, 3, 5, 5], [4, 3, 3, 3], Conv2dParams::new(1, 1), false, true),
        ([1, 4, 4, 4], [6, 2, 1, 1], Conv2dParams::new(1, 0).with_groups(2), true, false),
        ([2, 2, 6, 6], [3, 2, 3, 3], Conv2dParams::new(2, 1), true, true),
        ([1, 2, 5, 5], [2, 2, 3, 3], Conv2dParams::new(1, 0), false, false),
    ];
    for (i, (x, w, params, with_bias, relu)) in cases.into_iter().enumerate() {
        let seed = 160 + 10 * i as u64;
        let c = w[0];
        let mean = randn(&[c], seed);
        // Channel 0 has zero variance, where only eps keeps the scale finite.
        let mut var = Tensor::rand_uniform([c], 0.5, 2.0, seed + 1);
        var.data_mut()[0] = 0.0;
        let mut inputs = vec![randn(&x, seed + 2), randn(&w, seed + 3), randn(&[c], seed + 4), randn(&[c], seed + 5)];
        if with_bias {
            inputs.push(randn(&[c], seed + 6));
        }
        let report = check_gradients(&inputs, STEP, |tape, v| {
            let bn = EvalBatchNorm { gamma: &v[2], beta: &v[3], running_mean: &mean, running_var: &var, eps: 1e-3 };
            tape.conv2d_batch_norm_eval(&v[0], &v[1], v.get(4), bn, params, relu)
        })
        .unwrap();
        assert_passes(report, &format!("conv2d_batch_norm_eval {x:?} {w:?} {params:?} bias {with_bias} relu {relu}"));
    }
}

/// Values of magnitude at least 0.05, so relu's kink at 0 is never within a step.
fn away_from_zero(dims: &[usize], seed: u64) -> Tensor<f64> {
    let mut t = randn(dims, seed);
    t.data_mut().iter_mut().for_each(|v| *v += 0.05f64.copysign(*v));
    t
}

#[test]
fn relu_and_dropout_gradients() {
    for (i, x) in [vec![5], vec![2, 3], vec![2, 2, 3, 3], vec![1, 4, 1, 1], vec![3, 1, 2, 5]].into_iter().enumerate() {
        let input = away_from_zero(&x, 80 + i as u64);
        let report =
            check_gradients(std::slice::from_ref(&input), STEP, |tape, v| Ok::<_, AutogradError>(tape.relu(&v[0])))
                .unwrap();
        assert_passes(report, &format!("relu {x:?}"));
        let report = check_gradients(&[input], STEP, |tape, v| tape.dropout(&v[0], 0.4, 7)).unwrap();
        assert_passes(report, &format!("dropout {x:?}"));
    }
}

#[test]
fn linear_gradients() {
    for (i, (n, f_in, f_out)) in [(1, 1, 1), (3, 4, 2), (5, 2, 7), (2, 9, 3), (4, 6, 6)].into_iter().enumerate() {
        let inputs =
            [randn(&[n, f_in], 90 + i as u64), randn(&[f_out, f_in], 91 + i as u64), randn(&[f_out], 92 + i as u64)];
        let report = check_gradients(&inputs, STEP, |tape, v| tape.linear(&v[0], &v[1], Some(&v[2]))).unwrap();
        assert_passes(report, &format!("linear {n}x{f_in}->{f_out}"));
    }
}

#[test]
fn log_softmax_and_cross_entropy_gradients() {
    for (i, (n, c)) in [(1, 2), (3, 5), (4, 10), (2, 1), (6, 3)].into_iter().enumerate() {
        let input = Tensor::randn([n, c], 0.0, 3.0, 100 + i as u64);
        let report = check_gradients(std::slice::from_ref(&input), STEP, |tape, v| tape.log_softmax(&v[0])).unwrap();
        assert_passes(report, &format!("log_softmax {n}x{c}"));
        let targets: Vec<usize> = (0..n).map(|r| (r * 3 + 1) % c).collect();
        let report =
            check_gradients(std::slice::from_ref(&input), STEP, |tape, v| tape.cross_entropy(&v[0], &targets)).unwrap();
        assert_passes(report, &format!("cross_entropy {n}x{c}"));
        let report =
            check_gradients(&[input], STEP, |tape, v| tape.cross_entropy_smoothed(&v[0], &targets, 0.1)).unwrap();
        assert_passes(report, &format!("cross_entropy_smoothed {n}x{c}"));
    }
}

#[test]
fn arithmetic_and_shape_gradients() {
    for (i, dims) in [vec![3], vec![2, 3], vec![2, 3, 2, 2], vec![1, 1, 1, 1], vec![2, 1, 3, 1]].into_iter().enumerate()
    {
        let inputs = [randn(&dims, 110 + i as u64), randn(&dims, 111 + i as u64)];
        let report = check_gradients(&inputs, STEP, |tape, v| tape.add(&v[0], &v[1])).unwrap();
        assert_passes(report, &format!("add {dims:?}"));
        let report = check_gradients(&inputs, STEP, |tape, v| tape.mul(&v[0], &v[1])).unwrap();
        assert_passes(report, &format!("mul {dims:?}"));
        let report = check_gradients(&inputs, STEP, |tape, v| Ok::<_, AutogradError>(tape.scale(&v[0], -2.5))).unwrap();
        assert_passes(report, &format!("scale {dims:?}"));
        let report = check_gradients(&inputs, STEP, |tape, v| Ok::<_, AutogradError>(tape.sum(&v[0]))).unwrap();
        assert_passes(report, &format!("sum {dims:?}"));
        let report = check_gradients(&inputs, STEP, |tape, v| tape.flatten(&v[0])).unwrap();
        assert_passes(report, &format!("flatten {dims:?}"));
    }
    for (i, (a, b)) in [(1, 2), (3, 1), (2, 2), (4, 3), (1, 1)].into_iter().enumerate() {
        let inputs = [randn(&[2, a, 2, 3], 120 + i as u64), randn(&[2, b, 2, 3], 121 + i as u64)];
        let report = check_gradients(&inputs, STEP, |tape, v| tape.concat_channels(&[&v[0], &v[1], &v[0]])).unwrap();
        assert_passes(report, &format!("concat_channels {a}+{b}+{a}"));
    }
}

#[test]
fn broadcasting_arithmetic_gradients() {
    let shapes: [(&[usize], &[usize]); 5] =
        [(&[2, 3], &[3]), (&[2, 1, 3], &[4, 1]), (&[1], &[2, 2]), (&[3, 1, 2], &[1, 4, 1]), (&[2, 2], &[])];
    for (i, (a, b)) in shapes.into_iter().enumerate() {
        let inputs = [randn(a, 160 + i as u64), Tensor::rand_uniform(b, 0.5, 2.0, 170 + i as u64)];
        for (name, op) in [
            ("add", Tape::add as fn(&Tape<f64>, &Var<f64>, &Var<f64>) -> Result<Var<f64>>),
            ("sub", Tape::sub),
            ("mul", Tape::mul),
            ("div", Tape::div),
        ] {
            let report = check_gradients(&inputs, STEP, |tape, v| op(tape, &v[0], &v[1])).unwrap();
            assert_passes(report, &format!("{name} {a:?} with {b:?}"));
        }
    }
}

#[test]
fn reduction_and_matmul_gradients() {
    for (i, (dims, axis)) in
        [(vec![3, 4], 0), (vec![3, 4], 1), (vec![2, 3, 4], 1), (vec![5], 0), (vec![2, 1, 3], 2)].into_iter().enumerate()
    {
        let input = randn(&dims, 180 + i as u64);
        for keepdim in [false, true] {
            let report =
                check_gradients(std::slice::from_ref(&input), STEP, |tape, v| tape.sum_axis(&v[0], axis, keepdim))
                    .unwrap();
            assert_passes(report, &format!("sum_axis {dims:?} axis {axis} keepdim {keepdim}"));
            let report =
                check_gradients(std::slice::from_ref(&input), STEP, |tape, v| tape.mean_axis(&v[0], axis, keepdim))
                    .unwrap();
            assert_passes(report, &format!("mean_axis {dims:?} axis {axis} keepdim {keepdim}"));
        }
    }
    let forms: [(&[usize], &[usize]); 5] =
        [(&[3, 4], &[4, 2]), (&[2, 3, 4], &[2, 4, 5]), (&[2, 3, 4], &[4, 5]), (&[1, 1], &[1, 1]), (&[4, 1], &[1, 3])];
    for (i, (a, b)) in forms.into_iter().enumerate() {
        let inputs = [randn(a, 190 + i as u64), randn(b, 200 + i as u64)];
        let report = check_gradients(&inputs, STEP, |tape, v| tape.matmul(&v[0], &v[1])).unwrap();
        assert_passes(report, &format!("matmul {a:?} x {b:?}"));
    }
}

#[test]
fn softmax_gradients() {
    for (i, (dims, axis)) in
        [(vec![3, 4], 1), (vec![3, 4], 0), (vec![2, 3, 4], 1), (vec![5], 0), (vec![2, 1, 3], 1)].into_iter().enumerate()
    {
        let input = Tensor::randn(dims.as_slice(), 0.0, 3.0, 210 + i as u64);
        let report = check_gradients(std::slice::from_ref(&input), STEP, |tape, v| tape.softmax(&v[0], axis)).unwrap();
        assert_passes(report, &format!("softmax {dims:?} axis {axis}"));
        let report = check_gradients(&[input], STEP, |tape, v| tape.log_softmax_axis(&v[0], axis)).unwrap();
        assert_passes(report, &format!("log_softmax_axis {dims:?} axis {axis}"));
    }
}

#[test]
fn unary_math_gradients() {
    for (i, dims) in [vec![4], vec![2, 3], vec![2, 1, 3], vec![1, 1], vec![3, 2, 2]].into_iter().enumerate() {
        let any = randn(&dims, 220 + i as u64);
        let positive = Tensor::rand_uniform(dims.as_slice(), 0.5, 3.0, 230 + i as u64);
        let report =
            check_gradients(std::slice::from_ref(&any), STEP, |tape, v| Ok::<_, AutogradError>(tape.exp(&v[0])))
                .unwrap();
        assert_passes(report, &format!("exp {dims:?}"));
        let report = check_gradients(std::slice::from_ref(&any), STEP, |tape, v| {
            Ok::<_, AutogradError>(tape.add_scalar(&v[0], 1.5))
        })
        .unwrap();
        assert_passes(report, &format!("add_scalar {dims:?}"));
        let report =
            check_gradients(std::slice::from_ref(&positive), STEP, |tape, v| Ok::<_, AutogradError>(tape.ln(&v[0])))
                .unwrap();
        assert_passes(report, &format!("ln {dims:?}"));
        let report = check_gradients(&[positive], STEP, |tape, v| Ok::<_, AutogradError>(tape.sqrt(&v[0]))).unwrap();
        assert_passes(report, &format!("sqrt {dims:?}"));
    }
}

#[test]
fn layout_gradients() {
    let cases: [(&[usize], &[usize]); 5] = [
        (&[2, 3], &[1, 0]),
        (&[2, 3, 4], &[2, 0, 1]),
        (&[1, 2, 2, 3], &[0, 2, 3, 1]),
        (&[4], &[0]),
        (&[3, 1, 2], &[1, 2, 0]),
    ];
    for (i, (dims, axes)) in cases.into_iter().enumerate() {
        let input = randn(dims, 240 + i as u64);
        let report = check_gradients(std::slice::from_ref(&input), STEP, |tape, v| tape.permute(&v[0], axes)).unwrap();
        assert_passes(report, &format!("permute {dims:?} {axes:?}"));
        let axis = dims.len() - 1;
        let size = dims[axis];
        let report = check_gradients(std::slice::from_ref(&input), STEP, |tape, v| {
            tape.slice_axis(&v[0], axis, size / 2, size - size / 2)
        })
        .unwrap();
        assert_passes(report, &format!("slice_axis {dims:?}"));
        let report = check_gradients(&[input.clone(), randn(dims, 250 + i as u64)], STEP, |tape, v| {
            tape.concat(&[&v[0], &v[1], &v[0]], 0)
        })
        .unwrap();
        assert_passes(report, &format!("concat {dims:?}"));
        let report = check_gradients(&[input], STEP, |tape, v| {
            let pieces = tape.split(&v[0], axis, &[size / 2, size - size / 2])?;
            tape.mul(&pieces[1], &pieces[1])
        })
        .unwrap();
        assert_passes(report, &format!("split {dims:?}"));
    }
}

#[test]
fn fan_out_and_diamond_accumulate() {
    // y = x * x uses x twice: dy/dx = 2x.
    let tape = Tape::<f64>::new();
    let x = tape.leaf(Tensor::from_vec(vec![3.0, -2.0], [2]).unwrap());
    let y = tape.mul(&x, &x).unwrap();
    let loss = tape.sum(&y);
    assert_eq!(tape.backward(&loss).unwrap().get(&x).unwrap().data(), &[6.0, -4.0]);

    // Diamond: a = 2x, b = 3x, loss = sum(a * b) = 6 sum(x^2), so the gradient is 12x.
    let report = check_gradients(&[randn(&[2, 3], 130)], STEP, |tape, v| {
        let a = tape.scale(&v[0], 2.0);
        let b = tape.scale(&v[0], 3.0);
        tape.mul(&a, &b)
    })
    .unwrap();
    assert_passes(report, "diamond");

    // One tensor feeding a concat and a convolution, as an Inception input does.
    let w = randn(&[2, 3, 1, 1], 131);
    let report = check_gradients(&[randn(&[1, 3, 3, 3], 132)], STEP, |tape, v| {
        let branch = tape.conv2d(&v[0], &Var::constant(w.clone()), None, Conv2dParams::default())?;
        tape.concat_channels(&[&v[0], &branch])
    })
    .unwrap();
    assert_passes(report, "concat plus conv fan-out");
}

#[test]
fn unused_parameter_gets_no_gradient() {
    let used = Parameter::new("used", Tensor::<f64>::ones([2]));
    let unused = Parameter::new("unused", Tensor::<f64>::ones([2]));
    let tape = Tape::new();
    let _ = tape.param(&unused);
    let loss = tape.sum(&tape.param(&used));
    tape.backward(&loss).unwrap();
    assert_eq!(used.grad().unwrap().data(), &[1.0, 1.0]);
    assert!(unused.grad().is_none(), "an unused parameter has no gradient (None, not zeros)");
}

#[test]
fn parameter_gradients_accumulate_until_zeroed() {
    let p = Parameter::new("p", Tensor::<f32>::from_vec(vec![1.0, 2.0], [2]).unwrap());
    for _ in 0..2 {
        let tape = Tape::new();
        let loss = tape.sum(&tape.scale(&tape.param(&p), 3.0));
        tape.backward(&loss).unwrap();
    }
    assert_eq!(p.grad().unwrap().data(), &[6.0, 6.0]);
    p.zero_grad();
    assert!(p.grad().is_none());
}

#[test]
fn inference_tape_records_nothing() {
    let p = Parameter::new("w", Tensor::<f32>::ones([3, 2, 3, 3]));
    let tape = Tape::inference();
    let x = Var::constant(Tensor::ones([1, 2, 5, 5]));
    let y = tape.conv2d(&x, &tape.param(&p), None, Conv2dParams::new(1, 1)).unwrap();
    let loss = tape.sum(&y);
    assert!(tape.is_empty());
    assert!(!loss.requires_grad());
    assert!(matches!(tape.backward(&loss), Err(AutogradError::NotRecorded)));
    // The parameter's tensor is shared, not copied, and no other reference to it remains.
    drop((y, loss));
    assert_eq!(std::sync::Arc::strong_count(&p.value()), 2);
}

#[test]
fn backward_rejects_non_scalar_loss() {
    let tape = Tape::<f32>::new();
    let x = tape.leaf(Tensor::ones([2, 2]));
    let err = tape.backward(&x).unwrap_err();
    assert!(matches!(err, AutogradError::NonScalarLoss { .. }));
    assert!(err.to_string().contains("[2, 2]"), "{err}");
}

#[test]
fn backward_rejects_value_from_another_tape() {
    let first = Tape::<f32>::new();
    let x = first.leaf(Tensor::ones([1]));
    let second = Tape::<f32>::new();
    let _ = second.leaf(Tensor::ones([1]));
    assert!(matches!(second.backward(&x), Err(AutogradError::NotRecorded)));
}

#[test]
fn sgd_matches_pytorch_update_rule() {
    // Hand-computed with PyTorch's rule: lr 0.1, momentum 0.9, weight decay
    // 0.01, Nesterov, constant gradient 1 for two steps from p = 1.
    let p = Parameter::new("p", Tensor::<f64>::ones([1]));
    let mut sgd =
        Sgd::new(vec![p.clone()], SgdConfig { lr: 0.1, momentum: 0.9, weight_decay: 0.01, nesterov: true }).unwrap();
    let mut value = 1.0f64;
    let mut buf: Option<f64> = None;
    for _ in 0..2 {
        sgd.zero_grad();
        let tape = Tape::new();
        let loss = tape.sum(&tape.param(&p));
        tape.backward(&loss).unwrap();
        sgd.step();
        let g = 1.0 + 0.01 * value;
        let b = buf.map_or(g, |b| 0.9 * b + g);
        buf = Some(b);
        value -= 0.1 * (g + 0.9 * b);
        assert!((p.value().data()[0] - value).abs() < 1e-12, "{} vs {value}", p.value().data()[0]);
    }
    assert!(Sgd::<f32>::new(vec![], SgdConfig { lr: -1.0, ..Default::default() }).is_err());
    assert!(Sgd::<f32>::new(vec![], SgdConfig { nesterov: true, ..Default::default() }).is_err());
    assert!(sgd.set_lr(f64::NAN).is_err());
    assert!(sgd.set_lr(-0.1).is_err());
    assert_eq!(sgd.lr(), 0.1, "a rejected rate leaves the old one");
    // Finite in f64 but infinite in f32.
    assert!(Sgd::<f32>::new(vec![], SgdConfig { lr: 1e300, ..Default::default() }).is_err());
    assert!(Sgd::<f64>::new(vec![], SgdConfig { lr: 1e300, ..Default::default() }).is_ok());
}

#[test]
fn one_cycle_matches_pytorch_shape() {
    let schedule = OneCycleLr::new(0.1, 100).unwrap();
    assert!((schedule.lr_at(0) - 0.004).abs() < 1e-12);
    assert!((schedule.lr_at(29) - 0.1).abs() < 1e-12);
    assert!((schedule.lr_at(99) - 0.004 / 1e4).abs() < 1e-15);
    let lrs: Vec<f64> = (0..100).map(|s| schedule.lr_at(s)).collect();
    assert!(lrs[..30].windows(2).all(|w| w[0] < w[1]));
    assert!(lrs[29..].windows(2).all(|w| w[0] > w[1]));
    assert!(OneCycleLr::new(f64::NAN, 100).is_err());
    // The largest finite rate stays finite everywhere on the curve.
    let huge = OneCycleLr::new(1.7e308, 10).unwrap();
    assert!((0..10).all(|s| huge.lr_at(s).is_finite()));
    // With 3 steps the peak (0.3 * 3 - 1) lies before step 0, so step 0 is already annealing.
    let short = OneCycleLr::new(0.1, 3).unwrap();
    assert!(short.lr_at(0) < 0.1, "step 0 is below the peak");
    assert!(short.lr_at(0) > short.lr_at(1), "and the rate falls from there");
    assert!(OneCycleLr::new(0.1, 0).is_err());
}

#[test]
fn errors_propagate_from_kernels() {
    let tape = Tape::<f32>::new();
    let logits = tape.leaf(Tensor::zeros([2, 3]));
    let err: Result<Var<f32>> = tape.cross_entropy(&logits, &[0, 5]);
    assert!(err.unwrap_err().to_string().contains("target 5"));
}
