"""Tests for studio.models and studio.config: network shapes and ranges, configuration checks."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from studio.config import ConfigError, TrainConfig
from studio.models import build_discriminator, build_generator

BATCH = 3
Z_DIM = 16

SHAPES = [
    ("fastgan", 32, 8),
    ("fastgan", 64, 4),
    ("fastgan", 128, 4),
    ("fastgan", 32, 1),     # the narrowest width still builds
    ("dcgan", 16, 8),
    ("dcgan", 32, 4),
    ("dcgan", 64, 8),
]


def pair(architecture: str, resolution: int, width: int):
    config = TrainConfig(architecture=architecture, discriminator=architecture, resolution=resolution,
                         width=width, z_dim=Z_DIM)
    return build_generator(config), build_discriminator(config)


@pytest.mark.parametrize("architecture,resolution,width", SHAPES)
def test_generator_renders_images_in_range(architecture, resolution, width):
    G, _ = pair(architecture, resolution, width)
    z = torch.randn(BATCH, Z_DIM, generator=torch.Generator().manual_seed(0))
    for mode in (G.train, G.eval):
        mode()
        with torch.no_grad():
            images = G(z)
        assert images.shape == (BATCH, 3, resolution, resolution)
        assert images.dtype == torch.float32
        assert torch.isfinite(images).all()
        assert images.min() >= -1 and images.max() <= 1
        assert images.std() > 0     # not a constant picture


@pytest.mark.parametrize("architecture,resolution,width", SHAPES)
def test_discriminator_gives_a_patch_of_logits_per_image(architecture, resolution, width):
    G, D = pair(architecture, resolution, width)
    x = torch.rand(BATCH, 3, resolution, resolution, generator=torch.Generator().manual_seed(0)) * 2 - 1
    logits = D(x)
    assert logits.dim() == 2 and logits.shape[0] == BATCH and logits.shape[1] >= 1
    assert torch.isfinite(logits).all()
    # Gradients reach the images (needed by R1 and by G's loss).
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x)
    assert grad.shape == x.shape and grad.abs().sum() > 0


@pytest.mark.parametrize("resolution,width", [(32, 8), (64, 4), (128, 4)])
def test_fastgan_discriminator_reconstruction_loss_for_each_quarter(resolution, width):
    _, D = pair("fastgan", resolution, width)
    x = torch.rand(BATCH, 3, resolution, resolution, generator=torch.Generator().manual_seed(1)) * 2 - 1
    plain_shape = D(x).shape
    for quarter in range(4):
        D.zero_grad(set_to_none=True)
        logits, reconstruction = D(x, quarter=quarter)
        assert logits.shape == plain_shape
        assert reconstruction.dim() == 0
        assert torch.isfinite(reconstruction) and reconstruction.item() >= 0
        reconstruction.backward()
        # The self-supervised loss trains both decoders (whole image and the chosen quarter).
        for decoder in (D.decode_whole, D.decode_quarter):
            grads = [p.grad for p in decoder.parameters() if p.grad is not None]
            assert grads and any(g.abs().sum() > 0 for g in grads)


def test_dcgan_discriminator_has_no_decoder_and_fastgan_does():
    assert build_discriminator(TrainConfig(discriminator="dcgan", resolution=32, width=4)).has_decoder is False
    assert build_discriminator(TrainConfig(discriminator="fastgan", resolution=32, width=4)).has_decoder is True


def test_generator_output_depends_only_on_its_own_latent_in_eval_mode():
    """One seed, one image: a sample must not change with what else is in the batch."""
    G, _ = pair("fastgan", 32, 8)
    G.eval()
    z = torch.randn(4, Z_DIM, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        together = G(z)
        alone = G(z[2:3])
    torch.testing.assert_close(together[2:3], alone, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- configuration
@pytest.mark.parametrize("resolution", [0, 8, 48, 100, 2048])
def test_bad_resolution_is_a_config_error(resolution):
    with pytest.raises(ConfigError, match=rf"resolution must be a power of two from 16 to 1024, not {resolution}"):
        TrainConfig(resolution=resolution)


def test_fastgan_needs_resolution_32_but_dcgan_allows_16():
    with pytest.raises(ConfigError, match="at least 32"):
        TrainConfig(resolution=16, architecture="fastgan")
    assert TrainConfig(resolution=16, architecture="dcgan", discriminator="dcgan").resolution == 16
    assert TrainConfig(resolution=16, architecture="dcgan", discriminator="projected").resolution == 16
    with pytest.raises(ConfigError, match="FastGAN discriminator needs a resolution of at least 32"):
        TrainConfig(resolution=16, architecture="dcgan", discriminator="fastgan")


@pytest.mark.parametrize("size", [32, 100, 1024])
def test_projection_size_must_suit_the_feature_network(size):
    with pytest.raises(ConfigError, match=f"projection_size must be a multiple of 32 from 64 to 512, not {size}"):
        TrainConfig(projection_size=size)


@pytest.mark.parametrize("resolution,size", [(16, 64), (32, 64), (64, 128), (128, 256), (512, 256)])
def test_projection_size_is_twice_the_resolution_unless_given(resolution, size):
    config = TrainConfig(resolution=resolution, architecture="dcgan", discriminator="projected")
    assert config.projection_size == size
    assert TrainConfig.from_dict(config.to_dict()).projection_size == size   # stored, not recomputed
    assert TrainConfig(resolution=resolution, architecture="dcgan", discriminator="projected",
                       projection_size=96).projection_size == 96


def test_each_discriminator_gets_its_recipe_and_given_values_win():
    projected, fastgan = TrainConfig(discriminator="projected"), TrainConfig(discriminator="fastgan")
    assert (projected.r1_gamma, projected.augment_p_init, projected.adaptive_augment, projected.flip,
            projected.adam_betas) == (0.0, 1.0, False, False, (0.0, 0.99))
    assert (fastgan.r1_gamma, fastgan.augment_p_init, fastgan.adaptive_augment, fastgan.flip,
            fastgan.adam_betas) == (0.1, 0.0, True, True, (0.5, 0.99))
    assert TrainConfig(discriminator="projected", r1_gamma=1.0).r1_gamma == 1.0
    assert TrainConfig(discriminator="projected", flip=True).flip is True
    # Saved configs hold every value, so a checkpoint trains on as it was written.
    assert TrainConfig.from_dict(json.loads(json.dumps(projected.to_dict()))) == projected


@pytest.mark.parametrize("architecture", ["fastgan", "dcgan"])
def test_configs_written_before_d_could_be_chosen_keep_their_architectures_d(architecture):
    values = TrainConfig(architecture=architecture, discriminator=architecture).to_dict()
    del values["discriminator"], values["projection_size"]
    assert TrainConfig.from_dict(values).discriminator == architecture


@pytest.mark.parametrize("field,value,words", [
    ("loss", "lsgan", ["loss", "'lsgan'", "hinge", "bce", "wgan-gp"]),
    ("architecture", "stylegan", ["architecture", "'stylegan'", "fastgan", "dcgan"]),
    ("discriminator", "patch", ["discriminator", "'patch'", "projected", "fastgan", "dcgan"]),
    ("precision", "fp8", ["precision", "'fp8'", "bf16"]),
    ("memory_format", "nhwc", ["memory_format", "'nhwc'", "channels_last"]),
    ("augment", ("color", "rotate"), ["augmentation", "'rotate'", "translation"]),
])
def test_unknown_choices_name_the_value_and_the_alternatives(field, value, words):
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**{field: value})
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize("changes,words", [
    ({"batch_size": 1}, "batch_size must be at least 2"),
    ({"width": 0}, "width and z_dim must be positive"),
    ({"z_dim": 0}, "width and z_dim must be positive"),
    ({"augment_p_init": 1.5}, "augment_p_init"),
    ({"lr_g": 0.0}, "learning rates must be positive"),
    ({"r1_interval": 0}, "r1_interval"),
])
def test_out_of_range_numbers_are_config_errors(changes, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(**changes)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_config_survives_a_json_round_trip():
    config = TrainConfig(resolution=32, width=8, loss="bce", augment=("color", "cutout"), adam_betas=(0.0, 0.9))
    restored = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert isinstance(restored.augment, tuple) and isinstance(restored.adam_betas, tuple)


def test_config_from_dict_rejects_unknown_keys_and_names_them():
    values = {**TrainConfig().to_dict(), "learning_rate": 1e-3, "nonsense": 1}
    with pytest.raises(ConfigError, match="unknown configuration keys: learning_rate, nonsense"):
        TrainConfig.from_dict(values)


def test_config_is_frozen_and_replace_validates():
    config = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.resolution = 128
    assert config.replace(resolution=128).resolution == 128
    with pytest.raises(ConfigError):
        config.replace(loss="nope")
