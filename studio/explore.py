"""Exploring a trained generator: samples from recipes, the generator's main directions and what
they do to a sample, each sample's nearest training painting, the artist's own paintings
projected into it, children bred from favourites, blends with another model, and walks between
keyframes written as a GIF, an MP4, a zip of PNG frames or a contact sheet, each with a sidecar
from which the same frames can be rendered again."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from . import generator_file
from .blend import blend, check_blendable
from .breed import children
from .checkpoint import EXPORT_NAMES, checkpoint_dir, generator_source, load_generator, read_export
from .config import TrainConfig
from .data import IngestOptions, load_images, prepare_painting
from .directions import Directions, DirectionLabels, cached_directions, find_directions
from .export import frame_ms, sidecar_path, upscale, write_frames_zip, write_gif, write_mp4, write_still
from .files import atomic_output, write_json
from .latent import Recipe, Walk, circle_through
from .metrics import dataset_features, inception_features, load_inception, nearest, typical_distance
from .models import build_generator
from .project import DEFAULT_STARTS, Projection, painting_tensor, project
from .render import grid_image, render_latents, to_pil_images, to_uint8

EXPORT_SIZE = 256          # px; a 64 px sample is too small to watch
SHEET_TILE = 128           # px per keyframe on a contact sheet
WALK_FORMATS = ("gif", "mp4", "zip", "png")    # png: the keyframes' contact sheet
STRIP_OFFSETS = (-3.0, 0.0, 3.0)               # what a direction's preview strip shows, in σ
STRIP_TILE = 64            # px per picture in a strip, whatever the model's resolution
PREVIEW_SIZE = 128         # px of the quick preview
SIDECAR_FORMAT = "gan-art-studio/walk"
STILL_FORMAT = "gan-art-studio/still"
RECIPE_FORMAT = "gan-art-studio/recipe"
BLEND_SEEDS = tuple(range(8))   # the fixed seeds a blend is previewed on
LOOP_KEYFRAMES = 6        # on a seamless loop's circle; its moves are short arcs, so it looks round
LOOP_RADIUS = 0.45        # radians: the loop's far side is about 50° away from the sample in z
RENDER_BATCH = 8           # walks always render in batches of this size, so frames repeat bit for bit


class SidecarError(Exception):
    """A sidecar cannot be rendered again; the message says why."""


@dataclass(frozen=True)
class Model:
    """A generator to explore, its directions, and which weights exactly it holds."""
    generator: torch.nn.Module
    config: TrainConfig
    directions: Directions
    label: str                 # short, safe in file names: the run's folder name
    source: str                # the weights' file and date, or a live run and its step
    file: Path | None = None   # the weights' file; None for a run still training
    sha256: str | None = None  # of that file
    run_dir: Path | None = None   # where the artist's names for its directions are kept

    @property
    def direction_count(self) -> int:
        return len(self.directions.strengths)

    def latents(self, recipes: list[Recipe]) -> torch.Tensor:
        return torch.stack([recipe.latent(self.config.z_dim, self.directions.vectors) for recipe in recipes])


def open_model(source: str | Path) -> Model:
    """A run folder's G_ema (or a generator or checkpoint file's) with its directions. Kept in
    memory until the file changes, so browsing seeds does not reload it."""
    file = generator_source(source).resolve()
    stat = file.stat()
    weights = _read_weights(str(file), stat.st_mtime_ns, stat.st_size)
    run_dir = run_folder_of(file)
    label = run_dir.name if run_dir else file.stem
    return Model(weights.generator, weights.config, weights.directions, label,
                 f"{file} saved {weights.saved}", file, weights.sha256, run_dir or file.parent)


def run_folder_of(file: Path) -> Path | None:
    """The run a weights file belongs to (RUN for RUN/generator.safetensors and RUN/checkpoints/step-N.pt),
    whose folder keeps the directions' names; None for a generator file of no run."""
    if file.parent == checkpoint_dir(file.parent.parent):
        return file.parent.parent
    return file.parent if file.name in EXPORT_NAMES else None


def directions_cache(file: Path) -> Path:
    """Where the directions of a weights file are cached: in its run's folder (one file, under the
    weights' SHA-256, so pruning old checkpoints leaves nothing behind), else beside the file."""
    run_dir = run_folder_of(file)
    return run_dir / "generator.directions.json" if run_dir else file.with_name(f"{file.stem}.directions.json")


