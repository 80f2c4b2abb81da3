"""SeFa against GANSpace on a trained generator: which directions make clearer sliders?

    python benchmarks/directions.py RUN_OR_GENERATOR [--count 10] [--seeds 64] [--out directions.png]

For each method's strongest directions it measures, over a few seeds:
- change: the mean absolute pixel change (0-255 scale) of a step of 1σ along the direction;
  a slider that changes little is no use;
- overlap: how alike the changes of two different directions are (the mean |cosine| between
  their pixel-change images, over all pairs and seeds; 0 = unrelated changes, 1 = the same one
  twice); sliders that overlap are redundant;
- alignment: how close each SeFa direction is to the nearest GANSpace one (|cosine| in z).
Random unit directions give the baseline. It also writes preview strips of both methods (every
direction at -3, 0, +3σ around a few seeds) to look at, and prints one line of JSON last.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from studio.directions import Directions, ganspace, sefa
from studio.explore import open_model
from studio.latent import seeds_to_z
from studio.render import grid_image, render_latents, save_png

SHOWN_SEEDS = (0, 1, 2)


def measure(generator: torch.nn.Module, z: torch.Tensor, vectors: torch.Tensor) -> dict:
    base = render_latents(generator, z)
    changes = []
    for direction in vectors:
        moved = render_latents(generator, z + direction)
        changes.append((moved - base).flatten(1))               # (seeds, pixels), [-1, 1] scale
    change = torch.stack(changes)                               # (directions, seeds, pixels)
    per_direction = (change.abs().mean(-1).mean(-1) * 127.5).tolist()
    unit = torch.nn.functional.normalize(change, dim=-1)
    cosines = torch.einsum("isp,jsp->ijs", unit, unit).abs().mean(-1)
    off_diagonal = cosines[~torch.eye(len(vectors), dtype=torch.bool)]
    return {"change": per_direction, "mean_change": sum(per_direction) / len(per_direction),
            "overlap": float(off_diagonal.mean())}


def strips(generator: torch.nn.Module, z_dim: int, directions: Directions) -> torch.Tensor:
    """One row per direction: for each shown seed, -3, 0, +3σ."""
    z = seeds_to_z(list(SHOWN_SEEDS), z_dim)
    rows = []
    for direction in directions.vectors:
        for seed_z in z:
            rows.append(torch.stack([seed_z - 3 * direction, seed_z, seed_z + 3 * direction]))
    return render_latents(generator, torch.cat(rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, metavar="RUN_OR_GENERATOR")
    parser.add_argument("--count", type=int, default=10, help="directions per method (default 10)")
    parser.add_argument("--seeds", type=int, default=64, help="seeds measured (default 64)")
    parser.add_argument("--out", type=Path, default=Path("directions.png"), help="preview strips (PNG)")
    args = parser.parse_args()
    model = open_model(args.source)
    generator, z_dim = model.generator, model.config.z_dim
    z = seeds_to_z(list(range(1000, 1000 + args.seeds)), z_dim)     # not the seeds GANSpace drew

    found, seconds = {}, {}
    for name, method in (("sefa", sefa), ("ganspace", ganspace)):
        start = time.perf_counter()
        found[name] = method(generator, args.count)
        seconds[name] = time.perf_counter() - start
    random = torch.linalg.qr(torch.randn(z_dim, args.count, generator=torch.Generator().manual_seed(0)))[0].T
    results = {name: measure(generator, z, d.vectors) for name, d in found.items()}
    results["random"] = measure(generator, z, random)
    alignment = (found["sefa"].vectors @ found["ganspace"].vectors.T).abs().max(1).values.tolist()

    print(f"{model.label}: {model.config.resolution} px, z {z_dim}; {args.count} directions, {args.seeds} seeds")
    print("| directions | found in | mean change per 1σ (0-255) | strongest / weakest | overlap |")
    print("| --- | --- | --- | --- | --- |")
    for name, result in results.items():
        took = f"{seconds[name]:.2f} s" if name in seconds else "-"
        print(f"| {name} | {took} | {result['mean_change']:.2f} | {max(result['change']):.2f} / "
              f"{min(result['change']):.2f} | {result['overlap']:.3f} |")
    print("SeFa direction i vs the closest GANSpace direction, |cos| in z: "
          + " ".join(f"{a:.2f}" for a in alignment))

    sheets = [strips(generator, z_dim, found[name]) for name in ("sefa", "ganspace")]
    columns = 3 * len(SHOWN_SEEDS)
    both = torch.cat([torch.cat([sheet[i:i + columns] for sheet in sheets]) for i in range(0, len(sheets[0]), columns)])
    # Each row: SeFa's direction i (three seeds at -3, 0, +3), then GANSpace's direction i.
    save_png(grid_image(both, columns=2 * columns, padding=2), args.out)
    print(f"wrote {args.out}")
    print(json.dumps({"seconds": seconds, **{name: {k: v for k, v in r.items() if k != "change"}
                                            for name, r in results.items()}, "alignment": alignment}))


if __name__ == "__main__":
    main()
