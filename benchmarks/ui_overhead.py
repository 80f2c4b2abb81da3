"""What watching costs: training speed with and without a browser tab open on the Train tab.

    python benchmarks/ui_overhead.py DATASET_DIR [--res 64] [--seconds 60]

Serves the studio on 127.0.0.1 and starts one training run in it, then measures images per
second of wall time in three windows of the same run: no page open, Debian's Chromium (headless,
through Playwright) showing the Train tab as it polls, plots and shows samples, and no page
again (so drift within the run shows). On two cores the browser and the studio's polling compete
with training for the CPU; this says how much. A checkpoint is written every 5 minutes of
training, inside one of the windows; keep the windows short next to that (the default 60 s). The
last line printed is JSON.
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
            speeds = {"no page": window(session, args.seconds)}
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(demo.local_url)
                page.get_by_role("tab", name="2 · Train").click()
                page.locator("#loss-plot canvas, #loss-plot svg").first.wait_for(timeout=120_000)
                speeds["Train tab open"] = window(session, args.seconds)
                browser.close()
            speeds["no page again"] = window(session, args.seconds)
        finally:
            session.stop()
            demo.close()

    alone = (speeds["no page"] + speeds["no page again"]) / 2
    for name, speed in speeds.items():
        print(f"{name:>16}: {speed:5.1f} images/s")
    print(f"with the Train tab open: {speeds['Train tab open'] / alone:.2f}x the speed without")
    print(json.dumps({"dataset": str(args.dataset), "resolution": args.res, "images_per_s": speeds,
                      "ratio_open_to_closed": speeds["Train tab open"] / alone}))


if __name__ == "__main__":
    main()
