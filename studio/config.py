"""Training configuration: one frozen dataclass, stored in every checkpoint.

`dataclasses.asdict(config)` goes into each checkpoint so a run can be rebuilt from its file
alone; `TrainConfig.from_dict` tolerates keys written by older versions and rejects unknown ones.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

LOSSES = ("hinge", "bce", "wgan-gp")
AUGMENTATIONS = ("color", "translation", "cutout")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
ARCHITECTURES = ("fastgan", "dcgan")    # the generator's
DISCRIMINATORS = ("projected", "fastgan", "dcgan")


# What each discriminator trains best with, for the fields a config leaves at None (README, "The
# training recipe"). The projected D is trained as in its paper: every image augmented, no R1,
# Adam without momentum. A D that learns its own features (FastGAN's, DCGAN's) needs R1, and
# ADA's adaptive augmentation that starts at 0 and rises only when D starts to memorise.
_LEARNING_ITS_FEATURES = dict(adam_betas=(0.5, 0.99), r1_gamma=0.1, augment_p_init=0.0, adaptive_augment=True,
                              flip=True)
RECIPES = {
    "projected": dict(adam_betas=(0.0, 0.99), r1_gamma=0.0, augment_p_init=1.0, adaptive_augment=False,
                      flip=False),
    "fastgan": _LEARNING_ITS_FEATURES,
    "dcgan": _LEARNING_ITS_FEATURES,
}


class ConfigError(ValueError):
    """A configuration value a user can fix; the message says how."""


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class TrainConfig:
    # What is learned
    resolution: int = 64
    z_dim: int = 256
    width: int = 32                      # channel multiplier: widths scale linearly with it
    architecture: str = "fastgan"        # G's; "dcgan" is the textbook baseline, for comparisons
    discriminator: str = "fastgan"       # "projected": judged in pretrained features (projected.py)
    # px images are resized to for the projected D's feature network; None: twice the resolution
    # (best at 32 and 64 px, README), from 64 to 256 px (the paper's 224 is about the most it needs)
    projection_size: int | None = None
    # How it is learned
    batch_size: int = 8                  # small batches, more steps: best KID per minute (README)
    loss: str = "hinge"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    adam_betas: tuple[float, float] | None = None   # None here and below: the discriminator's (RECIPES)
    reconstruction_weight: float = 1.0   # D's self-supervised decoder (MSE), FastGAN's regulariser
    r1_gamma: float | None = None        # zero-centred gradient penalty on reals; 0 disables
    r1_interval: int = 16                # lazy regularisation: every N steps, scaled by N
    gp_weight: float = 10.0              # only for loss="wgan-gp"
    ema_half_life_images: int = 10_000   # G_ema forgets half of its past after this many images
    ema_rampup: float = 0.05             # early on, half-life <= images_seen * rampup
    # Differentiable augmentation of reals and fakes, each transform with probability p
    augment: tuple[str, ...] = AUGMENTATIONS
    flip: bool | None = None             # x-flips, one more transform under p
    augment_p_init: float | None = None
    adaptive_augment: bool | None = None  # ADA: p follows how sure D is about the reals
    ada_target: float = 0.6              # desired E[sign(D(real))]
    ada_interval: int = 4                # steps between adjustments of p
    ada_images_to_full: int = 100_000    # how fast p may move from 0 to 1
    # Where and how fast
    device: str = "auto"
    precision: str = "auto"
    memory_format: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("discriminator", self.discriminator, DISCRIMINATORS)
        for name, value in RECIPES[self.discriminator].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)   # frozen, but not yet seen by anyone
        if self.projection_size is None:
            object.__setattr__(self, "projection_size", _default_projection_size(self.resolution))
        if not _is_power_of_two(self.resolution) or not 16 <= self.resolution <= 1024:
            raise ConfigError(f"resolution must be a power of two from 16 to 1024, not {self.resolution}")
        if self.architecture == "fastgan" and self.resolution < 32:
            raise ConfigError("the FastGAN networks need a resolution of at least 32")
        _check_choice("architecture", self.architecture, ARCHITECTURES)
        if self.discriminator == "fastgan" and self.resolution < 32:
            raise ConfigError("the FastGAN discriminator needs a resolution of at least 32")
        if self.projection_size % 32 or not 64 <= self.projection_size <= 512:
            raise ConfigError(f"projection_size must be a multiple of 32 from 64 to 512, not {self.projection_size}")
        _check_choice("loss", self.loss, LOSSES)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("memory_format", self.memory_format, MEMORY_FORMATS)
        for name in self.augment:
            _check_choice("augmentation", name, AUGMENTATIONS)
        if self.width < 1 or self.z_dim < 1:
            raise ConfigError("width and z_dim must be positive")
        if self.batch_size < 2:
            raise ConfigError("batch_size must be at least 2")
        if not 0.0 <= self.augment_p_init <= 1.0:
            raise ConfigError("augment_p_init must lie between 0 and 1")
        if min(self.lr_g, self.lr_d) <= 0:
            raise ConfigError("learning rates must be positive")
        if self.ada_interval < 1 or self.ada_images_to_full <= 0 or self.ema_half_life_images <= 0:
            raise ConfigError("ada_interval, ada_images_to_full and ema_half_life_images must be positive")
        if self.r1_gamma < 0 or self.r1_interval < 1:
            raise ConfigError("r1_gamma must be >= 0 and r1_interval >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
        values = dict(values)
        # A config without a discriminator trained the architecture's own.
        values.setdefault("discriminator", values.get("architecture", cls.architecture))
        for key in ("adam_betas", "augment"):      # JSON and torch.save turn tuples into lists
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


def _default_projection_size(resolution: int) -> int:
    return min(max(2 * resolution, 64), 256)


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
