//! Measures what GoogLeNet's auxiliary classifiers do to the gradients
//! that reach the early layers. Szegedy et al. ("Going deeper with
//! convolutions", CVPR 2015, "the paper" below) add them so that enough
//! gradient reaches those layers. The same network is trained twice from
//! the same initial weights, data order and dropout seeds, once with the
//! auxiliary heads (loss = main + 0.3 x each auxiliary loss) and once
//! without. At every iteration the example records the L2 norm of the
//! gradient of conv1, conv2 (the 1x1 and 3x3 convolutions that form the
//! paper's second convolution row) and inception 3a.
//!
//! ```text
//! cargo run --release --example aux_gradients                      # both variants
//! cargo run --release --example aux_gradients -- --variant paper --iterations 600
//! ```

#[path = "support/cli.rs"]
mod cli;
#[path = "support/plot.rs"]
mod plot;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use incept::autograd::{Parameter, Sgd, SgdConfig, Tape, Var};
use incept::models::data::{Dataset, fashion_mnist};
use incept::models::{ForwardCtx, GoogLeNet, GoogLeNetConfig, Module, Variant, WeightInit};
use incept::train::evaluate;
use plotters::style::RGBColor;

/// mimalloc keeps freed activations for reuse; see docs/performance.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum VariantArg {
    /// The paper's layers: no batch norm, LRN, biases.
    Paper,
    /// torchvision's layers: batch norm after every convolution.
    Torchvision,
    /// Both, one after the other.
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum InitArg {
    /// He initialisation for the paper variant, PyTorch's default for torchvision's.
    VariantDefault,
    /// PyTorch's layer default, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for both.
    Pytorch,
}

#[derive(Parser, Debug)]
#[command(
    about = "Train GoogLeNet with and without auxiliary classifiers and record the early layers' gradient norms",
    allow_negative_numbers = true
)]
struct Args {
    /// GoogLeNet variant to measure.
    #[arg(long, value_enum, default_value = "both")]
    variant: VariantArg,
    /// Optimiser steps per run.
    #[arg(long, default_value_t = 300)]
    iterations: usize,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Constant learning rate (SGD, Nesterov momentum 0.9, no weight decay).
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Weight initialisation: the variant's default (He for the paper
    /// variant, PyTorch's default for torchvision's), or PyTorch's layer
    /// default for both, under which the paper variant's activations and
    /// gradients vanish.
    #[arg(long, value_enum, default_value = "variant-default")]
    init: InitArg,
    /// Multiplier on every channel count.
    #[arg(long, default_value_t = 0.25)]
    width: f64,
    /// Seed of the initial weights, the data order and the dropout masks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Directory with the Fashion-MNIST IDX files (default: the embedded subset).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output directory for the CSV and the plots.
    #[arg(long, default_value = "runs/aux_gradients")]
    out: PathBuf,
}

/// Parameter groups whose gradient norms are recorded, by name prefix.
const GROUPS: [(&str, &[&str]); 4] = [
    ("conv1", &["conv1."]),
    ("conv2", &["conv2.", "conv3."]),
    ("conv3", &["conv3."]),
    ("inception3a", &["inception3a."]),
];

/// Values recorded at one iteration of one run.
struct Record {
    loss: f64,
    main_loss: f64,
    grad_norms: [f64; GROUPS.len()],
}

/// One finished run.
struct Run {
    records: Vec<Record>,
    test_accuracy: f64,
}

/// L2 norm over the gradients of every parameter whose name starts with one of `prefixes`.
fn grad_norm(params: &[Parameter], prefixes: &[&str]) -> f64 {
    let mut sum = 0.0;
    for param in params.iter().filter(|p| prefixes.iter().any(|prefix| p.name().starts_with(prefix))) {
        param.with_grad(|grad| {
            if let Some(grad) = grad {
                sum += grad.data().iter().map(|&g| f64::from(g) * f64::from(g)).sum::<f64>();
            }
        });
    }
    sum.sqrt()
}

