"""The studio's one training run, in a background thread, observable from any browser tab.

The UI never touches the trainer: it calls start / pause / resume / stop and polls `snapshot()`.
The thread loops over `TrainingRun.train`, checks the stop and pause events between steps and
publishes what it did under a lock. Reloading the page or opening a second tab sees the same run.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import TrainConfig
from .finetune import StartingPoint
from .models import build_generator
from .run import Budget, Cadence, Pace, Rollback, TrainingRun
from .run_folder import list_previews, preview_step, read_log, read_metrics
from .trainer import StepStats

IDLE, STARTING, TRAINING, PAUSED, STOPPING, FINISHED, FAILED = (
    "idle", "starting", "training", "paused", "stopping", "finished", "failed")
ACTIVE_STATES = (STARTING, TRAINING, PAUSED, STOPPING)
TRAINING_NICENESS = 10   # above the server's threads: a click is answered first, training takes the rest


class SessionBusy(Exception):
    """A run is already going; stop it first."""


@dataclass
class Snapshot:
    """What a browser tab shows, copied out under the lock."""
    state: str = IDLE
    run_dir: Path | None = None
    config: TrainConfig | None = None
    numerics: str = ""
    history: list[dict] = field(default_factory=list)   # StepStats as dicts, possibly thinned
    metrics: list[dict] = field(default_factory=list)   # KID measurements (see run_folder.read_metrics)
    measuring: bool = False                              # a KID measurement is under way
    metrics_error: str | None = None                     # why KID could not be measured
    latest: StepStats | None = None
    images_per_s: float = 0.0
    eta_seconds: float | None = None
    previews: list[Path] = field(default_factory=list)   # grid PNGs, oldest first (the time-lapse)
    samples: torch.Tensor | None = None                  # the newest fixed-seed samples, [-1, 1]
    rollback: str | None = None                          # the newest rollback after divergence, in words
    disk_full: str | None = None                         # why training waits for disk space, in words
    error: str | None = None


# A preview a minute, as from the command line: each renders 64 samples (2.4 s of a 2-core CPU
# at 64 px in fp32, 4% of a minute's training) and makes an open Train tab redraw its galleries
# and loss plot (README, "Speed"), while the status line shows the run going on every second.
STUDIO_CADENCE = Cadence(preview_minutes=1.0)


class TrainingSession:
    def __init__(self, cadence: Cadence = STUDIO_CADENCE, history_limit: int = 2000):
        self.cadence = cadence
        self.history_limit = history_limit
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._running = threading.Event()     # cleared while paused
        self._thread: threading.Thread | None = None
        self._snap = Snapshot()
        self._budget = Budget()
        self._generator: tuple[dict, TrainConfig] | None = None   # G_ema state at the newest preview
        self._pace = Pace(self._budget)

    # ------------------------------------------------------------------ commands
    def start(self, dataset_dir: str | Path, run_dir: str | Path, config: TrainConfig, budget: Budget,
              kid_minutes: float | None = None, start_from: StartingPoint | None = None) -> None:
        """`kid_minutes`: measure KID that often (in training time); None never. `start_from`:
        the trained weights it begins with (finetune.py)."""
        self._launch(lambda: TrainingRun.start(dataset_dir, run_dir, config, start_from), budget, Path(run_dir),
                     kid_minutes)

    def resume(self, run_dir: str | Path, budget: Budget, dataset_dir: str | Path | None = None,
               kid_minutes: float | None = None) -> None:
        self._launch(lambda: TrainingRun.resume(run_dir, dataset_dir), budget, Path(run_dir), kid_minutes)

    def pause(self) -> None:
        with self._lock:
            if self._snap.state == TRAINING:
                self._running.clear()
                self._snap.state = PAUSED

    def unpause(self) -> None:
        with self._lock:
            if self._snap.state == PAUSED:
                self._snap.state = TRAINING
                self._running.set()

    def stop(self, timeout: float | None = None) -> None:
        """Ask the run to end after its current step and checkpoint; wait for it."""
        with self._lock:
            if self._snap.state in ACTIVE_STATES:
                self._snap.state = STOPPING
        self._stop.set()
        self._running.set()   # a paused run must wake up to stop
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def snapshot(self) -> Snapshot:
        with self._lock:
            snap = copy.copy(self._snap)
            snap.history = list(self._snap.history)
            snap.metrics = list(self._snap.metrics)
            snap.previews = list(self._snap.previews)
            return snap

    def generator(self) -> tuple[torch.nn.Module, TrainConfig] | None:
        """A copy of the running (or last) run's G_ema as of its newest preview, for exploring."""
        with self._lock:
            if self._generator is None:
                return None
            state, config = self._generator
        generator = build_generator(config)
        generator.load_state_dict(state)
        return generator.eval().requires_grad_(False), config

    # ------------------------------------------------------------------ the thread
    def _launch(self, open_run, budget: Budget, run_dir: Path, kid_minutes: float | None) -> None:
        with self._lock:
            if self._snap.state in ACTIVE_STATES:
                raise SessionBusy("a training run is already going; stop it first")
            self._stop.clear()
            self._running.set()
            self._budget = budget
            self._generator = None
            self._snap = Snapshot(state=STARTING, run_dir=run_dir, previews=list_previews(run_dir))
            cadence = dataclasses.replace(self.cadence, kid_minutes=kid_minutes)   # chosen per run
            self._thread = threading.Thread(target=self._work, args=(open_run, cadence), name="training", daemon=True)
            self._thread.start()

    def _work(self, open_run, cadence: Cadence) -> None:
        _yield_to_the_page()
        try:
            run = open_run()
            with self._lock:   # read after a resume has dropped what was recorded past its checkpoint
                self._snap.history = thin_history(read_log(run.run_dir), self.history_limit)
                self._snap.metrics = read_metrics(run.run_dir)
                self._snap.previews = list_previews(run.run_dir)
                self._snap.config = run.trainer.config
                self._snap.numerics = run.trainer.numerics.describe()
                if self._snap.state == STARTING:
                    self._snap.state = TRAINING
            self._pace = Pace(self._budget)
            run.train(self._budget, cadence, should_stop=self._should_stop, on_step=self._on_step,
                      on_preview=lambda path, images: self._on_preview(run, path, images),
                      on_measuring=self._on_measuring, on_metrics=self._on_metrics,
                      on_metrics_failed=self._on_metrics_failed,
                      on_rollback=lambda rollback: self._on_rollback(run, rollback),
                      on_disk_full=self._on_disk_full, on_disk_space=lambda: self._on_disk_full(None))
        except Exception as error:   # shown in the UI; the run's last checkpoint stays on disk
            traceback.print_exc()
            with self._lock:
                self._snap.state = FAILED
                self._snap.measuring = False
                self._snap.disk_full = None   # the error says what became of the wait
                self._snap.error = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            return
        with self._lock:
            self._snap.state = FINISHED

    def _should_stop(self) -> bool:
        self._running.wait()          # blocks while paused; the budget's clock is not running
        return self._stop.is_set()

    def _on_step(self, stats: StepStats) -> None:
        self._pace.update(stats)
        with self._lock:
            snap = self._snap
            snap.latest = stats
            snap.history.append(dataclasses.asdict(stats))
            if len(snap.history) > self.history_limit:
                snap.history = thin_history(snap.history, self.history_limit)
            snap.images_per_s = self._pace.images_per_s
            snap.eta_seconds = self._pace.eta_seconds()

    def _on_measuring(self) -> None:
        with self._lock:
            self._snap.measuring = True

    def _on_metrics(self, row: dict) -> None:
        with self._lock:
            self._snap.measuring = False
            self._snap.metrics.append(row)

    def _on_metrics_failed(self, message: str) -> None:
        with self._lock:
            self._snap.measuring = False
            self._snap.metrics_error = message

    def _on_rollback(self, run: TrainingRun, rollback: Rollback) -> None:
        """Show what the run went back to: its history, measurements and time-lapse as of that
        step, and the lowered learning rates in its config."""
        with self._lock:
            snap = self._snap
            snap.rollback = rollback.describe()
            snap.config = run.trainer.config
            snap.history = [row for row in snap.history if row["step"] <= rollback.step]
            snap.metrics = [row for row in snap.metrics if row["step"] <= rollback.step]
            snap.previews = [path for path in snap.previews if preview_step(path) <= rollback.step]

    def _on_disk_full(self, message: str | None) -> None:
        """Training waits for disk space (`message` says so), or goes on again (None)."""
        with self._lock:
            self._snap.disk_full = message

    def _on_preview(self, run: TrainingRun, path: Path, images: torch.Tensor) -> None:
        state = {k: v.detach().to("cpu", copy=True) for k, v in run.trainer.G_ema.state_dict().items()}
        with self._lock:
            self._snap.previews.append(path)
            self._snap.samples = images
            self._generator = (state, run.trainer.config)


def thin_history(rows: list[dict], limit: int) -> list[dict]:
    """Keep every other old row once there are too many: a long run's history stays small
    to hold and to copy into each snapshot, and keeps its shape."""
    while len(rows) > limit:
        half = len(rows) // 2
        rows = rows[:half][::2] + rows[half:]
    return rows


def _yield_to_the_page() -> None:
    """Give the calling thread (and the OpenMP workers it starts, which inherit it) a lower
    scheduling priority than the server's, so a slider move is not queued behind training steps on
    a laptop's few cores. Linux schedules threads one by one; elsewhere this does nothing."""
    if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
        try:
            thread = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + TRAINING_NICENESS)
        except OSError:
            pass