def live_model(generator: torch.nn.Module, config: TrainConfig, label: str, source: str) -> Model:
    """A generator held in memory only (a run's newest preview): directions found afresh."""
    return Model(generator, config, find_directions(generator), label, source)


@dataclass(frozen=True)
class _Weights:
    generator: torch.nn.Module
    config: TrainConfig
    sha256: str
    saved: str                 # when the file was written, to the second
    directions: Directions


@functools.lru_cache(maxsize=4)
def _read_weights(file: str, mtime_ns: int, size: int) -> _Weights:
    """Keyed by modification time and size, so an unchanged file is read once. The file is read
    once, and its hash and its weights both come from those bytes: the trainer replaces
    the export at every checkpoint, and two reads could see two versions."""
    with open(file, "rb") as handle:
        written = os.fstat(handle.fileno()).st_mtime_ns     # of the file read, not of a newer one
        data = handle.read()
    generator, config = load_generator(file, data=data)
    sha256 = hashlib.sha256(data).hexdigest()
    saved = datetime.fromtimestamp(written / 1e9).isoformat(timespec="seconds")
    directions = cached_directions(generator, sha256, directions_cache(Path(file)))
    return _Weights(generator, config, sha256, saved, directions)


def render_recipes(model: Model, recipes: list[Recipe], batch: int = 32) -> torch.Tensor:
    """float [-1, 1] (N, 3, R, R)."""
    return render_latents(model.generator, model.latents(recipes), batch)


def render_images(model: Model, recipes: list[Recipe], size: int | None = None) -> list[Image.Image]:
    """PIL pictures, at the model's resolution or scaled to `size` px for a closer look."""
    images = to_pil_images(render_recipes(model, recipes))
    return [image.resize((size, size), Image.LANCZOS) for image in images] if size else images


def seamless_loop(model: Model, recipe: Recipe, count: int = LOOP_KEYFRAMES) -> list[Recipe]:
    """Keyframes on a small closed circle in z through the sample (the first of them): walked as
    a loop, it starts and ends on the sample without a seam. The circle's plane is drawn from the
    sample's latent, so one sample always gives the same loop."""
    z = model.latents([recipe])[0]
    plane_seed = int(hashlib.sha256(z.numpy().tobytes()).hexdigest()[:8], 16)
    return [recipe] + [Recipe.of_z(point) for point in circle_through(z, count, LOOP_RADIUS, plane_seed)[1:]]


def direction_strips(model: Model, recipe: Recipe, indices: list[int]) -> list[Image.Image]:
    """Per direction, the sample moved to each of STRIP_OFFSETS along it, side by side: what the
    slider does, before it is touched. The other sliders stay where the recipe has them."""
    offsets = dict(recipe.offsets)
    recipes = [recipe.moved({**offsets, index: amount}) for index in indices for amount in STRIP_OFFSETS]
    images = render_recipes(model, recipes)
    if model.config.resolution != STRIP_TILE:
        images = torch.nn.functional.interpolate(images, size=STRIP_TILE, mode="bilinear", antialias=True)
    per_strip = len(STRIP_OFFSETS)
    return [grid_image(images[i:i + per_strip], columns=per_strip, padding=1)
            for i in range(0, len(images), per_strip)]


# ----------------------------------------------------------- projection, breeding, blending
def fit_painting(model: Model, data: bytes) -> Image.Image:
    """An uploaded painting as the Dataset tab would store it, at the model's resolution
    (sources.Rejected with the reason if it would be rejected)."""
    return prepare_painting(data, IngestOptions(resolution=model.config.resolution))


def project_painting(model: Model, painting: Image.Image, name: str, steps: int, seed: int = 0,
                     starts: int = DEFAULT_STARTS,
                     progress: Callable[[int, int, float], None] | None = None) -> Projection:
    """The latent closest to `painting` (fitted already); its recipe records the painting's name,
    the SHA-256 of its fitted pixels and the generator it was projected into."""
    origin = {"painting": name, "sha256": hashlib.sha256(painting.tobytes()).hexdigest(),
              "generator": model.sha256}
    return project(model.generator, model.config.z_dim, painting_tensor(painting), steps, seed, starts,
                   origin=origin, progress=progress)


