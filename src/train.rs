//! The training loop of GoogLeNet on an in-memory image data set: SGD with
//! Nesterov momentum and a one-cycle learning rate, auxiliary losses, optional
//! augmentation, evaluation with a confusion matrix, and checkpoints that
//! resume a run step for step.
//!
//! Every random choice is derived from the seed and the step or epoch
//! number: the weights from the seed, the shuffle and augmentation of epoch
//! `e` from `(seed, e)`, the dropout masks of step `s` from `(seed, s)`. So
//! a run resumed from the checkpoint of epoch `e` takes exactly the steps
//! the uninterrupted run took, and the same seed gives the same losses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use incept_autograd::{AutogradError, OneCycleLr, Parameter, Sgd, SgdConfig, Tape, Var};
use incept_models::data::{Augment, BatchOptions, Dataset};
use incept_models::io::{load_safetensors, read_safetensors_metadata, save_safetensors};
use incept_models::{Buffer, ForwardCtx, GoogLeNet, GoogLeNetConfig, ModelError, Module};
use incept_tensor::Tensor;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A failure of the training loop.
#[derive(Debug, Error)]
pub enum TrainError {
    /// Building or running the model, reading data or writing a file failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The tape or the optimiser rejected an operation.
    #[error(transparent)]
    Autograd(#[from] AutogradError),
    /// A tensor operation rejected its input.
    #[error(transparent)]
    Tensor(#[from] incept_tensor::TensorError),
    /// The loss or the network output stopped being a finite number.
    #[error(
        "the training loss became {value} at step {step} (epoch {epoch}): training diverged; checkpoints of \
         earlier epochs were left as they were; try a smaller learning rate or weight decay"
    )]
    Diverged {
        /// Global optimiser step, counted from 0.
        step: usize,
        /// Epoch, counted from 1.
        epoch: usize,
        /// The non-finite loss.
        value: f32,
    },
    /// An option is out of range.
    #[error("invalid training option: {0}")]
    Config(String),
    /// A checkpoint is not one this trainer wrote.
    #[error("{path}: not a training checkpoint: {reason}")]
    Checkpoint {
        /// File involved.
        path: PathBuf,
        /// Missing or invalid part of the file.
        reason: String,
    },
}

/// Result of a training operation.
pub type Result<T> = std::result::Result<T, TrainError>;

/// Options of a training run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The network to train.
    pub model: GoogLeNetConfig,
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per optimiser step.
    pub batch_size: usize,
    /// Peak learning rate of the one-cycle schedule.
    pub lr: f64,
    /// SGD momentum (Nesterov).
    pub momentum: f64,
    /// L2 weight decay added to every gradient.
    pub weight_decay: f64,
    /// Seed of the weights, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Black pixels added on each side before a random crop back to the
    /// image size; 0 disables cropping.
    pub crop_padding: usize,
    /// Mirror each training image left to right with probability 0.5.
    pub horizontal_flip: bool,
    /// Stop each epoch after this many batches, for quick runs.
    pub max_batches: Option<usize>,
}

