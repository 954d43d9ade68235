#!/usr/bin/env python3
"""Write torchvision GoogLeNet reference fixtures for incept's tests.

Every weight, buffer and input comes from a hash formula (below) that the Rust
tests reimplement, so the fixtures store only PyTorch's outputs, a sample of
its activations and gradients, and the model's key list:

- tests/fixtures/googlenet_torchvision_eval.safetensors: eval-mode logits of
  torchvision's GoogLeNet (no auxiliary heads), with and without
  transform_input, and sampled activations of nine layers.
- tests/fixtures/inception3a_train.safetensors: one train-mode forward and
  backward pass of torchvision's Inception block with the 3a configuration:
  sampled output, input gradient, parameter gradients and updated running
  statistics.
- tests/fixtures/torchvision_googlenet_keys.txt and
  torchvision_googlenet_keys_noaux.txt: every state_dict key with its shape
  and dtype, for aux_logits=True and aux_logits=False.

    python3 tools/make_fixtures.py             # write the fixtures
    python3 tools/make_fixtures.py --selftest  # print formula values only

Written with torch 2.5.1 (CPU), torchvision 0.20.1 (installed with
`pip install --no-deps torchvision==0.20.1` plus pillow, which torchvision
imports), safetensors 0.8.0 and numpy 2.4.6. CI never runs this script.

Formula (all integer arithmetic wraps modulo 2**64):
    name_seed(name) = FNV-1a 64 over the UTF-8 bytes of name
    z = splitmix64(name_seed(name) + i) for row-major flat index i
    u(name, i) = (z >> 40) / 2**24 * 2 - 1, a float64 in [-1, 1)
Values are computed in float64 and rounded to float32 once:
    4-D weight [o, i, kh, kw]  sqrt(6 / (i * kh * kw)) * u
    2-D weight [out, in]       sqrt(3 / in) * u
    1-D bias (conv, linear)    0.01 * u
    *bn.weight                 1 + 0.1 * u
    *bn.bias                   0.05 * u
    *bn.running_mean           0.05 * u
    *bn.running_var            1 + 0.2 * u * u, evaluated as (0.2 * u) * u
    *num_batches_tracked       left as built (0)
    inputs and output gradient 1.0 * u
The state_dict key is the name. A sampled tensor keeps K values of the
row-major flattened tensor, at indices (k * numel) // K for k = 0..K-1.

NOTE: safetensors 0.8.0 writes the header keys in hash order, so a rerun
changes the .safetensors bytes while every tensor and metadata value stays
the same.
"""

import argparse
import math
import os
import sys

import numpy as np
import safetensors
import torch
import torchvision
from safetensors.torch import save_file
from torchvision.models import googlenet
from torchvision.models.googlenet import Inception

MASK64 = (1 << 64) - 1
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
SPLITMIX_GAMMA = 0x9E3779B97F4A7C15
SPLITMIX_MUL1 = 0xBF58476D1CE4E5B9
SPLITMIX_MUL2 = 0x94D049BB133111EB

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
EVAL_FILE = "googlenet_torchvision_eval.safetensors"
TRAIN_FILE = "inception3a_train.safetensors"
KEYS_FILE = "torchvision_googlenet_keys.txt"
KEYS_NOAUX_FILE = "torchvision_googlenet_keys_noaux.txt"

THREADS = 2
ACTIVATION_SAMPLES = 256
ACTIVATION_LAYERS = [
    "conv1", "maxpool1", "conv3", "maxpool2", "inception3a",
    "inception4a", "inception4e", "inception5b", "avgpool",
]
INPUT_HEAD = 16
TRAIN_PREFIX = "inception3a."
TRAIN_INPUT_SHAPE = (2, 192, 7, 7)
OUTPUT_SAMPLES = 512
GRAD_INPUT_SAMPLES = 1024
PARAM_GRAD_SAMPLES = 64
RUNNING_SAMPLES = 32
BN_MOMENTUM = 0.1

# The largest |activation| and smallest std that still count as well scaled.
ABSMAX_LIMIT = 1e3
STD_FLOOR = 1e-3