/// Copies every parameter of `from` into the parameter of `to` with the same name.
fn copy_shared_weights(from: &GoogLeNet, to: &GoogLeNet) -> Result<(), Box<dyn std::error::Error>> {
    let source = from.parameters();
    for param in to.parameters() {
        let twin = source.iter().find(|p| p.name() == param.name()).ok_or("a parameter has no twin")?;
        param.set_value((*twin.value()).clone())?;
    }
    Ok(())
}

fn train_run(net: &GoogLeNet, train: &Dataset, test: &Dataset, args: &Args) -> Result<Run, Box<dyn std::error::Error>> {
    let params = net.parameters();
    let config = SgdConfig { lr: args.lr, momentum: 0.9, weight_decay: 0.0, nesterov: true };
    let mut sgd = Sgd::new(params.clone(), config)?;
    let mut records = Vec::with_capacity(args.iterations);
    let mut epoch = 0u64;
    while records.len() < args.iterations {
        let shuffle = args.seed.wrapping_mul(1_000_003).wrapping_add(epoch);
        for (images, labels) in train.batches(args.batch_size, Some(shuffle))? {
            if records.len() == args.iterations {
                break;
            }
            let step = records.len() as u64;
            sgd.zero_grad();
            let tape = Tape::new();
            let ctx = ForwardCtx::train(&tape, args.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (step << 16));
            let out = net.forward(&ctx, &Var::constant(images))?;
            let main_loss = tape.cross_entropy(&out.logits, &labels)?.value().item()?;
            let loss = out.loss(&tape, &labels)?;
            let value = loss.value().item()?;
            if !value.is_finite() {
                return Err(format!("the loss became {value} at iteration {step}; try a smaller --lr").into());
            }
            drop(out);
            tape.backward(&loss)?;
            let grad_norms = GROUPS.map(|(_, prefixes)| grad_norm(&params, prefixes));
            sgd.step();
            records.push(Record { loss: f64::from(value), main_loss: f64::from(main_loss), grad_norms });
        }
        epoch += 1;
    }
    let test_accuracy = evaluate(net, test, 500)?.accuracy;
    Ok(Run { records, test_accuracy })
}

/// Mean over a window of `width` iterations ending at each iteration, so
/// the noisy per-step norms read as curves; the CSV has the raw values.
fn smoothed(values: impl Iterator<Item = f64>, width: usize) -> Vec<(f64, f64)> {
    let values: Vec<f64> = values.collect();
    (0..values.len())
        .map(|i| {
            let window = &values[i.saturating_sub(width - 1)..=i];
            (i as f64, window.iter().sum::<f64>() / window.len() as f64)
        })
        .collect()
}

