"""How close projection gets, against its steps: the quality reached and the time it takes.

    python benchmarks/projection.py RUN_OR_GENERATOR DATASET_DIR [--paintings 4] [--steps 0 50 100 200 300]

Projects two kinds of target into the generator, each at every number of steps (a run of its
own each time: the learning rate's schedule spans the steps given):
- samples the generator made itself (seeds 1000, 1001, ...): a latent reproducing them exists, so
  the distance shows how much of the way the search goes;
- paintings from DATASET_DIR (take one the model was not trained on): the honest case, where
  the distance left is what the model cannot paint.
For each, the mean pixel and perceptual distance (project.py) and seconds per projection; with
`--perceptual-size 64 128`, also searched with the feature network's input halved, four times
cheaper per step (the distances are always reported at the studio's size). One JSON line last.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from studio import project as projection
from studio.data import load_images
from studio.explore import open_model, render_images
from studio.latent import Recipe
from studio.render import to_pil_images


def targets(model, dataset: Path, count: int) -> dict[str, list]:
    own = render_images(model, [Recipe(seed=1000 + i) for i in range(count)])
    paintings = load_images(dataset, model.config.resolution)
    picked = paintings[torch.linspace(0, len(paintings) - 1, count).long()]
    return {"own samples": own, "paintings": to_pil_images(picked.float() / 127.5 - 1)}


def measure(model, images: list, steps: int, size: int) -> dict:
    start = time.perf_counter()
    found = [projection.project(model.generator, model.config.z_dim, projection.painting_tensor(image), steps,
                                perceptual_size=size) for image in images]
    seconds = (time.perf_counter() - start) / len(images)
    mean = lambda values: sum(values) / len(values)   # noqa: E731
    return {"steps": steps, "pixel": mean([p.distance.pixel for p in found]),
            "perceptual": mean([p.distance.perceptual for p in found]),
            "start_pixel": mean([p.start.pixel for p in found]),
            "start_perceptual": mean([p.start.perceptual for p in found]), "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, metavar="RUN_OR_GENERATOR")
    parser.add_argument("dataset", type=Path, metavar="DATASET_DIR")
    parser.add_argument("--paintings", type=int, default=4, help="targets of each kind (default 4)")
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 50, 100, 200, 300])
    parser.add_argument("--perceptual-size", type=int, nargs="+", default=[projection.PERCEPTUAL_SIZE],
                        help="px the feature network sees (default: the studio's)")
    args = parser.parse_args()

    model = open_model(args.source)
    kinds = targets(model, args.dataset, args.paintings)
    warm_up = projection.painting_tensor(kinds["paintings"][0])
    projection.project(model.generator, model.config.z_dim, warm_up, 2)      # loads the feature network
    results = []
    print(f"{'size':>5} {'kind':<12} {'steps':>5} {'pixel':>8} {'perceptual':>10} {'s each':>7}")
    for size in args.perceptual_size:
        for kind, images in kinds.items():
            for steps in args.steps:
                row = {"perceptual_size": size, "kind": kind, **measure(model, images, steps, size)}
                results.append(row)
                print(f"{size:>5} {kind:<12} {steps:>5} {row['pixel']:>8.4f} {row['perceptual']:>10.4f} "
                      f"{row['seconds']:>7.1f}", flush=True)
    print(json.dumps({"threads": torch.get_num_threads(), "results": results}))


if __name__ == "__main__":
    main()
