"""The whole path an artist takes, in a real browser (Debian's Chromium through Playwright):
drop a folder of paintings, train a tiny model (measuring its KID), pick keyframes, download a
GIF and an MP4.

A screenshot of each tab is taken for a person to look at: into the test's tmp folder, or into
the folder named by the environment variable STUDIO_SCREENSHOT_DIR when it is set, e.g.
`STUDIO_SCREENSHOT_DIR=/tmp/shots python -m pytest tests/test_browser.py`. (The README's
screenshots are made by tests/make_screenshots.py on a really trained model.)"""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import imageio.v3 as iio
import numpy as np
import pytest

from browser import (ARGS, CHROMIUM, SETTLED, choose, download, fill_number, move_slider, open_page, radio,
                     select_sample, thumbnails, type_seed)
from conftest import draw_shapes, needs_inception, wait_for
from studio.cli import main

FRAMES = 16
TIMEOUT_MS = 90_000        # only guards against a hung page; every wait is on a condition
TRAIN_TIMEOUT_MS = 300_000   # training and the first KID on a busy machine: again only a guard against a hang

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                     "(apt-get install chromium chromium-driver)"),
]


@pytest.fixture
def paintings(tmp_path) -> Path:
    """24 paintings of coloured shapes and one stray text file, as an artist's folder might hold."""
    folder = tmp_path / "my paintings"
    folder.mkdir()
    for index, painting in enumerate(draw_shapes(24, 64, seed=7)):
        painting.save(folder / f"painting {index:02d}.png")
    (folder / "notes.txt").write_text("a shopping list, not a painting")
    return folder


