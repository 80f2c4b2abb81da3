"""How much the projected discriminator's frozen features notice colour, against pixels.

    python benchmarks/colour_sensitivity.py DATASET_DIR [--res 64] [--count 96] [--projection-size 128]

The projected discriminator judges images only through EfficientNet-Lite0's feature maps. If
those maps change little when a painting's colours change, its heads cannot tell G that its
colours are wrong. For `count` paintings of the set, at the projection size the recipe uses, each
change below is measured as the mean L2 distance between a painting's maps and its changed
copy's, divided by the mean distance between a painting's maps and another painting's; in pixels
first, then at each of the four scales the heads judge. A hue rotation that moves a painting as
far in pixels as it moves in features shows that the features see colour as pixels do; a much
smaller number in features means they see it less. The last line printed is JSON.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from studio.backbone import load_backbone
from studio.data import load_images

SCALES = ("pixels", "1/4", "1/8", "1/16", "1/32")
# RGB to YIQ (NTSC): a hue rotation is a rotation of the I-Q plane, which keeps the luma Y.
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, metavar="DATASET_DIR")
    parser.add_argument("--res", type=int, default=64, help="training resolution (default 64)")
    parser.add_argument("--count", type=int, default=96, help="paintings measured (default 96)")
    parser.add_argument("--projection-size", type=int, default=128,
                        help="px the feature network sees (default 128, the recipe's at 64 px)")
    args = parser.parse_args()

    images = load_images(args.dataset, args.res)[:args.count].float() / 127.5 - 1
    network = load_backbone().eval()

    def maps(x: torch.Tensor) -> list[torch.Tensor]:
        """The painting as the feature network sees it, then its four maps (as the recipe scales it)."""
        x = F.interpolate(x, size=args.projection_size, mode="bilinear", align_corners=False)
        with torch.no_grad():
            return [x, *network.features((x * 127.5 + 0.5) / 128)]

    changes = {"hue +60°": hue_rotated(images, 60), "hue +120°": hue_rotated(images, 120),
               "channels RGB to BRG": images[:, [2, 0, 1]], "greyscale": greyscale(images),
               "shifted 4 px": torch.roll(images, 4, dims=3)}
    own, others = maps(images), maps(images.roll(1, dims=0))     # each painting against its neighbour
    table = {name: [distance(a, b) / distance(a, o) for a, b, o in zip(own, maps(changed), others)]
             for name, changed in changes.items()}

    print(f"{len(images)} paintings of {args.dataset} at {args.projection_size} px: a change's distance over the "
          f"distance to another painting (1 = as different as another painting)\n")
    print("| change | " + " | ".join(SCALES) + " |")
    print("| --- " * (len(SCALES) + 1) + "|")
    for name, row in table.items():
        print(f"| {name} | " + " | ".join(f"{value:.2f}" for value in row) + " |")
    print(json.dumps({"dataset": str(args.dataset), "projection_size": args.projection_size, "scales": SCALES,
                      "relative_distance": table}))


def hue_rotated(images: torch.Tensor, degrees: float) -> torch.Tensor:
    angle = math.radians(degrees)
    rotation = torch.tensor([[1.0, 0.0, 0.0],
                             [0.0, math.cos(angle), -math.sin(angle)],
                             [0.0, math.sin(angle), math.cos(angle)]])
    matrix = torch.linalg.inv(_YIQ) @ rotation @ _YIQ
    return torch.einsum("ij,njhw->nihw", matrix, images).clamp(-1, 1)


def greyscale(images: torch.Tensor) -> torch.Tensor:
    luma = torch.einsum("j,njhw->nhw", _YIQ[0], images).unsqueeze(1)
    return luma.expand(-1, 3, -1, -1)


def distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over paintings of the L2 distance between their maps."""
    return (a - b).flatten(1).norm(dim=1).mean().item()


if __name__ == "__main__":
    main()
