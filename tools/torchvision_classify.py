#!/usr/bin/env python3
r"""Print torchvision's top-5 ImageNet classes for photos, to check the classify example.

    python3 tools/torchvision_classify.py --weights googlenet.safetensors data/photos/*.jpg data/photos/*.png
    cargo run --release --example classify -- data/photos/chelsea.jpg --weights googlenet.safetensors

WEIGHTS is a file written by tools/export_torchvision_googlenet.py (with or
without --random-init). The script builds torchvision's GoogLeNet with the
file's "transform_input" metadata and with aux heads if the file has them,
and loads the state dict strictly. Each photo goes through the standard
ImageNet eval transform on PIL: Resize(256), CenterCrop(224), ToTensor(),
Normalize with the ImageNet mean and std. It prints the same lines as the
example's "top-5 classes" block, so the two can be compared line by line.
Runs on CPU and downloads nothing.

Random weights from --random-init make a weak check on their own. PyTorch's
default initialisation shrinks the activations layer by layer (the standard
deviation fell from 0.25 after conv1 to 4e-6 after avgpool on chelsea.jpg),
and batch norm with the initial running statistics (mean 0, variance 1)
does not rescale them. So every photo gets nearly the same probabilities,
set by fc.bias. --calibrate-out FILE first replaces the
running statistics of every batch-norm layer with those of the given photos
(one train-mode pass over them as a batch), saves that state dict to FILE
with the input file's metadata, and classifies with it. The logits then
depend on the photo, and FILE can be passed to the example's --weights:

    python3 tools/export_torchvision_googlenet.py --random-init --no-aux --out /tmp/gn.safetensors
    python3 tools/torchvision_classify.py --weights /tmp/gn.safetensors --calibrate-out /tmp/gn_calibrated.safetensors \
        data/photos/chelsea.jpg data/photos/coffee.jpg data/photos/astronaut.png
    cargo run --release --example classify -- data/photos/chelsea.jpg --weights /tmp/gn_calibrated.safetensors

NOTE: such a calibrated random network is sensitive to small input changes.
The preprocessed inputs of incept and torchvision differ by up to 1 (PNG)
or 3 (JPEG) 8-bit levels, which moved its logits by up to 0.07 against a
logit standard deviation of 0.2 to 0.3 on the sample photos. Classes whose
probabilities lie within about 0.005 percentage points can then swap ranks
between the two outputs, while the same network run by torchvision on
incept's preprocessed tensor gave incept's top 5 exactly.
"""

import argparse
import sys

import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision import transforms
from torchvision.models import GoogLeNet
from torchvision.models._meta import _IMAGENET_CATEGORIES

EVAL_TRANSFORM = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])


def read_metadata(path: str) -> dict[str, str]:
    with safe_open(path, framework="pt") as handle:
        return handle.metadata() or {}


def load_model(path: str) -> GoogLeNet:
    """Build torchvision's GoogLeNet for the file and load its state dict in eval mode."""
    metadata = read_metadata(path)
    state = load_file(path)
    transform_input = metadata.get("transform_input", "false") == "true"
    aux_logits = any(key.startswith("aux1.") for key in state)
    num_classes = state["fc.weight"].shape[0]
    model = GoogLeNet(
        num_classes=num_classes, aux_logits=aux_logits, transform_input=transform_input, init_weights=False
    )
    model.load_state_dict(state, strict=True)
    return model.eval()


def calibrate_batch_norm(model: GoogLeNet, batch: torch.Tensor) -> None:
    """Set every batch-norm layer's running statistics to those of one train-mode pass over batch.

    With momentum None, PyTorch keeps a cumulative average, which after one
    pass is the batch mean and the unbiased batch variance.
    """
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(batch)
    model.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description="Print torchvision GoogLeNet's top-5 ImageNet classes for photos.")
    parser.add_argument("images", nargs="+", help="PNG or JPEG files")
    parser.add_argument("--weights", required=True, help="safetensors file from export_torchvision_googlenet.py")
    parser.add_argument("--top", type=int, default=5, help="number of classes to print (default: 5)")
    parser.add_argument(
        "--calibrate-out", metavar="FILE",
        help="set the batch-norm running statistics from the photos, save the weights to FILE and use them",
    )
    args = parser.parse_args()

    model = load_model(args.weights)
    if args.calibrate_out:
        batch = torch.stack([EVAL_TRANSFORM(Image.open(path).convert("RGB")) for path in args.images])
        calibrate_batch_norm(model, batch)
        metadata = dict(read_metadata(args.weights))
        metadata["source"] = metadata.get("source", "unknown") + (
            f"; batch-norm running statistics from {len(args.images)} photos by tools/torchvision_classify.py"
        )
        state = {key: tensor.contiguous() for key, tensor in model.state_dict().items()}
        save_file(state, args.calibrate_out, metadata=metadata)
        print(f"wrote {args.calibrate_out}: batch-norm statistics from {len(args.images)} photos")
    print(f"model: torchvision GoogLeNet, transform_input {str(model.transform_input).lower()}")
    for path in args.images:
        image = Image.open(path).convert("RGB")
        batch = EVAL_TRANSFORM(image).unsqueeze(0)
        with torch.no_grad():
            probabilities = torch.softmax(model(batch), dim=1)[0]
        values, indices = probabilities.topk(args.top)
        print(f"image: {path} ({image.width}x{image.height})")
        print(f"top-{args.top} classes:")
        for rank, (value, index) in enumerate(zip(values.tolist(), indices.tolist()), start=1):
            print(f"  {rank}. {100.0 * value:>7.3f}%  {index:>3}  {_IMAGENET_CATEGORIES[index]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
