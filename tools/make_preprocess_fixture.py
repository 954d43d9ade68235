#!/usr/bin/env python3
"""Write tests/fixtures/preprocess_photos.safetensors: torchvision's preprocessing of the sample photos.

    python3 tools/make_preprocess_fixture.py
    python3 tools/make_preprocess_fixture.py --stride 1 --out /tmp/preprocess_full.safetensors

For each photo in data/photos/ the script applies torchvision's ImageNet eval
transform to Image.open(path).convert("RGB"): Resize(256) (PIL bilinear,
antialiased), CenterCrop(224), ToTensor() and Normalize with the ImageNet
mean and std. The result is a float32 [3, 224, 224] tensor, flattened
row-major. The file stores every STRIDE-th value of it, starting at index 0,
under the photo's file name (for example "chelsea.jpg"). The metadata records
the stride and the versions used. tests/classify_preprocess.rs compares
incept's preprocessing of the same photos with these values.

The default stride of 73 keeps 2,063 of the 150,528 values per photo, so the
fixture stays small. --stride 1 keeps them all, for a full comparison.

Written with torch 2.5.1, torchvision 0.20.1 and Pillow 13.0. Downloads
nothing; CI never runs this script.
"""

import argparse
import os
import sys

import PIL
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
PHOTOS = ("chelsea.jpg", "coffee.jpg", "astronaut.png")
EVAL_TRANSFORM = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])


def main() -> int:
    parser = argparse.ArgumentParser(description="Sample torchvision's preprocessing of data/photos.")
    parser.add_argument(
        "--out", default=os.path.join(REPO, "tests", "fixtures", "preprocess_photos.safetensors"),
        help="output file (default: tests/fixtures/preprocess_photos.safetensors in the repository)",
    )
    parser.add_argument("--stride", type=int, default=73, help="keep every STRIDE-th value (default: 73)")
    args = parser.parse_args()
    if args.stride < 1:
        parser.error("--stride must be at least 1")

    tensors = {}
    for name in PHOTOS:
        image = Image.open(os.path.join(REPO, "data", "photos", name)).convert("RGB")
        values = EVAL_TRANSFORM(image).flatten()
        tensors[name] = values[:: args.stride].contiguous()

    metadata = {
        "stride": str(args.stride),
        "transform": "Resize(256), CenterCrop(224), ToTensor(), "
                     "Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]) on PIL RGB images",
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "pillow": PIL.__version__,
    }
    save_file(tensors, args.out, metadata=metadata)
    counts = ", ".join(f"{name} {tensor.numel()}" for name, tensor in tensors.items())
    print(f"wrote {args.out}: stride {args.stride}, values per photo: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
