"""The background training session: start, pause, resume, stop, failures, exploring the live run."""
from __future__ import annotations

import json
import os
import threading
import time

import pytest
import torch

from conftest import FAST_CADENCE, TINY, needs_inception, wait_for
from studio.checkpoint import list_checkpoints
from studio.config import TrainConfig
from studio.run import Budget
from studio.session import FAILED, FINISHED, PAUSED, TRAINING, SessionBusy, TrainingSession




@pytest.fixture
def session():
    s = TrainingSession(cadence=FAST_CADENCE)
    yield s
    s.stop(timeout=30)


def test_a_run_trains_to_its_budget_and_leaves_a_checkpoint(session, dataset32, tmp_path):
    session.start(dataset32, tmp_path / "run", TrainConfig(**TINY), Budget(steps=4))
    snap = wait_for(lambda: (s := session.snapshot()).state == FINISHED and s)
    assert snap.latest.step == 4
    assert [row["step"] for row in snap.history] == [1, 2, 3, 4]
    assert snap.numerics == "cpu fp32 contiguous"
    assert snap.samples is not None and snap.samples.shape == (64, 3, 32, 32)
    assert len(snap.previews) >= 1 and all(p.exists() for p in snap.previews)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-000000004.pt"]


@needs_inception
def test_kid_measurements_reach_the_snapshot(session, dataset32, tmp_path):
    session.start(dataset32, tmp_path / "run", TrainConfig(**TINY), Budget(steps=2), kid_minutes=60)
    snap = wait_for(lambda: (s := session.snapshot()).state == FINISHED and s)
    assert [row["step"] for row in snap.metrics] == [2] and snap.metrics[0]["kid"] > 0
    assert not snap.measuring and snap.metrics_error is None


@needs_inception
def test_a_resumed_run_shows_only_what_its_checkpoint_has_seen(session, dataset32, tmp_path):
    session.start(dataset32, tmp_path / "run", TrainConfig(**TINY), Budget(steps=2), kid_minutes=60)
    measured = wait_for(lambda: (s := session.snapshot()).state == FINISHED and s).metrics[0]
    with open(tmp_path / "run" / "log.jsonl", "a") as log:            # logged past the checkpoint, then a crash
        log.write(json.dumps({"step": 3, "loss_g": 0.0, "loss_d": 0.0, "augment_p": 0.0}) + "\n")
    with open(tmp_path / "run" / "metrics.jsonl", "a") as metrics:
        metrics.write(json.dumps({**measured, "step": 3}) + "\n")

    session.resume(tmp_path / "run", Budget(steps=2))                # nothing left to train: shows the record
    snap = wait_for(lambda: (s := session.snapshot()).state == FINISHED and s)
    assert [row["step"] for row in snap.history] == [1, 2]
    assert snap.metrics == [measured]


def test_pause_holds_the_step_count_and_resume_continues(session, dataset32, tmp_path):
    session.start(dataset32, tmp_path / "run", TrainConfig(**TINY), Budget())
    wait_for(lambda: (s := session.snapshot()).latest and s.latest.step >= 2)
    session.pause()
    assert session.snapshot().state == PAUSED
    held = wait_for(lambda: session.snapshot().latest.step)
    time.sleep(0.3)   # a paused run must not advance; give it the chance to
    assert session.snapshot().latest.step <= held + 1
    session.unpause()
    assert session.snapshot().state == TRAINING
    wait_for(lambda: session.snapshot().latest.step >= held + 3)
    session.stop()
    snap = session.snapshot()
    assert snap.state == FINISHED
    assert list_checkpoints(tmp_path / "run")[-1].name == f"step-{snap.latest.step:09d}.pt"


def test_stop_while_paused_saves_and_ends(session, dataset32, tmp_path):
    session.start(dataset32, tmp_path / "run", TrainConfig(**TINY), Budget())
    wait_for(lambda: (s := session.snapshot()).latest and s.latest.step >= 1)
    session.pause()
    session.stop(timeout=30)
    assert session.snapshot().state == FINISHED
    assert list_checkpoints(tmp_path / "run")


