//! Reductions, arg-max and matrix products against naive loops.

use incept_tensor::reduce::{argmax, matmul, max_axis, mean_axis, sum_axis, transpose_last};
use incept_tensor::{Tensor, TensorError};

/// Reads element `index` of a row-major tensor.
fn at(x: &Tensor<f64>, index: &[usize]) -> f64 {
    let flat = index.iter().zip(x.dims()).fold(0, |acc, (&i, &d)| acc * d + i);
    x.data()[flat]
}

#[test]
fn reductions_match_naive_loops() {
    let x = Tensor::<f64>::randn([3, 4, 5], 0.0, 1.0, 1);
    for axis in 0..3 {
        let sum = sum_axis(&x, axis, false).unwrap();
        let kept = sum_axis(&x, axis, true).unwrap();
        let mean = mean_axis(&x, axis, false).unwrap();
        let (max, indices) = max_axis(&x, axis, false).unwrap();
        let mut expected_dims = x.dims().to_vec();
        expected_dims.remove(axis);
        assert_eq!(sum.dims(), expected_dims.as_slice(), "axis {axis}");
        assert_eq!(kept.data(), sum.data(), "axis {axis} keepdim");
        assert_eq!(kept.dims()[axis], 1);
        assert_eq!(argmax(&x, axis).unwrap(), indices);
        let len = x.dims()[axis];
        for (flat, ((&s, &m), (&mx, &best))) in
            sum.data().iter().zip(mean.data()).zip(max.data().iter().zip(&indices)).enumerate()
        {
            // Rebuild the outer multi-index of this output element.
            let mut rest = flat;
            let mut index = vec![0; 2];
            for pos in (0..2).rev() {
                index[pos] = rest % expected_dims[pos];
                rest /= expected_dims[pos];
            }
            let full = |l: usize| {
                let mut full = index.clone();
                full.insert(axis, l);
                at(&x, &full)
            };
            let values: Vec<f64> = (0..len).map(full).collect();
            let expected_sum: f64 = values.iter().sum();
            assert!((s - expected_sum).abs() < 1e-12, "sum axis {axis}");
            assert!((m - expected_sum / len as f64).abs() < 1e-12, "mean axis {axis}");
            let expected_max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(mx, expected_max, "max axis {axis}");
            assert_eq!(values.iter().position(|&v| v == expected_max), Some(best), "argmax axis {axis}");
        }
    }
}

#[test]
fn max_ties_nan_and_errors() {
    let x = Tensor::<f32>::from_vec(vec![1.0, 3.0, 3.0, f32::NAN, 2.0, 5.0], [2, 3]).unwrap();
    let (values, indices) = max_axis(&x, 1, false).unwrap();
    assert_eq!(indices, vec![1, 0], "the first of tied maxima, and NaN wins as in PyTorch");
    assert_eq!(values.data()[0], 3.0);
    assert!(values.data()[1].is_nan());
    let err = sum_axis(&x, 2, false).unwrap_err();
    assert!(err.to_string().contains("axis 2 is out of range for shape [2, 3]"), "{err}");
    assert!(max_axis(&Tensor::<f32>::zeros([2, 0]), 1, false).is_err());
    assert!(mean_axis(&Tensor::<f32>::zeros([2, 0]), 1, false).unwrap().data().iter().all(|v| v.is_nan()));
}

/// Integer-valued entries, so that every product and sum is exact and the
/// comparison with the naive loop can be exact too.
fn ints(dims: &[usize], seed: usize) -> Tensor<f64> {
    let len: usize = dims.iter().product();
    Tensor::from_vec((0..len).map(|i| ((i * 7 + seed * 13) % 11) as f64 - 5.0).collect(), dims).unwrap()
}

fn naive_matmul(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

#[test]
fn matmul_forms_match_naive() {
    let (batch, m, k, n) = (3, 4, 5, 6);
    let a2 = ints(&[m, k], 2);
    let b2 = ints(&[k, n], 3);
    let c = matmul(&a2, &b2).unwrap();
    assert_eq!(c.dims(), &[m, n]);
    assert_eq!(c.data(), naive_matmul(a2.data(), b2.data(), m, k, n).as_slice());

    let a3 = ints(&[batch, m, k], 4);
    let b3 = ints(&[batch, k, n], 5);
    let batched = matmul(&a3, &b3).unwrap();
    let shared = matmul(&a3, &b2).unwrap();
    for t in 0..batch {
        let a_t = &a3.data()[t * m * k..(t + 1) * m * k];
        let expected = naive_matmul(a_t, &b3.data()[t * k * n..(t + 1) * k * n], m, k, n);
        assert_eq!(&batched.data()[t * m * n..(t + 1) * m * n], expected.as_slice());
        assert_eq!(&shared.data()[t * m * n..(t + 1) * m * n], naive_matmul(a_t, b2.data(), m, k, n).as_slice());
    }

    let err = matmul(&a2, &a2).unwrap_err();
    assert!(matches!(err, TensorError::ShapeMismatch { op: "matmul", .. }), "{err}");
    assert!(matmul(&a3, &Tensor::<f64>::zeros([2, k, n])).is_err());
    assert!(matmul(&a2, &b3).is_err());
    let t = transpose_last(&a3).unwrap();
    assert_eq!(t.dims(), &[batch, k, m]);
    assert_eq!(at(&t, &[2, 1, 3]), at(&a3, &[2, 3, 1]));
}
