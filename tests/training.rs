//! End to end: GoogLeNet learns real Fashion-MNIST images through
//! `incept::train`, reproducibly, and a checkpointed run resumes step for step.

use std::path::Path;

use incept::models::data::{Dataset, fashion_mnist};
use incept::models::io::read_safetensors_metadata;
use incept::models::{GoogLeNetConfig, Module, Variant};
use incept::train::{TRAIN_STATE_KEY, TrainConfig, TrainError, Trainer};

fn subset(train_images: usize, test_images: usize) -> (Dataset, Dataset) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist");
    let (train, test) = fashion_mnist(&dir).unwrap();
    (train.take(train_images), test.take(test_images))
}

fn config(seed: u64, epochs: usize, batch_size: usize) -> TrainConfig {
    TrainConfig {
        model: GoogLeNetConfig { width: 0.125, seed, ..GoogLeNetConfig::small(Variant::Torchvision, 1, 10) },
        epochs,
        batch_size,
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 5e-4,
        seed,
        crop_padding: 0,
        horizontal_flip: false,
        max_batches: None,
    }
}

/// Trains every remaining epoch and returns the loss of each step.
fn train_to_end(trainer: &mut Trainer, train: &Dataset, test: &Dataset) -> Vec<f32> {
    let mut losses = Vec::new();
    while !trainer.is_finished() {
        trainer.train_epoch(train, test, |step| losses.push(step.loss)).unwrap();
    }
    losses
}

fn weights(trainer: &Trainer) -> Vec<Vec<f32>> {
    trainer.net().parameters().iter().map(|p| p.value().data().to_vec()).collect()
}

#[test]
fn googlenet_learns_fashion_mnist_subset() {
    let (train, test) = subset(1024, 500);
    let mut trainer = Trainer::new(config(1, 3, 64), &train).unwrap();
    let losses = train_to_end(&mut trainer, &train, &test);
    let first: f32 = losses[..4].iter().sum::<f32>() / 4.0;
    let last: f32 = losses[losses.len() - 4..].iter().sum::<f32>() / 4.0;
    assert!(last < 0.6 * first, "training loss went from {first} to {last}");
    let accuracy = trainer.history().last().unwrap().test_accuracy;
    println!("loss {first:.3} -> {last:.3}, test accuracy {accuracy:.3}");
    // Chance is 10%; 48 steps on 1,024 images reach well above half.
    assert!(accuracy > 0.5, "test accuracy {accuracy} after {} steps", trainer.step());
    assert_eq!(trainer.history().len(), 3);
}

#[test]
fn same_seed_gives_same_first_20_losses() {
    let (train, test) = subset(640, 64);
    let run = || {
        let mut config = config(5, 1, 32);
        config.crop_padding = 2;
        config.horizontal_flip = true;
        let mut trainer = Trainer::new(config, &train).unwrap();
        train_to_end(&mut trainer, &train, &test)
    };
    let first = run();
    let second = run();
    assert_eq!(first.len(), 20);
    assert_eq!(first, second, "the same seed and thread count must give identical losses");
}

