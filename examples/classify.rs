//! Classifies a photo with the full 224x224 GoogLeNet (torchvision's
//! variant) and prints the five most likely ImageNet classes.
//!
//! ```text
//! cargo run --release --example classify -- data/photos/chelsea.jpg
//! cargo run --release --example classify -- PHOTO.jpg --weights googlenet.safetensors
//! ```
//!
//! Without `--weights` the network has random weights, so the classes it
//! prints mean nothing. `tools/export_torchvision_googlenet.py` writes
//! torchvision's ImageNet weights to a file for `--weights`.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/imagenet.rs"]
mod imagenet;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use incept::autograd::{Tape, Var};
use incept::models::{ForwardCtx, GoogLeNet, GoogLeNetConfig, Module};
use incept::tensor::softmax::softmax;

/// mimalloc keeps freed activations for reuse; see docs/performance.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Seed of the random weights used without `--weights`.
const RANDOM_WEIGHTS_SEED: u64 = 0;

/// Number of classes printed.
const TOP_K: usize = 5;

#[derive(Parser, Debug)]
#[command(about = "Classify a PNG or JPEG photo into the 1000 ImageNet classes with incept's GoogLeNet")]
struct Args {
    /// The photo to classify: a PNG or JPEG file of any size up to 64 megapixels.
    image: PathBuf,
    /// torchvision GoogLeNet weights as safetensors, written by
    /// tools/export_torchvision_googlenet.py. Without it the weights are
    /// random and the printed classes are meaningless.
    #[arg(long, value_name = "FILE.safetensors")]
    weights: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::exit_code(run(&args))
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let classes = imagenet::imagenet_classes();

    // The photo is checked before the model is built, so a bad path fails at once.
    let started = Instant::now();
    let image = imagenet::load_rgb(&args.image)?;
    let decode_ms = milliseconds(started);
    let started = Instant::now();
    let input = imagenet::preprocess(&image)?;
    let preprocess_ms = milliseconds(started);

    let started = Instant::now();
    let net = load_model(args.weights.as_deref())?;
    let load_ms = milliseconds(started);

    let tape = Tape::inference();
    let started = Instant::now();
    let output = net.forward(&ForwardCtx::eval(&tape), &Var::constant(input))?;
    let forward_ms = milliseconds(started);
    let probabilities = softmax(output.logits.value(), 1)?;

    let (width, height) = image.dimensions();
    let (resized_width, resized_height) = imagenet::resize_size(width, height);
    println!(
        "image: {} ({width}x{height}, resized to {resized_width}x{resized_height}, center crop {crop}x{crop} \
         at x={}, y={})",
        args.image.display(),
        imagenet::crop_offset(resized_width, imagenet::CROP_SIZE),
        imagenet::crop_offset(resized_height, imagenet::CROP_SIZE),
        crop = imagenet::CROP_SIZE,
    );
    println!("top-{TOP_K} classes:");
    for (rank, (class, probability)) in top_k(probabilities.data(), TOP_K).into_iter().enumerate() {
        println!("  {}. {:>7.3}%  {class:>3}  {}", rank + 1, 100.0 * probability, classes[class]);
    }
    println!(
        "time: decode {decode_ms:.1} ms, preprocess {preprocess_ms:.1} ms, model load {load_ms:.1} ms, \
         forward {forward_ms:.1} ms ({} threads)",
        rayon::current_num_threads()
    );
    Ok(())
}

/// Builds torchvision's GoogLeNet with the weights of `weights` or, without
/// a file, random ones, and prints which to standard output.
fn load_model(weights: Option<&Path>) -> Result<GoogLeNet<f32>, Box<dyn std::error::Error>> {
    let Some(path) = weights else {
        let config = GoogLeNetConfig { aux_logits: false, seed: RANDOM_WEIGHTS_SEED, ..GoogLeNetConfig::torchvision() };
        let net = GoogLeNet::new(config)?;
        println!(
            "note: no --weights given, so the network has random weights (seed {RANDOM_WEIGHTS_SEED}) \
             and the classes below are meaningless."
        );
        println!(
            "      For torchvision's ImageNet weights, run on a machine with PyTorch, torchvision and internet \
             access:"
        );
        println!("          python3 tools/export_torchvision_googlenet.py --out googlenet.safetensors");
        println!("      and pass --weights googlenet.safetensors.");
        println!(
            "model: GoogLeNet, torchvision variant, {} parameters, random weights",
            with_thousands_separators(net.num_parameters())
        );
        return Ok(net);
    };

    let net = GoogLeNet::<f32>::load_torchvision(path)?;
    let config = net.config();
    if config.num_classes != imagenet::IMAGENET_CLASS_COUNT {
        return Err(format!(
            "{}: the model has {} classes, but this example prints ImageNet's {} class names; \
             pass a file exported from an ImageNet-1k GoogLeNet",
            path.display(),
            config.num_classes,
            imagenet::IMAGENET_CLASS_COUNT
        )
        .into());
    }
    println!(
        "model: GoogLeNet, torchvision variant, {} parameters, weights from {} (transform_input {})",
        with_thousands_separators(net.num_parameters()),
        path.display(),
        config.transform_input
    );
    Ok(net)
}

/// Returns the `k` largest `(index, probability)` pairs, largest first. Of
/// equal probabilities the lower class index comes first.
fn top_k(probabilities: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(k);
    ranked
}

/// Formats 6624904 as "6,624,904".
fn with_thousands_separators(value: usize) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (position, digit) in digits.chars().enumerate() {
        if position > 0 && (digits.len() - position).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn milliseconds(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e3
}
