"""Latent vectors: one seed, one image, everywhere in the studio.

A sample is named by its seed: seed 42 renders the same image in the CLI, the training preview and
the Explore tab, because each seed draws its own z independently of the others.
"""
from __future__ import annotations

import torch


def seed_to_z(seed: int, z_dim: int) -> torch.Tensor:
    """The latent of one seed: (z_dim,), standard normal."""
    return torch.randn(z_dim, generator=torch.Generator().manual_seed(int(seed)))


def seeds_to_z(seeds: list[int], z_dim: int) -> torch.Tensor:
    """(len(seeds), z_dim)."""
    return torch.stack([seed_to_z(seed, z_dim) for seed in seeds])


def truncate(z: torch.Tensor, psi: float) -> torch.Tensor:
    """Pull latents towards the mean (zero): psi < 1 trades variety for typical, cleaner images."""
    return z * psi


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: Gaussian latents live near a sphere, and a straight line between
    two of them passes through the unlikely, low-norm middle (washed-out frames)."""
    a_unit, b_unit = a / a.norm(), b / b.norm()
    angle = torch.arccos((a_unit * b_unit).sum().clamp(-1.0, 1.0))
    if angle.abs() < 1e-6:
        return torch.lerp(a, b, t)
    return (torch.sin((1 - t) * angle) * a + torch.sin(t * angle) * b) / torch.sin(angle)


def interpolation_path(keyframes: torch.Tensor, frames: int, loop: bool) -> torch.Tensor:
    """(frames, z_dim) latents through the keyframes in order, evenly spaced; with `loop` the
    path returns to the first keyframe and leaves out the final repeat, so it plays seamlessly."""
    if len(keyframes) < 2:
        raise ValueError("pick at least two keyframes to interpolate")
    if frames < 2:
        raise ValueError("an animation needs at least two frames")
    stops = list(keyframes) + ([keyframes[0]] if loop else [])
    segments = len(stops) - 1
    positions = torch.arange(frames) * segments / (frames if loop else frames - 1)
    path = []
    for position in positions.tolist():
        index = min(int(position), segments - 1)
        path.append(slerp(stops[index], stops[index + 1], position - index))
    return torch.stack(path)
