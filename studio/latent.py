"""Latents as recipes: how one sample is made, and walks through several of them.

A sample is named by its seed: seed 42 renders the same image in the CLI, the training preview and
the Explore tab, because each seed draws its own z independently of the others. A `Recipe` adds
what the Explore tab can change about it (truncation, moves along the generator's main
directions, or a z of its own); galleries, keyframes, walks and sidecars all hold recipes, and a
plain seed stays the short form. A `Walk` times the way through keyframe recipes.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch

EASINGS = ("linear", "ease-in-out")
MODES = ("once", "loop", "ping-pong")
SEED_LIMIT = 2**64      # torch.Generator.manual_seed takes seeds below this (and wraps negative ones onto them)


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
    two of them passes through the unlikely, low-norm middle (washed-out frames). At t = 0 and 1
    it returns the ends exactly, so a walk's keyframes render as themselves."""
    if t == 0:
        return a.clone()
    if t == 1:
        return b.clone()
    a_unit, b_unit = a / a.norm(), b / b.norm()
    angle = torch.arccos((a_unit * b_unit).sum().clamp(-1.0, 1.0))
    if angle.abs() < 1e-6:
        return torch.lerp(a, b, t)
    return (torch.sin((1 - t) * angle) * a + torch.sin(t * angle) * b) / torch.sin(angle)


def ease(easing: str, t: float) -> float:
    """Progress along a segment at time t in [0, 1]: 'linear', or 'ease-in-out', which starts and
    arrives gently (half a cosine), so a walk does not jolt at its keyframes."""
    if easing == "linear":
        return t
    if easing == "ease-in-out":
        return (1 - math.cos(math.pi * t)) / 2
    raise ValueError(f"unknown easing {easing!r}; choose one of {', '.join(EASINGS)}")


