"""A run folder: what a training run writes (run.py), and the readers of it.

RUN_DIR/
  run.json                 dataset path and config, written when the run starts
  checkpoints/step-*.pt    full resumable state, the newest few (see checkpoint.py)
  generator.safetensors    G_ema export, refreshed with every checkpoint (generator.pt before)
  samples/step-*.png       fixed-seed preview grids, a time-lapse of training
  log.jsonl                one StepStats per line, for plots that survive a restart, and a row
                           {"event": "rollback", ...} for each rollback after divergence
  metrics.jsonl            KID and FID of G_ema against the dataset, when measured (Cadence.kid_minutes)

The studio, a run followed from its folder as another process writes it (followed.py), tests and
benchmarks read a run through these, without the training loop. Nothing here writes.
"""
from __future__ import annotations

import json
from pathlib import Path

from .files import read_json_lines

PREVIEW_SEEDS = list(range(64))   # the fixed grid every preview renders
PREVIEW_COLUMNS = 8                # of its contact sheet


def read_record(run_dir: Path) -> dict:
    """run.json's contents; empty when it is missing or damaged."""
    try:
        recorded = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def list_previews(run_dir: Path) -> list[Path]:
    """The run's preview grids on disk, oldest first: its time-lapse."""
    return sorted((run_dir / "samples").glob("step-*.png"))


def preview_step(path: str | Path) -> int:
    """The step a preview grid (`samples/step-*.png`) was rendered at, from its name."""
    return int(Path(path).stem.removeprefix("step-"))


def read_log(run_dir: str | Path) -> list[dict]:
    """The run's StepStats so far (without the rollback rows)."""
    return step_rows(read_json_lines(Path(run_dir) / "log.jsonl"))


def step_rows(rows: list[dict]) -> list[dict]:
    """The StepStats of log rows, without the rollback rows."""
    return [row for row in rows if "event" not in row]


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The run's KID measurements so far: step, images_seen, kid, kid_std, fid, n_real, n_fake."""
    return read_json_lines(Path(run_dir) / "metrics.jsonl")