FORMULA_SUMMARY = (
    "u(name,i) = ((splitmix64((fnv1a64(utf8(name)) + i) mod 2^64) >> 40) / 2^24) * 2 - 1, "
    "i the row-major flat index; float64, cast to float32 once. "
    "4-D weight: sqrt(6/fan_in)*u, fan_in=i*kh*kw; 2-D weight [out,in]: sqrt(3/in)*u; "
    "1-D conv/linear bias: 0.01*u; bn.weight: 1+0.1*u; bn.bias: 0.05*u; "
    "bn.running_mean: 0.05*u; bn.running_var: 1+(0.2*u)*u; num_batches_tracked: unchanged; "
    "inputs and output gradients: 1.0*u. Sample of K values: flat indices (k*numel)//K, k=0..K-1."
)


# ---------------------------------------------------------------------------
# Formula


def name_seed(name: str) -> int:
    """Hash the UTF-8 bytes of name with 64-bit FNV-1a."""
    h = FNV_OFFSET
    for byte in name.encode("utf-8"):
        h ^= byte
        h = (h * FNV_PRIME) & MASK64
    return h


def splitmix64(x: int) -> int:
    """Apply the splitmix64 output function to x, with Python ints masked to 64 bits."""
    z = (x + SPLITMIX_GAMMA) & MASK64
    z = ((z ^ (z >> 30)) * SPLITMIX_MUL1) & MASK64
    z = ((z ^ (z >> 27)) * SPLITMIX_MUL2) & MASK64
    return z ^ (z >> 31)


def uniform_scalar(name: str, index: int) -> float:
    """Return u(name, index) with plain Python ints, the reference for uniform_array."""
    z = splitmix64((name_seed(name) + index) & MASK64)
    return (z >> 40) / 2.0**24 * 2.0 - 1.0


