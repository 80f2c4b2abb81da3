"""Explore tab: browse a model's samples, select one, check samples for copies of the training
paintings, collect keyframes (from the gallery, a typed seed, the sliders, a projected painting or
a bred child), time the walk between them and export it. The directions the selected sample moves
along are laid out by explore_directions.py; projection, breeding and blending by
explore_panels.py."""
from __future__ import annotations

import functools
import random
from pathlib import Path

import gradio as gr

from ..checkpoint import CheckpointError
from ..data import DatasetError
from ..directions import DirectionLabels, read_labels
from ..explore import (EXPORT_SIZE, Model, export_name, export_still, export_walk, live_model, nearest_paintings,
                       open_model, preview_walk, render_images, seamless_loop, still_name)
from ..latent import EASINGS, MODES, SEED_LIMIT, Keyframe, Recipe, Walk, even_walk
from ..metrics import MetricsUnavailable
from ..run import RunError, preview_step, recorded_dataset
from ..session import TrainingSession
from ..workspace import Workspace
from .explore_directions import DirectionsPanel
from .explore_panels import BlendPanel, BreedPanel, ProjectPanel

LIVE = ":live"        # the dropdown's value for the session's run; ':' is never in a folder name
SEEDS_SHOWN = 16
SELECTED_PX = 256     # the selected sample's box; a smaller picture is sent and scaled up by the page
EXPORT_BUTTONS = {"gif": "GIF", "mp4": "MP4", "zip": "frames (zip)", "png": "contact sheet"}   # by format
TIMING_HEADERS = ["#", "keyframe", "frames to next", "hold", "easing"]
NOTHING_YET = ("**Nothing to explore yet** — train a model in the Train tab, and its samples appear here. "
               "Click a sample to explore it and make keyframes of an animation.")
COPIES_HINT = "Does the model copy your paintings? Check the samples above against the training paintings."
TIMING_HINT = ("Frames, holds and easing set every move alike; edit a row to change one move. "
               "A loop's last keyframe moves on back to the first; otherwise it has no move after it, "
               "so its frames to next stay blank.")