# ------------------------------------------------------------------------------ recipes
@dataclass(frozen=True)
class Recipe:
    """One sample: a seed or a stored z, truncation psi, and offsets along the generator's
    directions (direction index -> how far, in standard deviations of z along it).

    The offsets are added after truncation, so a slider moves a calm sample as far as a wild one.
    Zero offsets are dropped: a slider moved away and back gives back exactly the same recipe.
    `origin` says where a stored z came from (a projected painting, the parents it was bred
    from): kept with the recipe wherever it goes, but not part of what it renders."""
    seed: int | None = None
    z: tuple[float, ...] | None = None
    psi: float = 1.0
    offsets: tuple[tuple[int, float], ...] = ()
    origin: dict | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.seed is None) == (self.z is None):
            raise ValueError("a recipe has either a seed or a stored z")
        if self.seed is not None and not 0 <= self.seed < SEED_LIMIT:
            raise ValueError(f"a seed is a whole number from 0 to {SEED_LIMIT - 1}, not {self.seed}")
        if self.z is not None and not all(math.isfinite(v) for v in self.z):
            raise ValueError("a stored z must hold finite numbers only")
        if not 0 < self.psi <= 2:
            raise ValueError(f"truncation psi must be in (0, 2], not {self.psi}")
        offsets = tuple(sorted((int(i), float(a)) for i, a in dict(self.offsets).items() if a != 0))
        if bad := [f"{i}={a}" for i, a in offsets if not math.isfinite(a)]:
            raise ValueError(f"a move along a direction must be a finite number of σ, not {bad[0]}")
        object.__setattr__(self, "offsets", offsets)

    @classmethod
    def of_z(cls, z: torch.Tensor, origin: dict | None = None) -> "Recipe":
        return cls(z=tuple(z.float().tolist()), origin=origin)

    def moved(self, offsets: dict[int, float]) -> "Recipe":
        """The same sample with these offsets instead of its own."""
        return replace(self, offsets=tuple(offsets.items()))

    def truncated(self, psi: float) -> "Recipe":
        """The same sample at truncation `psi`."""
        return replace(self, psi=psi)

    def latent(self, z_dim: int, directions: Mapping[int, torch.Tensor] | torch.Tensor = ()) -> torch.Tensor:
        """(z_dim,). `directions`: unit vectors by index (a (k, z_dim) tensor's rows, or a dict),
        needed when the recipe has offsets."""
        base = seed_to_z(self.seed, z_dim) if self.seed is not None else torch.tensor(self.z, dtype=torch.float32)
        if len(base) != z_dim:
            raise ValueError(f"this recipe's z has {len(base)} numbers; the generator takes {z_dim}")
        z = truncate(base, self.psi)
        for index, amount in self.offsets:
            try:
                z = z + amount * directions[index]
            except (IndexError, KeyError):
                raise ValueError(f"this recipe moves along direction {index}, which is not known here") from None
        return z

    def label(self) -> str:
        """Short, for captions: 'seed 42', 'seed 42 · ψ 0.7 · 2 moves', 'own z', 'projected z',
        'child of 3'."""
        parts = [f"seed {self.seed}" if self.seed is not None else _origin_label(self.origin)]
        if self.psi != 1:
            parts.append(f"ψ {self.psi:g}")
        if self.offsets:
            parts.append(f"{len(self.offsets)} move{'s' if len(self.offsets) > 1 else ''}")
        return " · ".join(parts)

    def to_json(self) -> int | dict:
        """A plain seed is just its number."""
        if self.seed is not None and self.psi == 1 and not self.offsets and not self.origin:
            return self.seed
        data: dict = {"seed": self.seed} if self.seed is not None else {"z": list(self.z)}
        if self.psi != 1:
            data["psi"] = self.psi
        if self.offsets:
            data["offsets"] = {str(i): a for i, a in self.offsets}
        if self.origin:
            data["origin"] = self.origin
        return data

    @classmethod
    def from_json(cls, data: int | dict) -> "Recipe":
        if isinstance(data, int) and not isinstance(data, bool):
            return cls(seed=data)
        if not isinstance(data, dict):
            raise ValueError(f"a recipe is a seed or an object, not {data!r}")
        z = data.get("z")
        origin = data.get("origin")
        if origin is not None and not isinstance(origin, dict):
            raise ValueError(f"a recipe's origin is an object, not {origin!r}")
        return cls(seed=data.get("seed"), z=tuple(float(v) for v in z) if z is not None else None,
                   psi=float(data.get("psi", 1.0)),
                   offsets=tuple((int(i), float(a)) for i, a in data.get("offsets", {}).items()), origin=origin)


def _origin_label(origin: dict | None) -> str:
    if origin and "projected" in origin:
        return "projected z"
    if origin and "bred" in origin:
        return f"child of {len(origin['bred'].get('parents', []))}"
    return "own z"


def circle_through(z: torch.Tensor, count: int, radius: float, seed: int) -> list[torch.Tensor]:
    """`count` latents evenly spaced on a small circle through z, on the sphere of z's norm
    (where latents are likely), `radius` radians across from its centre. The circle's plane is
    drawn from `seed`; z is the first point, so a loop through them starts on the sample."""
    gen = torch.Generator().manual_seed(int(seed))
    e1 = z / z.norm()
    basis = [e1]
    while len(basis) < 3:      # two random unit vectors orthogonal to z and to each other
        v = torch.randn(len(z), generator=gen)
        for u in basis:
            v = v - (v @ u) * u
        basis.append(v / v.norm())
    _, a, b = basis
    axis = math.cos(radius) * e1 - math.sin(radius) * a
    toward_z = math.sin(radius) * e1 + math.cos(radius) * a      # from the axis towards z, unit
    points = []
    for k in range(count):
        angle = 2 * math.pi * k / count
        point = math.cos(radius) * axis + math.sin(radius) * (math.cos(angle) * toward_z + math.sin(angle) * b)
        points.append(point * z.norm())
    points[0] = z.clone()
    return points


