"""Animations and frames for download: GIF, MP4 (H.264 via imageio-ffmpeg) and a zip of PNGs,
each with a JSON sidecar saying how it was made, so an artist can render it again."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image


def upscale(frames: np.ndarray, size: int) -> np.ndarray:
    """(F, H, W, 3) uint8 -> (F, size, size, 3); a 64 px GAN sample is too small to watch."""
    if frames.shape[1] == size:
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.LANCZOS)) for f in frames])


def write_gif(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    path = Path(path)
    iio.imwrite(path, frames, extension=".gif", duration=1000 / fps, loop=0)
    return path


def write_mp4(frames: np.ndarray, path: str | Path, fps: float) -> Path:
    """H.264 in yuv420p, which every browser and phone plays; needs even sizes."""
    path = Path(path)
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError("MP4 frames need an even width and height")
    iio.imwrite(path, frames, extension=".mp4", plugin="FFMPEG", fps=fps, codec="libx264",
                pixelformat="yuv420p", macro_block_size=2)
    return path


def write_frames_zip(frames: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    with zipfile.ZipFile(path, "w") as archive:
        for index, frame in enumerate(frames):
            buffer = io.BytesIO()
            Image.fromarray(frame).save(buffer, format="PNG")
            archive.writestr(f"frame{index:05d}.png", buffer.getvalue())
    return path


def write_provenance(path: str | Path, **facts) -> Path:
    """`animation.gif` -> `animation.json` beside it."""
    sidecar = Path(path).with_suffix(".json")
    sidecar.write_text(json.dumps(facts, indent=2, default=str))
    return sidecar