impl TrainConfig {
    fn validate(&self) -> Result<()> {
        for (option, value) in
            [("epochs", self.epochs), ("batch size", self.batch_size), ("max batches", self.max_batches.unwrap_or(1))]
        {
            if value == 0 {
                return Err(TrainError::Config(format!("{option} is 0, expected at least 1")));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(TrainError::Config(format!("learning rate {} must be a positive number", self.lr)));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(TrainError::Config(format!(
                "weight decay {} must be zero or a positive number",
                self.weight_decay
            )));
        }
        if !(0.0..1.0).contains(&self.momentum) || self.momentum == 0.0 {
            return Err(TrainError::Config(format!("momentum {} must be in (0, 1)", self.momentum)));
        }
        Ok(())
    }

    /// Optimiser steps per epoch for a training set of `len` images.
    pub fn steps_per_epoch(&self, len: usize) -> usize {
        let all = len.div_ceil(self.batch_size);
        self.max_batches.map_or(all, |max| all.min(max))
    }
}

/// Progress after one optimiser step.
#[derive(Clone, Copy, Debug)]
pub struct StepReport {
    /// Epoch, counted from 1.
    pub epoch: usize,
    /// Step within the epoch, counted from 1.
    pub batch: usize,
    /// Steps in the epoch.
    pub batches: usize,
    /// Training loss of this step (main plus 0.3 times each auxiliary loss).
    pub loss: f32,
    /// Mean training loss of the epoch so far.
    pub mean_loss: f64,
    /// Fraction of the epoch's images so far whose main prediction was right.
    pub accuracy: f64,
    /// Images trained on in this epoch so far.
    pub images: usize,
    /// Seconds since the epoch started.
    pub seconds: f64,
}

/// Metrics of one finished epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch, counted from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's images.
    pub train_loss: f64,
    /// Training accuracy of the main classifier (dropout and augmentation on).
    pub train_accuracy: f64,
    /// Mean cross-entropy of the main classifier on the test set.
    pub test_loss: f64,
    /// Accuracy on the test set.
    pub test_accuracy: f64,
    /// Training images per second.
    pub images_per_second: f64,
    /// Wall time of the training pass, in seconds.
    pub train_seconds: f64,
    /// Learning rate of the epoch's last step.
    pub last_lr: f64,
}

/// Accuracy, loss and confusion matrix of a network on a data set.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// Fraction of images whose arg-max logit is their label.
    pub accuracy: f64,
    /// Mean cross-entropy of the main classifier.
    pub loss: f64,
    /// `confusion[label][predicted]` counts images.
    pub confusion: Vec<Vec<usize>>,
    /// Images evaluated.
    pub images: usize,
}

/// Returns the arg-max class of each row of `[N, classes]` logits.
fn predictions(logits: &Tensor<f32>) -> Vec<usize> {
    let classes = logits.dims()[1];
    logits
        .data()
        .chunks_exact(classes)
        .map(|row| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i))
        .collect()
}

/// Evaluates `net` on `data` in eval mode, `batch_size` images at a time.
///
/// # Errors
/// [`TrainError::Diverged`] (with step and epoch 0) if a logit is not
/// finite, because an accuracy computed from NaN would be meaningless. Any
/// error of the forward pass.
pub fn evaluate(net: &GoogLeNet, data: &Dataset, batch_size: usize) -> Result<Evaluation> {
    let classes = data.num_classes();
    let mut confusion = vec![vec![0; classes]; classes];
    let (mut correct, mut loss_sum) = (0, 0.0);
    for (images, labels) in data.batches(batch_size.max(1), None)? {
        let tape = Tape::inference();
        let out = net.forward(&ForwardCtx::eval(&tape), &Var::constant(images))?;
        if let Some(&bad) = out.logits.value().data().iter().find(|v| !v.is_finite()) {
            return Err(TrainError::Diverged { step: 0, epoch: 0, value: bad });
        }
        let loss = tape.cross_entropy(&out.logits, &labels)?.value().item()?;
        loss_sum += f64::from(loss) * labels.len() as f64;
        for (predicted, &label) in predictions(out.logits.value()).into_iter().zip(&labels) {
            confusion[label][predicted.min(classes - 1)] += 1;
            correct += usize::from(predicted == label);
        }
    }
    let images = data.len();
    let denominator = images.max(1) as f64;
    Ok(Evaluation { accuracy: correct as f64 / denominator, loss: loss_sum / denominator, confusion, images })
}

/// Seed of the shuffle of `epoch`.
fn shuffle_seed(seed: u64, epoch: usize) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64)
}

/// Seed of the augmentation draws of `epoch`.
fn augment_seed(seed: u64, epoch: usize) -> u64 {
    (seed ^ 0x05ee_da06).wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(epoch as u64)
}

/// Returns the batch options of `epoch`: its shuffle and, if the run
/// augments, its crops and flips.
fn batch_options(config: &TrainConfig, epoch: usize) -> BatchOptions {
    let augment = (config.crop_padding > 0 || config.horizontal_flip).then(|| Augment {
        crop_padding: config.crop_padding,
        horizontal_flip: config.horizontal_flip,
        seed: augment_seed(config.seed, epoch),
    });
    BatchOptions {
        batch_size: config.batch_size,
        shuffle_seed: Some(shuffle_seed(config.seed, epoch)),
        drop_last: false,
        augment,
    }
}

