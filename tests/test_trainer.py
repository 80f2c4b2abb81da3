"""Tests for studio.trainer, studio.augment, studio.losses and the numerics choice."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

from studio import losses
from studio.augment import AdaptiveProbability, augment
from studio.config import AUGMENTATIONS, TrainConfig
from studio.numerics import Numerics, _cache_path, choose_numerics
from studio.trainer import StepStats, Trainer


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    now = dict(module.named_parameters())
    return any(not torch.equal(before[name], now[name].detach()) for name in before)


def finite(stats: StepStats) -> bool:
    values = [stats.loss_g, stats.loss_d, stats.loss_reconstruction]
    return all(math.isfinite(v) for v in values) and (stats.r1 is None or math.isfinite(stats.r1))


def without_time(stats: StepStats) -> StepStats:
    return StepStats(**{**stats.__dict__, "seconds": 0.0})


# ---------------------------------------------------------------- one training step
def test_step_updates_g_d_and_g_ema(make_trainer):
    trainer = make_trainer()
    G, D, G_ema = params(trainer.G), params(trainer.D), params(trainer.G_ema)

    stats = trainer.step()

    assert finite(stats)
    assert changed(G, trainer.G) and changed(D, trainer.D) and changed(G_ema, trainer.G_ema)
    assert all(not p.requires_grad for p in trainer.G_ema.parameters())
    assert all(p.requires_grad for p in trainer.D.parameters())   # G's step must give them back


def test_step_stats_count_steps_and_images(make_trainer):
    trainer = make_trainer()
    first, second = trainer.step(), trainer.step()
    assert (first.step, first.images_seen) == (1, 4)
    assert (second.step, second.images_seen) == (2, 8)
    assert (trainer.step_count, trainer.images_seen) == (2, 8)
    for stats in (first, second):
        assert finite(stats)
        assert 0.0 <= stats.augment_p <= 1.0
        assert -1.0 <= stats.real_sign <= 1.0
        assert stats.loss_reconstruction > 0       # FastGAN's D reconstructs the reals


def test_r1_is_applied_lazily_every_r1_interval_steps(make_trainer):
    trainer = make_trainer(r1_interval=16)
    first, second = trainer.step(), trainer.step()
    assert first.r1 is not None and math.isfinite(first.r1) and first.r1 >= 0
    assert second.r1 is None


@pytest.mark.parametrize("changes", [{"r1_gamma": 0.0}, {"loss": "wgan-gp"}])
def test_r1_is_off_without_gamma_and_for_wgan_gp(make_trainer, changes):
    assert make_trainer(**changes).step().r1 is None


@pytest.mark.parametrize("changes", [
    {"loss": "bce"},
    {"loss": "wgan-gp"},
    {"architecture": "dcgan", "discriminator": "dcgan"},
    {"architecture": "dcgan", "discriminator": "dcgan", "resolution": 16, "loss": "bce"},
    {"discriminator": "projected", "projection_size": 64},
    {"architecture": "dcgan", "discriminator": "projected", "projection_size": 64, "resolution": 16},
])
def test_other_losses_and_discriminators_train_with_finite_losses(make_trainer, changes):
    trainer = make_trainer(**changes)
    G = params(trainer.G)
    for expected_step in (1, 2):
        stats = trainer.step()
        assert stats.step == expected_step and finite(stats)
    assert changed(G, trainer.G)
    if trainer.config.discriminator != "fastgan":     # only FastGAN's D reconstructs the reals
        assert stats.loss_reconstruction == 0.0


def test_augmentation_on_during_training_keeps_losses_finite(make_trainer):
    trainer = make_trainer(augment_p_init=1.0, adaptive_augment=False)
    for _ in range(2):
        stats = trainer.step()
        assert finite(stats) and stats.augment_p == 1.0


def test_training_is_reproducible_for_a_seed(make_trainer):
    a, b, other = make_trainer(seed=7), make_trainer(seed=7), make_trainer(seed=8)
    assert all(torch.equal(x, y) for x, y in zip(a.G.state_dict().values(), b.G.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.G.state_dict().values(), other.G.state_dict().values()))
    assert [without_time(a.step()) for _ in range(2)] == [without_time(b.step()) for _ in range(2)]


def test_trainer_does_not_disturb_the_global_rng(make_trainer):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    trainer = make_trainer()
    trainer.step()
    assert torch.equal(torch.rand(3), expected)


def test_trainer_rejects_images_it_cannot_train_on(tiny_config, cpu_fp32, images32):
    with pytest.raises(ValueError, match="uint8"):
        Trainer(tiny_config, images32.float(), cpu_fp32)
    with pytest.raises(ValueError, match="64 px"):
        Trainer(tiny_config.replace(resolution=64), images32, cpu_fp32)


# ---------------------------------------------------------------- sampling
def test_sample_is_deterministic_per_latent(make_trainer):
    trainer = make_trainer()
    trainer.step()
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    other = torch.randn(3, 16, generator=torch.Generator().manual_seed(1))

    images = trainer.sample(z)

    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.float32 and images.device.type == "cpu"
    assert images.min() >= -1 and images.max() <= 1
    assert torch.equal(trainer.sample(z), images)
    assert not torch.allclose(trainer.sample(other), images)


def test_sampling_does_not_change_training(make_trainer):
    """Previews are rendered between steps: they must not perturb the run."""
    quiet, previewing = make_trainer(), make_trainer()
    z = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    quiet_stats, preview_stats = [], []
    for _ in range(2):
        quiet_stats.append(without_time(quiet.step()))
        previewing.sample(z)
        preview_stats.append(without_time(previewing.step()))
    assert quiet_stats == preview_stats


# ---------------------------------------------------------------- augmentation
def batch(seed: int = 0, n: int = 8, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_augment_with_p0_and_no_flip_is_the_identity():
    x = batch()
    out = augment(x, 0.0, AUGMENTATIONS, False, torch.Generator().manual_seed(0))
    assert torch.equal(out, x)


def test_flip_alone_mirrors_some_images_and_keeps_the_others():
    x = batch(n=16)
    out = augment(x, 1.0, (), True, torch.Generator().manual_seed(0))
    kept = [torch.equal(o, i) for o, i in zip(out, x)]
    mirrored = [torch.equal(o, i.flip(2)) for o, i in zip(out, x)]
    assert all(k or m for k, m in zip(kept, mirrored))
    assert any(kept) and any(mirrored)


def test_flips_follow_p_so_they_cannot_leak_into_the_samples():
    x = batch(n=64)
    assert torch.equal(augment(x, 0.0, (), True, torch.Generator().manual_seed(0)), x)
    out = augment(x, 0.25, (), True, torch.Generator().manual_seed(0))
    mirrored = sum(not torch.equal(o, i) for o, i in zip(out, x))
    assert 0 < mirrored < 64 * 0.3          # about p/2 of them: most images keep their orientation


@pytest.mark.parametrize("policy", [("color",), ("translation",), ("cutout",), AUGMENTATIONS])
def test_augment_with_p1_changes_images(policy):
    x = batch()
    out = augment(x, 1.0, policy, False, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()
    differs = [not torch.allclose(o, i) for o, i in zip(out, x)]
    assert sum(differs) >= len(x) // 2


def test_augment_is_reproducible_from_its_generator():
    x = batch()
    first = augment(x, 0.7, AUGMENTATIONS, True, torch.Generator().manual_seed(5))
    again = augment(x, 0.7, AUGMENTATIONS, True, torch.Generator().manual_seed(5))
    other = augment(x, 0.7, AUGMENTATIONS, True, torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_augment_is_differentiable():
    x = batch().requires_grad_(True)
    weights = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    out = augment(x, 1.0, AUGMENTATIONS, True, torch.Generator().manual_seed(0))
    (out * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def controller(p: float = 0.5, interval: int = 1, enabled: bool = True) -> AdaptiveProbability:
    return AdaptiveProbability(p, target=0.6, interval_steps=interval, images_to_full=80, enabled=enabled)


def logits(value: float, n: int = 8) -> torch.Tensor:
    return torch.full((n, 25), value)


def test_ada_raises_p_when_d_is_sure_about_reals_and_lowers_it_otherwise():
    ada = controller(0.5)
    ada.observe(logits(5.0))
    raised = ada.p
    assert raised == pytest.approx(0.5 + 8 / 80)
    ada.observe(logits(-5.0))
    ada.observe(logits(-5.0))
    assert ada.p == pytest.approx(raised - 2 * 8 / 80)


def test_ada_keeps_p_between_0_and_1():
    low, high = controller(0.05), controller(0.95)
    for _ in range(5):
        low.observe(logits(-3.0))
        high.observe(logits(3.0))
    assert low.p == 0.0 and high.p == 1.0


def test_ada_returns_to_exactly_0_so_augmentation_is_off_again():
    ada = AdaptiveProbability(0.0, target=0.6, interval_steps=1, images_to_full=100_000, enabled=True)
    for value in [5.0] * 7 + [-5.0] * 7:        # float sums of 8e-5 would leave 8e-20
        ada.observe(logits(value))
    assert ada.p == 0.0


def test_ada_adjusts_only_every_interval_and_not_when_disabled():
    ada = controller(0.5, interval=3)
    ada.observe(logits(5.0))
    ada.observe(logits(5.0))
    assert ada.p == 0.5
    ada.observe(logits(5.0))
    assert ada.p == pytest.approx(0.5 + 24 / 80)     # all images of the interval count
    off = controller(0.5, enabled=False)
    off.observe(logits(5.0))
    assert off.p == 0.5


def test_ada_state_round_trip_continues_identically():
    ada = controller(0.3, interval=2)
    ada.observe(logits(2.0))                            # mid-interval: the partial sums matter
    copy = controller(0.9, interval=2)
    copy.load_state_dict(json.loads(json.dumps(ada.state_dict())))
    assert copy.state_dict() == ada.state_dict()
    for value in (-1.0, 3.0, 3.0):
        ada.observe(logits(value))
        copy.observe(logits(value))
        assert copy.p == ada.p


# ---------------------------------------------------------------- losses
def test_losses_reward_the_right_side():
    sure_real, sure_fake = torch.full((4, 25), 2.0), torch.full((4, 25), -2.0)
    assert losses.discriminator_loss("hinge", sure_real, sure_fake).item() == 0.0
    for kind in ("hinge", "bce", "wgan-gp"):
        good = losses.discriminator_loss(kind, sure_real, sure_fake)
        bad = losses.discriminator_loss(kind, sure_fake, sure_real)
        assert good < bad
        assert losses.generator_loss(kind, sure_real) < losses.generator_loss(kind, sure_fake)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.discriminator_loss("nope", sure_real, sure_fake)


def test_r1_penalty_is_zero_for_a_flat_discriminator_and_positive_otherwise():
    reals = batch(n=4).requires_grad_(True)
    assert losses.r1_penalty((reals * 0).sum(dim=(1, 2, 3)), reals).item() == 0.0
    reals = batch(n=4).requires_grad_(True)
    penalty = losses.r1_penalty((reals * 3).sum(dim=(1, 2, 3)), reals)
    assert penalty.item() == pytest.approx(9 * 3 * 32 * 32)


# ---------------------------------------------------------------- numerics choice
def test_choose_numerics_measures_once_and_caches_under_xdg_cache_home():
    config = TrainConfig(resolution=32, width=8, device="cpu", precision="fp32", memory_format="auto")
    timings = {False: 2.0, True: 1.0}
    calls = []

    def seconds_per_step(numerics: Numerics) -> float:
        calls.append(numerics)
        return timings[numerics.channels_last]

    chosen = choose_numerics(config, seconds_per_step)
    assert chosen.channels_last and chosen.precision == "fp32" and len(calls) == 2
    assert _cache_path().is_file()
    assert _cache_path().is_relative_to(os.environ["XDG_CACHE_HOME"])

    again = choose_numerics(config, lambda n: pytest.fail("the cached answer should be used"))
    assert again == chosen


def test_choose_numerics_falls_back_to_fp32_contiguous_when_nothing_is_finite():
    config = TrainConfig(resolution=32, width=8, device="cpu", precision="fp32", memory_format="auto")
    chosen = choose_numerics(config, lambda n: math.inf)
    assert (chosen.precision, chosen.channels_last) == ("fp32", False)


def test_fixed_numerics_need_no_probe(tiny_config, images32):
    trainer = Trainer(tiny_config, images32)      # precision and layout fixed: nothing to measure
    assert trainer.numerics.describe() == "cpu fp32 contiguous"
    assert not _cache_path().exists()
