"""Tests for studio.checkpoint and studio.run: exact resume, crash safety, exports, run folders."""
from __future__ import annotations

import errno
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import studio.checkpoint as checkpoint
import studio.files as files
from conftest import TINY, needs_inception
from studio.checkpoint import (CHECKPOINT_FORMAT, FORMAT_VERSION, GENERATOR_FORMAT, CheckpointError, config_of,
                               export_generator, latest_checkpoint, list_checkpoints, load_checkpoint,
                               load_generator, restore_trainer, save_checkpoint)
from studio.config import TrainConfig
from studio.latent import seed_to_z, seeds_to_z
from studio.render import render_seeds
from studio.run import Budget, Cadence, RunError, TrainingRun
from studio.run_folder import read_log, read_metrics
from studio.trainer import StepStats

REAL_SAVE = torch.save


def stats_without_time(stats: StepStats) -> dict:
    return {k: v for k, v in stats.__dict__.items() if k != "seconds"}


def snapshot(trainer) -> dict[str, dict[str, torch.Tensor]]:
    return {name: {k: v.detach().clone() for k, v in getattr(trainer, name).state_dict().items()}
            for name in ("G", "D", "G_ema")}


def assert_same_weights(a: dict, b: dict) -> None:
    for name in ("G", "D", "G_ema"):
        assert a[name].keys() == b[name].keys()
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), f"{name}.{key} differs"


def step_files(run_dir: Path) -> list[str]:
    return [p.name for p in list_checkpoints(run_dir)]


# ---------------------------------------------------------------- exact resume
def test_resuming_from_a_checkpoint_repeats_the_next_steps_exactly(make_trainer, images32, cpu_fp32, tmp_path):
    # Augmentation on and moving, R1 due right after the save: every piece of state matters.
    trainer = make_trainer(augment_p_init=0.5, ada_interval=1, ada_images_to_full=40, r1_interval=2, seed=3)
    for _ in range(2):
        trainer.step()
    saved = save_checkpoint(trainer, tmp_path)
    assert saved.name == "step-000000002.pt"
    p_at_save = trainer.ada.p
    assert p_at_save != 0.5                                  # ADA has moved p
    expected_stats = [stats_without_time(trainer.step()) for _ in range(2)]
    expected_weights = snapshot(trainer)
    assert expected_stats[0]["r1"] is not None

    path, payload = latest_checkpoint(tmp_path)
    assert path == saved
    assert payload["format"] == CHECKPOINT_FORMAT and payload["version"] == FORMAT_VERSION
    assert config_of(payload) == trainer.config
    restored = restore_trainer(payload, images32, cpu_fp32)
    assert (restored.step_count, restored.images_seen) == (2, 8)
    assert restored.ada.p == p_at_save

    resumed_stats = [stats_without_time(restored.step()) for _ in range(2)]

    assert resumed_stats == expected_stats
    assert_same_weights(snapshot(restored), expected_weights)


def test_keeps_only_the_newest_checkpoints(make_trainer, tmp_path):
    trainer = make_trainer()
    for step in (1, 2, 3, 4, 5, 12):
        trainer.step_count = step
        save_checkpoint(trainer, tmp_path, keep=2)
    assert step_files(tmp_path) == ["step-000000005.pt", "step-000000012.pt"]   # numeric, not text order
    assert latest_checkpoint(tmp_path)[1]["step"] == 12


def test_pruning_never_deletes_the_checkpoint_just_written(make_trainer, tmp_path):
    trainer = make_trainer()
    trainer.step_count = 20
    damaged = save_checkpoint(trainer, tmp_path)
    damaged.write_bytes(damaged.read_bytes()[:100])           # step 20 became unreadable
    trainer.step_count = 11                                     # resumed from an older good one
    written = save_checkpoint(trainer, tmp_path, keep=1)
    assert written.exists()
    assert not damaged.exists()          # the abandoned future is cleared away
    assert latest_checkpoint(tmp_path)[0] == written


