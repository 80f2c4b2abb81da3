"""Explore tab: browse a model's samples, select one, and check samples for copies of the training
paintings. The panels it composes do the rest with the selected sample: explore_directions.py moves
it along the generator's main directions; explore_walk.py collects keyframes (from the gallery, a
typed seed, the sliders, a projected painting or a bred child), times the walk between them and
exports it; explore_panels.py projects a painting into the model, breeds favourites and blends
models."""
from __future__ import annotations

import random
from pathlib import Path

import gradio as gr

from ..checkpoint import CheckpointError
from ..data import DatasetError
from ..directions import DirectionLabels, read_labels
from ..explore import Model, live_model, nearest_paintings, open_model, render_images
from ..latent import SEED_LIMIT, Recipe
from ..metrics import MetricsUnavailable
from ..run import RunError, recorded_dataset
from ..run_folder import preview_step
from ..session import TrainingSession
from ..workspace import Workspace
from .dropdowns import keeping
from .explore_directions import DirectionsPanel
from .explore_panels import BlendPanel, BreedPanel, ProjectPanel
from .explore_walk import TIMING_HINT, WalkPanel, keyframe_pictures

LIVE = ":live"        # the dropdown's value for the session's run; ':' is never in a folder name
SEEDS_SHOWN = 16
SELECTED_PX = 256     # the selected sample's box; a smaller picture is sent and scaled up by the page
NOTHING_YET = ("**Nothing to explore yet** — train a model in the Train tab, and its samples appear here. "
               "Click a sample to explore it and make keyframes of an animation.")
COPIES_HINT = "Does the model copy your paintings? Check the samples above against the training paintings."


class ExploreTab:
    def __init__(self, workspace: Workspace, session: TrainingSession):
        self.workspace = workspace
        self.session = session
        self._live: tuple[tuple, Model] | None = None    # the live run's newest preview, opened
        self.directions, self.walk = DirectionsPanel(self), WalkPanel(self)
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
            self.walk.layout()
            with gr.Row(equal_height=False):
                self.projecting.layout()
                self.breeding.layout()
            self.blending.layout()
            seeds = gr.State(list(range(SEEDS_SHOWN)))     # the training previews' seeds, to start with
            current = gr.State(None)                       # the selected sample's recipe, as JSON

        directions, walk = self.directions, self.walk
        panel = [current, selected, *directions.sliders, *directions.strips]
        views = [gallery, status, walk.keyframe_view, *panel]
        naming = [directions.pick, *directions.slots]
        forget = dict(fn=lambda: ([], COPIES_HINT), inputs=None, outputs=[nearest, copies_note])
        gr.on([page.load, tab.select] if page else [tab.select], self.refresh, model, model, api_name="explore_tab")
        self.projecting.wire(model, panel)
        self.breeding.wire(model, current, panel)
        self.blending.wire(model)
        # New samples make an earlier check for copies mislead: clear it.
        model.change(self.switch, [model, seeds, psi], [*views, *naming, walk.keyframes, walk.timing, walk.note],
                     api_name="explore_show").then(**forget, api_name="explore_show_forget_copies")
        psi.release(self.show, [model, seeds, current, walk.keyframes, psi], [*views, *naming],
                    api_name="explore_psi").then(**forget, api_name="explore_psi_forget_copies")
        new.click(self.new_seeds, [model, current, walk.keyframes, psi], [seeds, *views, *naming],
                  api_name="explore_new_seeds").then(**forget, api_name="explore_new_seeds_forget_copies")
        gallery.select(self.select, [model, seeds, psi], panel, api_name="explore_select")
        seed.submit(self.type_seed, [model, seed, psi], panel, api_name="explore_seed")
        directions.wire(model, current, selected, randomise, reset)
        check.click(self.check_copies, [model, seeds, psi], [nearest, copies_note], api_name="check_copies")
        walk.wire(model, current, add, loop_button, still)

    # ------------------------------------------------------------------ samples
    def refresh(self, current: str | None):
        """The model list as it is now, the model picked kept while it is in it (keeping); else
        the live run once it has samples, else the newest saved run."""
        snap = self.session.snapshot()
        saved = self.workspace.run_names()
        choices = [(f"Current training run ({snap.run_dir.name})", LIVE)] if snap.run_dir else []
        choices += [(name, name) for name in saved]
        return keeping(choices, current, LIVE if snap.samples is not None else next(iter(saved), None))

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
        return (gallery, status, keyframe_pictures(model, keyframes), *self._panel(model, recipe, labels),
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

