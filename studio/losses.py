"""Adversarial losses and gradient penalties, as plain functions of D's logits.

Hinge (Lim & Ye 2017; used by FastGAN, BigGAN) is the default. Non-saturating BCE (Goodfellow et
al. 2014, the DCGAN recipe) and WGAN-GP (Gulrajani et al. 2017) are the classic alternatives.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def discriminator_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    if kind == "bce":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "wgan-gp":
        return fake_logits.mean() - real_logits.mean()
    raise ValueError(f"unknown loss {kind!r}")


def generator_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    fake_logits = fake_logits.float()
    if kind == "bce":
        return F.softplus(-fake_logits).mean()
    if kind in ("hinge", "wgan-gp"):
        return -fake_logits.mean()
    raise ValueError(f"unknown loss {kind!r}")


def r1_penalty(real_logits: torch.Tensor, reals: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Mean squared gradient norm of D at the reals (Mescheder et al. 2018): zero-centred, so D
    is pushed to be flat around the data instead of growing sharp edges. `reals` must have
    requires_grad and `real_logits` must be computed from it.

    Under fp16 autocast the gradients inside D are fp16 too, and D's gradient at a real image is
    small enough to underflow there (to 0: a penalty that does nothing). `scale`, the grad
    scaler's, lifts it into fp16's range for the backward pass and is divided out in fp32 after,
    as PyTorch's AMP recipe for gradient penalties does; bf16 has fp32's range and needs none."""
    (grad,) = torch.autograd.grad(real_logits.float().sum() * scale, reals, create_graph=True)
    return (grad.float() / scale).square().sum(dim=(1, 2, 3)).mean()


def gradient_penalty(D: Callable[[torch.Tensor], torch.Tensor], reals: torch.Tensor, fakes: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
    """WGAN-GP: (||grad D|| - 1)^2 on random interpolates between reals and fakes."""
    mix = torch.rand(reals.shape[0], 1, 1, 1, generator=generator).to(reals.device, reals.dtype)
    between = (reals.detach() * mix + fakes.detach() * (1 - mix)).requires_grad_(True)
    logits = D(between)
    (grad,) = torch.autograd.grad(logits.float().sum(), between, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1).square().mean()
