"""The Explore tab's directions: a slider for each of the generator's main directions, which moves
the selected sample along it, a strip beside each that shows where the move leads, and the names
the artist gives them (or hides them by), kept with the run.

Like the panels of explore_panels.py, it lays itself out inside the tab (`layout`) and is wired
afterwards (`wire`). The selected sample it moves, and the Randomise and Reset all buttons under
that sample, belong to the tab's layout and come in with the wiring.
"""
from __future__ import annotations

import functools
import random
from pathlib import Path
from typing import TYPE_CHECKING

import gradio as gr

from ..directions import DirectionLabels, write_labels
from ..explore import STRIP_OFFSETS, Model, direction_strips, render_images
from ..latent import Recipe

if TYPE_CHECKING:
    from .explore_tab import ExploreTab

DIRECTIONS_SHOWN = 10
SLIDER_SIGMA = 3.0


class DirectionsPanel:
    def __init__(self, tab: "ExploreTab"):
        self.tab = tab

    def layout(self) -> None:
        with gr.Column(scale=5, elem_id="explore-directions"):
            gr.Markdown(f"**Directions** — the generator's main ways to change a sample, strongest first, "
                        f"in standard deviations of z. Each strip shows the sample at "
                        f"{', '.join(f'{a:+g}' for a in STRIP_OFFSETS)} along it.",
                        elem_id="explore-directions-note")
            self.slots, self.sliders, self.strips = [], [], []
            for row in range(DIRECTIONS_SHOWN // 2):
                with gr.Row(equal_height=True):
                    for index in (2 * row, 2 * row + 1):
                        with gr.Column(min_width=300) as slot, gr.Row(equal_height=True):
                            self.sliders.append(gr.Slider(-SLIDER_SIGMA, SLIDER_SIGMA, value=0.0, step=0.1,
                                                          label=f"direction {index}", scale=3, min_width=150,
                                                          elem_id=f"explore-direction-{index}"))
                            self.strips.append(gr.Image(show_label=False, type="pil", format="png", height=72,
                                                        interactive=False, buttons=[], scale=2, min_width=120,
                                                        elem_id=f"explore-strip-{index}"))
                        self.slots.append(slot)
            with gr.Accordion("Name or hide directions", open=False, elem_id="explore-naming"):
                with gr.Row(equal_height=True):
                    self.pick = gr.Dropdown(choices=_direction_choices(DirectionLabels()), value=0,
                                            label="Direction", elem_id="explore-direction-pick", scale=1)
                    self.name = gr.Textbox(label="Name", placeholder="e.g. warmer", elem_id="explore-direction-name",
                                           scale=2)
                    self.save_name = gr.Button("Save name", elem_id="explore-rename", size="sm", scale=0)
                    self.hide_picked = gr.Button("Hide", elem_id="explore-hide", size="sm", scale=0)
                    self.show_all = gr.Button("Show all", elem_id="explore-show-all", size="sm", scale=0)

    def wire(self, model: gr.Dropdown, current: gr.State, selected: gr.Image, randomise: gr.Button,
             reset: gr.Button) -> None:
        moved = [current, selected, *self.sliders]
        for index, slider in enumerate(self.sliders):
            # While a slider is dragged, only the newest position is rendered; no spinner over the picture.
            slider.input(self.move, [model, current, *self.sliders], [current, selected],
                         api_name=f"explore_move_{index}", trigger_mode="always_last", show_progress="hidden",
                         queue=False)
        randomise.click(self.randomise, [model, current], moved, api_name="explore_randomise")
        reset.click(self.reset, [model, current], moved, api_name="explore_reset")
        self.save_name.click(self.rename, [model, self.pick, self.name], [self.pick, *self.sliders],
                             api_name="explore_rename")
        self.hide_picked.click(functools.partial(self.hide, True), [model, self.pick, current],
                               [self.pick, *self.slots, *moved], api_name="explore_hide")
        self.show_all.click(functools.partial(self.hide, False), [model, self.pick, current],
                            [self.pick, *self.slots, *moved], api_name="explore_show_all")
        self.pick.change(self.name_of, [model, self.pick], self.name, api_name="explore_name_of")

    def at(self, model: Model, recipe: Recipe, labels: DirectionLabels) -> list:
        """Each slider at `recipe`'s offset along its direction, and named, then each direction's
        preview strip through `recipe`."""
        offsets = dict(recipe.offsets)
        shown = list(range(_slider_count(model)))
        return [*(gr.Slider(value=offsets.get(i, 0.0), label=labels.name(i)) for i in range(DIRECTIONS_SHOWN)),
                *direction_strips(model, recipe, shown), *([None] * (DIRECTIONS_SHOWN - len(shown)))]

    def at_rest(self) -> list:
        """Every slider at 0 and no strips: no sample is selected."""
        return [*(gr.Slider(value=0.0) for _ in range(DIRECTIONS_SHOWN)), *([None] * DIRECTIONS_SHOWN)]

    def naming(self, model: Model | None, labels: DirectionLabels) -> list:
        """The naming dropdown's choices and each slider's slot, shown or hidden, for `model`'s
        directions (every slider's without a model)."""
        count = _slider_count(model)
        return [gr.Dropdown(choices=_direction_choices(labels, count)), *_slots(labels, count)]

    def move(self, choice: str | None, current: dict | int | None, *amounts: float):
        """The selected sample with every slider where it is now (the fast path of a slider move).
        Sliders past the model's directions (hidden for a small z) do not count."""
        model = self.tab.model_of(choice)
        if model is None or current is None:
            raise gr.Error("Pick a model and click a sample first.")
        recipe = Recipe.from_json(current).moved(dict(enumerate(amounts[:model.direction_count])))
        return recipe.to_json(), render_images(model, [recipe])[0]

    def randomise(self, choice: str | None, current):
        """Every shown direction at a random place, as likely as a sample's own position along it."""
        hidden = self.tab.labels_of(choice).hidden
        amounts = [0.0 if i in hidden else round(max(-SLIDER_SIGMA, min(SLIDER_SIGMA, random.gauss(0, 1))), 1)
                   for i in range(self._slider_count(choice))]
        return self._moved_to(choice, current, amounts)

    def reset(self, choice: str | None, current):
        return self._moved_to(choice, current, [])

    def _moved_to(self, choice, current, amounts: list[float]):
        """The sample moved to `amounts` (one per direction, from 0), and every slider set to match."""
        recipe, image = self.move(choice, current, *amounts)
        return recipe, image, *amounts, *[0.0] * (DIRECTIONS_SHOWN - len(amounts))

    def _slider_count(self, choice: str | None) -> int:
        return _slider_count(self.tab.model_of(choice))

    def rename(self, choice: str | None, index: int, name: str):
        labels = self.tab.labels_of(choice).renamed(int(index), name or "")
        write_labels(self._run_dir_or_refuse(choice), labels)
        return gr.Dropdown(choices=_direction_choices(labels, self._slider_count(choice)), value=int(index)), \
            *(gr.Slider(label=labels.name(i)) for i in range(DIRECTIONS_SHOWN))

    def hide(self, hiding: bool, choice: str | None, index: int, current):
        """Hide the picked direction (its slider back at 0), or show them all again."""
        labels = self.tab.labels_of(choice)
        labels = labels.hiding(int(index)) if hiding else DirectionLabels(labels.names)
        write_labels(self._run_dir_or_refuse(choice), labels)
        count = self._slider_count(choice)
        pick = gr.Dropdown(choices=_direction_choices(labels, count), value=int(index))
        slots = _slots(labels, count)
        if current is None:
            return pick, *slots, None, None, *(gr.Slider() for _ in range(DIRECTIONS_SHOWN))
        offsets = dict(Recipe.from_json(current).offsets)
        amounts = [0.0 if i in labels.hidden else offsets.get(i, 0.0) for i in range(count)]
        return pick, *slots, *self._moved_to(choice, current, amounts)

    def name_of(self, choice: str | None, index: int | None) -> str:
        return self.tab.labels_of(choice).names.get(int(index), "") if index is not None else ""

    def _run_dir_or_refuse(self, choice: str | None) -> Path:
        run_dir = self.tab.run_dir(choice) if choice else None
        if run_dir is None:
            raise gr.Error("Pick a model first: names are kept with its run.")
        return run_dir


def _slider_count(model: Model | None) -> int:
    """How many sliders have a direction to move along: a generator with a small z has fewer."""
    return min(DIRECTIONS_SHOWN, model.direction_count) if model else DIRECTIONS_SHOWN


def _slots(labels: DirectionLabels, count: int) -> list:
    return [gr.Column(visible=i < count and i not in labels.hidden) for i in range(DIRECTIONS_SHOWN)]


def _direction_choices(labels: DirectionLabels, count: int = DIRECTIONS_SHOWN) -> list[tuple[str, int]]:
    return [(labels.name(i) + (" (hidden)" if i in labels.hidden else ""), i) for i in range(count)]
