"""The projected discriminator (Sauer et al., NeurIPS 2021, "Projected GANs Converge Faster").

D judges images in the feature space of a network pretrained on ImageNet instead of learning
features from a few hundred paintings, which is why it needs neither R1 nor a reconstruction
task to stay useful, and why G learns content (faces, objects) within minutes instead of hours:

  image ─► resize to `projection_size` ─► EfficientNet-Lite0 (frozen) ─► 4 feature maps, 1/4..1/32
        ─► cross-channel mixing: a fixed random 1x1 conv per map
        ─► cross-scale mixing: from the coarsest map down, a fixed random 1x1 conv narrows it to
           the next finer map's width, bilinear x2 brings it to that map's size, and it is added
        ─► one small trainable patch discriminator per scale ─► all their logits, concatenated

The mixing layers are random but never trained: they spread the pretrained features over all
channels and scales so that no head can lean on a few dominant ones. They are drawn from the
run's seed and kept as buffers, so they are saved in checkpoints (a resumed run is exact), while
the pretrained network's 3.4 M weights are not: it is held outside the module's registered
children, so neither D's parameters (the optimizer) nor its state_dict (checkpoints) ever see it.

Unlike the paper's code, the mixed maps are judged at the feature network's own four scales
rather than each upsampled x2 first: heads on maps a quarter the size cost a CPU about half as
much, which bought 1.35 times the steps in equal time, and KID was no worse (README,
"Time to quality").
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import FEATURE_CHANNELS, WEIGHTS_SHA256, load_backbone
from .models import sn_conv, init_weights

MIXED_CHANNELS = (64, 128, 256, 512)   # after cross-channel mixing, finest map first
# Patch-discriminator channels by feature-map size (Projected GAN's table), at width 32.
_HEAD_CHANNELS = {4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 64, 256: 32}
FEATURE_NETWORK = "efficientnet-lite0"


class _FixedConv1x1(nn.Module):
    """A 1x1 convolution with PyTorch's default random initialisation, stored as buffers: saved
    with D, never trained, untouched by `requires_grad_`."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        conv = nn.Conv2d(in_ch, out_ch, 1)
        self.register_buffer("weight", conv.weight.detach().clone())
        self.register_buffer("bias", conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype))


class RandomProjection(nn.Module):
    """Cross-channel and cross-scale mixing of the four feature maps (Projected GAN's CCM + CSM)."""

    def __init__(self):
        super().__init__()
        self.channel_mixing = nn.ModuleList(_FixedConv1x1(c_in, c_out)
                                            for c_in, c_out in zip(FEATURE_CHANNELS, MIXED_CHANNELS))
        # Each coarser map is narrowed to the width of the next finer one before it is added.
        self.scale_mixing = nn.ModuleList(_FixedConv1x1(coarse, fine)
                                          for coarse, fine in zip(MIXED_CHANNELS[1:], MIXED_CHANNELS[:-1]))

    def forward(self, maps: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [mix(m) for mix, m in zip(self.channel_mixing, maps)]
        for level in reversed(range(len(out) - 1)):
            coarser = self.scale_mixing[level](out[level + 1])
            out[level] = out[level] + F.interpolate(coarser, size=out[level].shape[-2:], mode="bilinear",
                                                    align_corners=False)
        return out


class _PatchDiscriminator(nn.Module):
    """Strided 4x4 convs down to about 8x8, then a 4x4 conv to a small patch of logits."""

    def __init__(self, in_ch: int, size: int, width: int):
        super().__init__()

        def channels(s: int) -> int:
            return max(16, _HEAD_CHANNELS[min(2 ** math.ceil(math.log2(s)), 256)] * width // 32)

        layers: list[nn.Module] = []
        ch = in_ch
        while size > 8:
            out_ch = channels(size // 2)
            layers += [sn_conv(ch, out_ch, 4, 2, 1), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2)]
            ch, size = out_ch, size // 2
        layers.append(sn_conv(ch, 1, min(4, size)))   # the coarsest map of a 64 px projection is 2x2
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class ProjectedDiscriminator(nn.Module):
    has_decoder = False

    def __init__(self, width: int, projection_size: int):
        super().__init__()
        self.projection_size = projection_size
        self.projection = RandomProjection()
        # The mixed maps are 1/4, 1/8, 1/16 and 1/32 of the projected image's size.
        sizes = [projection_size // 2 ** (level + 2) for level in range(len(MIXED_CHANNELS))]
        self.heads = nn.ModuleList(_PatchDiscriminator(ch, size, width)
                                   for ch, size in zip(MIXED_CHANNELS, sizes))
        self.heads.apply(init_weights)
        # Not registered as a child (see the module docstring): a plain attribute.
        object.__setattr__(self, "feature_network", load_backbone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (batch, patches over all four scales) for images in [-1, 1]."""
        size = self.projection_size
        if x.shape[-1] > size:   # antialiased, so fine detail does not alias (its kernel has no bf16)
            x = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
        elif x.shape[-1] < size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        # The weights expect (v - 127) / 128 for v in 0..255; x is (v - 127.5) / 127.5.
        x = (x * 127.5 + 0.5) / 128
        maps = self.projection(self.feature_network.features(x))
        return torch.cat([head(m) for head, m in zip(self.heads, maps)], dim=1)

    # The feature network follows D to its device, dtype and memory layout, but stays in eval
    # mode (its BatchNorm statistics are ImageNet's) and frozen whatever D is set to.
    def _apply(self, fn, recurse: bool = True):
        super()._apply(fn, recurse)
        self.feature_network._apply(fn, recurse)
        return self

    # A checkpoint records which pretrained weights its D was trained against; resuming it
    # against others would judge with features its heads never saw.
    def get_extra_state(self) -> dict:
        return {"feature_network": FEATURE_NETWORK, "sha256": WEIGHTS_SHA256}

    def set_extra_state(self, state: dict) -> None:
        if state.get("sha256") != WEIGHTS_SHA256:
            raise ValueError(f"this discriminator was trained against other {state.get('feature_network')} "
                             f"weights (SHA-256 {state.get('sha256')}), not the installed ones")
