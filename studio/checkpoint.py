"""Checkpoints that survive crashes, and generator exports for sharing.

A run folder holds `checkpoints/step-000001234.pt`, the newest few of them. Each file alone
resumes training exactly: format version, config, step, images seen, G, D, G_ema, both
optimizers, the augmentation controller and the RNG state. Files are written whole or not at all
(files.py: a temporary name in the same folder, fsynced and renamed over), so a crash or a full
disk at any instant leaves the previous checkpoint whole. Weights that are NaN or infinite are
never written, so a diverged run cannot replace its last good checkpoint or export. Loading uses
`weights_only=True`: a checkpoint from a stranger cannot run code.

Generator exports are .safetensors files (generator_file.py), which hold no code at all; the
earlier `generator.pt` exports, torch.save files, still load.
"""
from __future__ import annotations

import io
import itertools
import re
from pathlib import Path

import torch
from torch import nn

from .config import ConfigError, TrainConfig
from . import generator_file
from .distributed import LOCAL, Ranks
from .files import write_torch
from .models import build_generator
from .numerics import Numerics, resolve_device
from .trainer import Trainer

CHECKPOINT_FORMAT = "gan-art-studio/checkpoint"
GENERATOR_FORMAT = "gan-art-studio/generator"   # of the torch.save exports, version 1
FORMAT_VERSION = 1
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")
# A run folder's generator export, which the trainer replaces at every checkpoint: the name runs
# write now, then the one earlier runs wrote.
EXPORT_NAMES = ("generator.safetensors", "generator.pt")


class CheckpointError(Exception):
    """A checkpoint could not be written or read; the message says which file and why."""


def checkpoint_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def _save(payload: dict, path: Path) -> None:
    """torch.save to `path` so that readers see the old file or the new one, never half of one;
    a full disk is a CheckpointError that says the old file is still there."""
    try:
        write_torch(path, payload)
    except OSError as error:
        raise CheckpointError(f"could not write {path} ({error.strerror or error}); "
                              "the previous checkpoint is untouched") from error


def save_checkpoint(trainer: Trainer, run_dir: str | Path, keep: int = 3) -> Path:
    """Write the trainer's full state as the newest checkpoint; keep the newest `keep` (>= 1).

    Checkpoints of later steps than the trainer's belong to a future that was abandoned (the run
    resumed from an older file because they were damaged), so they go too."""
    if keep < 1:
        raise ValueError("keep at least one checkpoint")
    folder = checkpoint_dir(run_dir)
    path = folder / f"step-{trainer.step_count:09d}.pt"
    _refuse_non_finite(trainer, ("G", "D", "G_ema"), path)
    payload = {"format": CHECKPOINT_FORMAT, "version": FORMAT_VERSION, "config": trainer.config.to_dict(),
               "numerics": trainer.numerics.to_dict(), **trainer.state_dict()}
    _save(payload, path)
    steps = {p: step_of(p) for p in list_checkpoints(run_dir)}
    current = [p for p, step in steps.items() if step <= trainer.step_count]
    abandoned = [p for p, step in steps.items() if step > trainer.step_count]
    for old in current[:-keep] + abandoned:
        old.unlink(missing_ok=True)
    return path


def _refuse_non_finite(trainer: Trainer, networks: tuple[str, ...], path: Path) -> None:
    """A CheckpointError, before anything is written, if a weight or BatchNorm statistic of
    these networks is NaN or infinite: the file it would replace is a good one."""
    broken = [name for name in networks
              if not all(bool(t.isfinite().all()) for t in _tensors(getattr(trainer, name)) if t.is_floating_point())]
    if broken:
        raise CheckpointError(f"not writing {path}: {' and '.join(broken)} hold NaN or infinite weights; "
                              "the previous file is untouched")


def _tensors(module: nn.Module):
    """Weights and buffers (BatchNorm statistics, the projected D's fixed mixing): what its state
    dict holds besides extra state such as the pretrained weights' hash."""
    return itertools.chain(module.parameters(), module.buffers())


def export_of(run_dir: str | Path) -> Path | None:
    """A run folder's generator export, None if it has none yet."""
    return next((path for name in EXPORT_NAMES if (path := Path(run_dir) / name).exists()), None)


def step_of(path: Path) -> int:
    """The step a `step-*.pt` checkpoint file was saved at, from its name."""
    return int(_STEP_FILE.match(path.name).group(1))


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary files of interrupted writes are ignored)."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _STEP_FILE.match(p.name)), key=step_of)


