"""What watching costs: training speed with and without a browser tab open on the Train tab.

    python benchmarks/ui_overhead.py DATASET_DIR [--res 64] [--seconds 60] [--rounds 2]

Serves the studio on 127.0.0.1 and starts one training run in it, then measures images per
second in windows of the same run: no page open, then `--rounds` times over: Debian's Chromium
(headless, through Playwright) showing the Train tab as it polls, plots and shows samples; no
page; Chromium showing a gradio page of one line of text and no events, served as the studio
serves its own (what any page costs); no page. Each page is compared with the two windows beside
it, so that the run's own drift (its speed changes as it trains) is not taken for the page's cost.
The run keeps the studio's cadence (a preview a minute) but writes no checkpoint, which would
land in one window or another. A page's window starts SETTLE_SECONDS after it is ready: what is
measured is keeping a page open, not loading it (its first seconds compile and lay out the page);
and the next window starts once all of Chromium's processes have ended, which takes a second or
more after the browser's own.

Each window is timed from the end of one training step to the end of another, so no part-step
is counted. Beside the speed it gives the CPU each window used outside training, in cores: all of
Chromium's processes, and the studio's own threads other than the training thread and its
OpenMP workers (the server, the poll). On two cores these compete with training; this says how
much. The last line printed is JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import ARGS, CHROMIUM, free_port  # noqa: E402  (the tests' Playwright helpers)

WARM_UP_SECONDS = 20
SETTLE_SECONDS = 15
NO_PAGE, TRAIN_TAB, EMPTY_PAGE = "no page", "Train tab open", "empty gradio page"
TICKS = os.sysconf("SC_CLK_TCK")
LOOK = 0.05      # seconds between looks at the step count: a step takes over 100 ms on a CPU


@dataclass
class Window:
    name: str
    images_per_s: float
    chromium_cores: float
    server_cores: float


def images_seen(session) -> int:
    latest = session.snapshot().latest
    return latest.images_seen if latest else 0


def next_step(session, after: int) -> tuple[int, float]:
    """The images seen once a step ends after `after` of them, and when (looked for every LOOK seconds)."""
    while (seen := images_seen(session)) == after:
        time.sleep(LOOK)
    return seen, time.monotonic()


def stat_fields(stat: Path) -> list[str]:
    """The fields of a /proc stat file after the command's closing bracket: state, parent, group..."""
    return stat.read_text().rsplit(")", 1)[1].split()


def cpu_seconds(stat: Path) -> float:
    """User and system time of a /proc stat file."""
    fields = stat_fields(stat)
    return (int(fields[11]) + int(fields[12])) / TICKS


def chromium_seconds() -> dict[int, float]:
    """CPU seconds of each running Chromium process started from this one."""
    seconds = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if "chromium" in (entry / "comm").read_text() and _descends_from_us(entry):
                    seconds[int(entry.name)] = cpu_seconds(entry / "stat")
            except OSError:          # it ended while being read
                pass
    return seconds


def _descends_from_us(entry: Path) -> bool:
    pid = int(entry.name)
    while pid > 1:
        pid = int(stat_fields(Path("/proc") / str(pid) / "stat")[1])
        if pid == os.getpid():
            return True
    return False


def training_seconds(session) -> float:
    """CPU seconds of the training thread and of the threads Python did not start: its OpenMP
    workers (those of an event's render end with the event: studio/ui/event_threads.py)."""
    python_threads = {thread.native_id for thread in threading.enumerate()} - {session._thread.native_id}
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        if int(task.name) not in python_threads:
            try:
                total += cpu_seconds(task / "stat")
            except OSError:
                pass
    return total


