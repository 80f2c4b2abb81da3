"""Generator exports are .safetensors files with their config and provenance in the metadata;
the torch.save exports of earlier versions still load."""
from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from conftest import TINY
from studio import generator_file
from studio.checkpoint import GENERATOR_FORMAT, CheckpointError, export_generator, generator_source, load_generator
from studio.cli import main
from studio.config import TrainConfig
from studio.latent import seeds_to_z
from studio.run import Budget, TrainingRun, export_for_sharing


def metadata(path) -> dict:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length])["__metadata__"]


def test_an_export_is_safetensors_with_config_and_provenance(dataset32, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    TrainingRun.start(dataset32, run_dir, tiny_config).train(Budget(steps=2))
    export = run_dir / "generator.safetensors"

    meta = metadata(export)
    assert meta["format"] == "gan-art-studio/generator"
    assert TrainConfig.from_dict(json.loads(meta["config"])) == tiny_config
    provenance = json.loads(meta["provenance"])
    assert provenance == {"step": 2, "images_seen": 8, "dataset": dataset32.name, "fine_tuned_from": None}
    assert not (run_dir / "generator.pt").exists()


def test_a_run_export_paints_exactly_what_the_trainer_does(make_trainer, tmp_path):
    trainer = make_trainer()
    trainer.step()
    G, _ = load_generator(export_generator(trainer, tmp_path / "generator.safetensors"))
    z = seeds_to_z([0, 1, 2], trainer.config.z_dim)
    assert torch.equal(G(z), trainer.sample(z))


def test_a_shared_half_precision_file_is_half_the_size_and_paints_nearly_the_same(dataset32, tiny_config, tmp_path):
    run_dir = tmp_path / "run"
    run = TrainingRun.start(dataset32, run_dir, tiny_config)
    run.train(Budget(steps=2))
    shared = export_for_sharing(run_dir, tmp_path / "shared.safetensors")

    full = (run_dir / "generator.safetensors").stat().st_size
    assert shared.stat().st_size < 0.6 * full
    z = seeds_to_z(list(range(8)), tiny_config.z_dim)
    G, config = load_generator(shared)
    assert config == tiny_config and next(G.parameters()).dtype == torch.float32
    # Within one 8-bit grey level ([-1, 1] is 255 levels wide) of the full-precision weights.
    assert (G(z) - run.trainer.sample(z)).abs().max() < 2 / 255


def test_half_precision_keeps_a_tensor_it_cannot_hold(tmp_path):
    weights = {"small": torch.full((3,), 1e-9), "large": torch.full((3,), 1e6), "plain": torch.ones(3),
               "count": torch.tensor(7)}
    path = generator_file.write(tmp_path / "g.safetensors", weights, TrainConfig(**TINY), {}, half=True)
    stored = {name: tensor.dtype for name, tensor in load_tensors(path.read_bytes()).items()}
    assert stored == {"small": torch.float32, "large": torch.float32, "plain": torch.float16, "count": torch.int64}
    read, _, _ = generator_file.read(path.read_bytes())
    assert torch.equal(read["small"], weights["small"]) and read["plain"].dtype == torch.float32


def test_an_earlier_torch_export_still_loads(make_trainer, tmp_path):
    trainer = make_trainer()
    old = tmp_path / "run" / "generator.pt"
    old.parent.mkdir()
    torch.save({"format": GENERATOR_FORMAT, "version": 1, "config": trainer.config.to_dict(),
                "G_ema": trainer.G_ema.state_dict()}, old)
    G, config = load_generator(old)
    z = seeds_to_z([3], trainer.config.z_dim)
    assert config == trainer.config and torch.equal(G(z), trainer.sample(z))
    assert generator_source(old.parent) == old          # a run folder of an earlier version explores it


@pytest.mark.parametrize("file, words", [
    (save_tensors({"w": torch.ones(2)}), "has no metadata"),
    (save_tensors({"w": torch.ones(2)}, metadata={"format": "someone/else"}), "not a GAN Art Studio generator"),
    (save_tensors({"w": torch.ones(2)}, metadata={"format": generator_file.FORMAT, "version": "99"}), "newer version"),
    (save_tensors({"w": torch.ones(2)}, metadata={"format": generator_file.FORMAT, "config": "{oops"}), "damaged"),
])
def test_foreign_future_or_damaged_safetensors_are_refused_clearly(tmp_path, file, words):
    path = tmp_path / "gift.safetensors"
    path.write_bytes(file)
    with pytest.raises(CheckpointError, match=words):
        load_generator(path)


def test_the_export_command_writes_a_shareable_file(dataset32, tiny_config, tmp_path, capsys):
    run_dir = tmp_path / "run"
    TrainingRun.start(dataset32, run_dir, tiny_config).train(Budget(steps=2))
    out = tmp_path / "mine.safetensors"
    assert main(["export", str(run_dir), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["out"] == str(out) and printed["step"] == 2 and printed["provenance"]["dataset"] == dataset32.name
    assert load_generator(out)[1] == tiny_config
    assert main(["export", str(run_dir), "--out", str(tmp_path / "mine.pt")]) == 2
    assert "ends in .safetensors" in capsys.readouterr().err
