"""Time to quality: KID against training time for the studio's recipe and two baselines.

    python benchmarks/quality.py DATASET_DIR --minutes M [--res 64] [--points 4] [--n 500] [--out DIR]
    python benchmarks/quality.py DATASET_DIR --minutes 5 --recipes studio --try b16 batch_size=16 --try ...

Each recipe trains on the same dataset for the same M minutes of training time (the clock stops
while samples are measured), one after another in this process, each in the numerics the "auto"
probe picks for it. At `points` evenly spaced times the KID and FID of n samples (seeds 0..n-1,
rendered by G_ema) are measured against the dataset at the training resolution.

- studio:            the defaults (FastGAN, hinge, DiffAugment with adaptive p, lazy R1, G_ema)
- studio-no-augment: the same with augmentation and flips off
- dcgan:             the textbook recipe: DCGAN networks with BatchNorm, BCE, Adam 2e-4 with
                     betas (0.5, 0.999), no augmentation, no R1, no averaging of G; the same
                     batch size as the studio, so both take steps of the same size

`--try NAME KEY=VALUE ...` adds a variant of the defaults (values are JSON: 8, 3e-4, false,
[], "bce"), which is how the defaults were tuned.

Prints a Markdown table; writes a contact sheet per recipe (32 samples) into --out; the last
line printed is JSON with every measurement.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from studio.config import TrainConfig
from studio.data import load_images
from studio.latent import seeds_to_z
from studio.metrics import dataset_features, fid, generated_images, inception_features, kid, load_inception
from studio.render import grid_image, save_png
from studio.trainer import Trainer

RECIPES = {
    "studio": {},
    "studio-no-augment": dict(augment=(), flip=False, adaptive_augment=False, augment_p_init=0.0),
    # A half-life of one image makes G_ema a copy of G: the baseline samples its raw generator.
    "dcgan": dict(architecture="dcgan", width=64, loss="bce", adam_betas=(0.5, 0.999), augment=(), flip=False,
                  adaptive_augment=False, r1_gamma=0.0, ema_half_life_images=1, ema_rampup=0.0),
}


def measure(trainer: Trainer, network, real_features, n: int) -> dict:
    G = trainer.G_ema
    fake = inception_features(generated_images(G, trainer.config.z_dim, n), network)
    kid_mean, kid_std = kid(real_features, fake)
    return {"step": trainer.step_count, "images_seen": trainer.images_seen, "kid": kid_mean, "kid_std": kid_std,
            "fid": fid(real_features, fake), "augment_p": trainer.ada.p}


def train_recipe(name: str, config: TrainConfig, images, network, real_features, minutes: float,
                 points: int, n: int) -> tuple[list[dict], Trainer]:
    trainer = Trainer(config, images)
    print(f"\n{name}: {config.architecture}, {trainer.numerics.describe()}", flush=True)
    checkpoints = [minutes * 60 * (i + 1) / points for i in range(points)]
    trained, rows = 0.0, []
    for target in checkpoints:
        signs = []
        while trained < target:
            stats = trainer.step()
            trained += stats.seconds
            signs.append(stats.real_sign)
        # E[sign(D(real))] since the last point: near 1 means D has memorised the reals.
        row = {"minutes": round(trained / 60, 2), **measure(trainer, network, real_features, n),
               "real_sign": sum(signs) / len(signs) if signs else math.nan}
        rows.append(row)
        print(f"  {row['minutes']:6.2f} min  step {row['step']:6d}  KID {row['kid'] * 1000:7.2f} "
              f"± {row['kid_std'] * 1000:5.2f} (x10^-3)  FID {row['fid']:6.1f}  augment p {row['augment_p']:.2f}  "
              f"D sure of reals {row['real_sign']:+.2f}", flush=True)
    return rows, trainer


def parse_variant(words: list[str]) -> tuple[str, dict]:
    """["b16", "batch_size=16", "augment=[]"] -> ("b16", {"batch_size": 16, "augment": ()})."""
    name, *settings = words
    changes = {}
    for setting in settings:
        key, _, text = setting.partition("=")
        if key not in TrainConfig.__dataclass_fields__:
            raise SystemExit(f"error: --try {name}: {key!r} is not a TrainConfig field")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        changes[key] = tuple(value) if isinstance(value, list) else value
    return name, changes


def markdown_table(results: dict[str, list[dict]]) -> str:
    names = list(results)
    lines = ["| training time | " + " | ".join(f"{n}: KID x10^3 (FID)" for n in names) + " |",
             "| --- |" + " --- |" * len(names)]
    for i, row in enumerate(results[names[0]]):
        cells = [f"{results[n][i]['kid'] * 1000:.1f} ± {results[n][i]['kid_std'] * 1000:.1f} ({results[n][i]['fid']:.0f})"
                 for n in names]
        lines.append(f"| {row['minutes']:.1f} min | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--minutes", type=float, required=True, help="training time per recipe")
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--points", type=int, default=4, help="measurements per recipe")
    parser.add_argument("--n", type=int, default=500, help="generated images per measurement")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"), help="folder for contact sheets")
    parser.add_argument("--recipes", nargs="*", choices=list(RECIPES), default=list(RECIPES))
    parser.add_argument("--try", dest="variants", nargs="+", action="append", default=[],
                        metavar="NAME KEY=VALUE", help="also train a variant of the defaults")
    args = parser.parse_args()
    recipes = {name: RECIPES[name] for name in args.recipes} | dict(map(parse_variant, args.variants))

    network = load_inception()
    images = load_images(args.dataset, args.res)
    real_features = dataset_features(args.dataset, args.res, network)
    print(f"{args.dataset}: {len(images)} images at {args.res} px; {args.minutes} min per recipe, "
          f"KID/FID of {args.n} samples at {args.points} points")
    results = {}
    for name, changes in recipes.items():
        config = TrainConfig(**{"resolution": args.res, **changes})
        results[name], trainer = train_recipe(name, config, images, network, real_features,
                                              args.minutes, args.points, args.n)
        sheet = grid_image(trainer.sample(seeds_to_z(list(range(32)), config.z_dim)), columns=8)
        save_png(sheet, args.out / f"{args.dataset.name}-{args.res}px-{name}.png")
    print()
    print(markdown_table(results))
    best = min(results, key=lambda n: results[n][-1]["kid"] if math.isfinite(results[n][-1]["kid"]) else math.inf)
    print(f"\nlowest final KID: {best}")
    print(json.dumps({"dataset": str(args.dataset), "images": len(images), "resolution": args.res,
                      "minutes": args.minutes, "n": args.n, "results": results}))


if __name__ == "__main__":
    main()
