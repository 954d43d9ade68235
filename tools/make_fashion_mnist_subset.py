#!/usr/bin/env python3
"""Cut the first N training and test samples of Fashion-MNIST into new IDX files.

The source directory must contain the four gzip-compressed IDX files of the full
data set (Debian's dataset-fashion-mnist package installs them under
/usr/share/datasets/fashion-mnist). The output files keep the original names, so
a program that loads the subset also loads the full set.

Output is gzip-compressed with mtime=0 and no stored file name, so the same
input and the same zlib version give byte-identical files.

Prints the per-class label counts of each subset.

Example:
    python3 tools/make_fashion_mnist_subset.py \\
        /usr/share/datasets/fashion-mnist data/fashion-mnist \\
        --train-count 10000 --test-count 2000
"""

import argparse
import gzip
import os
import struct
import sys

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
NUM_CLASSES = 10

SPLITS = (
    ("train", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    ("t10k", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
)


def read_idx(path, expected_magic):
    """Read an IDX file, gzip-compressed or raw, and return (dims, payload)."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)

    if len(raw) < 4:
        sys.exit(f"{path}: file is {len(raw)} bytes, too short for an IDX header")
    (magic,) = struct.unpack(">I", raw[:4])
    if magic != expected_magic:
        sys.exit(f"{path}: IDX magic is 0x{magic:08x}, expected 0x{expected_magic:08x}")

    ndim = magic & 0xFF
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        sys.exit(f"{path}: file is {len(raw)} bytes, header needs {header_len}")
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])

    payload = raw[header_len:]
    expected_len = 1
    for d in dims:
        expected_len *= d
    if len(payload) != expected_len:
        sys.exit(
            f"{path}: payload is {len(payload)} bytes, header dimensions {dims} "
            f"require {expected_len}"
        )
    return dims, payload


def write_idx_gz(path, magic, dims, payload):
    header = struct.pack(f">I{len(dims)}I", magic, *dims)
    data = gzip.compress(header + payload, compresslevel=9, mtime=0)
    with open(path, "wb") as f:
        f.write(data)


def cut_split(source_dir, output_dir, images_name, labels_name, count):
    """Write the first `count` images and labels and return the labels kept."""
    images_path = os.path.join(source_dir, images_name)
    labels_path = os.path.join(source_dir, labels_name)
    image_dims, pixels = read_idx(images_path, IMAGES_MAGIC)
    label_dims, labels = read_idx(labels_path, LABELS_MAGIC)

    available = image_dims[0]
    if label_dims[0] != available:
        sys.exit(
            f"{images_path} has {available} images but {labels_path} has "
            f"{label_dims[0]} labels"
        )
    if count > available:
        sys.exit(f"{images_path}: requested {count} samples, only {available} available")

    rows, cols = image_dims[1], image_dims[2]
    kept_pixels = pixels[: count * rows * cols]
    kept_labels = labels[:count]

    write_idx_gz(
        os.path.join(output_dir, images_name), IMAGES_MAGIC, (count, rows, cols), kept_pixels
    )
    write_idx_gz(os.path.join(output_dir, labels_name), LABELS_MAGIC, (count,), kept_labels)
    return kept_labels


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source_dir", help="directory containing the full Fashion-MNIST IDX files")
    parser.add_argument("output_dir", help="directory to write the subset to (created if missing)")
    parser.add_argument(
        "--train-count", type=int, default=10000, help="number of training samples to keep"
    )
    parser.add_argument("--test-count", type=int, default=2000, help="number of test samples to keep")
    args = parser.parse_args()

    if args.train_count <= 0 or args.test_count <= 0:
        parser.error("--train-count and --test-count must be positive")

    os.makedirs(args.output_dir, exist_ok=True)
    counts = {"train": args.train_count, "t10k": args.test_count}
    for split, images_name, labels_name in SPLITS:
        labels = cut_split(
            args.source_dir, args.output_dir, images_name, labels_name, counts[split]
        )
        per_class = [0] * NUM_CLASSES
        for label in labels:
            if label >= NUM_CLASSES:
                sys.exit(f"{split}: label {label} is out of range 0..{NUM_CLASSES - 1}")
            per_class[label] += 1
        print(f"{split}: {len(labels)} samples, per-class counts {per_class}")


if __name__ == "__main__":
    main()
