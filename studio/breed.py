"""Breeding, as Ganbreeder made it a way to explore: favourites as parents, children in between.

A child is a weighted slerp of its parents' latents (the weights drawn at random, summing to one,
so each child sits somewhere else between them), then moved a `mutation` fraction of the way
along the sphere towards a fresh random latent: 0 gives the pure mix, 1 a stranger. Everything
random comes from the seed and the child's place in the grid, so a grid is made again exactly,
and the same seed at another mutation keeps each child's mix.
"""
from __future__ import annotations

from dataclasses import replace

import torch

from .latent import Recipe, slerp

PARENTS = (2, 6)           # how many favourites a grid is bred from, at least and at most


def weighted_slerp(latents: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A point between several latents (rows), each pulling by its weight: slerped in turn, the
    k-th row brought in at its share of the weight gathered so far (exact for two)."""
    mix, gathered = latents[0], weights[0]
    for latent, weight in zip(latents[1:], weights[1:]):
        gathered = gathered + weight
        mix = slerp(mix, latent, float(weight / gathered))
    return mix


def children(parents: list[Recipe], latents: torch.Tensor, count: int, mutation: float, seed: int) -> list[Recipe]:
    """`count` children of `parents`, whose latents are `latents` (one row each, as rendered: their
    truncation and moves included). Each child's recipe records its lineage."""
    low, high = PARENTS
    if not low <= len(parents) <= high:
        raise ValueError(f"breed from {low} to {high} parents, not {len(parents)}")
    if not 0 <= mutation <= 1:
        raise ValueError(f"mutation is a fraction from 0 to 1, not {mutation}")
    lineage = [_as_parent(parent) for parent in parents]
    generation = 1 + max(_generation(parent) for parent in parents)
    kids = []
    for child in range(count):
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + child)
        weights = torch.empty(len(parents)).exponential_(generator=gen)    # normalised: a flat Dirichlet
        weights = weights / weights.sum()
        stranger = torch.randn(latents.shape[1], generator=gen)           # drawn even at 0, so mixes stay put
        mix = weighted_slerp(latents, weights)
        z = slerp(mix, stranger * (mix.norm() / stranger.norm()), mutation) if mutation else mix
        origin = {"bred": {"parents": lineage, "weights": [round(float(w), 4) for w in weights],
                           "mutation": mutation, "seed": int(seed), "child": child, "generation": generation}}
        kids.append(Recipe.of_z(z, origin=origin))
    return kids


def _as_parent(recipe: Recipe):
    """A parent as its child records it: its recipe without its own lineage (which the parent's
    generation number summarises), so recipes do not grow with every generation."""
    return replace(recipe, origin=None).to_json()


def _generation(recipe: Recipe) -> int:
    return (recipe.origin or {}).get("bred", {}).get("generation", 0)
