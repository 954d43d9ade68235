#!/usr/bin/env python3
"""Measure incept beside PyTorch and onnxruntime and write the table in docs/performance.md.

One run does four things, all with the same thread count (`--threads`):

1. incept: runs `cargo bench` for the googlenet bench, Inception 3a of the
   inception bench and the large convolutions of the conv bench, with
   RAYON_NUM_THREADS set. It reads criterion's median time per iteration
   from target/criterion/<group>/<bench>/new/estimates.json and the work
   per iteration (images or multiply-accumulates) from benchmark.json.
2. PyTorch and onnxruntime: times the same GoogLeNet workloads with the
   functions of tools/bench_reference.py, in this process.
3. Peak memory: runs batch-16 training steps, and nothing else, in a child
   process per library (examples/train_step_memory.rs and
   `tools/bench_reference.py --train-memory`) and reads the child's peak
   resident set size (ru_maxrss from os.wait4) after it exits.
4. Stores the raw numbers in target/perf_table.json, prints the markdown
   section and writes it into docs/performance.md between the markers
   `<!-- perf-table:start -->` and `<!-- perf-table:end -->`.

    python3 tools/perf_table.py --threads 2
    python3 tools/perf_table.py --threads 2 --quick --no-write     # tries the script in a few minutes
    python3 tools/perf_table.py --skip-incept --skip-reference     # rebuilds the table from the JSON file

A full run should take about 4 minutes on an idle 2-core machine once the
benches are built, an estimate from the criterion settings and the
reference repeats. Quick runs took 1.5 to 2.5 minutes on a busy machine.
Run it on an idle machine, because other processes on the same cores slow
the two sides unevenly, and PyTorch's OpenMP threads most.

Needs cargo and Python 3.9 or newer. The reference part needs torch,
torchvision, onnxruntime and onnx, which install from PyPI with
`pip install torch==2.5.1 torchvision==0.20.1 onnxruntime onnx`.
Written with torch 2.5.1, torchvision 0.20.1, onnxruntime 1.32.0 and onnx
1.23.2. CI never runs this script.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "performance.md"
MARK_START = "<!-- perf-table:start -->"
MARK_END = "<!-- perf-table:end -->"

GOOGLENET_EVAL = {1: "googlenet_224/eval_batch1", 16: "googlenet_224/eval_batch16"}
GOOGLENET_TRAIN = "googlenet_224/train_step_batch16_aux"
INCEPTION_GROUP = "inception3a_28x28"
INCEPTION_PASSES = [("forward", 16), ("forward", 1), ("forward_backward", 16), ("forward_backward", 1)]

# The two convolutions of benches/conv.rs with more than 100M
# multiply-accumulates per image, the stem's conv1 and conv2's 3x3.
LARGE_CONV_LAYERS = ["conv2_3x3_64to192_56", "conv1_7x7s2_3to64_224"]
LARGE_CONV_GROUPS = ["conv_forward_batch16", "conv_forward_batch1", "conv_backward_batch16"]

# Targets, as ratios of incept's figure to the reference's.
EVAL_B1_MAX_TIME_VS_ORT = 1.0
EVAL_B1_MAX_TIME_VS_EAGER = 0.5
EVAL_B16_MIN_THROUGHPUT_VS_ORT = 1.0
TRAIN_MAX_TIME_VS_EAGER = 0.75
TRAIN_MAX_RSS_VS_PYTORCH = 1.0
MODULE_RATIO_TOLERANCE = 0.25
LARGE_CONV_MIN_FRACTION_OF_PEAK = 0.75

FULL = {"reference_repeats": 20, "reference_train_repeats": 5, "memory_steps": 3}
QUICK = {"reference_repeats": 5, "reference_train_repeats": 2, "memory_steps": 2}

GIB_IN_KIB = 1024 * 1024

# Logical CPUs that other processes kept busy on average during a part,
# above which the table warns that they shared the cores.
BUSY_CPUS_WARNING = 0.25


def log(message):
    print(message, flush=True)


def run_text(cmd):
    return subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def target_dir():
    metadata = json.loads(run_text(["cargo", "metadata", "--format-version", "1", "--no-deps"]))
    return Path(metadata["target_directory"])


def criterion_dir():
    home = os.environ.get("CRITERION_HOME")
    return Path(home) if home else target_dir() / "criterion"


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def cpu_seconds():
    """Return (busy CPU seconds of the whole machine, CPU seconds of this process and its children, wall time).

    The machine's figure comes from /proc/stat: every tick that is neither
    idle nor iowait, including steal, the time the hypervisor gave to other
    guests. The children's figure counts every child that has been waited
    for, and their waited-for children.
    """
    ticks = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    machine_busy = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        own += usage.ru_utime + usage.ru_stime
    return machine_busy, own, time.monotonic()


def other_cpus(start):
    """Return how many logical CPUs other processes kept busy, on average, since `start`.

    `start` is a cpu_seconds() snapshot. The figure is the machine's busy
    time minus this process's and its children's, over the wall time.
    """
    machine_start, own_start, wall_start = start
    machine_end, own_end, wall_end = cpu_seconds()
    other = (machine_end - machine_start) - (own_end - own_start)
    return round(max(other, 0.0) / (wall_end - wall_start), 2)


def machine_info():
    """Return the CPU of the first core in /proc/cpuinfo, the core count and the OS."""
    fields = {}
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    return {
        "cpu": fields.get("model name", "unknown"),
        "family": fields.get("cpu family", "?"),
        "model": fields.get("model", "?"),
        "mhz": float(fields.get("cpu MHz", "0") or 0),
        "cores": os.cpu_count(),
        "flags": {flag: flag in flags for flag in ("avx2", "fma", "avx512f")},
        "virtual_machine": "hypervisor" in flags,
        "os": f"{platform.system()} {platform.release()}",
    }


def source_revision():
    """Return the short hash of the last commit that changed more than the doc, flagged if files differ from it.

    This script rewrites docs/performance.md, which does not affect the
    benches, so a commit of a new table leaves the revision as it was.
    """
    outside_doc = ["--", ".", ":!docs/performance.md"]
    commit = run_text(["git", "log", "-1", "--format=%h", *outside_doc])
    dirty = bool(run_text(["git", "status", "--porcelain", *outside_doc]))
    return commit + (" plus uncommitted changes" if dirty else "")


def thread_env(threads, quick):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    env.pop("INCEPT_BENCH_QUICK", None)
    if quick:
        env["INCEPT_BENCH_QUICK"] = "1"
    return env


def run_logged(cmd, env):
    log("$ " + shlex.join(cmd))
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)


def peak_rss_kib(cmd, env):
    """Run `cmd` to completion and return (its ru_maxrss in KiB, its stdout).

    os.wait4 returns the resource usage of this one child (and of the
    children it waited for), so earlier children of this process do not
    count, as they would in getrusage(RUSAGE_CHILDREN). Linux carries the
    peak RSS of the process that forks across the child's exec, so the
    child's figure is at least this process's own peak at that moment. This
    process therefore measures memory before it imports torch.
    """
    if "torch" in sys.modules:
        raise RuntimeError("peak_rss_kib called after importing torch: the child would inherit its peak RSS")
    log("$ " + shlex.join(cmd))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, out)
    log(out.rstrip())
    return usage.ru_maxrss, out


def read_criterion(directory, full_ids, since):
    """Return criterion's results for `full_ids`, each measured after `since`.

    Criterion names a bench's directory after its id with `/` and other
    characters replaced, so the index is built from the `full_id` field of
    every benchmark.json rather than from directory names.
    """
    index = {}
    for path in directory.glob("**/new/benchmark.json"):
        index[json.loads(path.read_text())["full_id"]] = path.parent
    results = {}
    for full_id in full_ids:
        if full_id not in index:
            raise SystemExit(f"error: criterion wrote no results for {full_id} under {directory}")
        bench_dir = index[full_id]
        estimates_path = bench_dir / "estimates.json"
        if estimates_path.stat().st_mtime < since:
            raise SystemExit(f"error: {estimates_path} predates this run: did the bench filter skip {full_id}?")
        median = json.loads(estimates_path.read_text())["median"]
        throughput = json.loads((bench_dir / "benchmark.json").read_text())["throughput"]
        results[full_id] = {
            "median_ns": median["point_estimate"],
            "median_lower_ns": median["confidence_interval"]["lower_bound"],
            "median_upper_ns": median["confidence_interval"]["upper_bound"],
            "elements": throughput["Elements"],
        }
    return results


def inception_id(kind, pass_name, batch):
    return f"{INCEPTION_GROUP}/{kind}/{pass_name}/batch{batch}"


def measure_incept(threads, quick, settings):
    """Run incept's benches and its training-memory example."""
    part = {
        "command": None,
        "date": utc_now(),
        "threads": threads,
        "quick": quick,
        "revision": source_revision(),
        "rustc": run_text(["rustc", "--version"]),
    }
    env = thread_env(threads, quick)
    cpu_start = cpu_seconds()
    start = datetime.datetime.now().timestamp()
    conv_filter = f"^({'|'.join(LARGE_CONV_GROUPS)})/({'|'.join(LARGE_CONV_LAYERS)})$"
    run_logged(["cargo", "bench", "--bench", "googlenet"], env)
    run_logged(["cargo", "bench", "--bench", "inception", "--", INCEPTION_GROUP], env)
    run_logged(["cargo", "bench", "--bench", "conv", "--", conv_filter], env)

    full_ids = [*GOOGLENET_EVAL.values(), GOOGLENET_TRAIN]
    full_ids += [inception_id(k, p, b) for k in ("naive", "bottleneck") for p, b in INCEPTION_PASSES]
    full_ids += [f"{group}/{layer}" for group in LARGE_CONV_GROUPS for layer in LARGE_CONV_LAYERS]
    part["benches"] = read_criterion(criterion_dir(), full_ids, start)

    run_logged(["cargo", "build", "--release", "--example", "train_step_memory"], env)
    binary = target_dir() / "release" / "examples" / "train_step_memory"
    steps = settings["memory_steps"]
    peak_kib, _ = peak_rss_kib([str(binary), "--steps", str(steps)], env)
    part["memory"] = {"steps": steps, "peak_kib": peak_kib}
    part["other_cpus"] = other_cpus(cpu_start)
    return part


