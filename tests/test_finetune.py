"""Fine-tuning: a new run starts from a trained model's weights, in a folder of its own."""
from __future__ import annotations

import json

import pytest
import torch

from studio.checkpoint import latest_checkpoint, load_generator
from studio.cli import main
from studio.finetune import starting_point
from studio.latent import seeds_to_z
from studio.run import Budget, TrainingRun, export_for_sharing
from studio.run_folder import read_log

SEEDS = list(range(8))
HOW = dict(batch_size=4, device="cpu", precision="fp32", memory_format="contiguous")   # TINY's, besides the shape


@pytest.fixture
def source_run(dataset32, tiny_config, tmp_path):
    """A run of 3 steps with a checkpoint, its export, and a shared half-precision file."""
    run_dir = tmp_path / "source"
    TrainingRun.start(dataset32, run_dir, tiny_config).train(Budget(steps=3))
    export_for_sharing(run_dir, tmp_path / "shared.safetensors")
    return run_dir


def renders(source) -> torch.Tensor:
    generator, config = load_generator(source)
    return generator(seeds_to_z(SEEDS, config.z_dim))


@pytest.mark.parametrize("kind", ["run folder", "shared file"])
def test_a_fine_tuned_run_starts_from_the_source_and_keeps_its_own_folder(source_run, dataset32, tiny_config,
                                                                          tmp_path, kind):
    source = source_run if kind == "run folder" else tmp_path / "shared.safetensors"
    before = {path: path.read_bytes() for path in source_run.rglob("*") if path.is_file()}
    start = starting_point(source)
    run = TrainingRun.start(dataset32, tmp_path / "new", start.config_for(**HOW), start)

    # Its first samples are the source's, seed for seed; its step count starts at 0.
    torch.testing.assert_close(run.trainer.sample(seeds_to_z(SEEDS, tiny_config.z_dim)), renders(source),
                               atol=1e-6, rtol=0)
    assert run.trainer.step_count == 0 and run.trainer.config == tiny_config
    # A checkpoint carries its D along; a generator file has none, so D starts afresh.
    source_d = latest_checkpoint(source_run)[1]["D"]
    same_d = all(torch.equal(run.trainer.D.state_dict()[k], v) for k, v in source_d.items())
    assert same_d == (kind == "run folder")

    run.train(Budget(steps=2))
    new = tmp_path / "new"
    assert [row["step"] for row in read_log(new)] == [1, 2]
    recorded = json.loads((new / "run.json").read_text())["fine_tuned_from"]
    assert recorded == start.record() and recorded["step"] == 3
    assert load_generator(new / "generator.safetensors")[1] == tiny_config
    assert {path: path.read_bytes() for path in source_run.rglob("*") if path.is_file()} == before
    # It resumes as its own run, and still says where it came from.
    assert TrainingRun.resume(new).fine_tuned_from == recorded


def test_the_train_command_fine_tunes_with_the_sources_shape(source_run, dataset32, tmp_path, capsys):
    out = tmp_path / "tuned"
    # No --res, --width or --z-dim: the source's are taken (TINY's are not the CLI's defaults).
    assert main(["train", str(dataset32), "--out", str(out), "--from", str(source_run), "--steps", "2",
                 "--batch", "4", "--device", "cpu", "--precision", "fp32", "--memory-format", "contiguous"]) == 0
    assert "Fine-tuning the 32 px fastgan generator" in capsys.readouterr().out
    payload = latest_checkpoint(out)[1]
    assert payload["step"] == 2 and payload["config"]["width"] == latest_checkpoint(source_run)[1]["config"]["width"]


@pytest.mark.parametrize("flags, words", [
    (["--res", "64"], "resolution 32 (this run: 64)"),
    (["--arch", "dcgan"], "architecture fastgan (this run: dcgan)"),
    (["--z-dim", "7"], "z_dim 16 (this run: 7)"),
])
def test_fine_tuning_into_another_shape_is_a_clear_error(source_run, dataset32, tmp_path, capsys, flags, words):
    out = tmp_path / "tuned"
    code = main(["train", str(dataset32), "--out", str(out), "--from", str(source_run), "--steps", "1", *flags])
    error = capsys.readouterr().err
    assert code == 2 and f"cannot fine-tune from {source_run}" in error and words in error
    assert "leave those settings out" in error
    assert not (out / "checkpoints").exists()


def test_from_something_that_is_no_model_is_a_clear_error(dataset32, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for source, words in ((tmp_path / "empty", "holds no checkpoint and no generator export"),
                          (tmp_path / "nowhere", "does not exist")):
        assert main(["train", str(dataset32), "--out", str(tmp_path / "x"), "--from", str(source)]) == 2
        assert words in capsys.readouterr().err
    with pytest.raises(SystemExit):     # argparse: --from starts a new run, --resume continues one
        main(["train", str(dataset32), "--out", str(tmp_path / "x"), "--from", str(tmp_path), "--resume"])
