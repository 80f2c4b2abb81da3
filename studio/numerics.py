"""Where the networks run and in what precision and memory layout.

The fastest correct choice differs between machines: on one AVX-512 CPU, bf16 autocast is 4.8x
faster than fp32 only together with channels_last tensors, and 2x slower without them; on another
both layouts win by different margins. So "auto" means *measure*: `choose_numerics` times a few
real training steps in every candidate and keeps the fastest whose losses stay finite. The answer
is cached per machine, torch version and model shape, so the probe runs once.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .config import ConfigError, TrainConfig
from .files import write_json

log = logging.getLogger(__name__)

_AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Numerics:
    device: torch.device
    precision: str            # "fp32", "bf16" or "fp16" (autocast); parameters stay fp32
    channels_last: bool

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    @property
    def needs_grad_scaler(self) -> bool:
        return self.precision == "fp16"

    def autocast(self) -> contextlib.AbstractContextManager:
        dtype = _AUTOCAST_DTYPES[self.precision]
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def to_dict(self) -> dict:
        return {"device": str(self.device), "precision": self.precision, "channels_last": self.channels_last}

    @classmethod
    def from_dict(cls, values: dict) -> "Numerics":
        return cls(torch.device(values["device"]), values["precision"], bool(values["channels_last"]))

    def describe(self) -> str:
        layout = "channels_last" if self.channels_last else "contiguous"
        return f"{self.device.type} {self.precision} {layout}"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or mps") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for, but torch sees no CUDA GPU here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' was asked for, but this machine has no Apple GPU")
    return device


def _cpu_supports_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def candidates(config: TrainConfig) -> list[Numerics]:
    """Every numerics the config allows on its device, fp32 first."""
    device = resolve_device(config.device)
    if config.precision != "auto":
        precisions = [config.precision]
    elif device.type == "cuda":
        precisions = ["fp32", "bf16" if torch.cuda.is_bf16_supported() else "fp16"]
    elif device.type == "cpu" and _cpu_supports_bf16():
        precisions = ["fp32", "bf16"]
    else:  # MPS: no float64 and patchy low-precision kernels, so plain fp32
        precisions = ["fp32"]
    if config.memory_format != "auto":
        layouts = [config.memory_format == "channels_last"]
    elif device.type == "mps":
        layouts = [False]
    else:
        layouts = [False, True]
    for precision in precisions:
        if precision == "fp16" and device.type != "cuda":
            raise ConfigError("fp16 autocast is only offered on CUDA; use bf16 or fp32")
    return [Numerics(device, p, cl) for p in precisions for cl in layouts]


def _cache_path() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "gan-art-studio" / "numerics.json"


def _cache_key(config: TrainConfig, options: list[Numerics]) -> str:
    device = options[0].device
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    shape = f"{config.architecture}-D{config.discriminator}-{config.resolution}px-w{config.width}-b{config.batch_size}"
    if config.discriminator == "projected":
        shape += f"-p{config.projection_size}"
    return f"{hardware}|{torch.__version__}|{torch.get_num_threads()}t|{shape}|{[o.describe() for o in options]}"


def choose_numerics(config: TrainConfig, seconds_per_step: Callable[[Numerics], float]) -> Numerics:
    """The fastest candidate by `seconds_per_step` (which returns inf when losses go non-finite)."""
    options = candidates(config)
    if len(options) == 1:
        return options[0]
    key = _cache_key(config, options)
    cache = _read_cache()
    by_name = {o.describe(): o for o in options}
    if cache.get(key) in by_name:
        return by_name[cache[key]]
    log.info("Measuring the fastest precision and memory layout for this machine (once)...")
    timings = {o.describe(): seconds_per_step(o) for o in options}
    best = min(timings, key=timings.get)
    if not math.isfinite(timings[best]):
        best = options[0].describe()
    cache[key] = best
    _write_cache(cache)
    return by_name[best]


def _read_cache() -> dict:
    try:
        return json.loads(_cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict) -> None:
    """Best effort: a read-only home only costs another probe next time."""
    try:
        write_json(_cache_path(), cache, indent=1)
    except OSError:
        pass


def time_steps(step: Callable[[], object], warmup: int = 2, timed: int = 3) -> float:
    """Mean seconds per call after a warm-up (allocator, oneDNN kernel choice)."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(timed):
        step()
    return (time.perf_counter() - start) / timed
