//! Differentiable operations, each beside its gradient rule. They are
//! methods of [`crate::Tape`], so a forward pass reads `tape.conv2d(...)`.

mod activation;
mod arith;
mod batch_norm;
mod conv;
mod layout;
mod linear;
mod loss;
mod lrn;
mod pool;
mod reduce;

pub use conv::EvalBatchNorm;
