"""The commands that use a trained model, as the studio's Explore tab does: `generate` (samples
of seeds), `interpolate` (a walk between keyframes as a GIF, an MP4, a zip of frames or a contact
sheet) and `project` (the latent whose sample is closest to a painting, as a recipe for walks).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from .checkpoint import load_generator
from .cli_common import StderrLine, positive
from .config import ConfigError
from .directions import read_labels
from .explore import (EXPORT_SIZE, export_walk, fit_painting, open_model, project_painting, read_recipe, read_sidecar,
                      recipe_file, walk_format)
from .files import write_json
from .latent import EASINGS, Recipe, even_walk
from .project import DEFAULT_STARTS, DEFAULT_STEPS
from .render import grid_image, render_seeds, save_png, to_pil_images
from .sources import Rejected


# ------------------------------------------------------------------------------- generate
def add_generate(commands) -> None:
    p = commands.add_parser("generate", help="render samples from a checkpoint, export or run folder")
    p.add_argument("source", type=Path, metavar="CKPT_OR_RUN_DIR")
    p.add_argument("--n", type=positive(int), default=64, help="number of samples (default 64)")
    p.add_argument("--out", required=True, help="grid.png, or a folder (existing, or ending in /) for one PNG each")
    p.add_argument("--seed", type=int, default=0, help="first seed; sample i uses seed S+i")
    p.set_defaults(run=run_generate)


def run_generate(args) -> int:
    if not args.source.exists():
        raise FileNotFoundError(f"{args.source} does not exist")
    out = Path(args.out)
    as_folder = args.out.endswith(("/", "\\")) or out.is_dir()
    if not as_folder and out.suffix.lower() != ".png":
        raise ConfigError(f"--out {args.out} should end in .png (a grid) or name a folder")
    generator, config = load_generator(args.source)
    seeds = list(range(args.seed, args.seed + args.n))
    images = render_seeds(generator, config.z_dim, seeds)
    if as_folder:
        files = [save_png(image, out / f"seed{seed:06d}.png") for seed, image in zip(seeds, to_pil_images(images))]
        print(f"Wrote {len(files)} images of {config.resolution} px to {out}")
        written = [str(f) for f in files]
    else:
        save_png(grid_image(images), out)
        print(f"Wrote a grid of {len(seeds)} samples to {out}")
        written = [str(out)]
    print(json.dumps({"out": str(out), "files": written, "seeds": seeds, "resolution": config.resolution}))
    return 0


# ---------------------------------------------------------------------------- interpolate
# What shapes a walk made from seeds, and its value when not given. These options default to
# "absent" in the parser, so that one given with --from-sidecar (which replays a recorded walk
# exactly) can be refused rather than silently ignored.
WALK_DEFAULTS = {"seeds": None, "recipes": None, "frames": 60, "fps": 24.0, "loop": False, "ping_pong": False, "easing": "linear",
                 "hold": 0, "psi": 1.0, "direction": [], "size": EXPORT_SIZE}


def add_interpolate(commands) -> None:
    p = commands.add_parser("interpolate", help="render a walk between seeds as a GIF, an MP4 or a zip of frames")
    p.add_argument("source", type=Path, nargs="?", metavar="RUN_OR_GENERATOR",
                   help="a run folder, generator export or checkpoint (with --from-sidecar: only if it has moved)")
    absent = argparse.SUPPRESS
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--seeds", type=_seed_list, default=absent, help="keyframe seeds in order, e.g. 3,17,42")
    keys.add_argument("--recipes", type=Path, nargs="+", default=absent, metavar="Z.json",
                      help="keyframes from `project --out` files in order: a walk between your own paintings")
    p.add_argument("--frames", type=positive(int), default=absent, help="frames in all (default 60)")
    p.add_argument("--fps", type=positive(float), default=absent, help="frames per second (default 24)")
    ends = p.add_mutually_exclusive_group()
    ends.add_argument("--loop", action="store_true", default=absent,
                      help="move on from the last seed back to the first; plays seamlessly")
    ends.add_argument("--ping-pong", action="store_true", default=absent, help="walk there and back again")
    p.add_argument("--easing", choices=EASINGS, default=absent, help="between keyframes (default linear)")
    p.add_argument("--hold", type=int, default=absent, metavar="FRAMES",
                   help="extra frames on each keyframe (default 0)")
    p.add_argument("--psi", type=positive(float), default=absent, help="truncation of every keyframe (default 1)")
    p.add_argument("--direction", type=_direction_offset, action="append", default=absent, metavar="N=SIGMA",
                   help="move every keyframe SIGMA standard deviations along direction N (repeatable)")
    p.add_argument("--size", type=positive(int), default=absent, help=f"px (default {EXPORT_SIZE})")
    p.add_argument("--from-sidecar", type=Path, metavar="FILE.json",
                   help="render again exactly what a sidecar (from the studio or this command) describes")
    p.add_argument("--out", required=True, type=Path, help="walk.gif, walk.mp4, frames.zip or sheet.png (keyframes)")
    p.set_defaults(run=run_interpolate)


def _seed_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of seeds") from None


def _direction_offset(text: str) -> tuple[int, float]:
    index, _, amount = text.partition("=")
    try:
        return int(index), float(amount)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} should be DIRECTION=SIGMA, e.g. 0=1.5") from None


def run_interpolate(args) -> int:
    _check_out(args.out)
    given = {name: value for name, value in vars(args).items() if name in WALK_DEFAULTS}
    if args.from_sidecar:
        if given:
            flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
            raise ConfigError(f"--from-sidecar renders the walk it records as it was; leave out {flags}")
        model, walk, fps, size = read_sidecar(args.from_sidecar, args.source)
    else:
        model, walk, fps, size = _walk_from_keyframes(args.source, **{**WALK_DEFAULTS, **given})
    line = StderrLine(terminal_seconds=0.1)
    try:
        sidecar = export_walk(model, walk, args.out, fps, size, read_labels(model.run_dir),
                              progress=lambda done, total: line.show(f"  {done}/{total} frames", final=done == total))
    except OSError as error:          # a folder it may not write in, a full disk
        raise ConfigError(f"cannot write {args.out}: {error.strerror or error}") from None
    frames = len(walk.steps())
    print(f"Wrote {args.out}: {frames} frames at {fps:g} fps, {size} px (how it was made: {sidecar})")
    print(json.dumps({"out": str(args.out), "frames": frames, "sidecar": str(sidecar)}))
    return 0


def _check_out(out: Path) -> None:
    """Refuse an --out that cannot be written before rendering anything."""
    try:
        walk_format(out)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; name the file to write, e.g. {out / 'walk.gif'}")


def _walk_from_keyframes(source: Path | None, seeds, recipes, frames, fps, loop, ping_pong, easing, hold, psi,
                         direction, size):
    if source is None or not (seeds or recipes):
        raise ConfigError("give RUN_OR_GENERATOR and --seeds or --recipes (or --from-sidecar FILE.json)")
    mode = "loop" if loop else "ping-pong" if ping_pong else "once"
    try:       # the keyframes' recipes and the timing, checked before the model is loaded
        bases = [Recipe(seed=seed) for seed in seeds] if seeds else [read_recipe(file) for file in recipes]
        keys = [dataclasses.replace(base, psi=psi, offsets=tuple(direction)) for base in bases]
        walk = even_walk(keys, frames, mode, easing, hold)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    model = open_model(source)
    if bad := [index for index, _ in direction if not 0 <= index < model.direction_count]:
        raise ConfigError(f"direction {bad[0]} does not exist; this generator has directions "
                          f"0-{model.direction_count - 1}")
    return model, walk, fps, size


# -------------------------------------------------------------------------------- project
def add_project(commands) -> None:
    p = commands.add_parser("project", help="find the latent whose sample is closest to a painting of yours")
    p.add_argument("source", type=Path, metavar="RUN_OR_GENERATOR")
    p.add_argument("image", type=Path, metavar="IMAGE", help="any size; fitted as ingest fits paintings (crop)")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"search steps (default {DEFAULT_STEPS})")
    p.add_argument("--starts", type=positive(int), default=DEFAULT_STARTS,
                   help=f"random latents tried before the search (default {DEFAULT_STARTS})")
    p.add_argument("--seed", type=int, default=0, help="of the random starts: the same seed finds the same latent")
    p.add_argument("--out", required=True, type=Path, metavar="Z.json",
                   help="the recipe found, for `interpolate --recipes` (and the distances reached)")
    p.set_defaults(run=run_project)


def run_project(args) -> int:
    if args.steps < 0:
        raise ConfigError("--steps must be 0 or more")
    model = open_model(args.source)
    try:
        painting = fit_painting(model, args.image.read_bytes())
    except Rejected as rejected:
        raise ConfigError(f"cannot use {args.image}: {rejected.reason}") from None
    line = StderrLine(terminal_seconds=0.2)
    started = time.monotonic()
    found = project_painting(model, painting, args.image.name, args.steps, args.seed, starts=args.starts,
                             progress=lambda step, steps, loss: line.show(f"  step {step}/{steps}  distance {loss:.4f}",
                                                                         final=step == steps))
    seconds = time.monotonic() - started
    try:
        write_json(args.out, recipe_file(model, found))
    except OSError as error:
        raise ConfigError(f"cannot write {args.out}: {error.strerror or error}") from None
    print(f"Projected {args.image} into {model.label} in {seconds:.1f} s: pixel distance {found.distance.pixel:.4f}, "
          f"perceptual {found.distance.perceptual:.4f} (best random start {found.start.pixel:.4f}, "
          f"{found.start.perceptual:.4f}); recipe in {args.out}")
    print(json.dumps({"out": str(args.out), "steps": args.steps, "seconds": round(seconds, 2),
                      "distance": found.distance.to_json(), "start": found.start.to_json(),
                      "recipe": found.recipe.to_json()}))
    return 0
