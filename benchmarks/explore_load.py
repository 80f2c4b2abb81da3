"""Four people in Explore at once while a run trains: training speed, Explore's latency, isolation.

    python benchmarks/explore_load.py RUN_DIR DATASET_DIR [--sessions 4] [--seconds 60]

Serves the studio on 127.0.0.1 over a temporary workspace holding a copy of RUN_DIR and starts a
64 px training run on DATASET_DIR in its training session (until stopped). Training images/s are
measured over three windows of the same run: no page open, SESSIONS browser sessions at work,
no page again (so drift within the run shows). Each session is its own browser context in
Debian's Chromium (through Playwright, whose sync API wants one browser per thread), opened on
the saved run before its window starts. In the window every session, all at the same time and
round after round: shows new seeds, clicks a sample, types a seed of its own, moves four direction
sliders (each move timed as explore_latency.py times it, from the slider's `input` event to the
new picture drawn), adds the sample as a keyframe and, from two keyframes on, exports a GIF
(timed from the click to the file offered); after four keyframes it clears them. After every
keyframe the session's keyframe strip must show exactly the seeds it added, in order: another
session's selection or keyframes showing up there is counted as an error, as is any exception,
page error or error message. The last line printed is JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from explore_latency import timed_move, wait_for_training
from playwright.sync_api import expect, sync_playwright
from ui_overhead import WARM_UP_SECONDS, images_per_s

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import ARGS, CHROMIUM, choose, free_port, select_sample, thumbnails, type_seed  # noqa: E402

TIMEOUT_MS = 180_000       # one action under the full load; a hang, not slowness, ends a session
KEYFRAMES_PER_WALK = 4
MOVES_PER_ROUND = 4


class Explorer(threading.Thread):
    """One person in the Explore tab, in a browser of their own, until `stop` is set."""

    def __init__(self, index: int, url: str, run: str, ready: threading.Barrier, stop: threading.Event):
        super().__init__(name=f"session-{index}", daemon=True)
        self.index, self.url, self.run_name, self.ready, self.stop = index, url, run, ready, stop
        self.moves: list[float] = []       # seconds per slider move
        self.exports: list[float] = []     # seconds per GIF export
        self.errors: list[str] = []
        self.keyframes_checked = 0
        self.step = "opening the page"     # what it was doing, for the report of an error

    def run(self) -> None:
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
                page.goto(self.url)
                page.get_by_role("tab", name="3 · Explore").click()
                choose(page, "explore-model", re.escape(self.run_name))
                expect_count(page, "explore-gallery", 16)
                self.ready.wait()
                self._explore(page)
                browser.close()
        except Exception as error:   # one session's failure is a result, not the end of the benchmark
            self.errors.append(f"{type(error).__name__} while {self.step}: {str(error).splitlines()[0]}")
            if not self.ready.broken:
                self.ready.abort()

    def _explore(self, page) -> None:
        added: list[int] = []            # the seeds of this session's keyframes, in order
        move = 0
        for round_ in range(10**6):
            if self.stop.is_set():
                return
            self.step = f"showing new seeds (round {round_})"
            first = thumbnails(page, "explore-gallery").first
            shown = first.inner_text()
            page.locator("#explore-new-seeds").click()
            expect(first).not_to_have_text(shown, timeout=TIMEOUT_MS)   # so the click below picks a new one
            self.step = "selecting a sample"
            select_sample(page, 1 + round_ % 15)      # new seeds select the first sample: click another
            seed = 1000 * (self.index + 1) + round_          # no other session ever types it
            self.step = "typing a seed"
            type_seed(page, seed)
            for _ in range(MOVES_PER_ROUND):
                self.step = f"moving slider {move % 4}"
                self.moves.append(timed_move(page, move))
                move += 1
            self.step = "adding a keyframe"
            if len(added) == KEYFRAMES_PER_WALK:
                page.locator("#explore-clear").click()
                expect_count(page, "explore-keyframes", 0)
                added = []
            page.locator("#explore-add-keyframe").click()
            added.append(seed)
            expect_count(page, "explore-keyframes", len(added))
            self._check_keyframes(page, added)
            if len(added) >= 2:
                self.step = "exporting a GIF"
                self._export(page)
            error = page.locator(".toast-body.error, .toast-wrap .error")
            if error.count():
                self.errors.append(f"error shown: {error.first.inner_text()}")

    def _check_keyframes(self, page, added: list[int]) -> None:
        captions = thumbnails(page, "explore-keyframes").all_inner_texts()
        shown = [int(found[1]) if (found := re.search(r"seed (\d+)", caption)) else None for caption in captions]
        if shown != added:
            self.errors.append(f"keyframes show seeds {shown}, this session added {added}")
        self.keyframes_checked += 1

    def _export(self, page) -> None:
        link = page.locator("#explore-download a[download$='.gif']")
        before = link.first.get_attribute("download") if link.count() else None
        start = time.perf_counter()
        page.locator("#explore-export-gif").click()
        page.wait_for_function(
            """before => { const a = document.querySelector("#explore-download a[download$='.gif']");
                           return a && a.getAttribute("download") !== before; }""", arg=before)
        self.exports.append(time.perf_counter() - start)


def expect_count(page, elem_id: str, count: int) -> None:
    expect(thumbnails(page, elem_id)).to_have_count(count, timeout=TIMEOUT_MS)


def percentile(values: list[float], fraction: float) -> float:
    return sorted(values)[int(fraction * len(values))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, metavar="RUN_DIR", help="a trained run to explore")
    parser.add_argument("dataset", type=Path, metavar="DATASET_DIR", help="what the run in the background trains on")
    parser.add_argument("--sessions", type=int, default=4, help="browser sessions at once (default 4)")
    parser.add_argument("--seconds", type=float, default=60, help="length of each measuring window (default 60)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="studio_explore_load_") as folder:
        workspace = Path(folder)
        for name, value in (("GRADIO_TEMP_DIR", str(workspace / "gradio")), ("GRADIO_ANALYTICS_ENABLED", "False"),
                            ("HF_HUB_OFFLINE", "1")):
            os.environ.setdefault(name, value)                        # before gradio loads
        from studio.config import TrainConfig
        from studio.run import Budget
        from studio.session import FAILED, TrainingSession
        from studio.ui.app import build_app, launch_options

        run = args.run.name
        shutil.copytree(args.run, workspace / "checkpoints" / run)
        session = TrainingSession()
        demo = build_app(workspace, session)
        demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                    **launch_options(workspace))
        try:
            config = TrainConfig(resolution=64)
            session.start(args.dataset.resolve(), workspace / "checkpoints" / "background", config, Budget())
            wait_for_training(session, FAILED)
            time.sleep(WARM_UP_SECONDS)
            speeds = {"no page": images_per_s(session, args.seconds)}
            ready, stop = threading.Barrier(args.sessions + 1), threading.Event()
            explorers = [Explorer(i, demo.local_url, run, ready, stop) for i in range(args.sessions)]
            for explorer in explorers:
                explorer.start()
            ready.wait()                                          # every page open on the run
            steps_before = session.snapshot().latest.step
            speeds[f"{args.sessions} sessions exploring"] = images_per_s(session, args.seconds)
            steps_during = session.snapshot().latest.step - steps_before
            stop.set()
            for explorer in explorers:
                explorer.join(timeout=TIMEOUT_MS / 1000)
            speeds["no page again"] = images_per_s(session, args.seconds)
            state = session.snapshot().state
        finally:
            session.stop()
            demo.close()

    moves = [m for explorer in explorers for m in explorer.moves]
    exports = [e for explorer in explorers for e in explorer.exports]
    errors = [f"session {explorer.index}: {error}" for explorer in explorers for error in explorer.errors]
    alone = (speeds["no page"] + speeds["no page again"]) / 2
    under_load = speeds[f"{args.sessions} sessions exploring"]
    result = {"sessions": args.sessions, "window_s": args.seconds, "images_per_s": speeds,
              "ratio_exploring_to_alone": under_load / alone, "training_steps_during_load": steps_during,
              "training_state_after": state,
              "slider_moves": len(moves), "slider_move_ms": 1000 * statistics.median(moves) if moves else None,
              "slider_move_ms_p90": 1000 * percentile(moves, 0.9) if moves else None,
              "gif_exports": len(exports), "gif_export_s": statistics.median(exports) if exports else None,
              "gif_export_s_max": max(exports) if exports else None,
              "keyframe_strips_checked": sum(explorer.keyframes_checked for explorer in explorers),
              "errors": errors}
    for name, speed in speeds.items():
        print(f"{name:>22}: {speed:5.1f} images/s")
    print(f"training with {args.sessions} sessions exploring: {under_load / alone:.2f}x its speed alone, "
          f"{steps_during} steps in the window")
    if moves:
        print(f"  slider move in Chromium: median {result['slider_move_ms']:.0f} ms "
              f"(90th percentile {result['slider_move_ms_p90']:.0f} ms), {len(moves)} moves")
    if exports:
        print(f"  GIF export (60 frames, 256 px), click to file offered: median {result['gif_export_s']:.1f} s, "
              f"slowest {result['gif_export_s_max']:.1f} s, {len(exports)} exports")
    print(f"  {result['keyframe_strips_checked']} keyframe strips checked, {len(errors)} errors")
    for error in errors:
        print(f"    {error}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