def measure_reference(threads, quick, settings):
    """Measure PyTorch's training memory, then time PyTorch and onnxruntime."""
    part = {"command": None, "date": utc_now(), "threads": threads, "quick": quick}
    cpu_start = cpu_seconds()
    steps = settings["memory_steps"]
    cmd = [sys.executable, str(ROOT / "tools" / "bench_reference.py"), "--train-memory",
           "--threads", str(threads), "--train-repeats", str(steps)]
    peak_kib, out = peak_rss_kib(cmd, dict(os.environ))
    part["memory"] = {"steps": steps, "peak_kib": peak_kib, "import_kib": json.loads(out)["import_kib"]}

    # No __pycache__ in tools/, which would count as an uncommitted change.
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(ROOT / "tools"))
    import bench_reference as ref

    part["versions"] = {**ref.versions(), "python": platform.python_version()}
    part["repeats"] = settings["reference_repeats"]
    part["train_repeats"] = settings["reference_train_repeats"]
    ref.configure(threads)
    model = ref.eval_model()
    pytorch = ref.time_pytorch_eval(model, part["repeats"])
    onnxruntime = ref.time_onnxruntime_eval(model, threads, part["repeats"])
    ms = {}
    for batch in ref.EVAL_BATCHES:
        ms[f"pytorch_eager_eval_b{batch}"] = pytorch["eager"][batch]
        ms[f"pytorch_channels_last_eval_b{batch}"] = pytorch["channels_last"][batch]
        ms[f"onnxruntime_eval_b{batch}"] = onnxruntime[batch]
    ms["pytorch_train_b16"] = ref.time_pytorch_train(part["train_repeats"])
    part["ms"] = ms
    part["other_cpus"] = other_cpus(cpu_start)
    return part


