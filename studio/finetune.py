"""Starting a new run from a trained model: the demo, an earlier run, or a generator export.

A model that already paints needs far fewer images and minutes to learn a new folder than one
that starts from noise (README, "Fine-tuning"). The new run copies the source's generators and,
when the source is a checkpoint of the same kind of discriminator, its D as well; an export holds
G_ema only, which then starts G too, and D starts afresh. The optimisers, the step count and the
augmentation start over, as in StyleGAN2-ADA's transfer learning from a pretrained network: the
run is a new run, in its own folder, that only begins where the source ended.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import (CheckpointError, config_of, latest_checkpoint, list_checkpoints, load_checkpoint,
                         read_export, export_of)
from .config import ConfigError, TrainConfig
from .trainer import Trainer

GENERATOR_SHAPE = ("resolution", "z_dim", "width", "architecture")   # what G's weights must fit
DISCRIMINATOR_SHAPE = ("discriminator", "projection_size")           # and D's, besides those


@dataclass(frozen=True)
class StartingPoint:
    """The weights a run starts from and where they come from."""
    file: Path
    sha256: str
    config: TrainConfig
    g_ema: dict
    g: dict | None = None          # a checkpoint's; an export has G_ema only
    d: dict | None = None
    step: int | None = None        # how far the source had trained

    def describe(self) -> str:
        c = self.config
        return f"{c.resolution} px {c.architecture} generator (width {c.width}, z {c.z_dim}) from {self.file}"

    def record(self) -> dict:
        """What run.json and every export of the new run say it was fine-tuned from."""
        return {"file": str(self.file), "sha256": self.sha256, "step": self.step}

    def config_for(self, **given) -> TrainConfig:
        """A config for the new run: the source's shape and discriminator, then `given` (fields
        set to None are not given). A shape the weights cannot fit is refused by `start`."""
        inherited = {name: getattr(self.config, name) for name in GENERATOR_SHAPE + DISCRIMINATOR_SHAPE}
        if given.get("discriminator") not in (None, self.config.discriminator):
            del inherited["projection_size"]      # another D's default, not this one's
        return TrainConfig(**{**inherited, **{name: value for name, value in given.items() if value is not None}})

    def check_fits(self, config: TrainConfig) -> None:
        """A ConfigError saying what differs if a run of `config` cannot take these weights."""
        wanted = {name: getattr(config, name) for name in GENERATOR_SHAPE}
        have = {name: getattr(self.config, name) for name in GENERATOR_SHAPE}
        if wanted != have:
            differ = ", ".join(f"{name} {have[name]} (this run: {wanted[name]})" for name in have if have[name] != wanted[name])
            raise ConfigError(f"cannot fine-tune from {self.file}: its generator has {differ}. Fine-tuning keeps "
                              f"the network's shape; leave those settings out to take the source's")

    def start(self, trainer: Trainer) -> None:
        """Put the source's weights into a new trainer of a config that fits them."""
        self.check_fits(trainer.config)
        try:
            trainer.G.load_state_dict(self.g or self.g_ema)
            trainer.G_ema.load_state_dict(self.g_ema)
            if self.d is not None and self.same_discriminator(trainer.config):
                trainer.D.load_state_dict(self.d)
        except RuntimeError as error:    # a file whose weights do not match the config it names
            raise CheckpointError(f"{self.file} does not fit the networks its config names: {error}") from error

    def same_discriminator(self, config: TrainConfig) -> bool:
        return all(getattr(config, name) == getattr(self.config, name) for name in DISCRIMINATOR_SHAPE)


def starting_point(source: str | Path) -> StartingPoint:
    """The weights of a run folder (its newest checkpoint, else its export), a checkpoint file or
    a generator export (.safetensors, or an earlier generator.pt)."""
    source = Path(source)
    if source.is_dir():
        if list_checkpoints(source):
            file, payload = latest_checkpoint(source)
            return _from_checkpoint(file, payload)
        file = export_of(source)
        if file is None:
            raise CheckpointError(f"{source} holds no checkpoint and no generator export to start from")
        source = file
    if not source.exists():
        raise CheckpointError(f"{source} does not exist")
    try:
        return _from_checkpoint(source, load_checkpoint(source))
    except CheckpointError:
        data = source.read_bytes()
        g_ema, config, provenance = read_export(source, data)
        return StartingPoint(source, hashlib.sha256(data).hexdigest(), config, g_ema, step=provenance.get("step"))


def _from_checkpoint(file: Path, payload: dict) -> StartingPoint:
    sha256 = hashlib.sha256(file.read_bytes()).hexdigest()
    return StartingPoint(file, sha256, config_of(payload), payload["G_ema"], payload["G"], payload["D"], int(payload["step"]))

