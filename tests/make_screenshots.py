"""Make the README's screenshots: the studio as a newcomer finds it, with the demo.

    python tests/make_screenshots.py [--out assets] [--steps 100] [--keyframes 1,10] [--other RUN_DIR]

A new workspace (in the temp folder) gets the demo dataset and model, as on a first launch. The
studio is served from this process on 127.0.0.1 and Debian's Chromium (/usr/bin/chromium,
headless, through Playwright; never `playwright install`) visits it:

  1 · Dataset  picks the demo dataset, so its paintings and counts show  -> screenshot-dataset.png
  2 · Train    fine-tunes the demo model on it for 2x --steps steps, so the loss plot, the newest
               samples, the time-lapse and one KID point fill in; the picture is taken while it
               is still training, after --steps, then it is stopped   -> screenshot-train.png
  3 · Explore  picks the demo model, adds the samples --keyframes as keyframes (the last one
               moved along two directions first), previews the walk and exports it as a GIF
                                                                 -> screenshot-explore.png, and the
               selected sample with its direction sliders  -> screenshot-explore-directions.png;
               then projects two of the demo's paintings into the demo model
                                                                 -> screenshot-explore-project.png,
               breeds a litter from two samples                  -> screenshot-explore-breed.png,
               and blends the demo with --other (a fine-tune of it, copied into the workspace;
               by default the one trained in the Train tab)      -> screenshot-explore-blend.png

Every wait is on something the page shows; the timeouts only guard against a hung page.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

from browser import (ARGS, CHROMIUM, SETTLED, choose, fill_number, free_port, move_slider, radio, select_sample,
                     thumbnails)

VIEWPORT = {"width": 1400, "height": 1000}
TIMEOUT_MS = 120_000
KID_MINUTES = 0.75                 # one KID measurement within the default 100 steps
TRAIN_TIMEOUT_MS = 60 * 60_000     # training on a busy CPU can take a while; this only catches a hang


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "assets",
                        help="where the PNGs go (default: the repository's assets/ folder)")
    parser.add_argument("--steps", type=int, default=100,
                        help="steps to train on before the Train picture (default 100, 1-2 minutes on 2 cores)")
    parser.add_argument("--keyframes", default="1,10",
                        help="the samples (0-15) to add as keyframes in Explore, in order (default 1,10)")
    parser.add_argument("--other", type=Path, metavar="RUN_DIR",
                        help="a fine-tune of the demo to blend it with (default: the run the Train tab trains)")
    args = parser.parse_args()
    keyframes = [int(n) for n in args.keyframes.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="studio_shots_") as gradio_tmp:
        os.environ.setdefault("GRADIO_TEMP_DIR", gradio_tmp)      # before gradio is imported
        from studio import demo as bundled
        from studio.session import TrainingSession
        from studio.ui.app import build_app, launch_options
        from studio.workspace import Workspace

        workspace = Workspace(Path(gradio_tmp) / "workspace")
        bundled.add_to(workspace)
        if args.other:
            shutil.copytree(args.other, workspace.run_dir(args.other.name))
        session = TrainingSession()
        demo = build_app(workspace.root, session)
        demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                    **launch_options(workspace.root))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
                page = browser.new_page(viewport=VIEWPORT)
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(demo.local_url)
                dataset_tab(page, bundled.NAME, args.out / "screenshot-dataset.png")
                train_tab(page, bundled.NAME, args.steps, args.out / "screenshot-train.png")
                explore_tab(page, bundled.NAME, keyframes, args.out / "screenshot-explore.png")
                paintings = sorted((bundled.DATASET / "images").glob("*.png"))[:2]
                explore_panels(page, paintings, args.other.name if args.other else None, args.out)
                browser.close()
        finally:
            session.stop()
            demo.close()


def dataset_tab(page, dataset: str, picture: Path) -> None:
    choose(page, "dataset-pick", rf"{re.escape(dataset)}( · .*)?")
    expect(page.locator("#dataset-summary")).to_contain_text(dataset)
    expect(page.locator("#dataset-summary")).to_contain_text("paintings")
    thumbnails(page, "dataset-gallery").first.wait_for()
    shoot(page, picture)


def train_tab(page, model: str, steps: int, picture: Path) -> None:
    """Fine-tunes `model` on the dataset the Train tab picks (the demo's own, in a demo workspace)."""
    page.get_by_role("tab", name="2 · Train").click()
    choose(page, "train-start-from", rf"{re.escape(model)} ·.*")
    radio(page, "train-duration-unit", "steps")
    fill_number(page, "train-duration", 2 * steps)        # so it is still training (with an ETA) at the picture
    fill_number(page, "train-kid-minutes", KID_MINUTES)
    page.locator("#train-start").click()

    status = page.locator("#train-status")
    page.wait_for_function(
        """([target]) => {
             const text = document.querySelector('#train-status').innerText;
             const step = text.match(/^Training .*step ([\\d,]+)/);
             return step && parseInt(step[1].replace(/,/g, '')) >= target && /ETA/.test(text);
           }""", arg=[steps], timeout=TRAIN_TIMEOUT_MS)
    expect(thumbnails(page, "sample-gallery")).to_have_count(16)
    thumbnails(page, "train-timelapse").first.wait_for()
    expect(page.locator("#loss-plot canvas, #loss-plot svg").first).to_be_visible()
    expect(page.locator("#kid-plot canvas, #kid-plot svg").first).to_be_visible(timeout=TRAIN_TIMEOUT_MS)
    expect(status).to_contain_text("images/s", timeout=TRAIN_TIMEOUT_MS)
    shoot(page, picture)

    page.locator("#train-stop").click()
    expect(status).to_contain_text("Finished", timeout=TRAIN_TIMEOUT_MS)


def explore_tab(page, run: str, keyframes: list[int], picture: Path) -> None:
    page.get_by_role("tab", name="3 · Explore").click()
    page.wait_for_function(SETTLED)         # the tab's own choice of model first, then ours
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


def explore_panels(page, paintings: list[Path], other: str | None, folder: Path) -> None:
    """Projection, breeding and blending, each photographed with the panel in view."""
    page.locator("#explore-clear").click()
    for n, painting in enumerate(paintings):
        clear = page.locator("#explore-project-upload button[aria-label='Clear']")
        if clear.count():
            clear.click()
        page.locator("#explore-project-upload input[type=file]").set_input_files(str(painting))
        page.locator("#explore-project-start").click()
        expect(page.locator("#explore-project-note")).to_contain_text(f"{painting.name} — distance", timeout=TIMEOUT_MS)
        page.locator("#explore-add-keyframe").click()
        expect(thumbnails(page, "explore-keyframes")).to_have_count(n + 1)
    page.locator("#explore-preview").click()
    page.locator("#explore-animation img").wait_for()
    in_view(page, "explore-project-result", folder / "screenshot-explore-project.png")

    for n, index in enumerate((2, 5)):
        select_sample(page, index)
        page.locator("#explore-add-parent").click()
        expect(thumbnails(page, "explore-parents")).to_have_count(n + 1)
    page.locator("#explore-breed").click()
    expect(thumbnails(page, "explore-children")).to_have_count(16, timeout=TIMEOUT_MS)
    in_view(page, "explore-children", folder / "screenshot-explore-breed.png")

    if other:
        choose(page, "explore-blend-model", re.escape(other))
    page.locator("#explore-blend-preview").click()
    expect(thumbnails(page, "explore-blend-grid")).to_have_count(24, timeout=TIMEOUT_MS)
    in_view(page, "explore-blend-grid", folder / "screenshot-explore-blend.png")


# ---------------------------------------------------------------------- helpers
def in_view(page, elem_id: str, path: Path) -> None:
    """A viewport-sized picture with `elem_id` in the middle, once the page has settled."""
    page.locator(f"#{elem_id}").evaluate("element => element.scrollIntoView({block: 'center'})")
    page.wait_for_function(SETTLED)
    page.screenshot(path=str(path))
    print(f"wrote {path}", flush=True)


def shoot(page, path: Path) -> None:
    """A full-page picture once the page has settled."""
    page.wait_for_function(SETTLED)
    page.screenshot(path=str(path), full_page=True)
    print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
