"""Blending two generators of one shape, as Autolume mixes models: weight interpolation, layer by
layer, or a swap of coarse layers from one with fine layers from the other.

Each layer is placed at the resolution it paints at: the output size of the innermost module
holding it that outputs a feature map of 4 px or more (so the small gates of FastGAN's skip-layer
excitation count at the size of the map they gate). A blend takes `amount` of the other model at
every layer from `finest_from` px up and none below: all layers at a `finest_from` of 4, and,
at an amount of 1, coarse layers (shapes, pose) from this model and fine ones (texture, colour)
from the other. Interpolating weights makes sense for models trained from a common source (the
demo and its fine-tune on the artist's folder): their weights stay close and line up; two models
trained apart from scratch do not, and their blend paints mush.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig
from .finetune import GENERATOR_SHAPE


class BlendError(Exception):
    """The two models cannot be blended; the message says why."""


def layer_resolutions(generator: nn.Module, z_dim: int) -> dict[str, int]:
    """Each state-dict entry's resolution (see the module docstring), from one forward pass."""
    sizes: dict[str, int] = {}
    hooks = []
    for name, module in generator.named_modules():
        def record(module, inputs, output, name=name):
            if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[-1] >= 4:
                sizes.setdefault(name, output.shape[-1])
        hooks.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            generator(torch.zeros(1, z_dim))
    finally:
        for hook in hooks:
            hook.remove()
    resolutions = {}
    for key in generator.state_dict():
        path = key.split(".")[:-1]
        while ".".join(path) not in sizes:
            path.pop()      # the root itself outputs the image, so this always ends
        resolutions[key] = sizes[".".join(path)]
    return resolutions


def check_blendable(a: TrainConfig, b: TrainConfig) -> None:
    if differ := [f"{name} {getattr(a, name)} and {getattr(b, name)}" for name in GENERATOR_SHAPE
                  if getattr(a, name) != getattr(b, name)]:
        raise BlendError(f"only generators of one shape can be blended; these differ in {', '.join(differ)}")


def blend(generator: nn.Module, other: nn.Module, config: TrainConfig, amount: float,
          finest_from: int = 4) -> dict[str, torch.Tensor]:
    """The state dict `amount` of the way from `generator`'s weights to `other`'s at every layer
    of `finest_from` px and up; `generator`'s own below. At amount 0 it is `generator` exactly,
    at 1 with `finest_from` 4 it is `other` exactly. Counters (BatchNorm's) stay `generator`'s."""
    if not 0 <= amount <= 1:
        raise BlendError(f"the amount of the other model is a fraction from 0 to 1, not {amount}")
    resolutions = layer_resolutions(generator, config.z_dim)
    theirs = other.state_dict()
    blended = {}
    for key, mine in generator.state_dict().items():
        take = amount if resolutions[key] >= finest_from else 0.0
        blended[key] = torch.lerp(mine, theirs[key], take) if mine.is_floating_point() else mine.clone()
    return blended
