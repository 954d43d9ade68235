//! Trains GoogLeNet on Fashion-MNIST (or CIFAR-10) with a progress bar,
//! per-epoch evaluation and confusion matrix, a checkpoint per epoch, and a
//! plot and metrics file at the end.
//!
//! ```text
//! cargo run --release --example train                           # embedded 10k/2k subset
//! cargo run --release --example train -- --data DIR --epochs 18 --augment
//! cargo run --release --example train -- --resume runs/train/checkpoint.safetensors
//! cargo run --release --example train -- --dataset cifar10 --data DIR
//! ```

#[path = "support/cli.rs"]
mod cli;
#[path = "support/plot.rs"]
mod plot;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use incept::models::data::{CIFAR10_CLASSES, Dataset, FASHION_MNIST_CLASSES, cifar10, fashion_mnist};
use incept::models::{GoogLeNetConfig, Module, Variant};
use incept::train::{EpochRecord, Evaluation, TrainConfig, TrainError, Trainer};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::style::RGBColor;

/// mimalloc keeps freed activations for reuse; see docs/performance.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum DatasetArg {
    /// Fashion-MNIST: 1x28x28 grayscale clothing images, 10 classes.
    FashionMnist,
    /// CIFAR-10 binary version: 3x32x32 colour images, 10 classes.
    Cifar10,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum VariantArg {
    /// torchvision's layers: batch norm after every convolution.
    Torchvision,
    /// The paper's layers: biases, local response normalisation, true 5x5 branches.
    Paper,
}

#[derive(Parser, Debug)]
#[command(
    about = "Train a GoogLeNet-style Inception network on Fashion-MNIST or CIFAR-10 with incept's own kernels",
    allow_negative_numbers = true
)]
struct Args {
    /// Directory with the data set files: for Fashion-MNIST the four IDX
    /// files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
    /// t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; gzip or raw),
    /// for CIFAR-10 data_batch_1.bin ... data_batch_5.bin and test_batch.bin.
    /// Default: the Fashion-MNIST subset embedded in the repository.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Data set format of --data.
    #[arg(long, value_enum, default_value = "fashion-mnist")]
    dataset: DatasetArg,
    /// Number of passes over the training set.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Images per optimiser step. Peak memory grows by about 2 MB per image
    /// at width 0.25 on 28x28 images.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Peak learning rate of the one-cycle schedule (SGD, Nesterov momentum
    /// 0.9). Default: 0.1 for the torchvision variant, 0.01 for the paper
    /// variant, which has no batch norm and diverges into dead ReLUs at 0.1.
    #[arg(long)]
    lr: Option<f64>,
    /// Multiplier on every channel count of GoogLeNet (1.0 is the paper's
    /// width). Parameters grow with its square: 631,094 at 0.25 and
    /// 9,951,806 at 1.0 (Fashion-MNIST, auxiliary heads included).
    #[arg(long, default_value_t = 0.25)]
    width: f64,
    /// Layer variant: torchvision's (batch norm) or the paper's (LRN, biases).
    #[arg(long, value_enum, default_value = "torchvision")]
    variant: VariantArg,
    /// Worker threads for the kernels (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Seed of the initial weights, the shuffling, the augmentation and the dropout masks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// L2 weight decay added to every gradient.
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    /// Augment training images: random crop after padding 2 pixels per
    /// side, and random horizontal flip.
    #[arg(long)]
    augment: bool,
    /// Run directory for the checkpoint, the final weights, the plot and the metrics.
    #[arg(long, default_value = "runs/train")]
    out: PathBuf,
    /// Continue the run saved in this checkpoint (its options apply; pass
    /// the same --data and --dataset).
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Stop each epoch after this many batches (for a quick smoke run). The
    /// test set is then cut to as many images as those batches contain.
    #[arg(long)]
    max_batches: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::exit_code(run(&args))
}

