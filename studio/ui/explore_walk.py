"""The Explore tab's walk: the keyframes collected from the selected sample (picked in the gallery,
typed as a seed, moved by the sliders, projected or bred), the timing of each move between them, a
quick preview, and the walk exported as an animation, or the selected sample as a still.

Like the panels of explore_panels.py, it lays itself out inside the tab (`layout`) and is wired
afterwards (`wire`). The buttons that act on the selected sample (Add keyframe, Seamless loop,
Save still) sit under it in the tab's layout and come in with the wiring.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import gradio as gr

from ..explore import (EXPORT_SIZE, Model, export_name, export_still, export_walk, preview_walk, render_images,
                       seamless_loop, still_name)
from ..latent import EASINGS, MODES, Keyframe, Recipe, Walk, even_walk

if TYPE_CHECKING:
    from .explore_tab import ExploreTab

EXPORT_BUTTONS = {"gif": "GIF", "mp4": "MP4", "zip": "frames (zip)", "png": "contact sheet"}   # by format
TIMING_HEADERS = ["#", "keyframe", "frames to next", "hold", "easing"]
TIMING_HINT = ("Frames, holds and easing set every move alike; edit a row to change one move. "
               "A loop's last keyframe moves on back to the first; otherwise it has no move after it, "
               "so its frames to next stay blank.")


class WalkPanel:
    def __init__(self, tab: "ExploreTab"):
        self.tab = tab

    def layout(self) -> None:
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=400):
                self.keyframe_view = gr.Gallery(label="Keyframes in order", columns=6, format="png",
                                                allow_preview=False, fit_columns=False, elem_id="explore-keyframes",
                                                elem_classes="contact-sheet")
                self.timing = gr.Dataframe(headers=TIMING_HEADERS, datatype=["number", "str", "number", "number", "str"],
                                           value=[], interactive=True, static_columns=[0, 1], max_height=240,
                                           label="Timing of each move", elem_id="explore-timing")
                with gr.Row():
                    self.frames = gr.Slider(8, 240, value=60, step=1, label="Frames in all", elem_id="explore-frames")
                    self.fps = gr.Slider(4, 60, value=15, step=1, label="Frames per second", elem_id="explore-fps")
                with gr.Row():
                    self.mode = gr.Radio(list(MODES), value="loop", label="Ends", elem_id="explore-loop")
                    self.easing = gr.Radio(list(EASINGS), value="ease-in-out", label="Easing", elem_id="explore-easing")
                    self.hold = gr.Slider(0, 30, value=0, step=1, label="Hold on each keyframe (frames)",
                                          elem_id="explore-hold")
                self.note = gr.Markdown(TIMING_HINT, elem_id="explore-walk-note")
                with gr.Row():
                    self.clear = gr.Button("Clear keyframes", elem_id="explore-clear", size="sm")
                    self.quick_preview = gr.Button("Quick preview", variant="primary", elem_id="explore-preview")
            with gr.Column(scale=2, min_width=300):
                self.animation = gr.Image(label="Animation (the quick preview has half the frames, at half the size)",
                                          type="filepath", height=256, interactive=False, elem_id="explore-animation")
                with gr.Row():
                    self.exports = {kind: gr.Button(f"Export {label}" if kind in ("gif", "mp4") else label.capitalize(),
                                                    elem_id=f"explore-export-{'sheet' if kind == 'png' else kind}",
                                                    size="sm", min_width=80)
                                    for kind, label in EXPORT_BUTTONS.items()}
                self.download = gr.File(label="Download (with a .json sidecar beside it in exports/)",
                                        interactive=False, elem_id="explore-download")
        self.keyframes = gr.State([])     # recipes, as JSON, in order

    def wire(self, model: gr.Dropdown, current: gr.State, add: gr.Button, loop_button: gr.Button,
             still: gr.Button) -> None:
        keyframed = [self.keyframes, self.keyframe_view, self.timing, self.note]
        spread = [self.keyframes, self.frames, self.mode, self.easing, self.hold, self.fps]
        timed = [self.keyframes, self.timing, self.mode, self.fps]
        add.click(self.add_keyframe, [model, current, *spread], keyframed, api_name="explore_add_keyframe")
        loop_button.click(self.seamless_loop, [model, current, self.frames, self.easing, self.hold, self.fps],
                          [*keyframed, self.mode], api_name="explore_seamless_loop")
        self.clear.click(lambda: ([], [], [], TIMING_HINT), None, keyframed, api_name="explore_clear")
        for control, name in ((self.frames, "frames"), (self.hold, "hold")):     # typed into its box, or dragged
            control.change(self.respread, spread, [self.timing, self.note], api_name=f"explore_{name}")
        for control, name in ((self.mode, "mode"), (self.easing, "easing")):
            control.input(self.respread, spread, [self.timing, self.note], api_name=f"explore_{name}")
        self.timing.input(self.describe, timed, self.note, api_name="explore_timing")
        self.fps.release(self.describe, timed, self.note, api_name="explore_fps")
        self.quick_preview.click(self.preview, [model, *timed], self.animation, api_name="explore_preview")
        still.click(self.still, [model, current], self.download, api_name="explore_export_still")
        for kind, button in self.exports.items():
            button.click(functools.partial(self.export, kind), [model, *timed], self.download,
                         api_name=f"explore_export_{'sheet' if kind == 'png' else kind}")

    def add_keyframe(self, choice: str | None, current, keyframes: list, frames: float, mode: str, easing: str,
                     hold: float, fps: float):
        """The selected sample, as the sliders have it, becomes the next keyframe."""
        if current is None:
            raise gr.Error("Click a sample (or type a seed) to select it first.")
        keyframes = [*keyframes, current]
        return (keyframes, keyframe_pictures(self.tab.model_of(choice), keyframes),
                *self.respread(keyframes, frames, mode, easing, hold, fps))

    def seamless_loop(self, choice: str | None, current, frames: float, easing: str, hold: float, fps: float):
        """The keyframes become a small closed circle in latent space through the selected sample."""
        model = self.tab.model_of(choice)
        if model is None or current is None:
            raise gr.Error("Click a sample (or type a seed) to loop around first.")
        keyframes = [recipe.to_json() for recipe in seamless_loop(model, Recipe.from_json(current))]
        timing, note = self.respread(keyframes, frames, "loop", easing, hold, fps)
        return keyframes, keyframe_pictures(model, keyframes), timing, note, "loop"

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
        return str(preview_walk(model, walk, float(fps), self.tab.workspace.exports / "previews"))

    def export(self, kind: str, choice: str | None, keyframes: list, timing, mode: str, fps: float,
               progress=gr.Progress()) -> str:
        """Write the walk as `kind` (gif, mp4, zip, or png: the keyframes' contact sheet) into
        WORKSPACE/exports, with its sidecar; a walk already written is handed out at once."""
        model, walk = self._model_and_walk(choice, keyframes, timing, mode)
        path = self.tab.workspace.exports / export_name(model, walk, float(fps), EXPORT_SIZE, kind)
        if path.exists():
            return str(path)

        def report(done: int, total: int) -> None:
            progress((done, total), desc="Rendering frames" if done < total else f"Writing the {kind.upper()}",
                     unit="frames")
        progress(0, desc="Rendering")
        export_walk(model, walk, path, float(fps), EXPORT_SIZE, self.tab.labels_of(choice), progress=report)
        return str(path)

    def still(self, choice: str | None, current) -> str:
        """The selected sample as a 256 px PNG that records its recipe, into WORKSPACE/exports."""
        model = self.tab.model_of(choice)
        if model is None or current is None:
            raise gr.Error("Click a sample (or type a seed) to select it first.")
        recipe = Recipe.from_json(current)
        path = self.tab.workspace.exports / still_name(model, recipe)
        return str(export_still(model, recipe, path, labels=self.tab.labels_of(choice)))

    def _model_and_walk(self, choice, keyframes: list, timing, mode: str) -> tuple[Model, Walk]:
        if len(keyframes) < 2:
            raise gr.Error("Add at least two keyframes first (select a sample, then Add keyframe).")
        model = self.tab.model_of(choice)
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


def keyframe_pictures(model: Model | None, keyframes: list) -> list[tuple]:
    """Each keyframe's picture, captioned with its place in the walk and its recipe."""
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
