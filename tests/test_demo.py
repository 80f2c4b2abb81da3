"""The demo that ships with the studio, and what a newcomer sees on first launch."""
from __future__ import annotations

import json
import struct

import pytest
import torch

from conftest import FAST_CADENCE, STUDIO_TINY, wait_for
from studio import demo
from studio.checkpoint import load_generator
from studio.config import TrainConfig
from studio.data import read_manifest
from studio.finetune import starting_point
from studio.latent import seeds_to_z
from studio.session import FINISHED, TrainingSession
from studio.ui import train_tab
from studio.ui.dataset_tab import EMPTY, DatasetTab
from studio.ui.explore_tab import NOTHING_YET, ExploreTab
from studio.ui.train_tab import NEW_MODEL, TrainTab
from studio.ui.train_view import status_line
from studio.workspace import Workspace

DEMO_FILE = demo.MODEL / "generator.safetensors"


@pytest.fixture
def session():
    s = TrainingSession(cadence=FAST_CADENCE)
    yield s
    s.stop(timeout=60)


def test_the_demo_model_is_a_small_safetensors_file_that_names_its_training():
    data = DEMO_FILE.read_bytes()
    assert len(data) < 20 * 2**20
    (length,) = struct.unpack("<Q", data[:8])                 # a safetensors header: JSON, then raw tensors
    metadata = json.loads(data[8:8 + length])["__metadata__"]
    assert json.loads(metadata["provenance"])["dataset"] == demo.NAME
    assert TrainConfig.from_dict(json.loads(metadata["config"])).resolution == 64


def test_the_demo_model_paints_varied_pictures_not_noise():
    generator, config = load_generator(DEMO_FILE)
    with torch.no_grad():
        images = generator(seeds_to_z(list(range(16)), config.z_dim)).clamp(-1, 1)
    # Varied: samples differ from one another far more than 8-bit rounding does.
    assert (images - images.mean(0)).abs().mean() > 0.1
    # Not noise: neighbouring pixels are much more alike than pixels drawn at random from a picture.
    neighbours = (images[..., 1:] - images[..., :-1]).abs().mean()
    shuffled = images.flatten(2)[..., torch.randperm(64 * 64, generator=torch.Generator().manual_seed(0))]
    anywhere = (images.flatten(2) - shuffled).abs().mean()
    assert neighbours < 0.5 * anywhere


def test_the_demo_dataset_is_ingested_and_carries_its_licence():
    manifest = read_manifest(demo.DATASET)
    assert len(manifest["images"]) == 500 and manifest["resolution"] == 64
    notice = (demo.DATASET / "NOTICE").read_text()
    assert "Apache License, Version 2.0" in notice and (demo.DATASET / "LICENSE-Apache-2.0").exists()


def test_a_new_workspace_gets_the_demo_once_and_a_used_one_never(tmp_path):
    new = Workspace(tmp_path / "new")
    assert [path.relative_to(new.root).as_posix() for path in demo.add_to(new)] == ["datasets/demo",
                                                                                   "checkpoints/demo"]
    assert new.dataset_names() == ["demo"] and new.run_names() == ["demo"]
    assert demo.add_to(new) == []                              # the second launch adds nothing
    used = Workspace(tmp_path / "used")
    (used.datasets / "mine").mkdir(parents=True)
    (used.datasets / "mine" / "manifest.json").write_text("{}")
    added = demo.add_to(used)                                  # it has a dataset, but nothing to explore
    assert [path.name for path in added] == ["demo"] and used.dataset_names() == ["mine"]


def test_first_launch_without_the_demo_says_what_to_do_in_every_tab(tmp_path, session, monkeypatch):
    monkeypatch.setattr(demo, "DATASET", tmp_path / "not-shipped")
    monkeypatch.setattr(demo, "MODEL", tmp_path / "not-shipped")
    workspace = Workspace(tmp_path / "ws")
    assert demo.add_to(workspace) == []
    assert DatasetTab(workspace).refresh(None)[1] == EMPTY
    dataset, earlier, start_from, *_ = TrainTab(workspace, session).refresh(None)
    assert dataset.value is None and start_from.value == NEW_MODEL
    assert status_line(session.snapshot()).startswith("Ready")
    explore = ExploreTab(workspace, session)
    assert explore.refresh(None).value is None and explore.show(None, [0], None, [], 1.0)[1] == NOTHING_YET


def test_first_launch_with_the_demo_shows_it_in_every_tab(tmp_path, session):
    workspace = Workspace(tmp_path / "ws")
    demo.add_to(workspace)
    pick, summary, gallery, _ = DatasetTab(workspace).refresh(None)
    assert pick.value == "demo" and ("demo · the demo", "demo") in pick.choices
    assert "**500 paintings**" in summary and "Noto Color Emoji" in summary and len(gallery) == 48
    dataset, earlier, start_from, *_ = TrainTab(workspace, session).refresh(None)
    assert dataset.value == "demo" and ("demo · the demo model", "demo") in start_from.choices
    explore = ExploreTab(workspace, session)
    model = explore.refresh(None)
    assert model.value == "demo"
    gallery, status, *_ = explore.show(model.value, list(range(16)), None, [], 1.0)
    assert len(gallery) == 16 and status.startswith("**demo** · 64 px")


def test_train_the_demo_starts_a_new_run_on_the_demo_set(tmp_path, session, monkeypatch):
    workspace = Workspace(tmp_path / "ws")
    demo.add_to(workspace)
    monkeypatch.setattr(train_tab, "DEMO_CONFIG", TrainConfig(**STUDIO_TINY))
    monkeypatch.setattr(train_tab, "DEMO_BUDGET", train_tab.Budget(steps=2))
    tab = TrainTab(workspace, session)
    tab.train_demo()
    snap = wait_for(lambda: (s := session.snapshot()).state == FINISHED and s)
    assert snap.run_dir == workspace.run_dir("demo-training") and snap.latest.step == 2
    recorded = json.loads((snap.run_dir / "run.json").read_text())
    assert recorded["dataset"] == str(workspace.dataset_dir("demo")) and recorded["fine_tuned_from"] is None
    tab.train_demo()                                          # again: a run of its own, the first one kept
    wait_for(lambda: session.snapshot().state == FINISHED and session.snapshot().run_dir.name == "demo-training-2")


def test_the_train_tab_fine_tunes_from_a_model_in_one_control(tmp_path, session):
    workspace = Workspace(tmp_path / "ws")
    demo.add_to(workspace)
    tab = TrainTab(workspace, session)
    tab.start(dataset="demo", name="tuned", resolution=32, width=8, loss="hinge", augment=True, unit="steps",
              amount=1, batch=4, precision="fp32", layout="contiguous", seed=0, kid_minutes=0, start_from="demo")
    snap = wait_for(lambda: (s := session.snapshot()).state == FINISHED and s)
    recorded = json.loads((snap.run_dir / "run.json").read_text())
    assert recorded["config"]["resolution"] == 64 and recorded["config"]["width"] == 32   # the demo's shape
    assert recorded["fine_tuned_from"]["sha256"] == starting_point(workspace.run_dir("demo")).sha256