def window(session, name: str, seconds: float) -> Window:
    """Images per second over about `seconds`, from the end of one step to the end of the last
    step before the time is up, and the CPU used meanwhile outside training."""
    first_images, first_time = next_step(session, images_seen(session))
    chromium_before, process_before, training_before = chromium_seconds(), sum(os.times()[:2]), training_seconds(session)
    last_images, last_time = first_images, first_time
    while time.monotonic() < first_time + seconds:
        time.sleep(LOOK)
        if (seen := images_seen(session)) != last_images:
            last_images, last_time = seen, time.monotonic()
    elapsed = last_time - first_time
    chromium = sum(now - chromium_before.get(pid, 0.0) for pid, now in chromium_seconds().items())
    server = (sum(os.times()[:2]) - process_before) - (training_seconds(session) - training_before)
    return Window(name, (last_images - first_images) / elapsed, chromium / elapsed, server / elapsed)


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
    parser.add_argument("--rounds", type=int, default=2, help="how many times each page is shown")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="studio_overhead_") as workspace:
        os.environ.setdefault("GRADIO_TEMP_DIR", str(Path(workspace) / "gradio"))   # before gradio loads
        from studio.config import TrainConfig
        from studio.run import Budget
        from studio.session import FAILED, STUDIO_CADENCE, TrainingSession
        from studio.ui.app import build_app, launch_options

        session = TrainingSession(replace(STUDIO_CADENCE, checkpoint_minutes=24 * 60))
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
                windows: list[Window] = []

                def shown(measured: Window) -> None:
                    windows.append(measured)
                    print_window(len(windows), measured)

                shown(window(session, NO_PAGE, args.seconds))
                for _ in range(args.rounds):
                    shown(page_window(playwright, session, args.seconds, demo.local_url, train_tab))
                    shown(window(session, NO_PAGE, args.seconds))
                    shown(empty_page_window(playwright, session, args.seconds))
                    shown(window(session, NO_PAGE, args.seconds))
        finally:
            session.stop()
            demo.close()

    ratios = page_ratios(windows)
    for page, values in ratios.items():
        print(f"{page}: {', '.join(f'{value:.3f}x' for value in values)} the speed without "
              f"(mean {statistics.mean(values):.3f}x)")
    print(json.dumps({"dataset": str(args.dataset), "resolution": args.res, "seconds": args.seconds,
                      "images_per_s": {f"{i} · {w.name}": w.images_per_s for i, w in enumerate(windows, 1)},
                      "windows": [asdict(w) for w in windows],
                      "ratio_open_to_closed": statistics.mean(ratios[TRAIN_TAB]),
                      "ratio_empty_page_to_closed": statistics.mean(ratios[EMPTY_PAGE]),
                      "ratios": ratios}))


def page_ratios(windows: list[Window]) -> dict[str, list[float]]:
    """Each page window's speed against the mean of the two no-page windows beside it: the run's
    speed drifts as it trains."""
    ratios = {TRAIN_TAB: [], EMPTY_PAGE: []}
    for before, page, after in zip(windows, windows[1:], windows[2:]):
        if page.name in ratios:
            ratios[page.name].append(page.images_per_s / ((before.images_per_s + after.images_per_s) / 2))
    return ratios


def print_window(number: int, w: Window) -> None:
    print(f"{number:2d} {w.name:>17}: {w.images_per_s:5.2f} images/s; outside training: Chromium "
          f"{w.chromium_cores:.3f} cores, the studio's server {w.server_cores:.3f}", flush=True)


def train_tab(page) -> None:
    page.get_by_role("tab", name="2 · Train").click()
    page.locator("#loss-plot canvas, #loss-plot svg").first.wait_for(timeout=120_000)


def empty_page_window(playwright, session, seconds: float) -> Window:
    """page_window on an empty page, its server running only for that window."""
    empty = empty_page()
    try:
        return page_window(playwright, session, seconds, empty.local_url, lambda page: page.locator("#empty").wait_for(),
                           EMPTY_PAGE)
    finally:
        empty.close()


def page_window(playwright, session, seconds: float, url: str, ready, name: str = TRAIN_TAB) -> Window:
    """A window while Chromium shows `url`, once `ready(page)` has returned. Playwright sets the
    page up, then lets go of the browser before the window starts: its driver answers for every
    request and frame of a page it holds, at a cost of its own that a person's browser does not
    have."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="studio_overhead_chromium_", ignore_cleanup_errors=True) as profile:
        chromium = subprocess.Popen([str(CHROMIUM), *ARGS, "--window-size=1400,1000", f"--user-data-dir={profile}",
                                     f"--remote-debugging-port={port}", "about:blank"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            browser = connected(playwright, port)
            page = browser.contexts[0].pages[0]
            page.goto(url)
            ready(page)
            browser.close()            # for a browser connected to, this lets go of it; it goes on
            time.sleep(SETTLE_SECONDS)
            return window(session, name, seconds)
        finally:
            os.killpg(chromium.pid, signal.SIGTERM)      # Chromium and the processes it started
            chromium.wait()
            gone(chromium.pid)     # its other processes can take seconds to end, in the next window


def gone(group: int, timeout: float = 60) -> None:
    """Once no process of the process group `group` is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_in_group(entry, group) for entry in Path("/proc").iterdir()):
        time.sleep(0.1)


def _in_group(entry: Path, group: int) -> bool:
    try:
        return entry.name.isdigit() and int(stat_fields(entry / "stat")[2]) == group
    except OSError:          # it ended while being read
        return False


def connected(playwright, port: int, timeout: float = 60):
    """Playwright connected to the Chromium listening on `port`, once it listens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return playwright.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


if __name__ == "__main__":
    main()