def fmt_ms(ms):
    """Format milliseconds with three or more significant digits."""
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    return f"{ms:.2f}"


def fmt_gib(kib):
    return f"{kib / GIB_IN_KIB:.2f}"


def met(ok):
    return "yes" if ok else "**no**"


def peak_gflops(machine, threads, clock_ghz, fma_pipes):
    """Return the f32 peak in GFLOP/s of `threads` cores at `clock_ghz`, and the f32 lanes per FMA.

    NOTE: this counts one core per thread, up to os.cpu_count(). With SMT,
    two threads can share one core's FMA pipes, and the peak is overstated.
    """
    # f32 lanes of the widest vector FMA: AVX-512, AVX2, otherwise SSE.
    if machine["flags"]["avx512f"]:
        lanes = 16
    elif machine["flags"]["avx2"]:
        lanes = 8
    else:
        lanes = 4
    return min(threads, machine["cores"]) * fma_pipes * lanes * 2 * clock_ghz, lanes


def table_rows(incept, reference, machine, clock_ghz, fma_pipes):
    """Return the rows of the table, each a list of eight cells."""
    benches = incept["benches"]
    ref_ms = reference["ms"]

    def incept_ms(full_id):
        return benches[full_id]["median_ns"] / 1e6

    rows = []
    b1 = incept_ms(GOOGLENET_EVAL[1])
    ort_b1 = ref_ms["onnxruntime_eval_b1"]
    eager_b1 = ref_ms["pytorch_eager_eval_b1"]
    cells_b1 = [fmt_ms(b1), fmt_ms(eager_b1), fmt_ms(ref_ms["pytorch_channels_last_eval_b1"]), fmt_ms(ort_b1)]
    ratio = b1 / ort_b1
    rows.append(["eval, batch 1 (ms), against onnxruntime", *cells_b1,
                 f"<= {EVAL_B1_MAX_TIME_VS_ORT:.2f}x onnxruntime's time", f"{ratio:.2f}x",
                 met(ratio <= EVAL_B1_MAX_TIME_VS_ORT)])
    ratio = b1 / eager_b1
    rows.append(["eval, batch 1 (ms), against PyTorch eager", *cells_b1,
                 f"<= {EVAL_B1_MAX_TIME_VS_EAGER:.2f}x PyTorch eager's time", f"{ratio:.2f}x",
                 met(ratio <= EVAL_B1_MAX_TIME_VS_EAGER)])

    def images_per_s(ms):
        return 16e3 / ms

    b16 = benches[GOOGLENET_EVAL[16]]["elements"] * 1e3 / incept_ms(GOOGLENET_EVAL[16])
    ort_b16 = images_per_s(ref_ms["onnxruntime_eval_b16"])
    ratio = b16 / ort_b16
    rows.append(["eval, batch 16 (images/s)", f"{b16:.1f}", f"{images_per_s(ref_ms['pytorch_eager_eval_b16']):.1f}",
                 f"{images_per_s(ref_ms['pytorch_channels_last_eval_b16']):.1f}", f"{ort_b16:.1f}",
                 f">= {EVAL_B16_MIN_THROUGHPUT_VS_ORT:.2f}x onnxruntime's images/s", f"{ratio:.2f}x",
                 met(ratio >= EVAL_B16_MIN_THROUGHPUT_VS_ORT)])

    train = incept_ms(GOOGLENET_TRAIN)
    train_ref = ref_ms["pytorch_train_b16"]
    ratio = train / train_ref
    rows.append(["training step, batch 16, auxiliary heads, SGD momentum (ms)", fmt_ms(train), fmt_ms(train_ref),
                 "", "", f"<= {TRAIN_MAX_TIME_VS_EAGER:.2f}x PyTorch eager's time", f"{ratio:.2f}x",
                 met(ratio <= TRAIN_MAX_TIME_VS_EAGER)])

    rss = incept["memory"]["peak_kib"]
    rss_ref = reference["memory"]["peak_kib"]
    import_ref = reference["memory"]["import_kib"]
    ratio = rss / rss_ref
    rows.append(["training step, batch 16, peak RSS (GiB)", fmt_gib(rss),
                 f"{fmt_gib(rss_ref)} ({fmt_gib(import_ref)} of it the torch import)", "", "",
                 f"< {TRAIN_MAX_RSS_VS_PYTORCH:.2f}x PyTorch's peak", f"{ratio:.2f}x",
                 met(ratio < TRAIN_MAX_RSS_VS_PYTORCH)])
    # incept's figure is its whole peak: a Rust binary has no runtime to import.
    above_import = rss_ref - import_ref
    row = ["training step, batch 16, peak RSS minus the torch import (GiB)", fmt_gib(rss), fmt_gib(above_import),
           "", "", f"< {TRAIN_MAX_RSS_VS_PYTORCH:.2f}x PyTorch's"]
    if above_import > 0:
        ratio = rss / above_import
        rows.append([*row, f"{ratio:.2f}x", met(ratio < TRAIN_MAX_RSS_VS_PYTORCH)])
    else:
        rows.append([*row, "n/a", "n/a: PyTorch's training stayed below its import peak"])

    for pass_name, batch in INCEPTION_PASSES:
        naive = benches[inception_id("naive", pass_name, batch)]
        bottleneck = benches[inception_id("bottleneck", pass_name, batch)]
        time_ratio = naive["median_ns"] / bottleneck["median_ns"]
        mac_ratio = naive["elements"] / bottleneck["elements"]
        ratio = time_ratio / mac_ratio
        label = pass_name.replace("_", " + ")
        rows.append([f"Inception 3a naive / bottleneck time, {label}, batch {batch}",
                     f"{time_ratio:.2f} ({fmt_ms(naive['median_ns'] / 1e6)} / "
                     f"{fmt_ms(bottleneck['median_ns'] / 1e6)} ms)", "", "", "",
                     f"MAC ratio {mac_ratio:.2f} ± {MODULE_RATIO_TOLERANCE:.0%} "
                     f"({mac_ratio * (1 - MODULE_RATIO_TOLERANCE):.2f} to "
                     f"{mac_ratio * (1 + MODULE_RATIO_TOLERANCE):.2f})", f"{ratio:.2f}x the MAC ratio",
                     met(abs(ratio - 1) <= MODULE_RATIO_TOLERANCE)])

    peak, _ = peak_gflops(machine, incept["threads"], clock_ghz, fma_pipes)
    nominal_peak, _ = peak_gflops(machine, incept["threads"], machine["mhz"] / 1e3, fma_pipes)

    def nominal_note(gflops):
        return f" ({gflops / nominal_peak:.0%} of the nominal peak)" if nominal_peak > 0 else ""

    for group in LARGE_CONV_GROUPS:
        for layer in LARGE_CONV_LAYERS:
            result = benches[f"{group}/{layer}"]
            # One multiply-accumulate is 2 FLOP; the backward benches already
            # count two GEMMs per forward one in their elements.
            gflops = 2 * result["elements"] / result["median_ns"]
            fraction = gflops / peak
            pass_name, _, batch = group.removeprefix("conv_").partition("_batch")
            rows.append([f"`{layer}` {pass_name}, batch {batch} (GFLOP/s)",
                         f"{gflops:.1f} in {fmt_ms(result['median_ns'] / 1e6)} ms{nominal_note(gflops)}",
                         "", "", "",
                         f">= {LARGE_CONV_MIN_FRACTION_OF_PEAK:.0%} of {peak:.0f} GFLOP/s", f"{fraction:.0%}",
                         met(fraction >= LARGE_CONV_MIN_FRACTION_OF_PEAK)])
    return rows


