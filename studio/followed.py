"""A run followed from its folder while another process writes it (a `train` on a server that
writes into a shared workspace, say): the Snapshot a TrainingSession gives, read from disk.

The Train tab reads it every second, so a read must be cheap: the log, which only grows, is read
from where the last read ended; the other files only when their size or modification time
changed. Nothing here writes to the run.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path

import torch
from PIL import Image

from .files import read_json_lines_from
from .render import grid_tiles
from .run_folder import PREVIEW_COLUMNS, list_previews, read_metrics, step_rows
from .session import Snapshot, thin_history
from .trainer import StepStats

FOLLOWED = "followed"        # the state of a followed run's snapshot: read-only, its writer elsewhere
STILL_WRITING_SECONDS = 120  # a newest step older than this: its writer has stopped, or waits
READ_BYTES = 4 << 20         # of the log at a time, so a long run's first read stays small in memory
SAMPLES_READ = 16            # images cut from the newest preview grid for the samples gallery
RATE_STEPS = 20              # the newest steps whose times give the images/s


class GrowingLog:
    """The step rows of a run's log.jsonl, thinned to `limit` as the session's are, read on
    from where the last read ended. A log that was replaced or got shorter (a rollback or a
    resume rewrites it, see run._forget_after) is read again from its start."""

    def __init__(self, path: Path, limit: int):
        self.path = path
        self.limit = limit
        self.rows: list[dict] = []
        self.modified: float | None = None    # when the log last grew (st_mtime), None if absent
        self._file: tuple[int, int] | None = None   # (device, inode) of the file read so far
        self._offset = 0

    def read(self) -> list[dict]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._start_over(None)
            self.modified = None
            return self.rows
        if (stat.st_dev, stat.st_ino) != self._file or stat.st_size < self._offset:
            self._start_over((stat.st_dev, stat.st_ino))
        while self._offset < stat.st_size:
            rows, offset = read_json_lines_from(self.path, self._offset, READ_BYTES)
            if offset == self._offset:     # only a line still being written
                break
            self.rows = thin_history(self.rows + step_rows(rows), self.limit)
            self._offset = offset
        self.modified = stat.st_mtime
        return self.rows

    def _start_over(self, file: tuple[int, int] | None) -> None:
        self.rows, self._offset, self._file = [], 0, file


class FollowedRun:
    """One run folder, read as it grows. Safe to share between browser tabs (threads)."""

    def __init__(self, run_dir: str | Path, history_limit: int = 2000, clock=time.time):
        self.run_dir = Path(run_dir)
        self.clock = clock                # wall-clock seconds, to compare with file times
        self._lock = threading.Lock()
        self._log = GrowingLog(self.run_dir / "log.jsonl", history_limit)
        # Each as read, with what tells whether it changed since: see _version.
        self._metrics: tuple[tuple | None, list[dict]] = (None, [])
        self._previews: tuple[tuple | None, list[Path]] = (None, [])
        self._samples: tuple[Path | None, torch.Tensor | None] = (None, None)   # by the newest grid

    def snapshot(self) -> Snapshot:
        with self._lock:
            history = list(self._log.read())
            previews = self._read_previews()
            return Snapshot(state=FOLLOWED, run_dir=self.run_dir, history=history, metrics=self._read_metrics(),
                            latest=_stats(history[-1]) if history else None, images_per_s=_images_per_s(history),
                            previews=previews, samples=self._read_samples(previews))

    def status_line(self, snap: Snapshot) -> str:
        """What the followed run is at, and whether its writer is still at it."""
        parts = [f"Following **{self.run_dir.name}** from its folder, read-only (the buttons act on this "
                 f"studio's own run)"]
        if snap.latest is None:
            return " · ".join(parts + ["nothing logged yet: its first steps appear here as they are written"])
        parts.append(f"step {snap.latest.step:,}")
        idle_seconds = self.clock() - self._log.modified
        if idle_seconds < STILL_WRITING_SECONDS:
            parts += [f"{snap.images_per_s:.1f} images/s", "still being written"]
        else:
            parts.append(f"no new step for {_minutes(idle_seconds)}")
        if snap.metrics:
            newest = snap.metrics[-1]
            parts.append(f"KID {newest['kid'] * 1000:.1f}×10⁻³ at step {newest['step']:,}")
        return " · ".join(parts)

    def _read_metrics(self) -> list[dict]:
        """metrics.jsonl is a row every few minutes at most: read whole when it changed."""
        version = _version(self.run_dir / "metrics.jsonl")
        if version != self._metrics[0]:
            self._metrics = (version, read_metrics(self.run_dir))
        return list(self._metrics[1])

    def _read_previews(self) -> list[Path]:
        """Listed again only when the folder changed (a grid is added by a rename into it)."""
        version = _version(self.run_dir / "samples")
        if version != self._previews[0]:
            self._previews = (version, list_previews(self.run_dir))
        return list(self._previews[1])

    def _read_samples(self, previews: list[Path]) -> torch.Tensor | None:
        """The first images of the newest preview grid, cut from it once per grid."""
        newest = previews[-1] if previews else None
        if newest != self._samples[0]:
            self._samples = (newest, _tiles(newest) if newest else None)
        return self._samples[1]


def _version(path: Path) -> tuple | None:
    """What changes when the file or folder does: its size and modification time; None if absent."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _tiles(grid_file: Path) -> torch.Tensor | None:
    try:
        with Image.open(grid_file) as grid:
            return grid_tiles(grid, SAMPLES_READ, PREVIEW_COLUMNS)
    except OSError:          # removed by a rollback since it was listed: the next grid comes soon
        return None


def _stats(row: dict) -> StepStats:
    """A log row as StepStats; a field that another version of the studio did not log is None."""
    return StepStats(**{field.name: row.get(field.name) for field in dataclasses.fields(StepStats)})


def _images_per_s(history: list[dict]) -> float:
    """Over the newest RATE_STEPS steps, from the time each took, as the session's Pace does."""
    recent = history[-RATE_STEPS:]
    seconds = sum(row["seconds"] for row in recent)
    batch = recent[-1]["images_seen"] / recent[-1]["step"] if recent else 0
    return batch * len(recent) / seconds if seconds > 0 else 0.0


def _minutes(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
