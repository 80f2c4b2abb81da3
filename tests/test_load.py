"""Two people in the Explore tab at once while a run trains in the same studio: each keeps their
own selection and keyframes, and training goes on. benchmarks/explore_load.py does the same
with four browsers and a real model, and measures it.
"""
from __future__ import annotations

import json
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import STUDIO_TINY, wait_for
from studio.config import TrainConfig
from studio.run import Budget
from studio.session import TRAINING
from studio.ui.explore_directions import DIRECTIONS_SHOWN

WALK = dict(frames=8, mode="loop", easing="linear", hold=0, fps=8)


def explore(url: str, seeds: tuple[int, int], together: threading.Barrier) -> tuple[list[str], str]:
    """One session: select the first seed and add it, select the second, move its first slider
    and add that; then export the walk as a GIF. The two sessions wait for each other between
    steps, so each step of one falls between the other's. Returns the keyframe captions and the
    name of the exported GIF."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    client.predict(None, api_name="/explore_tab")
    first, second = seeds
    together.wait()
    client.predict("tiny", first, 1.0, api_name="/explore_seed")
    together.wait()
    client.predict("tiny", *WALK.values(), api_name="/explore_add_keyframe")
    together.wait()
    client.predict("tiny", second, 1.0, api_name="/explore_seed")
    together.wait()
    client.predict("tiny", 2.0, *[0.0] * (DIRECTIONS_SHOWN - 1), api_name="/explore_move_0")
    together.wait()
    view, timing, _ = client.predict("tiny", *WALK.values(), api_name="/explore_add_keyframe")
    together.wait()
    gif = client.predict("tiny", timing, WALK["mode"], WALK["fps"], api_name="/explore_export_gif")
    return [item["caption"] for item in view], Path(gif).name


def test_two_sessions_keep_their_own_selections_and_keyframes_while_a_run_trains(studio_app, tiny_run_dir,
                                                                                  dataset32):
    shutil.copytree(tiny_run_dir, studio_app.workspace / "checkpoints" / "tiny")
    session = studio_app.session
    session.start(dataset32, studio_app.workspace / "checkpoints" / "background", TrainConfig(**STUDIO_TINY),
                  Budget(steps=10**6))
    try:
        before = wait_for(lambda: session.snapshot().latest).step
        together = threading.Barrier(2)
        with ThreadPoolExecutor(2) as pool:
            a, b = pool.map(lambda seeds: explore(studio_app.url, seeds, together), [(3, 5), (11, 13)])
        snap = session.snapshot()
        assert snap.state == TRAINING and snap.latest.step > before          # training went on meanwhile
    finally:
        session.stop(timeout=60)

    assert a[0] == ["#1 · seed 3", "#2 · seed 5 · 1 move"]
    assert b[0] == ["#1 · seed 11", "#2 · seed 13 · 1 move"]
    for (_, gif), recipes in ((a, [3, {"seed": 5, "offsets": {"0": 2.0}}]),
                              (b, [11, {"seed": 13, "offsets": {"0": 2.0}}])):
        sidecar = json.loads((studio_app.workspace / "exports" / gif).with_suffix(".json").read_text())
        assert [key["recipe"] for key in sidecar["walk"]["keyframes"]] == recipes
