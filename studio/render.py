"""From generator output to pictures on disk."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from .files import atomic_output
from .latent import seeds_to_z


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float (N, 3, H, W) -> uint8 (N, H, W, 3), ready for PIL or imageio."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def to_pil_images(images: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(array) for array in to_uint8(images).numpy()]


def grid_image(images: torch.Tensor, columns: int | None = None, padding: int = 2) -> Image.Image:
    """A contact sheet, as square as possible unless `columns` is given."""
    columns = columns or math.ceil(math.sqrt(len(images)))
    grid = make_grid(images.float().clamp(-1, 1), nrow=columns, padding=padding, pad_value=1.0)
    return to_pil_images(grid.unsqueeze(0))[0]


def grid_tiles(grid: Image.Image, count: int, columns: int, padding: int = 2) -> torch.Tensor:
    """The first `count` images of a contact sheet that grid_image made with `columns` columns,
    back as [-1, 1] floats (N, 3, H, W): a preview grid read from disk."""
    size = (grid.width - padding) // columns - padding
    pixels = torch.from_numpy(np.array(grid.convert("RGB"))).permute(2, 0, 1).float() / 127.5 - 1
    tiles = []
    for index in range(count):
        top, left = (padding + i * (size + padding) for i in divmod(index, columns))
        tiles.append(pixels[:, top:top + size, left:left + size])
    return torch.stack(tiles)


def save_png(image: Image.Image, path: str | Path) -> Path:
    """Through a temporary file, so a preview being read is never half-written."""
    path = Path(path)
    with atomic_output(path) as partial:
        image.save(partial, format="PNG")
    return path


def render_seeds(generator: torch.nn.Module, z_dim: int, seeds: list[int], batch: int = 32) -> torch.Tensor:
    """Render seeds with a loaded generator, in batches; float [-1, 1] on the CPU."""
    return render_latents(generator, seeds_to_z(seeds, z_dim), batch)


def render_latents(generator: torch.nn.Module, z: torch.Tensor, batch: int = 32,
                   progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Render latents (N, z_dim) in batches; float [-1, 1] on the CPU. `progress(done, total)`
    is called after each batch, so a long animation can show how far it has got."""
    device = next(generator.parameters()).device
    outputs = []
    with torch.no_grad():
        for i in range(0, len(z), batch):
            outputs.append(generator(z[i:i + batch].to(device)).float().clamp(-1, 1).cpu())
            if progress is not None:
                progress(min(i + batch, len(z)), len(z))
    return torch.cat(outputs)
