"""Projection: the latent whose generation is closest to a given painting.

How close is measured twice: in pixels (mean squared difference, on [-1, 1] images) and
perceptually, in the features of the pretrained EfficientNet-Lite0 that the projected
discriminator already ships with (so nothing is downloaded, unlike StyleGAN's projector and its
VGG). The perceptual distance is LPIPS's recipe without its learned weights: at each of the
network's four scales, every location's feature vector is scaled to unit length, and the squared
differences are averaged; the four scales count alike.

The search: `starts` random latents drawn from the seed are rendered and the closest becomes the
start; then Adam moves z, its learning rate ramped up briefly and down along a half cosine (as
StyleGAN2's projector does), and after every step z is put back on the sphere of radius
sqrt(z_dim), where a standard normal latent almost surely lies: off it, G paints what it was
never trained to. Everything random comes from the seed, so one painting and seed always give
the same latent.

The generator takes z at its first layer only (there is no per-layer latent, as StyleGAN's W+
is), so z is all there is to refine.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from PIL import Image

from .backbone import load_backbone
from .latent import Recipe
from .render import render_latents

DEFAULT_STEPS = 200        # where the quality-against-steps benchmark flattens (README, "Projection")
DEFAULT_STARTS = 64
PERCEPTUAL_SIZE = 128      # px the feature network sees; a 64 px painting is upsampled to it
PERCEPTUAL_WEIGHT = 1.0
LEARNING_RATE = 0.1
RAMP_UP, RAMP_DOWN = 0.05, 0.25    # fractions of the steps the learning rate takes to rise, and to fall


@dataclass(frozen=True)
class Distance:
    pixel: float         # mean squared difference of [-1, 1] images
    perceptual: float    # in EfficientNet-Lite0's features (see the module docstring)

    @property
    def loss(self) -> float:
        return self.pixel + PERCEPTUAL_WEIGHT * self.perceptual

    def to_json(self) -> dict:
        return {"pixel": round(self.pixel, 5), "perceptual": round(self.perceptual, 5)}


@dataclass(frozen=True)
class Projection:
    recipe: Recipe            # the latent found, its origin recorded
    start: Distance           # of the closest random start
    distance: Distance        # of the latent found
    losses: tuple[float, ...]   # the loss at every step


class Perceptual(torch.nn.Module):
    """Distances between images in [-1, 1] (N, 3, R, R) and one target, batched."""

    def __init__(self, target: torch.Tensor, size: int = PERCEPTUAL_SIZE):
        super().__init__()
        self.network = _feature_network()
        self.size = size
        self.target = target
        self.target_features = [f.detach() for f in self.features(target)]

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = F.interpolate(images, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        x = (x * 127.5 + 0.5) / 128        # the weights expect (v - 127) / 128 for v in 0..255
        return [F.normalize(f, dim=1) for f in self.network.features(x)]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pixel, perceptual), each (N,)."""
        pixel = (images - self.target).square().mean(dim=(1, 2, 3))
        perceptual = sum((f - t).square().sum(dim=1).mean(dim=(1, 2))
                         for f, t in zip(self.features(images), self.target_features)) / len(self.target_features)
        return pixel, perceptual


@functools.lru_cache(maxsize=1)
def _feature_network() -> torch.nn.Module:
    return load_backbone()


def painting_tensor(image: Image.Image) -> torch.Tensor:
    """A square RGB picture at the model's resolution as (1, 3, R, R) in [-1, 1]."""
    array = torch.frombuffer(bytearray(image.convert("RGB").tobytes()), dtype=torch.uint8)
    return (array.view(image.height, image.width, 3).permute(2, 0, 1).float() / 127.5 - 1).unsqueeze(0)


def project(generator: torch.nn.Module, z_dim: int, target: torch.Tensor, steps: int = DEFAULT_STEPS,
            seed: int = 0, starts: int = DEFAULT_STARTS, origin: dict | None = None,
            progress: Callable[[int, int, float], None] | None = None,
            perceptual_size: int = PERCEPTUAL_SIZE) -> Projection:
    """The latent of `generator` whose image is closest to `target` ((1, 3, R, R) in [-1, 1] at
    the generator's resolution). `progress(step, steps, loss)` follows the optimisation; `origin`
    (what was projected) is recorded in the recipe with the settings and distances. The
    distances reported are always at PERCEPTUAL_SIZE; `perceptual_size` is the one searched
    with (benchmarks/projection.py compares them)."""
    if steps < 0 or starts < 1:
        raise ValueError("projection needs 0 or more steps and at least one random start")
    distance = Perceptual(target, perceptual_size)
    radius = math.sqrt(z_dim)
    candidates = torch.randn(starts, z_dim, generator=torch.Generator().manual_seed(int(seed)))
    candidates = candidates * (radius / candidates.norm(dim=1, keepdim=True))
    with torch.no_grad():
        start_losses = _losses(distance, render_latents(generator, candidates, batch=16))
    best = int(start_losses[2].argmin())
    start = Distance(float(start_losses[0][best]), float(start_losses[1][best]))   # renders as it did

    z = candidates[best:best + 1].clone().requires_grad_(True)
    optimiser = torch.optim.Adam([z], lr=LEARNING_RATE, betas=(0.9, 0.999))
    losses = []
    for step in range(steps):
        for group in optimiser.param_groups:
            group["lr"] = LEARNING_RATE * _schedule(step / steps)
        pixel, perceptual, loss = _losses(distance, generator(z))
        optimiser.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimiser.step()
        with torch.no_grad():
            z.mul_(radius / z.norm())
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, steps, losses[-1])

    found = z.detach()[0]
    if perceptual_size != PERCEPTUAL_SIZE:
        distance = Perceptual(target)
        start = measure(distance, candidates[best:best + 1], generator)
    final = measure(distance, found.unsqueeze(0), generator)
    record = {"projected": {**(origin or {}), "steps": steps, "seed": int(seed), "starts": starts,
                            **final.to_json()}}
    return Projection(Recipe.of_z(found, origin=record), start, final, tuple(losses))


def measure(distance: Perceptual, z: torch.Tensor, generator: torch.nn.Module) -> Distance:
    """The distance of one latent's (1, z_dim) image."""
    with torch.no_grad():
        pixel, perceptual, _ = _losses(distance, render_latents(generator, z))
    return Distance(float(pixel), float(perceptual))


def _losses(distance: Perceptual, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pixel, perceptual = distance(images)
    return pixel, perceptual, pixel + PERCEPTUAL_WEIGHT * perceptual


def _schedule(t: float) -> float:
    """The learning rate's factor at fraction t of the steps: a short linear rise, a plateau,
    then half a cosine down to zero."""
    rise = min(1.0, t / RAMP_UP)
    fall = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1 - t) / RAMP_DOWN))
    return rise * fall
