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