/// Loads the training and test sets and returns them with the class names.
fn load_data(args: &Args) -> Result<(Dataset, Dataset, &'static [&'static str]), TrainError> {
    let default_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist");
    Ok(match args.dataset {
        DatasetArg::FashionMnist => {
            let (train, test) = fashion_mnist(args.data.as_deref().unwrap_or(&default_dir))?;
            (train, test, &FASHION_MNIST_CLASSES)
        }
        DatasetArg::Cifar10 => {
            let dir = args.data.as_deref().ok_or_else(|| {
                TrainError::Config("--dataset cifar10 needs --data DIR with the CIFAR-10 binary files".into())
            })?;
            let (train, test) = cifar10(dir)?;
            (train, test, &CIFAR10_CLASSES)
        }
    })
}

fn train_config(args: &Args, train: &Dataset) -> TrainConfig {
    let variant = match args.variant {
        VariantArg::Torchvision => Variant::Torchvision,
        VariantArg::Paper => Variant::Paper,
    };
    let channels = train.images().dims()[1];
    TrainConfig {
        model: GoogLeNetConfig {
            width: args.width,
            seed: args.seed,
            ..GoogLeNetConfig::small(variant, channels, train.num_classes())
        },
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr.unwrap_or(match variant {
            Variant::Torchvision => 0.1,
            Variant::Paper => 0.01,
        }),
        momentum: 0.9,
        weight_decay: args.weight_decay,
        seed: args.seed,
        crop_padding: if args.augment { 2 } else { 0 },
        horizontal_flip: args.augment,
        max_batches: args.max_batches,
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(threads) = args.threads {
        if threads == 0 {
            return Err("--threads 0: pass at least 1, or leave it out for one thread per core".into());
        }
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global()?;
    }
    let (mut train, mut test, classes) = load_data(args)?;
    let cut = |train: Dataset, test: Dataset, max_batches: Option<usize>, batch_size: usize| match max_batches {
        Some(max) => (train.take(max.saturating_mul(batch_size)), test.take(max.saturating_mul(batch_size))),
        None => (train, test),
    };
    let mut trainer = match &args.resume {
        Some(path) => {
            let trainer = Trainer::resume(path)?;
            println!(
                "resuming {} after epoch {} of {} (step {}); the checkpoint's options apply",
                path.display(),
                trainer.epochs_done(),
                trainer.config().epochs,
                trainer.step()
            );
            let config = trainer.config();
            (train, test) = cut(train, test, config.max_batches, config.batch_size);
            trainer
        }
        None => {
            if args.max_batches == Some(0) {
                return Err("--max-batches 0 would train on nothing; pass at least 1 or leave it out".into());
            }
            (train, test) = cut(train, test, args.max_batches, args.batch_size.max(1));
            Trainer::new(train_config(args, &train), &train)?
        }
    };
    let config = *trainer.config();
    fs::create_dir_all(&args.out)
        .map_err(|e| format!("{}: cannot create the run directory: {e}", args.out.display()))?;
    println!(
        "GoogLeNet ({:?} variant, width {}, {} parameters), {} training and {} test images, {} threads, run directory {}",
        config.model.variant,
        config.model.width,
        trainer.net().num_parameters(),
        train.len(),
        test.len(),
        rayon::current_num_threads(),
        args.out.display()
    );

    let checkpoint = args.out.join("checkpoint.safetensors");
    let run_started = Instant::now();
    while !trainer.is_finished() {
        let bar = ProgressBar::new(config.steps_per_epoch(train.len()) as u64);
        bar.set_style(ProgressStyle::with_template("epoch {prefix} [{bar:25}] {pos}/{len} {msg} {elapsed}<{eta}")?);
        bar.set_prefix(format!("{}/{}", trainer.epochs_done() + 1, config.epochs));
        let (record, evaluation) = trainer.train_epoch(&train, &test, |step| {
            bar.set_position(step.batch as u64);
            bar.set_message(format!(
                "loss {:.4}, accuracy {:.2}%, {:.0} images/s",
                step.mean_loss,
                100.0 * step.accuracy,
                step.images as f64 / step.seconds.max(1e-9)
            ));
        })?;
        bar.finish_and_clear();
        print_epoch(&record, config.epochs);
        print_confusion(&evaluation, classes);
        trainer.save_checkpoint(&checkpoint)?;
    }

    trainer.net().save(args.out.join("model.safetensors"))?;
    write_metrics(&args.out, &trainer, run_started.elapsed().as_secs_f64())?;
    plot_history(&args.out.join("training.png"), trainer.history())?;
    println!(
        "wrote {}, model.safetensors, metrics.json and training.png to {}",
        checkpoint.file_name().and_then(|n| n.to_str()).unwrap_or("checkpoint"),
        args.out.display()
    );
    let last = trainer.history().last().expect("a finished run has at least one epoch");
    println!("test accuracy: {:.2}% ({} images)", 100.0 * last.test_accuracy, test.len());
    Ok(())
}

fn print_epoch(record: &EpochRecord, epochs: usize) {
    println!(
        "epoch {}/{epochs}: train loss {:.4}, train accuracy {:.2}%, test loss {:.4}, test accuracy {:.2}%, \
         {:.0} images/s ({:.1} s)",
        record.epoch,
        record.train_loss,
        100.0 * record.train_accuracy,
        record.test_loss,
        100.0 * record.test_accuracy,
        record.images_per_second,
        record.train_seconds
    );
}

/// Prints the confusion matrix: one row per true class, one column per predicted class.
fn print_confusion(evaluation: &Evaluation, classes: &[&str]) {
    let width = classes.iter().map(|c| c.len()).max().unwrap_or(5).max(5);
    print!("{:>width$}  ", "true \\ predicted");
    for index in 0..classes.len() {
        print!("{index:>5}");
    }
    println!("  recall");
    for (index, (row, name)) in evaluation.confusion.iter().zip(classes).enumerate() {
        print!("{:>width$}  ", format!("{index} {name}"), width = width.max(16));
        for count in row {
            print!("{count:>5}");
        }
        let total: usize = row.iter().sum();
        println!("  {:>5.1}%", 100.0 * row[index] as f64 / total.max(1) as f64);
    }
}

fn write_metrics(out: &Path, trainer: &Trainer, seconds: f64) -> Result<(), Box<dyn std::error::Error>> {
    let metrics = serde_json::json!({
        "config": trainer.config(),
        "epochs": trainer.history(),
        "steps": trainer.step(),
        "wall_seconds_this_process": seconds,
        "threads": rayon::current_num_threads(),
    });
    let path = out.join("metrics.json");
    fs::write(&path, serde_json::to_string_pretty(&metrics)?)
        .map_err(|e| format!("{}: cannot write the metrics: {e}", path.display()))?;
    Ok(())
}

fn plot_history(path: &Path, history: &[EpochRecord]) -> Result<(), String> {
    let points = |f: fn(&EpochRecord) -> f64| history.iter().map(|r| (r.epoch as f64, f(r))).collect();
    let series = |label: &str, points: Vec<(f64, f64)>, color: RGBColor, dashed: bool| plot::Series {
        label: label.to_string(),
        points,
        color,
        dashed,
    };
    let (red, blue) = (RGBColor(200, 30, 30), RGBColor(30, 70, 200));
    let panels = [
        plot::Panel {
            title: "Loss per epoch".into(),
            x_label: "epoch".into(),
            y_label: "cross-entropy".into(),
            log_y: false,
            series: vec![
                series("train (with auxiliary losses)", points(|r| r.train_loss), red, false),
                series("test (main classifier)", points(|r| r.test_loss), blue, true),
            ],
        },
        plot::Panel {
            title: "Accuracy per epoch".into(),
            x_label: "epoch".into(),
            y_label: "accuracy (%)".into(),
            log_y: false,
            series: vec![
                series("train", points(|r| 100.0 * r.train_accuracy), red, false),
                series("test", points(|r| 100.0 * r.test_accuracy), blue, true),
            ],
        },
    ];
    plot::draw_png(path, &panels, 640, 420)
}
