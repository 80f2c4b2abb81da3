"""Write the first N test images of Fashion-MNIST as PNG files: the second image set of the
quality benchmark, available offline from Debian (`apt-get install dataset-fashion-mnist`).

    python benchmarks/fashion_mnist.py OUT_DIR [--count 500]
    python -m studio ingest OUT_DIR --out datasets/fashion-500 --res 32

The images are 28 px greyscale photographs of clothes, shoes and bags (Xiao et al. 2017, MIT
licence), light objects on black; the studio upscales them to 32 px on ingest.
"""
from __future__ import annotations

import argparse
import gzip
import struct
from pathlib import Path

import numpy as np
from PIL import Image

DEBIAN_FILE = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
IDX_IMAGES = 0x00000803   # magic number of an IDX file of unsigned bytes in 3 dimensions


def read_idx_images(path: Path) -> np.ndarray:
    """(N, rows, cols) uint8 from a gzipped IDX file."""
    with gzip.open(path, "rb") as file:
        magic, count, rows, cols = struct.unpack(">IIII", file.read(16))
        if magic != IDX_IMAGES:
            raise ValueError(f"{path} is not an IDX image file")
        return np.frombuffer(file.read(count * rows * cols), dtype=np.uint8).reshape(count, rows, cols)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--source", type=Path, default=DEBIAN_FILE)
    args = parser.parse_args()
    images = read_idx_images(args.source)[:args.count]
    args.out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image, mode="L").save(args.out / f"fashion-{i:05d}.png")
    print(f"wrote {len(images)} images to {args.out}")


if __name__ == "__main__":
    main()