#[test]
fn resumed_run_matches_uninterrupted_run() {
    let (train, test) = subset(256, 64);
    let config = TrainConfig { max_batches: Some(4), ..config(7, 3, 32) };

    let mut uninterrupted = Trainer::new(config, &train).unwrap();
    let all_losses = train_to_end(&mut uninterrupted, &train, &test);

    let dir = tempdir();
    let checkpoint = dir.join("checkpoint.safetensors");
    let mut first_part = Trainer::new(config, &train).unwrap();
    let mut losses = Vec::new();
    first_part.train_epoch(&train, &test, |step| losses.push(step.loss)).unwrap();
    first_part.save_checkpoint(&checkpoint).unwrap();
    drop(first_part);

    let mut resumed = Trainer::resume(&checkpoint).unwrap();
    assert_eq!(resumed.epochs_done(), 1);
    assert_eq!(resumed.step(), 4);
    losses.extend(train_to_end(&mut resumed, &train, &test));

    assert_eq!(losses, all_losses, "a resumed run must take the same steps");
    assert_eq!(weights(&resumed), weights(&uninterrupted));
    // Everything but the wall times, which differ between runs.
    let metrics = |t: &Trainer| {
        t.history()
            .iter()
            .map(|r| (r.epoch, r.train_loss, r.train_accuracy, r.test_loss, r.test_accuracy, r.last_lr))
            .collect::<Vec<_>>()
    };
    assert_eq!(metrics(&resumed), metrics(&uninterrupted));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn divergence_names_the_step_and_keeps_checkpoint() {
    let (train, test) = subset(128, 32);
    let dir = tempdir();
    let checkpoint = dir.join("checkpoint.safetensors");
    let mut good = Trainer::new(config(3, 1, 32), &train).unwrap();
    train_to_end(&mut good, &train, &test);
    good.save_checkpoint(&checkpoint).unwrap();
    let saved = std::fs::read(&checkpoint).unwrap();

    let diverging = TrainConfig { lr: 1e30, ..config(3, 1, 32) };
    let mut trainer = Trainer::new(diverging, &train).unwrap();
    let err = trainer.train_epoch(&train, &test, |_| {}).unwrap_err();
    assert!(matches!(err, TrainError::Diverged { .. }), "{err}");
    assert!(err.to_string().contains("at step"), "{err}");
    assert_eq!(std::fs::read(&checkpoint).unwrap(), saved);
    assert!(Trainer::resume(&checkpoint).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_rejects_a_weights_file() {
    let (train, test) = subset(64, 32);
    let dir = tempdir();
    let mut trainer = Trainer::new(TrainConfig { max_batches: Some(1), ..config(2, 1, 32) }, &train).unwrap();
    train_to_end(&mut trainer, &train, &test);
    let weights_file = dir.join("model.safetensors");
    trainer.net().save(&weights_file).unwrap();
    let err = Trainer::resume(&weights_file).err().expect("a weights file has no training state");
    assert!(err.to_string().contains("not a training checkpoint"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resume_checks_state_against_file_size() {
    let (train, _) = subset(64, 1);
    let dir = tempdir();
    let checkpoint = dir.join("checkpoint.safetensors");
    Trainer::new(config(5, 1, 32), &train).unwrap().save_checkpoint(&checkpoint).unwrap();

    // The same training state with the paper's full width, in a file without tensors.
    let metadata = read_safetensors_metadata(&checkpoint).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(&metadata[TRAIN_STATE_KEY]).unwrap();
    state["config"]["model"]["width"] = serde_json::json!(1.0);
    let header = serde_json::json!({ "__metadata__": { TRAIN_STATE_KEY: state.to_string() } }).to_string();
    let forged = dir.join("forged.safetensors");
    std::fs::write(&forged, [(header.len() as u64).to_le_bytes().as_slice(), header.as_bytes()].concat()).unwrap();

    let file_len = std::fs::metadata(&forged).unwrap().len();
    let mut full_width = config(5, 1, 32).model;
    full_width.width = 1.0;
    let parameters = full_width.parameter_count().unwrap();
    let err = Trainer::resume(&forged).err().expect("the state describes a network the file cannot hold");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: not a training checkpoint: the file has {file_len} bytes, too few for the weights and momentum \
             of the {parameters} parameters of its training state's config (8 bytes each)",
            forged.display()
        )
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rejects_bad_options() {
    for (bad, message) in [
        (TrainConfig { epochs: 0, ..config(0, 1, 32) }, "epochs is 0, expected at least 1"),
        (TrainConfig { batch_size: 0, ..config(0, 1, 32) }, "batch size is 0, expected at least 1"),
        (TrainConfig { lr: f64::NAN, ..config(0, 1, 32) }, "learning rate NaN must be a positive number"),
        (TrainConfig { weight_decay: -1.0, ..config(0, 1, 32) }, "weight decay -1 must be zero or a positive number"),
        (TrainConfig { max_batches: Some(0), ..config(0, 1, 32) }, "max batches is 0, expected at least 1"),
    ] {
        let err = Trainer::new(bad, &subset(100, 1).0).err().expect("invalid option");
        assert!(matches!(err, TrainError::Config(_)), "{err}");
        assert_eq!(err.to_string(), format!("invalid training option: {message}"));
    }
    assert!(Trainer::new(config(0, 1, 32), &subset(0, 1).0).is_err());
    let huge = TrainConfig { epochs: usize::MAX / 2 + 2, ..config(0, 1, 32) };
    let err = Trainer::new(huge, &subset(100, 1).0).err().expect("overflowing step count");
    assert!(err.to_string().contains("overflow"), "{err}");
}

#[test]
fn resume_rejects_other_training_data() {
    let (train, test) = subset(128, 32);
    let dir = tempdir();
    let checkpoint = dir.join("checkpoint.safetensors");
    let config = TrainConfig { max_batches: Some(1), ..config(4, 2, 32) };
    let mut trainer = Trainer::new(config, &train).unwrap();
    trainer.train_epoch(&train, &test, |_| {}).unwrap();
    trainer.save_checkpoint(&checkpoint).unwrap();

    // Same number of images, other images.
    let dir_data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist");
    let (all, _) = fashion_mnist(&dir_data).unwrap();
    let other = Dataset::new(
        incept::tensor::Tensor::from_vec(all.images().data()[784 * 128..784 * 256].to_vec(), [128, 1, 28, 28]).unwrap(),
        all.labels()[128..256].to_vec(),
        10,
    )
    .unwrap();
    let mut resumed = Trainer::resume(&checkpoint).unwrap();
    let err = resumed.train_epoch(&other, &test, |_| {}).unwrap_err();
    assert!(err.to_string().contains("different training set"), "{err}");
    assert!(resumed.train_epoch(&train, &test, |_| {}).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Creates a fresh directory under the system temp dir, unique per test.
fn tempdir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "incept-training-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
