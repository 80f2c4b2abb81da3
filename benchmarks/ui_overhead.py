"""What watching costs: training speed with a browser tab open on the Train tab, and without.

    python benchmarks/ui_overhead.py DATASET_DIR [--res 64] [--seconds 240] [--rounds 2]

Serves the studio on 127.0.0.1 and starts one training run in it (the studio's cadence, a preview
a minute, but no checkpoint, which would land in one state or the other). Then, `--rounds` times
over, Debian's Chromium (headless, through Playwright) shows a page for `--seconds`: the Train tab
as it asks for its line, plots and shows samples; then a gradio page of one line of text and no
events, served as the studio serves its own by a second server that runs throughout (what any page
costs). Playwright sets each page up and lets go of the browser (its driver answers for every
request and frame of a page it holds, a cost that a person's browser does not have), and the page
is measured from SETTLE_SECONDS after it is ready: keeping a page open, not loading it.

While a page is shown, training's images/s are measured in slices of about SLICE_SECONDS, each
from the end of one step to the end of another, that take turns: Chromium running, and Chromium
stopped (SIGSTOP, all of its processes). A stopped browser takes no CPU and sends nothing, so for
training it is no page at all; and stopping or waking it takes no time, so the two states take
turns every few seconds. That is the point: on a shared machine training's own speed wanders by
10% or more from one minute to the next, far more than what is measured, and windows minutes
apart (with and without a browser) compared that wander more than the page. All of a page's work
is done while it runs: a page woken up catches up on what it missed (its next look at the line,
the redraw after a preview it did not see). The time training spends rendering its previews is
left out of both states: one lands in a slice or another.

Beside the speed it gives the CPU each state used outside training, in cores: all of Chromium's
processes, and the studio's own threads other than the training thread and its OpenMP workers
(the servers, this benchmark's looks); and how often a training thread was made to give its core
to another (on two cores each such wake-up stalls both of training's threads, which wait for each
other at every operation). The last line printed is JSON.
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
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import ARGS, CHROMIUM, free_port  # noqa: E402  (the tests' Playwright helpers)

WARM_UP_SECONDS = 120   # a new run's speed still rises for its first minutes
SETTLE_SECONDS = 15
SLICE_SECONDS = 8       # at least; a slice ends with a step, and a 64 px step takes about 4 s on 2 CPU cores
TRAIN_TAB, EMPTY_PAGE = "Train tab", "empty gradio page"
RUNNING, STOPPED = "running", "stopped"
TICKS = os.sysconf("SC_CLK_TCK")
LOOK = 0.05      # seconds between looks at the run: a step takes over 100 ms on a CPU


class Steps:
    """The run's steps as they end, looked for every LOOK seconds, and how long its previews took:
    a preview is rendered between two steps, from the end of the one before it until it is listed."""

    def __init__(self, session):
        self.session = session
        self.images, self.previews = self._look()
        self.last_end = time.monotonic()
        self.previewing = 0.0

    def _look(self) -> tuple[int, int]:
        snap = self.session.snapshot()
        return (snap.latest.images_seen if snap.latest else 0), len(snap.previews)

    def next_end(self, not_before: float = 0.0) -> float:
        """When the first step ends at `not_before` or later."""
        while True:
            time.sleep(LOOK)
            images, previews = self._look()
            now = time.monotonic()
            if previews != self.previews:
                self.previews = previews
                self.previewing += now - self.last_end
            if images != self.images:
                self.images, self.last_end = images, now
                if now >= not_before:
                    return now


@dataclass
class Reading:
    """What a slice is measured by, read as it begins and as it ends."""
    time: float
    images: int
    previewing: float
    chromium: dict[int, float]     # CPU seconds of each Chromium process
    process: float                 # CPU seconds of this process
    training: float                # of training's threads
    preempted: int                 # times training's threads were made to give up their core

    @classmethod
    def now(cls, steps: Steps, at: float) -> Reading:
        return cls(at, steps.images, steps.previewing, chromium_seconds(), sum(os.times()[:2]),
                   training_seconds(steps.session), training_preempted(steps.session))


@dataclass
class State:
    """Training while Chromium was running, or while it was stopped: the sums of its slices."""
    images: int = 0
    seconds: float = 0.0          # previews left out
    chromium: float = 0.0
    server: float = 0.0
    preempted: int = 0

    def add(self, begin: Reading, end: Reading) -> None:
        self.images += end.images - begin.images
        self.seconds += (end.time - begin.time) - (end.previewing - begin.previewing)
        self.chromium += sum(now - begin.chromium.get(pid, 0.0) for pid, now in end.chromium.items())
        self.server += (end.process - begin.process) - (end.training - begin.training)
        self.preempted += end.preempted - begin.preempted

    def summary(self) -> dict:
        return {"images_per_s": self.images / self.seconds, "chromium_cores": self.chromium / self.seconds,
                "server_cores": self.server / self.seconds, "preempted_per_s": self.preempted / self.seconds,
                "seconds": self.seconds}


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


def training_threads(session) -> list[Path]:
    """/proc entries of the training thread and of the threads Python did not start: its OpenMP
    workers (those of an event's render end with the event: studio/ui/event_threads.py)."""
    python_threads = {thread.native_id for thread in threading.enumerate()} - {session._thread.native_id}
    return [task for task in Path("/proc/self/task").iterdir() if int(task.name) not in python_threads]


def training_seconds(session) -> float:
    return sum(_read_or_zero(cpu_seconds, task / "stat") for task in training_threads(session))


def training_preempted(session) -> int:
    return sum(_read_or_zero(preempted, task / "status") for task in training_threads(session))


def preempted(status: Path) -> int:
    return next(int(line.split()[1]) for line in status.read_text().splitlines()
                if line.startswith("nonvoluntary_ctxt_switches"))


def _read_or_zero(read, path: Path):
    try:
        return read(path)
    except OSError:          # the thread ended while being read
        return 0


def images_per_s(session, seconds: float) -> float:
    """Training's images/s over about `seconds`, from the end of one step to the end of another,
    the time its previews took left out."""
    steps = Steps(session)
    begin = Reading.now(steps, steps.next_end())
    end = Reading.now(steps, steps.next_end(begin.time + seconds))
    state = State()
    state.add(begin, end)
    return state.summary()["images_per_s"]


def running_and_stopped(session, chromium: int, seconds: float) -> dict[str, State]:
    """Training over about `seconds` in slices that take turns: the process group `chromium`
    running, then stopped."""
    states = {RUNNING: State(), STOPPED: State()}
    steps = Steps(session)
    begin = Reading.now(steps, steps.next_end())
    deadline = begin.time + seconds
    state = RUNNING
    try:
        while begin.time < deadline:
            os.killpg(chromium, signal.SIGCONT if state == RUNNING else signal.SIGSTOP)
            end = Reading.now(steps, steps.next_end(begin.time + SLICE_SECONDS))
            states[state].add(begin, end)
            state, begin = (STOPPED if state == RUNNING else RUNNING), end
    finally:
        os.killpg(chromium, signal.SIGCONT)
    return states


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
    parser.add_argument("--seconds", type=float, default=240, help="how long each page is measured")
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
        empty = empty_page()
        pages = [(TRAIN_TAB, demo.local_url, train_tab),
                 (EMPTY_PAGE, empty.local_url, lambda page: page.locator("#empty").wait_for())]
        try:
            session.start(args.dataset.resolve(), Path(workspace) / "checkpoints" / "run",
                          TrainConfig(resolution=args.res), Budget())        # until stopped
            while session.snapshot().latest is None:
                if session.snapshot().state == FAILED:
                    raise SystemExit(f"error: training failed: {session.snapshot().error}")
                time.sleep(1)
            time.sleep(WARM_UP_SECONDS)
            measured = []
            with sync_playwright() as playwright:
                for number in range(1, args.rounds + 1):
                    for name, url, ready in pages:
                        with chromium_showing(playwright, url, ready) as chromium:
                            states = running_and_stopped(session, chromium, args.seconds)
                        measured.append({"page": name, "round": number,
                                         **{state: tally.summary() for state, tally in states.items()}})
                        print_measured(measured[-1])
        finally:
            session.stop()
            demo.close()
            empty.close()

    ratios = {name: [m[RUNNING]["images_per_s"] / m[STOPPED]["images_per_s"] for m in measured if m["page"] == name]
              for name, *_ in pages}
    for name, values in ratios.items():
        print(f"{name}: {', '.join(f'{value:.3f}x' for value in values)} the speed without "
              f"(mean {statistics.mean(values):.3f}x)")
    print(json.dumps({"dataset": str(args.dataset), "resolution": args.res, "seconds": args.seconds,
                      "measured": measured, "ratios": ratios,
                      "ratio_open_to_closed": statistics.mean(ratios[TRAIN_TAB]),
                      "ratio_empty_page_to_closed": statistics.mean(ratios[EMPTY_PAGE])}))


def print_measured(m: dict) -> None:
    for state in (RUNNING, STOPPED):
        s = m[state]
        print(f"{m['round']} · {m['page']:>17}, Chromium {state}: {s['images_per_s']:5.2f} images/s over "
              f"{s['seconds']:.0f} s; outside training: Chromium {s['chromium_cores']:.3f} cores, the studio's "
              f"server {s['server_cores']:.3f}; training preempted {s['preempted_per_s']:.0f} times/s", flush=True)
    print(f"  {m['page']}: {m[RUNNING]['images_per_s'] / m[STOPPED]['images_per_s']:.3f}x", flush=True)


def train_tab(page) -> None:
    page.get_by_role("tab", name="2 · Train").click()
    page.locator("#loss-plot canvas, #loss-plot svg").first.wait_for(timeout=120_000)


@contextmanager
def chromium_showing(playwright, url: str, ready):
    """Chromium's process group, SETTLE_SECONDS after it shows `url` and `ready(page)` has
    returned, with Playwright let go of it; all of its processes ended afterwards."""
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
            yield chromium.pid
        finally:
            os.killpg(chromium.pid, signal.SIGTERM)      # Chromium and the processes it started
            chromium.wait()
            gone(chromium.pid)         # its other processes can take seconds to end


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
