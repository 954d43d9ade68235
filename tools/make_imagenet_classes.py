#!/usr/bin/env python3
"""Write data/imagenet_classes.txt: the 1000 ImageNet-1k class names in index order.

    python3 tools/make_imagenet_classes.py
    python3 tools/make_imagenet_classes.py --out /tmp/imagenet_classes.txt

The names are torchvision's torchvision.models._meta._IMAGENET_CATEGORIES,
the list its ImageNet weights report as meta["categories"], so index i of
the file is output i of torchvision's classifiers. The first line of the
file is a "#" comment naming that source; every other line is one name.
Needs torchvision installed and no network access.
"""

import argparse
import os
import sys

import torchvision
from torchvision.models._meta import _IMAGENET_CATEGORIES


def main() -> int:
    parser = argparse.ArgumentParser(description="Write the ImageNet-1k class names, one per line.")
    parser.add_argument(
        "--out",
        default=os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "data", "imagenet_classes.txt")),
        help="output file (default: data/imagenet_classes.txt in the repository)",
    )
    args = parser.parse_args()

    names = list(_IMAGENET_CATEGORIES)
    if len(names) != 1000:
        raise RuntimeError(f"expected 1000 ImageNet classes, torchvision lists {len(names)}")
    for index, name in enumerate(names):
        # One name a line, and the reader treats a leading "#" as a comment.
        if not name or "\n" in name or name.startswith("#") or name != name.strip():
            raise RuntimeError(f"class {index} has a name that does not fit one line: {name!r}")

    version = torchvision.__version__.split("+")[0]
    header = (
        f"# ImageNet-1k class names in index order, from torchvision {version} "
        "torchvision.models._meta._IMAGENET_CATEGORIES (written by tools/make_imagenet_classes.py)"
    )
    with open(args.out, "w", encoding="utf-8", newline="\n") as out:
        out.write(header + "\n")
        for name in names:
            out.write(name + "\n")
    print(f"wrote {args.out}: {len(names)} class names")
    return 0


if __name__ == "__main__":
    sys.exit(main())
