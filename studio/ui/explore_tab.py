"""Explore tab: browse a model's samples by seed, check them for copies of the training paintings,
pick keyframes, and export a walk between them."""
from __future__ import annotations

import functools
import random
from pathlib import Path

import gradio as gr

from ..checkpoint import CheckpointError
from ..data import DatasetError
from ..explore import Model, Walk, export_walk, nearest_paintings, open_run, render_samples
from ..metrics import MetricsUnavailable
from ..run import RunError, preview_step, recorded_dataset
from ..session import TrainingSession
from ..workspace import Workspace

LIVE = ":live"        # the dropdown's value for the session's run; ':' is never in a folder name
SEEDS_SHOWN = 16
NOTHING_YET = ("**Nothing to explore yet** — train a model in the Train tab, and its samples appear here. "
               "Click samples to make them keyframes of an animation.")
COPIES_HINT = "Does the model copy your paintings? Check the samples above against the training paintings."


class ExploreTab:
    def __init__(self, workspace: Workspace, session: TrainingSession):
        self.workspace = workspace
        self.session = session

    # ------------------------------------------------------------------ layout
    def render(self) -> None:
        with gr.Tab("3 · Explore", id="explore") as tab:
            with gr.Row():
                model = gr.Dropdown(label="Model", choices=[], elem_id="explore-model",
                                    info="A finished run, or the one training now (its newest samples).")
                psi = gr.Slider(0.3, 1.0, value=1.0, step=0.05, label="Truncation ψ", elem_id="explore-psi",
                                info="Lower: calmer, more typical images. 1: full variety.")
            with gr.Row(equal_height=True):
                status = gr.Markdown(NOTHING_YET, elem_id="explore-status")
                new = gr.Button("New seeds", elem_id="explore-new-seeds", scale=0, min_width=140)
            gallery = gr.Gallery(label="Samples — click one to add it as a keyframe", columns=8,
                                 format="png", allow_preview=False, elem_id="explore-gallery",
                                 elem_classes="contact-sheet")
            with gr.Row(equal_height=True):
                copies_note = gr.Markdown(COPIES_HINT, elem_id="explore-copies-note")
                check = gr.Button("Check for copies", elem_id="explore-check-copies", scale=0, min_width=140)
            nearest = gr.Gallery(label="Each sample beside its nearest training painting", columns=8, format="png",
                                 allow_preview=False, elem_id="explore-nearest", elem_classes="contact-sheet")
            with gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=400):
                    keyframe_view = gr.Gallery(label="Keyframes in order (#, seed)", columns=6, format="png",
                                               allow_preview=False, fit_columns=False, elem_id="explore-keyframes",
                                               elem_classes="contact-sheet")
                    with gr.Row():
                        frames = gr.Slider(8, 240, value=60, step=1, label="Frames", elem_id="explore-frames")
                        fps = gr.Slider(4, 60, value=15, step=1, label="Frames per second", elem_id="explore-fps")
                    with gr.Row():
                        loop = gr.Checkbox(True, label="Loop back to the first keyframe", elem_id="explore-loop")
                        clear = gr.Button("Clear keyframes", elem_id="explore-clear", size="sm")
                        preview = gr.Button("Preview animation", variant="primary", elem_id="explore-preview")
                with gr.Column(scale=2, min_width=300):
                    animation = gr.Image(label="Animation", type="filepath", height=256, interactive=False,
                                         elem_id="explore-animation")
                    with gr.Row():
                        gif = gr.Button("Export GIF", elem_id="explore-export-gif", size="sm", min_width=80)
                        mp4 = gr.Button("Export MP4", elem_id="explore-export-mp4", size="sm", min_width=80)
                        frames_zip = gr.Button("Frames (zip)", elem_id="explore-export-zip", size="sm", min_width=80)
                    download = gr.File(label="Download", interactive=False, elem_id="explore-download")
            seeds = gr.State(list(range(SEEDS_SHOWN)))     # the training previews' seeds, to start with
            keyframes = gr.State([])
        views = [gallery, status, keyframe_view]
        walk = [model, keyframes, frames, fps, loop, psi]
        tab.select(self.refresh, model, model, api_name="explore_tab")
        # New samples make an earlier check for copies mislead: clear it.
        forget = dict(fn=lambda: ([], COPIES_HINT), inputs=None, outputs=[nearest, copies_note])
        model.change(self.show, [model, seeds, keyframes, psi], views, api_name="explore_show") \
            .then(**forget, api_name="explore_show_forget_copies")
        psi.release(self.show, [model, seeds, keyframes, psi], views, api_name="explore_psi") \
            .then(**forget, api_name="explore_psi_forget_copies")
        new.click(self.new_seeds, [model, keyframes, psi], [seeds, *views], api_name="explore_new_seeds") \
            .then(**forget, api_name="explore_new_seeds_forget_copies")
        check.click(self.check_copies, [model, seeds, psi], [nearest, copies_note], api_name="check_copies")
        gallery.select(self.add_keyframe, [model, seeds, keyframes, psi], [keyframes, keyframe_view],
                       api_name="explore_add_keyframe")
        clear.click(lambda: ([], []), None, [keyframes, keyframe_view], api_name="explore_clear")
        preview.click(functools.partial(self.export, "gif"), walk, animation, api_name="explore_preview")
        for button, kind in ((gif, "gif"), (mp4, "mp4"), (frames_zip, "zip")):
            button.click(functools.partial(self.export, kind), walk, download, api_name=f"explore_export_{kind}")

    # ------------------------------------------------------------------ events
    def refresh(self, current: str | None):
        """The model list as it is now; by default the live run once it has samples, else the
        newest saved run."""
        snap = self.session.snapshot()
        choices = [(f"Current training run ({snap.run_dir.name})", LIVE)] if snap.run_dir else []
        choices += [(name, name) for name in self.workspace.run_names()]
        values = [value for _, value in choices]
        if current not in values:
            live_ready = snap.samples is not None
            current = LIVE if live_ready else next((v for v in values if v != LIVE), None)
        return gr.Dropdown(choices=choices, value=current)

    def show(self, choice: str | None, seeds: list[int], keyframes: list[int], psi: float):
        """Samples, status line and keyframes, rendered by the chosen model."""
        model = self._open(choice)
        if model is None:
            message = NOTHING_YET if choice != LIVE else \
                "The current run has no samples yet: they appear after its first preview, in a few seconds."
            return [], message, []
        status = (f"**{model.label}** · {model.config.resolution} px · ψ {psi:.2f} — click samples to add "
                  f"keyframes, then preview the walk between them.")
        return _captioned(model, seeds, psi, "seed {seed}"), status, _keyframe_view(model, keyframes, psi)

    def new_seeds(self, choice: str | None, keyframes: list[int], psi: float):
        seeds = [random.randrange(2**31) for _ in range(SEEDS_SHOWN)]
        return seeds, *self.show(choice, seeds, keyframes, psi)

    def check_copies(self, choice: str | None, seeds: list[int], psi: float, progress=gr.Progress()):
        """The shown samples, each followed by its nearest training painting, and a line that says
        how to read the distances (or why there are none)."""
        model = self._open(choice)
        if model is None:
            return [], "Pick a model with samples first."

        def report(done: int, total: int) -> None:
            progress((done, total), desc="Reading the paintings (once per dataset)", unit="paintings")
        try:
            found = nearest_paintings(model, seeds, psi, recorded_dataset(self._run_dir(choice)), progress=report)
        except (MetricsUnavailable, RunError, DatasetError) as error:
            return [], f"Cannot check for copies: {error}"
        pairs = [item for seed, (sample, painting, distance) in zip(seeds, found.pairs)
                 for item in ((sample, f"seed {seed}"), (painting, f"nearest: {distance:.1f}"))]
        note = (f"Small distances mean near-copies; compare with the typical distance between two different "
                f"paintings: **{found.typical:.1f}**.")
        return pairs, note

    def add_keyframe(self, choice: str | None, seeds: list[int], keyframes: list[int], psi: float,
                     evt: gr.SelectData):
        keyframes = [*keyframes, seeds[evt.index]]
        return keyframes, _keyframe_view(self._open(choice), keyframes, psi)

    def export(self, kind: str, choice: str | None, keyframes: list[int], frames: float, fps: float, loop: bool,
               psi: float, progress=gr.Progress()) -> str:
        """Write the walk through the keyframes as `kind` (gif, mp4 or zip) into WORKSPACE/exports."""
        if len(keyframes) < 2:
            raise gr.Error("Click at least two samples to make keyframes first.")
        model = self._open(choice)
        if model is None:
            raise gr.Error("Pick a model to animate first.")
        walk = Walk(tuple(keyframes), int(frames), float(fps), bool(loop), float(psi))

        def report(done: int, total: int) -> None:
            progress((done, total), desc="Rendering frames" if done < total else f"Writing the {kind.upper()}",
                     unit="frames")
        progress(0, desc="Rendering frames")
        return str(export_walk(model, walk, kind, self.workspace.exports, progress=report))

    def _run_dir(self, choice: str) -> Path:
        return self.session.snapshot().run_dir if choice == LIVE else self.workspace.run_dir(choice)

    def _open(self, choice: str | None) -> Model | None:
        if choice == LIVE:
            snap = self.session.snapshot()    # read first: the generator is then at least this new
            live = self.session.generator()
            if live is None:
                return None
            step = preview_step(snap.previews[-1]) if snap.previews else 0
            return Model(*live, label=f"{snap.run_dir.name}-live",
                         source=f"{snap.run_dir} while training, step {step}")
        if not choice:
            return None
        try:
            return open_run(self.workspace.run_dir(choice))
        except (CheckpointError, FileNotFoundError) as error:
            raise gr.Error(f"Cannot open {choice}: {error}") from None


def _captioned(model: Model, seeds: list[int], psi: float, caption: str) -> list[tuple]:
    images = render_samples(model.generator, model.config.z_dim, seeds, psi)
    return [(image, caption.format(seed=seed, n=n)) for n, (seed, image) in enumerate(zip(seeds, images), 1)]


def _keyframe_view(model: Model | None, keyframes: list[int], psi: float) -> list[tuple]:
    return _captioned(model, keyframes, psi, "#{n} · {seed}") if model and keyframes else []
