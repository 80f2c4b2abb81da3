"""Refreshing a dropdown's list without undoing the artist's choice."""
from __future__ import annotations

import gradio as gr


def keeping(choices: list[tuple[str, str]], current: str | None, otherwise: str | None) -> gr.Dropdown:
    """`choices` as a dropdown update that leaves the page's value as it is while `current` is
    still among them, else picks `otherwise`. `current` is the value from when the refresh was
    asked for, and the artist may have picked another since, which sending `current` back would
    undo; gradio changes only the properties an update sets."""
    if current in [value for _, value in choices]:
        return gr.Dropdown(choices=choices)
    return gr.Dropdown(choices=choices, value=otherwise)
