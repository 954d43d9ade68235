//! Times the 224x224 GoogLeNet workloads of `benches/googlenet.rs` on each
//! GEMM backend, in CPU time as well as wall time.
//!
//! The training steps of every backend update one network in turn; the
//! weights' values do not change the work a step does.
//!
//! CPU time (user + system of the whole process, from `/proc/self/stat`)
//! hardly changes when another program shares the machine, so two backends
//! can be compared on a busy machine. With `--threads 1`, CPU time is the
//! cost of the work alone, without idle rayon workers. CPU time needs Linux;
//! elsewhere the column is empty.
//!
//! ```text
//! cargo run --release --example backend_timing -- --threads 1
//! cargo run --release --example backend_timing -- --workload train --iterations 3
//! ```

#[path = "support/cli.rs"]
mod cli;

use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use incept::autograd::{Sgd, SgdConfig, Tape, Var};
use incept::models::{ForwardCtx, GoogLeNet, GoogLeNetConfig, Module};
use incept::tensor::Tensor;
use incept::tensor::gemm::{GemmBackend, with_backend};

/// mimalloc keeps freed activations for reuse; see docs/performance.md, "Allocator".
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Eval-mode forward pass at batch 1.
    Eval1,
    /// Eval-mode forward pass at batch 16.
    Eval16,
    /// Training step at batch 16 with the auxiliary heads and SGD momentum.
    Train,
    /// All three.
    All,
}

/// Times GoogLeNet (torchvision variant, 224x224, random weights) on each
/// GEMM backend.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Workload to time.
    #[arg(long, value_enum, default_value_t = Workload::All)]
    workload: Workload,
    /// Comma-separated backends: portable, avx2, avx512 (default: every
    /// backend this CPU supports).
    #[arg(long, value_delimiter = ',')]
    backends: Vec<GemmBackend>,
    /// Timed iterations per backend and workload, after one untimed.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    iterations: u32,
    /// rayon worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

fn main() -> ExitCode {
    cli::exit_code(run(Args::parse()))
}

fn run(args: Args) -> Result<(), String> {
    if args.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads)
            .build_global()
            .map_err(|e| format!("--threads {}: {e}", args.threads))?;
    }
    let backends = if args.backends.is_empty() {
        GemmBackend::ALL.into_iter().filter(|b| b.is_supported()).collect()
    } else {
        args.backends.clone()
    };
    if let Some(missing) = backends.iter().find(|b| !b.is_supported()) {
        return Err(format!("this CPU does not support the {missing} backend"));
    }
    let workloads = match args.workload {
        Workload::All => vec![Workload::Eval1, Workload::Eval16, Workload::Train],
        one => vec![one],
    };

    let eval_net = GoogLeNet::<f32>::new(GoogLeNetConfig { aux_logits: false, ..GoogLeNetConfig::torchvision() })
        .map_err(|e| e.to_string())?;
    let train_net = GoogLeNet::<f32>::new(GoogLeNetConfig::torchvision()).map_err(|e| e.to_string())?;
    let config = SgdConfig { lr: 0.01, momentum: 0.9, weight_decay: 0.0, nesterov: false };
    let mut sgd = Sgd::new(train_net.parameters(), config).map_err(|e| e.to_string())?;
    println!("{} rayon threads, {} timed iterations", rayon::current_num_threads(), args.iterations);
    println!("{:<8} {:<9} {:>14} {:>14}", "workload", "backend", "CPU ms/iter", "wall ms/iter");
    for workload in workloads {
        let batch = if workload == Workload::Eval1 { 1 } else { 16 };
        let images = Var::constant(Tensor::randn([batch, 3, 224, 224], 0.0, 1.0, 1));
        let labels: Vec<usize> = (0..batch).map(|i| i * 61 % 1000).collect();
        for &backend in &backends {
            let mut step = || -> Result<(), String> {
                if workload == Workload::Train {
                    sgd.zero_grad();
                    let tape = Tape::new();
                    let out = train_net.forward(&ForwardCtx::train(&tape, 0), &images).map_err(|e| e.to_string())?;
                    let loss = out.loss(&tape, &labels).map_err(|e| e.to_string())?;
                    drop(out);
                    tape.backward(&loss).map_err(|e| e.to_string())?;
                    sgd.step();
                } else {
                    let tape = Tape::inference();
                    eval_net.forward(&ForwardCtx::eval(&tape), &images).map_err(|e| e.to_string())?;
                }
                Ok(())
            };
            let (cpu, wall) = with_backend(backend, || -> Result<(Option<f64>, f64), String> {
                step()?;
                let (cpu_start, wall_start) = (cpu_seconds(), Instant::now());
                for _ in 0..args.iterations {
                    step()?;
                }
                let cpu = cpu_start.zip(cpu_seconds()).map(|(start, end)| end - start);
                Ok((cpu, wall_start.elapsed().as_secs_f64()))
            })
            .map_err(|e| e.to_string())??;
            let per_iteration = |seconds: f64| seconds * 1e3 / f64::from(args.iterations);
            let cpu = cpu.map_or(String::new(), |c| format!("{:.1}", per_iteration(c)));
            let name = format!("{workload:?}").to_lowercase();
            println!("{name:<8} {backend:<9} {cpu:>14} {:>14.1}", per_iteration(wall));
        }
    }
    Ok(())
}

/// User plus system CPU time of this process in seconds, from
/// `/proc/self/stat` (fields 14 and 15, in clock ticks of 1/100 s, the
/// value of `sysconf(_SC_CLK_TCK)` on Linux), or `None` where that file
/// does not exist.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name in field 2 may contain spaces; the fields after its
    // closing parenthesis start at field 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |field: usize| fields.get(field - 3)?.parse::<u64>().ok();
    Some((ticks(14)? + ticks(15)?) as f64 / 100.0)
}
