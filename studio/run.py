"""A training run: the loop that the CLI and the studio's background thread both drive, and the
run folder it writes (run_folder.py says what the folder holds, and reads it).

A run that diverges (a loss that is not finite, an exploding gradient: see trainer.py) goes back
to its newest checkpoint with both learning rates lowered, at most MAX_ROLLBACKS times; the
checkpoint and generator export it goes back to are never overwritten by broken weights.

Trained on several processes (torchrun, distributed.py), every rank runs this loop in step with
the others; rank 0 alone reads and writes the run folder.

A run survives being killed at any instant: every file is written whole or not at all (files.py),
the log holds every step of a checkpoint before that checkpoint is written, and a run opens at
its newest checkpoint with the folder as of that step (temporary files of cut-short writes,
log rows, measurements and previews past it are removed). On a full disk training waits and
tries again (`SpaceWait`) instead of failing.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import generator_file
from .checkpoint import (EXPORT_NAMES, CheckpointError, checkpoint_dir, config_of, export_generator, latest_checkpoint,
                         list_checkpoints, load_state, restore_trainer, save_checkpoint, step_of)
from .config import ConfigError, TrainConfig
from .data import load_images
from .finetune import StartingPoint
from .distributed import current as current_ranks
from .files import append_json_lines, remove_partials, rewrite_json_lines, write_json
from .latent import seeds_to_z
from .metrics import evaluate, load_inception
from .numerics import resolve_device
from .render import grid_image, save_png
from .run_folder import PREVIEW_COLUMNS, PREVIEW_SEEDS, list_previews, preview_step, read_record
from .trainer import StepStats, Trainer

MAX_ROLLBACKS = 3                  # per TrainingRun: one training session of a run
ROLLBACK_LR_FACTOR = 0.5           # both learning rates, at each rollback


class RunError(Exception):
    """A run cannot start or resume; the message says what to do."""


class Diverged(RunError):
    """Training kept diverging after MAX_ROLLBACKS rollbacks."""


class DiskFull(RunError):
    """The run was stopped while it waited for disk space: its newest steps are not saved."""


@dataclass(frozen=True)
class Rollback:
    """Training diverged at step `diverged_at` and went back to `step`, its newest checkpoint,
    with the learning rates lowered to `lr_g` and `lr_d`."""
    step: int
    diverged_at: int
    reason: str
    lr_g: float
    lr_d: float
    attempt: int              # 1 for this session's first rollback, up to MAX_ROLLBACKS

    def describe(self) -> str:
        return (f"diverged at step {self.diverged_at:,} ({self.reason}): rolled back to step {self.step:,}, "
                f"learning rates lowered to {self.lr_g:.3g} (G) and {self.lr_d:.3g} (D), "
                f"try {self.attempt} of {MAX_ROLLBACKS}")


@dataclass(frozen=True)
class Budget:
    """When to stop: at `steps` total steps, or after `minutes` of training in this session,
    whichever comes first; neither means until stopped."""
    steps: int | None = None
    minutes: float | None = None


class Pace:
    """How fast a run goes (images/s, smoothed over recent steps) and how long its budget has
    left, counting only time spent in steps, as the budget does."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self.images_per_s = 0.0
        self.trained_seconds = 0.0
        self._step = 0
        self._batch = 0.0

    def update(self, stats: StepStats) -> None:
        self._step, self._batch = stats.step, stats.images_seen / stats.step
        rate = self._batch / max(stats.seconds, 1e-9)
        self.images_per_s = rate if not self.images_per_s else 0.9 * self.images_per_s + 0.1 * rate
        self.trained_seconds += stats.seconds

    def eta_seconds(self) -> float | None:
        """Seconds left; None when the run has no end."""
        left = []
        if self.budget.steps is not None and self.images_per_s > 0:
            left.append((self.budget.steps - self._step) * self._batch / self.images_per_s)
        if self.budget.minutes is not None:
            left.append(self.budget.minutes * 60 - self.trained_seconds)
        return max(0.0, min(left)) if left else None


@dataclass(frozen=True)
class Cadence:
    checkpoint_minutes: float = 5.0
    preview_minutes: float = 1.0
    log_every_steps: int = 10
    keep_checkpoints: int = 3
    # KID every this many minutes of training (and once when the budget is spent); None = never.
    # Inception costs about 0.1 s per image on a CPU, so it is off unless asked for.
    kid_minutes: float | None = None
    kid_samples: int = 250
    # On a full disk, how long training waits before it tries the write again.
    disk_full_retry_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.kid_samples < 4:
            raise ConfigError(f"KID needs at least 4 samples, not {self.kid_samples}")


