//! Reverse-mode automatic differentiation, losses and optimisers for incept.
//!
//! A [`Tape`] records each operation of a forward pass together with its
//! gradient rule; [`Tape::backward`] walks the records once in reverse and
//! adds every parameter's gradient to [`Parameter::grad`]. A value used by
//! several operations receives the sum of their gradients. An inference
//! tape ([`Tape::inference`]) runs the same code and records nothing.
//!
//! ```
//! use incept_autograd::{Parameter, Tape};
//! use incept_tensor::Tensor;
//!
//! let w = Parameter::new("w", Tensor::<f32>::from_vec(vec![2.0, -1.0], [1, 2]).unwrap());
//! let tape = Tape::new();
//! let x = tape.leaf(Tensor::from_vec(vec![3.0, 4.0], [1, 2]).unwrap());
//! let y = tape.mul(&x, &tape.param(&w)).unwrap(); // [6, -4]
//! let loss = tape.sum(&y);
//! let grads = tape.backward(&loss).unwrap();
//! assert_eq!(w.grad().unwrap().data(), &[3.0, 4.0]);
//! assert_eq!(grads.get(&x).unwrap().data(), &[2.0, -1.0]);
//! ```

#![warn(missing_docs)]

mod adam;
mod error;
mod gradcheck;
mod ops;
mod optim;
mod param;
mod schedule;
mod tape;

pub use adam::{Adam, AdamConfig};
pub use error::{AutogradError, Result};
pub use gradcheck::{GradCheckReport, check_gradients};
pub use ops::EvalBatchNorm;
pub use optim::{Sgd, SgdConfig};
pub use param::{Parameter, zero_grads};
pub use schedule::{CosineLr, LinearWarmup, LrSchedule, OneCycleLr, StepLr};
pub use tape::{BackwardFn, Gradients, Tape, Var};
