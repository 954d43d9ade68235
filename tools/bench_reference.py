#!/usr/bin/env python3
"""Time GoogLeNet in PyTorch and onnxruntime for comparison with incept.

The workloads are those of `cargo bench --bench googlenet`: torchvision's
GoogLeNet (random weights, 224x224 RGB) in eval mode without auxiliary heads
at batch 1 and 16, and a training step at batch 16 with the auxiliary heads
(cross-entropy of the main logits plus 0.3 times each auxiliary loss, SGD
with momentum 0.9). onnxruntime runs the eval model exported to ONNX.
Every measurement uses the same thread count and reports the median over
repeated runs after warm-up, in milliseconds per batch and images per second.

    pip install torch torchvision onnxruntime onnx
    python3 tools/bench_reference.py --threads 2
    python3 tools/bench_reference.py --threads 2 --train-memory   # peak RSS of training alone

`--train-memory` runs only training steps and prints one JSON line with the
process's peak resident memory (`ru_maxrss`) after importing torch and
torchvision and after the steps. `tools/perf_table.py` imports the timing
functions below and runs `--train-memory` in a child process.

Written with torch 2.5.1, torchvision 0.20.1, onnxruntime 1.32.0 and onnx
1.23.2. CI never runs this script.
"""

import argparse
import json
import os
import resource
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
import torchvision

# Peak resident memory of this process once torch and torchvision are
# imported, in KiB (Linux reports ru_maxrss in KiB).
IMPORT_MAXRSS_KIB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

EVAL_BATCHES = (1, 16)
TRAIN_BATCH = 16


def median_ms(run, repeats, warmup):
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def report(name, batch, ms):
    print(f"{name:<40} batch {batch:>2}: {ms:9.2f} ms  {batch * 1e3 / ms:8.1f} images/s")


def configure(threads):
    """Set torch's intra-op thread count and seed its random generator."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)


def versions():
    """Return the versions of the libraries this script times."""
    import onnx
    import onnxruntime as ort

    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
    }


def eval_model():
    """Build torchvision's GoogLeNet without auxiliary heads, in eval mode."""
    return torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()


def time_pytorch_eval(model, repeats, warmup=3, log=report):
    """Time eager eval in the default and the channels_last memory format.

    Returns `{"eager": {batch: ms}, "channels_last": {batch: ms}}` with the
    median milliseconds per batch for each of `EVAL_BATCHES`.
    """
    results = {"eager": {}, "channels_last": {}}
    with torch.no_grad():
        for batch in EVAL_BATCHES:
            x = torch.randn(batch, 3, 224, 224)
            results["eager"][batch] = median_ms(lambda: model(x), repeats, warmup)
            log("pytorch eager eval", batch, results["eager"][batch])
            x_cl = x.to(memory_format=torch.channels_last)
            model_cl = model.to(memory_format=torch.channels_last)
            results["channels_last"][batch] = median_ms(lambda: model_cl(x_cl), repeats, warmup)
            log("pytorch eager eval, channels_last", batch, results["channels_last"][batch])
            model = model.to(memory_format=torch.contiguous_format)
    return results


def time_onnxruntime_eval(model, threads, repeats, warmup=3, log=report):
    """Export `model` to ONNX (opset 17, dynamic batch) and time it in onnxruntime.

    Returns `{batch: ms}`, the median milliseconds per batch for each of
    `EVAL_BATCHES`, with `threads` intra-op threads and one inter-op thread.
    """
    import onnxruntime as ort

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "googlenet.onnx")
        torch.onnx.export(
            model, torch.randn(1, 3, 224, 224), path, input_names=["x"], output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        for batch in EVAL_BATCHES:
            x = torch.randn(batch, 3, 224, 224).numpy()
            results[batch] = median_ms(lambda: session.run(None, {"x": x}), repeats, warmup)
            log("onnxruntime eval", batch, results[batch])
    return results


def train_step_fn():
    """Build the training workload and return a function that runs one step.

    torchvision's GoogLeNet with auxiliary heads in train mode, SGD with
    learning rate 0.01 and momentum 0.9, on one fixed random batch of
    `TRAIN_BATCH` images.
    """
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(TRAIN_BATCH, 3, 224, 224)
    y = torch.randint(0, 1000, (TRAIN_BATCH,))

    def step():
        optimizer.zero_grad()
        out = model(x)
        loss = F.cross_entropy(out.logits, y) + 0.3 * (F.cross_entropy(out.aux_logits1, y)
                                                      + F.cross_entropy(out.aux_logits2, y))
        loss.backward()
        optimizer.step()

    return step


def time_pytorch_train(repeats, warmup=2, log=report):
    """Return the median milliseconds of a training step (see `train_step_fn`)."""
    ms = median_ms(train_step_fn(), repeats, warmup)
    log("pytorch eager train step (aux heads)", TRAIN_BATCH, ms)
    return ms


def train_memory(steps):
    """Run `steps` training steps and return peak resident memory in KiB.

    Returns `{"import_kib": ..., "peak_kib": ...}`: the peak after importing
    torch and torchvision, and the peak after the steps. Both are ru_maxrss
    of this process, so call it in a process that has done nothing else.
    """
    step = train_step_fn()
    for _ in range(steps):
        step()
    return {"import_kib": IMPORT_MAXRSS_KIB, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for both runtimes")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per workload (eval)")
    parser.add_argument("--train-repeats", type=int, default=5, help="timed training steps")
    parser.add_argument("--train-memory", action="store_true",
                        help="run only --train-repeats training steps and print peak memory as JSON")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads {args.threads}: pass at least 1")
    configure(args.threads)

    if args.train_memory:
        print(json.dumps({"threads": args.threads, "steps": args.train_repeats, **train_memory(args.train_repeats)}))
        return

    names = versions()
    print(f"torch {names['torch']}, torchvision {names['torchvision']}, {args.threads} threads")
    model = eval_model()
    time_pytorch_eval(model, args.repeats)
    print(f"onnxruntime {names['onnxruntime']}")
    time_onnxruntime_eval(model, args.threads, args.repeats)
    time_pytorch_train(args.train_repeats)


if __name__ == "__main__":
    main()
