//! Trains GoogLeNet on Fashion-MNIST and reports the test accuracy.
//!
//! ```text
//! cargo run --release --example train                      # embedded 10k/2k subset
//! cargo run --release --example train -- --data DIR        # the full data set
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use incept::autograd::{OneCycleLr, Sgd, SgdConfig, Tape, Var};
use incept::models::data::{Dataset, fashion_mnist};
use incept::models::{ForwardCtx, GoogLeNet, GoogLeNetConfig, Module, Variant};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser, Debug)]
#[command(
    about = "Train a GoogLeNet-style Inception network on Fashion-MNIST with incept's own kernels",
    allow_negative_numbers = true
)]
struct Args {
    /// Directory holding the four Fashion-MNIST IDX files
    /// (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
    /// t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz; gzip or raw).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/fashion-mnist"))]
    data: PathBuf,
    /// Number of passes over the training set.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Images per optimiser step. Peak memory grows by about 2 MB per image
    /// at width 0.25 (measured: 270 MB at batch 64, 680 MB at batch 256).
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Peak learning rate of the one-cycle schedule (SGD, Nesterov momentum 0.9).
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// Multiplier on every channel count of GoogLeNet (1.0 is the paper's
    /// width). Parameters and memory grow with its square: 631,094
    /// parameters at 0.25, 9,951,806 at 1.0 (10 classes, auxiliary heads included).
    #[arg(long, default_value_t = 0.25)]
    width: f64,
    /// Seed of the initial weights, the shuffling and the dropout masks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// L2 weight decay added to every gradient.
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f64,
    /// Stop each epoch after this many batches (for a quick smoke run). The
    /// test set is then cut to as many images as those batches hold.
    #[arg(long)]
    max_batches: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Counts the samples whose arg-max logit is their label.
fn count_correct(logits: &Var, labels: &[usize]) -> usize {
    let classes = logits.dims()[1];
    logits
        .value()
        .data()
        .chunks_exact(classes)
        .zip(labels)
        .filter(|(row, label)| {
            let best = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
            best == Some(**label)
        })
        .count()
}

/// Accuracy of `net` on `data` in eval mode, on an inference tape.
///
/// # Errors
/// If a logit is not finite: the weights diverged, and an accuracy computed
/// from NaN logits would be meaningless.
fn evaluate(net: &GoogLeNet, data: &Dataset, batch_size: usize) -> Result<f64, Box<dyn std::error::Error>> {
    let mut correct = 0;
    for (images, labels) in data.batches(batch_size, None)? {
        let tape = Tape::inference();
        let out = net.forward(&ForwardCtx::eval(&tape), &Var::constant(images))?;
        if let Some(bad) = out.logits.value().data().iter().find(|v| !v.is_finite()) {
            return Err(format!("the network output {bad} on the test set: training diverged").into());
        }
        correct += count_correct(&out.logits, &labels);
    }
    Ok(correct as f64 / data.len().max(1) as f64)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.epochs == 0 || args.batch_size == 0 {
        return Err(
            format!("--epochs ({}) and --batch-size ({}) must be at least 1", args.epochs, args.batch_size).into()
        );
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(format!("--lr {} must be a positive number", args.lr).into());
    }
    if !(args.weight_decay.is_finite() && args.weight_decay >= 0.0) {
        return Err(format!("--weight-decay {} must be zero or a positive number", args.weight_decay).into());
    }
    let (mut train, mut test) = fashion_mnist(&args.data)?;
    if let Some(max) = args.max_batches {
        if max == 0 {
            return Err("--max-batches 0 would train on nothing; pass at least 1 or leave it out".into());
        }
        train = train.take(max.saturating_mul(args.batch_size));
        test = test.take(max.saturating_mul(args.batch_size));
    }
    let net = GoogLeNet::new(GoogLeNetConfig {
        width: args.width,
        seed: args.seed,
        ..GoogLeNetConfig::small(Variant::Torchvision, 1, 10)
    })?;
    println!(
        "GoogLeNet width {} ({} parameters), {} training and {} test images from {}, {} rayon threads",
        args.width,
        net.num_parameters(),
        train.len(),
        test.len(),
        args.data.display(),
        rayon::current_num_threads()
    );

    let steps_per_epoch = train.len().div_ceil(args.batch_size);
    let schedule = OneCycleLr::new(args.lr, steps_per_epoch * args.epochs)?;
    let config = SgdConfig { lr: schedule.lr_at(0), momentum: 0.9, weight_decay: args.weight_decay, nesterov: true };
    let mut sgd = Sgd::new(net.parameters(), config)?;
    let mut step = 0;
    let mut test_accuracy = 0.0;
    for epoch in 1..=args.epochs {
        let bar = ProgressBar::new(steps_per_epoch as u64);
        bar.set_style(ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} batches, {elapsed}<{eta}")?);
        bar.set_message(format!("{epoch}/{}", args.epochs));
        let started = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0, 0);
        let shuffle_seed = args.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64);
        for (images, labels) in train.batches(args.batch_size, Some(shuffle_seed))? {
            sgd.set_lr(schedule.lr_at(step))?;
            sgd.zero_grad();
            let tape = Tape::new();
            let ctx = ForwardCtx::train(&tape, args.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((step as u64) << 16));
            let out = net.forward(&ctx, &Var::constant(images))?;
            let loss = out.loss(&tape, &labels)?;
            let loss_value = loss.value().item()?;
            if !loss_value.is_finite() {
                return Err(format!(
                    "the training loss became {loss_value} at step {step}: training diverged; \
                     try a smaller --lr (now {:e}) or --weight-decay (now {:e})",
                    args.lr, args.weight_decay
                )
                .into());
            }
            loss_sum += f64::from(loss_value) * labels.len() as f64;
            correct += count_correct(&out.logits, &labels);
            seen += labels.len();
            drop(out);
            tape.backward(&loss)?;
            sgd.step();
            step += 1;
            bar.inc(1);
        }
        bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        test_accuracy = evaluate(&net, &test, 500).map_err(|e| {
            format!("{e}; try a smaller --lr (now {:e}) or --weight-decay (now {:e})", args.lr, args.weight_decay)
        })?;
        println!(
            "epoch {epoch}/{}: train loss {:.4}, train accuracy {:.2}%, test accuracy {:.2}%, {:.0} images/s ({seconds:.1} s)",
            args.epochs,
            loss_sum / seen as f64,
            100.0 * correct as f64 / seen as f64,
            100.0 * test_accuracy,
            seen as f64 / seconds,
        );
    }
    println!("test accuracy: {:.2}% ({} images)", 100.0 * test_accuracy, test.len());
    Ok(())
}
