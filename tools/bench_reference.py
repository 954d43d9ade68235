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

Written with torch 2.5.1, torchvision 0.20.1, onnxruntime 1.32.0 and onnx
1.23.2. CI never runs this script.
"""

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F
import torchvision


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for both runtimes")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per workload (eval)")
    parser.add_argument("--train-repeats", type=int, default=5, help="timed training steps")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, {args.threads} threads")

    model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False).eval()
    with torch.no_grad():
        for batch in (1, 16):
            x = torch.randn(batch, 3, 224, 224)
            report("pytorch eager eval", batch, median_ms(lambda: model(x), args.repeats, 3))
            x_cl = x.to(memory_format=torch.channels_last)
            model_cl = model.to(memory_format=torch.channels_last)
            report("pytorch eager eval, channels_last", batch, median_ms(lambda: model_cl(x_cl), args.repeats, 3))
            model = model.to(memory_format=torch.contiguous_format)

    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "googlenet.onnx")
        torch.onnx.export(
            model, torch.randn(1, 3, 224, 224), path, input_names=["x"], output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
        )
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        print(f"onnxruntime {ort.__version__}")
        for batch in (1, 16):
            x = torch.randn(batch, 3, 224, 224).numpy()
            report("onnxruntime eval", batch, median_ms(lambda: session.run(None, {"x": x}), args.repeats, 3))

    train_model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).train()
    optimizer = torch.optim.SGD(train_model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(16, 3, 224, 224)
    y = torch.randint(0, 1000, (16,))

    def step():
        optimizer.zero_grad()
        out = train_model(x)
        loss = F.cross_entropy(out.logits, y) + 0.3 * (F.cross_entropy(out.aux_logits1, y)
                                                      + F.cross_entropy(out.aux_logits2, y))
        loss.backward()
        optimizer.step()

    report("pytorch eager train step (aux heads)", 16, median_ms(step, args.train_repeats, 2))


if __name__ == "__main__":
    main()
