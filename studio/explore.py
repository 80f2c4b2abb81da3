"""Exploring a trained generator: samples by seed, each sample's nearest training painting, slerp
walks between keyframe seeds, and the walk written as a GIF, an MP4 or a zip of PNG frames with a
sidecar saying how it was made."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from .checkpoint import load_generator
from .config import TrainConfig
from .data import load_images
from .export import upscale, write_frames_zip, write_gif, write_mp4, write_provenance
from .latent import interpolation_path, seeds_to_z, truncate
from .metrics import dataset_features, inception_features, load_inception, nearest, typical_distance
from .render import render_latents, to_pil_images, to_uint8

EXPORT_SIZE = 256          # px; a 64 px sample is too small to watch
EXPORT_KINDS = ("gif", "mp4", "zip")


@dataclass(frozen=True)
class Model:
    """A generator to explore, and which weights exactly it holds (for provenance)."""
    generator: torch.nn.Module
    config: TrainConfig
    label: str       # short, safe in file names: the run's folder name
    source: str      # the weights' file and date, or a live run and its step


def open_run(run_dir: str | Path) -> Model:
    """The run's G_ema, from its small generator export when there is one (else its newest
    checkpoint). Kept in memory until the file changes, so browsing seeds does not reload it."""
    run_dir = Path(run_dir)
    source = run_dir / "generator.pt"
    if not source.exists():
        source = run_dir
    mtime_ns = source.stat().st_mtime_ns
    generator, config = _load_generator(str(source), mtime_ns)
    saved = datetime.fromtimestamp(mtime_ns / 1e9).isoformat(timespec="seconds")
    return Model(generator, config, run_dir.name, f"{source} saved {saved}")


@functools.lru_cache(maxsize=4)
def _load_generator(source: str, mtime_ns: int) -> tuple[torch.nn.Module, TrainConfig]:
    return load_generator(source)


def render_samples(generator: torch.nn.Module, z_dim: int, seeds: list[int], psi: float) -> list[Image.Image]:
    """One picture per seed, with truncation `psi` (1 = no truncation)."""
    return to_pil_images(render_latents(generator, truncate(seeds_to_z(seeds, z_dim), psi)))


def walk_frames(generator: torch.nn.Module, z_dim: int, seeds: list[int], frames: int, loop: bool,
                psi: float, size: int = EXPORT_SIZE,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """uint8 (frames, size, size, 3): a slerp walk through the keyframe seeds in order."""
    path = interpolation_path(truncate(seeds_to_z(seeds, z_dim), psi), frames, loop)
    images = render_latents(generator, path, batch=8, progress=progress)
    return upscale(to_uint8(images).numpy(), size)


@dataclass(frozen=True)
class NearestPaintings:
    """Each sample beside its closest training painting in Inception feature space."""
    pairs: list[tuple[Image.Image, Image.Image, float]]   # (sample, painting, distance)
    typical: float    # median distance between a painting and its nearest other painting


def nearest_paintings(model: Model, seeds: list[int], psi: float, dataset_dir: str | Path,
                      progress: Callable[[int, int], None] | None = None) -> NearestPaintings:
    """The seeds' samples (with truncation `psi`) paired with their nearest paintings in the
    dataset. `progress` follows the dataset's features, slow only the first time (then cached)."""
    images = render_latents(model.generator, truncate(seeds_to_z(seeds, model.config.z_dim), psi))
    found, typical = match_paintings(to_uint8(images).permute(0, 3, 1, 2), dataset_dir,
                                     model.config.resolution, progress)
    pairs = [(sample, painting, distance) for sample, (painting, distance) in zip(to_pil_images(images), found)]
    return NearestPaintings(pairs, typical)


def match_paintings(samples: torch.Tensor, dataset_dir: str | Path, resolution: int,
                    progress: Callable[[int, int], None] | None = None
                    ) -> tuple[list[tuple[Image.Image, float]], float]:
    """For uint8 (N, 3, R, R) images: each one's nearest painting and the distance to it, and
    the dataset's typical distance between neighbouring paintings."""
    network = load_inception()
    real = dataset_features(dataset_dir, resolution, network, progress)
    indices, distances = nearest(inception_features(samples, network), real)
    paintings = load_images(dataset_dir, resolution).permute(0, 2, 3, 1).numpy()
    found = [(Image.fromarray(paintings[i]), d) for i, d in zip(indices.tolist(), distances.tolist())]
    return found, typical_distance(real)


@dataclass(frozen=True)
class Walk:
    """A slerp walk through keyframe seeds, as the artist set it up."""
    seeds: tuple[int, ...]
    frames: int
    fps: float
    loop: bool
    psi: float = 1.0
    size: int = EXPORT_SIZE


def export_walk(model: Model, walk: Walk, kind: str, folder: str | Path,
                progress: Callable[[int, int], None] | None = None) -> Path:
    """Render `walk` and write it into `folder` as a gif, mp4 or zip of PNG frames, with a JSON
    sidecar. The file name hashes the model's source with the walk, so the GIF, MP4 and zip of
    one walk share one sidecar, and asking again for a walk already written returns it at once."""
    if kind not in EXPORT_KINDS:
        raise ValueError(f"cannot export a {kind!r}; choose one of {', '.join(EXPORT_KINDS)}")
    facts = {"source": model.source, **dataclasses.asdict(walk), "interpolation": "slerp",
             "config": model.config.to_dict()}
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:10]
    path = Path(folder) / f"{model.label}-walk-{digest}.{kind}"
    if path.exists():
        return path
    frames = walk_frames(model.generator, model.config.z_dim, list(walk.seeds), walk.frames, walk.loop,
                         walk.psi, walk.size, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".partial-{path.name}")   # the finished name appears only when whole
    try:
        if kind == "zip":
            write_frames_zip(frames, partial)
        else:
            (write_gif if kind == "gif" else write_mp4)(frames, partial, walk.fps)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    write_provenance(path, **facts)
    return path