def _at_once(write: Callable, *args):
    """`write(*args)`: a write that is tried once."""
    return write(*args)


def _nowhere(write: Callable, *args) -> None:
    """The writes of a rank other than 0: none."""


class TrainingRun:
    def __init__(self, run_dir: Path, trainer: Trainer, dataset_dir: Path, fine_tuned_from: dict | None = None):
        self.run_dir = run_dir
        self.trainer = trainer
        self.dataset_dir = dataset_dir
        self.fine_tuned_from = fine_tuned_from      # StartingPoint.record() of the weights it began with
        self.ranks = trainer.ranks
        self.preview_z = seeds_to_z(PREVIEW_SEEDS, trainer.config.z_dim)
        self.rollbacks: list[Rollback] = []

    # ------------------------------------------------------------------ opening
    @classmethod
    def start(cls, dataset_dir: str | Path, run_dir: str | Path, config: TrainConfig,
              start_from: StartingPoint | None = None) -> "TrainingRun":
        """A new run; with `start_from`, its networks begin with those weights (finetune.py)."""
        run_dir, dataset_dir = Path(run_dir), Path(dataset_dir)
        ranks = current_ranks()
        if ranks.from_main(lambda: bool(list_checkpoints(run_dir))):
            raise RunError(f"{run_dir} already holds a run; resume it, or choose another folder")
        if start_from is not None:
            start_from.check_fits(config)       # before the paintings are read: that takes a while
        images = load_images(dataset_dir, config.resolution)
        trainer = Trainer(config, images, ranks=ranks)
        if start_from is not None:
            start_from.start(trainer)
        fine_tuned_from = start_from.record() if start_from else None
        if not ranks.is_main:
            return cls(run_dir, trainer, dataset_dir, fine_tuned_from)
        run_dir.mkdir(parents=True, exist_ok=True)
        # Relative too, so a workspace that is moved or copied whole still finds its dataset.
        relative = os.path.relpath(dataset_dir.resolve(), run_dir.resolve())
        _open_at(run_dir, 0)   # what a start that never reached a checkpoint left belongs to no run
        write_json(run_dir / "run.json", {"dataset": str(dataset_dir.resolve()), "dataset_relative": relative,
                                          "config": config.to_dict(), "fine_tuned_from": fine_tuned_from}, indent=2)
        return cls(run_dir, trainer, dataset_dir, fine_tuned_from)

    @classmethod
    def resume(cls, run_dir: str | Path, dataset_dir: str | Path | None = None) -> "TrainingRun":
        """Continue from the newest loadable checkpoint; the dataset defaults to the run's own."""
        run_dir, ranks = Path(run_dir), current_ranks()
        try:
            _, payload = ranks.from_main(lambda: latest_checkpoint(run_dir))
        except CheckpointError as error:
            raise RunError(f"cannot resume: {error}") from error
        dataset_dir = Path(dataset_dir) if dataset_dir else ranks.from_main(lambda: recorded_dataset(run_dir))
        resolution = payload["config"]["resolution"]
        trainer = restore_trainer(payload, load_images(dataset_dir, resolution), ranks=ranks)
        if ranks.is_main:
            _open_at(run_dir, trainer.step_count)
        return cls(run_dir, trainer, dataset_dir, read_record(run_dir).get("fine_tuned_from"))

    # ------------------------------------------------------------------ the loop
    def train(self, budget: Budget, cadence: Cadence = Cadence(),
              should_stop: Callable[[], bool] = lambda: False,
              on_step: Callable[[StepStats], None] = lambda stats: None,
              on_preview: Callable[[Path, torch.Tensor], None] = lambda path, images: None,
              on_measuring: Callable[[], None] = lambda: None,
              on_metrics: Callable[[dict], None] = lambda row: None,
              on_metrics_failed: Callable[[str], None] = lambda message: None,
              on_rollback: Callable[[Rollback], None] = lambda rollback: None,
              on_disk_full: Callable[[str], None] = lambda message: None,
              on_disk_space: Callable[[], None] = lambda: None) -> StepStats | None:
        """Step until the budget is spent or `should_stop()` says so, then checkpoint.

        `budget.minutes` counts time spent in steps, so a pause (a `should_stop` that blocks)
        uses none of it, and neither do KID measurements. A KeyboardInterrupt checkpoints before
        it propagates. Any other error keeps the last periodic checkpoint: the state in the
        middle of a failed step is not trusted. A KID measurement that fails is reported and
        not tried again; training goes on. A step that diverges rolls the run back (see
        `_roll_back`, reported through `on_rollback`); the one after MAX_ROLLBACKS rollbacks
        raises Diverged. A write that finds the disk full pauses training until it succeeds
        (`on_disk_full` says why, `on_disk_space` that it goes on); a stop while it waits raises
        DiskFull. Returns the newest step's stats, None if no step was taken since the start or
        the last rollback.

        With several ranks, rank 0 alone writes and measures, and rank 0 decides when to stop;
        Ctrl-C or SIGTERM to any rank stops all of them after the same step, with a checkpoint,
        and raises KeyboardInterrupt on each."""
        main = self.ranks.is_main
        measuring = bool(cadence.kid_minutes) and main
        if measuring:
            self._inception()   # missing or wrong weights stop the run before it starts, not later
        trained_seconds = kid_measured_at = 0.0   # seconds of training, in all and at the last KID
        last_checkpoint = last_preview = time.monotonic()
        stats = None
        measured_step = None
        pending_log: list[StepStats] = []
        write = SpaceWait(self, cadence.disk_full_retry_seconds, lambda: should_stop() or self.ranks.stop_requested,
                          on_disk_full, on_disk_space) if main else _nowhere

        def measure() -> None:
            nonlocal measured_step, measuring
            on_measuring()
            try:
                row = self.measure_kid(cadence.kid_samples)
            except Exception as error:   # the model is fine; only its score is missing
                measuring = False
                on_metrics_failed(f"{type(error).__name__}: {error}")
                return
            measured_step = self.trainer.step_count
            on_metrics(row)

        try:
            while not self.ranks.should_stop(lambda: self._spent(budget, trained_seconds) or should_stop()):
                stats = self.trainer.step()
                trained_seconds += stats.seconds
                if stats.diverged:
                    write(self._append_log, pending_log)
                    on_rollback(self._roll_back(stats, cadence.keep_checkpoints, write))
                    # What was done and measured past the checkpoint is undone.
                    stats = measured_step = None
                    last_checkpoint = time.monotonic()
                    continue
                if main:
                    pending_log.append(stats)
                on_step(stats)
                now = time.monotonic()
                checkpoint_due = now - last_checkpoint >= cadence.checkpoint_minutes * 60
                # A checkpoint's steps are all in the log before it is written: a run resumed
                # from it has no gap in its history.
                if stats.step % cadence.log_every_steps == 0 or checkpoint_due:
                    write(self._append_log, pending_log)
                if main and now - last_preview >= cadence.preview_minutes * 60:
                    on_preview(*write(self.save_preview))
                    last_preview = now
                if checkpoint_due:
                    self.save(cadence.keep_checkpoints, write)
                    last_checkpoint = now
                if measuring and trained_seconds >= kid_measured_at + cadence.kid_minutes * 60:
                    measure()
                    kid_measured_at = trained_seconds
        except DiskFull:
            raise                 # the log cannot be written either
        except KeyboardInterrupt:
            self._finish(stats, pending_log, cadence, on_preview, write)
            raise
        except BaseException:
            self._append_log(pending_log)
            raise
        self._finish(stats, pending_log, cadence, on_preview, write)
        if self.ranks.interrupted:
            raise KeyboardInterrupt
        # A run that used up its budget ends with its final quality on record (measured after
        # the checkpoint is safe); a stopped one ends as soon as the checkpoint is written.
        if measuring and stats is not None and self._spent(budget, trained_seconds) \
                and measured_step != self.trainer.step_count:
            measure()
        return stats

    def _finish(self, stats: StepStats | None, pending_log: list[StepStats], cadence: Cadence,
                on_preview: Callable[[Path, torch.Tensor], None], write: SpaceWait) -> None:
        if not self.ranks.is_main:
            return
        write(self._append_log, pending_log)
        if stats is not None:
            on_preview(*write(self.save_preview))
            self.save(cadence.keep_checkpoints, write)

    def _spent(self, budget: Budget, trained_seconds: float) -> bool:
        if budget.steps is not None and self.trainer.step_count >= budget.steps:
            return True
        return budget.minutes is not None and trained_seconds >= budget.minutes * 60

    def _roll_back(self, diverged: StepStats, keep: int, write: SpaceWait) -> Rollback:
        """Go back to the newest checkpoint (to the first step if none was written yet) with both
        learning rates lowered, saved into that checkpoint again so a crash or a resume keeps
        them; forget the log rows and previews past it; record the rollback in the log. Raises
        Diverged instead after MAX_ROLLBACKS rollbacks, writing nothing."""
        trainer = self.trainer
        if len(self.rollbacks) == MAX_ROLLBACKS:
            raise Diverged(
                f"still diverging after {MAX_ROLLBACKS} rollbacks (at step {diverged.step:,}: {diverged.diverged}), "
                f"with the learning rates down to {trainer.config.lr_g:.3g} (G) and {trainer.config.lr_d:.3g} (D). "
                f"The checkpoint at step {self.rollbacks[-1].step:,} and {EXPORT_NAMES[0]} are the last good state: "
                f"continue the run to try again with still lower learning rates, or start a new one with "
                f"another discriminator")
        load_state(trainer, self._last_good_state())
        trainer.scale_learning_rates(ROLLBACK_LR_FACTOR)
        write(save_checkpoint, trainer, self.run_dir, keep)
        write(_forget_after, self.run_dir, trainer.step_count)
        rollback = Rollback(step=trainer.step_count, diverged_at=diverged.step, reason=diverged.diverged,
                            lr_g=trainer.config.lr_g, lr_d=trainer.config.lr_d, attempt=len(self.rollbacks) + 1)
        self.rollbacks.append(rollback)
        write(append_json_lines, self.run_dir / "log.jsonl", [{"event": "rollback", **dataclasses.asdict(rollback)}])
        return rollback

    def _last_good_state(self) -> dict:
        """The newest checkpoint's; a run that has written none goes back to its first step, the
        state a new trainer of its seed starts in. A run whose checkpoints are all damaged does
        not start over: that is a CheckpointError."""
        trainer = self.trainer
        saved = self.ranks.from_main(
            lambda: latest_checkpoint(self.run_dir)[1] if list_checkpoints(self.run_dir) else None)
        if saved is None:
            return Trainer(trainer.config, trainer.images, trainer.numerics).state_dict()
        return saved

    # ------------------------------------------------------------------ outputs
    def save(self, keep: int = 3, write: Callable = _at_once) -> Path:
        """Write the checkpoint and the generator export, each through `write` (a SpaceWait in training)."""
        path = write(save_checkpoint, self.trainer, self.run_dir, keep)
        write(export_generator, self.trainer, self.run_dir / EXPORT_NAMES[0], self.provenance())
        return path

    def provenance(self) -> dict:
        """What the run's exports say about where their weights come from."""
        return _provenance(self.dataset_dir, self.fine_tuned_from)

    def save_preview(self) -> tuple[Path, torch.Tensor]:
        """Render the fixed seeds with G_ema; save them as this step's grid."""
        images = self.trainer.sample(self.preview_z)
        path = self.run_dir / "samples" / f"step-{self.trainer.step_count:09d}.png"
        return save_png(grid_image(images, columns=PREVIEW_COLUMNS), path), images

    def measure_kid(self, samples: int) -> dict:
        """KID and FID of G_ema's samples (seeds 0..samples-1) against the run's dataset,
        appended to metrics.jsonl."""
        evaluation = evaluate(self.trainer.G_ema, self.trainer.config.z_dim, self.trainer.config.resolution,
                              self.dataset_dir, n_fake=samples, network=self._inception())
        row = {"step": self.trainer.step_count, "images_seen": self.trainer.images_seen,
               **dataclasses.asdict(evaluation)}
        append_json_lines(self.run_dir / "metrics.jsonl", [row])
        return row

    def _inception(self) -> torch.nn.Module:
        """The verified Inception network: on the GPU when training runs on CUDA, else on the
        CPU (the only path tested with Apple's MPS so far)."""
        device = self.trainer.numerics.device
        return load_inception(device=device if device.type == "cuda" else "cpu")

    def _append_log(self, pending: list[StepStats]) -> None:
        if not pending:
            return
        append_json_lines(self.run_dir / "log.jsonl", (dataclasses.asdict(s) for s in pending))
        pending.clear()