# ---------------------------------------------------------------- crashes and full disks
def write_then(error: BaseException):
    def fake_save(obj, file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise error
    return fake_save


def test_ctrl_c_during_a_write_leaves_no_temporary_file(make_trainer, tmp_path, monkeypatch):
    trainer = make_trainer()
    good = save_checkpoint(trainer, tmp_path)
    trainer.step()
    monkeypatch.setattr(checkpoint.torch, "save", write_then(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(trainer, tmp_path)
    assert sorted(checkpoint.checkpoint_dir(tmp_path).iterdir()) == [good]


# A child process that dies (like kill -9 or a power cut) half-way through writing step 2.
DIE_MID_WRITE = """
import os, sys, torch
from studio import checkpoint
from studio.numerics import Numerics

run_dir = sys.argv[1]
_, payload = checkpoint.latest_checkpoint(run_dir)
images = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
trainer = checkpoint.restore_trainer(payload, images, Numerics(torch.device("cpu"), "fp32", False))
trainer.step_count += 1

def die_half_way(obj, file, *args, **kwargs):
    file.write(b"PK\\x03\\x04 half a checkpoint")
    file.flush()
    os._exit(9)                      # no cleanup runs, as in a real crash

torch.save = die_half_way
checkpoint.save_checkpoint(trainer, run_dir)
"""


def test_a_crash_mid_write_leaves_the_previous_checkpoint_loadable(make_trainer, tmp_path):
    trainer = make_trainer()
    trainer.step()
    good = save_checkpoint(trainer, tmp_path)

    crashed = subprocess.run([sys.executable, "-c", DIE_MID_WRITE, str(tmp_path)], capture_output=True, text=True)
    assert crashed.returncode == 9, crashed.stderr

    folder = checkpoint.checkpoint_dir(tmp_path)
    [left] = [p.name for p in folder.iterdir() if p != good]
    assert left.startswith(".step-000000002.") and left.endswith(".partial.pt")   # the half-written file...
    assert step_files(tmp_path) == ["step-000000001.pt"]            # ...is not a checkpoint
    path, payload = latest_checkpoint(tmp_path)
    assert path == good and payload["step"] == 1

    # A newest file cut short some other way (copied half-way, a dying disk) is skipped too.
    (folder / "step-000000003.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    path, payload = latest_checkpoint(tmp_path)
    assert path == good and payload["step"] == 1


def test_no_usable_checkpoint_is_a_clear_error(make_trainer, tmp_path):
    with pytest.raises(CheckpointError, match=r"no usable checkpoint in .*checkpoints$"):
        latest_checkpoint(tmp_path)

    trainer = make_trainer()
    good = save_checkpoint(trainer, tmp_path)
    good.write_bytes(good.read_bytes()[:500])
    with pytest.raises(CheckpointError) as caught:
        latest_checkpoint(tmp_path)
    message = str(caught.value)
    assert message.startswith("no usable checkpoint in")
    assert "step-000000000.pt is damaged or not a checkpoint file" in message


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_a_full_disk_raises_checkpoint_error_and_leaves_no_temporary_file(make_trainer, tmp_path, monkeypatch, where):
    trainer = make_trainer()
    good = save_checkpoint(trainer, tmp_path)
    trainer.step()
    disk_full = OSError(errno.ENOSPC, "No space left on device")
    if where == "write":
        monkeypatch.setattr(checkpoint.torch, "save", write_then(disk_full))
    else:
        def fsync(fd):
            raise disk_full
        monkeypatch.setattr(files.os, "fsync", fsync)

    with pytest.raises(CheckpointError) as caught:
        save_checkpoint(trainer, tmp_path)
    monkeypatch.undo()

    message = str(caught.value)
    assert "step-000000001.pt" in message and "No space left on device" in message
    assert "previous checkpoint is untouched" in message
    assert sorted(checkpoint.checkpoint_dir(tmp_path).iterdir()) == [good]   # no temporary file left
    assert latest_checkpoint(tmp_path)[1]["step"] == 0


def test_a_full_disk_during_export_raises_checkpoint_error(make_trainer, tmp_path, monkeypatch):
    trainer = make_trainer()
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(files.os, "fsync", fsync)
    with pytest.raises(CheckpointError, match="generator.safetensors.*No space left on device"):
        export_generator(trainer, tmp_path / "generator.safetensors")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- generator exports
@pytest.fixture
def saved_run(make_trainer, tmp_path):
    """A run folder with a checkpoint and export of a trainer after 2 steps (trainer returned too)."""
    trainer = make_trainer(seed=5)
    trainer.step()
    trainer.step()
    run_dir = tmp_path / "run"
    path = save_checkpoint(trainer, run_dir)
    export_generator(trainer, run_dir / "generator.safetensors")
    return trainer, run_dir, path


@pytest.mark.parametrize("source", ["run_dir", "checkpoint", "export"])
def test_load_generator_renders_the_trainers_samples(saved_run, source):
    trainer, run_dir, path = saved_run
    location = {"run_dir": run_dir, "checkpoint": path, "export": run_dir / "generator.safetensors"}[source]

    G, config = load_generator(location)

    assert config == trainer.config
    assert not G.training and all(not p.requires_grad for p in G.parameters())
    seeds = [0, 1, 42]
    rendered = render_seeds(G, config.z_dim, seeds)
    expected = trainer.sample(torch.stack([seed_to_z(s, config.z_dim) for s in seeds]))
    assert torch.equal(rendered, expected)
    # The same seed is the same picture whatever else is rendered with it.
    torch.testing.assert_close(render_seeds(G, config.z_dim, [42]), expected[2:], atol=1e-5, rtol=0)


def test_seeds_draw_independent_latents():
    assert torch.equal(seeds_to_z([3, 4], 16)[1], seed_to_z(4, 16))
    assert not torch.equal(seed_to_z(3, 16), seed_to_z(4, 16))


def test_an_export_is_small_and_cannot_resume_training(saved_run):
    _, run_dir, path = saved_run
    export = run_dir / "generator.safetensors"
    assert export.stat().st_size < path.stat().st_size / 2
    with pytest.raises(CheckpointError, match="is a generator export, not a checkpoint"):
        load_checkpoint(export)


class Payload:
    """Not weights: unpickling it would create a file (a stand-in for running any code)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickled_object_is_refused_without_running_it(tmp_path, writer):
    marker = tmp_path / "code-ran"
    path = tmp_path / "gift.pt"
    payload = {"format": GENERATOR_FORMAT, "version": 1, "config": {}, "G_ema": Payload(marker)}
    with open(path, "wb") as file:
        (torch.save if writer == "torch.save" else pickle.dump)(payload, file)

    for load in (load_generator, load_checkpoint):
        with pytest.raises(CheckpointError, match="gift.pt is damaged or not a checkpoint file"):
            load(path)
    assert not marker.exists()


@pytest.mark.parametrize("payload,words", [
    ({"weights": torch.zeros(3)}, "not a GAN Art Studio file"),
    ({"format": CHECKPOINT_FORMAT, "version": FORMAT_VERSION + 1}, "newer version"),
])
def test_foreign_or_future_files_are_refused(tmp_path, payload, words):
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=words):
        load_generator(path)


def test_missing_file_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_generator(tmp_path / "nope.pt")


# ---------------------------------------------------------------- training runs on disk
def test_a_run_writes_checkpoints_samples_export_and_log(dataset32, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    run = TrainingRun.start(dataset32, run_dir, tiny_config)
    assert len(run.trainer.images) == 24

    last = run.train(Budget(steps=3), Cadence(log_every_steps=2))

    assert last.step == 3
    assert step_files(run_dir) == ["step-000000003.pt"]
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step-000000003.png"]
    with Image.open(run_dir / "samples" / "step-000000003.png") as preview:
        assert preview.size == (8 * 34 + 2, 8 * 34 + 2)          # 8x8 grid of 32 px, 2 px gaps
    G, config = load_generator(run_dir / "generator.safetensors")
    assert config == tiny_config
    rows = read_log(run_dir)
    assert [row["step"] for row in rows] == [1, 2, 3]
    assert rows[-1]["images_seen"] == 12
    recorded = json.loads((run_dir / "run.json").read_text())
    assert Path(recorded["dataset"]) == dataset32.resolve()
    assert recorded["config"]["resolution"] == 32


def test_a_run_resumes_where_its_checkpoint_left_off(dataset32, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    TrainingRun.start(dataset32, run_dir, tiny_config).train(Budget(steps=3))
    with open(run_dir / "log.jsonl", "a") as log:      # steps logged after the checkpoint, then a crash
        log.write(json.dumps({"step": 4}) + "\n" + '{"step": 5, "loss')

    run = TrainingRun.resume(run_dir)                   # the dataset comes from run.json
    assert run.trainer.step_count == 3 and run.trainer.images_seen == 12
    assert [row["step"] for row in read_log(run_dir)] == [1, 2, 3]

    last = run.train(Budget(steps=5))

    assert last.step == 5 and last.images_seen == 20
    assert latest_checkpoint(run_dir)[1]["step"] == 5
    assert [row["step"] for row in read_log(run_dir)] == [1, 2, 3, 4, 5]


@needs_inception
def test_a_run_measures_kid_on_its_cadence_and_keeps_it_across_a_resume(dataset32, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    run = TrainingRun.start(dataset32, run_dir, tiny_config)
    measuring = []
    every_step = Cadence(kid_minutes=1e-9, kid_samples=8)

    run.train(Budget(steps=2), every_step, on_measuring=lambda: measuring.append(run.trainer.step_count))

    rows = read_metrics(run_dir)
    assert [row["step"] for row in rows] == measuring == [1, 2]   # and no repeat when the budget ends
    assert rows[0]["n_fake"] == 8 and rows[0]["n_real"] == 24
    assert all(row["kid"] > 0 and row["fid"] > 0 for row in rows)   # two steps in, far from the paintings
    with open(run_dir / "metrics.jsonl", "a") as metrics:           # measured after the checkpoint, then a crash
        metrics.write(json.dumps({**rows[-1], "step": 3}) + "\n")

    run = TrainingRun.resume(run_dir)
    assert [row["step"] for row in read_metrics(run_dir)] == [1, 2]

    run.train(Budget(steps=3), Cadence(kid_minutes=60, kid_samples=8))   # due only at the end of the budget
    assert [row["step"] for row in read_metrics(run_dir)] == [1, 2, 3]


@needs_inception
def test_a_failing_measurement_is_reported_once_and_training_goes_on(dataset32, tiny_config, tmp_path,
                                                                       monkeypatch):
    def dataset_gone(self, samples):
        raise FileNotFoundError("datasets/shapes/manifest.json")
    monkeypatch.setattr(TrainingRun, "measure_kid", dataset_gone)
    run = TrainingRun.start(dataset32, tmp_path / "run", tiny_config)
    failures = []

    last = run.train(Budget(steps=3), Cadence(kid_minutes=1e-9, kid_samples=8), on_metrics_failed=failures.append)

    assert last.step == 3 and step_files(tmp_path / "run") == ["step-000000003.pt"]
    assert failures == ["FileNotFoundError: datasets/shapes/manifest.json"]
    assert read_metrics(tmp_path / "run") == []


@needs_inception
def test_a_stopped_run_ends_without_measuring(dataset32, tiny_config, tmp_path):
    run = TrainingRun.start(dataset32, tmp_path / "run", tiny_config)
    run.train(Budget(steps=5), Cadence(kid_minutes=60, kid_samples=8), should_stop=lambda: run.trainer.step_count >= 1)
    assert read_metrics(tmp_path / "run") == []


def test_starting_again_in_a_used_folder_is_refused(dataset32, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    TrainingRun.start(dataset32, run_dir, tiny_config).train(Budget(steps=1))
    with pytest.raises(RunError, match="already holds a run; resume it"):
        TrainingRun.start(dataset32, run_dir, tiny_config)
    assert step_files(run_dir) == ["step-000000001.pt"]


def test_resuming_an_empty_folder_is_a_run_error(tmp_path):
    with pytest.raises(RunError, match="cannot resume: no usable checkpoint"):
        TrainingRun.resume(tmp_path / "never-trained")


def test_ctrl_c_during_training_still_saves_a_checkpoint(dataset32, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    run = TrainingRun.start(dataset32, run_dir, tiny_config)

    def on_step(stats: StepStats) -> None:
        if stats.step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run.train(Budget(steps=10), on_step=on_step)

    path, payload = latest_checkpoint(run_dir)
    assert path.name == "step-000000002.pt" and payload["step"] == 2
    assert (run_dir / "generator.safetensors").is_file()
    assert TrainingRun.resume(run_dir).trainer.step_count == 2


def test_should_stop_ends_training_with_a_checkpoint(dataset32, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    run = TrainingRun.start(dataset32, run_dir, tiny_config)
    last = run.train(Budget(), should_stop=lambda: run.trainer.step_count >= 2)
    assert last.step == 2
    assert step_files(run_dir) == ["step-000000002.pt"]


def test_a_run_copied_with_its_workspace_resumes_on_the_copied_dataset(dataset32, tmp_path):
    original = tmp_path / "original"
    shutil.copytree(dataset32, original / "datasets" / "shapes")
    run = TrainingRun.start(original / "datasets" / "shapes", original / "checkpoints" / "run",
                            TrainConfig(**TINY))
    run.train(Budget(steps=1), Cadence())
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    shutil.rmtree(original)                          # the old workspace is gone
    resumed = TrainingRun.resume(copy / "checkpoints" / "run")
    assert resumed.dataset_dir == (copy / "datasets" / "shapes").resolve()
    assert resumed.trainer.step_count == 1
