"""Dataset ingestion: turn whatever the artist drops into a clean, hash-named dataset folder.

A dataset folder holds ``images/<sha256[:16]>.png`` (square RGB, one resolution) and a
``manifest.json`` recording every accepted and rejected source file with its reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
from collections import deque
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import ConfigError
from .files import flush_to_disk, write_bytes
from .formats import REASONS as UNSUPPORTED_REASONS, unsupported_format
from .sources import Candidate, Rejected, collect

MANIFEST_FORMAT = 1
# Signatures of formats we accept: a file starting with one of these that PIL cannot open is
# a damaged image, not a stray document.
IMAGE_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")
# Everything PIL's decoders raise for damaged data.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError)


class DatasetError(Exception):
    """A problem with a dataset folder, described in one sentence the user can act on."""


@dataclass(frozen=True)
class IngestOptions:
    resolution: int = 256
    fit: str = "crop"
    background: tuple[int, int, int] = (255, 255, 255)
    max_pixels: int = 80_000_000

    def __post_init__(self) -> None:
        if not _is_int(self.resolution) or self.resolution < 16:
            raise ConfigError(f"resolution must be an integer >= 16, got {self.resolution!r}")
        if self.fit not in ("crop", "pad"):
            raise ConfigError(f"fit must be 'crop' or 'pad', got {self.fit!r}")
        background = tuple(self.background)
        if len(background) != 3 or not all(_is_int(c) and 0 <= c <= 255 for c in background):
            raise ConfigError(f"background must be three integers 0-255, got {self.background!r}")
        object.__setattr__(self, "background", background)  # accept lists, e.g. from JSON
        if not _is_int(self.max_pixels) or self.max_pixels <= 0:
            raise ConfigError(f"max_pixels must be a positive integer, got {self.max_pixels!r}")


def parse_colour(text: str) -> tuple[int, int, int]:
    """'#rrggbb' (the '#' optional) -> (r, g, b)."""
    value = text.lstrip("#")
    if len(value) != 6:
        raise ConfigError(f"{text!r} is not a colour like #ffffff")
    try:
        return tuple(int(value[i:i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        raise ConfigError(f"{text!r} is not a colour like #ffffff") from None


@dataclass
class Rejection:
    file: str
    reason: str


@dataclass
class IngestReport:
    out: Path
    accepted: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "accepted": len(self.accepted),
            "rejected": [{"file": r.file, "reason": r.reason} for r in self.rejected],
            "out": str(self.out),
        }

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for rejection in self.rejected:
            kind = _summary_kind(rejection.reason)
            counts[kind] = counts.get(kind, 0) + 1
        details = ", ".join(f"{n} {_summary_label(kind, n)}" for kind, n in counts.items())
        images = "image" if len(self.accepted) == 1 else "images"
        rejected = f"rejected {len(self.rejected)}" + (f" ({details})" if details else "")
        return f"Accepted {len(self.accepted)} {images}, {rejected} -> {self.out}"


# Reason prefix -> (singular, plural) wording for the one-line summary.
_SUMMARY_LABELS = {
    "duplicate": ("duplicate", "duplicates"),
    "system file": ("system file", "system files"),
    "empty file": ("empty file", "empty files"),
    "not an image": ("not an image", "not images"),
    "truncated or corrupt": ("corrupt image", "corrupt images"),
    "too small": ("too small", "too small"),
    "image too large": ("too large", "too large"),
    "no such file": ("missing path", "missing paths"),
    "cannot be read": ("unreadable file", "unreadable files"),
    "folder cannot be read": ("unreadable folder", "unreadable folders"),
    "symlink loop": ("symlink loop", "symlink loops"),
    "link to a folder already read": ("symlink loop", "symlink loops"),
    "not a valid zip archive": ("broken zip", "broken zips"),
    "unsupported format": ("unsupported format", "unsupported formats"),
}


def _summary_kind(reason: str) -> str:
    if reason in UNSUPPORTED_REASONS:
        return "unsupported format"
    return next((p for p in _SUMMARY_LABELS if reason.startswith(p)), reason.split(":")[0])


def _summary_label(kind: str, count: int) -> str:
    one, many = _SUMMARY_LABELS.get(kind, (kind, kind))
    return one if count == 1 else many


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ---------------------------------------------------------------- processing one file


def _process(candidate: Candidate, options: IngestOptions, known: dict[str, str], images_dir: Path,
             written: list[Path]) -> dict:
    """Return the manifest entry (accepted) for one file, or raise Rejected. The image it
    stores is added to `written`, to be flushed to disk before the manifest lists it."""
    data = candidate.read()
    if not data:
        raise Rejected("empty file (0 bytes)")
    sha256 = hashlib.sha256(data).hexdigest()
    if sha256 in known:
        raise Rejected(f"duplicate of {known[sha256]}", sha256)
    try:
        upright = _decode_upright(data, options)
    except Rejected as rejected:
        raise Rejected(rejected.reason, sha256) from None
    square = _to_square(_to_rgb(upright, options.background), options)
    file = f"images/{sha256[:16]}.png"
    _save_png(square, images_dir.parent / file)
    written.append(images_dir.parent / file)
    return {"source": candidate.name, "sha256": sha256, "width": upright.width,
            "height": upright.height, "file": file, "status": "accepted"}


def prepare_painting(data: bytes, options: IngestOptions) -> Image.Image:
    """One painting exactly as ingest would store it (validated, upright, RGB on the background,
    square at the options' size), for a use outside a dataset such as projecting it into a
    model. Raises Rejected with the reason ingest would give."""
    if not data:
        raise Rejected("empty file (0 bytes)")
    return _to_square(_to_rgb(_decode_upright(data, options), options.background), options)


def _decode_upright(data: bytes, options: IngestOptions) -> Image.Image:
    return ImageOps.exif_transpose(_decode(data, options))


def _decode(data: bytes, options: IngestOptions) -> Image.Image:
    """Open, check size from the header, then fully decode (so truncation is caught here)."""
    unsupported = unsupported_format(data)
    if unsupported:
        raise Rejected(unsupported)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise Rejected("image too large (decompression bomb guard)") from None
        except UnidentifiedImageError:
            damaged = data.startswith(IMAGE_SIGNATURES)
            raise Rejected("truncated or corrupt image" if damaged else "not an image") from None
        width, height = image.size
        if width * height > options.max_pixels:
            raise Rejected(f"image too large (decompression bomb guard): {width}x{height}")
        _check_big_enough(width, height, options)
        try:
            image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise Rejected(f"image too large (decompression bomb guard): {width}x{height}") from None
        except DECODE_ERRORS:
            raise Rejected("truncated or corrupt image") from None
    return image


def _check_big_enough(width: int, height: int, options: IngestOptions) -> None:
    # We upscale by at most 2x; the square's edge is the short side (crop) or long side (pad).
    edge, side = (min(width, height), "short") if options.fit == "crop" else (max(width, height), "long")
    needed = math.ceil(options.resolution / 2)
    if edge < needed:
        raise Rejected(f"too small: {width}x{height}, needs at least {needed} px on the {side} side")


def _to_rgb(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        image = _sixteen_bit_to_l(image)
    if image.has_transparency_data:  # RGBA, LA, PA, and palette/L/RGB with a transparency key
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    # PIL's own I;16 -> L conversion clips at 255 (mid-grey would become white), so rescale.
    values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), mode="L")


def _to_square(image: Image.Image, options: IngestOptions) -> Image.Image:
    size = (options.resolution, options.resolution)
    if options.fit == "crop":
        return ImageOps.fit(image, size, method=Image.LANCZOS)
    return ImageOps.pad(image, size, method=Image.LANCZOS, color=options.background)


def _save_png(image: Image.Image, path: Path) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)   # twice as quick as the default, files ~10% larger
    _write(path, buffer.getvalue(), durable=False)


def _write(path: Path, data: bytes, durable: bool = True) -> None:
    """Whole or not at all (files.py), so a full disk never leaves a half-written file; it says
    what to do instead."""
    try:
        write_bytes(path, data, durable)
    except OSError as error:
        raise DatasetError(
            f"Could not write {path} ({error.strerror or error}); free disk space or choose another output folder."
        ) from error


# ---------------------------------------------------------------- manifest and public API


def read_manifest(dataset_dir: str | Path) -> dict:
    path = Path(dataset_dir) / "manifest.json"
    if not path.is_file():
        raise DatasetError(f"{dataset_dir} is not a dataset (no manifest.json); ingest images into it first.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path} is unreadable or not valid JSON ({error}); re-ingest the dataset.") from error
    if (not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT
            or not _is_int(manifest.get("resolution")) or not isinstance(manifest.get("images"), list)):
        raise DatasetError(f"{path} is not a format-{MANIFEST_FORMAT} dataset manifest; re-ingest the dataset.")
    return manifest


def _open_manifest(out_dir: Path, options: IngestOptions) -> dict:
    settings = {"resolution": options.resolution, "fit": options.fit, "background": list(options.background)}
    if not (out_dir / "manifest.json").exists():
        return {"format": MANIFEST_FORMAT, **settings, "images": [], "rejected": []}
    manifest = read_manifest(out_dir)
    for key, wanted in settings.items():
        if manifest.get(key) != wanted:
            raise DatasetError(
                f"{out_dir} was ingested with {key}={manifest.get(key)}, not {wanted}; "
                f"use the same {key} or a new output folder."
            )
    manifest.setdefault("rejected", [])
    return manifest


def _write_manifest(out_dir: Path, manifest: dict) -> None:
    _write(out_dir / "manifest.json", json.dumps(manifest, indent=2).encode("utf-8"))


def ingest(
    sources: Sequence[str | Path],
    out_dir: str | Path,
    options: IngestOptions = IngestOptions(),
    progress: Callable[[int, int, str], None] | None = None,
) -> IngestReport:
    out = Path(out_dir)
    manifest = _open_manifest(out, options)
    try:
        (out / "images").mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatasetError(f"Could not create the dataset folder {out} ({error.strerror or error}).") from error
    known = {entry["sha256"]: entry["source"] for entry in manifest["images"]}
    report = IngestReport(out=out)
    written: list[Path] = []
    with ExitStack() as open_archives:
        pending = deque(collect(sources, out.resolve(), open_archives))
        done, total = 0, len(pending)
        try:
            while pending:
                candidate = pending.popleft()
                if candidate.entries is None:
                    _ingest_candidate(candidate, options, known, manifest, report, written)
                else:                                  # a zip inside a zip: its entries come next
                    inner = _open_inner(candidate, manifest, report)
                    pending.extendleft(reversed(inner))
                    total += len(inner)
                done += 1
                if progress is not None:
                    progress(done, total, candidate.name)
        finally:
            # Also on a disk error or interruption: the manifest lists exactly the images written,
            # and they are on disk before it names them (one flush for them all: one per image
            # would cost a minute for 10,000 thumbnails).
            try:
                flush_to_disk(written)
            finally:
                _write_manifest(out, manifest)
    return report


def _open_inner(candidate: Candidate, manifest: dict, report: IngestReport) -> list[Candidate]:
    try:
        return candidate.entries()
    except Rejected as rejected:
        _record_rejection(candidate.name, rejected.reason, None, manifest, report)
        return []


def _ingest_candidate(candidate: Candidate, options: IngestOptions, known: dict[str, str],
                      manifest: dict, report: IngestReport, written: list[Path]) -> None:
    try:
        entry = _process(candidate, options, known, report.out / "images", written)
    except Rejected as rejected:
        _record_rejection(candidate.name, rejected.reason, rejected.sha256, manifest, report)
    except DatasetError:
        raise  # disk trouble writing output: stop the whole ingest
    except Exception as error:  # one odd file must never crash the whole ingest
        reason = f"could not read: {type(error).__name__}: {error}"
        _record_rejection(candidate.name, reason, None, manifest, report)
    else:
        known[entry["sha256"]] = candidate.name
        manifest["images"].append(entry)
        report.accepted.append(candidate.name)


def _record_rejection(name: str, reason: str, sha256: str | None, manifest: dict, report: IngestReport) -> None:
    manifest["rejected"].append({"source": name, "sha256": sha256, "status": "rejected", "reason": reason})
    report.rejected.append(Rejection(file=name, reason=reason))


def load_images(dataset_dir: str | Path, resolution: int) -> torch.Tensor:
    """All accepted images as a uint8 tensor N x 3 x resolution x resolution, in file-name order."""
    manifest = read_manifest(dataset_dir)
    stored = manifest["resolution"]
    if stored < resolution:
        raise DatasetError(f"dataset stored at {stored} px; re-ingest with --res {resolution} to train at {resolution}.")
    files = sorted(entry["file"] for entry in manifest["images"])
    if not files:
        raise DatasetError(f"dataset {dataset_dir} has no images; ingest some paintings into it first.")
    batch = np.empty((len(files), 3, resolution, resolution), dtype=np.uint8)
    for index, file in enumerate(files):
        batch[index] = _load_one(Path(dataset_dir) / file, resolution).transpose(2, 0, 1)
    return torch.from_numpy(batch)


def _load_one(path: Path, resolution: int) -> np.ndarray:
    try:
        with Image.open(path) as stored:
            image = stored.convert("RGB")
    except (FileNotFoundError, UnidentifiedImageError, *DECODE_ERRORS) as error:
        raise DatasetError(f"dataset image {path} is missing or unreadable ({error}); re-ingest the dataset.") from error
    if image.size != (resolution, resolution):
        image = image.resize((resolution, resolution), Image.LANCZOS)  # LANCZOS antialiases when shrinking
    return np.asarray(image)
