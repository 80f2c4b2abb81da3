"""Driving the studio in Debian's Chromium through Playwright: shared by the browser test and
the script that makes the README's screenshots."""
from __future__ import annotations

import re
import socket
from pathlib import Path

from playwright.sync_api import expect

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that would try to reach the internet from this offline machine.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The page is still: no event is running (gradio hides every status tracker), no transition is
# half-way (a finished event fades its outputs back in) and every image has loaded.
SETTLED = """() =>
    [...document.querySelectorAll('.wrap.full')].every(tracker => tracker.classList.contains('hide'))
    && document.getAnimations().every(animation => animation.playState !== 'running'
                                                   || animation.effect.getComputedTiming().iterations === Infinity)
    && [...document.images].every(image => image.complete && image.naturalWidth > 0)"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def open_page(playwright, url: str, timeout_ms: float):
    """A new page of a headless Debian Chromium on `url`, downloads accepted; its browser closes
    with the Playwright context."""
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(timeout_ms)
    page.goto(url)
    return page


def choose(page, elem_id: str, pattern: str) -> None:
    """Pick the option of a gradio Dropdown whose whole text matches the regex `pattern`."""
    page.locator(f"#{elem_id} input").click()
    whole = re.compile(rf"^\W*{pattern}\s*$")      # an option's text starts with a tick mark
    page.locator("[data-testid=dropdown-option]").filter(has_text=whole).click()
    expect(page.locator("[data-testid=dropdown-option]")).to_have_count(0)


def radio(page, elem_id: str, label: str) -> None:
    page.locator(f"#{elem_id}").get_by_text(label, exact=True).click()


def fill_number(page, elem_id: str, value: int) -> None:
    field = page.locator(f"#{elem_id} input[type=number]")
    field.fill(str(value))
    field.press("Tab")


def thumbnails(page, elem_id: str):
    return page.locator(f"#{elem_id} button.thumbnail-item")


# True once the image in elem_id has loaded and shows something other than `before` (a src URL).
_CHANGED = """([id, before]) => {
    const image = document.querySelector(`#${id} img`);
    return image && image.complete && image.naturalWidth > 0 && image.src !== before;
}"""


def image_source(page, elem_id: str) -> str | None:
    return page.evaluate("id => document.querySelector(`#${id} img`)?.src ?? null", elem_id)


def type_seed(page, seed: int) -> None:
    """Type a seed into the Explore tab and wait for the selected sample to show it."""
    before = image_source(page, "explore-selected")
    field = page.locator("#explore-seed-input input[type=number]")
    field.fill(str(seed))
    field.press("Enter")
    page.wait_for_function(_CHANGED, arg=["explore-selected", before])


def move_slider(page, elem_id: str, fraction: float) -> None:
    """Click a direction slider's track at `fraction` of its width (a real click, so its release
    event fires) and wait for the selected sample to change."""
    before = image_source(page, "explore-selected")
    track = page.locator(f"#{elem_id} input[type=range]")
    box = track.bounding_box()
    track.click(position={"x": box["width"] * fraction, "y": box["height"] / 2})
    page.wait_for_function(_CHANGED, arg=["explore-selected", before])


def select_sample(page, index: int, gallery: str = "explore-gallery") -> None:
    """Click a sample in an Explore gallery (the seeds', the children's) and wait for it to become
    the selected one."""
    before = image_source(page, "explore-selected")
    thumbnails(page, gallery).nth(index).click()
    page.wait_for_function(_CHANGED, arg=["explore-selected", before])


def download(page, button_id: str, suffix: str, folder: Path) -> Path:
    """Export with the button, wait for the file to be offered, and download it."""
    page.locator(f"#{button_id}").click()
    link = page.locator(f"#explore-download a[download$='{suffix}']")
    link.wait_for()
    with page.expect_download() as info:
        link.click()
    path = folder / info.value.suggested_filename
    info.value.save_as(path)
    return path