/// Seed of the dropout masks of global step `step`.
fn dropout_seed(seed: u64, step: usize) -> u64 {
    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((step as u64) << 16)
}

/// Returns a 64-bit FNV-1a hash of a data set's shape, labels and every
/// 97th pixel, so a resumed run notices a different training set of the same size.
pub fn data_fingerprint(data: &Dataset) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |value: u64| {
        for byte in value.to_le_bytes() {
            hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    data.images().dims().iter().for_each(|&d| feed(d as u64));
    feed(data.num_classes() as u64);
    data.labels().iter().for_each(|&label| feed(label as u64));
    data.images().data().iter().step_by(97).for_each(|v| feed(u64::from(v.to_bits())));
    hash
}

/// Metadata key of the training state in a checkpoint.
pub const TRAIN_STATE_KEY: &str = "incept.train_state";

/// Prefix of the SGD momentum buffers in a checkpoint, followed by the
/// parameter's name.
const MOMENTUM_PREFIX: &str = "optimizer.momentum_buffer.";

/// Bytes per parameter in a checkpoint: an `F32` weight and an `F32`
/// momentum value.
const CHECKPOINT_BYTES_PER_PARAMETER: u64 = 8;

/// The part of a run that is not tensors, saved as JSON in a checkpoint.
#[derive(Serialize, Deserialize)]
struct TrainState {
    config: TrainConfig,
    train_len: usize,
    data_fingerprint: u64,
    epochs_done: usize,
    step: usize,
    history: Vec<EpochRecord>,
}

/// The network and its optimiser state as one [`Module`], so a checkpoint
/// is a single safetensors file written atomically.
struct CheckpointTensors<'a> {
    net: &'a GoogLeNet,
    momentum: Vec<Parameter<f32>>,
}

impl Module<f32> for CheckpointTensors<'_> {
    fn parameters(&self) -> Vec<Parameter<f32>> {
        let mut params = self.net.parameters();
        params.extend(self.momentum.iter().cloned());
        params
    }

    fn buffers(&self) -> Vec<Buffer<f32>> {
        self.net.buffers()
    }
}

/// A training run in progress: network, optimiser, schedule and history.
pub struct Trainer {
    config: TrainConfig,
    net: GoogLeNet,
    sgd: Sgd,
    schedule: OneCycleLr,
    train_len: usize,
    data_fingerprint: u64,
    epochs_done: usize,
    step: usize,
    history: Vec<EpochRecord>,
}

impl Trainer {
    /// Starts a run on `train`.
    ///
    /// # Errors
    /// [`TrainError::Config`] if an option is out of range or the set is
    /// empty, [`TrainError::Model`] if the batch options do not fit the
    /// images (a crop padding not below the image height and width), and
    /// any error building the network.
    pub fn new(config: TrainConfig, train: &Dataset) -> Result<Self> {
        config.validate()?;
        // The options are checked against the images before the network is built.
        train.batches_with(&batch_options(&config, 1))?;
        Self::with_data(config, train.len(), data_fingerprint(train))
    }

    fn with_data(config: TrainConfig, train_len: usize, fingerprint: u64) -> Result<Self> {
        config.validate()?;
        if train_len == 0 {
            return Err(TrainError::Config("the training set is empty".into()));
        }
        let total_steps = config.steps_per_epoch(train_len).checked_mul(config.epochs).ok_or_else(|| {
            TrainError::Config(format!("{} epochs of {} steps overflow the step counter", config.epochs, train_len))
        })?;
        let net = GoogLeNet::new(config.model)?;
        let schedule = OneCycleLr::new(config.lr, total_steps)?;
        let sgd_config = SgdConfig {
            lr: schedule.lr_at(0),
            momentum: config.momentum,
            weight_decay: config.weight_decay,
            nesterov: true,
        };
        let sgd = Sgd::new(net.parameters(), sgd_config)?;
        Ok(Trainer {
            config,
            net,
            sgd,
            schedule,
            train_len,
            data_fingerprint: fingerprint,
            epochs_done: 0,
            step: 0,
            history: Vec::new(),
        })
    }

