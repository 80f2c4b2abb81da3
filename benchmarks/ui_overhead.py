"""What watching costs: training speed with and without a browser tab open on the Train tab.

    python benchmarks/ui_overhead.py DATASET_DIR [--res 64] [--seconds 60]

Serves the studio on 127.0.0.1 and starts one training run in it, then measures images per
second of wall time in five windows of the same run: no page open, Debian's Chromium (headless,
through Playwright) showing the Train tab as it polls, plots and shows samples, no page again,
Chromium showing a gradio page of one line of text and no events, served as the studio serves
its own (what any page costs), and no page at last. Each page is compared with the two windows beside it, so that the
run's own drift (its speed changes as it trains) is not taken for the page's cost. On two cores
the browser and the studio's polling compete with training for the CPU; this says how much. A
checkpoint is written every 5 minutes of training, inside one of the windows; keep the windows
short next to that (the default 60 s). The last line printed is JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import ARGS, CHROMIUM, free_port  # noqa: E402  (the tests' Playwright helpers)

WARM_UP_SECONDS = 20


def images_seen(session) -> int:
    latest = session.snapshot().latest
    return latest.images_seen if latest else 0


def window(session, seconds: float) -> float:
    """Images per second of wall time over the next `seconds`."""
    start_images, start = images_seen(session), time.monotonic()
    time.sleep(seconds)
    return (images_seen(session) - start_images) / (time.monotonic() - start)


def empty_page():
    """A gradio page of one line of text and no events, served as the studio serves its own (its
    frames paced, its queue woken less: paced_frames.py, app.py), to tell the cost of the Train
    tab from that of any page."""
    import gradio as gr

    from studio.ui.app import wake_the_queue_less
    from studio.ui.paced_frames import middleware

    with gr.Blocks(analytics_enabled=False) as page:
        gr.Markdown("A gradio page with nothing to do.", elem_id="empty")
    wake_the_queue_less(page)
    page.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                ssr_mode=False, app_kwargs=dict(middleware=middleware()))
    return page


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--res", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60, help="length of each measuring window")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="studio_overhead_") as workspace:
        os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(workspace) / "gradio"))   # before gradio loads
        from studio.config import TrainConfig
        from studio.run import Budget
        from studio.session import FAILED, TrainingSession
        from studio.ui.app import build_app, launch_options

        session = TrainingSession()
        demo = build_app(Path(workspace), session)
        demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                    **launch_options(Path(workspace)))
        try:
            session.start(args.dataset.resolve(), Path(workspace) / "checkpoints" / "run",
                          TrainConfig(resolution=args.res), Budget())        # until stopped
            while images_seen(session) == 0:
                if session.snapshot().state == FAILED:
                    raise SystemExit(f"error: training failed: {session.snapshot().error}")
                time.sleep(1)
            time.sleep(WARM_UP_SECONDS)
            with sync_playwright() as playwright:
                speeds = {"no page": window(session, args.seconds),
                          "Train tab open": page_window(playwright, session, args.seconds, demo.local_url, train_tab),
                          "no page again": window(session, args.seconds),
                          "empty gradio page": empty_page_window(playwright, session, args.seconds),
                          "no page at last": window(session, args.seconds)}
        finally:
            session.stop()
            demo.close()

    # Each page's window against the mean of the two beside it: the run's speed drifts as it trains.
    tab = speeds["Train tab open"] / ((speeds["no page"] + speeds["no page again"]) / 2)
    blank = speeds["empty gradio page"] / ((speeds["no page again"] + speeds["no page at last"]) / 2)
    for name, speed in speeds.items():
        print(f"{name:>17}: {speed:5.1f} images/s")
    print(f"with the Train tab open: {tab:.2f}x the speed without; with an empty gradio page: {blank:.2f}x")
    print(json.dumps({"dataset": str(args.dataset), "resolution": args.res, "images_per_s": speeds,
                      "ratio_open_to_closed": tab, "ratio_empty_page_to_closed": blank}))


def train_tab(page) -> None:
    page.get_by_role("tab", name="2 · Train").click()
    page.locator("#loss-plot canvas, #loss-plot svg").first.wait_for(timeout=120_000)


def empty_page_window(playwright, session, seconds: float) -> float:
    """page_window on an empty page, its server running only for that window."""
    empty = empty_page()
    try:
        return page_window(playwright, session, seconds, empty.local_url, lambda page: page.locator("#empty").wait_for())
    finally:
        empty.close()


def page_window(playwright, session, seconds: float, url: str, ready) -> float:
    """Images per second while Chromium shows `url`, once `ready(page)` has returned."""
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        ready(page)
        return window(session, seconds)
    finally:
        browser.close()


if __name__ == "__main__":
    main()