class SpaceWait:
    """Does a run's writes. While the disk is full it says so, waits and tries again every
    `retry_seconds`, so that training pauses rather than fails, and goes on by itself once space
    is freed. Trying again is safe: a write that fails leaves the old file whole and no
    temporary one (files.py). A stop while it waits (`should_stop`, Ctrl-C) raises DiskFull."""

    def __init__(self, run: TrainingRun, retry_seconds: float, should_stop: Callable[[], bool],
                 on_disk_full: Callable[[str], None], on_disk_space: Callable[[], None]):
        self.run = run
        self.retry_seconds = retry_seconds
        self.should_stop = should_stop
        self.on_disk_full = on_disk_full
        self.on_disk_space = on_disk_space

    def __call__(self, write: Callable, *args):
        """`write(*args)`, as often as it takes; what it returns."""
        paused = False
        while True:
            try:
                result = write(*args)
            except (OSError, CheckpointError) as error:
                if not _is_disk_full(error):
                    raise
                if not paused:
                    self.on_disk_full(self._paused_message())
                    paused = True
                self._wait(error)
            else:
                if paused:
                    self.on_disk_space()
                return result

    def _wait(self, error: Exception) -> None:
        """Sleep until it is time to try again, watching for a stop."""
        deadline = time.monotonic() + self.retry_seconds
        try:
            while not self.should_stop():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                time.sleep(min(left, 0.25))
        except KeyboardInterrupt:   # Ctrl-C on the command line: a stop too
            pass
        raise DiskFull(f"stopped while the disk holding {self.run.run_dir} was full, at step "
                       f"{self.run.trainer.step_count:,}, which is not saved. {describe_saved_state(self.run.run_dir)}"
                       ) from error

    def _paused_message(self) -> str:
        return (f"The disk holding {self.run.run_dir} is full: training is paused at step "
                f"{self.run.trainer.step_count:,} and tries again every {self.retry_seconds:g} s; free some "
                f"space, or stop the run. {describe_saved_state(self.run.run_dir)}")