def recipe_file(model: Model, projection: Projection) -> dict:
    """What `project --out` writes: the recipe, how close it came, and the generator it is for."""
    return {"format": RECIPE_FORMAT, "version": 1, "generator": _generator_facts(model),
            "recipe": projection.recipe.to_json(), "start": projection.start.to_json(),
            "distance": projection.distance.to_json()}


def read_recipe(path: str | Path) -> Recipe:
    """The recipe of a `project --out` file (SidecarError if it is not one)."""
    path = Path(path)
    try:
        facts = json.loads(path.read_text())
        if facts.get("format") != RECIPE_FORMAT:
            raise SidecarError(f"{path} is not a recipe file made by `project --out`")
        return Recipe.from_json(facts["recipe"])
    except FileNotFoundError:
        raise SidecarError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, AttributeError, KeyError, TypeError, ValueError) as error:
        raise SidecarError(f"{path} is not a readable recipe file ({error})") from None


def breed(model: Model, parents: list[Recipe], count: int, mutation: float, seed: int) -> list[Recipe]:
    """Children of the parents as they are rendered (truncation and moves included)."""
    return children(parents, model.latents(parents), count, mutation, seed)


def blended_model(model: Model, other: Model, amount: float, finest_from: int = 4) -> Model:
    """`model` with `amount` of `other` in its layers of `finest_from` px and up (blend.py), held
    in memory until saved; its directions are found afresh."""
    check_blendable(model.config, other.config)
    generator = build_generator(model.config)
    generator.load_state_dict(blend(model.generator, other.generator, model.config, amount, finest_from))
    generator.eval().requires_grad_(False)
    mixed = blend_record(model, other, amount, finest_from)["blend"]
    return live_model(generator, model.config, f"{model.label}-x-{other.label}",
                      f"a blend of {model.label} and {other.label}: {json.dumps(mixed)}")


def blend_record(model: Model, other: Model, amount: float, finest_from: int) -> dict:
    """The provenance of a blend: both parents (file and SHA-256) and how they were mixed."""
    parents = [{"label": m.label, "file": str(m.file) if m.file else None, "sha256": m.sha256} for m in (model, other)]
    return {"blend": {"parents": parents, "amount": amount, "finest_from": finest_from}}


def common_source(model: Model, other: Model) -> bool:
    """Whether one was fine-tuned from the other or both from one model, as their exports say."""
    def ancestry(m: Model) -> set[str]:
        found = {m.sha256}
        if m.file is not None:
            source = (read_export(m.file)[2].get("fine_tuned_from") or {}).get("sha256")
            found.add(source)
        return found - {None}
    return bool(ancestry(model) & ancestry(other))


def save_blend(model: Model, other: Model, amount: float, finest_from: int, run_dir: str | Path) -> Path:
    """The blend as RUN_DIR/generator.safetensors (a new run folder of its own, which the
    studio lists like any trained model), its provenance naming both parents."""
    blended = blended_model(model, other, amount, finest_from)
    path = Path(run_dir) / EXPORT_NAMES[0]
    if path.exists():
        raise FileExistsError(f"{path} exists already; give the blend another name")
    return generator_file.write(path, blended.generator.state_dict(), model.config,
                                blend_record(model, other, amount, finest_from))


# ------------------------------------------------------------------------- copies check
@dataclass(frozen=True)
class NearestPaintings:
    """Each sample beside its closest training painting in Inception feature space."""
    pairs: list[tuple[Image.Image, Image.Image, float]]   # (sample, painting, distance)
    typical: float    # median distance between a painting and its nearest other painting


def nearest_paintings(model: Model, recipes: list[Recipe], dataset_dir: str | Path,
                      progress: Callable[[int, int], None] | None = None) -> NearestPaintings:
    """The recipes' samples paired with their nearest paintings in the dataset. `progress`
    follows the dataset's features, slow only the first time (then cached)."""
    images = render_recipes(model, recipes)
    found, typical = match_paintings(to_uint8(images).permute(0, 3, 1, 2), dataset_dir,
                                     model.config.resolution, progress)
    pairs = [(sample, painting, distance) for sample, (painting, distance) in zip(to_pil_images(images), found)]
    return NearestPaintings(pairs, typical)


