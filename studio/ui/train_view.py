"""What the Train tab shows of a run, as gradio wants it: the status line, the loss and KID
curves, the newest samples and the time-lapse. Pure functions of a Snapshot, shared by the view's
poll and the status line's own requests (train_tab.py)."""
from __future__ import annotations

import html
import math
import re

import pandas as pd

from ..render import to_pil_images
from ..run_folder import PREVIEW_SEEDS, preview_step
from ..session import ACTIVE_STATES, FAILED, FINISHED, IDLE, PAUSED, STARTING, STOPPING, TRAINING, Snapshot

SAMPLES_SHOWN = 16
TIMELAPSE_SHOWN = 8
PLOT_COLUMNS = ["step", "value", "series"]
LOSS_SERIES = {"loss_g": "G loss", "loss_d": "D loss", "augment_p": "augment p"}
PLOT_POINTS = 200            # per loss curve


def status_html(line: str) -> str:
    """A status line, whose only markup is **bold**, as the HTML the page shows."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(line))


def status_line(snap: Snapshot) -> str:
    """One line an artist can read at a glance: what the run is doing and how fast."""
    run = f"**{snap.run_dir.name}**" if snap.run_dir else ""
    if snap.state == IDLE:
        return "Ready — pick a dataset and a size, then press **Start**."
    if snap.state == STARTING:
        return f"Starting {run}: loading paintings, and on the first run measuring what is fastest here…"
    if snap.state == FAILED:
        return f"**Training failed** ({run}): {snap.error}"
    words = {TRAINING: "Training", PAUSED: "Paused", STOPPING: "Stopping, saving a checkpoint…",
             FINISHED: "Finished, checkpoint saved"}[snap.state]
    parts = [f"{words} {run}"]
    if snap.latest:
        parts.append(f"step {snap.latest.step:,}")
        if snap.measuring:
            parts.append("measuring KID…")
        elif snap.state in ACTIVE_STATES:
            parts.append(f"{snap.images_per_s:.1f} images/s")
            if snap.eta_seconds is not None:
                parts.append(f"ETA {duration(snap.eta_seconds)}")
    if snap.rollback:
        parts.append(snap.rollback)
    if snap.disk_full:
        parts.append(snap.disk_full)
    if snap.metrics:
        newest = snap.metrics[-1]
        parts.append(f"KID {newest['kid'] * 1000:.1f}×10⁻³ at step {newest['step']:,}")
    if snap.metrics_error:
        parts.append(f"KID could not be measured ({snap.metrics_error})")
    if snap.numerics:
        parts.append(snap.numerics)
    if snap.state == FINISHED:
        parts.append("explore it in the Explore tab")
    return " · ".join(parts)


def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


def loss_frame(history: list[dict]) -> pd.DataFrame:
    """Long format, as gr.LinePlot wants: one row per (step, series). A long run's steps are
    averaged into at most about PLOT_POINTS bins: the curves read as trends rather than per-step
    noise, and the browser redraws a few hundred points a second, not thousands. The types are
    explicit because an empty frame's would be guessed as text, and the plot would treat steps
    as labels."""
    frame = pd.DataFrame(history, columns=["step", *LOSS_SERIES])
    span = frame["step"].iloc[-1] - frame["step"].iloc[0] if len(frame) else 0
    if span > PLOT_POINTS:
        # Bins a power of two steps wide, aligned on multiples of it, stay put as the run grows
        # (their width only ever doubles), so the curve does not shift from one poll to the next.
        width = 2 ** math.ceil(math.log2(span / PLOT_POINTS))
        frame = frame.groupby((frame["step"] // width).rename("bin")).mean()
    long = frame.melt(id_vars="step", var_name="series")
    long["series"] = long["series"].map(LOSS_SERIES)
    return long[PLOT_COLUMNS].astype({"step": int, "value": float, "series": str})


def kid_frame(metrics: list[dict]) -> pd.DataFrame:
    rows = [(row["step"], round(row["kid"] * 1000, 1)) for row in metrics]   # as the status line says it
    return pd.DataFrame(rows, columns=["step", "KID x10^3"]).astype({"step": int, "KID x10^3": float})


def newest_samples(snap: Snapshot) -> list[tuple]:
    if snap.samples is None:
        return []
    images = to_pil_images(snap.samples[:SAMPLES_SHOWN])
    return [(image, f"seed {seed}") for seed, image in zip(PREVIEW_SEEDS, images)]


def timelapse_grids(snap: Snapshot) -> list[tuple[str, str]]:
    """Preview grids spread evenly over the whole run, first and newest included, so the strip
    shows how it learned (a run's last preview can repeat its periodic one, so once each)."""
    grids = list(dict.fromkeys(snap.previews))
    if len(grids) > TIMELAPSE_SHOWN:
        last = len(grids) - 1
        grids = [grids[round(i * last / (TIMELAPSE_SHOWN - 1))] for i in range(TIMELAPSE_SHOWN)]
    return [(str(path), f"step {preview_step(path):,}") for path in grids]
