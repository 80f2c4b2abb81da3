"""The demo that ships with the studio: 500 emoji as a dataset, and a generator trained on them.

A newcomer's workspace is empty, and a studio with nothing in it shows nothing. So the first time
the studio opens on a workspace without datasets or runs, the demo is copied in (`datasets/demo`,
`checkpoints/demo`): from then on it is the artist's like anything else there, to explore, train
on, fine-tune from or delete. How both were made is in README ("The demo").
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .workspace import Workspace

NAME = "demo"
_REPO = Path(__file__).resolve().parent.parent
DATASET = _REPO / "assets" / "demo"        # an ingested dataset, with its NOTICE (Apache-2.0)
MODEL = _REPO / "checkpoints" / "demo"     # generator.safetensors, and its directions


def is_demo(folder: Path) -> bool:
    """Whether a dataset or run folder is the demo (by name, and the licence it carries)."""
    return folder.name == NAME and ((folder / "NOTICE").exists() or (folder / "generator.safetensors").exists())


def add_to(workspace: Workspace) -> list[Path]:
    """Copy the demo dataset and model into a workspace that holds no dataset and no run; the
    folders copied, none if the workspace is not new or the demo did not ship (a wheel install)."""
    copied = []
    for source, has_some, target in ((DATASET, workspace.dataset_names(), workspace.dataset_dir(NAME)),
                                     (MODEL, workspace.run_names(), workspace.run_dir(NAME))):
        if has_some or not source.is_dir() or target.exists():
            continue
        # A temporary name first: a studio stopped half-way leaves no half demo behind it.
        partial = target.with_name(f".{NAME}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(source, partial)
        partial.rename(target)
        copied.append(target)
    return copied
