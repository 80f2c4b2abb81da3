"""Differentiable augmentation with an adaptive probability.

DiffAugment (Zhao et al., NeurIPS 2020) augments reals *and* fakes with the same differentiable
transforms, so D never sees an un-augmented image and G's gradients flow through the transforms.
On a few hundred images D otherwise memorises the training set within minutes.

Each transform is applied to each image independently with probability p. ADA's heuristic
(Karras et al., NeurIPS 2020) tunes p: when D is too sure about reals (E[sign(D(real))] above a
target) p goes up, otherwise down. With p < 1 the transforms cannot "leak" into what G learns.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _chosen(batch: int, p: float, generator: torch.Generator, device) -> torch.Tensor:
    """1.0 for the images a transform applies to, 0.0 otherwise; shape (batch, 1, 1, 1)."""
    return (torch.rand(batch, generator=generator) < p).float().view(batch, 1, 1, 1).to(device)


def _uniform(batch: int, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(batch, 1, 1, 1, generator=generator).to(device)


def _colour(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Brightness, saturation and contrast, each with its own per-image coin flip."""
    b, device = x.shape[0], x.device
    brightness = (_uniform(b, generator, device) - 0.5) * _chosen(b, p, generator, device)
    x = x + brightness
    saturation = 1 + (_uniform(b, generator, device) * 2 - 1) * _chosen(b, p, generator, device)
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * saturation + grey
    contrast = 1 + (_uniform(b, generator, device) - 0.5) * _chosen(b, p, generator, device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * contrast + mean


def _translation(x: torch.Tensor, p: float, generator: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift by up to `ratio` of the size, filling with zeros (mid-grey)."""
    b, _, h, w = x.shape
    device = x.device
    max_dy, max_dx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    chosen = (torch.rand(b, generator=generator) < p).long()
    dy = torch.randint(-max_dy, max_dy + 1, (b, 1, 1), generator=generator) * chosen.view(b, 1, 1)
    dx = torch.randint(-max_dx, max_dx + 1, (b, 1, 1), generator=generator) * chosen.view(b, 1, 1)
    rows = torch.arange(h).view(1, h, 1) + dy
    cols = torch.arange(w).view(1, 1, w) + dx
    # Index a zero-padded copy: out-of-range sources land on the padding.
    rows = (rows + 1).clamp(0, h + 1).expand(b, h, w).to(device)
    cols = (cols + 1).clamp(0, w + 1).expand(b, h, w).to(device)
    batch = torch.arange(b, device=device).view(b, 1, 1).expand(b, h, w)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, p: float, generator: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero a square of `ratio` times the size at a random place."""
    b, _, h, w = x.shape
    cut_h, cut_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    chosen = (torch.rand(b, 1, 1, generator=generator) < p)
    top = torch.randint(0, h + (1 - cut_h % 2), (b, 1, 1), generator=generator) - cut_h // 2
    left = torch.randint(0, w + (1 - cut_w % 2), (b, 1, 1), generator=generator) - cut_w // 2
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    inside = (rows >= top) & (rows < top + cut_h) & (cols >= left) & (cols < left + cut_w)
    keep = (~(inside & chosen)).to(x.dtype).unsqueeze(1).to(x.device)
    return x * keep


def _flip(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """With probability p, mirror the image or not (a coin decides), as ADA's x-flip does.
    Mirroring half of all images regardless of p would leak: D could not tell an image from
    its mirror, so G would be free to paint every motif the wrong way round."""
    b = x.shape[0]
    flipped = (_chosen(b, p, generator, x.device) * _chosen(b, 0.5, generator, x.device)).to(x.dtype)
    return x * (1 - flipped) + x.flip(3) * flipped


_TRANSFORMS = {"color": _colour, "translation": _translation, "cutout": _cutout}


def augment(x: torch.Tensor, p: float, policy: tuple[str, ...], flip: bool,
            generator: torch.Generator) -> torch.Tensor:
    """Augment a batch in [-1, 1] (N, C, H, W); differentiable with respect to x."""
    if p > 0:
        if flip:
            x = _flip(x, p, generator)
        for name in policy:
            x = _TRANSFORMS[name](x, p, generator)
    return x


class AdaptiveProbability:
    """ADA's controller of the augmentation probability p."""

    def __init__(self, p: float, target: float, interval_steps: int, images_to_full: int, enabled: bool):
        self.p = p
        self.target = target
        self.interval_steps = interval_steps
        self.images_to_full = images_to_full
        self.enabled = enabled
        self._sign_sum = 0.0
        self._sign_count = 0
        self._steps = 0

    def observe(self, real_logits: torch.Tensor) -> None:
        """Feed D's logits for (augmented) reals; adjusts p every `interval_steps` calls."""
        if not self.enabled:
            return
        per_image = real_logits.detach().float().flatten(1).mean(1)
        self._sign_sum += per_image.sign().sum().item()
        self._sign_count += per_image.numel()
        self._steps += 1
        if self._steps % self.interval_steps == 0:
            overfit = self._sign_sum / self._sign_count
            step = self._sign_count / self.images_to_full
            p = self.p + step * (1 if overfit > self.target else -1)
            # Float sums of ±step leave ~1e-20 where p should be 0, which would switch the
            # augmentation's code path (and its random draws) on for nothing.
            self.p = 0.0 if p < step / 2 else min(p, 1.0)
            self._sign_sum, self._sign_count = 0.0, 0

    def state_dict(self) -> dict:
        return {"p": self.p, "sign_sum": self._sign_sum, "sign_count": self._sign_count, "steps": self._steps}

    def load_state_dict(self, state: dict) -> None:
        self.p = float(state["p"])
        self._sign_sum = float(state["sign_sum"])
        self._sign_count = int(state["sign_count"])
        self._steps = int(state["steps"])