    /// Returns the options of the run.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Returns the network being trained.
    pub fn net(&self) -> &GoogLeNet {
        &self.net
    }

    /// Epochs finished so far.
    pub fn epochs_done(&self) -> usize {
        self.epochs_done
    }

    /// Optimiser steps taken so far.
    pub fn step(&self) -> usize {
        self.step
    }

    /// Metrics of every finished epoch.
    pub fn history(&self) -> &[EpochRecord] {
        &self.history
    }

    /// True when every epoch of the run is done.
    pub fn is_finished(&self) -> bool {
        self.epochs_done >= self.config.epochs
    }

    /// Takes one optimiser step on a batch and returns its loss and the
    /// number of images the main classifier got right.
    fn train_step(&mut self, epoch: usize, images: Tensor<f32>, labels: &[usize]) -> Result<(f32, usize)> {
        self.sgd.set_lr(self.schedule.lr_at(self.step))?;
        self.sgd.zero_grad();
        let tape = Tape::new();
        let ctx = ForwardCtx::train(&tape, dropout_seed(self.config.seed, self.step));
        let out = self.net.forward(&ctx, &Var::constant(images))?;
        let loss = out.loss(&tape, labels)?;
        let value = loss.value().item()?;
        if !value.is_finite() {
            return Err(TrainError::Diverged { step: self.step, epoch, value });
        }
        let correct = predictions(out.logits.value()).iter().zip(labels).filter(|(p, l)| p == l).count();
        drop(out);
        tape.backward(&loss)?;
        self.sgd.step();
        self.step += 1;
        Ok((value, correct))
    }

