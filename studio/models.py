"""Generator and discriminator networks. Pure nn.Modules: no I/O, no training logic.

The default pair follows FastGAN (Liu et al., ICLR 2021, "Towards Faster and Stabilized GAN
Training for High-fidelity Few-shot Image Synthesis"):
- G: nearest upsampling + 3x3 conv + BatchNorm + GLU, with skip-layer excitation (SLE), where a
  4x4-ish low-resolution feature map gates the channels of a map 16x larger.
- D: spectral-normalised residual down-sampling blocks, a patch of logits, and two small decoders
  that must reconstruct the real image (whole, and a random quarter) from D's features, trained
  with MSE: a self-supervised task that stops D from overfitting a few hundred images.
Unlike FastGAN, G has no per-pixel noise injection, so one latent always renders the same image:
the Explore tab's interpolations must not flicker.

The DCGAN pair (Radford et al. 2016) is the textbook baseline, kept for comparisons. The projected
discriminator lives in projected.py: it is built around a pretrained network.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .config import TrainConfig

# Channels per feature-map size, as multiples of the width (FastGAN's nfc_multi table).
_WIDTH_MULTIPLIERS = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125, 2048: 0.125}


def channels(size: int, width: int) -> int:
    return max(8, int(_WIDTH_MULTIPLIERS[size] * width))


def _sizes(start: int, stop: int) -> list[int]:
    """Powers of two from start to stop inclusive."""
    return [2**k for k in range(int(math.log2(start)), int(math.log2(stop)) + 1)]


def init_weights(module: nn.Module) -> None:
    """DCGAN/FastGAN initialisation: N(0, 0.02) convolutions, N(1, 0.02) norm scales."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------- FastGAN generator
def _up_block(in_ch: int, out_ch: int, convs: int) -> nn.Sequential:
    """Upsample x2, then `convs` times (3x3 conv to 2*out_ch, BatchNorm, GLU halves channels)."""
    layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest")]
    for i in range(convs):
        layers += [
            nn.Conv2d(in_ch if i == 0 else out_ch, out_ch * 2, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch * 2),
            nn.GLU(dim=1),
        ]
    return nn.Sequential(*layers)