def match_paintings(samples: torch.Tensor, dataset_dir: str | Path, resolution: int,
                    progress: Callable[[int, int], None] | None = None
                    ) -> tuple[list[tuple[Image.Image, float]], float]:
    """For uint8 (N, 3, R, R) images: each one's nearest painting and the distance to it, and
    the dataset's typical distance between neighbouring paintings."""
    network = load_inception()
    real = dataset_features(dataset_dir, resolution, network, progress)
    indices, distances = nearest(inception_features(samples, network), real)
    paintings = load_images(dataset_dir, resolution).permute(0, 2, 3, 1).numpy()
    found = [(Image.fromarray(paintings[i]), d) for i, d in zip(indices.tolist(), distances.tolist())]
    return found, typical_distance(real)


# -------------------------------------------------------------------------------- walks
def walk_frames(model: Model, walk: Walk, size: int = EXPORT_SIZE,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """uint8 (frames, size, size, 3): the walk, slerped in z."""
    path = walk.latents(model.latents([key.recipe for key in walk.keyframes]))
    images = render_latents(model.generator, path, batch=RENDER_BATCH, progress=progress)
    return upscale(to_uint8(images).numpy(), size)


def sidecar(model: Model, walk: Walk, fps: float, size: int, labels: DirectionLabels = DirectionLabels()) -> dict:
    """Everything needed to render the walk again, and to see how it was made."""
    return {
        "format": SIDECAR_FORMAT, "version": 1, "generator": _generator_facts(model),
        "walk": walk.to_json(), "interpolation": "slerp",
        "frames": len(walk.steps()), "fps": fps, "frame_ms": frame_ms(fps), "size": size,
        "directions": _directions_used(model, [key.recipe for key in walk.keyframes], labels),
    }


def _generator_facts(model: Model) -> dict:
    return {"file": str(model.file) if model.file else None, "sha256": model.sha256, "source": model.source,
            "config": model.config.to_dict()}


def _directions_used(model: Model, recipes: list[Recipe], labels: DirectionLabels) -> dict:
    """The method, and the name and vector of each direction the recipes move along."""
    used = sorted({index for recipe in recipes for index, _ in recipe.offsets})
    return {"method": model.directions.method,
            "used": {str(i): {"name": labels.name(i), "vector": model.directions.vectors[i].tolist()} for i in used}}


def export_still(model: Model, recipe: Recipe, path: str | Path, size: int = EXPORT_SIZE,
                 labels: DirectionLabels = DirectionLabels()) -> Path:
    """The sample as a PNG whose text chunk (`gan-art-studio`) records its recipe, the directions
    it moves along and the generator it came from."""
    facts = {"format": STILL_FORMAT, "version": 1, "generator": _generator_facts(model),
             "recipe": recipe.to_json(), "size": size, "directions": _directions_used(model, [recipe], labels)}
    path = Path(path)
    with atomic_output(path) as partial:
        write_still(render_images(model, [recipe], size)[0], partial, {"gan-art-studio": json.dumps(facts)})
    return path


def export_walk(model: Model, walk: Walk, path: str | Path, fps: float, size: int = EXPORT_SIZE,
                labels: DirectionLabels = DirectionLabels(),
                progress: Callable[[int, int], None] | None = None) -> Path:
    """Render `walk` into `path` (.gif, .mp4, .zip of PNG frames, or .png: a contact sheet of
    its keyframes) and its sidecar beside it (same name, .json). Returns the sidecar's path.

    The sidecar is written first, so the walk never appears without it; the walk's file appears
    only once it is whole."""
    path = Path(path)
    kind = walk_format(path)
    facts = sidecar(model, walk, fps, size, labels)
    sidecar_file = write_json(sidecar_path(path), facts)
    with atomic_output(path) as partial:
        if kind == "png":
            write_still(keyframe_sheet(model, walk), partial, {"gan-art-studio": json.dumps(facts)})
        else:
            frames = walk_frames(model, walk, size, progress=progress)
            if kind == "zip":
                write_frames_zip(frames, partial)
            else:
                (write_gif if kind == "gif" else write_mp4)(frames, partial, fps)
    return sidecar_file


def walk_format(path: str | Path) -> str:
    """What a walk written to `path` becomes, from its extension: one of WALK_FORMATS."""
    kind = Path(path).suffix.lower().lstrip(".")
    if kind not in WALK_FORMATS:
        raise ValueError(f"cannot export a {kind or 'file without an extension'}; "
                         f"name it .{', .'.join(WALK_FORMATS[:-1])} or .png (a contact sheet)")
    return kind


def keyframe_sheet(model: Model, walk: Walk) -> Image.Image:
    """The walk's keyframes in order, SHEET_TILE px each, up to 6 a row."""
    images = to_uint8(render_recipes(model, [key.recipe for key in walk.keyframes])).numpy()
    tiles = torch.from_numpy(upscale(images, SHEET_TILE)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return grid_image(tiles, columns=min(len(tiles), 6), padding=4)


def export_name(model: Model, walk: Walk, fps: float, size: int, kind: str) -> str:
    """`<run>-walk-<hash>.<kind>`, the hash over what decides the frames: the GIF, MP4 and zip of
    one walk share one sidecar, and a walk already written can be handed out again at once."""
    digest = _digest({"generator": model.sha256 or model.source, "walk": walk.to_json(), "fps": fps, "size": size})
    return f"{model.label}-walk-{digest}.{kind}"


def still_name(model: Model, recipe: Recipe) -> str:
    """`<run>-seed<S>-<hash>.png`, the hash over the generator and the whole recipe."""
    digest = _digest({"generator": model.sha256 or model.source, "recipe": recipe.to_json()})
    return f"{model.label}-{f'seed{recipe.seed}' if recipe.seed is not None else 'own-z'}-{digest}.png"


def _digest(what: dict) -> str:
    """10 hex digits naming `what` (JSON): the same facts always give the same file name."""
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:10]


def preview_walk(model: Model, walk: Walk, fps: float, folder: str | Path) -> Path:
    """A quick look before the full render: half the frames at half the frame rate (so the same
    length), PREVIEW_SIZE px, as a GIF (and its sidecar) in `folder`."""
    quick = Walk(tuple(dataclasses.replace(key, frames=max(1, key.frames // 2), hold=key.hold // 2)
                       for key in walk.keyframes), walk.mode)
    path = Path(folder) / export_name(model, quick, fps / 2, PREVIEW_SIZE, "gif")
    if not path.exists():
        export_walk(model, quick, path, fps / 2, PREVIEW_SIZE)
    return path


def read_sidecar(path: str | Path, generator: str | Path | None = None) -> tuple[Model, Walk, float, int]:
    """The model, walk, fps and size a sidecar records, ready to render the same frames again.
    `generator` replaces the file it names (moved since, say); either way its SHA-256 must match."""
    path = Path(path)
    try:
        facts = json.loads(path.read_text())
    except FileNotFoundError:
        raise SidecarError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SidecarError(f"{path} is not a readable JSON sidecar ({error})") from None
    if not isinstance(facts, dict) or facts.get("format") != SIDECAR_FORMAT:
        raise SidecarError(f"{path} is not a sidecar of a walk made by GAN Art Studio")
    recorded = facts.get("generator") or {}
    source = generator or recorded.get("file")
    if source is None:
        raise SidecarError(f"{path} was made from a run while it was training, which left no file to render "
                           "it from; export it again from the finished run")
    try:
        file = generator_source(source)
    except FileNotFoundError:
        raise SidecarError(f"the generator {source} that {path.name} was made from is missing; "
                           "pass its new place as RUN_OR_GENERATOR") from None
    model = open_model(file)
    if model.sha256 != recorded.get("sha256"):
        raise SidecarError(f"{file} is not the generator {path.name} was made from: its SHA-256 is "
                           f"{model.sha256[:12]}…, the sidecar's {str(recorded.get('sha256'))[:12]}… "
                           "(trained further since?)")
    try:
        used = {int(i): torch.tensor(d["vector"], dtype=torch.float32)
                for i, d in facts["directions"]["used"].items()}
        walk = Walk.from_json(facts["walk"])
        fps, size = float(facts["fps"]), int(facts["size"])
        # The directions recorded, not ones computed again: the frames cannot drift if that changes.
        model = dataclasses.replace(model, directions=Directions(facts["directions"].get("method", "?"), used, ()))
        model.latents([key.recipe for key in walk.keyframes])     # refuses moves along unrecorded directions
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise SidecarError(f"{path} is damaged: {error}") from None
    return model, walk, fps, size