def uniform_array(name: str, numel: int) -> np.ndarray:
    """Return u(name, i) for i = 0..numel-1 as float64, using wrapping uint64 arrays."""
    z = np.arange(numel, dtype=np.uint64) + np.uint64(name_seed(name))
    z = z + np.uint64(SPLITMIX_GAMMA)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(SPLITMIX_MUL1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(SPLITMIX_MUL2)
    z = z ^ (z >> np.uint64(31))
    # z >> 40 has 24 bits, so every step below is exact in float64.
    return (z >> np.uint64(40)).astype(np.float64) / 2.0**24 * 2.0 - 1.0


def formula_values(name: str, shape) -> np.ndarray:
    """Return the float32 formula tensor for a state_dict key or input name.

    Raises ValueError for a key that the formula does not cover.
    """
    shape = tuple(int(d) for d in shape)
    u = uniform_array(name, math.prod(shape)).reshape(shape)

    if name.endswith("bn.weight"):
        values = 1.0 + 0.1 * u
    elif name.endswith("bn.bias"):
        values = 0.05 * u
    elif name.endswith("bn.running_mean"):
        values = 0.05 * u
    elif name.endswith("bn.running_var"):
        values = 1.0 + 0.2 * u * u
    elif name.endswith(".weight") and len(shape) == 4:
        fan_in = shape[1] * shape[2] * shape[3]
        values = math.sqrt(6.0 / fan_in) * u
    elif name.endswith(".weight") and len(shape) == 2:
        values = math.sqrt(3.0 / shape[1]) * u
    elif name.endswith(".bias") and len(shape) == 1:
        values = 0.01 * u
    else:
        raise ValueError(f"no formula for tensor {name!r} with shape {list(shape)}")

    return values.astype(np.float32)


def input_values(name: str, shape) -> torch.Tensor:
    """Return the float32 tensor 1.0 * u(name, i) with the given shape."""
    u = uniform_array(name, math.prod(shape)).reshape(tuple(shape))
    return torch.from_numpy((1.0 * u).astype(np.float32))


def fill_state_dict(module: torch.nn.Module, prefix: str) -> None:
    """Overwrite every parameter and buffer of module with formula values.

    The formula name of each entry is prefix + its state_dict key.
    """
    with torch.no_grad():
        for key, tensor in module.state_dict().items():
            if key.endswith("num_batches_tracked"):
                continue
            values = formula_values(prefix + key, tensor.shape)
            # state_dict() tensors share storage with the module's own tensors.
            tensor.copy_(torch.from_numpy(values))


def check_formula() -> None:
    """Assert that the uint64-array and Python-int formulas agree."""
    names = ["input", "conv1.conv.weight", "fc.weight", "inception3a.branch2.1.conv.weight", ""]
    for name in names:
        numel = 4096
        array = uniform_array(name, numel)
        for index in list(range(16)) + [1000, 2047, numel - 1]:
            assert array[index] == uniform_scalar(name, index), (name, index)

    values = uniform_array("input", 1 << 16)
    assert values.min() >= -1.0
    assert values.max() < 1.0


def print_selftest() -> None:
    """Print formula values that the Rust tests can copy as expected values."""
    check_formula()
    print(f"name_seed('input') = {name_seed('input'):#018x}")
    print("u('input', 0..5) =", [repr(uniform_scalar("input", i)) for i in range(5)])
    weight = formula_values("conv1.conv.weight", (64, 3, 7, 7)).reshape(-1)
    print("conv1.conv.weight[0..5] (float32) =", [repr(float(v)) for v in weight[:5]])
    print("  as f32 bits =", [f"{v:#010x}" for v in weight[:5].view(np.uint32)])
    var = formula_values("conv1.bn.running_var", (64,))
    print("conv1.bn.running_var[0..5] (float32) =", [repr(float(v)) for v in var[:5]])


# ---------------------------------------------------------------------------
# Fixture helpers


def sample(tensor: torch.Tensor, count: int) -> torch.Tensor:
    """Return count values of the flattened tensor at indices (k * numel) // count."""
    flat = tensor.detach().reshape(-1)
    numel = flat.numel()
    indices = torch.tensor([(k * numel) // count for k in range(count)], dtype=torch.int64)
    return flat[indices].to(torch.float32).contiguous()


def absmax(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().abs().max().reshape(1).to(torch.float32)


def describe(label: str, tensor: torch.Tensor) -> bool:
    """Print mean, std and max |value| of tensor, and return whether it is well scaled."""
    t = tensor.detach().double()
    mean, std, peak = t.mean().item(), t.std().item(), t.abs().max().item()
    ok = std > STD_FLOOR and peak < ABSMAX_LIMIT
    flag = "" if ok else "   <-- badly scaled"
    print(f"  {label:<14} {str(list(tensor.shape)):<20} mean {mean:+.4f}  std {std:.4f}  absmax {peak:.4f}{flag}")
    return ok


def versions() -> dict:
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
    }


# ---------------------------------------------------------------------------
# Eval-mode GoogLeNet


def check_transform_input(model: torch.nn.Module, x: torch.Tensor) -> str:
    """Return how torchvision's transform_input rounds, checked bit for bit.

    torchvision computes x[:, c] * (std / 0.5) + (mean - 0.5) / 0.5 on a float32
    tensor with Python-float constants. The check reports whether that equals two
    float32 operations with the constants rounded to float32.
    """
    model.transform_input = True
    actual = model._transform_input(x).numpy()
    model.transform_input = False

    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    x32 = x.numpy()
    expected = np.empty_like(x32)
    for c in range(3):
        scale = np.float32(std[c] / 0.5)
        shift = np.float32((mean[c] - 0.5) / 0.5)
        expected[:, c] = x32[:, c] * scale + shift

    if np.array_equal(actual, expected):
        return "bitwise equal to float32 (x * f32(std/0.5)) + f32((mean-0.5)/0.5), two roundings"
    diff = np.abs(actual - expected).max()
    return f"differs from two float32 roundings by up to {diff:.3g}"


def make_eval_fixture() -> tuple[dict, bool]:
    model = googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=False).eval()
    fill_state_dict(model, prefix="")
    x = input_values("input", (1, 3, 224, 224))

    activations = {}
    handles = []
    for layer in ACTIVATION_LAYERS:
        def hook(_module, _inputs, output, layer=layer):
            # Clone because a later in-place ReLU could reuse the storage.
            activations[layer] = output.detach().clone()
        handles.append(getattr(model, layer).register_forward_hook(hook))

    with torch.no_grad():
        logits = model(x)
    for handle in handles:
        handle.remove()

    transform_note = check_transform_input(model, x)
    model.transform_input = True
    with torch.no_grad():
        logits_transform = model(x)
    model.transform_input = False

    # A float64 run of the same float32 values shows how far float32 rounding
    # alone moves the logits, which bounds the tolerance a Rust test needs.
    model64 = googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=False).eval()
    model64.load_state_dict(model.state_dict())
    model64 = model64.double()
    with torch.no_grad():
        logits64 = model64(x.double())
    rounding = (logits.double() - logits64).abs().max().item()

    print("eval GoogLeNet activations:")
    well_scaled = True
    for layer in ACTIVATION_LAYERS:
        well_scaled &= describe(layer, activations[layer])
    well_scaled &= describe("logits", logits)
    well_scaled &= describe("logits (t_in)", logits_transform)
    print(f"  logits argmax {logits.argmax().item()}, transform_input argmax {logits_transform.argmax().item()}")
    print(f"  max |logits float32 - float64| = {rounding:.3g}")
    print(f"  transform_input: {transform_note}")

    tensors = {
        "input_head": x.reshape(-1)[:INPUT_HEAD].clone(),
        "logits": logits.contiguous(),
        "logits_transform_input": logits_transform.contiguous(),
    }
    for layer in ACTIVATION_LAYERS:
        act = activations[layer]
        tensors[f"act.{layer}"] = sample(act, ACTIVATION_SAMPLES)
        tensors[f"act_shape.{layer}"] = torch.tensor(list(act.shape), dtype=torch.int64)
        tensors[f"act_absmax.{layer}"] = absmax(act)

    metadata = {
        **versions(),
        "model": "torchvision.models.googlenet(weights=None, aux_logits=False, "
        "transform_input=False, init_weights=False).eval()",
        "formula": FORMULA_SUMMARY,
        "input": "name 'input', shape [1,3,224,224], 1.0*u",
        "activation_samples_k": str(ACTIVATION_SAMPLES),
        "activation_layers": ",".join(ACTIVATION_LAYERS),
        "activation_note": "forward-hook output of each module; conv1 and conv3 are "
        "BasicConv2d, so their output is after batch norm and ReLU",
        "logits_transform_input": "same weights and input with model.transform_input = True",
        "transform_input_rounding": transform_note,
        "logits_float32_vs_float64_max_abs_diff": f"{rounding:.6g}",
        "torch_threads": str(THREADS),
    }
    return {"tensors": tensors, "metadata": metadata}, well_scaled


# ---------------------------------------------------------------------------
# Train-mode Inception 3a


def make_train_fixture() -> tuple[dict, bool]:
    block = Inception(192, 64, 96, 128, 16, 32, 32).train()
    fill_state_dict(block, prefix=TRAIN_PREFIX)

    x = input_values("input3a", TRAIN_INPUT_SHAPE).requires_grad_(True)
    y = block(x)
    grad_output = input_values("grad_output3a", tuple(y.shape))
    loss = (y * grad_output).sum()
    loss.backward()

    print("train-mode Inception 3a:")
    well_scaled = describe("output", y)
    well_scaled &= describe("grad_input", x.grad)

    tensors = {
        "output": sample(y, OUTPUT_SAMPLES),
        "output_absmax": absmax(y),
        "grad_input": sample(x.grad, GRAD_INPUT_SAMPLES),
        "grad_input_absmax": absmax(x.grad),
    }
    for key, param in block.named_parameters():
        name = TRAIN_PREFIX + key
        tensors[f"grad.{name}"] = sample(param.grad, min(PARAM_GRAD_SAMPLES, param.numel()))
        tensors[f"grad_absmax.{name}"] = absmax(param.grad)
    for key, buffer in block.state_dict().items():
        if key.endswith("running_mean") or key.endswith("running_var"):
            name = TRAIN_PREFIX + key
            tensors[f"running.{name}"] = sample(buffer, min(RUNNING_SAMPLES, buffer.numel()))

    metadata = {
        **versions(),
        "model": "torchvision.models.googlenet.Inception(192, 64, 96, 128, 16, 32, 32).train(); "
        "branch3 uses a 3x3 conv (padding 1), as torchvision's GoogLeNet does",
        "formula": FORMULA_SUMMARY,
        "key_prefix": f"formula names and fixture keys carry the prefix {TRAIN_PREFIX!r}, "
        "e.g. grad.inception3a.branch2.1.conv.weight",
        "input": f"name 'input3a', shape {list(TRAIN_INPUT_SHAPE)}, 1.0*u",
        "loss": "sum(output * g), g = 1.0*u named 'grad_output3a' with the output's shape [2,256,7,7]",
        "output_samples_k": str(OUTPUT_SAMPLES),
        "grad_input_samples_k": str(GRAD_INPUT_SAMPLES),
        "param_grad_samples_k": f"min({PARAM_GRAD_SAMPLES}, numel)",
        "running_samples_k": f"min({RUNNING_SAMPLES}, numel)",
        "running_stats": f"after one train-mode forward from the formula values; momentum {BN_MOMENTUM}, "
        "running_var updated with the unbiased batch variance (n = 2*7*7 = 98), "
        "normalisation uses the biased variance and eps 0.001",
        "torch_threads": str(THREADS),
    }
    return {"tensors": tensors, "metadata": metadata}, well_scaled


# ---------------------------------------------------------------------------
# Key lists


def parameter_total(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def write_key_lists(fixture_dir: str) -> dict:
    """Write the state_dict key lists and return the parameter totals."""
    models = {
        True: googlenet(weights=None, aux_logits=True, init_weights=False),
        False: googlenet(weights=None, aux_logits=False, init_weights=False),
    }
    totals = {aux: parameter_total(model) for aux, model in models.items()}

    header = [
        f"# torchvision {torchvision.__version__} googlenet(weights=None, aux_logits=..., init_weights=False) state_dict",
        f"# parameters (sum of numel over model.parameters()): aux_logits=True {totals[True]}, "
        f"aux_logits=False {totals[False]}",
        "# columns: key<TAB>shape, comma-separated (empty for a 0-D tensor)<TAB>dtype",
    ]
    for aux, filename in [(True, KEYS_FILE), (False, KEYS_NOAUX_FILE)]:
        lines = [header[0].replace("aux_logits=...", f"aux_logits={aux}"), *header[1:]]
        for key, tensor in models[aux].state_dict().items():
            dims = ",".join(str(d) for d in tensor.shape)
            dtype = str(tensor.dtype).removeprefix("torch.")
            lines.append(f"{key}\t{dims}\t{dtype}")
        with open(os.path.join(fixture_dir, filename), "w", encoding="utf-8") as file:
            file.write("\n".join(lines) + "\n")
        print(f"{filename}: {len(lines) - len(header)} keys")

    return totals


# ---------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selftest", action="store_true", help="check the formula and print known values, write nothing")
    parser.add_argument("--out-dir", default=FIXTURE_DIR, help="fixture folder (default: tests/fixtures)")
    args = parser.parse_args()

    print_selftest()
    if args.selftest:
        return 0

    torch.set_num_threads(THREADS)
    os.makedirs(args.out_dir, exist_ok=True)

    eval_fixture, eval_ok = make_eval_fixture()
    train_fixture, train_ok = make_train_fixture()
    save_file(eval_fixture["tensors"], os.path.join(args.out_dir, EVAL_FILE), metadata=eval_fixture["metadata"])
    save_file(train_fixture["tensors"], os.path.join(args.out_dir, TRAIN_FILE), metadata=train_fixture["metadata"])

    totals = write_key_lists(args.out_dir)
    print(f"parameters: aux_logits=True {totals[True]:,}, aux_logits=False {totals[False]:,}")
    expected = {True: 13_004_888, False: 6_624_904}
    for aux, total in totals.items():
        if total != expected[aux]:
            print(f"WARNING: aux_logits={aux} has {total} parameters, expected {expected[aux]}")

    for filename in [EVAL_FILE, TRAIN_FILE, KEYS_FILE, KEYS_NOAUX_FILE]:
        size = os.path.getsize(os.path.join(args.out_dir, filename))
        print(f"{filename}: {size:,} bytes")

    if not (eval_ok and train_ok):
        print("WARNING: some activations are badly scaled (std below "
              f"{STD_FLOOR} or max |value| above {ABSMAX_LIMIT}); see the table above")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
