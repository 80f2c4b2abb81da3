"""How quickly the Explore tab answers while a run trains in the same studio.

    python benchmarks/explore_latency.py RUN_DIR DATASET_DIR [--moves 40] [--exports 3] [--discriminator D]
        [--no-browser]

Serves the studio on 127.0.0.1 over a temporary workspace holding a copy of RUN_DIR, starts a
64 px training run on DATASET_DIR in its training session (until stopped), and once it trains:
- slider moves in Debian's Chromium (as the browser test drives it): the time from the slider's
  `input` event, a click on its track, to the first frame that shows the new picture;
- slider moves from Python: the time from sending a direction slider's new value to having the re-rendered
  picture's bytes in hand, the way the page does it (a slider's event skips gradio's queue, so
  the page posts to `/gradio_api/run/<event>` and then fetches the picture's URL), and the
  engine's share of it (the same event function called directly);
- a 60-frame 256 px GIF of a loop through three seeds, exported with its sidecar (the engine's
  export, each time to a new file so nothing is reused).
Targets: a slider move under 150 ms (median) with a 64 px model, the GIF under 5 s. The last
line printed is JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import free_port  # noqa: E402  (the tests' helper)

WARM_UP_SECONDS = 15
GIF_FRAMES = 60
GIF_SIZE = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, metavar="RUN_DIR", help="a trained run to explore")
    parser.add_argument("dataset", type=Path, metavar="DATASET_DIR", help="what the run in the background trains on")
    parser.add_argument("--moves", type=int, default=40, help="slider moves timed (default 40)")
    parser.add_argument("--exports", type=int, default=3, help="GIF exports timed (default 3)")
    parser.add_argument("--discriminator", help="of the run in the background (default: the studio's default)")
    parser.add_argument("--no-browser", action="store_true", help="skip the moves in Chromium")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="studio_explore_latency_") as folder:
        workspace = Path(folder)
        for name, value in (("GRADIO_TEMP_DIR", str(workspace / "gradio")), ("GRADIO_ANALYTICS_ENABLED", "False"),
                            ("HF_HUB_OFFLINE", "1")):
            os.environ.setdefault(name, value)                        # before gradio loads
        import httpx
        from gradio_client import Client

        from studio.config import TrainConfig
        from studio.explore import export_walk, open_model
        from studio.latent import Recipe, even_walk
        from studio.run import Budget
        from studio.session import FAILED, TrainingSession
        from studio.ui.app import build_app, launch_options
        from studio.ui.explore_directions import DIRECTIONS_SHOWN
        from studio.ui.explore_tab import ExploreTab
        from studio.workspace import Workspace

        run = args.run.name
        shutil.copytree(args.run, workspace / "checkpoints" / run)
        session = TrainingSession()
        demo = build_app(workspace, session)
        demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                    **launch_options(workspace))
        try:
            config = TrainConfig(resolution=64, **({"discriminator": args.discriminator} if args.discriminator else {}))
            session.start(args.dataset.resolve(), workspace / "checkpoints" / "background", config, Budget())
            wait_for_training(session, FAILED)
            time.sleep(WARM_UP_SECONDS)
            client = Client(demo.local_url, verbose=False)
            client.predict(None, api_name="/explore_tab")               # as opening the tab does: the model list
            client.predict(run, 42, 1.0, api_name="/explore_seed")      # select a sample, as typing a seed does
            amounts = [0.0] * DIRECTIONS_SHOWN
            served = []
            with httpx.Client(base_url=demo.local_url) as page:           # one kept-alive connection, as a browser
                for move in range(args.moves):
                    amounts[move % 4] = (-1) ** move * (1 + move % 3)  # here and there along four directions
                    start = time.perf_counter()
                    picture = post_slider_move(page, client.session_hash, f"explore_move_{move % 4}", [run, None, *amounts])
                    page.get(picture["url"]).raise_for_status()
                    served.append(time.perf_counter() - start)
            in_browser = [] if args.no_browser else browser_moves(demo.local_url, run, args.moves)
            tab, engine = ExploreTab(Workspace(workspace), session), []
            for move in range(args.moves):
                amounts[move % 4] = (-1) ** move * (1 + move % 3)
                start = time.perf_counter()
                tab.directions.move(run, 42, *amounts)
                engine.append(time.perf_counter() - start)
            model = open_model(workspace / "checkpoints" / run)
            walk = even_walk([Recipe(seed=s) for s in (3, 17, 42)], GIF_FRAMES, mode="loop", easing="ease-in-out")
            exports = []
            for n in range(args.exports):
                start = time.perf_counter()
                export_walk(model, walk, workspace / "exports" / f"walk-{n}.gif", fps=24, size=GIF_SIZE)
                exports.append(time.perf_counter() - start)
            trained = session.snapshot()
        finally:
            session.stop()
            demo.close()

    result = {"model_px": model.config.resolution,
              "slider_move_browser_ms": 1000 * statistics.median(in_browser) if in_browser else None,
              "slider_move_browser_ms_p90": 1000 * sorted(in_browser)[int(0.9 * len(in_browser))] if in_browser else None,
              "slider_move_ms": 1000 * statistics.median(served),
              "slider_move_engine_ms": 1000 * statistics.median(engine),
              "slider_move_ms_p90": 1000 * sorted(served)[int(0.9 * len(served))],
              "gif_60_frames_256px_s": statistics.median(exports),
              "training_images_per_s": trained.images_per_s, "training_numerics": trained.numerics,
              "training_discriminator": config.discriminator}
    print(f"while training at 64 px ({config.discriminator} discriminator, {trained.images_per_s:.1f} images/s, "
          f"{trained.numerics}):")
    if in_browser:
        print(f"  slider move in Chromium, {model.config.resolution} px model: median "
              f"{result['slider_move_browser_ms']:.0f} ms (90th percentile {result['slider_move_browser_ms_p90']:.0f} ms)")
    print(f"  slider move from Python: median {result['slider_move_ms']:.0f} ms through the "
          f"server (90th percentile {result['slider_move_ms_p90']:.0f} ms), {result['slider_move_engine_ms']:.0f} ms "
          f"of it rendering")
    print(f"  {GIF_FRAMES}-frame {GIF_SIZE} px GIF: median {result['gif_60_frames_256px_s']:.2f} s")
    print(json.dumps(result))


# Sets window.moved to the milliseconds from the slider's next `input` event to the first animation
# frame on which the selected sample shows a new, loaded picture.
_TIME_NEXT_MOVE = """([slider, before]) => {
    window.moved = null;
    document.querySelector(`#${slider} input[type=range]`).addEventListener("input", () => {
        const start = performance.now();
        const look = () => {
            const image = document.querySelector("#explore-selected img");
            if (image && image.complete && image.naturalWidth > 0 && image.src !== before)
                window.moved = performance.now() - start;
            else requestAnimationFrame(look);
        };
        requestAnimationFrame(look);
    }, {once: true});
}"""
# Where on its track each slider is clicked, visit after visit: never on its thumb (a click there
# moves nothing), which starts in the middle and then sits where it was last clicked.
_TRACK_PLACES = (0.1, 0.9, 0.3, 0.7)


def browser_moves(url: str, run: str, moves: int) -> list[float]:
    """Seconds per slider move in Chromium: the Explore tab opened on seed 42 of `run`, then
    clicks on four sliders' tracks at places that differ from one move to the next."""
    from browser import ARGS, CHROMIUM, choose, type_seed
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="3 · Explore").click()
        choose(page, "explore-model", re.escape(run))
        type_seed(page, 42)
        times = [timed_move(page, move) for move in range(moves)]
        browser.close()
    return times


