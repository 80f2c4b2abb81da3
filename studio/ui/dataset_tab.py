"""Dataset tab: drop paintings in, see what was kept and why anything was left out."""
from __future__ import annotations

import os
from dataclasses import dataclass

import gradio as gr
import pandas as pd

from .. import demo
from ..config import ConfigError
from ..data import DatasetError, IngestOptions, ingest, parse_colour, read_manifest
from ..workspace import Workspace, folder_name

PREVIEW_LIMIT = 48          # thumbnails in the gallery; a dataset may hold thousands
STORED_SIZES = (64, 128, 256, 512)
DEMO_NOTE = ("The demo that comes with the studio: emoji from Google's Noto Color Emoji font (Apache-2.0; "
             "see NOTICE in its folder). **Train the demo** in the Train tab trains on it in one click.")
EMPTY = ("**No dataset yet** — drop a folder of paintings on the left, give it a name and press "
         "**Add paintings**. 50 to 2,000 images work best.")


@dataclass(frozen=True)
class UploadLimits:
    """How much one drop may hold. Gradio refuses a larger file while it arrives (a zip of the
    whole folder is one file); the count and the total are checked when the drop is added, before
    anything is stored. The defaults take 2,000 paintings as photographs of a few MB each."""
    max_upload_mb: int = 1024
    max_upload_files: int = 5000
    max_upload_total_gb: float = 5.0

    def check(self, files: list[str]) -> None:
        """Raise gr.Error naming the limit that `files` exceed, and how to raise it."""
        if len(files) > self.max_upload_files:
            raise _too_much(f"{len(files):,} files are more than the {self.max_upload_files:,}", "--max-upload-files")
        total_gb = sum(os.path.getsize(file) for file in files) / 2**30
        if total_gb > self.max_upload_total_gb:
            raise _too_much(f"These files hold {total_gb:.3g} GB, more than the {self.max_upload_total_gb:g} GB",
                            "--max-upload-total-gb")


