//! Learning-rate schedules: each maps an optimiser step (or epoch) to a rate.

use std::f64::consts::PI;

use crate::{AutogradError, Result};

fn invalid(op: &'static str, reason: String) -> AutogradError {
    AutogradError::InvalidArgument { op, reason }
}

/// Step decay: `base_lr * gamma^(epoch / step_size)` (integer division).
/// GoogLeNet was trained with `gamma = 0.96` every 8 epochs.
///
/// PyTorch equivalent: `torch.optim.lr_scheduler.StepLR(step_size, gamma)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepLr {
    /// Rate before the first decay.
    pub base_lr: f64,
    /// Epochs (or steps) between decays.
    pub step_size: usize,
    /// Factor applied at each decay.
    pub gamma: f64,
}

impl StepLr {
    /// GoogLeNet's schedule: multiply by 0.96 every 8 epochs.
    pub fn googlenet(base_lr: f64) -> Self {
        StepLr { base_lr, step_size: 8, gamma: 0.96 }
    }

    /// Rate for `epoch` (0-based).
    ///
    /// # Panics
    /// If `step_size` is 0.
    pub fn lr_at(&self, epoch: usize) -> f64 {
        assert!(self.step_size > 0, "StepLr: step_size must be at least 1");
        self.base_lr * self.gamma.powi((epoch / self.step_size).min(i32::MAX as usize) as i32)
    }
}

/// Cosine annealing from `base_lr` to `min_lr` over `total_steps`:
/// `min_lr + (base_lr - min_lr) * (1 + cos(pi * step / total_steps)) / 2`,
/// holding `min_lr` afterwards.
///
/// PyTorch equivalent: `torch.optim.lr_scheduler.CosineAnnealingLR(T_max=total_steps, eta_min=min_lr)`
/// for its first half-period (PyTorch's keeps oscillating after `T_max`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineLr {
    /// Rate at step 0.
    pub base_lr: f64,
    /// Rate at and after `total_steps`.
    pub min_lr: f64,
    /// Length of the annealing.
    pub total_steps: usize,
}

impl CosineLr {
    /// Rate for `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        let fraction = if self.total_steps == 0 { 1.0 } else { (step as f64 / self.total_steps as f64).min(1.0) };
        let weight = (1.0 + (PI * fraction).cos()) / 2.0;
        self.base_lr * weight + self.min_lr * (1.0 - weight)
    }
}

/// Linear warm-up: the rate of `inner` scaled by `(step + 1) / warmup_steps`
/// for the first `warmup_steps` steps, then `inner`'s rate unchanged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearWarmup<S> {
    /// Steps over which the rate rises to the inner schedule's.
    pub warmup_steps: usize,
    /// Schedule followed during and after the warm-up.
    pub inner: S,
}

/// A learning-rate schedule: the rate for each step.
pub trait LrSchedule {
    /// Rate for `step` (0-based).
    fn lr(&self, step: usize) -> f64;
}

impl LrSchedule for StepLr {
    fn lr(&self, step: usize) -> f64 {
        self.lr_at(step)
    }
}

impl LrSchedule for CosineLr {
    fn lr(&self, step: usize) -> f64 {
        self.lr_at(step)
    }
}

impl LrSchedule for OneCycleLr {
    fn lr(&self, step: usize) -> f64 {
        self.lr_at(step)
    }
}

impl<S: LrSchedule> LrSchedule for LinearWarmup<S> {
    fn lr(&self, step: usize) -> f64 {
        let rate = self.inner.lr(step);
        if step < self.warmup_steps { rate * (step + 1) as f64 / self.warmup_steps as f64 } else { rate }
    }
}

/// The one-cycle learning-rate policy (Smith and Topurkoglu, "Super-Convergence",
/// 2017) with cosine annealing, as PyTorch's `OneCycleLR` defines it: the
/// rate rises from `max_lr / div_factor` to `max_lr` over the first
/// `pct_start` of the steps, then falls to `max_lr / (div_factor * final_div_factor)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneCycleLr {
    /// Peak learning rate.
    pub max_lr: f64,
    /// Total number of optimiser steps.
    pub total_steps: usize,
    /// Fraction of the steps spent increasing the rate (PyTorch's default is 0.3).
    pub pct_start: f64,
    /// Initial rate is `max_lr / div_factor` (PyTorch's default is 25).
    pub div_factor: f64,
    /// Final rate is the initial rate divided by this (PyTorch's default is 1e4).
    pub final_div_factor: f64,
}

impl OneCycleLr {
    /// A schedule with PyTorch's default shape (`pct_start` 0.3,
    /// `div_factor` 25, `final_div_factor` 1e4).
    ///
    /// # Errors
    /// [`AutogradError::InvalidArgument`] if `max_lr` is not a positive
    /// number or `total_steps` is zero.
    pub fn new(max_lr: f64, total_steps: usize) -> Result<Self> {
        if !(max_lr.is_finite() && max_lr > 0.0) || total_steps == 0 {
            return Err(invalid(
                "OneCycleLr::new",
                format!("max_lr = {max_lr} must be a positive number and total_steps = {total_steps} at least 1"),
            ));
        }
        Ok(OneCycleLr { max_lr, total_steps, pct_start: 0.3, div_factor: 25.0, final_div_factor: 1e4 })
    }

    /// Learning rate for step `step` (0-based); steps past the end keep the final rate.
    pub fn lr_at(&self, step: usize) -> f64 {
        let initial = self.max_lr / self.div_factor;
        let last = initial / self.final_div_factor;
        // PyTorch places the peak at step `pct_start * total - 1` and the end
        // at `total - 1`. With 3 or fewer steps the peak falls before step 0,
        // so the schedule starts already annealing, as PyTorch's does.
        let peak = self.pct_start * self.total_steps as f64 - 1.0;
        let end = (self.total_steps as f64 - 1.0).max(peak);
        let step = (step as f64).min(end);
        // A weighted mean of `from` and `to`, which cannot overflow for any
        // finite rates (unlike `to + (from - to) * weight`).
        let cosine = |from: f64, to: f64, fraction: f64| {
            let weight = (1.0 + (PI * fraction).cos()) / 2.0;
            from * weight + to * (1.0 - weight)
        };
        if peak > 0.0 && step <= peak {
            cosine(initial, self.max_lr, step / peak)
        } else {
            let fraction = if end > peak { (step - peak) / (end - peak) } else { 1.0 };
            cosine(self.max_lr, last, fraction)
        }
    }
}
