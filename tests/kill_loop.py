"""Kill a training run with SIGKILL at random moments, again and again, and check that nothing is lost.

    python tests/kill_loop.py [DATASET_DIR] [--kills 20] [--seed 0] [--max-delay 1.5] [--workdir DIR]

Without DATASET_DIR it draws a small dataset of shapes, as the tests do. The run is a tiny model
whose augmentation probability moves at every step, previewed after every step. Each round starts
`python -m studio train DATASET --out RUN --resume`, kills it (kill -9) at a random moment once it
trains, and checks what it left. Every other process checkpoints after every step too (the
smallest cadence `train` takes), so that kills land inside checkpoint and export writes; the
others every 1.2 s, so that they leave previews and log rows past their newest checkpoint.
After each kill:

- every checkpoint loads, and the newest holds its step, images seen, both optimizers' step
  counts and the augmentation probability the log has for that step;
- generator.safetensors loads; the log holds every step up to that checkpoint once, and so does the
  time-lapse (samples/step-*.png, each a whole PNG);
- the next process says it resumes at that step and, by the time it trains, has removed the
  temporary files of the writes the kill cut short and the previews past that step, and kept
  every preview before it.

A last process then trains a few steps more and ends by itself; its log and time-lapse must hold
each step exactly once, and its log and generator must equal those of the same steps trained
without a kill (so the step count, optimizers, augmentation state and random numbers all
resumed exactly). The children run on one thread, as a bit-for-bit comparison needs.

One line per round goes to stderr; a JSON summary is printed last on stdout, and the exit code
is 1 if any check failed.
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from conftest import TINY, draw_shapes
from studio.checkpoint import list_checkpoints, load_checkpoint, load_generator, step_of
from studio.config import TrainConfig
from studio.data import IngestOptions, ingest
from studio.run import TrainingRun
from studio.run_folder import preview_step, read_log

# ADA moves p at every step (from 0.5, by 4/2000 per step), so a p that does not resume shows.
CONFIG = TrainConfig(**TINY, augment_p_init=0.5, ada_interval=1, ada_images_to_full=2000)
CHECKPOINTS = (("after every step", "1e-9"), ("every 1.2 s", "0.02"))   # in words, and --checkpoint-minutes
FINAL_STEPS = 12            # trained by the last process, which ends by itself
START_TIMEOUT_SECONDS = 300  # only against a child that hangs; no speed is asked for


@dataclass
class Expected:
    """What the next process must find when it opens the run, as the last one left it."""
    step: int
    kept: dict[str, tuple[int, int]]     # previews up to `step`: name -> (inode, mtime)
    stale: dict[str, tuple[int, int]]    # previews past it, which must go
    partials: list[Path]                 # temporary files of writes cut short, which must go


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    resumed_at: list[int] = field(default_factory=list)
    cut_short: dict[str, int] = field(default_factory=dict)   # kills inside a write, by file kind

    def check(self, condition: bool, problem: str) -> bool:
        if not condition:
            self.problems.append(problem)
        return condition


def main() -> int:
    args = parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="kill-loop-"))
    dataset = args.dataset or draw_dataset(work / "dataset")
    run_dir, reference_dir = work / "run", work / "uninterrupted"
    for folder in (run_dir, reference_dir):
        TrainingRun.start(dataset, folder, CONFIG).save()   # a step-0 checkpoint: every process resumes
    children = Children(dataset, work / "children.log")
    report = Report()
    chance = random.Random(args.seed)

    expected = inspect_killed_run(run_dir, report)
    for kill in range(1, args.kills + 1):
        delay, (checkpoints, minutes) = chance.uniform(0, args.max_delay), CHECKPOINTS[kill % 2]
        children.run(run_dir, lambda output: confirm_resume(run_dir, expected, output, report),
                     kill_after=delay, checkpoint_minutes=minutes)
        expected = inspect_killed_run(run_dir, report)
        print(f"kill {kill}, {delay:.2f} s into training, checkpoints {checkpoints}: resumable "
              f"at step {expected.step}, {len(expected.stale)} preview(s) past it, "
              f"{len(expected.partials)} write(s) cut short", file=sys.stderr, flush=True)

    final_step = expected.step + FINAL_STEPS
    result = children.run(run_dir, lambda output: confirm_resume(run_dir, expected, output, report), steps=final_step)
    report.check(result is not None and result["step"] == final_step,
                 f"the last process did not end at step {final_step}: {result}")
    children.run(reference_dir, lambda output: None, steps=final_step)
    check_finished_run(run_dir, final_step, report)
    same = same_as_uninterrupted(run_dir, reference_dir, report)

    print(json.dumps({"kills": args.kills, "writes_cut_short": report.cut_short, "resumed_at": report.resumed_at,
                      "final_step": final_step, "augment_p": result and result["augment_p"],
                      "same_as_uninterrupted": same, "problems": report.problems, "passed": not report.problems,
                      "workdir": str(work)}))
    return 0 if not report.problems else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, nargs="?", metavar="DATASET_DIR",
                        help="an ingested dataset (default: 24 drawn shapes)")
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="of the random kill moments")
    parser.add_argument("--max-delay", type=float, default=1.5, metavar="SECONDS",
                        help="kills land between 0 and this long after a process starts training")
    parser.add_argument("--workdir", type=Path, help="where the runs go (default: a new temporary folder)")
    return parser.parse_args()


def draw_dataset(folder: Path) -> Path:
    shapes = folder.with_name("shapes")
    shapes.mkdir(parents=True)
    for i, image in enumerate(draw_shapes(24, 48, seed=2)):
        image.save(shapes / f"shape{i:02d}.png")
    ingest([shapes], folder, IngestOptions(resolution=CONFIG.resolution))
    return folder


class Children:
    """`python -m studio train --resume` processes, one at a time, on one thread each."""

    def __init__(self, dataset: Path, log: Path):
        self.dataset = dataset
        self.log = log
        self.env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

    def run(self, run_dir: Path, on_training, kill_after: float | None = None, steps: int | None = None,
            checkpoint_minutes: str = CHECKPOINTS[0][1]) -> dict | None:
        """Start one; once it says it trains, call `on_training(lines it printed)`; SIGKILL it
        `kill_after` seconds later, or let it train to `steps` and end. Returns the JSON it
        printed last, if any."""
        budget = ["--steps", str(steps)] if steps else []
        command = [sys.executable, "-m", "studio", "train", str(self.dataset), "--out", str(run_dir), "--resume",
                   "--checkpoint-minutes", checkpoint_minutes, "--preview-minutes", "1e-9", *budget]
        with open(self.log, "a") as stderr:
            child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=self.env)
            output = []
            for line in _lines_of(child):
                output.append(line)
                if line.startswith("Training "):
                    on_training(output)
                    if kill_after is not None:
                        time.sleep(kill_after)
                        child.send_signal(signal.SIGKILL)
                        break
            child.wait()
        if child.returncode not in (0, -signal.SIGKILL):
            raise SystemExit(f"{' '.join(command)} failed with exit code {child.returncode}; see {self.log}")
        return json.loads(output[-1]) if output and output[-1].startswith("{") else None


def _lines_of(child: subprocess.Popen):
    """The child's stdout, line by line, until it ends; a child that prints nothing for
    START_TIMEOUT_SECONDS is hung, and ends the loop."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in child.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)
    threading.Thread(target=read, daemon=True).start()
    try:
        while (line := lines.get(timeout=START_TIMEOUT_SECONDS)) is not None:
            yield line
    except queue.Empty:
        child.kill()
        raise SystemExit(f"{child.args} printed nothing for {START_TIMEOUT_SECONDS} s") from None


