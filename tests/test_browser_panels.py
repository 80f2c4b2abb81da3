"""The Explore tab's projection, breeding and blending panels, in a real browser (Debian's
Chromium through Playwright), on tiny models: a walk between two of the artist's paintings
projected into the model, a litter bred from favourites, and a blend of a model and its
fine-tune, saved as a model of its own. Screenshots go where test_browser.py's go."""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from browser import CHROMIUM, SETTLED, choose, download, fill_number, open_page, select_sample, thumbnails
from conftest import draw_shapes, serve_studio
from studio import generator_file
from studio.checkpoint import read_export

TIMEOUT_MS = 90_000        # only guards against a hung page; every wait is on a condition

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                     "(apt-get install chromium chromium-driver)"),
]


@pytest.fixture(scope="module")
def studio_with_models(tiny_run_dir, tmp_path_factory):
    """The studio over a workspace holding the tiny run and a fine-tune of it (every weight
    nudged, its export saying where it came from)."""
    workspace = tmp_path_factory.mktemp("panels-workspace")
    shutil.copytree(tiny_run_dir, workspace / "checkpoints" / "tiny")
    source = workspace / "checkpoints" / "tiny" / "generator.safetensors"
    weights, config, _ = read_export(source)
    nudge = torch.Generator().manual_seed(1)
    tuned = {k: v + 0.05 * torch.randn(v.shape, generator=nudge) if v.is_floating_point() else v
             for k, v in weights.items()}
    record = {"fine_tuned_from": {"file": str(source), "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}}
    generator_file.write(workspace / "checkpoints" / "tiny-tuned" / "generator.safetensors", tuned, config, record)
    with serve_studio(workspace) as served:
        yield served


@pytest.fixture
def explore(studio_with_models):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        page = open_page(playwright, studio_with_models.url, TIMEOUT_MS)
        page.get_by_role("tab", name="3 · Explore").click()
        page.wait_for_function(SETTLED)         # the tab's own choice of model first, then ours
        choose(page, "explore-model", "tiny")
        sync_api.expect(page.locator("#explore-status")).to_contain_text("tiny · 32 px")
        sync_api.expect(thumbnails(page, "explore-gallery")).to_have_count(16)
        yield page


def project(page, painting: Path) -> None:
    """Upload a painting (clearing the one before), find it in the model, keep it as a keyframe."""
    from playwright.sync_api import expect

    clear = page.locator("#explore-project-upload button[aria-label='Clear']")
    if clear.count():
        clear.click()
    page.locator("#explore-project-upload input[type=file]").set_input_files(str(painting))
    expect(page.locator("#explore-project-upload")).to_contain_text(painting.stem)
    fill_number(page, "explore-project-steps", 20)
    page.locator("#explore-project-start").click()
    expect(page.locator("#explore-project-note")).to_contain_text(f"{painting.name} — distance", timeout=TIMEOUT_MS)
    expect(thumbnails(page, "explore-project-result")).to_have_count(2)


def test_a_walk_between_two_projected_paintings(explore, tmp_path, screenshots):
    from playwright.sync_api import expect

    for n, picture in enumerate(draw_shapes(2, 48, seed=3)):
        painting = tmp_path / f"my painting {n}.png"
        picture.save(painting)
        project(explore, painting)
        explore.locator("#explore-add-keyframe").click()
        expect(thumbnails(explore, "explore-keyframes")).to_have_count(n + 1)
    expect(thumbnails(explore, "explore-keyframes").nth(1)).to_contain_text("projected z")
    fill_number(explore, "explore-frames", 12)
    expect(explore.locator("#explore-walk-note")).to_contain_text("12 frames")
    gif = download(explore, "explore-export-gif", ".gif", tmp_path)
    explore.locator("#explore-project-result").evaluate("element => element.parentElement.scrollIntoView()")
    explore.screenshot(path=str(screenshots / "screenshot-explore-project.png"))

    frames = iio.imread(gif, index=None)
    assert frames.shape[0] == 12
    assert not np.array_equal(frames[0], frames[6])       # it walks from one painting to the other


def test_breeding_favourites_and_keeping_a_child(explore, screenshots):
    from playwright.sync_api import expect

    for index in (1, 2):
        select_sample(explore, index)
        explore.locator("#explore-add-parent").click()
        expect(thumbnails(explore, "explore-parents")).to_have_count(index)
    explore.locator("#explore-breed").click()
    expect(thumbnails(explore, "explore-children")).to_have_count(16, timeout=TIMEOUT_MS)
    select_sample(explore, 5, gallery="explore-children")
    explore.locator("#explore-add-keyframe").click()
    expect(thumbnails(explore, "explore-keyframes").first).to_contain_text("child of 2")
    explore.locator("#explore-add-parent").click()                 # the next generation's parent
    expect(thumbnails(explore, "explore-parents")).to_have_count(3)
    explore.locator("#explore-children").scroll_into_view_if_needed()
    explore.screenshot(path=str(screenshots / "screenshot-explore-breed.png"))


def test_blending_a_model_with_its_fine_tune_and_saving_the_blend(explore, studio_with_models, screenshots):
    from playwright.sync_api import expect

    expect(explore.locator("#explore-blend-model input")).to_have_value("tiny-tuned")
    explore.locator("#explore-blend-preview").click()
    expect(thumbnails(explore, "explore-blend-grid")).to_have_count(24, timeout=TIMEOUT_MS)
    expect(explore.locator("#explore-blend-note")).to_contain_text("0.5 of tiny-tuned in all layers")
    expect(explore.locator("#explore-blend-note")).not_to_contain_text("not fine-tuned from a common model")
    explore.locator("#explore-blend-name textarea, #explore-blend-name input").first.fill("half and half")
    explore.locator("#explore-blend-save").click()
    expect(explore.locator("#explore-blend-note")).to_contain_text("Saved as half-and-half")
    explore.locator("#explore-blend-grid").scroll_into_view_if_needed()
    explore.screenshot(path=str(screenshots / "screenshot-explore-blend.png"))

    saved = studio_with_models.workspace / "checkpoints" / "half-and-half" / "generator.safetensors"
    parents = read_export(saved)[2]["blend"]["parents"]
    assert [p["label"] for p in parents] == ["tiny", "tiny-tuned"]
    explore.locator("#explore-model input").click()
    expect(explore.locator("[data-testid=dropdown-option]").filter(has_text=re.compile("half-and-half"))).to_have_count(1)