class DatasetTab:
    def __init__(self, workspace: Workspace, uploads: UploadLimits = UploadLimits()):
        self.workspace = workspace
        self.uploads = uploads

    # ------------------------------------------------------------------ layout
    def render(self, page: gr.Blocks) -> None:
        """Lay out the tab inside `page`; it is the first tab, so it also fills in on page load."""
        with gr.Tab("1 · Dataset", id="dataset") as tab:
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=320):
                    folder = gr.File(label="Drop a folder of paintings", file_count="directory",
                                     elem_id="dataset-upload")
                    loose = gr.File(label="…or a zip file, or single images", file_count="multiple",
                                    elem_id="dataset-files")
                    name = gr.Textbox(label="Dataset name", placeholder="e.g. watercolours-2024",
                                      info="Using an existing name adds the paintings to it.",
                                      elem_id="dataset-name")
                    with gr.Accordion("Options", open=False):
                        size = gr.Radio(list(STORED_SIZES), value=256, label="Stored size (px)",
                                        info="Kept on disk; you can train at this size or smaller.",
                                        elem_id="dataset-resolution")
                        fit = gr.Radio([("Crop to a square", "crop"), ("Pad to a square", "pad")], value="crop",
                                       label="Non-square paintings", elem_id="dataset-fit",
                                       info="Crop keeps the centre; pad keeps the whole painting.")
                        background = gr.ColorPicker("#ffffff", label="Background",
                                                    info="Fills transparent areas and padding.",
                                                    elem_id="dataset-background")
                    add = gr.Button("Add paintings", variant="primary", elem_id="dataset-ingest")
                with gr.Column(scale=2, min_width=400):
                    pick = gr.Dropdown(label="Your datasets", choices=[], elem_id="dataset-pick",
                                       info="Pick one to see what it holds.")
                    summary = gr.Markdown(EMPTY, elem_id="dataset-summary")
                    gallery = gr.Gallery(label="Paintings", columns=8, format="png", object_fit="cover",
                                         elem_id="dataset-gallery", elem_classes="contact-sheet")
                    rejected = gr.Dataframe(headers=["File", "Why it was left out"], label="Left out",
                                            interactive=False, visible=False, wrap=True,
                                            elem_id="dataset-rejected")
        shown = [pick, summary, gallery, rejected]
        add.click(self.ingest, [folder, loose, name, size, fit, background], [*shown, folder, loose],
                  api_name="ingest")
        pick.input(self.show, pick, shown, api_name="show_dataset")
        gr.on([page.load, tab.select], self.refresh, pick, shown, api_name="dataset_tab")

    # ------------------------------------------------------------------ events
    def refresh(self, current: str | None):
        """Show the picked dataset (or the newest) with the list as it is on disk now."""
        names = self.workspace.dataset_names()
        return self.show(current if current in names else next(iter(names), None))

    def show(self, name: str | None):
        """The dropdown, summary, gallery and left-out table for one dataset."""
        choices = [(self._label(name), name) for name in self.workspace.dataset_names()]
        if not name:
            return gr.Dropdown(choices=choices, value=None), EMPTY, [], _rejected_table([])
        folder = self.workspace.dataset_dir(name)
        try:
            manifest = read_manifest(folder)
        except DatasetError as error:
            raise gr.Error(str(error)) from None
        description = _describe(name, manifest) + (f"\n\n{DEMO_NOTE}" if demo.is_demo(folder) else "")
        return (gr.Dropdown(choices=choices, value=name), description,
                self._thumbnails(name, manifest),
                _rejected_table([(entry["source"], entry["reason"]) for entry in manifest["rejected"]]))

    def ingest(self, folder_files: list[str] | None, loose_files: list[str] | None, name: str,
               size: int, fit: str, background: str, progress=gr.Progress()):
        """Validate and store the dropped files; the table lists this drop's rejections, and the
        drop zones are emptied for the next batch."""
        # A folder arrives as a flat list of temp files in random order; ingest judges each by
        # its content and drops duplicates by hash, so only the order needs fixing here.
        sources = sorted({*(folder_files or []), *(loose_files or [])})
        if not sources:
            raise gr.Error("Drop a folder, a zip file or some images first.")
        self.uploads.check(sources)
        try:
            name = folder_name(name)
            options = IngestOptions(resolution=int(size), fit=fit, background=parse_colour(background))
            progress(0, desc="Checking paintings")
            report = ingest(sources, self.workspace.dataset_dir(name), options,
                            progress=lambda done, total, _: progress((done, total), desc="Checking paintings",
                                                                     unit="files"))
        except (ConfigError, DatasetError) as error:
            raise gr.Error(str(error)) from None
        pick, description, gallery, _ = self.show(name)
        added = (f"Accepted **{len(report.accepted)}**, rejected **{len(report.rejected)}** "
                 f"of the {len(report.accepted) + len(report.rejected)} files just added.")
        rows = [(rejection.file, rejection.reason) for rejection in report.rejected]
        return pick, f"{description}\n\n{added}", gallery, _rejected_table(rows), None, None

    def _label(self, name: str) -> str:
        return f"{name} · the demo" if demo.is_demo(self.workspace.dataset_dir(name)) else name

    def _thumbnails(self, name: str, manifest: dict) -> list[str]:
        """The newest paintings first, so a fresh drop shows what it added."""
        folder = self.workspace.dataset_dir(name)
        return [str(folder / entry["file"]) for entry in manifest["images"][::-1][:PREVIEW_LIMIT]]


def _describe(name: str, manifest: dict) -> str:
    count = len(manifest["images"])
    paintings = "painting" if count == 1 else "paintings"
    how = "cropped" if manifest["fit"] == "crop" else "padded"
    left_out = len(manifest["rejected"])
    note = f" {left_out} {'file was' if left_out == 1 else 'files were'} left out." if left_out else ""
    return f"### {name}\n**{count} {paintings}**, {how} to {manifest['resolution']} px squares.{note}"


def _rejected_table(rows: list[tuple[str, str]]):
    """(file, reason) rows; hidden when nothing was left out, as an empty table only adds noise."""
    return gr.Dataframe(value=pd.DataFrame(rows, columns=["File", "Why it was left out"]), visible=bool(rows))


def _too_much(amount: str, flag: str) -> gr.Error:
    return gr.Error(f"{amount} the studio takes at once: add them in smaller batches under the same dataset "
                    f"name, or start the studio with a higher {flag}.")
