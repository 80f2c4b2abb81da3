"""The generator's main directions in z: what the Explore tab's sliders move along.

Two ways to find them, both from G alone:
- SeFa (Shen & Zhou 2021), closed form: z enters G through one linear map A (for FastGAN and
  DCGAN the first transposed convolution, followed by a BatchNorm that is a fixed per-channel scale
  in eval mode and is folded in); the unit vectors that A stretches most are the eigenvectors of
  AᵀA with the largest eigenvalues.
- GANSpace (Härkönen et al. 2020) for generators without a mapping network: PCA of an early feature
  map (the first at 8x8) over a few thousand seeds, each principal component regressed back to
  the z that produces it.
Which one the studio shows, and why, is measured in benchmarks/directions.py (see the README).

Directions are cached in a file under the SHA-256 of the weights they were found in (explore.py
chooses where), so they are computed once per saved model and again when it changes. The
artist's names for them, and which are hidden, are kept in RUN_DIR/directions.json.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .files import write_json

METHODS = ("sefa", "ganspace")
DEFAULT_METHOD = "sefa"
COUNT = 12                     # directions computed and cached; the Explore tab shows the first 10
GANSPACE_SAMPLES = 2048
GANSPACE_SIZE = 8              # px of the feature map whose PCA GANSpace takes


@dataclass(frozen=True)
class Directions:
    method: str
    # (count, z_dim), orthonormal rows, strongest first; a sidecar's are only those its walk used, by index
    vectors: torch.Tensor | Mapping[int, torch.Tensor]
    strengths: tuple[float, ...]   # what ranks them: SeFa's eigenvalues, GANSpace's variances

    def to_json(self) -> dict:
        return {"method": self.method, "vectors": self.vectors.tolist(), "strengths": list(self.strengths)}

    @classmethod
    def from_json(cls, data: dict) -> "Directions":
        return cls(data["method"], torch.tensor(data["vectors"], dtype=torch.float32), tuple(data["strengths"]))


def find_directions(generator: nn.Module, method: str = DEFAULT_METHOD, count: int = COUNT) -> Directions:
    if method == "sefa":
        return sefa(generator, count)
    if method == "ganspace":
        return ganspace(generator, count)
    raise ValueError(f"unknown direction method {method!r}; choose one of {', '.join(METHODS)}")


def sefa(generator: nn.Module, count: int = COUNT) -> Directions:
    """The eigenvectors of AᵀA for the first layer's weight A (closed form, milliseconds)."""
    a = _first_linear_map(generator).double()
    eigenvalues, eigenvectors = torch.linalg.eigh(a.T @ a)          # ascending
    order = eigenvalues.argsort(descending=True)[:count]
    return Directions("sefa", _canonical_signs(eigenvectors[:, order].T.float()),
                      tuple(eigenvalues[order].tolist()))


def _first_linear_map(generator: nn.Module) -> torch.Tensor:
    """(outputs, z_dim): z -> the first layer's output, the BatchNorm right after it folded in."""
    first = next((m for m in generator.modules() if isinstance(m, (nn.ConvTranspose2d, nn.Linear))), None)
    if first is None:
        raise ValueError("this generator has no first linear layer to find directions in")
    if isinstance(first, nn.ConvTranspose2d):      # weight (z_dim, channels, k, k) on a 1x1 input
        a = first.weight.detach().flatten(1).T        # (channels * k * k, z_dim)
        per_output = first.weight[0, 0].numel()      # k * k outputs per channel
    else:                                          # weight (outputs, z_dim)
        a = first.weight.detach()
        per_output = 1
    scale = _eval_norm_scale(_next_sibling(generator, first))
    return a if scale is None else a * scale.repeat_interleave(per_output)[:, None]


def _next_sibling(generator: nn.Module, module: nn.Module) -> nn.Module | None:
    """What `module`'s output goes through next, as far as the structure says: the module after it
    in its parent Sequential (elsewhere, the order modules were registered in is no such promise)."""
    for parent in generator.modules():
        children = list(parent) if isinstance(parent, nn.Sequential) else []
        for child, after in zip(children, [*children[1:], None]):
            if child is module:
                return after
    return None


def _eval_norm_scale(norm: nn.Module | None) -> torch.Tensor | None:
    """A BatchNorm's per-channel scale in eval mode, or None when it is none (or keeps no running
    statistics, so it has no fixed scale). Its shift moves every sample alike, so it is left out."""
    if not isinstance(norm, nn.BatchNorm2d | nn.BatchNorm1d) or norm.running_var is None:
        return None
    scale = 1 / (norm.running_var.detach() + norm.eps).sqrt()
    return scale * norm.weight.detach() if norm.affine else scale


