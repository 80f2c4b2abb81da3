"""Where the studio keeps an artist's things, and what is there.

WORKSPACE/
  datasets/<name>/      ingested paintings (see data.py)
  checkpoints/<name>/   training runs (see run_folder.py)
  exports/              animations and frames made in the Explore tab
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import EXPORT_NAMES, list_checkpoints, step_of
from .config import ConfigError


def folder_name(text: str) -> str:
    """A name that is safe as one folder on every system: letters (any script), digits, '-' and
    '_'; anything else becomes '-'. Raises ConfigError when nothing usable is left."""
    name = re.sub(r"[^\w-]+", "-", (text or "").strip()).strip("-_")[:64]
    if not name:
        raise ConfigError("give it a name with at least one letter or digit")
    return name


def run_step(run_dir: Path) -> int | None:
    """The step of the run's newest checkpoint, or None when it has none."""
    checkpoints = list_checkpoints(run_dir)
    return step_of(checkpoints[-1]) if checkpoints else None


@dataclass(frozen=True)
class Workspace:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root).resolve())

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def runs(self) -> Path:
        return self.root / "checkpoints"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    def dataset_dir(self, name: str) -> Path:
        return self.datasets / folder_name(name)

    def run_dir(self, name: str) -> Path:
        return self.runs / folder_name(name)

    def dataset_names(self) -> list[str]:
        """Ingested datasets, most recently changed first."""
        return _newest_first(self.datasets, lambda folder: folder / "manifest.json")

    def run_names(self, resumable: bool = False) -> list[str]:
        """Runs with a generator to explore (or, with `resumable`, a checkpoint to continue),
        most recently saved first."""
        def newest_file(folder: Path) -> Path | None:
            files = list_checkpoints(folder)
            if not resumable:
                files += [folder / name for name in EXPORT_NAMES]
            return max((f for f in files if f.exists()), key=lambda f: f.stat().st_mtime, default=None)
        return _newest_first(self.runs, newest_file)

    def logged_run_names(self) -> list[str]:
        """Runs that have logged steps, trained here or by another process writing into this
        workspace, most recently logged first."""
        return _newest_first(self.runs, lambda folder: folder / "log.jsonl")

    def unused_run_name(self, base: str) -> str:
        """`base`, or `base-2`, `base-3`... whichever names no run yet."""
        base = folder_name(base)
        name, n = base, 1
        while (self.runs / name).exists():
            n += 1
            name = f"{base}-{n}"
        return name


def _newest_first(parent: Path, marker) -> list[str]:
    """Sub-folders of `parent` whose `marker(folder)` file exists, newest marker first."""
    if not parent.is_dir():
        return []
    found = []
    for folder in parent.iterdir():
        file = marker(folder) if folder.is_dir() else None
        if file is not None and file.exists():
            found.append((file.stat().st_mtime, folder.name))
    return [name for _, name in sorted(found, reverse=True)]
