"""The commands that make a model: `ingest` (paintings into a dataset folder), `train` (a run
from a dataset, on one process or under torchrun), `evaluate` (KID and FID of a generator against
a dataset) and `export` (a run's generator as one file, to share or to fine-tune from).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .checkpoint import load_generator, read_export
from .cli_common import CountProgress, StderrLine, positive
from .config import ARCHITECTURES, DISCRIMINATORS, LOSSES, MEMORY_FORMATS, PRECISIONS, ConfigError, TrainConfig
from .data import IngestOptions, ingest, parse_colour
from .distributed import Ranks, join as join_ranks, leave as leave_ranks, lost_rank
from .finetune import starting_point
from .metrics import Evaluation, evaluate, load_inception
from .run import Budget, Cadence, Pace, Rollback, RunError, TrainingRun, describe_saved_state, export_for_sharing
from .trainer import StepStats


# --------------------------------------------------------------------------------- ingest
def add_ingest(commands) -> None:
    p = commands.add_parser("ingest", help="validate and normalise paintings into a dataset folder")
    p.add_argument("sources", nargs="+", metavar="SRC", help="folders, zip files or image files")
    p.add_argument("--out", required=True, type=Path, metavar="DATASET_DIR")
    p.add_argument("--res", type=positive(int), default=256, help="stored square size in pixels (default 256)")
    p.add_argument("--fit", choices=("crop", "pad"), default="crop",
                   help="centre-crop to square, or pad to keep the whole painting (default crop)")
    p.add_argument("--background", type=_colour, default=(255, 255, 255),
                   help="colour behind transparent areas and padding, as #rrggbb (default #ffffff)")
    p.set_defaults(run=run_ingest)


def _colour(text: str) -> tuple[int, int, int]:
    try:
        return parse_colour(text)
    except ConfigError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def run_ingest(args) -> int:
    options = IngestOptions(resolution=args.res, fit=args.fit, background=args.background)
    report = ingest(args.sources, args.out, options, progress=CountProgress())
    print(report.summary())
    for rejection in report.rejected:
        print(f"  rejected {rejection.file}: {rejection.reason}")
    print(json.dumps(report.to_json()))
    return 0


# ---------------------------------------------------------------------------------- train
def add_train(commands) -> None:
    p = commands.add_parser("train", help="train a GAN on a dataset folder",
                            description="Train a GAN on a dataset folder. On several GPUs or machines, start it "
                                        "with torchrun (README, 'Training on several GPUs or machines').")
    p.add_argument("dataset", type=Path, metavar="DATASET_DIR")
    p.add_argument("--out", required=True, type=Path, metavar="RUN_DIR")
    p.add_argument("--res", type=positive(int),
                   help=f"training resolution, a power of two (default {TrainConfig.resolution}, or --from's)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=positive(int), help="stop at this total step count")
    budget.add_argument("--minutes", type=positive(float), help="stop after this many minutes")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its newest checkpoint")
    start.add_argument("--from", dest="start_from", type=Path, metavar="RUN_OR_GENERATOR",
                       help="fine-tune: start from a trained model (a run folder, a checkpoint or a generator "
                            "file such as checkpoints/demo) instead of from scratch; the networks' shape "
                            "(--res, --width, --z-dim, --arch) and the discriminator default to its own")
    p.add_argument("--width", type=positive(int), help=f"model width multiplier (default {TrainConfig.width})")
    p.add_argument("--batch", type=positive(int), default=TrainConfig.batch_size,
                   help=f"images per step in all (default {TrainConfig.batch_size}); under torchrun, the batch of "
                        f"all processes together, each drawing an equal share")
    p.add_argument("--loss", choices=LOSSES, default=TrainConfig.loss)
    p.add_argument("--no-augment", action="store_true", help="turn off DiffAugment and flips")
    p.add_argument("--discriminator", choices=DISCRIMINATORS,
                   help=f"projected (judges in pretrained EfficientNet-Lite0 features, no R1, always augmented) "
                        f"or fastgan / dcgan (learn their own features, with R1 and adaptive augmentation); "
                        f"default {TrainConfig.discriminator}, and dcgan with --arch dcgan")
    p.add_argument("--projection-size", type=positive(int), metavar="PX",
                   help="size images are resized to for the projected discriminator (default twice --res, "
                        "from 64 to 256)")
    p.add_argument("--arch", choices=ARCHITECTURES,
                   help="the generator: fastgan (default) or the textbook dcgan, for comparisons")
    p.add_argument("--z-dim", type=positive(int), help=f"latent size (default {TrainConfig.z_dim})")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="auto measures what is fastest")
    p.add_argument("--memory-format", default="auto", choices=MEMORY_FORMATS, help="auto measures what is fastest")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-minutes", type=positive(float), default=5.0)
    p.add_argument("--preview-minutes", type=positive(float), default=1.0)
    p.add_argument("--keep", type=positive(int), default=3, help="checkpoints to keep (default 3)")
    p.add_argument("--kid-minutes", type=positive(float), metavar="M",
                   help="measure KID against the dataset every M minutes of training and at the end, "
                        "into RUN_DIR/metrics.jsonl (off by default: about 0.1 s per sample on a CPU)")
    p.add_argument("--kid-samples", type=positive(int), default=Cadence.kid_samples,
                   help=f"samples per KID measurement (default {Cadence.kid_samples})")
    p.set_defaults(run=run_train)


def run_train(args) -> int:
    ranks = join_ranks(args.device)   # one of the processes torchrun started, or this one alone
    try:
        return _train(args, ranks)
    finally:
        leave_ranks()   # gloo aborts a process that exits with its process group still open


def _train(args, ranks: Ranks) -> int:
    if not ranks.is_main:             # rank 0 speaks for the run
        sys.stdout = open(os.devnull, "w")
    cadence = Cadence(checkpoint_minutes=args.checkpoint_minutes, preview_minutes=args.preview_minutes,
                      keep_checkpoints=args.keep, kid_minutes=args.kid_minutes, kid_samples=args.kid_samples)
    if args.resume:
        run = TrainingRun.resume(args.out, args.dataset)
        print(f"Resuming {args.out} at step {run.trainer.step_count}")
    else:
        start_from = starting_point(args.start_from) if args.start_from else None
        # --arch dcgan alone means the DCGAN pair: a DCGAN G is for comparisons with its own D.
        discriminator = args.discriminator or ("dcgan" if args.arch == "dcgan" else None)
        augmentation = dict(augment=(), flip=False) if args.no_augment else {}
        given = dict(discriminator=discriminator, resolution=args.res, width=args.width, batch_size=args.batch,
                     loss=args.loss, architecture=args.arch, projection_size=args.projection_size,
                     z_dim=args.z_dim, device=args.device, precision=args.precision,
                     memory_format=args.memory_format, seed=args.seed, **augmentation)
        if start_from:
            config = start_from.config_for(**given)
            print(f"Fine-tuning the {start_from.describe()}")
        else:
            config = TrainConfig(**{name: value for name, value in given.items() if value is not None})
        run = TrainingRun.start(args.dataset, args.out, config, start_from)
    trainer = run.trainer
    print(f"Training {trainer.config.architecture} G, {trainer.config.discriminator} D at {trainer.config.resolution} px on "
          f"{len(trainer.images)} images; {trainer.numerics.describe()}")
    if ranks.parallel:
        print(f"On {ranks.world_size} processes, each drawing {trainer.batch_per_rank} of the {trainer.config.batch_size} "
              f"images of a step")
    budget = Budget(steps=args.steps, minutes=args.minutes)
    if budget.steps is None and budget.minutes is None:
        print("No --steps or --minutes given: training until Ctrl-C.")
    bar = ProgressLine(budget, quiet=not ranks.is_main)
    measured = []

    def report_kid(row: dict) -> None:
        measured.append(row)
        print(f"step {row['step']}: {Evaluation.from_dict(row).summary()}", flush=True)

    def report_kid_failure(message: str) -> None:
        print(f"KID could not be measured, training goes on without it: {message}", file=sys.stderr, flush=True)

    def report_rollback(rollback: Rollback) -> None:
        bar.say(f"Training {rollback.describe()}")

    try:
        last = run.train(budget, cadence, on_step=bar.update, on_measuring=bar.measuring, on_metrics=report_kid,
                         on_metrics_failed=report_kid_failure, on_rollback=report_rollback, on_disk_full=bar.say,
                         on_disk_space=lambda: bar.say("Disk space is back: training goes on."))
    except KeyboardInterrupt:
        bar.finish()
        print(f"Interrupted: saved a checkpoint at step {trainer.step_count} in {args.out}; "
              f"continue with --resume.")
        return 130
    except Exception as error:
        bar.finish()   # the error's line starts on a line of its own
        if lost_rank(error):
            raise RunError(f"another process of this run ended or stopped answering, so this one stops too "
                           f"({str(error).splitlines()[0][:200]}). {describe_saved_state(args.out)} Continue with "
                           f"--resume, on as many processes as you have.") from error
        raise
    bar.finish()
    print(f"Done at step {trainer.step_count}; samples in {args.out / 'samples'}")
    print(json.dumps({"run": str(args.out), "step": trainer.step_count, "images_seen": trainer.images_seen,
                      "loss_g": last.loss_g if last else None, "loss_d": last.loss_d if last else None,
                      "augment_p": trainer.ada.p, "numerics": trainer.numerics.describe(),
                      "metrics": measured[-1] if measured else None, "rollbacks": len(run.rollbacks)}))
    return 0


class ProgressLine:
    """Step, losses, speed and ETA of a training run, as a StderrLine."""

    def __init__(self, budget: Budget, quiet: bool = False):
        self.budget = budget
        self.pace = Pace(budget)
        self.line = StderrLine(terminal_seconds=0.25)
        self.quiet = quiet    # says nothing: another process speaks for the run

    def update(self, stats: StepStats) -> None:
        self.pace.update(stats)
        if self.quiet:
            return
        of_total = f"/{self.budget.steps}" if self.budget.steps else ""
        self.line.show(f"step {stats.step}{of_total} | G {stats.loss_g:.3f} D {stats.loss_d:.3f} "
                       f"rec {stats.loss_reconstruction:.3f} | aug p {stats.augment_p:.2f} | "
                       f"{self.pace.images_per_s:.1f} img/s | ETA {self._eta()}")

    def measuring(self) -> None:
        self.say("measuring KID…")

    def say(self, line: str) -> None:
        """A line of its own below the progress line, which goes on after it."""
        if self.quiet:
            return
        self.finish()
        print(line, file=sys.stderr, flush=True)

    def _eta(self) -> str:
        seconds = self.pace.eta_seconds()
        if seconds is None:
            return "-"
        seconds = int(seconds)
        return f"{seconds // 60}m{seconds % 60:02d}s"

    def finish(self) -> None:
        self.line.finish()


# ------------------------------------------------------------------------------- evaluate
def add_evaluate(commands) -> None:
    p = commands.add_parser("evaluate", help="measure KID and FID of a generator against a dataset")
    p.add_argument("source", type=Path, metavar="CKPT_OR_RUN_DIR")
    p.add_argument("dataset", type=Path, metavar="DATASET_DIR")
    p.add_argument("--n", type=positive(int), default=500, help="generated images to compare (default 500)")
    p.set_defaults(run=run_evaluate)


def run_evaluate(args) -> int:
    if not args.source.exists():
        raise FileNotFoundError(f"{args.source} does not exist")
    network = load_inception()
    generator, config = load_generator(args.source)
    result = evaluate(generator, config.z_dim, config.resolution, args.dataset, args.n, network,
                              progress=CountProgress())
    print(result.summary())
    print(json.dumps({"kid": result.kid, "kid_std": result.kid_std, "fid": result.fid,
                      "n_real": result.n_real, "n_fake": result.n_fake}))
    return 0


# ---------------------------------------------------------------------------------- export
def add_export(commands) -> None:
    p = commands.add_parser("export", help="write a run's generator as one .safetensors file, to share or to "
                                           "fine-tune from")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--out", required=True, type=Path, metavar="FILE.safetensors")
    p.add_argument("--full-precision", action="store_true",
                   help="keep the weights in fp32 (default: half precision, half the size)")
    p.set_defaults(run=run_export)


def run_export(args) -> int:
    if args.out.suffix != ".safetensors":
        raise ConfigError(f"{args.out}: a generator file's name ends in .safetensors")
    path = export_for_sharing(args.run_dir, args.out, half=not args.full_precision)
    _, config, provenance = read_export(path)
    print(f"Wrote the {config.resolution} px generator of {args.run_dir} at step {provenance['step']} to {path}")
    print(json.dumps({"out": str(path), "bytes": path.stat().st_size, "step": provenance["step"],
                      "resolution": config.resolution, "provenance": provenance}))
    return 0
