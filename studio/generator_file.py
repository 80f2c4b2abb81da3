"""Generator exports as .safetensors: the file format the ecosystem shares weights in.

A safetensors file is a JSON header and raw tensor bytes, nothing else, so reading one can never
run code (a pickle can). The header's metadata holds, as strings, the format and its version, the
training config (enough to rebuild the network) and the provenance: what the weights were trained
on and for how long, and which model they were fine-tuned from.

A run's own export keeps the weights as they are, so it paints exactly what its checkpoint does.
A file made for sharing (`export --half`) stores floating-point weights in half precision, which
halves it (a 64 px FastGAN generator: 37 MB in fp32, 18 MB so) for a change in what it paints
measured in README ("The demo model"). A tensor that half precision cannot hold (a value beyond
its range, or one that would round to zero) keeps its own precision.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from .config import ConfigError, TrainConfig
from .files import write_bytes

FORMAT = "gan-art-studio/generator"
VERSION = 2                    # 1 is the torch.save export (generator.pt) that still loads
HALF = torch.float16
HALF_ROUNDING = 2.0 ** -11     # the relative error of rounding to half precision: half its 10-bit ulp


class GeneratorFileError(Exception):
    """The bytes are not a generator export this version can read; the message says why."""


def is_safetensors(data: bytes) -> bool:
    """Whether `data` starts like a safetensors file (a header length, then a JSON object), as
    opposed to torch.save's zip archive."""
    return len(data) > 9 and data[8:9] == b"{" and not data.startswith(b"PK")


def to_bytes(weights: dict[str, torch.Tensor], config: TrainConfig, provenance: dict, half: bool = False) -> bytes:
    tensors = {name: tensor.detach().cpu() for name, tensor in weights.items()}
    tensors = {name: (_compact(tensor) if half else tensor).contiguous() for name, tensor in tensors.items()}
    metadata = {"format": FORMAT, "version": str(VERSION), "config": json.dumps(config.to_dict()),
                "provenance": json.dumps(provenance)}
    return save_tensors(tensors, metadata=metadata)


def write(path: str | Path, weights: dict[str, torch.Tensor], config: TrainConfig, provenance: dict,
          half: bool = False) -> Path:
    """Written whole or not at all (files.write_bytes)."""
    return write_bytes(path, to_bytes(weights, config, provenance, half))


def read(data: bytes) -> tuple[dict[str, torch.Tensor], TrainConfig, dict]:
    """(weights in float32, config, provenance) from a file's bytes."""
    metadata = _metadata(data)
    if metadata.get("format") != FORMAT:
        raise GeneratorFileError("not a GAN Art Studio generator (its metadata names no such format)")
    if int(metadata.get("version", 0)) > VERSION:
        raise GeneratorFileError("written by a newer version of the studio; please upgrade")
    try:
        config = TrainConfig.from_dict(json.loads(metadata["config"]))
        provenance = json.loads(metadata.get("provenance", "{}"))
        tensors = load_tensors(data)
    except (KeyError, ValueError, ConfigError) as error:   # JSONDecodeError and safetensors' errors too
        raise GeneratorFileError(f"its header is damaged ({error})") from error
    weights = {name: tensor.float() if tensor.dtype == HALF else tensor for name, tensor in tensors.items()}
    return weights, config, provenance


def _metadata(data: bytes) -> dict[str, str]:
    """The header's `__metadata__`: an 8-byte little-endian length, then that much JSON."""
    try:
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + length])
    except (struct.error, ValueError) as error:
        raise GeneratorFileError("damaged or not a safetensors file") from error
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict):
        raise GeneratorFileError("not a GAN Art Studio generator (the file has no metadata)")
    return metadata


def _compact(tensor: torch.Tensor) -> torch.Tensor:
    """Half precision where it holds the values: every one finite, and none further off than half
    precision's rounding of the largest (values so small that they round to zero are not)."""
    if not tensor.is_floating_point() or tensor.dtype == HALF:
        return tensor
    half = tensor.to(HALF)
    error = (half.to(tensor.dtype) - tensor).abs().max()
    fits = bool(half.isfinite().all()) and bool(error <= HALF_ROUNDING * tensor.abs().max())
    return half if fits else tensor