def describe_machine(machine):
    flags = ", ".join(f"{name} {'yes' if present else 'no'}" for name, present in machine["flags"].items())
    vm = ", virtual machine (hypervisor flag)" if machine["virtual_machine"] else ""
    return (f"{machine['cpu']} (family {machine['family']}, model {machine['model']}), "
            f"{machine['cores']} logical CPUs (`os.cpu_count()`), {machine['mhz']:.0f} MHz reported by "
            f"/proc/cpuinfo, {flags}{vm}, {machine['os']}")


def describe_busy(part):
    return f"other processes kept {part['other_cpus']} logical CPUs busy on average meanwhile"


def render(results, clock_ghz, fma_pipes):
    """Return the markdown section that goes between the markers."""
    incept, reference, machine = results["incept"], results["reference"], results["machine"]
    if incept["threads"] != reference["threads"]:
        raise SystemExit(f"error: incept ran on {incept['threads']} threads and the reference on "
                         f"{reference['threads']}: rerun one of them with the other's --threads")
    threads = incept["threads"]
    versions = reference["versions"]
    peak, lanes = peak_gflops(machine, threads, clock_ghz, fma_pipes)
    nominal_ghz = machine["mhz"] / 1e3
    nominal_peak, _ = peak_gflops(machine, threads, nominal_ghz, fma_pipes)
    if nominal_peak > 0:
        nominal = f"at the nominal {nominal_ghz:.3f} GHz from /proc/cpuinfo, {nominal_peak:.0f} GFLOP/s"
    else:
        nominal = "/proc/cpuinfo reports no nominal clock"

    lines = []
    if incept["quick"] or reference["quick"]:
        lines += ["**Quick run** (`--quick`): shortened criterion warm-up and measurement, fewer reference "
                  "repeats and training steps. These figures are for trying the script, not for comparison.", ""]
    busiest = max(incept["other_cpus"], reference["other_cpus"])
    if busiest > BUSY_CPUS_WARNING:
        lines += [f"**Busy machine**: other processes kept up to {busiest} of {machine['cores']} logical CPUs "
                  "busy on average during a part, so they shared the cores and the figures are noisy.", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| machine | {describe_machine(machine)} |",
        f"| threads | {threads}: `RAYON_NUM_THREADS` for incept, `torch.set_num_threads` and onnxruntime's "
        "`intra_op_num_threads` (one inter-op thread) for the reference |",
        f"| incept | {incept['revision']}, {incept['rustc']}; criterion medians; measured {incept['date']} "
        f"by `{incept['command']}`; {describe_busy(incept)} |",
        f"| reference | torch {versions['torch']}, torchvision {versions['torchvision']}, onnxruntime "
        f"{versions['onnxruntime']}, onnx {versions['onnx']}, Python {versions['python']}; medians of "
        f"{reference['repeats']} eval runs and {reference['train_repeats']} training steps; measured "
        f"{reference['date']} by `{reference['command']}`; {describe_busy(reference)} |",
        f"| peak memory | ru_maxrss of a child process that runs {incept['memory']['steps']} (incept) and "
        f"{reference['memory']['steps']} (PyTorch) training steps and nothing else |",
        f"| f32 peak | {min(threads, machine['cores'])} cores x {fma_pipes} FMA pipes x {lanes} lanes x 2 FLOP x "
        f"{clock_ghz:g} GHz = {peak:.0f} GFLOP/s; {nominal} |",
        "",
        "| workload | incept | PyTorch eager | PyTorch channels_last | onnxruntime | target | ratio | met? |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for row in table_rows(incept, reference, machine, clock_ghz, fma_pipes):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_doc(section):
    text = DOC.read_text()
    start, end = text.find(MARK_START), text.find(MARK_END)
    if start < 0 or end < start:
        raise SystemExit(f"error: {DOC} has no {MARK_START} ... {MARK_END} pair: add the markers where the "
                         "table belongs")
    DOC.write_text(text[:start + len(MARK_START)] + "\n" + section + text[end:])
    log(f"wrote the table into {DOC.relative_to(ROOT)}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for incept (RAYON_NUM_THREADS), PyTorch and onnxruntime (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="shorten criterion's times (INCEPT_BENCH_QUICK=1) and the reference repeats; "
                             "the table says it is a quick run")
    parser.add_argument("--skip-incept", action="store_true",
                        help="reuse incept's results stored in --results instead of running the benches")
    parser.add_argument("--skip-reference", action="store_true",
                        help="reuse PyTorch's and onnxruntime's results stored in --results")
    parser.add_argument("--no-write", action="store_true", help="print the table without changing the doc")
    parser.add_argument("--results", type=Path, help="JSON file of raw results (default target/perf_table.json)")
    parser.add_argument("--clock-ghz", type=float, default=4.5,
                        help="clock in GHz for the f32 peak (default 4.5, the boost clock measured on the "
                             "2-core AMD EPYC of docs/performance.md; the nominal /proc/cpuinfo clock is shown too)")
    parser.add_argument("--fma-pipes", type=int, default=2,
                        help="vector FMA instructions per cycle per core (default 2)")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: pass at least 1")
    if args.clock_ghz <= 0 or args.fma_pipes < 1:
        parser.error("--clock-ghz must be positive and --fma-pipes at least 1")
    return args


def main():
    args = parse_args()
    command = shlex.join(["python3", "tools/perf_table.py", *sys.argv[1:]])
    results_path = args.results or target_dir() / "perf_table.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    settings = QUICK if args.quick else FULL

    for part, skip in (("incept", args.skip_incept), ("reference", args.skip_reference)):
        if skip and part not in results:
            raise SystemExit(f"error: --skip-{part}: {results_path} has no {part} results; run once without it")
    if not (args.skip_incept and args.skip_reference):
        results["machine"] = machine_info()
    if not args.skip_incept:
        results["incept"] = measure_incept(args.threads, args.quick, settings)
        results["incept"]["command"] = command
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    if not args.skip_reference:
        results["reference"] = measure_reference(args.threads, args.quick, settings)
        results["reference"]["command"] = command
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2) + "\n")

    section = render(results, args.clock_ghz, args.fma_pipes)
    print()
    print(section)
    if not args.no_write:
        write_doc(section)


if __name__ == "__main__":
    main()
