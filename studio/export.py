"""Animations and frames for download: GIF, MP4 (H.264 via imageio-ffmpeg), a zip of PNGs and PNG
stills. Each writer encodes straight into the path it is given; callers hand it the temporary
path of files.atomic_output, so a reader never sees half of one."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

MP4_BLOCK = 16         # px: H.264 codes 16x16 macroblocks; other sizes are padded up to them


def upscale(frames: np.ndarray, size: int) -> np.ndarray:
    """(F, H, W, 3) uint8 -> (F, size, size, 3); a 64 px GAN sample is too small to watch."""
    if frames.shape[1] == size:
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.LANCZOS)) for f in frames])


def frame_ms(fps: float) -> int:
    """How long each GIF frame shows, in ms: GIF counts in hundredths of a second, so 24 fps is
    stored as 40 ms (it plays at 25), and at least 20 ms (faster ones browsers slow to 100 ms)."""
    return max(2, round(100 / fps)) * 10


def write_gif(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """Every frame `frame_ms(fps)` long, looping forever."""
    path = Path(path)
    iio.imwrite(path, frames, extension=".gif", duration=frame_ms(fps), loop=0)
    return path


def write_mp4(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """H.264 in yuv420p, which every browser and phone plays. Frames whose sides are not a
    multiple of 16 are padded (their edge pixels repeated) rather than rescaled."""
    path = Path(path)
    height, width = frames.shape[1:3]
    pad_y, pad_x = -height % MP4_BLOCK, -width % MP4_BLOCK
    if pad_y or pad_x:
        frames = np.pad(frames, ((0, 0), (0, pad_y), (0, pad_x), (0, 0)), mode="edge")
    iio.imwrite(path, frames, extension=".mp4", plugin="FFMPEG", fps=fps, codec="libx264",
                pixelformat="yuv420p", macro_block_size=MP4_BLOCK)
    return path


def write_frames_zip(frames: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    with zipfile.ZipFile(path, "w") as archive:
        for index, frame in enumerate(frames):
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="PNG")
            archive.writestr(f"frame{index:05d}.png", buffer.getvalue())
    return path


def write_still(image: Image.Image, path: str | Path, text: dict[str, str]) -> Path:
    """A PNG carrying `text` in its tEXt chunks (e.g. the recipe it was rendered from)."""
    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    path = Path(path)
    image.save(path, format="PNG", pnginfo=info)
    return path


def sidecar_path(path: str | Path) -> Path:
    """`walk.gif` -> `walk.json` beside it."""
    return Path(path).with_suffix(".json")
