"""Tests for the projected discriminator: the pretrained weights, what is frozen and what is
saved, and training with it end to end."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import studio.backbone as backbone
from studio.checkpoint import CheckpointError, latest_checkpoint, restore_trainer, save_checkpoint
from studio.cli import main
from studio.packaged import WeightsUnavailable
from studio.projected import ProjectedDiscriminator

PROJECTED = dict(discriminator="projected", projection_size=64)
CHEETAH = 293   # ImageNet class index


def gradio_cheetah() -> Path:
    """A photograph of a cheetah that the gradio wheel ships (a dependency, so always here)."""
    folder = Path(next(iter(importlib.util.find_spec("gradio").submodule_search_locations)))
    return folder / "media_assets" / "images" / "cheetah.jpg"


def test_the_pretrained_weights_recognise_a_photograph():
    # Random weights, or weights loaded into the wrong layers, do not call a cheetah a cheetah.
    network = backbone.load_backbone()
    picture = Image.open(gradio_cheetah()).convert("RGB").resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        probabilities = network((x - 127) / 128).softmax(dim=1)[0]
    assert probabilities.argmax().item() == CHEETAH
    assert probabilities[CHEETAH] > 0.5


def test_the_feature_maps_have_the_documented_scales_and_channels():
    maps = backbone.load_backbone().features(torch.zeros(1, 3, 128, 128))
    assert [m.shape[1] for m in maps] == list(backbone.FEATURE_CHANNELS)
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4]


def test_a_file_with_another_hash_is_refused(tmp_path):
    tampered = tmp_path / "efficientnet-lite0.pth"
    shutil.copy(backbone.weights_path(), tampered)
    with open(tampered, "r+b") as file:
        file.seek(1000)
        byte = file.read(1)
        file.seek(1000)
        file.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(WeightsUnavailable, match="SHA-256 mismatch"):
        backbone.load_backbone(str(tampered))


def test_missing_weights_name_the_fallback_in_one_sentence(monkeypatch, dataset32, tmp_path, capsys):
    monkeypatch.setattr(backbone, "WEIGHTS_PACKAGE", "no_such_package_here")
    with pytest.raises(WeightsUnavailable, match="--discriminator fastgan"):
        ProjectedDiscriminator(8, 64)
    code = main(["train", str(dataset32), "--out", str(tmp_path / "run"), "--res", "32", "--width", "8",
                 "--steps", "1", "--discriminator", "projected", "--precision", "fp32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error:") and "--discriminator fastgan" in err[0]


def test_the_feature_network_is_frozen_and_never_changes(make_trainer):
    trainer = make_trainer(**PROJECTED)
    network = trainer.D.feature_network
    before = {k: v.clone() for k, v in network.state_dict().items()}
    for _ in range(3):
        trainer.step()
    assert all(p.grad is None and not p.requires_grad for p in network.parameters())
    assert not network.training
    for key, value in network.state_dict().items():
        assert torch.equal(value, before[key]), key     # BatchNorm statistics included
    optimised = {id(p) for group in trainer.opt_d.param_groups for p in group["params"]}
    assert optimised.isdisjoint(id(p) for p in network.parameters())


def test_the_random_mixing_is_fixed_by_the_seed_and_not_trained(make_trainer):
    a, b, other = make_trainer(**PROJECTED, seed=1), make_trainer(**PROJECTED, seed=1), make_trainer(**PROJECTED, seed=2)
    mixing = {k: v.clone() for k, v in a.D.projection.state_dict().items()}
    for key, value in b.D.projection.state_dict().items():
        assert torch.equal(value, mixing[key])
    assert not torch.equal(other.D.projection.state_dict()[key], mixing[key])
    for _ in range(2):
        a.step()
    for key, value in a.D.projection.state_dict().items():
        assert torch.equal(value, mixing[key]), key


def test_ds_gradient_reaches_the_generator(make_trainer):
    trainer = make_trainer(**PROJECTED)
    z = torch.randn(4, trainer.config.z_dim)
    trainer.D(trainer.G(z)).mean().backward()
    grads = [p.grad for p in trainer.G.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_checkpoints_hold_the_heads_and_mixing_but_not_the_pretrained_network(make_trainer, tmp_path):
    trainer = make_trainer(**PROJECTED)
    trainer.step()
    save_checkpoint(trainer, tmp_path)
    saved = latest_checkpoint(tmp_path)[1]["D"]
    assert not any(key.startswith("feature_network") for key in saved)
    pretrained = sum(p.numel() for p in trainer.D.feature_network.parameters())
    stored = sum(v.numel() for v in saved.values() if torch.is_tensor(v))
    assert stored < pretrained     # these tiny heads are far smaller than EfficientNet-Lite0
    assert saved["_extra_state"]["sha256"] == backbone.WEIGHTS_SHA256


def test_resuming_a_projected_run_repeats_the_next_steps_exactly(make_trainer, images32, cpu_fp32, tmp_path):
    trainer = make_trainer(**PROJECTED, seed=4)
    trainer.step()
    save_checkpoint(trainer, tmp_path)
    expected = [trainer.step().loss_d for _ in range(2)]
    expected_weights = {k: v.clone() for k, v in trainer.D.state_dict().items() if torch.is_tensor(v)}
    restored = restore_trainer(latest_checkpoint(tmp_path)[1], images32, cpu_fp32)
    assert [restored.step().loss_d for _ in range(2)] == expected
    for key, value in restored.D.state_dict().items():
        if torch.is_tensor(value):
            assert torch.equal(value, expected_weights[key]), key


def test_a_checkpoint_trained_against_other_weights_is_refused(make_trainer, images32, cpu_fp32, tmp_path):
    trainer = make_trainer(**PROJECTED)
    trainer.step()
    save_checkpoint(trainer, tmp_path)
    _, payload = latest_checkpoint(tmp_path)
    payload["D"]["_extra_state"] = {"feature_network": "efficientnet-lite0", "sha256": "0" * 64}
    with pytest.raises(CheckpointError, match="other efficientnet-lite0 weights"):
        restore_trainer(payload, images32, cpu_fp32)


@pytest.mark.parametrize("resolution,width", [(32, 8), (64, 16), (128, 32), (256, 64)])
def test_every_resolution_and_model_size_gives_logits_from_all_four_scales(resolution, width):
    D = ProjectedDiscriminator(width=width, projection_size=64)
    x = torch.rand(2, 3, resolution, resolution) * 2 - 1
    x.requires_grad_(True)
    logits = D(x)
    # At 64 px the mixed maps are 16, 8, 4 and 2 px: two heads end at 8 px (5x5 logits after
    # their 4x4 conv), the coarser two judge their whole map (one logit each).
    assert logits.shape == (2, 25 + 25 + 1 + 1) and torch.isfinite(logits).all()
    (grad,) = torch.autograd.grad(logits.sum(), x)
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("discriminator", ["projected", "fastgan"])
def test_cli_smoke_run_for_each_discriminator(discriminator, dataset32, tmp_path, capsys):
    out = tmp_path / discriminator
    code = main(["train", str(dataset32), "--out", str(out), "--res", "32", "--width", "8", "--batch", "4",
                 "--steps", "3", "--discriminator", discriminator, "--projection-size", "64",
                 "--precision", "fp32", "--memory-format", "contiguous"])
    assert code == 0
    assert f"{discriminator} D" in capsys.readouterr().out
    _, payload = latest_checkpoint(out)
    assert payload["config"]["discriminator"] == discriminator and payload["step"] == 3