def timed_move(page, move: int) -> float:
    """Seconds from the `move`-th slider move's `input` event to its picture drawn: a click on
    one of four sliders' tracks, at a place that differs from the last visit's."""
    from browser import image_source

    slider = f"explore-direction-{move % 4}"
    track = page.locator(f"#{slider} input[type=range]")
    box = track.bounding_box()
    page.evaluate(_TIME_NEXT_MOVE, [slider, image_source(page, "explore-selected")])
    fraction = _TRACK_PLACES[move // 4 % len(_TRACK_PLACES)]
    track.click(position={"x": box["width"] * fraction, "y": box["height"] / 2})
    return page.wait_for_function("() => window.moved").json_value() / 1000


def post_slider_move(page, session_hash: str, event: str, inputs: list) -> dict:
    """The new picture's file data, as the page's direct call returns it (the session's state
    inputs are sent as None: the server holds them)."""
    answer = page.post(f"/gradio_api/run/{event}", json={"data": inputs, "session_hash": session_hash})
    answer.raise_for_status()
    return answer.json()["data"][1]


def wait_for_training(session, failed: str) -> None:
    while session.snapshot().latest is None:
        if session.snapshot().state == failed:
            raise SystemExit(f"error: training failed: {session.snapshot().error}")
        time.sleep(1)


if __name__ == "__main__":
    main()
