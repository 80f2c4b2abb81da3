"""Each of the page's events runs in a thread started for it, which ends when the event does.

gradio runs an event's function on one of anyio's worker threads, which live on between events.
PyTorch's OpenMP gives each thread that runs a parallel operation a team of worker threads of its
own, kept for as long as that thread lives. Once the teams hold more threads than the machine has
cores, OpenMP stops letting its idle workers spin and puts them to sleep between operations, the
training thread's workers too: on 2 cores one render in a server thread slowed training from 40
to 29 images/s for the rest of the process, page closed or not. A thread that ends takes its team
with it, so a render costs training only while it runs (README, "Speed")."""
from __future__ import annotations

import contextvars
import functools
import inspect
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import gradio as gr


def run_events_in_passing_threads(page: gr.Blocks) -> None:
    """gradio has no setting for where an event runs; each of its BlockFunctions holds the
    function it calls. Async and generator functions are left as they are (the studio has none)."""
    for event in page.fns.values():
        if event.fn is not None and not any(check(event.fn) for check in (
                inspect.iscoroutinefunction, inspect.isgeneratorfunction, inspect.isasyncgenfunction)):
            event.fn = in_a_passing_thread(event.fn)


def in_a_passing_thread(function: Callable) -> Callable:
    """`function`, called in a new thread and waited for; what it returns or raises comes back."""
    @functools.wraps(function)     # gradio reads the signature: gr.Progress, gr.SelectData, ...
    def call(*args, **kwargs):
        context = contextvars.copy_context()     # gradio's state for this event goes along
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-event") as thread:
            return thread.submit(context.run, function, *args, **kwargs).result()
    return call