def _is_disk_full(error: Exception) -> bool:
    """ENOSPC, raised by a write or behind the CheckpointError that reports it."""
    cause = error.__cause__ if isinstance(error, CheckpointError) else error
    return isinstance(cause, OSError) and cause.errno == errno.ENOSPC


def describe_saved_state(run_dir: Path) -> str:
    """Which saved state is safe, in words."""
    saved = list_checkpoints(run_dir)
    if not saved:
        return "No checkpoint has been written yet."
    return f"The checkpoint at step {step_of(saved[-1]):,} is intact."


def _open_at(run_dir: Path, step: int) -> None:
    """Make the folder the run as of `step`, where it opens: without the temporary files that
    writes cut short by a crash left, and without what it recorded past `step`."""
    for folder in (run_dir, checkpoint_dir(run_dir), run_dir / "samples"):
        remove_partials(folder)
    _forget_after(run_dir, step)


def _forget_after(run_dir: Path, step: int) -> None:
    """Steps logged, measured and previewed after `step` are about to be redone: forget them.
    The logs are rewritten through a new file renamed over the old, so a crash right here still
    leaves the whole history."""
    for name in ("log.jsonl", "metrics.jsonl"):
        rewrite_json_lines(run_dir / name, lambda row: row["step"] <= step)
    for preview in list_previews(run_dir):
        if preview_step(preview) > step:
            preview.unlink()


