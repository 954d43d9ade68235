//! Permute, slice and concat along any axis against naive index arithmetic.

use incept_tensor::Tensor;
use incept_tensor::layout::{concat, permute, slice_axis, split};

fn at(x: &Tensor<f64>, index: &[usize]) -> f64 {
    let flat = index.iter().zip(x.dims()).fold(0, |acc, (&i, &d)| acc * d + i);
    x.data()[flat]
}

/// Every multi-index of `dims` in row-major order.
fn indices(dims: &[usize]) -> Vec<Vec<usize>> {
    let total: usize = dims.iter().product();
    (0..total)
        .map(|mut flat| {
            let mut index = vec![0; dims.len()];
            for axis in (0..dims.len()).rev() {
                index[axis] = flat % dims[axis];
                flat /= dims[axis];
            }
            index
        })
        .collect()
}

#[test]
fn permute_moves_every_element() {
    let x = Tensor::<f64>::arange(120).reshape([2, 3, 4, 5]).unwrap();
    for axes in [[0, 1, 2, 3], [3, 2, 1, 0], [0, 2, 3, 1], [1, 0, 3, 2]] {
        let y = permute(&x, &axes).unwrap();
        for index in indices(y.dims()) {
            let mut source = [0; 4];
            for (out_axis, &in_axis) in axes.iter().enumerate() {
                source[in_axis] = index[out_axis];
            }
            assert_eq!(at(&y, &index), at(&x, &source), "axes {axes:?} at {index:?}");
        }
    }
    let err = permute(&x, &[0, 1, 1, 2]).unwrap_err();
    assert!(err.to_string().contains("must be a permutation of 0..4"), "{err}");
    assert!(permute(&x, &[0, 1, 2]).is_err());
}

#[test]
fn slice_and_concat_are_inverse() {
    let x = Tensor::<f64>::arange(60).reshape([3, 4, 5]).unwrap();
    for axis in 0..3 {
        let size = x.dims()[axis];
        let head = slice_axis(&x, axis, 0, 1).unwrap();
        let tail = slice_axis(&x, axis, 1, size - 1).unwrap();
        for index in indices(tail.dims()) {
            let mut source = index.clone();
            source[axis] += 1;
            assert_eq!(at(&tail, &index), at(&x, &source), "axis {axis}");
        }
        assert_eq!(concat(&[&head, &tail], axis).unwrap(), x, "axis {axis}");
    }
    assert!(slice_axis(&x, 1, 3, 2).unwrap_err().to_string().contains("indices 3..5 exceed the size 4"));
    assert!(slice_axis(&x, 3, 0, 1).is_err());
    assert!(concat(&[&x, &Tensor::zeros([3, 5, 5])], 0).is_err());
    assert!(concat::<f64>(&[], 0).is_err());
    assert_eq!(concat(&[&x, &Tensor::zeros([3, 2, 5])], 1).unwrap().dims(), &[3, 6, 5]);
}

#[test]
fn split_is_the_inverse_of_concat() {
    let x = Tensor::<f64>::arange(60).reshape([3, 4, 5]).unwrap();
    let pieces = split(&x, 2, &[1, 3, 1]).unwrap();
    assert_eq!(pieces.iter().map(|p| p.dims()[2]).collect::<Vec<_>>(), vec![1, 3, 1]);
    let refs: Vec<&Tensor<f64>> = pieces.iter().collect();
    assert_eq!(concat(&refs, 2).unwrap(), x);
    let err = split(&x, 1, &[1, 2]).unwrap_err();
    assert!(err.to_string().contains("must add up to 4"), "{err}");
}
