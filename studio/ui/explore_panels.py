"""The Explore tab's ways to make new samples from old: project the artist's own painting into the
model, breed children from favourites, and blend the model with another.

Each panel lays itself out inside the tab (`layout`) and is wired afterwards (`wire`), with the
tab's model choice and its selected-sample outputs: a projection or a child becomes the selected
sample, and from there a keyframe, a slider start or a parent like any other.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from ..blend import BlendError
from ..breed import PARENTS
from ..config import ConfigError
from ..explore import (BLEND_SEEDS, blended_model, breed, common_source, fit_painting, project_painting,
                       render_images, save_blend)
from ..latent import Recipe
from ..project import DEFAULT_STEPS
from ..sources import Rejected
from ..workspace import folder_name

if TYPE_CHECKING:
    from .explore_tab import ExploreTab

CHILDREN = 16                 # a 4x4 grid
BLEND_LAYERS = [("all layers", 4)] + [(f"layers from {size} px up", size) for size in (8, 16, 32, 64, 128)]
PROJECT_HINT = ("Upload one of your paintings: the studio finds the sample closest to it, which you can then "
                "move, keyframe or breed. Two of them, each added as a keyframe, make a walk between your paintings.")
BREED_HINT = f"Add {PARENTS[0]} to {PARENTS[1]} favourites as parents (select a sample, then Add as parent)."
BLEND_HINT = ("Blend this model with another trained from the same source (the demo and its fine-tune on your "
              "paintings, say). Rows: this model, the blend, the other, on the same seeds.")


class ProjectPanel:
    def __init__(self, tab: "ExploreTab"):
        self.tab = tab

    def layout(self) -> None:
        with gr.Column(min_width=320):
            gr.Markdown("**Your painting in the model**")
            with gr.Row(equal_height=True):
                self.upload = gr.File(label="A painting", file_count="single", type="filepath",
                                      elem_id="explore-project-upload", height=120)
                with gr.Column(min_width=160):
                    self.steps = gr.Slider(0, 600, value=DEFAULT_STEPS, step=10, label="Search steps",
                                           elem_id="explore-project-steps")
                    self.start = gr.Button("Find it in the model", variant="primary", elem_id="explore-project-start")
            self.result = gr.Gallery(label="Your painting and the model's closest sample", columns=2, format="png",
                                     allow_preview=False, height=200, elem_id="explore-project-result",
                                     elem_classes="contact-sheet")
            self.note = gr.Markdown(PROJECT_HINT, elem_id="explore-project-note")

    def wire(self, model: gr.Dropdown, panel: list) -> None:
        self.start.click(self.project, [model, self.upload, self.steps], [self.result, self.note, *panel],
                         api_name="explore_project")

    def project(self, choice: str | None, upload: str | None, steps: float, progress=gr.Progress()):
        model = self.tab.model_of(choice)
        if model is None:
            raise gr.Error("Pick a model first.")
        if not upload:
            raise gr.Error("Upload a painting first.")
        name = Path(upload).name
        try:
            painting = fit_painting(model, Path(upload).read_bytes())
        except Rejected as rejected:
            raise gr.Error(f"Cannot use {name}: {rejected.reason}.") from None

        def report(step: int, total: int, loss: float) -> None:
            progress((step, total), desc=f"Searching (distance {loss:.3f})", unit="steps")
        progress(0, desc="Trying random starts")
        found = project_painting(model, painting, name, int(steps), progress=report)
        closest = render_images(model, [found.recipe])[0]
        note = (f"**{name}** — distance in pixels {found.distance.pixel:.4f}, perceptual {found.distance.perceptual:.3f} "
                f"(the best random start: {found.start.pixel:.4f}, {found.start.perceptual:.3f}; 0 is the same "
                f"picture). It is now the selected sample.")
        return [(painting, name), (closest, "closest sample")], note, *self.tab.select_recipe(choice, found.recipe)


class BreedPanel:
    def __init__(self, tab: "ExploreTab"):
        self.tab = tab

    def layout(self) -> None:
        with gr.Column(min_width=320):
            gr.Markdown("**Breed favourites**")
            self.parents_view = gr.Gallery(label="Parents", columns=6, format="png", allow_preview=False, height=110,
                                           elem_id="explore-parents", elem_classes="contact-sheet")
            with gr.Row(equal_height=True):
                self.add = gr.Button("Add as parent", elem_id="explore-add-parent", size="sm")
                self.clear = gr.Button("Clear parents", elem_id="explore-clear-parents", size="sm")
            with gr.Row(equal_height=True):
                self.mutation = gr.Slider(0, 1, value=0.2, step=0.05, label="Mutation", elem_id="explore-mutation",
                                          info="0: pure mixes of the parents; 1: strangers.")
                self.seed = gr.Number(0, precision=0, minimum=0, label="Grid seed", elem_id="explore-breed-seed",
                                      min_width=100, info="The same seed breeds the same grid.")
            with gr.Row():
                self.breed = gr.Button("Breed", variant="primary", elem_id="explore-breed")
                self.again = gr.Button("New litter", elem_id="explore-breed-again")
            self.children_view = gr.Gallery(label="Children — click one to select it", columns=4, format="png",
                                            allow_preview=False, elem_id="explore-children",
                                            elem_classes="contact-sheet")
            self.note = gr.Markdown(BREED_HINT, elem_id="explore-breed-note")
        self.parents = gr.State([])      # recipes, as JSON
        self.children = gr.State([])

    def wire(self, model: gr.Dropdown, current: gr.State, panel: list) -> None:
        grid = [self.children, self.children_view, self.note]
        self.add.click(self.add_parent, [model, current, self.parents], [self.parents, self.parents_view, self.note],
                       api_name="explore_add_parent")
        self.clear.click(lambda: ([], [], BREED_HINT), None, [self.parents, self.parents_view, self.note],
                         api_name="explore_clear_parents")
        self.breed.click(self.litter, [model, self.parents, self.mutation, self.seed], grid, api_name="explore_breed")
        self.again.click(lambda: random.randrange(2**31), None, self.seed, api_name="explore_breed_seed").then(
            self.litter, [model, self.parents, self.mutation, self.seed], grid, api_name="explore_breed_again")
        self.children_view.select(self.select_child, [model, self.children], panel, api_name="explore_select_child")
        model.change(lambda: ([], [], [], [], BREED_HINT), None,
                     [self.parents, self.parents_view, self.children, self.children_view, self.note],
                     api_name="explore_breed_forget")     # latents belong to the model they were made with

    def add_parent(self, choice: str | None, current, parents: list):
        if current is None:
            raise gr.Error("Click a sample (or a child) to select it first.")
        if len(parents) >= PARENTS[1]:
            raise gr.Error(f"A litter has at most {PARENTS[1]} parents: clear them to start again.")
        parents = [*parents, current]
        model = self.tab.model_of(choice)
        recipes = [Recipe.from_json(p) for p in parents]
        view = list(zip(render_images(model, recipes), (r.label() for r in recipes))) if model else []
        missing = PARENTS[0] - len(parents)
        note = f"Add {missing} more to breed." if missing > 0 else "Press **Breed** for a grid of children."
        return parents, view, note

    def litter(self, choice: str | None, parents: list, mutation: float, seed: float | None):
        model = self.tab.model_of(choice)
        if model is None:
            raise gr.Error("Pick a model first.")
        try:
            kids = breed(model, [Recipe.from_json(p) for p in parents], CHILDREN, float(mutation), int(seed or 0))
        except ValueError as error:
            raise gr.Error(f"Cannot breed: {error}.") from None
        images = render_images(model, kids)
        note = (f"{len(kids)} children of {len(parents)} parents, mutation {mutation:g}, seed {int(seed or 0)}. "
                "Click one, then keep it as a keyframe or as a parent of the next generation.")
        return [kid.to_json() for kid in kids], [(image, f"child {n}") for n, image in enumerate(images, 1)], note

    def select_child(self, choice: str | None, children: list, evt: gr.SelectData):
        return self.tab.select_recipe(choice, Recipe.from_json(children[evt.index]))


class BlendPanel:
    def __init__(self, tab: "ExploreTab"):
        self.tab = tab

    def layout(self) -> None:
        gr.Markdown("**Blend two models**")
        with gr.Row(equal_height=True):
            self.other = gr.Dropdown(label="Other model", choices=[], elem_id="explore-blend-model")
            self.amount = gr.Slider(0, 1, value=0.5, step=0.05, label="Amount of the other model",
                                    elem_id="explore-blend-amount")
            self.layers = gr.Dropdown(BLEND_LAYERS, value=4, label="In", elem_id="explore-blend-layers",
                                      info="From a size up: coarse shapes from this model, fine detail blended.")
            self.preview = gr.Button("Preview blend", variant="primary", elem_id="explore-blend-preview")
        self.grid = gr.Gallery(label="This model · the blend · the other, on the same seeds", columns=len(BLEND_SEEDS),
                               format="png", allow_preview=False, elem_id="explore-blend-grid",
                               elem_classes="contact-sheet")
        with gr.Row(equal_height=True):
            self.note = gr.Markdown(BLEND_HINT, elem_id="explore-blend-note")
            self.name = gr.Textbox(label="Save as", placeholder="automatic: this-x-other", elem_id="explore-blend-name")
            self.save = gr.Button("Save blend as a model", elem_id="explore-blend-save", scale=0, min_width=160)

    def wire(self, model: gr.Dropdown) -> None:
        settings = [model, self.other, self.amount, self.layers]
        model.change(self.others, model, self.other, api_name="explore_blend_models")
        self.preview.click(self.show, settings, [self.grid, self.note], api_name="explore_blend")
        self.save.click(self.keep, [*settings, self.name], [self.note, model], api_name="explore_blend_save")

    def others(self, choice: str | None) -> gr.Dropdown:
        names = [name for name in self.tab.workspace.run_names() if name != choice]
        return gr.Dropdown(choices=names, value=names[0] if names else None)

    def show(self, choice: str | None, other: str | None, amount: float, layers: int):
        mine, theirs = self._pair(choice, other)
        try:
            blended = blended_model(mine, theirs, float(amount), int(layers))
        except BlendError as error:
            raise gr.Error(f"Cannot blend: {error}.") from None
        seeds = [Recipe(seed=s) for s in BLEND_SEEDS]
        rows = ((mine, mine.label), (blended, "blend"), (theirs, theirs.label))
        grid = [(image, f"{label} · seed {seed}") for m, label in rows
                for seed, image in zip(BLEND_SEEDS, render_images(m, seeds))]
        warning = "" if common_source(mine, theirs) else (
            " **These two were not fine-tuned from a common model**, as far as their files say: their weights "
            "need not line up, and a blend of the two may paint mush.")
        return grid, f"{amount:g} of {theirs.label} in {_layers_label(int(layers))}.{warning}"

    def keep(self, choice: str | None, other: str | None, amount: float, layers: int, name: str | None):
        mine, theirs = self._pair(choice, other)
        workspace = self.tab.workspace
        try:
            run_name = folder_name(name) if name and name.strip() else \
                workspace.unused_run_name(f"{mine.label}-x-{theirs.label}")
            path = save_blend(mine, theirs, float(amount), int(layers), workspace.run_dir(run_name))
        except (BlendError, ConfigError, FileExistsError) as error:
            raise gr.Error(f"Cannot save the blend: {error}.") from None
        # The model list gains the blend; the model shown stays the same.
        return (f"Saved as **{run_name}** ({path.name}, recording both parents): pick it under Model to explore it.",
                self.tab.refresh(choice))

    def _pair(self, choice: str | None, other: str | None):
        mine, theirs = self.tab.model_of(choice), self.tab.model_of(other)
        if mine is None or theirs is None:
            raise gr.Error("Pick this model above and another to blend it with.")
        return mine, theirs


def _layers_label(size: int) -> str:
    return dict((value, label) for label, value in BLEND_LAYERS)[size]
