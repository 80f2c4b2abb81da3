"""How quickly the Explore tab answers while a run trains in the same studio.

    python benchmarks/explore_latency.py RUN_DIR DATASET_DIR [--moves 40] [--exports 3] [--discriminator D]

Serves the studio on 127.0.0.1 over a temporary workspace holding a copy of RUN_DIR, starts a
64 px training run on DATASET_DIR in its training session (until stopped), and once it trains:
- slider moves: the time from sending a direction slider's new value (through gradio_client,
  as the page does) to having the re-rendered sample in hand, and the engine's share of it
  (the same event function called directly);
- a 60-frame 256 px GIF of a loop through three seeds, exported with its sidecar (the engine's
  export, each time to a new file so nothing is reused).
Targets: a slider move under 150 ms (median) with a 64 px model, the GIF under 5 s. The last
line printed is JSON.
"""
from __future__ import annotations

import argparse
import json
import os
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
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="studio_explore_latency_") as folder:
        workspace = Path(folder)
        for name, value in (("GRADIO_TEMP_DIR", str(workspace / "gradio")), ("GRADIO_ANALYTICS_ENABLED", "False"),
                            ("HF_HUB_OFFLINE", "1")):
            os.environ.setdefault(name, value)                        # before gradio loads
        from gradio_client import Client

        from studio.config import TrainConfig
        from studio.explore import export_walk, open_model
        from studio.latent import Recipe, even_walk
        from studio.run import Budget
        from studio.session import FAILED, TrainingSession
        from studio.ui.app import build_app, launch_options
        from studio.ui.explore_tab import DIRECTIONS_SHOWN, ExploreTab
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
            for move in range(args.moves):
                amounts[move % 4] = (-1) ** move * (1 + move % 3)      # here and there along four directions
                start = time.perf_counter()
                client.predict(run, *amounts, api_name=f"/explore_move_{move % 4}")
                served.append(time.perf_counter() - start)
            tab, engine = ExploreTab(Workspace(workspace), session), []
            for move in range(args.moves):
                amounts[move % 4] = (-1) ** move * (1 + move % 3)
                start = time.perf_counter()
                tab.move(run, 42, *amounts)
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

    result = {"model_px": model.config.resolution, "slider_move_ms": 1000 * statistics.median(served),
              "slider_move_engine_ms": 1000 * statistics.median(engine),
              "slider_move_ms_p90": 1000 * sorted(served)[int(0.9 * len(served))],
              "gif_60_frames_256px_s": statistics.median(exports),
              "training_images_per_s": trained.images_per_s, "training_numerics": trained.numerics,
              "training_discriminator": config.discriminator}
    print(f"while training at 64 px ({config.discriminator} discriminator, {trained.images_per_s:.1f} images/s, "
          f"{trained.numerics}):")
    print(f"  slider move, {model.config.resolution} px model: median {result['slider_move_ms']:.0f} ms through the "
          f"server (90th percentile {result['slider_move_ms_p90']:.0f} ms), {result['slider_move_engine_ms']:.0f} ms "
          f"of it rendering")
    print(f"  {GIF_FRAMES}-frame {GIF_SIZE} px GIF: median {result['gif_60_frames_256px_s']:.2f} s")
    print(json.dumps(result))


def wait_for_training(session, failed: str) -> None:
    while session.snapshot().latest is None:
        if session.snapshot().state == failed:
            raise SystemExit(f"error: training failed: {session.snapshot().error}")
        time.sleep(1)


if __name__ == "__main__":
    main()
