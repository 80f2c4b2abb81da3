"""The studio page: a header and three tabs over one training session, and how it is served."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import gradio as gr

from .. import demo
from ..config import ConfigError
from ..session import ACTIVE_STATES, TrainingSession
from ..workspace import Workspace
from .dataset_tab import DatasetTab, UploadLimits
from .event_threads import run_events_in_passing_threads
from .explore_tab import ExploreTab
from .paced_frames import middleware as paced_frames
from .train_tab import TrainTab

# Soft's own fonts ship with gradio; naming the fallbacks keeps the page from fetching web fonts.
THEME = gr.themes.Soft(primary_hue="indigo", secondary_hue="rose", neutral_hue="slate",
                       font=[gr.themes.LocalFont("Montserrat"), "ui-sans-serif", "system-ui", "sans-serif"],
                       font_mono=[gr.themes.LocalFont("IBM Plex Mono"), "ui-monospace", "monospace"])
CSS = """
.gradio-container { max-width: 1320px !important; width: 100% !important; margin: 0 auto; }
#studio-header h1 { margin-bottom: 0.1em; background: linear-gradient(90deg, #4f46e5, #db2777);
                    -webkit-background-clip: text; background-clip: text; color: transparent; }
#studio-header p { margin-top: 0; opacity: 0.8; font-size: 1.05em; }
#train-status, #explore-status { padding: 10px 14px; border-radius: 10px;
                                 background: var(--block-background-fill); border: 1px solid var(--border-color-primary); }
/* What the Train tab redraws while a run goes on is laid out and painted on its own: a new line,
   plot or gallery does not make the browser repaint the page around it (README, "Speed"). */
#train-status, #sample-gallery, #train-timelapse, #loss-plot, #kid-plot { contain: content; }
/* Contact sheets: square thumbnails in exactly `columns` columns, as tall as their rows. Gradio's
   100 px minimum per thumbnail would push columns out of a narrow column, and its 450 px minimum
   height leaves a strip of two keyframes floating in empty space. */
.contact-sheet .grid-container { grid-template-columns: repeat(var(--grid-cols), minmax(0, 1fr)) !important;
                                 grid-template-rows: none !important; grid-auto-rows: auto !important; }
.contact-sheet .grid-wrap.fixed-height { min-height: 0 !important; max-height: none !important; }
.contact-sheet .grid-wrap { padding-top: 36px !important; }   /* below the label, not under it */
#dataset-gallery .grid-wrap { max-height: 560px !important; }
/* Eight time-lapse grids share a row: a smaller caption keeps "step 12,345" whole. */
#train-timelapse .caption-label { font-size: var(--text-xs); max-width: calc(100% - 8px); }
/* The selected sample arrives at the model's resolution (a smaller, faster answer to a slider
   move) and is scaled up here to fill its box. */
#explore-selected img { width: 100%; height: 100%; object-fit: contain; }
/* The colour swatch is otherwise white on white. */
#dataset-background button { border: 1px solid var(--border-color-primary); min-width: 72px; min-height: 32px; }
"""
HEADER = """# GAN Art Studio
Teach a small GAN your own paintings, right here on this computer — then wander through what it learned."""


def build_app(workspace: str | Path = ".", session: TrainingSession | None = None,
              uploads: UploadLimits = UploadLimits(), first_tab: str = "dataset") -> gr.Blocks:
    """The page for `workspace` (datasets/, checkpoints/, exports/ inside it). `session` is the
    one training run every browser tab shares; pass your own to control or stop it. The page
    opens on `first_tab`: "dataset", or "explore" (a newcomer's first look, at the demo)."""
    workspace = Workspace(workspace)
    session = session or TrainingSession()
    with gr.Blocks(title="GAN Art Studio", analytics_enabled=False) as page:
        gr.Markdown(HEADER, elem_id="studio-header")
        with gr.Tabs(selected=first_tab):
            DatasetTab(workspace, uploads).render(page)
            TrainTab(workspace, session).render()
            ExploreTab(workspace, session).render(page if first_tab == "explore" else None)
    wake_the_queue_less(page)
    run_events_in_passing_threads(page)
    return page


# How often gradio's queue looks for new events, and for progress to send, while it has none: by
# itself every 1 ms and 10 ms (50 and 100 ms on Windows). The queue runs in the studio's process,
# so each look takes Python's lock from the training thread: every 1 ms costs training about 4%
# of its speed with no page open, every 20 ms nothing measurable (README, "Speed"); an event
# waits at most 20 ms more to start.
QUEUE_IDLE_SECONDS = 0.02
PROGRESS_IDLE_SECONDS = 0.1


def wake_the_queue_less(page: gr.Blocks) -> None:
    """gradio has no setting for this; its Queue reads these attributes at every look."""
    page._queue.sleep_when_free = QUEUE_IDLE_SECONDS
    page._queue.progress_update_sleep_when_free = PROGRESS_IDLE_SECONDS


def launch_options(workspace: str | Path, uploads: UploadLimits = UploadLimits()) -> dict:
    """launch() arguments besides host, port and password: the look, no SSR and no run history
    (the training poll would fill it), the largest upload, never a public share link, no folder
    served, and the fix for gradio's never-ending status timer (paced_frames.py).

    Gradio copies every file a handler returns into its cache and serves only that copy, so the
    page needs no folder served by path (`allowed_paths` would hand out all of it to anyone who
    asks). Gradio copies returned files only from its working folder and the temp folder, though,
    so the workspace must lie in one of them: launch() works in it."""
    if not _gradio_copies_from(Workspace(workspace).root):
        raise ConfigError(f"the page cannot show files from {workspace}: serve it from inside that folder "
                          f"or the temp folder")
    return dict(theme=THEME, css=CSS, allowed_paths=[], max_file_size=f"{uploads.max_upload_mb}mb", share=False,
                ssr_mode=False, run_history=False, footer_links=["gradio", "settings"],
                app_kwargs=dict(middleware=paced_frames()))


def _gradio_copies_from(folder: Path) -> bool:
    """Whether gradio copies a file in `folder` that a handler returns (its _check_allowed)."""
    return any(folder.is_relative_to(Path(base).resolve()) for base in (os.getcwd(), tempfile.gettempdir()))


def launch(workspace: str | Path = ".", host: str = "127.0.0.1", port: int | None = None,
          open_browser: bool = True, auth: tuple[str, str] | None = None,
          uploads: UploadLimits = UploadLimits()) -> int:
    """Run the studio until Ctrl-C, then stop training with a checkpoint saved. Without `port`,
    the first free one from 7860 is used; with `auth`, a (user, password), the page asks for it."""
    workspace = Workspace(workspace)
    workspace.root.mkdir(parents=True, exist_ok=True)
    first_tab = "explore" if demo.add_to(workspace) else "dataset"
    with _working_in(workspace.root):     # so that gradio copies the page's files (see launch_options)
        session = TrainingSession()
        page = build_app(workspace.root, session, uploads, first_tab)
        page.launch(server_name=host, server_port=port, auth=auth, prevent_thread_lock=True, quiet=True,
                    inbrowser=open_browser, **launch_options(workspace.root, uploads))
        print(f"GAN Art Studio is running at {page.local_url}  (workspace: {workspace.root}; Ctrl-C to stop)",
              flush=True)
        try:
            page.block_thread()       # returns on Ctrl-C
        finally:
            if session.snapshot().state in ACTIVE_STATES:
                print("Stopping training; saving a checkpoint…", flush=True)
            session.stop()
            page.close()
    return 0


@contextmanager
def _working_in(folder: Path):
    """contextlib.chdir, which needs Python 3.11."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)
