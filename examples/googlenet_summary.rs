//! Prints GoogLeNet's per-layer cost table in the row structure of Table 1
//! of the paper, beside the paper's published figures.
//!
//! ```text
//! cargo run --release --example googlenet_summary
//! cargo run --release --example googlenet_summary -- --csv
//! cargo run --release --example googlenet_summary -- --variant torchvision
//! ```

#[path = "support/cli.rs"]
mod cli;

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use incept::models::cost::{CostRow, CostSummary};
use incept::models::{GoogLeNet, GoogLeNetConfig, Variant};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum VariantArg {
    /// The paper's network: biases, LRN, true 5x5 branches.
    Paper,
    /// torchvision's googlenet: batch norm, 3x3 "5x5" branches.
    Torchvision,
}

#[derive(Parser, Debug)]
#[command(
    about = "Print GoogLeNet's parameters and multiply-accumulates per layer (Table 1 of the paper)",
    allow_negative_numbers = true
)]
struct Args {
    /// GoogLeNet variant to build.
    #[arg(long, value_enum, default_value = "paper")]
    variant: VariantArg,
    /// Print CSV instead of the table (main network rows, then auxiliary heads).
    #[arg(long)]
    csv: bool,
    /// Input image side in pixels.
    #[arg(long, default_value_t = 224, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    input_size: u32,
}

/// One row of Table 1 as published: params in thousands (K = 1024) and
/// ops in millions of multiply-accumulates, with the number of decimals
/// the paper prints.
struct Published {
    layer: &'static str,
    params_k: Option<(f64, usize)>,
    ops_m: Option<(f64, usize)>,
}

/// Table 1 of Szegedy et al., "Going deeper with convolutions", CVPR 2015,
/// for the rows that print params or ops. K is 1024: that is the unit under
/// which the rows whose columns agree with their params match (3a: 163,328
/// weights = 159.5K).
const PUBLISHED: [Published; 13] = [
    Published { layer: "conv1", params_k: Some((2.7, 1)), ops_m: Some((34.0, 0)) },
    Published { layer: "conv2+conv3", params_k: Some((112.0, 0)), ops_m: Some((360.0, 0)) },
    Published { layer: "inception3a", params_k: Some((159.0, 0)), ops_m: Some((128.0, 0)) },
    Published { layer: "inception3b", params_k: Some((380.0, 0)), ops_m: Some((304.0, 0)) },
    Published { layer: "inception4a", params_k: Some((364.0, 0)), ops_m: Some((73.0, 0)) },
    Published { layer: "inception4b", params_k: Some((437.0, 0)), ops_m: Some((88.0, 0)) },
    Published { layer: "inception4c", params_k: Some((463.0, 0)), ops_m: Some((100.0, 0)) },
    Published { layer: "inception4d", params_k: Some((580.0, 0)), ops_m: Some((119.0, 0)) },
    Published { layer: "inception4e", params_k: Some((840.0, 0)), ops_m: Some((170.0, 0)) },
    Published { layer: "inception5a", params_k: Some((1072.0, 0)), ops_m: Some((54.0, 0)) },
    Published { layer: "inception5b", params_k: Some((1388.0, 0)), ops_m: Some((71.0, 0)) },
    Published { layer: "fc", params_k: Some((1000.0, 0)), ops_m: Some((1.0, 0)) },
    Published { layer: "avgpool", params_k: None, ops_m: None },
];

/// Largest relative difference from a published figure that is not flagged.
const TOLERANCE: f64 = 0.02;

const K: f64 = 1024.0;
const M: f64 = 1e6;

/// Rounds `value` to `decimals` places, the precision the paper prints.
fn round_to(value: f64, decimals: usize) -> f64 {
    let scale = 10f64.powi(decimals as i32);
    (value * scale).round() / scale
}

/// True if `computed` (in the published unit) differs from the published
/// figure by more than [`TOLERANCE`] after rounding to the published precision.
fn differs(computed: f64, (published, decimals): (f64, usize)) -> bool {
    (round_to(computed, decimals) - published).abs() > TOLERANCE * published
}

/// Derives a one-line reason for a flagged row from the numbers.
fn explain(row: &CostRow, published: &Published, variant: Variant, params_off: bool, ops_off: bool) -> String {
    let pixels = (row.output[0] * row.output[1]) as f64;
    if variant == Variant::Torchvision && row.kind == "inception" {
        return "torchvision builds the 5x5 branch as 3x3 and adds batch norm, so the module differs from the paper's"
            .to_string();
    }
    let (Some((p, _)), Some((o, _))) = (published.params_k, published.ops_m) else {
        return "no published figure to compare".to_string();
    };
    // For a convolution every weight is used once per output pixel, so
    // published ops / output pixels gives the weights the ops imply.
    let implied_k = o * M / pixels / K;
    let self_consistent = (implied_k - p).abs() <= TOLERANCE * p.max(implied_k);
    match (params_off, ops_off) {
        (true, true) if self_consistent => format!(
            "the published params and ops agree with each other ({p}K x {pixels} output pixels = {o}M) \
             but not with the layer sizes"
        ),
        (true, false) => format!(
            "the published ops match the layer sizes; the published params do not (the ops imply {implied_k:.0}K), \
             likely a misprint"
        ),
        (false, true) => format!(
            "the published params match the layer sizes; the published ops do not (the params imply {:.0}M)",
            p * K * pixels / M
        ),
        _ => "the published params and ops both differ from the layer sizes".to_string(),
    }
}