def ganspace(generator: nn.Module, count: int = COUNT, samples: int = GANSPACE_SAMPLES, seed: int = 0) -> Directions:
    """PCA of the first 8x8 feature map over `samples` latents drawn from `seed`, each component
    regressed back to z (least squares), then made orthonormal in order of strength."""
    z_dim = generator.z_dim
    z = torch.randn(samples, z_dim, generator=torch.Generator().manual_seed(seed))
    features = torch.cat([_early_features(generator, chunk) for chunk in z.split(256)])
    # Randomised PCA (Halko et al.): exact eigendecompositions of thousands of dimensions take
    # minutes on a laptop CPU. Its random start is seeded, so a file always gives the same result.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        u, s, _ = torch.pca_lowrank(features, q=count + 8, center=True, niter=6)
    scores = (u[:, :count] * s[:count]).double()                 # (samples, count)
    # z ≈ scores @ B: row i of B is how z moves per unit of component i.
    b = torch.linalg.lstsq(scores, z.double()).solution
    q, _ = torch.linalg.qr(b.T)              # Gram-Schmidt, strongest first
    variances = (s[:count] ** 2 / (samples - 1)).tolist()
    return Directions("ganspace", _canonical_signs(q.T.float()), tuple(variances))


class _Enough(Exception):
    """Raised from a hook once the wanted feature map exists: the rest of G need not run."""


def _early_features(generator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """(len(z), features): the output of G's first activation at GANSPACE_SIZE px."""
    captured = []

    def keep(module, inputs, output):
        if output.dim() == 4 and output.shape[-1] == GANSPACE_SIZE:
            captured.append(output.flatten(1).float().cpu())
            raise _Enough

    hooks = [m.register_forward_hook(keep) for m in generator.modules() if isinstance(m, nn.GLU | nn.ReLU)]
    try:
        with torch.no_grad():
            generator(z.to(next(generator.parameters()).device))
    except _Enough:
        pass
    finally:
        for hook in hooks:
            hook.remove()
    if not captured:
        raise ValueError(f"this generator has no {GANSPACE_SIZE} px activation to take the PCA of")
    return captured[0]


def _canonical_signs(vectors: torch.Tensor) -> torch.Tensor:
    """An eigenvector's sign is arbitrary: make each one's largest component positive, so that
    the same file always gives the same directions and sliders."""
    largest = vectors.gather(1, vectors.abs().argmax(1, keepdim=True))
    return vectors * largest.sign()


# ------------------------------------------------------------------------------ caching
def cached_directions(generator: nn.Module, sha256: str, cache: str | Path, method: str = DEFAULT_METHOD,
                      count: int = COUNT) -> Directions:
    """The directions of `generator`, whose weights have this SHA-256: read from the file `cache`
    when it was written for the same weights, else found and written there."""
    key = {"generator_sha256": sha256, "method": method, "count": count}
    try:
        data = json.loads(Path(cache).read_text())
        if {k: data.get(k) for k in key} == key:
            return Directions.from_json(data)
    except (OSError, ValueError, KeyError):
        pass              # no cache yet, or a damaged one: find them again
    directions = find_directions(generator, method, count)
    try:
        write_json(cache, {**key, **directions.to_json()})
    except OSError:
        pass              # a read-only folder: the directions still work, they are just not kept
    return directions


# ------------------------------------------------------------------------ artists' names
@dataclass(frozen=True)
class DirectionLabels:
    """What the artist called each direction and which ones they hid, kept with the run."""
    names: dict[int, str] = field(default_factory=dict)
    hidden: frozenset[int] = frozenset()

    def name(self, index: int) -> str:
        return self.names.get(index) or f"direction {index}"

    def renamed(self, index: int, name: str) -> "DirectionLabels":
        names = {**self.names, index: name.strip()}
        return DirectionLabels({i: n for i, n in names.items() if n}, self.hidden)

    def hiding(self, index: int, hide: bool = True) -> "DirectionLabels":
        return DirectionLabels(self.names, self.hidden | {index} if hide else self.hidden - {index})

    def to_json(self) -> dict:
        return {"names": {str(i): n for i, n in sorted(self.names.items())}, "hidden": sorted(self.hidden)}

    @classmethod
    def from_json(cls, data: dict) -> "DirectionLabels":
        return cls({int(i): str(n) for i, n in data.get("names", {}).items()},
                   frozenset(int(i) for i in data.get("hidden", [])))


def labels_path(run_dir: str | Path) -> Path:
    return Path(run_dir) / "directions.json"


def read_labels(run_dir: str | Path) -> DirectionLabels:
    """The run's names and hidden directions; none when it has no (readable) file."""
    try:
        return DirectionLabels.from_json(json.loads(labels_path(run_dir).read_text()))
    except (OSError, ValueError, AttributeError, TypeError):
        return DirectionLabels()


def write_labels(run_dir: str | Path, labels: DirectionLabels) -> Path:
    return write_json(labels_path(run_dir), labels.to_json())