fn plot_variant(path: &Path, name: &str, with: &Run, without: &Run) -> Result<(), String> {
    let (red, blue) = (RGBColor(210, 20, 20), RGBColor(20, 60, 210));
    let pair = |label: &str, f: &dyn Fn(&Record) -> f64| {
        vec![
            plot::Series {
                label: format!("with auxiliary heads ({label})"),
                points: smoothed(with.records.iter().map(f), 10),
                color: red,
                dashed: false,
            },
            plot::Series {
                label: format!("without ({label})"),
                points: smoothed(without.records.iter().map(f), 10),
                color: blue,
                dashed: true,
            },
        ]
    };
    let panel = |title: String, y_label: &str, log_y: bool, series| plot::Panel {
        title,
        x_label: "iteration".into(),
        y_label: y_label.into(),
        log_y,
        series,
    };
    let accuracies =
        format!("test accuracy {:.1}% with, {:.1}% without", 100.0 * with.test_accuracy, 100.0 * without.test_accuracy);
    let panels = [
        panel(format!("{name}: conv1 gradient norm"), "L2 norm", true, pair("conv1", &|r| r.grad_norms[0])),
        panel(format!("{name}: conv2 gradient norm"), "L2 norm", true, pair("conv2", &|r| r.grad_norms[1])),
        panel(format!("{name}: inception 3a gradient norm"), "L2 norm", true, pair("3a", &|r| r.grad_norms[3])),
        panel(format!("main loss; {accuracies}"), "cross-entropy", false, pair("main loss", &|r| r.main_loss)),
    ];
    plot::draw_png(path, &panels, 560, 440)
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    if args.iterations == 0 || args.batch_size == 0 {
        return Err(format!(
            "--iterations ({}) and --batch-size ({}) must be at least 1",
            args.iterations, args.batch_size
        )
        .into());
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        return Err(format!("--lr {} must be a positive number", args.lr).into());
    }
    if !(args.width.is_finite() && args.width > 0.0) {
        return Err(format!("--width {} must be a positive number", args.width).into());
    }
    let default_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist");
    let (train, test) = fashion_mnist(args.data.as_deref().unwrap_or(&default_dir))?;
    fs::create_dir_all(&args.out)
        .map_err(|e| format!("{}: cannot create the output directory: {e}", args.out.display()))?;
    let variants: &[Variant] = match args.variant {
        VariantArg::Paper => &[Variant::Paper],
        VariantArg::Torchvision => &[Variant::Torchvision],
        VariantArg::Both => &[Variant::Paper, Variant::Torchvision],
    };
    let mut csv = String::from("variant,aux_heads,iteration,loss,main_loss");
    for (group, _) in GROUPS {
        let _ = write!(csv, ",grad_{group}");
    }
    csv.push('\n');
    for &variant in variants {
        let name = match args.init {
            InitArg::VariantDefault => format!("{variant:?}").to_lowercase(),
            InitArg::Pytorch => format!("{variant:?}-pytorch-init").to_lowercase(),
        };
        let mut config =
            GoogLeNetConfig { width: args.width, seed: args.seed, ..GoogLeNetConfig::small(variant, 1, 10) };
        if args.init == InitArg::Pytorch {
            config.init = WeightInit::PyTorchDefault;
        }
        let with_heads = GoogLeNet::new(config)?;
        let without_heads = GoogLeNet::new(GoogLeNetConfig { aux_logits: false, ..config })?;
        copy_shared_weights(&with_heads, &without_heads)?;
        println!("{name}: training {} iterations with auxiliary heads ...", args.iterations);
        let with = train_run(&with_heads, &train, &test, args)?;
        println!("{name}: training {} iterations without auxiliary heads ...", args.iterations);
        let without = train_run(&without_heads, &train, &test, args)?;
        for (heads, run) in [(true, &with), (false, &without)] {
            for (i, r) in run.records.iter().enumerate() {
                let _ = write!(csv, "{name},{heads},{i},{},{}", r.loss, r.main_loss);
                for norm in r.grad_norms {
                    let _ = write!(csv, ",{norm}");
                }
                csv.push('\n');
            }
        }
        let plot_path = args.out.join(format!("{name}.png"));
        plot_variant(&plot_path, &name, &with, &without)?;
        let mean = |run: &Run, group: usize, range: std::ops::Range<usize>| {
            let slice = &run.records[range.start.min(run.records.len())..range.end.min(run.records.len())];
            slice.iter().map(|r| r.grad_norms[group]).sum::<f64>() / slice.len().max(1) as f64
        };
        let last = args.iterations.saturating_sub(50)..args.iterations;
        println!(
            "{name}: test accuracy {:.2}% with auxiliary heads, {:.2}% without; mean conv1 gradient norm over the last \
             50 iterations {:.3e} with, {:.3e} without; plot {}",
            100.0 * with.test_accuracy,
            100.0 * without.test_accuracy,
            mean(&with, 0, last.clone()),
            mean(&without, 0, last),
            plot_path.display()
        );
    }
    let csv_path = args.out.join("gradients.csv");
    fs::write(&csv_path, csv).map_err(|e| format!("{}: cannot write the CSV: {e}", csv_path.display()))?;
    println!("wrote {}", csv_path.display());
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::exit_code(run(&args))
}
