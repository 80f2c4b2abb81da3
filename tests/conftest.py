"""Shared fixtures: tiny models, deterministic synthetic paintings, and an isolated cache.

Every trainer here is built with an explicit Numerics (or a config whose precision and memory
format are fixed), so the "auto" speed probe never runs unless a test asks for it.
"""
from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from browser import free_port
from studio.config import TrainConfig
from studio.data import IngestOptions, ingest
from studio.metrics import INSTALL_HINT, MetricsUnavailable, inception_path
from studio.numerics import Numerics
from studio.run import Cadence
from studio.trainer import Trainer

# Before any test module imports gradio: nothing may reach the network, and gradio's uploads
# and served files stay in this run's tmp.
for _name, _value in (("GRADIO_ANALYTICS_ENABLED", "False"), ("HF_HUB_OFFLINE", "1"),
                      ("HF_HUB_DISABLE_TELEMETRY", "1"),
                      ("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="gradio_test_"))):
    os.environ.setdefault(_name, _value)

RES = 32
TINY = dict(resolution=RES, width=8, batch_size=4, z_dim=16, device="cpu",
            precision="fp32", memory_format="contiguous")
CPU_FP32 = Numerics(torch.device("cpu"), "fp32", channels_last=False)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path_factory):
    """No test writes to ~/.cache, and the global RNG starts the same in every test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    torch.manual_seed(0)


# ---------------------------------------------------------------- synthetic paintings
def draw_shapes(count: int, size: int, seed: int = 0) -> list[Image.Image]:
    """Coloured ellipses, rectangles and triangles on coloured grounds: varied but reproducible."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        ground = tuple(int(c) for c in rng.integers(0, 256, 3))
        image = Image.new("RGB", (size, size), ground)
        draw = ImageDraw.Draw(image)
        for j in range(2):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
            x1, y1 = (int(v) for v in rng.integers(size // 2 + 2, size, 2))
            kind = (i + j) % 3
            if kind == 0:
                draw.ellipse((x0, y0, x1, y1), fill=colour)
            elif kind == 1:
                draw.rectangle((x0, y0, x1, y1), fill=colour)
            else:
                draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
        images.append(image)
    return images


def images_tensor(images: list[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(im.convert("RGB")) for im in images])).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="session")
def images32() -> torch.Tensor:
    """uint8 (16, 3, 32, 32) synthetic paintings."""
    return images_tensor(draw_shapes(16, RES, seed=1))


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """A folder of 24 PNG paintings at 48 px (a source for ingest), read-only for tests."""
    folder = tmp_path_factory.mktemp("shapes")
    for i, image in enumerate(draw_shapes(24, 48, seed=2)):
        image.save(folder / f"shape{i:02d}.png")
    return folder


@pytest.fixture(scope="session")
def dataset32(shapes_dir, tmp_path_factory) -> Path:
    """An ingested 32 px dataset folder, read-only for tests."""
    out = tmp_path_factory.mktemp("dataset") / "shapes32"
    report = ingest([shapes_dir], out, IngestOptions(resolution=RES))
    assert len(report.accepted) == 24 and not report.rejected
    return out


# ---------------------------------------------------------------- tiny trainers
@pytest.fixture
def tiny_config() -> TrainConfig:
    return TrainConfig(**TINY)


@pytest.fixture
def cpu_fp32() -> Numerics:
    return CPU_FP32


@pytest.fixture
def make_trainer(images32):
    """make_trainer(**config_changes) -> a fresh tiny Trainer on CPU fp32 (no speed probe)."""
    def make(**changes) -> Trainer:
        config = TrainConfig(**{**TINY, **changes})
        images = images32
        if config.resolution != RES:
            images = torch.nn.functional.interpolate(images32.float(), size=config.resolution, mode="area")
            images = images.round().clamp(0, 255).to(torch.uint8)
        return Trainer(config, images, CPU_FP32)
    return make


@pytest.fixture(scope="session")
def tiny_run_dir(images32, tmp_path_factory) -> Path:
    """A run folder (checkpoint + generator.safetensors) of a tiny model after 2 steps, read-only for tests.

    Two steps from the N(0, 0.02) initialisation every seed renders near-uniform mid-grey, so G_ema's
    convolutions are re-drawn wider (as after real training) to make seeds visibly different."""
    from studio.checkpoint import export_generator, save_checkpoint

    trainer = Trainer(TrainConfig(**TINY), images32, CPU_FP32)
    trainer.step()
    trainer.step()
    wide = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in trainer.G_ema.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=wide) * 0.1)
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    save_checkpoint(trainer, run_dir)
    export_generator(trainer, run_dir / "generator.safetensors")
    return run_dir


# ---------------------------------------------------------------- background work
# Preview after every step and log every step, so tests see results after a few tiny steps; KID,
# when asked for, of only 8 samples.
def _inception_installed() -> bool:
    try:
        inception_path()
    except MetricsUnavailable:
        return False
    return True


# For the tests that measure KID or find nearest paintings: without the weights they cannot run,
# which is a missing install step, not a failure of the studio.
needs_inception = pytest.mark.skipif(not _inception_installed(),
                                     reason=f"needs the Inception weights of KID and FID: {INSTALL_HINT}")

FAST_CADENCE = Cadence(checkpoint_minutes=60, preview_minutes=0.0, log_every_steps=1, kid_samples=8)


def altered_export(file: Path, key_ending: str = "") -> bytes:
    """The bytes of generator export `file` with one weight tensor (the first whose name ends in
    `key_ending`) changed, as when the run has trained on: new weights, a new file."""
    from studio import generator_file
    weights, config, provenance = generator_file.read(Path(file).read_bytes())
    key = next(k for k in weights if k.endswith(key_ending))
    weights[key] = torch.randn_like(weights[key]) if key_ending else weights[key] + 1
    return generator_file.to_bytes(weights, config, provenance)


def wait_for(condition, timeout: float = 300.0):
    """Poll until condition() is truthy and return its value; the timeout only guards against
    a hung test, it is not a speed requirement."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


# ---------------------------------------------------------------- the studio in a browser
STUDIO_TINY = dict(resolution=32, width=8, batch_size=4, precision="fp32", memory_format="contiguous")


@contextmanager
def serve_studio(workspace: Path):
    """The studio served on a free port over `workspace`, with previews at every step so
    galleries fill at once: a namespace of url, workspace, session and demo. Training is stopped
    (and checkpointed) before the server closes."""
    from studio.session import TrainingSession
    from studio.ui.app import build_app, launch_options

    session = TrainingSession(cadence=FAST_CADENCE)
    demo = build_app(workspace, session)
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                **launch_options(workspace))
    try:
        yield SimpleNamespace(url=demo.local_url.rstrip("/"), workspace=workspace, session=session, demo=demo)
    finally:
        session.stop(timeout=60)
        demo.close()


@pytest.fixture(scope="module")
def studio_app(tmp_path_factory):
    """The studio over an empty workspace (see serve_studio)."""
    with serve_studio(tmp_path_factory.mktemp("workspace")) as served:
        yield served


@pytest.fixture
def screenshots(tmp_path) -> Path:
    """Where the screenshots go: $STUDIO_SCREENSHOT_DIR if set, else this test's tmp folder."""
    folder = Path(os.environ.get("STUDIO_SCREENSHOT_DIR") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
