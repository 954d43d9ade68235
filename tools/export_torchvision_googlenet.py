#!/usr/bin/env python3
"""Export torchvision's ImageNet GoogLeNet weights to a safetensors file.

    python3 tools/export_torchvision_googlenet.py --out googlenet_torchvision.safetensors
    python3 tools/export_torchvision_googlenet.py --no-aux
    python3 tools/export_torchvision_googlenet.py --random-init --out /tmp/test.safetensors

The file contains torchvision's state_dict unchanged: the same key names, float32
weights and the int64 num_batches_tracked buffers, so it loads into
torchvision's GoogLeNet with load_state_dict(strict=True) and needs no
renaming. The safetensors metadata records, as strings:
    source           e.g. "torchvision 0.20.1 GoogLeNet_Weights.IMAGENET1K_V1"
    transform_input  "true" for the pretrained weights, whose forward pass maps
                     ImageNet-normalised input back to the (x - 0.5) / 0.5
                     scaling the original weights were trained with
    aux_logits       "true" when the aux1. and aux2. heads are included
plus the torch and torchvision versions.

The pretrained weights are downloaded by torchvision into the torch hub cache
(~/.cache/torch/hub/checkpoints) on first use, so that run needs internet
access. --random-init skips the download and exports an untrained model with
PyTorch's default initialisation, for testing the export offline.

NOTE: written with torch 2.5.1, torchvision 0.20.1 and safetensors 0.8.0 on a
machine without internet access. There only --random-init ran, plus the
pretrained code path with torchvision's download replaced by a local state
dict, so the real download has not been run by this script.
"""

import argparse
import os
import sys

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torchvision.models import GoogLeNet, GoogLeNet_Weights, googlenet

AUX_PREFIXES = ("aux1.", "aux2.")


class OutputError(Exception):
    """The output file cannot be written; the message names the path and the cause."""


def prepare_output(path: str) -> None:
    """Create the folder of the output file.

    Raises OutputError when the path is a directory or its folder cannot be
    created. Checked before the model is built, so a wrong --out fails
    before the pretrained weights are downloaded.
    """
    if os.path.isdir(path):
        example = os.path.join(path, "googlenet_torchvision.safetensors")
        raise OutputError(f"--out {path} is a directory; give the path of a file, such as {example}")
    out_dir = os.path.dirname(path)
    if not out_dir:
        return
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise OutputError(f"the folder {out_dir} of --out {path} is a file")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as error:
        raise OutputError(f"cannot create the folder {out_dir} for --out: {error.strerror}") from error


def build_model(random_init: bool, keep_aux: bool) -> tuple[GoogLeNet, str]:
    """Build the GoogLeNet to export and return it with a description of its weights."""
    version = torchvision.__version__.split("+")[0]
    if random_init:
        model = googlenet(weights=None, aux_logits=keep_aux, init_weights=False)
        return model, f"torchvision {version} googlenet(weights=None), PyTorch default initialisation, not trained"

    # torchvision 0.20.1 sets transform_input=True for these weights. It raises
    # ValueError for aux_logits=False together with weights, and when aux_logits
    # is not given it loads the full checkpoint and then drops aux1 and aux2.
    weights = GoogLeNet_Weights.IMAGENET1K_V1
    if keep_aux:
        model = googlenet(weights=weights, aux_logits=True)
    else:
        model = googlenet(weights=weights)
    return model, f"torchvision {version} GoogLeNet_Weights.IMAGENET1K_V1"


def export_state_dict(model: GoogLeNet, keep_aux: bool) -> dict[str, torch.Tensor]:
    """Return the model's state_dict as contiguous tensors, checking the aux keys.

    Raises RuntimeError when aux1./aux2. keys are present without keep_aux or
    missing with it.
    """
    state = model.state_dict()
    aux_keys = [key for key in state if key.startswith(AUX_PREFIXES)]
    if keep_aux and not aux_keys:
        raise RuntimeError("the model has no aux1./aux2. keys although the auxiliary heads were requested")
    if not keep_aux and aux_keys:
        raise RuntimeError(f"the model has {len(aux_keys)} aux1./aux2. keys although --no-aux was given")

    return {key: tensor.detach().contiguous() for key, tensor in state.items()}


def build_metadata(model: GoogLeNet, source: str, keep_aux: bool, random_init: bool) -> dict[str, str]:
    metadata = {
        "format": "pt",
        "source": source,
        "transform_input": str(bool(model.transform_input)).lower(),
        "aux_logits": str(keep_aux).lower(),
        "num_classes": str(model.fc.out_features),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    if keep_aux and not random_init:
        metadata["aux_note"] = (
            "aux1 and aux2 weights come from the checkpoint, but torchvision warns that "
            "the auxiliary heads of the pretrained GoogLeNet are not pretrained"
        )
    return metadata


def verify_file(path: str, tensors: dict[str, torch.Tensor], keep_aux: bool, transform_input: bool) -> None:
    """Reload the file and load it strictly into a fresh torchvision GoogLeNet.

    Raises RuntimeError when a key, dtype or value differs from what was saved.
    """
    loaded = load_file(path)
    if loaded.keys() != tensors.keys():
        raise RuntimeError(f"{path}: reloaded keys differ from the saved state_dict")
    for key, tensor in tensors.items():
        if loaded[key].dtype != tensor.dtype or not torch.equal(loaded[key], tensor):
            raise RuntimeError(f"{path}: tensor {key} changed on reload")

    fresh = GoogLeNet(aux_logits=keep_aux, transform_input=transform_input, init_weights=False)
    fresh.load_state_dict(loaded, strict=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="Export torchvision's ImageNet GoogLeNet weights to safetensors.")
    parser.add_argument(
        "--out", default="googlenet_torchvision.safetensors",
        help="output file (default: googlenet_torchvision.safetensors in the current folder)",
    )
    parser.add_argument(
        "--no-aux", action="store_true",
        help="leave out the aux1. and aux2. heads, which torchvision does not pretrain",
    )
    parser.add_argument(
        "--random-init", action="store_true",
        help="export an untrained model instead of downloading the pretrained weights (for testing)",
    )
    args = parser.parse_args()
    keep_aux = not args.no_aux
    program = os.path.basename(sys.argv[0])
    try:
        prepare_output(args.out)
    except OutputError as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 1

    model, source = build_model(args.random_init, keep_aux)
    tensors = export_state_dict(model, keep_aux)
    metadata = build_metadata(model, source, keep_aux, args.random_init)

    try:
        save_file(tensors, args.out, metadata=metadata)
    except (OSError, SafetensorError) as error:
        # safetensors reports I/O failures as SafetensorError, which names the OS error.
        print(f"{program}: error: cannot write {args.out}: {error}", file=sys.stderr)
        return 1
    verify_file(args.out, tensors, keep_aux, bool(model.transform_input))

    parameters = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: {len(tensors)} tensors, {parameters:,} parameters, "
          f"{os.path.getsize(args.out):,} bytes")
    for key, value in metadata.items():
        print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