# ------------------------------------------------------------------------------- walks
@dataclass(frozen=True)
class Keyframe:
    """A stop of a walk: its recipe, the frames spent moving on to the next keyframe (the first
    of them is this keyframe itself), extra frames held on it first, and the easing of the move."""
    recipe: Recipe
    frames: int = 20
    hold: int = 0
    easing: str = "linear"

    def __post_init__(self) -> None:
        if self.frames < 1 or self.hold < 0:
            raise ValueError("a keyframe needs at least one frame to the next and a hold of 0 or more")
        ease(self.easing, 0.0)     # rejects unknown names

    def to_json(self) -> dict:
        return {"recipe": self.recipe.to_json(), "frames": self.frames, "hold": self.hold, "easing": self.easing}

    @classmethod
    def from_json(cls, data: dict) -> "Keyframe":
        return cls(Recipe.from_json(data["recipe"]), int(data.get("frames", 20)), int(data.get("hold", 0)),
                   data.get("easing", "linear"))


@dataclass(frozen=True)
class Walk:
    """Keyframes in order and how the walk ends: 'once' (stops on the last keyframe), 'loop' (moves
    on from the last back towards the first; the first is not repeated, so it plays seamlessly)
    or 'ping-pong' (there and back, the turning frames not doubled)."""
    keyframes: tuple[Keyframe, ...]
    mode: str = "loop"

    def __post_init__(self) -> None:
        if len(self.keyframes) < 2:
            raise ValueError("pick at least two keyframes to walk between")
        if self.mode not in MODES:
            raise ValueError(f"unknown walk mode {self.mode!r}; choose one of {', '.join(MODES)}")

    def steps(self) -> list[tuple[int, int, float]]:
        """Every frame as (from keyframe, to keyframe, progress between them)."""
        count = len(self.keyframes)
        moves = count if self.mode == "loop" else count - 1
        steps = []
        for i in range(moves):
            key, after = self.keyframes[i], (i + 1) % count
            steps += [(i, i, 0.0)] * key.hold
            steps += [(i, after, ease(key.easing, k / key.frames)) for k in range(key.frames)]
        if self.mode != "loop":
            steps += [(count - 1, count - 1, 0.0)] * (1 + self.keyframes[-1].hold)
        if self.mode == "ping-pong":
            steps += steps[-2:0:-1]
        return steps

    def latents(self, keyframe_latents: torch.Tensor) -> torch.Tensor:
        """(frames, z_dim) from the keyframes' latents (one row each, in order), slerped."""
        return torch.stack([slerp(keyframe_latents[a], keyframe_latents[b], t) for a, b, t in self.steps()])

    def to_json(self) -> dict:
        return {"mode": self.mode, "keyframes": [key.to_json() for key in self.keyframes]}

    @classmethod
    def from_json(cls, data: dict) -> "Walk":
        return cls(tuple(Keyframe.from_json(key) for key in data["keyframes"]), data.get("mode", "loop"))


def even_walk(recipes: list[Recipe], frames: int, mode: str = "loop", easing: str = "linear",
              hold: int = 0) -> Walk:
    """A walk of `frames` frames in all (ping-pong: the nearest even number), shared as evenly as
    possible between the moves, each keyframe held `hold` extra frames."""
    if len(recipes) < 2:
        raise ValueError("pick at least two keyframes to walk between")
    if mode not in MODES:
        raise ValueError(f"unknown walk mode {mode!r}; choose one of {', '.join(MODES)}")
    count = len(recipes)
    moves = count if mode == "loop" else count - 1
    one_way = frames // 2 + 1 if mode == "ping-pong" else frames     # there and back share their ends
    moving = one_way - hold * count - (0 if mode == "loop" else 1)
    if moving < moves:
        raise ValueError(f"{frames} frames are too few for {count} keyframes" + (f" held {hold} frames each" if hold else ""))
    share, extra = divmod(moving, moves)
    return Walk(tuple(Keyframe(recipe, share + (i < extra), hold, easing) for i, recipe in enumerate(recipes)), mode)
