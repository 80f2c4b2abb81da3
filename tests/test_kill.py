"""kill -9 at any moment loses nothing: a run resumes from its newest checkpoint with a history
(log, time-lapse) that goes on without a gap or a repeat, and the temporary files of the writes
a kill cut short are cleared away without touching anything else."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import studio.run as run_module
from conftest import FAST_CADENCE, wait_for
from studio.files import append_json_lines, remove_partials
from studio.run import Budget, Cadence, TrainingRun
from studio.run_folder import preview_step, read_log
from studio.session import FINISHED, TrainingSession

KILL_LOOP = Path(__file__).with_name("kill_loop.py")


def steps_of_previews(run_dir: Path) -> list[int]:
    return sorted(preview_step(path) for path in (run_dir / "samples").glob("step-*.png"))


def dead_pid() -> int:
    """The id of a process that has ended."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def partial_name(target: str, pid: int) -> str:
    """How files.py names the temporary file of a write of `target`, as `pid` would have."""
    stem, suffix = os.path.splitext(target)
    return f".{stem}.{pid}-140000000000000-3.partial{suffix}"


@pytest.fixture
def trained(dataset32, tiny_config, tmp_path) -> Path:
    """A run folder checkpointed at step 3, with its log and a preview of every step."""
    run_dir = tmp_path / "run"
    TrainingRun.start(dataset32, run_dir, tiny_config).train(Budget(steps=3), Cadence(preview_minutes=0))
    return run_dir


# ---------------------------------------------------------------- the loop itself
def test_a_run_killed_four_times_at_random_loses_nothing(tmp_path):
    """The kill loop, with 4 kills: checkpoints intact, resumed at the newest, log and time-lapse
    without a gap or a repeat, the same training as a run never killed."""
    done = subprocess.run([sys.executable, str(KILL_LOOP), "--kills", "4", "--seed", "1", "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)

    assert done.stdout.strip(), done.stderr[-3000:]
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["problems"] == [] and summary["passed"], done.stderr[-3000:]
    assert done.returncode == 0
    assert summary["kills"] == 4 and len(summary["resumed_at"]) == 5       # 4 killed processes and the last one
    assert summary["final_step"] > summary["resumed_at"][-1] >= summary["resumed_at"][0] == 0
    assert summary["same_as_uninterrupted"]


# ---------------------------------------------------------------- what the loop relies on
def test_every_checkpoint_is_written_after_the_log_rows_of_its_steps(dataset32, tiny_config, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    logged_at_checkpoint = {}
    real_save = run_module.save_checkpoint

    def save(trainer, *args):
        logged_at_checkpoint[trainer.step_count] = [row["step"] for row in read_log(run_dir)]
        return real_save(trainer, *args)
    monkeypatch.setattr(run_module, "save_checkpoint", save)

    # A checkpoint after every step, the log flushed only every 10 on its own cadence.
    TrainingRun.start(dataset32, run_dir, tiny_config).train(Budget(steps=3), Cadence(checkpoint_minutes=0))

    assert logged_at_checkpoint == {1: [1], 2: [1, 2], 3: [1, 2, 3]}


def test_resuming_forgets_the_log_rows_and_previews_past_the_checkpoint(trained):
    samples = trained / "samples"
    kept = {path.name: path.read_bytes() for path in samples.iterdir()}
    for step in (4, 5):                              # what a killed process did after its checkpoint
        shutil.copy(samples / "step-000000003.png", samples / f"step-{step:09d}.png")
    append_json_lines(trained / "log.jsonl", [{**read_log(trained)[-1], "step": step} for step in (4, 5)])

    run = TrainingRun.resume(trained)

    assert run.trainer.step_count == 3
    assert [row["step"] for row in read_log(trained)] == [1, 2, 3]
    assert {path.name: path.read_bytes() for path in samples.iterdir()} == kept
    run.train(Budget(steps=5), Cadence(preview_minutes=0))
    assert [row["step"] for row in read_log(trained)] == [1, 2, 3, 4, 5]
    assert steps_of_previews(trained) == [1, 2, 3, 4, 5]


def test_resuming_removes_the_temporary_files_of_killed_writers_and_nothing_else(trained):
    dead, alive = dead_pid(), os.getpid()
    left_by_kills = [trained / partial_name("generator.pt", dead),
                     trained / partial_name("log.jsonl", dead),
                     trained / "checkpoints" / partial_name("step-000000004.pt", dead),
                     trained / "samples" / partial_name("step-000000004.png", dead)]
    others = [trained / "checkpoints" / partial_name("step-000000005.pt", alive),   # a live writer's
              trained / ".notes.txt", trained / "sketch.partial.png", trained / ".sketch.partial.png",
              trained / "samples" / ".step-000000004.png"]
    for path in left_by_kills + others:
        path.write_bytes(b"half a file")
    before = sorted(p for p in trained.rglob("*") if p not in left_by_kills)

    run = TrainingRun.resume(trained)

    assert run.trainer.step_count == 3
    assert sorted(trained.rglob("*")) == before
    assert all(path.read_bytes() == b"half a file" for path in others)


def test_remove_partials_reports_what_it_removed_and_ignores_a_missing_folder(tmp_path):
    left = tmp_path / partial_name("walk.gif", dead_pid())
    left.write_bytes(b"GIF8")
    assert remove_partials(tmp_path) == [left] and not left.exists()
    assert remove_partials(tmp_path / "never-made") == []


def test_starting_again_where_a_killed_start_wrote_no_checkpoint_starts_clean(trained, dataset32, tiny_config):
    shutil.rmtree(trained / "checkpoints")           # killed before its first checkpoint
    (trained / "samples" / partial_name("step-000000004.png", dead_pid())).write_bytes(b"half a PNG")

    TrainingRun.start(dataset32, trained, tiny_config).train(Budget(steps=2), Cadence(preview_minutes=0))

    assert [row["step"] for row in read_log(trained)] == [1, 2]
    assert steps_of_previews(trained) == [1, 2]
    assert sorted(p.name for p in (trained / "samples").iterdir()) == ["step-000000001.png", "step-000000002.png"]


def test_the_studio_shows_the_time_lapse_the_resumed_run_has(trained):
    shutil.copy(trained / "samples" / "step-000000003.png", trained / "samples" / "step-000000004.png")
    session = TrainingSession(cadence=FAST_CADENCE)
    try:
        session.resume(trained, Budget(steps=3))       # nothing left to train: shows the record
        snap = wait_for(lambda: (s := session.snapshot()).state == FINISHED and s)
    finally:
        session.stop(timeout=30)
    assert [preview_step(path) for path in snap.previews] == [1, 2, 3]