class SkipLayerExcitation(nn.Module):
    """Gates the channels of a large feature map by a small one (FastGAN's SLE module)."""

    def __init__(self, small_ch: int, big_ch: int):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            nn.Conv2d(small_ch, big_ch, 4, bias=False),
            nn.SiLU(),
            nn.Conv2d(big_ch, big_ch, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
        return big * self.gate(small)


class FastGANGenerator(nn.Module):
    def __init__(self, resolution: int, z_dim: int, width: int):
        super().__init__()
        self.resolution, self.z_dim = resolution, z_dim
        self.initial = nn.Sequential(
            nn.ConvTranspose2d(z_dim, channels(4, width) * 2, 4, bias=False),
            nn.BatchNorm2d(channels(4, width) * 2),
            nn.GLU(dim=1),
        )
        # FastGAN alternates a two-conv block and a one-conv block to save compute.
        self.ups = nn.ModuleDict({
            str(size): _up_block(channels(size // 2, width), channels(size, width),
                                 convs=2 if int(math.log2(size)) % 2 else 1)
            for size in _sizes(8, resolution)
        })
        self.excitations = nn.ModuleDict({
            str(size): SkipLayerExcitation(channels(size // 16, width), channels(size, width))
            for size in _sizes(64, resolution)
        })
        self.to_rgb = nn.Conv2d(channels(resolution, width), 3, 3, padding=1)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        features = {4: self.initial(z.view(z.shape[0], -1, 1, 1))}
        x = features[4]
        for size_key, up in self.ups.items():
            size = int(size_key)
            x = up(x)
            if size_key in self.excitations:
                x = self.excitations[size_key](features[size // 16], x)
            features[size] = x
        return torch.tanh(self.to_rgb(x))


# ----------------------------------------------------------------------- FastGAN discriminator
def sn_conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Module:
    return spectral_norm(nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=False))


class _DownBlock(nn.Module):
    """Halves the size: a strided conv path and an average-pool shortcut, averaged."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.main = nn.Sequential(
            sn_conv(in_ch, out_ch, 4, 2, 1), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2),
            sn_conv(out_ch, out_ch, 3, 1, 1), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2),
        )
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2), sn_conv(in_ch, out_ch, 1), nn.BatchNorm2d(out_ch), nn.LeakyReLU(0.2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.shortcut(x)) / 2


class _Decoder(nn.Module):
    """Decodes an 8x8 feature map back into an RGB image of `out_size`."""

    def __init__(self, in_ch: int, out_size: int, width: int):
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_ch
        for size in _sizes(16, out_size):
            out_ch = channels(size, width // 2)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                       sn_conv(ch, out_ch * 2, 3, 1, 1), nn.BatchNorm2d(out_ch * 2), nn.GLU(dim=1)]
            ch = out_ch
        layers += [sn_conv(ch, 3, 3, 1, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class FastGANDiscriminator(nn.Module):
    has_decoder = True

    def __init__(self, resolution: int, width: int):
        super().__init__()
        self.resolution = resolution
        ch = {size: channels(min(size * 2, 2048), width) for size in _sizes(8, resolution)}
        self.from_rgb = nn.Sequential(sn_conv(3, ch[resolution], 3, 1, 1), nn.LeakyReLU(0.2))
        self.downs = nn.ModuleDict({
            str(size): _DownBlock(ch[size * 2], ch[size]) for size in reversed(_sizes(8, resolution // 2))
        })
        self.logits = nn.Sequential(
            sn_conv(ch[8], ch[8] * 2, 1), nn.BatchNorm2d(ch[8] * 2), nn.LeakyReLU(0.2),
            sn_conv(ch[8] * 2, 1, 4),
        )
        self.reconstruction_size = min(resolution // 2, 128)
        self.decode_whole = _Decoder(ch[8], self.reconstruction_size, width)
        self.decode_quarter = _Decoder(ch[16], self.reconstruction_size, width)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor, quarter: int | None = None):
        """Patch logits, shape (batch, patches). With `quarter` (0-3), also the MSE of
        reconstructing the whole input and that quarter of it from D's features."""
        features = {self.resolution: self.from_rgb(x)}
        h = features[self.resolution]
        for size_key, down in self.downs.items():
            h = down(h)
            features[int(size_key)] = h
        logits = self.logits(features[8]).flatten(1)
        if quarter is None:
            return logits
        return logits, self._reconstruction_loss(x, features, quarter)

    def _reconstruction_loss(self, x: torch.Tensor, features: dict, quarter: int) -> torch.Tensor:
        size = self.reconstruction_size
        row, col = divmod(quarter, 2)
        half = self.resolution // 2
        x_quarter = x[:, :, row * half:(row + 1) * half, col * half:(col + 1) * half]
        f_quarter = features[16][:, :, row * 8:(row + 1) * 8, col * 8:(col + 1) * 8]
        whole = self.decode_whole(features[8])
        part = self.decode_quarter(f_quarter)
        target_whole = F.interpolate(x, size=size, mode="area")
        target_part = F.interpolate(x_quarter, size=size, mode="area")
        return F.mse_loss(whole.float(), target_whole.float()) + F.mse_loss(part.float(), target_part.float())


# ------------------------------------------------------------------------------ DCGAN baseline
class DCGANGenerator(nn.Module):
    def __init__(self, resolution: int, z_dim: int, width: int):
        super().__init__()
        self.resolution, self.z_dim = resolution, z_dim
        ch = {size: min(width * resolution // size, 16 * width) for size in _sizes(4, resolution)}
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, ch[4], 4, bias=False), nn.BatchNorm2d(ch[4]), nn.ReLU()]
        for size in _sizes(8, resolution):
            layers += [nn.ConvTranspose2d(ch[size // 2], ch[size], 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ch[size]), nn.ReLU()]
        layers += [nn.Conv2d(ch[resolution], 3, 3, padding=1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    has_decoder = False

    def __init__(self, resolution: int, width: int):
        super().__init__()
        ch = {size: min(width * resolution // size // 2, 16 * width) for size in _sizes(4, resolution)}
        layers: list[nn.Module] = [nn.Conv2d(3, ch[resolution // 2], 4, 2, 1), nn.LeakyReLU(0.2)]
        for size in reversed(_sizes(4, resolution // 4)):
            layers += [nn.Conv2d(ch[size * 2], ch[size], 4, 2, 1, bias=False),
                       nn.BatchNorm2d(ch[size]), nn.LeakyReLU(0.2)]
        layers += [nn.Conv2d(ch[4], 1, 4)]
        self.net = nn.Sequential(*layers)
        self.apply(init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


def build_generator(config: TrainConfig) -> nn.Module:
    cls = FastGANGenerator if config.architecture == "fastgan" else DCGANGenerator
    return cls(config.resolution, config.z_dim, config.width)


def build_discriminator(config: TrainConfig) -> nn.Module:
    if config.discriminator == "projected":
        from .projected import ProjectedDiscriminator   # here: projected.py builds on this module
        return ProjectedDiscriminator(config.width, config.projection_size)
    cls = FastGANDiscriminator if config.discriminator == "fastgan" else DCGANDiscriminator
    return cls(config.resolution, config.width)
