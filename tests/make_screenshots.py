"""Make the README's screenshots: the studio at work on a really trained model.

    python tests/make_screenshots.py WORKSPACE [--out assets] [--steps 100] [--keyframes 1,10]

WORKSPACE holds one dataset (datasets/<name>/) and a run trained on it (checkpoints/<name>/).
The studio is served from this process on 127.0.0.1 and Debian's Chromium (/usr/bin/chromium,
headless, through Playwright; never `playwright install`) visits it:

  1 · Dataset  picks the dataset, so its paintings and counts show  -> screenshot-dataset.png
  2 · Train    continues the run for --steps more steps, so the loss plot (its whole history),
               the newest samples, the time-lapse and one KID point fill in; the picture is taken while it is
               still training, then it is stopped                -> screenshot-train.png
  3 · Explore  picks the run, adds the samples --keyframes as keyframes (the last one moved
               along two directions first), previews the walk and exports it as a GIF
                                                                 -> screenshot-explore.png, and the
               selected sample with its direction sliders  -> screenshot-explore-directions.png

The run is trained on and a GIF lands in WORKSPACE/exports, so give it a copy; the README's
pictures were made from the 20-minute emoji run (README, "What it makes") like this:

    mkdir -p /tmp/shots/datasets /tmp/shots/checkpoints
    cp -r datasets/emoji-500 /tmp/shots/datasets/ && cp -r checkpoints/emoji-64 /tmp/shots/checkpoints/
    .venv/bin/python tests/make_screenshots.py /tmp/shots

The run continues on the dataset its run.json names. Every wait is on something the page shows;
the timeouts only guard against a hung page.
"""
from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from browser import ARGS, CHROMIUM, choose, fill_number, free_port, move_slider, radio, select_sample, thumbnails