# ---------------------------------------------------------------- after a kill
def inspect_killed_run(run_dir: Path, report: Report) -> Expected:
    """Check what a killed process left, and say what its successor must find."""
    checkpoints = list_checkpoints(run_dir)
    for path in checkpoints:
        try:
            load_checkpoint(path)
        except Exception as error:
            report.check(False, f"{path.name} does not load: {error}")
    step = step_of(checkpoints[-1])
    log = read_log(run_dir)
    check_checkpoint(load_checkpoint(checkpoints[-1]), log, report)
    try:
        load_generator(run_dir / "generator.safetensors")
    except Exception as error:
        report.check(False, f"generator.safetensors does not load: {error}")
    logged = [row["step"] for row in log if row["step"] <= step]
    report.check(logged == list(range(1, step + 1)), f"the log up to checkpoint {step} holds steps {logged}")
    previews = {path.name: path for path in (run_dir / "samples").glob("step-*.png")}
    kept = {name: path for name, path in previews.items() if preview_step(path) <= step}
    report.check(sorted(preview_step(path) for path in kept.values()) == list(range(1, step + 1)),
                 f"the time-lapse up to checkpoint {step} is not every step: {sorted(kept)}")
    for path in kept.values():
        report.check(_is_whole_png(path), f"{path.name} is not a whole PNG")
    partials = temporary_files(run_dir)
    for path in partials:
        kind = {"samples": "preview", "checkpoints": "checkpoint"}.get(path.parent.name, path.name.split(".")[1])
        report.cut_short[kind] = report.cut_short.get(kind, 0) + 1
    log_file = run_dir / "log.jsonl"
    if log_file.exists() and not log_file.read_bytes().endswith(b"\n"):
        report.cut_short["log"] = report.cut_short.get("log", 0) + 1
    return Expected(step=step, kept={name: _identity(path) for name, path in kept.items()},
                    stale={name: _identity(path) for name, path in previews.items() if name not in kept},
                    partials=partials)


