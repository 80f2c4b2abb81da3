"""Reading exported frames back, for tests that compare them."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def read_frames_zip(path: str | Path) -> np.ndarray:
    """(F, H, W, 3) uint8, in frame order."""
    with zipfile.ZipFile(path) as archive:
        names = sorted(name for name in archive.namelist() if name.endswith(".png"))
        return np.stack([np.asarray(Image.open(io.BytesIO(archive.read(name))).convert("RGB")) for name in names])
