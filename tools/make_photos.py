#!/usr/bin/env python3
"""Write the sample photos of data/photos/ from scikit-image's data directory.

    python3 tools/make_photos.py SKIMAGE_DATA_DIR
    python3 tools/make_photos.py "$(python3 -c 'import skimage.data, os; print(os.path.dirname(skimage.data.__file__))')"

SKIMAGE_DATA_DIR is the skimage/data folder of scikit-image 0.26 (installed,
or unpacked from its wheel), which contains chelsea.png, coffee.png and
astronaut.png. The script downloads nothing. It writes:
    chelsea.jpg    451x300, JPEG quality 85
    coffee.jpg     600x400, JPEG quality 85
    astronaut.png  300x300, downscaled from 512x512 with PIL's Lanczos filter,
                   so that the repository also has a PNG photo of modest size
Every image is converted to 8-bit RGB without the ICC profiles and text
chunks of the originals. JPEGs use Pillow's default 4:2:0 chroma
subsampling, as most cameras and web photos do.
"""

import argparse
import os
import sys

from PIL import Image

JPEG_QUALITY = 85
ASTRONAUT_SIDE = 300


def main() -> int:
    parser = argparse.ArgumentParser(description="Convert scikit-image sample photos for data/photos/.")
    parser.add_argument("skimage_data", help="scikit-image's skimage/data folder")
    parser.add_argument(
        "--out",
        default=os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "data", "photos")),
        help="output folder (default: data/photos in the repository)",
    )
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    def source(name: str) -> Image.Image:
        image = Image.open(os.path.join(args.skimage_data, name)).convert("RGB")
        # Pillow would otherwise copy the ICC profile and text chunks into the output.
        image.info = {}
        return image

    outputs = []
    for name in ("chelsea", "coffee"):
        path = os.path.join(args.out, f"{name}.jpg")
        source(f"{name}.png").save(path, "JPEG", quality=JPEG_QUALITY)
        outputs.append(path)

    astronaut = source("astronaut.png").resize((ASTRONAUT_SIDE, ASTRONAUT_SIDE), Image.LANCZOS)
    astronaut.info = {}
    path = os.path.join(args.out, "astronaut.png")
    astronaut.save(path, "PNG", optimize=True)
    outputs.append(path)

    for path in outputs:
        with Image.open(path) as image:
            print(f"wrote {path}: {image.size[0]}x{image.size[1]} {image.format}, {os.path.getsize(path):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
