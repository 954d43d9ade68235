//! Broadcasting element-wise arithmetic against a naive multi-index loop.

use incept_tensor::broadcast::{broadcast_shape, expand, sum_to};
use incept_tensor::elementwise::{add, div, mul, sub};
use incept_tensor::{Tensor, TensorError};

/// Reads `x` at the multi-index `index` of the broadcast shape `out`, taking
/// index 0 on axes where `x` has size 1 or no axis.
fn read_broadcast(x: &Tensor<f64>, out: &[usize], index: &[usize]) -> f64 {
    let offset = out.len() - x.dims().len();
    let mut flat = 0;
    for (axis, &size) in x.dims().iter().enumerate() {
        let i = if size == 1 { 0 } else { index[axis + offset] };
        flat = flat * size + i;
    }
    x.data()[flat]
}

/// A broadcasting kernel under test.
type BinaryOp = fn(&Tensor<f64>, &Tensor<f64>) -> incept_tensor::Result<Tensor<f64>>;

/// The scalar function a kernel applies to each pair of elements.
type Scalar = fn(f64, f64) -> f64;

fn naive(a: &Tensor<f64>, b: &Tensor<f64>, out: &[usize], f: Scalar) -> Vec<f64> {
    let total: usize = out.iter().product();
    (0..total)
        .map(|mut flat| {
            let mut index = vec![0; out.len()];
            for axis in (0..out.len()).rev() {
                index[axis] = flat % out[axis];
                flat /= out[axis];
            }
            f(read_broadcast(a, out, &index), read_broadcast(b, out, &index))
        })
        .collect()
}

#[test]
fn binary_ops_broadcast_like_pytorch() {
    // (a, b, broadcast shape as PyTorch computes it)
    let cases: [(&[usize], &[usize], &[usize]); 9] = [
        (&[2, 3], &[3], &[2, 3]),
        (&[2, 1, 3], &[4, 1], &[2, 4, 3]),
        (&[1], &[5], &[5]),
        (&[], &[2, 2], &[2, 2]),
        (&[3, 1, 1], &[1, 2, 4], &[3, 2, 4]),
        (&[2, 3, 4], &[2, 3, 4], &[2, 3, 4]),
        (&[4, 1], &[1, 1], &[4, 1]),
        (&[2, 1, 3, 1], &[5, 1, 2], &[2, 5, 3, 2]),
        (&[0, 3], &[3], &[0, 3]),
    ];
    for (i, (a_dims, b_dims, expected)) in cases.into_iter().enumerate() {
        assert_eq!(broadcast_shape("test", a_dims, b_dims).unwrap(), expected, "{a_dims:?} with {b_dims:?}");
        let a = Tensor::<f64>::randn(a_dims, 0.0, 1.0, 10 + i as u64);
        let b = Tensor::<f64>::rand_uniform(b_dims, 0.5, 2.0, 20 + i as u64);
        let ops: [(&str, BinaryOp, Scalar); 4] = [
            ("add", add, |x, y| x + y),
            ("sub", sub, |x, y| x - y),
            ("mul", mul, |x, y| x * y),
            ("div", div, |x, y| x / y),
        ];
        for (name, op, f) in ops {
            let got = op(&a, &b).unwrap();
            assert_eq!(got.dims(), expected, "{name} {a_dims:?} {b_dims:?}");
            assert_eq!(got.data(), naive(&a, &b, expected, f).as_slice(), "{name} {a_dims:?} {b_dims:?}");
            // Broadcasting is symmetric in shape.
            assert_eq!(op(&b, &a).unwrap().dims(), expected, "{name} {b_dims:?} {a_dims:?}");
        }
    }
}

#[test]
fn incompatible_shapes_name_the_axis() {
    let err = add(&Tensor::<f32>::zeros([2, 3]), &Tensor::zeros([4])).unwrap_err();
    assert!(matches!(err, TensorError::ShapeMismatch { op: "add", .. }), "{err}");
    assert!(err.to_string().contains("sizes 3 and 4 at axis 1"), "{err}");
}

#[test]
fn sum_to_reverses_broadcasting() {
    let x = Tensor::<f64>::arange(24).reshape([2, 3, 4]).unwrap();
    let summed = sum_to(&x, &[3, 1]).unwrap();
    assert_eq!(summed.dims(), &[3, 1]);
    // Row r sums x[b, r, c] over b and c.
    let expected: Vec<f64> =
        (0..3).map(|r| (0..2).flat_map(|b| (0..4).map(move |c| (b * 12 + r * 4 + c) as f64)).sum()).collect();
    assert_eq!(summed.data(), expected.as_slice());
    assert_eq!(sum_to(&x, &[]).unwrap().data(), &[276.0]);
    assert_eq!(sum_to(&x, &[2, 3, 4]).unwrap(), x);
    assert!(sum_to(&x, &[5]).is_err());
}

#[test]
fn expand_copies_along_size_one_axes() {
    let x = Tensor::<f32>::from_vec(vec![1.0, 2.0], [2, 1]).unwrap();
    let y = expand(&x, &[3, 2, 2]).unwrap();
    assert_eq!(y.dims(), &[3, 2, 2]);
    assert_eq!(y.data(), &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
    assert!(expand(&x, &[3, 1]).is_err());
}