def check_checkpoint(payload: dict, log: list[dict], report: Report) -> None:
    """The checkpoint holds the state of its step: counts, optimizers, augmentation."""
    step = payload["step"]
    report.check(payload["images_seen"] == step * CONFIG.batch_size,
                 f"checkpoint {step} has seen {payload['images_seen']} images")
    for name in ("opt_g", "opt_d"):
        counts = {int(state["step"]) for state in payload[name]["state"].values()}
        report.check(counts <= {step}, f"checkpoint {step}'s {name} has taken {counts} steps")
    logged = [row["augment_p"] for row in log if row["step"] == step]
    if step:
        report.check(logged == [payload["augment"]["p"]],
                     f"checkpoint {step} has augmentation p {payload['augment']['p']}, the log {logged}")


def temporary_files(run_dir: Path) -> list[Path]:
    """Files that writes cut short left: hidden, with ".partial" in their names."""
    folders = (run_dir, run_dir / "checkpoints", run_dir / "samples")
    return sorted(p for folder in folders if folder.is_dir() for p in folder.iterdir()
                  if p.name.startswith(".") and ".partial" in p.name)


# ---------------------------------------------------------------- when the next one trains
def confirm_resume(run_dir: Path, expected: Expected, output: list[str], report: Report) -> None:
    """Called as soon as the resumed process trains: it must have opened the run at the newest
    checkpoint ("Resuming RUN at step N"), with the folder as of that step."""
    resumed = int(next(line for line in output if line.startswith("Resuming ")).rsplit(" ", 1)[-1])
    report.resumed_at.append(resumed)
    report.check(resumed == expected.step, f"resumed at step {resumed}, not at checkpoint {expected.step}")
    previews = {path.name: _identity(path) for path in (run_dir / "samples").glob("step-*.png")}
    left = [name for name, identity in expected.stale.items() if previews.get(name) == identity]
    report.check(not left, f"previews past step {expected.step} left behind: {left}")
    lost = [name for name, identity in expected.kept.items() if previews.get(name) != identity]
    report.check(not lost, f"previews up to step {expected.step} lost or rewritten: {lost}")
    remaining = [path.name for path in expected.partials if path.exists()]
    report.check(not remaining, f"temporary files of cut-short writes left behind: {remaining}")


# ---------------------------------------------------------------- at the end
def check_finished_run(run_dir: Path, final_step: int, report: Report) -> None:
    every_step = list(range(1, final_step + 1))
    logged = [row["step"] for row in read_log(run_dir)]
    report.check(logged == every_step, f"the log holds steps {logged}, not each of 1..{final_step} once")
    previews = sorted(preview_step(path) for path in (run_dir / "samples").glob("step-*.png"))
    report.check(previews == every_step, f"the time-lapse holds steps {previews}, not each of 1..{final_step} once")
    report.check(step_of(list_checkpoints(run_dir)[-1]) == final_step, f"the newest checkpoint is not {final_step}")
    left = temporary_files(run_dir)
    report.check(not left, f"temporary files left at the end: {[path.name for path in left]}")


def same_as_uninterrupted(run_dir: Path, reference_dir: Path, report: Report) -> bool:
    """Whether the killed run's log and generator equal those of the run that was never killed."""
    def without_time(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    killed, uninterrupted = without_time(read_log(run_dir)), without_time(read_log(reference_dir))
    differing = [a["step"] for a, b in zip(killed, uninterrupted) if a != b]
    same_log = report.check(len(killed) == len(uninterrupted) and not differing,
                            f"the log differs from the uninterrupted run's at steps {differing[:10]}")
    (G, _), (G_reference, _) = (load_generator(folder / "generator.safetensors") for folder in (run_dir, reference_dir))
    same_weights = report.check(all(torch.equal(a, b) for a, b in zip(G.state_dict().values(),
                                                                      G_reference.state_dict().values())),
                                "generator.safetensors differs from the uninterrupted run's")
    return same_log and same_weights


def _identity(path: Path) -> tuple[int, int]:
    """Tells a file apart from one written in its place later."""
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def _is_whole_png(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
        return image.format == "PNG"
    except Exception:
        return False


if __name__ == "__main__":
    sys.exit(main())
