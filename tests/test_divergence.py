"""Divergence: a NaN or an exploding gradient is caught, the run rolls back to its last good
checkpoint with lower learning rates, gives up after a few tries, and never writes broken weights."""
from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

import studio.checkpoint as checkpoint
from conftest import FAST_CADENCE, TINY, wait_for
from studio import losses
from studio import generator_file
from studio.checkpoint import CheckpointError, export_generator, latest_checkpoint, list_checkpoints, load_generator
from studio.cli import main
from studio.config import TrainConfig
from studio.files import read_json_lines
from studio.run import MAX_ROLLBACKS, Budget, Cadence, Diverged, TrainingRun
from studio.run_folder import preview_step, read_log
from studio.session import FINISHED, TrainingSession
from studio.trainer import Trainer

LR = TrainConfig.lr_g                     # both networks' default
EVERY_STEP = Cadence(log_every_steps=1)


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What an optimizer step changes (a forward pass in training mode moves BatchNorm's statistics too)."""
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def poison(module: torch.nn.Module) -> None:
    """One weight becomes NaN, as after a step that blew up."""
    with torch.no_grad():
        next(module.parameters()).view(-1)[0] = math.nan


def nan_generator_loss(monkeypatch, when=lambda call: True) -> None:
    """G's loss is NaN on the calls (counted from 1, one per step) that `when` picks."""
    real, calls = losses.generator_loss, itertools.count(1)

    def poisoned(kind, logits):
        loss = real(kind, logits)
        return loss * math.nan if when(next(calls)) else loss
    monkeypatch.setattr(losses, "generator_loss", poisoned)


@pytest.fixture
def written(monkeypatch) -> list[str]:
    """The names of the checkpoints and exports written, each checked finite as it is written."""
    real_checkpoint, real_export, names = checkpoint.write_torch, generator_file.write, []

    def check(path, networks: dict) -> None:
        for network, weights in networks.items():
            for key, tensor in weights.items():
                if tensor.is_floating_point():
                    assert tensor.isfinite().all(), f"{path.name}: {network}.{key} is not finite"
        names.append(path.name)

    def checked_checkpoint(path, payload):
        check(path, {network: payload[network] for network in ("G", "D", "G_ema")})
        return real_checkpoint(path, payload)

    def checked_export(path, weights, *args):
        check(path, {"G_ema": weights})
        return real_export(path, weights, *args)
    monkeypatch.setattr(checkpoint, "write_torch", checked_checkpoint)
    monkeypatch.setattr(generator_file, "write", checked_export)
    return names


def lrs(trainer: Trainer) -> tuple[float, ...]:
    """The learning rates in the config and in each optimizer."""
    return (trainer.config.lr_g, trainer.config.lr_d,
            *(group["lr"] for opt in (trainer.opt_g, trainer.opt_d) for group in opt.param_groups))


# ---------------------------------------------------------------- the trainer notices
def test_a_nan_loss_of_g_takes_no_step_of_g(make_trainer, monkeypatch):
    trainer = make_trainer()
    assert trainer.step().diverged is None
    G, D, G_ema = parameters(trainer.G), parameters(trainer.D), weights(trainer.G_ema)
    nan_generator_loss(monkeypatch)

    stats = trainer.step()

    assert stats.diverged == "G's loss is nan"
    assert stats.step == 2 and trainer.step_count == 1 and trainer.images_seen == 4   # the step does not count
    assert_same(parameters(trainer.G), G)
    assert_same(weights(trainer.G_ema), G_ema)
    assert not all(torch.equal(v, D[k]) for k, v in parameters(trainer.D).items())   # D stepped first


def test_a_nan_weight_stops_the_step_before_either_network_moves(make_trainer):
    trainer = make_trainer()
    poison(trainer.D)
    G, D, G_ema = parameters(trainer.G), parameters(trainer.D), weights(trainer.G_ema)

    stats = trainer.step()

    assert stats.diverged == "D's loss is nan" and trainer.step_count == 0
    assert math.isnan(stats.loss_g) and math.isnan(stats.loss_d)
    assert_same(parameters(trainer.G), G)
    assert all(torch.equal(v, D[k]) for k, v in parameters(trainer.D).items() if v.isfinite().all())
    assert_same(weights(trainer.G_ema), G_ema)


def test_an_exploding_gradient_norm_is_divergence(make_trainer, monkeypatch):
    real = losses.discriminator_loss
    monkeypatch.setattr(losses, "discriminator_loss", lambda kind, r, f: real(kind, r, f) * 1e12)
    trainer = make_trainer()
    D = parameters(trainer.D)

    stats = trainer.step()

    assert stats.diverged.startswith("D's gradient norm is ") and float(stats.diverged.split()[-1]) > 1e7
    assert_same(parameters(trainer.D), D)


# ---------------------------------------------------------------- never written broken
def test_non_finite_weights_are_never_written(make_trainer, tmp_path):
    trainer = make_trainer()
    trainer.step()
    checkpoint.save_checkpoint(trainer, tmp_path)
    export_generator(trainer, tmp_path / "generator.safetensors")
    good = (tmp_path / "generator.safetensors").read_bytes()
    trainer.step()

    poison(trainer.D)
    with pytest.raises(CheckpointError, match=r"not writing .*step-000000002.pt: D hold NaN or infinite weights"):
        checkpoint.save_checkpoint(trainer, tmp_path)
    poison(trainer.G_ema)
    with pytest.raises(CheckpointError, match="G_ema hold NaN or infinite weights; the previous file is untouched"):
        export_generator(trainer, tmp_path / "generator.safetensors")

    # Nothing half-written either.
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-000000001.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints", "generator.safetensors"]
    assert (tmp_path / "generator.safetensors").read_bytes() == good


def test_ctrl_c_with_broken_weights_keeps_the_last_good_checkpoint(dataset32, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    run = TrainingRun.start(dataset32, run_dir, tiny_config)
    run.train(Budget(steps=2))
    good = (run_dir / "generator.safetensors").read_bytes()

    def on_step(stats):
        poison(run.trainer.G)
        raise KeyboardInterrupt

    with pytest.raises(CheckpointError, match="G hold NaN"):
        run.train(Budget(steps=5), on_step=on_step)
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-000000002.pt"]
    assert (run_dir / "generator.safetensors").read_bytes() == good


# ---------------------------------------------------------------- the run rolls back
def test_a_nan_rolls_back_to_the_last_checkpoint_with_lower_learning_rates(dataset32, tiny_config, tmp_path,
                                                                             written):
    run_dir = tmp_path / "run"
    run = TrainingRun.start(dataset32, run_dir, tiny_config)
    run.train(Budget(steps=3), EVERY_STEP)
    good = (run_dir / "generator.safetensors").read_bytes()
    poisoned, seen = [], []

    def on_step(stats):
        if stats.step == 4 and not poisoned:   # once: the step after it blows up
            poison(run.trainer.G)
            poisoned.append(stats.step)

    def on_rollback(rollback):
        seen.append(rollback)
        assert (run_dir / "generator.safetensors").read_bytes() == good     # the newest good export, untouched
        assert max(preview_step(p) for p in (run_dir / "samples").iterdir()) == 3   # previews past it forgotten

    last = run.train(Budget(steps=6), Cadence(log_every_steps=1, preview_minutes=0), on_step=on_step,
                     on_rollback=on_rollback)

    (rollback,) = seen
    assert (rollback.step, rollback.diverged_at, rollback.reason, rollback.attempt) == (3, 5, "D's loss is nan", 1)
    assert rollback.lr_g == rollback.lr_d == LR / 2
    assert rollback.describe() == ("diverged at step 5 (D's loss is nan): rolled back to step 3, learning rates "
                                   "lowered to 0.0001 (G) and 0.0001 (D), try 1 of 3")
    assert last.step == 6 and run.trainer.step_count == 6 and run.rollbacks == [rollback]
    assert lrs(run.trainer) == (LR / 2,) * 4
    path, payload = latest_checkpoint(run_dir)                        # later checkpoints record them
    assert payload["step"] == 6 and payload["config"]["lr_g"] == payload["config"]["lr_d"] == LR / 2
    rows = read_json_lines(run_dir / "log.jsonl")
    assert [row["step"] for row in rows] == [1, 2, 3, 3, 4, 5, 6]
    assert rows[3] == {"event": "rollback", "step": 3, "diverged_at": 5, "reason": "D's loss is nan",
                       "lr_g": LR / 2, "lr_d": LR / 2, "attempt": 1}
    logged = read_log(run_dir)                                        # what the loss plot reads
    assert [row["step"] for row in logged] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(row["loss_g"]) and math.isfinite(row["loss_d"]) for row in logged)
    # The checkpoint rolled back to was saved again with the lowered rates; every file was finite.
    assert written == ["step-000000003.pt", "generator.safetensors", "step-000000003.pt", "step-000000006.pt",
                       "generator.safetensors"]
    generator, _ = load_generator(run_dir / "generator.safetensors")
    assert all(t.isfinite().all() for t in generator.state_dict().values() if t.is_floating_point())


def test_repeated_divergence_gives_up_with_a_clear_message(dataset32, tiny_config, tmp_path, monkeypatch, written):
    run_dir = tmp_path / "run"
    run = TrainingRun.start(dataset32, run_dir, tiny_config)
    run.train(Budget(steps=2))
    good = (run_dir / "generator.safetensors").read_bytes()
    nan_generator_loss(monkeypatch)

    with pytest.raises(Diverged) as raised:
        run.train(Budget(steps=10))

    assert str(raised.value) == (
        f"still diverging after {MAX_ROLLBACKS} rollbacks (at step 3: G's loss is nan), with the learning rates "
        "down to 2.5e-05 (G) and 2.5e-05 (D). The checkpoint at step 2 and generator.safetensors are the last good state: "
        "continue the run to try again with still lower learning rates, or start a new one with another "
        "discriminator")
    assert [(r.step, r.diverged_at, r.attempt, r.lr_g) for r in run.rollbacks] == \
        [(2, 3, 1, LR / 2), (2, 3, 2, LR / 4), (2, 3, 3, LR / 8)]
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-000000002.pt"]
    assert (run_dir / "generator.safetensors").read_bytes() == good
    assert written[2:] == ["step-000000002.pt"] * MAX_ROLLBACKS      # the same good state, lower rates
    assert [row.get("event") for row in read_json_lines(run_dir / "log.jsonl")] == [None, None] + ["rollback"] * 3
    assert lrs(TrainingRun.resume(run_dir).trainer) == (LR / 8,) * 4  # continuing starts from the lowest


def test_divergence_before_the_first_checkpoint_starts_again_from_step_0(dataset32, tiny_config, tmp_path,
                                                                           monkeypatch):
    run_dir = tmp_path / "run"
    run = TrainingRun.start(dataset32, run_dir, tiny_config)
    initial = weights(run.trainer.G)
    nan_generator_loss(monkeypatch, when=lambda call: call == 3)
    at_rollback = []

    def on_rollback(rollback):
        at_rollback.append((rollback.step, run.trainer.step_count, run.trainer.images_seen, weights(run.trainer.G)))

    last = run.train(Budget(steps=4), EVERY_STEP, on_rollback=on_rollback)

    ((step, step_count, images_seen, G),) = at_rollback
    assert step == step_count == images_seen == 0
    assert_same(G, initial)
    assert last.step == 4 and [row["step"] for row in read_log(run_dir)] == [1, 2, 3, 4]
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-000000000.pt", "step-000000004.pt"]
    assert latest_checkpoint(run_dir)[1]["config"]["lr_g"] == LR / 2


# ---------------------------------------------------------------- it says so
def test_the_studio_status_line_says_it_rolled_back(dataset32, tmp_path, monkeypatch):
    from studio.ui.train_view import status_line

    nan_generator_loss(monkeypatch, when=lambda call: call == 3)
    session = TrainingSession(cadence=FAST_CADENCE)
    try:
        session.start(dataset32, tmp_path / "run", TrainConfig(**TINY), Budget(steps=4))
        snap = wait_for(lambda: (s := session.snapshot()).state == FINISHED and s)
    finally:
        session.stop(timeout=30)

    assert snap.rollback == ("diverged at step 3 (G's loss is nan): rolled back to step 0, learning rates "
                             "lowered to 0.0001 (G) and 0.0001 (D), try 1 of 3")
    assert snap.rollback in status_line(snap)
    assert snap.config.lr_g == LR / 2
    assert [row["step"] for row in snap.history] == [1, 2, 3, 4]
    steps = [preview_step(p) for p in snap.previews]   # the final preview may repeat the last periodic one
    assert steps == sorted(steps) and set(steps) == {1, 2, 3, 4} and all(p.exists() for p in snap.previews)


def test_the_cli_says_when_it_rolls_back_and_when_it_gives_up(dataset32, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    tiny = ["--res", "32", "--width", "8", "--batch", "4", "--precision", "fp32", "--memory-format", "contiguous",
            "--device", "cpu"]   # fixed, so no speed probe takes a step
    nan_generator_loss(monkeypatch, when=lambda call: call == 2)

    assert main(["train", str(dataset32), "--out", str(run_dir), *tiny, "--steps", "3"]) == 0

    captured = capsys.readouterr()
    assert "Training diverged at step 2 (G's loss is nan): rolled back to step 0" in captured.err
    assert json.loads(captured.out.splitlines()[-1])["rollbacks"] == 1

    nan_generator_loss(monkeypatch)
    assert main(["train", str(dataset32), "--out", str(run_dir), "--resume", "--steps", "10"]) == 2

    captured = capsys.readouterr()
    assert captured.err.count("Training diverged at step 4") == MAX_ROLLBACKS
    assert "error: still diverging after 3 rollbacks (at step 4: G's loss is nan)" in captured.err
    assert "Traceback" not in captured.err
    assert latest_checkpoint(run_dir)[1]["step"] == 3