    /// Trains one epoch on `train`, then evaluates on `test`, appends the
    /// epoch's record to the history and returns it with the test
    /// evaluation. `on_step` runs after every optimiser step.
    ///
    /// # Errors
    /// [`TrainError::Diverged`] if the loss or a test logit is not finite;
    /// [`TrainError::Config`] if the run is finished or `train` is not the
    /// size the run was started with; any error of the forward or backward pass.
    pub fn train_epoch(
        &mut self,
        train: &Dataset,
        test: &Dataset,
        mut on_step: impl FnMut(&StepReport),
    ) -> Result<(EpochRecord, Evaluation)> {
        if self.is_finished() {
            return Err(TrainError::Config(format!("all {} epochs are done", self.config.epochs)));
        }
        if train.len() != self.train_len || data_fingerprint(train) != self.data_fingerprint {
            return Err(TrainError::Config(format!(
                "the run was started on a different training set ({} images, fingerprint {:016x}) than this \
                 one ({} images, fingerprint {:016x}); resume with the same data set and options",
                self.train_len,
                self.data_fingerprint,
                train.len(),
                data_fingerprint(train)
            )));
        }
        let epoch = self.epochs_done + 1;
        let options = batch_options(&self.config, epoch);
        let batches = self.config.steps_per_epoch(train.len());
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut images) = (0.0, 0, 0);
        for (batch, (x, labels)) in train.batches_with(&options)?.take(batches).enumerate() {
            let (loss, batch_correct) = self.train_step(epoch, x, &labels)?;
            loss_sum += f64::from(loss) * labels.len() as f64;
            correct += batch_correct;
            images += labels.len();
            on_step(&StepReport {
                epoch,
                batch: batch + 1,
                batches,
                loss,
                mean_loss: loss_sum / images as f64,
                accuracy: correct as f64 / images as f64,
                images,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        let train_seconds = started.elapsed().as_secs_f64();
        let evaluation = evaluate(&self.net, test, 500).map_err(|e| match e {
            TrainError::Diverged { value, .. } => TrainError::Diverged { step: self.step, epoch, value },
            other => other,
        })?;
        let record = EpochRecord {
            epoch,
            train_loss: loss_sum / images.max(1) as f64,
            train_accuracy: correct as f64 / images.max(1) as f64,
            test_loss: evaluation.loss,
            test_accuracy: evaluation.accuracy,
            images_per_second: images as f64 / train_seconds.max(1e-9),
            train_seconds,
            last_lr: self.sgd.lr(),
        };
        self.history.push(record.clone());
        self.epochs_done = epoch;
        Ok((record, evaluation))
    }

    /// Writes the network, the optimiser's momentum and the run's state to
    /// `path`, replacing any previous file atomically.
    ///
    /// # Errors
    /// [`TrainError::Model`] if the file cannot be written; a previous file
    /// is then left as it was.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        // A missing buffer (no update yet) and a zero buffer give the same
        // next step, b = momentum * 0 + g, so zeros stand for missing ones.
        let momentum = self
            .sgd
            .momentum_buffers()
            .map(|(param, buffer)| {
                let value = buffer.cloned().unwrap_or_else(|| Tensor::zeros(param.value().dims()));
                Parameter::new(format!("{MOMENTUM_PREFIX}{}", param.name()), value)
            })
            .collect();
        let state = TrainState {
            config: self.config,
            train_len: self.train_len,
            data_fingerprint: self.data_fingerprint,
            epochs_done: self.epochs_done,
            step: self.step,
            history: self.history.clone(),
        };
        let metadata = BTreeMap::from([
            ("format".to_string(), "incept-checkpoint".to_string()),
            (TRAIN_STATE_KEY.to_string(), serde_json::to_string(&state).expect("the state serialises to JSON")),
        ]);
        save_safetensors(&CheckpointTensors { net: &self.net, momentum }, path, &metadata)?;
        Ok(())
    }

    /// Rebuilds a run from a checkpoint that [`Trainer::save_checkpoint`]
    /// wrote, ready to train its next epoch.
    ///
    /// # Errors
    /// [`TrainError::Checkpoint`] if the file has no valid training state
    /// or fewer bytes than the weights and momentum of the network its
    /// state describes (checked before that network is built), and any
    /// error reading the file or matching its tensors.
    pub fn resume(path: &Path) -> Result<Self> {
        let metadata = read_safetensors_metadata(path)?;
        let invalid = |reason: String| TrainError::Checkpoint { path: path.to_path_buf(), reason };
        let json = metadata.get(TRAIN_STATE_KEY).ok_or_else(|| {
            invalid(format!("the metadata has no {TRAIN_STATE_KEY:?} key (a weights file, not a checkpoint?)"))
        })?;
        let state: TrainState =
            serde_json::from_str(json).map_err(|e| invalid(format!("the training state is invalid: {e}")))?;
        // The state's config is checked against the file size before the network is built.
        let file_len =
            std::fs::metadata(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?.len();
        let parameters = state.config.model.parameter_count();
        if parameters.is_none_or(|count| (count as u64).saturating_mul(CHECKPOINT_BYTES_PER_PARAMETER) > file_len) {
            let count = parameters.map_or("more than usize::MAX".to_string(), |count| count.to_string());
            return Err(invalid(format!(
                "the file has {file_len} bytes, too few for the weights and momentum of the {count} parameters \
                 of its training state's config ({CHECKPOINT_BYTES_PER_PARAMETER} bytes each)"
            )));
        }
        let mut trainer = Trainer::with_data(state.config, state.train_len, state.data_fingerprint)?;
        let momentum: Vec<Parameter<f32>> = trainer
            .net
            .parameters()
            .iter()
            .map(|p| Parameter::new(format!("{MOMENTUM_PREFIX}{}", p.name()), Tensor::zeros(p.value().dims())))
            .collect();
        load_safetensors(&CheckpointTensors { net: &trainer.net, momentum: momentum.clone() }, path)?;
        for (index, buffer) in momentum.iter().enumerate() {
            trainer.sgd.set_momentum_buffer(index, Some((*buffer.value()).clone()))?;
        }
        trainer.epochs_done = state.epochs_done;
        trainer.step = state.step;
        trainer.history = state.history;
        Ok(trainer)
    }
}