fn cell(value: Option<usize>) -> String {
    value.map_or(String::new(), |v| v.to_string())
}

fn print_rows(rows: &[CostRow], variant: Variant, notes: &mut Vec<String>, compare: bool) {
    for row in rows {
        let computed_k = row.params as f64 / K;
        let computed_m = row.macs as f64 / M;
        let published = PUBLISHED.iter().find(|p| p.layer == row.layer).filter(|_| compare);
        let (mut paper_params, mut paper_ops, mut flag) = (String::new(), String::new(), "");
        if let Some(published) = published {
            let params_off = published.params_k.is_some_and(|p| differs(computed_k, p));
            let ops_off = published.ops_m.is_some_and(|o| differs(computed_m, o));
            paper_params = published.params_k.map_or(String::new(), |(v, d)| format!("{v:.d$}K"));
            paper_ops = published.ops_m.map_or(String::new(), |(v, d)| format!("{v:.d$}M"));
            if params_off || ops_off {
                flag = "*";
                notes.push(format!("{}: {}", row.layer, explain(row, published, variant, params_off, ops_off)));
            }
        }
        let params = if row.params > 0 { format!("{computed_k:.1}K") } else { String::new() };
        let macs = if row.macs > 0 { format!("{computed_m:.1}M") } else { String::new() };
        println!(
            "{:<16} {:<20} {:<8} {:<12} {:>5} {:>5} {:>7} {:>5} {:>7} {:>5} {:>5} {:>9} {:>9} {:>8} {:>7} {}",
            row.layer,
            row.kind,
            row.patch_stride.as_deref().unwrap_or(""),
            row.output_string(),
            row.depth,
            cell(row.columns[0]),
            cell(row.columns[1]),
            cell(row.columns[2]),
            cell(row.columns[3]),
            cell(row.columns[4]),
            cell(row.columns[5]),
            params,
            macs,
            paper_params,
            paper_ops,
            flag
        );
    }
}

fn print_table(summary: &CostSummary, variant: Variant, compare: bool) {
    println!(
        "{:<16} {:<20} {:<8} {:<12} {:>5} {:>5} {:>7} {:>5} {:>7} {:>5} {:>5} {:>9} {:>9} {:>8} {:>7}",
        "layer",
        "type",
        "patch",
        "output",
        "depth",
        "#1x1",
        "#3x3r",
        "#3x3",
        "#5x5r",
        "#5x5",
        "pool",
        "params",
        "MACs",
        "paper",
        "paper"
    );
    let mut notes = Vec::new();
    print_rows(&summary.rows, variant, &mut notes, compare);
    println!(
        "total: {} parameters ({:.2}M), {} multiply-accumulates ({:.2}G) per image",
        summary.total_params(),
        summary.total_params() as f64 / M,
        summary.total_macs(),
        summary.total_macs() as f64 / 1e9
    );
    if let Some(note) = &summary.aux_note {
        println!("\nauxiliary classifiers: not listed at this input size: {note}");
    }
    if !summary.aux_rows.is_empty() {
        println!("\nauxiliary classifiers (training only, removed at inference):");
        print_rows(&summary.aux_rows, variant, &mut notes, false);
        println!(
            "auxiliary total: {} parameters, {} multiply-accumulates per image",
            summary.aux_params(),
            summary.aux_macs()
        );
    }
    if let Some(saving) = summary.gap_saving() {
        let [h, w, c] = saving.map;
        println!(
            "\nglobal average pooling: a fully connected layer from the {h}x{w}x{c} map to {} features would need \
             {} weights ({:.1}M); the average pool needs 0",
            saving.features,
            saving.fc_weights,
            saving.fc_weights as f64 / M
        );
    }
    if compare {
        println!(
            "\n\"paper\": Table 1 of Szegedy et al. (CVPR 2015), params in K = 1024, ops in M = 10^6; \
             * = differs by more than {:.0}% after rounding to the paper's precision:",
            TOLERANCE * 100.0
        );
        for note in &notes {
            println!("  {note}");
        }
        if notes.is_empty() {
            println!("  no row differs");
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::exit_code(run(&args))
}

fn run(args: &Args) -> Result<(), String> {
    let (config, variant) = match args.variant {
        VariantArg::Paper => (GoogLeNetConfig::paper(), Variant::Paper),
        VariantArg::Torchvision => (GoogLeNetConfig::torchvision(), Variant::Torchvision),
    };
    let side = args.input_size as usize;
    let summary = GoogLeNet::<f32>::new(config)
        .and_then(|net| net.cost_summary(side, side))
        .map_err(|err| format!("--input-size {side}: {err}"))?;
    if args.csv {
        print!("{}", summary.to_csv());
    } else {
        // The published figures are for 224x224 inputs only.
        print_table(&summary, variant, args.input_size == 224);
    }
    Ok(())
}