def _read(path: Path, expected_format: str | tuple[str, ...], data: bytes | None = None) -> dict:
    """The payload of `path`, or of `data` (that file's bytes, read already) when given."""
    expected = (expected_format,) if isinstance(expected_format, str) else expected_format
    try:
        payload = torch.load(path if data is None else io.BytesIO(data), map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise CheckpointError(f"{path} does not exist") from error
    except Exception as error:   # truncated zip, pickle refused by weights_only, not a torch file...
        raise CheckpointError(f"{path} is damaged or not a checkpoint file") from error
    if not isinstance(payload, dict) or payload.get("format") not in expected:
        raise CheckpointError(f"{path} is not a GAN Art Studio file")
    if payload.get("version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer version of the studio; please upgrade")
    return payload


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as error:
        raise CheckpointError(f"{path} does not exist") from error
    if generator_file.is_safetensors(data):
        raise CheckpointError(f"{path} is a generator export, not a checkpoint: it holds nothing to resume "
                              f"training from (a new run can start from it with --from)")
    return _read(path, CHECKPOINT_FORMAT, data)


def latest_checkpoint(run_dir: str | Path) -> tuple[Path, dict]:
    """The newest checkpoint that loads, skipping damaged ones (newest first)."""
    problems = []
    for path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as error:
            problems.append(str(error))
    detail = f": {'; '.join(problems)}" if problems else ""
    raise CheckpointError(f"no usable checkpoint in {checkpoint_dir(run_dir)}{detail}")


def config_of(payload: dict) -> TrainConfig:
    try:
        return TrainConfig.from_dict(payload["config"])
    except (KeyError, TypeError, ConfigError) as error:
        raise CheckpointError(f"the checkpoint's configuration is invalid: {error}") from error


def restore_trainer(payload: dict, images: torch.Tensor, numerics: Numerics | None = None,
                    ranks: Ranks = LOCAL) -> Trainer:
    """A trainer in exactly the state the checkpoint was saved in. By default it keeps the
    checkpoint's numerics when the device is the same kind, so the run continues bit for bit.
    A checkpoint of any number of ranks restores on any other (the batch is global)."""
    config = config_of(payload)
    if numerics is None and "numerics" in payload:
        saved = Numerics.from_dict(payload["numerics"])
        if saved.device.type == resolve_device(config.device).type:
            numerics = saved
    trainer = Trainer(config, images, numerics, ranks)
    load_state(trainer, payload)
    return trainer


def load_state(trainer: Trainer, payload: dict) -> None:
    """Put a checkpoint's state (or another trainer's `state_dict()`) into `trainer`; its config
    stays the trainer's own."""
    try:
        trainer.load_state_dict(payload)
    except (KeyError, RuntimeError, ValueError) as error:   # tensors that do not fit, other weights
        raise CheckpointError(f"the checkpoint does not fit the networks it names: {error}") from error


def export_generator(trainer: Trainer, path: str | Path, provenance: dict | None = None) -> Path:
    """G_ema, its config and `provenance` as a .safetensors file: small, enough to render,
    explore and fine-tune from, nothing to resume."""
    path = Path(path)
    _refuse_non_finite(trainer, ("G_ema",), path)
    provenance = {"step": trainer.step_count, "images_seen": trainer.images_seen, **(provenance or {})}
    try:
        return generator_file.write(path, trainer.G_ema.state_dict(), trainer.config, provenance)
    except OSError as error:
        raise CheckpointError(f"could not write {path} ({error.strerror or error}); "
                              "the previous export is untouched") from error


def read_export(source: str | Path, data: bytes | None = None) -> tuple[dict, TrainConfig, dict]:
    """(G_ema's weights, config, provenance) of a generator export of either format, or of a
    checkpoint file; `data`: the file's bytes when the caller has read them already."""
    source = Path(source)
    if data is None:
        try:
            data = source.read_bytes()
        except FileNotFoundError as error:
            raise CheckpointError(f"{source} does not exist") from error
    if generator_file.is_safetensors(data):
        try:
            return generator_file.read(data)
        except generator_file.GeneratorFileError as error:
            raise CheckpointError(f"{source} cannot be read: {error}") from error
    payload = _read(source, (CHECKPOINT_FORMAT, GENERATOR_FORMAT), data)
    provenance = {key: payload[key] for key in ("step", "images_seen") if key in payload}
    return payload["G_ema"], config_of(payload), provenance


def generator_source(source: str | Path) -> Path:
    """The file a run folder's generator comes from: its export, else its newest good checkpoint
    (a file is its own source)."""
    source = Path(source)
    if not source.is_dir():
        if not source.exists():
            raise FileNotFoundError(f"{source} does not exist")
        return source
    return export_of(source) or latest_checkpoint(source)[0]


def load_generator(source: str | Path, device: torch.device | str = "cpu",
                   data: bytes | None = None) -> tuple[nn.Module, TrainConfig]:
    """An eval-mode G_ema from a generator export, a checkpoint, or a run folder (its export,
    else its newest checkpoint). `data`: the file's bytes when the caller has read them already,
    to know exactly which weights it holds (a file the trainer rewrites may change between two
    reads)."""
    try:
        source = Path(source) if data is not None else generator_source(source)
    except FileNotFoundError as error:
        raise CheckpointError(str(error)) from error
    weights, config, _ = read_export(source, data)
    generator = build_generator(config)
    try:
        generator.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(f"{source} does not fit the generator its config names: {error}") from error
    return generator.to(device).eval().requires_grad_(False), config