VIEWPORT = {"width": 1400, "height": 1000}
TIMEOUT_MS = 120_000
KID_MINUTES = 0.75                 # one KID measurement within the default 100 steps
TRAIN_TIMEOUT_MS = 60 * 60_000     # training on a busy CPU can take a while; this only catches a hang
# The page is still: no event is running (gradio hides every status tracker), no transition is
# half-way (a finished event fades its outputs back in) and every image has loaded.
SETTLED = """() =>
    [...document.querySelectorAll('.wrap.full')].every(tracker => tracker.classList.contains('hide'))
    && document.getAnimations().every(animation => animation.playState !== 'running'
                                                   || animation.effect.getComputedTiming().iterations === Infinity)
    && [...document.images].every(image => image.complete && image.naturalWidth > 0)"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workspace", type=Path, help="a folder with datasets/<name>/ and checkpoints/<name>/")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "assets",
                        help="where the PNGs go (default: the repository's assets/ folder)")
    parser.add_argument("--steps", type=int, default=100,
                        help="steps to train on before the Train picture (default 100, 1-2 minutes on 2 cores)")
    parser.add_argument("--keyframes", default="1,10",
                        help="the samples (0-15) to add as keyframes in Explore, in order (default 1,10)")
    args = parser.parse_args()
    workspace = args.workspace.resolve()
    dataset, run = only_folder(workspace / "datasets"), only_folder(workspace / "checkpoints")
    keyframes = [int(n) for n in args.keyframes.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="studio_shots_") as gradio_tmp:
        os.environ.setdefault("GRADIO_TEMP_DIR", gradio_tmp)      # before gradio is imported
        from studio.session import TrainingSession
        from studio.ui.app import build_app, launch_options

        session = TrainingSession()
        demo = build_app(workspace, session)
        demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                    **launch_options(workspace))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(demo.local_url)
                dataset_tab(page, dataset, args.out / "screenshot-dataset.png")
                train_tab(page, run, args.steps, args.out / "screenshot-train.png")
                explore_tab(page, run, keyframes, args.out / "screenshot-explore.png")
                browser.close()
        finally:
            session.stop()
            demo.close()


def dataset_tab(page, dataset: str, picture: Path) -> None:
    choose(page, "dataset-pick", re.escape(dataset))
    expect(page.locator("#dataset-summary")).to_contain_text(dataset)
    expect(page.locator("#dataset-summary")).to_contain_text("paintings")
    thumbnails(page, "dataset-gallery").first.wait_for()
    shoot(page, picture)


def train_tab(page, run: str, steps: int, picture: Path) -> None:
    page.get_by_role("tab", name="2 · Train").click()
    page.get_by_text("Continue an earlier run", exact=True).click()
    choose(page, "train-resume-run", rf"{re.escape(run)} · step [\d,]+")
    picked = page.locator("#train-resume-run input").input_value()          # "emoji-64 · step 1824"
    start = int(re.search(r"step ([\d,]+)", picked)[1].replace(",", ""))
    radio(page, "train-duration-unit", "steps")
    fill_number(page, "train-duration", 2 * steps)        # so it is still training (with an ETA) at the picture
    fill_number(page, "train-kid-minutes", KID_MINUTES)
    page.locator("#train-continue").click()

    status = page.locator("#train-status")
    page.wait_for_function(
        """([target]) => {
             const text = document.querySelector('#train-status').innerText;
             const step = text.match(/^Training .*step ([\\d,]+)/);
             return step && parseInt(step[1].replace(/,/g, '')) >= target && /ETA/.test(text);
           }""", arg=[start + steps], timeout=TRAIN_TIMEOUT_MS)
    expect(thumbnails(page, "sample-gallery")).to_have_count(16)
    # A preview grid made in this session, newer than any the run brought with it.
    page.wait_for_function(
        """([start]) => [...document.querySelectorAll('#train-timelapse button.thumbnail-item')]
             .some(item => parseInt(item.innerText.replace(/\\D/g, '')) > start)""", arg=[start])
    expect(page.locator("#loss-plot canvas, #loss-plot svg").first).to_be_visible()
    expect(page.locator("#kid-plot canvas, #kid-plot svg").first).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
    expect(status).to_contain_text("images/s", timeout=TRAIN_TIMEOUT_MS)
    shoot(page, picture)

    page.locator("#train-stop").click()
    expect(status).to_contain_text("Finished", timeout=TRAIN_TIMEOUT_MS)


def explore_tab(page, run: str, keyframes: list[int], picture: Path) -> None:
    page.get_by_role("tab", name="3 · Explore").click()
    choose(page, "explore-model", re.escape(run))
    expect(page.locator("#explore-status")).to_contain_text(f"{run} ·")
    expect(thumbnails(page, "explore-gallery")).to_have_count(16)
    for n, index in enumerate(keyframes):
        select_sample(page, index)
        if n == len(keyframes) - 1:                   # the last keyframe: moved along two directions
            move_slider(page, "explore-direction-0", 0.8)
            move_slider(page, "explore-direction-1", 0.25)
        page.locator("#explore-add-keyframe").click()
        expect(thumbnails(page, "explore-keyframes")).to_have_count(n + 1)
    page.locator("#explore-preview").click()
    page.locator("#explore-animation img").wait_for()
    page.locator("#explore-export-gif").click()
    page.locator("#explore-download a[download$='.gif']").wait_for()
    shoot(page, picture)
    page.wait_for_function(SETTLED)
    directions = picture.with_name(picture.stem + "-directions.png")
    page.locator("#explore-directions").evaluate("element => element.parentElement.scrollIntoView()")
    page.locator("#explore-directions").locator("..").screenshot(path=str(directions))
    print(f"wrote {directions}", flush=True)


# ---------------------------------------------------------------------- helpers
def only_folder(parent: Path) -> str:
    names = sorted(child.name for child in parent.iterdir() if child.is_dir()) if parent.is_dir() else []
    if len(names) != 1:
        raise SystemExit(f"error: {parent} should hold exactly one folder, not {names or 'none'}")
    return names[0]


def shoot(page, path: Path) -> None:
    """A full-page picture once the page has settled."""
    page.wait_for_function(SETTLED)
    page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