def default_kid_minutes() -> float:
    """How often to measure KID unless told: every 10 minutes where Inception is cheap (a CUDA
    GPU), never on a CPU, where each measurement costs about half a minute."""
    return 10.0 if resolve_device("auto").type == "cuda" else 0.0


def recorded_dataset(run_dir: str | Path) -> Path:
    """The dataset beside the run (by its relative path) if it is there, else where it was."""
    run_dir = Path(run_dir)
    recorded = read_record(run_dir)
    if "dataset" not in recorded:
        raise RunError(f"{run_dir} does not say which dataset it was trained on "
                       f"(its run.json is missing or damaged)")
    absolute = Path(recorded["dataset"])
    if "dataset_relative" in recorded:
        beside = (run_dir / recorded["dataset_relative"]).resolve()
        if (beside / "manifest.json").exists():
            return beside
    return absolute


def export_for_sharing(run_dir: str | Path, path: str | Path, half: bool = True) -> Path:
    """The G_ema of the run's newest checkpoint as a file of its own, to give away or to start
    other runs from, saying what it was trained on; `half`: in half precision (generator_file.py)."""
    run_dir = Path(run_dir)
    try:
        _, payload = latest_checkpoint(run_dir)
    except CheckpointError as error:
        raise RunError(f"nothing to export: {error}") from error
    record = read_record(run_dir)
    provenance = {"step": payload["step"], "images_seen": payload["images_seen"],
                  **_provenance(Path(record.get("dataset", "")), record.get("fine_tuned_from"))}
    return generator_file.write(path, payload["G_ema"], config_of(payload), provenance, half)


def _provenance(dataset_dir: Path, fine_tuned_from: dict | None) -> dict:
    return {"dataset": dataset_dir.name or None, "fine_tuned_from": fine_tuned_from}
