//! Measures what the 1x1 bottlenecks of the Inception module save: the
//! paper's 480 -> 48 maps example, then the naive and the bottleneck module
//! side by side for each of GoogLeNet's nine Inception configs.
//!
//! ```text
//! cargo run --release --example bottleneck_cost
//! cargo run --release --example bottleneck_cost -- --runs 21 --batch 4
//! ```

#[path = "support/cli.rs"]
mod cli;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use incept::autograd::{Tape, Var};
use incept::models::cost::conv_macs;
use incept::models::googlenet::INCEPTION_CONFIGS;
use incept::models::{ForwardCtx, Inception, InceptionKind, InceptionOptions, Init, Layer, Module};
use incept::tensor::Tensor;

/// mimalloc keeps freed activations for reuse; see docs/performance.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    about = "Compare the naive and the bottleneck Inception module: parameters, multiply-accumulates, time",
    allow_negative_numbers = true
)]
struct Args {
    /// Timed forward passes per module; the median is reported.
    #[arg(long, default_value_t = 11, value_parser = clap::value_parser!(u16).range(1..))]
    runs: u16,
    /// Images per forward pass; the naive 3b module needs about 6 MB per image.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    batch: u16,
}

/// Side of each module's input feature map in the 224x224 network:
/// 28 for 3a-3b, 14 for 4a-4e, 7 for 5a-5b.
const MAP_SIDES: [usize; 9] = [28, 28, 14, 14, 14, 14, 14, 7, 7];

fn print_worked_example() {
    // 480 maps of 14x14 turned into 48 with a 5x5 convolution, directly or
    // after a 1x1 reduction to 16 maps.
    let direct = conv_macs(480, 48, 5, 5, 14, 14);
    let reduce = conv_macs(480, 16, 1, 1, 14, 14);
    let after = conv_macs(16, 48, 5, 5, 14, 14);
    println!("480 -> 48 maps at 14x14 with a 5x5 convolution:");
    println!(
        "  direct:                      (14*14*48) * (5*5*480) = {:>11} = {:.1}M MACs",
        direct,
        direct as f64 / 1e6
    );
    println!(
        "  1x1 to 16 first:  (14*14*16) * (1*1*480) + (14*14*48) * (5*5*16) = {} + {} = {:.1}M MACs",
        reduce,
        after,
        (reduce + after) as f64 / 1e6
    );
    println!("  saving: {:.1}x fewer multiply-accumulates\n", direct as f64 / (reduce + after) as f64);
}

/// Median wall time of `runs` forward passes in eval mode, after one warm-up pass.
fn median_forward(module: &Inception<f32>, x: &Var<f32>, runs: u16) -> incept::models::Result<Duration> {
    let forward = || -> incept::models::Result<Duration> {
        let tape = Tape::inference();
        let start = Instant::now();
        let y = module.forward(&ForwardCtx::eval(&tape), x)?;
        let elapsed = start.elapsed();
        drop(y);
        Ok(elapsed)
    };
    forward()?;
    let mut times = (0..runs).map(|_| forward()).collect::<incept::models::Result<Vec<_>>>()?;
    times.sort();
    Ok(times[times.len() / 2])
}

fn run(args: &Args) -> incept::models::Result<()> {
    print_worked_example();
    println!(
        "naive vs bottleneck Inception modules of the paper (biases, true 5x5), batch {}, median of {} runs, {} rayon threads",
        args.batch,
        args.runs,
        rayon::current_num_threads()
    );
    println!(
        "{:<12} {:>10} | {:>10} {:>10} {:>6} | {:>9} {:>9} {:>6} | {:>9} {:>9} {:>6}",
        "module", "input", "params N", "params B", "ratio", "MACs N", "MACs B", "ratio", "time N", "time B", "ratio"
    );
    let bottleneck = InceptionOptions::PAPER;
    let naive = bottleneck.with_kind(InceptionKind::Naive);
    for ((name, config), side) in INCEPTION_CONFIGS.into_iter().zip(MAP_SIDES) {
        let batch = usize::from(args.batch);
        let x = Var::constant(Tensor::randn([batch, config.c_in, side, side], 0.0, 1.0, 1));
        let input = x.dims().to_vec();
        let mut results = Vec::new();
        for options in [naive, bottleneck] {
            let module = Inception::<f32>::with_options(name, config, options, &mut Init::new(0))?;
            let macs = module.macs(&input)?;
            let time = median_forward(&module, &x, args.runs)?;
            results.push((module.num_parameters(), macs, time));
        }
        let [(params_n, macs_n, time_n), (params_b, macs_b, time_b)] = [results[0], results[1]];
        println!(
            "{:<12} {:>10} | {:>10} {:>10} {:>5.2}x | {:>8.1}M {:>8.1}M {:>5.2}x | {:>7.2}ms {:>7.2}ms {:>5.2}x",
            name,
            format!("{side}x{side}x{}", config.c_in),
            params_n,
            params_b,
            params_n as f64 / params_b as f64,
            macs_n as f64 / 1e6,
            macs_b as f64 / 1e6,
            macs_n as f64 / macs_b as f64,
            time_n.as_secs_f64() * 1e3,
            time_b.as_secs_f64() * 1e3,
            time_n.as_secs_f64() / time_b.as_secs_f64()
        );
    }
    println!("\nN = naive (1x1, 3x3 and 5x5 on the input, pooled input passed through), B = bottleneck.");
    println!("MACs are per image; the naive module also outputs more channels (it passes all c_in pooled maps on).");
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::exit_code(run(&args))
}