def test_only_one_run_at_a_time(session, dataset32, tmp_path):
    session.start(dataset32, tmp_path / "a", TrainConfig(**TINY), Budget())
    with pytest.raises(SessionBusy):
        session.start(dataset32, tmp_path / "b", TrainConfig(**TINY), Budget())


def test_resume_continues_from_the_checkpoint_with_its_history(session, dataset32, tmp_path):
    session.start(dataset32, tmp_path / "run", TrainConfig(**TINY), Budget(steps=3))
    wait_for(lambda: session.snapshot().state == FINISHED)
    session.resume(tmp_path / "run", Budget(steps=5))
    snap = wait_for(lambda: (s := session.snapshot()).state == FINISHED and s)
    assert snap.latest.step == 5
    assert [row["step"] for row in snap.history] == [1, 2, 3, 4, 5]


def test_an_error_in_the_thread_is_reported_and_the_last_checkpoint_kept(session, dataset32, tmp_path, monkeypatch):
    session.start(dataset32, tmp_path / "run", TrainConfig(**TINY), Budget(steps=2))
    wait_for(lambda: session.snapshot().state == FINISHED)
    kept = list_checkpoints(tmp_path / "run")

    from studio import trainer as trainer_module

    def broken_step(self):
        raise RuntimeError("out of memory while training")
    monkeypatch.setattr(trainer_module.Trainer, "step", broken_step)
    session.resume(tmp_path / "run", Budget(steps=10))
    snap = wait_for(lambda: (s := session.snapshot()).state == FAILED and s)
    assert "out of memory while training" in snap.error
    assert list_checkpoints(tmp_path / "run") == kept


def test_a_missing_dataset_fails_with_its_message(session, tmp_path):
    session.start(tmp_path / "nowhere", tmp_path / "run", TrainConfig(**TINY), Budget(steps=2))
    snap = wait_for(lambda: (s := session.snapshot()).state == FAILED and s)
    assert "not a dataset" in snap.error


def test_the_live_generator_renders_what_the_previews_show(session, dataset32, tmp_path):
    assert session.generator() is None
    session.start(dataset32, tmp_path / "run", TrainConfig(**TINY), Budget(steps=3))
    snap = wait_for(lambda: (s := session.snapshot()).state == FINISHED and s)
    generator, config = session.generator()
    from studio.latent import seeds_to_z
    with torch.no_grad():
        rendered = generator(seeds_to_z(list(range(4)), config.z_dim)).clamp(-1, 1)
    torch.testing.assert_close(rendered, snap.samples[:4], atol=1e-5, rtol=0)


def _os_threads() -> int:
    """Threads of this process as the kernel counts them: Python's and OpenMP's workers alike."""
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads through Linux's /proc")
def test_fifty_start_pause_resume_stop_cycles_leave_no_threads_behind(session, dataset32, tmp_path):
    def cycle(first: bool) -> None:
        if first:
            session.start(dataset32, tmp_path / "run", TrainConfig(**TINY), Budget())
        else:
            session.resume(tmp_path / "run", Budget())
        wait_for(lambda: session.snapshot().state == TRAINING)
        session.pause()
        session.unpause()
        session.stop(timeout=30)
        assert session.snapshot().state == FINISHED

    cycle(first=True)                  # the first run starts the pools every later one reuses
    python_threads, threads = threading.active_count(), _os_threads()
    for _ in range(49):
        cycle(first=False)
    assert "training" not in {thread.name for thread in threading.enumerate()}
    assert threading.active_count() <= python_threads
    # A joined thread can still be unwinding in the kernel for a moment; a leaked one never leaves.
    wait_for(lambda: _os_threads() <= threads, timeout=10)