@pytest.fixture
def page(studio_app):
    """A page on the studio that records every request leaving this machine."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        page = open_page(playwright, "about:blank", TIMEOUT_MS)
        page.outside = []
        page.on("request", lambda request: _record_outside(request.url, page.outside))
        page.goto(studio_app.url)
        yield page


def _record_outside(url: str, outside: list[str]) -> None:
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https", "ws", "wss") and parsed.hostname not in ("127.0.0.1", "localhost"):
        outside.append(url)


# Counts the animation frames the page asks the browser for.
COUNT_FRAMES = """window.framesAsked = 0;
const requestFrame = window.requestAnimationFrame.bind(window);
window.requestAnimationFrame = (callback) => { window.framesAsked++; return requestFrame(callback); };"""


def test_an_idle_page_asks_for_almost_no_frames(page):
    """gradio's loading screen leaves a timer behind that asks for 60 frames a second for as long
    as the page is open (paced_frames.py): the studio holds it back while no status tracker is on
    screen, so a page left open does not take the CPU from training. (Its first seconds animate
    as it appears.)"""
    def frames_in_3_seconds() -> int:
        before = page.evaluate("window.framesAsked")
        page.wait_for_timeout(3000)
        return page.evaluate("window.framesAsked") - before

    page.add_init_script(COUNT_FRAMES)       # runs before the page's own scripts, the studio's fix first
    page.reload()
    page.wait_for_function(SETTLED)
    wait_for(lambda: frames_in_3_seconds() <= 3, timeout=60)


# Counts the timers the page sets.
COUNT_TIMERS = """window.timersSet = 0;
const setTimer = window.setTimeout.bind(window);
window.setTimeout = (...args) => { window.timersSet++; return setTimer(...args); };"""


def test_an_idle_page_stays_idle_after_many_events(page):
    """Every event leaves its status trackers' timers waiting for a tracker on screen
    (paced_frames.py): they wait together, so a page open all day, polled and clicked, costs no
    more to keep open than a new one."""
    def timers_in_3_seconds() -> int:
        before = page.evaluate("window.timersSet")
        page.wait_for_timeout(3000)
        return page.evaluate("window.timersSet") - before

    page.add_init_script(COUNT_TIMERS)
    page.reload()
    page.wait_for_function(SETTLED)
    for _ in range(5):            # each tab's opening runs events whose outputs have trackers
        for tab in ("2 · Train", "3 · Explore", "1 · Dataset"):
            page.get_by_role("tab", name=tab).click()
            page.wait_for_function(SETTLED)
    wait_for(lambda: timers_in_3_seconds() <= 9, timeout=60)     # a look and the status line's, each second


def test_the_train_tab_asks_the_server_little_and_only_while_it_is_shown(page):
    """What watching costs is taken from training on a laptop (README, "Speed"): the status line
    asks for one small answer a second, fires the view's dearer event only when there is something
    new to show (on an idle studio: once, as the tab opens), and asks nothing while another tab is
    shown."""
    from playwright.sync_api import expect

    asked: list[str] = []
    page.on("request", lambda request: asked.append(urlparse(request.url).path))

    def asked_in_3_seconds() -> tuple[int, int]:
        """Requests for the line, and gradio events, over 3 seconds."""
        start = len(asked)
        page.wait_for_timeout(3000)
        recent = asked[start:]
        return sum("component_server" in path for path in recent), sum("/run/" in path for path in recent)

    page.get_by_role("tab", name="2 · Train").click()
    expect(page.locator("#train-status")).to_contain_text("Ready")
    page.wait_for_function(SETTLED)
    lines, events = asked_in_3_seconds()
    assert 2 <= lines <= 4 and events == 0
    page.get_by_role("tab", name="3 · Explore").click()
    page.wait_for_function(SETTLED)
    assert asked_in_3_seconds() == (0, 0)


@needs_inception
def test_an_artist_drops_paintings_trains_and_exports_a_walk(studio_app, page, paintings, screenshots, tmp_path):
    from playwright.sync_api import expect

    # 1. Dataset: drop the folder, name it, store at 64 px.
    page.locator("#dataset-upload input[type=file]").set_input_files(str(paintings))
    page.locator("#dataset-name").get_by_role("textbox").fill("shapes test")
    page.get_by_text("Options", exact=True).click()
    radio(page, "dataset-resolution", "64")
    page.locator("#dataset-ingest").click()
    expect(page.locator("#dataset-summary")).to_contain_text("Accepted 24, rejected 1", timeout=TIMEOUT_MS)
    expect(thumbnails(page, "dataset-gallery")).to_have_count(24)
    expect(page.locator("#dataset-rejected")).to_contain_text("not an image")
    page.screenshot(path=str(screenshots / "screenshot-dataset.png"), full_page=True)

    # 2. Train a tiny model for a few steps.
    page.get_by_role("tab", name="2 · Train").click()
    expect(page.locator("#train-dataset input")).to_have_value("shapes-test")
    radio(page, "train-resolution", "32")
    radio(page, "train-model-size", "Tiny · 8")
    radio(page, "train-duration-unit", "steps")
    fill_number(page, "train-duration", 40)
    fill_number(page, "train-kid-minutes", 60)                  # measured once, when the 40 steps are done
    page.get_by_text("More settings", exact=True).click()
    fill_number(page, "train-batch", 4)
    radio(page, "train-precision", "fp32")
    radio(page, "train-memory-format", "contiguous")
    page.locator("#train-start").click()
    expect(page.locator("#train-status")).to_contain_text("Finished", timeout=TRAIN_TIMEOUT_MS)
    expect(page.locator("#train-status")).to_contain_text("step 40")
    expect(thumbnails(page, "sample-gallery")).to_have_count(16)
    expect(page.locator("#loss-plot canvas, #loss-plot svg").first).to_be_visible()
    expect(page.locator("#train-status")).to_contain_text(re.compile(r"KID [\d.]+×10⁻³ at step 40"))
    expect(page.locator("#kid-plot canvas, #kid-plot svg").first).to_be_visible()
    expect(thumbnails(page, "train-timelapse").first).to_be_visible()
    page.get_by_text("More settings", exact=True).click()       # fold it away again for the picture
    page.screenshot(path=str(screenshots / "screenshot-train.png"), full_page=True)

    # 3. Explore the saved run: a slider moves the selected sample; keyframes from two typed seeds
    #    and a slider state; a GIF and an MP4; the MP4 rendered again from its sidecar.
    page.get_by_role("tab", name="3 · Explore").click()
    choose(page, "explore-model", re.escape("shapes-test-32px"))
    expect(page.locator("#explore-status")).to_contain_text("shapes-test-32px · 32 px")
    expect(thumbnails(page, "explore-gallery")).to_have_count(16)
    select_sample(page, 1)
    for seed in (3, 17):
        type_seed(page, seed)
        page.locator("#explore-add-keyframe").click()
    move_slider(page, "explore-direction-0", 0.9)
    page.locator("#explore-add-keyframe").click()
    expect(thumbnails(page, "explore-keyframes")).to_have_count(3)
    expect(thumbnails(page, "explore-keyframes").nth(2)).to_contain_text("seed 17 · 1 move")
    fill_number(page, "explore-frames", FRAMES)
    expect(page.locator("#explore-walk-note")).to_contain_text(f"{FRAMES} frames")
    page.locator("#explore-preview").click()
    expect(page.locator("#explore-animation img")).to_be_visible(timeout=TIMEOUT_MS)
    gif = download(page, "explore-export-gif", ".gif", tmp_path)
    mp4 = download(page, "explore-export-mp4", ".mp4", tmp_path)
    page.screenshot(path=str(screenshots / "screenshot-explore.png"), full_page=True)

    assert iio.imread(gif, index=None).shape[:3] == (FRAMES, 256, 256)
    video = iio.imread(mp4, index=None, plugin="FFMPEG")
    assert len(video) == FRAMES
    sidecar = studio_app.workspace / "exports" / Path(mp4.name).with_suffix(".json")
    assert main(["interpolate", "--from-sidecar", str(sidecar), "--out", str(tmp_path / "again.mp4")]) == 0
    assert np.array_equal(iio.imread(tmp_path / "again.mp4", index=None, plugin="FFMPEG"), video)
    assert page.outside == [], f"the page reached beyond this machine: {page.outside[:5]}"


def test_first_launch_opens_on_the_demo_with_its_samples_shown(tmp_path, monkeypatch, screenshots):
    """`python -m studio` on a new workspace, as a newcomer starts it: the demo is there in every
    tab, and the page opens on Explore with the demo model's samples."""
    import gradio as gr
    from playwright.sync_api import expect, sync_playwright

    from browser import free_port

    def visit(url: str) -> None:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            expect(page.get_by_role("tab", name="3 · Explore")).to_have_attribute("aria-selected", "true")
            expect(page.locator("#explore-model input")).to_have_value("demo")
            expect(thumbnails(page, "explore-gallery")).to_have_count(16)
            select_sample(page, 5)
            move_slider(page, "explore-direction-0", 0.8)
            page.screenshot(path=str(screenshots / "first-launch-explore.png"), full_page=True)
            page.get_by_role("tab", name="1 · Dataset").click()
            expect(page.locator("#dataset-summary")).to_contain_text("500 paintings")
            expect(page.locator("#dataset-pick input")).to_have_value("demo · the demo")
            page.get_by_role("tab", name="2 · Train").click()
            page.locator("#train-start-from input").click()
            expect(page.locator("[data-testid=dropdown-option]").filter(has_text="demo · the demo model")).to_have_count(1)
            browser.close()

    monkeypatch.setattr(gr.Blocks, "block_thread", lambda blocks: visit(blocks.local_url))
    assert main(["--no-browser", "--port", str(free_port()), "--workspace", str(tmp_path / "new workspace")]) == 0
