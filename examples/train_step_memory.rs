//! Runs only the batch-16 training step of `benches/googlenet.rs` (the full
//! 224x224 GoogLeNet, torchvision variant, auxiliary heads on, SGD with
//! momentum 0.9), so that the peak resident memory of the process is that of
//! training and nothing else. `tools/perf_table.py` runs it in a child process
//! and reads the child's `ru_maxrss`; by hand, `/usr/bin/time -f %M` prints
//! the same figure in KiB. Threads come from `RAYON_NUM_THREADS`.
//!
//! ```text
//! cargo run --release --example train_step_memory -- --steps 3
//! ```

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use incept::autograd::{Sgd, SgdConfig, Tape, Var};
use incept::models::{ForwardCtx, GoogLeNet, GoogLeNetConfig, Module};
use incept::tensor::Tensor;

/// mimalloc keeps freed activations for reuse; see docs/performance.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Images per step, as in the criterion bench and `tools/bench_reference.py`.
const BATCH: usize = 16;

#[derive(Parser, Debug)]
#[command(about = "Run batch-16 training steps of the 224x224 GoogLeNet, for measuring peak memory")]
struct Args {
    /// Training steps to run; the first one allocates the SGD momentum buffers.
    #[arg(long, default_value_t = 3)]
    steps: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.steps == 0 {
        eprintln!("error: --steps 0: pass at least 1");
        return ExitCode::FAILURE;
    }
    match run(args.steps) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(steps: u64) -> Result<(), Box<dyn std::error::Error>> {
    let net = GoogLeNet::<f32>::new(GoogLeNetConfig::torchvision())?;
    let images = Var::constant(Tensor::randn([BATCH, 3, 224, 224], 0.0, 1.0, 2));
    let labels: Vec<usize> = (0..BATCH).map(|i| i * 61 % 1000).collect();
    let config = SgdConfig { lr: 0.01, momentum: 0.9, weight_decay: 0.0, nesterov: false };
    let mut sgd = Sgd::new(net.parameters(), config)?;

    let start = Instant::now();
    for step in 0..steps {
        sgd.zero_grad();
        let tape = Tape::new();
        let out = net.forward(&ForwardCtx::train(&tape, step), black_box(&images))?;
        let loss = out.loss(&tape, &labels)?;
        drop(out);
        tape.backward(&loss)?;
        sgd.step();
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{steps} training steps of batch {BATCH} on {} threads: {:.3} s per step",
        rayon::current_num_threads(),
        seconds / steps as f64
    );
    Ok(())
}