class ExploreTab:
    def __init__(self, workspace: Workspace, session: TrainingSession):
        self.workspace = workspace
        self.session = session
        self._live: tuple[tuple, Model] | None = None    # the live run's newest preview, opened
        self.directions = DirectionsPanel(self)
        self.projecting, self.breeding, self.blending = ProjectPanel(self), BreedPanel(self), BlendPanel(self)

    # ------------------------------------------------------------------ layout
    def render(self, page: gr.Blocks | None = None) -> None:
        """Lay out the tab; with `page`, it is the tab the page opens on, and fills in on load."""
        with gr.Tab("3 · Explore", id="explore") as tab:
            with gr.Row():
                model = gr.Dropdown(label="Model", choices=[], elem_id="explore-model",
                                    info="A finished run, or the one training now (its newest samples).")
                psi = gr.Slider(0.3, 1.0, value=1.0, step=0.05, label="Truncation ψ", elem_id="explore-psi",
                                info="Lower: calmer, more typical images. 1: full variety.")
            with gr.Row(equal_height=True):
                status = gr.Markdown(NOTHING_YET, elem_id="explore-status")
                seed = gr.Number(label="Seed", precision=0, minimum=0, elem_id="explore-seed-input", scale=0,
                                 min_width=140, info="Type one and press Enter")
                new = gr.Button("New seeds", elem_id="explore-new-seeds", scale=0, min_width=140)
            gallery = gr.Gallery(label="Samples — click one to explore it", columns=8, format="png",
                                 allow_preview=False, elem_id="explore-gallery", elem_classes="contact-sheet")
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=280):
                    selected = gr.Image(label="Selected sample", type="pil", format="png", height=SELECTED_PX,
                                        interactive=False, buttons=["download"], elem_id="explore-selected")
                    with gr.Row():
                        add = gr.Button("Add keyframe", variant="primary", elem_id="explore-add-keyframe", size="sm")
                        loop_button = gr.Button("Seamless loop", elem_id="explore-seamless-loop", size="sm")
                    with gr.Row():
                        randomise = gr.Button("Randomise", elem_id="explore-randomise", size="sm")
                        reset = gr.Button("Reset all", elem_id="explore-reset", size="sm")
                        still = gr.Button("Save still", elem_id="explore-export-still", size="sm")
                self.directions.layout()
            with gr.Row(equal_height=True):
                copies_note = gr.Markdown(COPIES_HINT, elem_id="explore-copies-note")
                check = gr.Button("Check for copies", elem_id="explore-check-copies", scale=0, min_width=140)
            nearest = gr.Gallery(label="Each sample beside its nearest training painting", columns=8, format="png",
                                 allow_preview=False, elem_id="explore-nearest", elem_classes="contact-sheet")
            with gr.Row(equal_height=False):
                with gr.Column(scale=3, min_width=400):
                    keyframe_view = gr.Gallery(label="Keyframes in order", columns=6, format="png",
                                               allow_preview=False, fit_columns=False, elem_id="explore-keyframes",
                                               elem_classes="contact-sheet")
                    timing = gr.Dataframe(headers=TIMING_HEADERS, datatype=["number", "str", "number", "number", "str"],
                                          value=[], interactive=True, static_columns=[0, 1], max_height=240,
                                          label="Timing of each move", elem_id="explore-timing")
                    with gr.Row():
                        frames = gr.Slider(8, 240, value=60, step=1, label="Frames in all", elem_id="explore-frames")
                        fps = gr.Slider(4, 60, value=15, step=1, label="Frames per second", elem_id="explore-fps")
                    with gr.Row():
                        mode = gr.Radio(list(MODES), value="loop", label="Ends", elem_id="explore-loop")
                        easing = gr.Radio(list(EASINGS), value="ease-in-out", label="Easing", elem_id="explore-easing")
                        hold = gr.Slider(0, 30, value=0, step=1, label="Hold on each keyframe (frames)",
                                         elem_id="explore-hold")
                    walk_note = gr.Markdown(TIMING_HINT, elem_id="explore-walk-note")
                    with gr.Row():
                        clear = gr.Button("Clear keyframes", elem_id="explore-clear", size="sm")
                        preview = gr.Button("Quick preview", variant="primary", elem_id="explore-preview")
                with gr.Column(scale=2, min_width=300):
                    animation = gr.Image(label="Animation (the quick preview has half the frames, at half the size)",
                                         type="filepath", height=256, interactive=False, elem_id="explore-animation")
                    with gr.Row():
                        buttons = {kind: gr.Button(f"Export {label}" if kind in ("gif", "mp4") else label.capitalize(),
                                                   elem_id=f"explore-export-{'sheet' if kind == 'png' else kind}",
                                                   size="sm", min_width=80)
                                   for kind, label in EXPORT_BUTTONS.items()}
                    download = gr.File(label="Download (with a .json sidecar beside it in exports/)",
                                       interactive=False, elem_id="explore-download")
            with gr.Row(equal_height=False):
                self.projecting.layout()
                self.breeding.layout()
            self.blending.layout()
            seeds = gr.State(list(range(SEEDS_SHOWN)))     # the training previews' seeds, to start with
            current = gr.State(None)                       # the selected sample's recipe, as JSON
            keyframes = gr.State([])                       # recipes, as JSON, in order

        directions = self.directions
        panel = [current, selected, *directions.sliders, *directions.strips]
        views = [gallery, status, keyframe_view, *panel]
        naming = [directions.pick, *directions.slots]
        spread = [keyframes, frames, mode, easing, hold, fps]
        walk = [model, keyframes, timing, mode, fps]
        forget = dict(fn=lambda: ([], COPIES_HINT), inputs=None, outputs=[nearest, copies_note])
        gr.on([page.load, tab.select] if page else [tab.select], self.refresh, model, model, api_name="explore_tab")
        self.projecting.wire(model, panel)
        self.breeding.wire(model, current, panel)
        self.blending.wire(model)
        # New samples make an earlier check for copies mislead: clear it.
        model.change(self.switch, [model, seeds, psi], [*views, *naming, keyframes, timing, walk_note],
                     api_name="explore_show").then(**forget, api_name="explore_show_forget_copies")
        psi.release(self.show, [model, seeds, current, keyframes, psi], [*views, *naming],
                    api_name="explore_psi").then(**forget, api_name="explore_psi_forget_copies")
        new.click(self.new_seeds, [model, current, keyframes, psi], [seeds, *views, *naming],
                  api_name="explore_new_seeds").then(**forget, api_name="explore_new_seeds_forget_copies")
        gallery.select(self.select, [model, seeds, psi], panel, api_name="explore_select")
        seed.submit(self.type_seed, [model, seed, psi], panel, api_name="explore_seed")
        directions.wire(model, current, selected, randomise, reset)
        check.click(self.check_copies, [model, seeds, psi], [nearest, copies_note], api_name="check_copies")
        add.click(self.add_keyframe, [model, current, *spread], [keyframes, keyframe_view, timing, walk_note],
                  api_name="explore_add_keyframe")
        loop_button.click(self.seamless_loop, [model, current, frames, easing, hold, fps],
                          [keyframes, keyframe_view, timing, walk_note, mode], api_name="explore_seamless_loop")
        clear.click(lambda: ([], [], [], TIMING_HINT), None, [keyframes, keyframe_view, timing, walk_note],
                    api_name="explore_clear")
        for control, name in ((frames, "frames"), (hold, "hold")):     # typed into its box, or dragged
            control.change(self.respread, spread, [timing, walk_note], api_name=f"explore_{name}")
        for control, name in ((mode, "mode"), (easing, "easing")):
            control.input(self.respread, spread, [timing, walk_note], api_name=f"explore_{name}")
        timing.input(self.describe, [keyframes, timing, mode, fps], walk_note, api_name="explore_timing")
        fps.release(self.describe, [keyframes, timing, mode, fps], walk_note, api_name="explore_fps")
        preview.click(self.preview, walk, animation, api_name="explore_preview")
        still.click(self.still, [model, current], download, api_name="explore_export_still")
        for kind, button in buttons.items():
            button.click(functools.partial(self.export, kind), walk, download,
                         api_name=f"explore_export_{'sheet' if kind == 'png' else kind}")

    # ------------------------------------------------------------------ samples
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

    def show(self, choice: str | None, seeds: list[int], current: dict | int | None, keyframes: list, psi: float):
        """Samples, status line, keyframes and the selected sample (the one picked before, at this
        ψ, or else the first sample) with its directions, all rendered by the chosen model. Last:
        the naming list and each direction's slot, shown or hidden."""
        model = self.model_of(choice)
        labels = self.labels_of(choice)
        if model is None:
            message = NOTHING_YET if choice != LIVE else \
                "The current run has no samples yet: they appear after its first preview, in a few seconds."
            return [], message, [], *self._panel(None, None, labels), *self.directions.naming(None, labels)
        recipe = Recipe.from_json(current) if current is not None else Recipe(seed=seeds[0])
        recipe = recipe.truncated(psi)
        samples = [Recipe(seed=s, psi=psi) for s in seeds]
        status = (f"**{model.label}** · {model.config.resolution} px · ψ {psi:.2f} — click a sample to explore "
                  f"it, move it along the directions, and add keyframes for a walk.")
        gallery = list(zip(render_images(model, samples), (f"seed {s}" for s in seeds)))
        return (gallery, status, _keyframe_view(model, keyframes), *self._panel(model, recipe, labels),
                *self.directions.naming(model, labels))

    def switch(self, choice: str | None, seeds: list[int], psi: float):
        """Another model: its samples, the first one selected, and no keyframes (a walk, and a
        stored z, belong to the model they were made with)."""
        return *self.show(choice, seeds, None, [], psi), [], [], TIMING_HINT

    def new_seeds(self, choice: str | None, current, keyframes: list, psi: float):
        seeds = [random.randrange(2**31) for _ in range(SEEDS_SHOWN)]
        return seeds, *self.show(choice, seeds, None, keyframes, psi)

    def select(self, choice: str | None, seeds: list[int], psi: float, evt: gr.SelectData):
        """A gallery sample becomes the selected one, its sliders at zero."""
        return self._panel(self.model_of(choice), Recipe(seed=seeds[evt.index], psi=psi), self.labels_of(choice))

    def select_recipe(self, choice: str | None, recipe: Recipe) -> list:
        """`recipe` becomes the selected sample (a projection, a child), its sliders where it has
        them: the outputs of `panel` in render."""
        return self._panel(self.model_of(choice), recipe, self.labels_of(choice))

    def type_seed(self, choice: str | None, seed: float | None, psi: float):
        try:
            recipe = Recipe(seed=int(seed), psi=psi)
        except (TypeError, ValueError, OverflowError):      # none typed, or not a whole number in range
            raise gr.Error(f"Type a seed: a whole number from 0 to {SEED_LIMIT - 1}.") from None
        return self._panel(self.model_of(choice), recipe, self.labels_of(choice))

    def _panel(self, model: Model | None, recipe: Recipe | None, labels: DirectionLabels) -> list:
        """The selected sample (its recipe and picture), then each slider at its offset and named, and
        each direction's preview strip."""
        if model is None or recipe is None:
            return [None, None, *self.directions.at_rest()]
        return [recipe.to_json(), render_images(model, [recipe])[0], *self.directions.at(model, recipe, labels)]

    # ------------------------------------------------------------------ copies
    def check_copies(self, choice: str | None, seeds: list[int], psi: float, progress=gr.Progress()):
        """The shown samples, each followed by its nearest training painting, and a line that says
        how to read the distances (or why there are none)."""
        model = self.model_of(choice)
        if model is None:
            return [], "Pick a model with samples first."

        def report(done: int, total: int) -> None:
            progress((done, total), desc="Reading the paintings (once per dataset)", unit="paintings")
        try:
            found = nearest_paintings(model, [Recipe(seed=s, psi=psi) for s in seeds],
                                      recorded_dataset(self.run_dir(choice)), progress=report)
        except (MetricsUnavailable, RunError, DatasetError) as error:
            return [], f"Cannot check for copies: {error}"
        pairs = [item for seed, (sample, painting, distance) in zip(seeds, found.pairs)
                 for item in ((sample, f"seed {seed}"), (painting, f"nearest: {distance:.1f}"))]
        note = (f"Small distances mean near-copies; compare with the typical distance between two different "
                f"paintings: **{found.typical:.1f}**.")
        return pairs, note

    # ------------------------------------------------------------------ keyframes and walks
    def add_keyframe(self, choice: str | None, current, keyframes: list, frames: float, mode: str, easing: str,
                     hold: float, fps: float):
        """The selected sample, as the sliders have it, becomes the next keyframe."""
        if current is None:
            raise gr.Error("Click a sample (or type a seed) to select it first.")
        keyframes = [*keyframes, current]
        return (keyframes, _keyframe_view(self.model_of(choice), keyframes),
                *self.respread(keyframes, frames, mode, easing, hold, fps))

    def seamless_loop(self, choice: str | None, current, frames: float, easing: str, hold: float, fps: float):
        """The keyframes become a small closed circle in latent space through the selected sample."""
        model = self.model_of(choice)
        if model is None or current is None:
            raise gr.Error("Click a sample (or type a seed) to loop around first.")
        keyframes = [recipe.to_json() for recipe in seamless_loop(model, Recipe.from_json(current))]
        timing, note = self.respread(keyframes, frames, "loop", easing, hold, fps)
        return keyframes, _keyframe_view(model, keyframes), timing, note, "loop"

    def respread(self, keyframes: list, frames: float, mode: str, easing: str, hold: float, fps: float):
        """The timing table with `frames` in all shared evenly between the moves."""
        if len(keyframes) < 2:
            return _timing_rows([Keyframe(Recipe.from_json(k)) for k in keyframes], mode), \
                "Add one more keyframe to make a walk." if keyframes else TIMING_HINT
        try:
            walk = even_walk([Recipe.from_json(k) for k in keyframes], int(frames), mode, easing, int(hold))
        except ValueError as error:
            raise gr.Error(f"{error}: give the walk more frames.") from None
        return _timing_rows(list(walk.keyframes), mode), _describe(walk, fps)

    def describe(self, keyframes: list, timing, mode: str, fps: float) -> str:
        return _describe(self._walk(keyframes, timing, mode), fps)

    def preview(self, choice: str | None, keyframes: list, timing, mode: str, fps: float) -> str:
        model, walk = self._model_and_walk(choice, keyframes, timing, mode)
        return str(preview_walk(model, walk, float(fps), self.workspace.exports / "previews"))

    def export(self, kind: str, choice: str | None, keyframes: list, timing, mode: str, fps: float,
               progress=gr.Progress()) -> str:
        """Write the walk as `kind` (gif, mp4, zip, or png: the keyframes' contact sheet) into
        WORKSPACE/exports, with its sidecar; a walk already written is handed out at once."""
        model, walk = self._model_and_walk(choice, keyframes, timing, mode)
        path = self.workspace.exports / export_name(model, walk, float(fps), EXPORT_SIZE, kind)
        if path.exists():
            return str(path)

        def report(done: int, total: int) -> None:
            progress((done, total), desc="Rendering frames" if done < total else f"Writing the {kind.upper()}",
                     unit="frames")
        progress(0, desc="Rendering")
        export_walk(model, walk, path, float(fps), EXPORT_SIZE, self.labels_of(choice), progress=report)
        return str(path)

    def still(self, choice: str | None, current) -> str:
        """The selected sample as a 256 px PNG that records its recipe, into WORKSPACE/exports."""
        model = self.model_of(choice)
        if model is None or current is None:
            raise gr.Error("Click a sample (or type a seed) to select it first.")
        recipe = Recipe.from_json(current)
        path = self.workspace.exports / still_name(model, recipe)
        return str(export_still(model, recipe, path, labels=self.labels_of(choice)))

    def _model_and_walk(self, choice, keyframes: list, timing, mode: str) -> tuple[Model, Walk]:
        if len(keyframes) < 2:
            raise gr.Error("Add at least two keyframes first (select a sample, then Add keyframe).")
        model = self.model_of(choice)
        if model is None:
            raise gr.Error("Pick a model to animate first.")
        return model, self._walk(keyframes, timing, mode)

    def _walk(self, keyframes: list, timing, mode: str) -> Walk:
        """The keyframes with the timing table's frames, holds and easings."""
        rows = timing.values.tolist() if hasattr(timing, "values") else list(timing or [])
        if len(rows) != len(keyframes):
            raise gr.Error("The timing table does not match the keyframes; change the frames to share them again.")
        last = len(rows) - 1
        try:
            return Walk(tuple(Keyframe(Recipe.from_json(key), int(row[2]) if _moves_on(n, last, mode) else 1,
                                       int(row[3]), str(row[4]).strip())
                              for n, (key, row) in enumerate(zip(keyframes, rows))), mode)
        except (ValueError, TypeError) as error:
            raise gr.Error(f"Cannot use that timing: {error}") from None

    # ------------------------------------------------------------------ models
    def run_dir(self, choice: str) -> Path | None:
        return self.session.snapshot().run_dir if choice == LIVE else self.workspace.run_dir(choice)

    def labels_of(self, choice: str | None) -> DirectionLabels:
        run_dir = self.run_dir(choice) if choice else None
        return read_labels(run_dir) if run_dir else DirectionLabels()

    def model_of(self, choice: str | None) -> Model | None:
        if choice == LIVE:
            snap = self.session.snapshot()    # read first: the generator is then at least this new
            newest = (snap.run_dir, snap.previews[-1] if snap.previews else None)
            if self._live is not None and self._live[0] == newest:
                return self._live[1]          # the same preview's weights: keep its directions too
            live = self.session.generator()
            if live is None:
                return None
            step = preview_step(snap.previews[-1]) if snap.previews else 0
            model = live_model(*live, label=f"{snap.run_dir.name}-live",
                               source=f"{snap.run_dir} while training, step {step}")
            self._live = (newest, model)
            return model
        if not choice:
            return None
        try:
            return open_model(self.workspace.run_dir(choice))
        except (CheckpointError, FileNotFoundError) as error:
            raise gr.Error(f"Cannot open {choice}: {error}") from None


def _keyframe_view(model: Model | None, keyframes: list) -> list[tuple]:
    if model is None or not keyframes:
        return []
    recipes = [Recipe.from_json(k) for k in keyframes]
    return [(image, f"#{n} · {recipe.label()}") for n, (image, recipe) in enumerate(zip(render_images(model, recipes),
                                                                                      recipes), 1)]


def _timing_rows(keyframes: list[Keyframe], mode: str) -> list[list]:
    """One row per keyframe; "frames to next" blank where there is no next (the last keyframe of a
    walk that does not loop), and ignored if typed into."""
    last = len(keyframes) - 1
    return [[n + 1, key.recipe.label(), key.frames if _moves_on(n, last, mode) else None, key.hold, key.easing]
            for n, key in enumerate(keyframes)]


def _moves_on(index: int, last: int, mode: str) -> bool:
    """Whether keyframe `index` (of 0..last) moves on to another."""
    return index < last or mode == "loop"


def _describe(walk: Walk, fps: float) -> str:
    frames = len(walk.steps())
    return (f"**{len(walk.keyframes)} keyframes · {frames} frames, {frames / fps:.1f} s at {fps:g} fps · "
            f"{walk.mode}.** {TIMING_HINT}")
