"""Time to quality: KID against training time for the discriminators' recipes, in one run.

    python benchmarks/quality.py DATASET_DIR --minutes M [--res 64] [--points 4] [--n 300] [--out DIR]
    python benchmarks/quality.py DATASET_DIR --minutes 20 --recipes projected:2 fastgan:2 dcgan
    python benchmarks/quality.py DATASET_DIR --minutes 5 --recipes --try p96 discriminator=projected projection_size=96
    python benchmarks/quality.py DATASET_DIR --minutes 10 --recipes fastgan --from checkpoints/demo

Every recipe trains on the same dataset for the same M minutes of training time (the clock
stops while samples are measured), each in the numerics the "auto" probe picks for it. The
recipes take turns, `--slice` seconds of training each, instead of running one after another:
whatever else the machine does during the run then slows them all alike, so their comparison
stays fair even when their absolute speed does not. At `points` evenly spaced times the KID and
FID of n samples (seeds 0..n-1, rendered by G_ema) are measured against the dataset.

- projected:          the projected discriminator's recipe (EfficientNet-Lite0 features, fixed random
                      mixing, patch heads; hinge; DiffAugment on every image; no R1)
- fastgan:            the FastGAN discriminator's recipe (reconstruction decoders, hinge, lazy R1,
                      DiffAugment under ADA's adaptive p)
- fastgan-no-augment: the same without augmentation or flips
- dcgan:              the textbook recipe: DCGAN networks with BatchNorm, BCE, Adam 2e-4 with betas
                      (0.5, 0.999), no augmentation, no R1, no averaging of G; the same batch size

`NAME:K` trains K seeds of a recipe (seeds 0..K-1), so that a difference can be told from one
run's noise. `--try NAME KEY=VALUE ...` adds a variant (values are JSON: 8, 3e-4, false, [],
"bce"), on top of the recipe of the discriminator it names (the default one otherwise). `--from
MODEL` adds a run fine-tuned from that model (finetune.py: the default recipe in the model's shape),
to set against the same recipe trained from scratch.

Prints a Markdown table; writes, into --out, a contact sheet per run (32 samples) and each run's
folder (runs/NAME: checkpoint, generator, run.json), which the studio can open; the last line
printed is JSON with every measurement.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

from studio.config import TrainConfig
from studio.finetune import StartingPoint, starting_point
from studio.latent import seeds_to_z
from studio.metrics import dataset_features, fid, generated_images, inception_features, kid, load_inception
from studio.render import grid_image, save_png
from studio.run import TrainingRun

RECIPES = {
    "projected": dict(discriminator="projected"),
    "fastgan": dict(discriminator="fastgan"),
    "fastgan-no-augment": dict(discriminator="fastgan", augment=(), flip=False, adaptive_augment=False,
                               augment_p_init=0.0),
    # A half-life of one image makes G_ema a copy of G: the baseline samples its raw generator.
    "dcgan": dict(architecture="dcgan", discriminator="dcgan", width=64, loss="bce", adam_betas=(0.5, 0.999),
                  augment=(), flip=False, adaptive_augment=False, augment_p_init=0.0, r1_gamma=0.0,
                  ema_half_life_images=1, ema_rampup=0.0),
}


class Contender:
    """One recipe and seed, trained in turns with the others."""

    def __init__(self, name: str, config: TrainConfig, dataset: Path, run_dir: Path,
                 start_from: StartingPoint | None = None):
        shutil.rmtree(run_dir, ignore_errors=True)
        self.name = name
        self.run = TrainingRun.start(dataset, run_dir, config, start_from)
        self.trainer = self.run.trainer
        self.trained = 0.0      # seconds spent in steps
        self.signs: list[float] = []
        self.rows: list[dict] = []
        print(f"{name}: {config.architecture} G, {config.discriminator} D, {self.trainer.numerics.describe()}",
              flush=True)

    def train_until(self, seconds: float) -> None:
        while self.trained < seconds:
            stats = self.trainer.step()
            self.trained += stats.seconds
            self.signs.append(stats.real_sign)

    def measure(self, network, real_features, n: int) -> dict:
        trainer = self.trainer
        fake = inception_features(generated_images(trainer.G_ema, trainer.config.z_dim, n), network)
        kid_mean, kid_std = kid(real_features, fake)
        # E[sign(D(real))] since the last point: near 1 means D has memorised the reals.
        row = {"minutes": round(self.trained / 60, 2), "step": trainer.step_count,
               "images_seen": trainer.images_seen, "kid": kid_mean, "kid_std": kid_std,
               "fid": fid(real_features, fake), "augment_p": trainer.ada.p,
               "real_sign": sum(self.signs) / len(self.signs) if self.signs else math.nan}
        self.signs.clear()
        self.rows.append(row)
        print(f"  {self.name:>20}  {row['minutes']:6.2f} min  step {row['step']:6d}  KID {kid_mean * 1000:7.2f} "
              f"± {kid_std * 1000:5.2f} (x10^-3)  FID {row['fid']:6.1f}  augment p {row['augment_p']:.2f}  "
              f"D sure of reals {row['real_sign']:+.2f}", flush=True)
        return row


def parse_recipe(text: str) -> tuple[str, int]:
    """"projected:2" -> ("projected", 2)."""
    name, _, seeds = text.partition(":")
    if name not in RECIPES:
        raise SystemExit(f"error: unknown recipe {name!r}; choose from {', '.join(RECIPES)}")
    return name, int(seeds or 1)


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
    lines.append("| steps | " + " | ".join(f"{results[n][-1]['step']:,}" for n in names) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--minutes", type=float, required=True, help="training time per recipe")
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--points", type=int, default=4, help="measurements per recipe")
    parser.add_argument("--n", type=int, default=300, help="generated images per measurement")
    parser.add_argument("--slice", type=float, default=10.0, help="seconds of training per turn")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out"), help="folder for sheets and runs")
    parser.add_argument("--recipes", nargs="*", default=["projected", "fastgan", "dcgan"], metavar="NAME[:SEEDS]")
    parser.add_argument("--try", dest="variants", nargs="+", action="append", default=[],
                        metavar="NAME KEY=VALUE", help="also train a variant")
    parser.add_argument("--from", dest="start_from", type=Path, metavar="MODEL",
                        help="also fine-tune from this run or generator file")
    args = parser.parse_args()

    configs = {}
    for name, seeds in map(parse_recipe, args.recipes):
        for seed in range(seeds):
            configs[name if seeds == 1 else f"{name}-seed{seed}"] = TrainConfig(
                **{"resolution": args.res, "seed": seed, **RECIPES[name]})
    for name, changes in map(parse_variant, args.variants):
        configs[name] = TrainConfig(**{"resolution": args.res, **changes})
    sources = {}
    if args.start_from:
        name = f"from-{args.start_from.stem if args.start_from.is_file() else args.start_from.name}"
        sources[name] = starting_point(args.start_from)
        configs[name] = sources[name].config_for()

    network = load_inception()
    real_features = dataset_features(args.dataset, args.res, network)
    print(f"{args.dataset}: {len(real_features)} images at {args.res} px; {args.minutes} min per run, "
          f"KID/FID of {args.n} samples at {args.points} points, in turns of {args.slice} s", flush=True)
    contenders = [Contender(name, config, args.dataset, args.out / "runs" / name, sources.get(name))
                  for name, config in configs.items()]
    for point in range(1, args.points + 1):
        target = args.minutes * 60 * point / args.points
        turn = 0.0
        while turn < target:
            turn = min(turn + args.slice, target)
            for contender in contenders:
                contender.train_until(turn)
        for contender in contenders:
            contender.measure(network, real_features, args.n)
    for contender in contenders:
        contender.run.save()
        sheet = grid_image(contender.trainer.sample(seeds_to_z(list(range(32)), contender.trainer.config.z_dim)),
                           columns=8)
        save_png(sheet, args.out / f"{args.dataset.name}-{args.res}px-{contender.name}.png")

    results = {c.name: c.rows for c in contenders}
    print()
    print(markdown_table(results))
    print(json.dumps({"dataset": str(args.dataset), "images": len(real_features), "resolution": args.res,
                      "minutes": args.minutes, "n": args.n, "results": results}))


if __name__ == "__main__":
    main()
