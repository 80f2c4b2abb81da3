"""Tests for studio.data: every kind of good and bad file is generated here, in tmp_path."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from studio import data, sources
from studio.data import DatasetError, IngestOptions, IngestReport, Rejection, ingest, load_images, read_manifest

RES = 32  # small training resolution keeps the tests fast; "too small" means under 16 px
OPTIONS = IngestOptions(resolution=RES)
EMOJI = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "emoji"
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


# ---------------------------------------------------------------- file makers


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def solid(color=RED, size=(64, 64), mode="RGB") -> Image.Image:
    return Image.new(mode, size, color)


def noise(size=(64, 64), seed=0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header claims the given size, followed by only a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + png_chunk(b"IEND", b""))


def half_and_half(left, right, size=(200, 100)) -> Image.Image:
    image = Image.new("RGB", size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def jpeg_rotated() -> bytes:
    """Stored 200x100 red|blue; EXIF orientation 6 means 'display rotated 90 degrees clockwise'."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(half_and_half(RED, BLUE), "JPEG", quality=95, exif=exif.tobytes())


def palette_png_with_transparency() -> bytes:
    """Left half transparent (index 0), right half opaque red (index 1)."""
    image = Image.new("P", (64, 64), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    image.paste(1, (32, 0, 64, 64))
    return encode(image, "PNG", transparency=0)


def gif_two_frames() -> bytes:
    first, second = solid(GREEN).convert("P"), solid(RED).convert("P")
    return encode(first, "GIF", save_all=True, append_images=[second], duration=100)


def write(folder: Path, name: str, content: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def stored_pixels(out: Path, report: IngestReport, source: str) -> np.ndarray:
    manifest = read_manifest(out)
    entry = next(e for e in manifest["images"] if e["source"] == source)
    return np.asarray(Image.open(out / entry["file"]))


def reasons(report: IngestReport) -> dict[str, str]:
    return {r.file: r.reason for r in report.rejected}


def near(pixel, color, tolerance=12) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(pixel, color))


# ---------------------------------------------------------------- good files


@pytest.fixture
def good_folder(tmp_path: Path) -> Path:
    src = tmp_path / "drop"
    write(src, "rgb.png", encode(solid(RED), "PNG"))
    write(src, "photo.jpg", jpeg_rotated())
    write(src, "web.webp", encode(solid(BLUE), "WEBP", lossless=True))
    write(src, "old.bmp", encode(solid(GREEN), "BMP"))
    write(src, "scan.tiff", encode(solid(BLUE), "TIFF"))
    write(src, "anim.gif", gif_two_frames())
    write(src, "sub/palette.png", palette_png_with_transparency())
    write(src, "print.jpg.cmyk", encode(solid((0, 255, 255, 0), mode="CMYK"), "JPEG", quality=95))
    write(src, "grey16.png", encode(Image.fromarray(np.full((64, 64), 32768, np.uint16)), "PNG"))
    write(src, "grey.png", encode(solid(100, mode="L"), "PNG"))
    write(src, "misnamed.txt", encode(solid(GREEN), "PNG"))  # content decides, not the extension
    return src


def test_every_good_format_is_accepted_and_normalised(good_folder: Path, tmp_path: Path):
    out = tmp_path / "dataset"
    report = ingest([good_folder], out, OPTIONS)

    assert report.rejected == []
    assert len(report.accepted) == 11
    for entry in read_manifest(out)["images"]:
        stored = Image.open(out / entry["file"])
        assert (stored.mode, stored.size) == ("RGB", (RES, RES))
        assert entry["file"] == f"images/{entry['sha256'][:16]}.png"

    assert near(stored_pixels(out, report, "rgb.png")[5, 5], RED)
    assert near(stored_pixels(out, report, "web.webp")[5, 5], BLUE)
    assert near(stored_pixels(out, report, "old.bmp")[5, 5], GREEN)
    assert near(stored_pixels(out, report, "scan.tiff")[5, 5], BLUE)
    assert near(stored_pixels(out, report, "misnamed.txt")[5, 5], GREEN)
    assert near(stored_pixels(out, report, "print.jpg.cmyk")[16, 16], RED, tolerance=30)
    assert near(stored_pixels(out, report, "grey.png")[5, 5], (100, 100, 100))


def test_exif_orientation_is_applied(good_folder: Path, tmp_path: Path):
    out = tmp_path / "dataset"
    report = ingest([good_folder], out, OPTIONS)
    pixels = stored_pixels(out, report, "photo.jpg")
    # Rotated clockwise the red left half ends on top; unrotated it would stay on the left.
    assert near(pixels[3, 3], RED, 30) and near(pixels[3, -4], RED, 30)
    assert near(pixels[-4, 3], BLUE, 30) and near(pixels[-4, -4], BLUE, 30)
    entry = next(e for e in read_manifest(out)["images"] if e["source"] == "photo.jpg")
    assert (entry["width"], entry["height"]) == (100, 200)  # as the painting is seen, upright


def test_gif_uses_first_frame(good_folder: Path, tmp_path: Path):
    out = tmp_path / "dataset"
    report = ingest([good_folder], out, OPTIONS)
    assert near(stored_pixels(out, report, "anim.gif")[16, 16], GREEN)


def test_sixteen_bit_grey_is_scaled_not_clipped(good_folder: Path, tmp_path: Path):
    out = tmp_path / "dataset"
    report = ingest([good_folder], out, OPTIONS)
    assert near(stored_pixels(out, report, "grey16.png")[16, 16], (128, 128, 128), tolerance=1)


@pytest.mark.parametrize("background", [WHITE, (0, 0, 255)])
def test_transparency_is_composited_onto_background(tmp_path: Path, background):
    source = write(tmp_path, "palette.png", palette_png_with_transparency())
    out = tmp_path / "dataset"
    report = ingest([source], out, IngestOptions(resolution=RES, background=background))
    pixels = stored_pixels(out, report, "palette.png")
    assert near(pixels[16, 2], background) and near(pixels[16, -3], RED)


def test_pad_keeps_whole_painting_on_background(tmp_path: Path):
    source = write(tmp_path, "wide.png", encode(half_and_half(RED, BLUE, (128, 64)), "PNG"))
    out = tmp_path / "dataset"
    report = ingest([source], out, IngestOptions(resolution=RES, fit="pad", background=(0, 255, 0)))
    pixels = stored_pixels(out, report, "wide.png")
    assert near(pixels[1, 16], GREEN) and near(pixels[16, 1], RED) and near(pixels[16, -2], BLUE)
    assert read_manifest(out)["fit"] == "pad"


# ---------------------------------------------------------------- bad files


@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    src = tmp_path / "drop"
    write(src, "a_original.png", encode(solid(RED), "PNG"))
    write(src, "z_copy.png", encode(solid(RED), "PNG"))
    write(src, "empty.png", b"")
    write(src, "notes.png", b"these are my notes, not a painting\n")
    write(src, "cut.png", encode(noise(), "PNG")[:3000])
    write(src, "cut.jpg", encode(noise(), "JPEG")[:2000])
    write(src, "header_only.png", b"\x89PNG\r\n\x1a\n")
    write(src, "tiny.png", encode(solid(RED, (10, 40)), "PNG"))
    write(src, "bomb.png", png_bomb(9_000, 9_000))  # 81 MP: over our 80 MP default
    write(src, "huge_bomb.png", png_bomb(20_000, 20_000))  # PIL's own guard fires first
    write(src, ".DS_Store", b"\x00\x00\x00\x01Bud1")
    write(src, "._a_original.png", b"\x00\x05\x16\x07")
    write(src, "Thumbs.db", b"\xd0\xcf\x11\xe0")
    write(src, "__MACOSX/x.png", encode(solid(RED), "PNG"))
    return src


def test_bad_files_are_rejected_with_a_reason_each(bad_folder: Path, tmp_path: Path):
    out = tmp_path / "dataset"
    report = ingest([bad_folder, tmp_path / "nowhere"], out, OPTIONS)

    assert report.accepted == ["a_original.png"]
    assert reasons(report) == {
        ".DS_Store": "system file, skipped",
        "._a_original.png": "system file, skipped",
        "Thumbs.db": "system file, skipped",
        "__MACOSX/x.png": "system file, skipped",
        "bomb.png": "image too large (decompression bomb guard): 9000x9000",
        "huge_bomb.png": "image too large (decompression bomb guard)",
        "cut.jpg": "truncated or corrupt image",
        "cut.png": "truncated or corrupt image",
        "empty.png": "empty file (0 bytes)",
        "header_only.png": "truncated or corrupt image",
        "notes.png": "not an image",
        "tiny.png": "too small: 10x40, needs at least 16 px on the short side",
        "z_copy.png": "duplicate of a_original.png",
        str(tmp_path / "nowhere"): "no such file or folder",
    }
    assert len(list((out / "images").iterdir())) == 1


def test_pad_measures_the_long_side_and_max_pixels_is_configurable(tmp_path: Path):
    source = write(tmp_path, "strip.png", encode(solid(RED, (12, 200)), "PNG"))
    big = write(tmp_path, "big.png", encode(solid(RED, (100, 100)), "PNG"))
    assert ingest([source], tmp_path / "pad", IngestOptions(resolution=RES, fit="pad")).rejected == []
    report = ingest([source, big], tmp_path / "crop", IngestOptions(resolution=RES, max_pixels=5_000))
    assert reasons(report) == {
        "strip.png": "too small: 12x200, needs at least 16 px on the short side",
        "big.png": "image too large (decompression bomb guard): 100x100",
    }


def test_pil_bomb_warning_is_a_rejection_when_max_pixels_is_raised(tmp_path: Path):
    source = write(tmp_path, "bomb.png", png_bomb(10_000, 10_000))  # over PIL's warning limit
    report = ingest([source], tmp_path / "dataset", IngestOptions(resolution=RES, max_pixels=10**9))
    assert reasons(report) == {"bomb.png": "image too large (decompression bomb guard)"}
    assert Image.MAX_IMAGE_PIXELS == 89_478_485  # PIL's global guard is left untouched


def test_output_folder_inside_a_dropped_folder_is_not_reingested(tmp_path: Path):
    write(tmp_path, "a.png", encode(solid(RED), "PNG"))
    out = tmp_path / "dataset"
    ingest([tmp_path], out, OPTIONS)
    report = ingest([tmp_path], out, OPTIONS)
    assert report.accepted == [] and reasons(report) == {"a.png": "duplicate of a.png"}


def test_manifest_records_accepted_and_rejected(bad_folder: Path, tmp_path: Path):
    out = tmp_path / "dataset"
    ingest([bad_folder], out, OPTIONS)
    manifest = json.loads((out / "manifest.json").read_text())
    assert {k: manifest[k] for k in ("format", "resolution", "fit", "background")} == {
        "format": 1, "resolution": RES, "fit": "crop", "background": [255, 255, 255]}
    [image] = manifest["images"]
    assert image["source"] == "a_original.png" and image["status"] == "accepted"
    assert (image["width"], image["height"]) == (64, 64)
    assert len(image["sha256"]) == 64 and (out / image["file"]).is_file()
    by_source = {r["source"]: r for r in manifest["rejected"]}
    assert by_source["z_copy.png"] == {"source": "z_copy.png", "sha256": image["sha256"],
                                       "status": "rejected", "reason": "duplicate of a_original.png"}
    assert by_source[".DS_Store"]["sha256"] is None
    assert list(out.rglob(".*")) == []                                # no temporary file left


def test_report_json_and_summary(bad_folder: Path, tmp_path: Path):
    out = tmp_path / "dataset"
    report = ingest([bad_folder], out, OPTIONS)
    as_json = report.to_json()
    assert set(as_json) == {"accepted", "rejected", "out"}
    assert as_json["accepted"] == 1 and as_json["out"] == str(out)
    assert {"file": "notes.png", "reason": "not an image"} in as_json["rejected"]
    json.dumps(as_json)

    small = IngestReport(out=Path("datasets/roses"), accepted=["a", "b"], rejected=[
        Rejection("c", "duplicate of a"), Rejection("d", "duplicate of b"), Rejection("e", "not an image")])
    assert small.summary() == "Accepted 2 images, rejected 3 (2 duplicates, 1 not an image) -> datasets/roses"


def test_zip_is_read_in_memory_and_cannot_escape(tmp_path: Path):
    archive = tmp_path / "drop" / "pack.zip"
    archive.parent.mkdir()
    evil = encode(solid(BLUE), "PNG")
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("paintings/", b"")
        zf.writestr("paintings/one.png", encode(solid(RED), "PNG"))
        zf.writestr("paintings/two.jpg", encode(solid(GREEN), "JPEG"))
        zf.writestr("../../evil.png", evil)
        zf.writestr("__MACOSX/paintings/._one.png", b"\x00\x05\x16\x07")
    out = tmp_path / "work" / "dataset"
    before = {p for p in tmp_path.rglob("*")}

    report = ingest([archive], out, OPTIONS)

    assert report.accepted == ["pack.zip:../../evil.png", "pack.zip:paintings/one.png", "pack.zip:paintings/two.jpg"]
    assert reasons(report) == {"pack.zip:__MACOSX/paintings/._one.png": "system file, skipped"}
    new_files = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    assert all(out in p.parents for p in new_files)
    assert not list(tmp_path.parent.glob("evil.png")) and not list(tmp_path.rglob("evil.png"))
    assert (out / "images" / f"{hashlib.sha256(evil).hexdigest()[:16]}.png").is_file()


def test_zip_bombs_and_broken_zips_are_rejected(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_FILE_BYTES", 1000)
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.png", b"\x00" * 100_000)  # compresses to ~100 bytes
    broken = write(tmp_path, "broken.zip", b"PK\x03\x04 not really a zip")
    report = ingest([archive, broken], tmp_path / "dataset", OPTIONS)
    assert reasons(report)["big.zip:zeros.png"].startswith("zip entry too large")
    assert reasons(report)["broken.zip"].startswith("not a valid zip archive")


def test_unexpected_error_in_one_file_does_not_stop_ingest(tmp_path: Path, monkeypatch):
    src = tmp_path / "drop"
    write(src, "a.png", encode(solid(RED), "PNG"))
    write(src, "b.png", encode(solid(BLUE), "PNG"))
    real = data._to_square

    def flaky(image, options):
        if near(image.getpixel((0, 0)), RED):
            raise ZeroDivisionError("boom")
        return real(image, options)

    monkeypatch.setattr(data, "_to_square", flaky)
    report = ingest([src], tmp_path / "dataset", OPTIONS)
    assert report.accepted == ["b.png"]
    assert reasons(report) == {"a.png": "could not read: ZeroDivisionError: boom"}


def test_disk_full_raises_and_leaves_manifest_consistent(tmp_path: Path, monkeypatch):
    src = tmp_path / "drop"
    for i, color in enumerate([RED, GREEN, BLUE]):
        write(src, f"{i}.png", encode(solid(color), "PNG"))
    real_write = data.write_bytes
    pngs_written = []

    def write_bytes(path, content, durable=True):
        if path.suffix == ".png":
            if pngs_written:
                raise OSError(errno.ENOSPC, "No space left on device")
            pngs_written.append(True)
        return real_write(path, content, durable)

    monkeypatch.setattr(data, "write_bytes", write_bytes)
    out = tmp_path / "dataset"
    with pytest.raises(DatasetError, match="No space left on device.*free disk space"):
        ingest([src], out, OPTIONS)
    manifest = read_manifest(out)
    assert [e["source"] for e in manifest["images"]] == ["0.png"]
    assert all((out / e["file"]).is_file() for e in manifest["images"])


def test_progress_is_reported_per_file(good_folder: Path, tmp_path: Path):
    calls = []
    ingest([good_folder], tmp_path / "dataset", OPTIONS, progress=lambda *args: calls.append(args))
    assert [c[0] for c in calls] == list(range(1, 12))
    assert {c[1] for c in calls} == {11}
    assert calls[-1][2] == "web.webp"


# ---------------------------------------------------------------- appending and loading


def test_second_ingest_appends_and_finds_old_duplicates(tmp_path: Path):
    first = tmp_path / "first"
    write(first, "old.png", encode(solid(RED), "PNG"))
    out = tmp_path / "dataset"
    ingest([first], out, OPTIONS)

    second = tmp_path / "second"
    write(second, "old_again.png", encode(solid(RED), "PNG"))
    write(second, "new.png", encode(solid(BLUE), "PNG"))
    report = ingest([second], out, OPTIONS)

    assert report.accepted == ["new.png"]
    assert reasons(report) == {"old_again.png": "duplicate of old.png"}
    assert [e["source"] for e in read_manifest(out)["images"]] == ["old.png", "new.png"]


def test_appending_with_other_settings_is_refused(tmp_path: Path):
    source = write(tmp_path, "a.png", encode(solid(RED), "PNG"))
    out = tmp_path / "dataset"
    ingest([source], out, OPTIONS)
    with pytest.raises(DatasetError, match="resolution=32, not 64"):
        ingest([source], out, IngestOptions(resolution=64))
    with pytest.raises(DatasetError, match="fit=crop, not pad"):
        ingest([source], out, IngestOptions(resolution=RES, fit="pad"))


def test_load_images_shape_order_and_resizing(tmp_path: Path):
    src = tmp_path / "drop"
    for i, color in enumerate([RED, GREEN, BLUE]):
        write(src, f"{i}.png", encode(solid(color), "PNG"))
    out = tmp_path / "dataset"
    ingest([src], out, OPTIONS)

    images = load_images(out, RES)
    assert images.shape == (3, 3, RES, RES) and images.dtype == torch.uint8
    assert torch.equal(images, load_images(out, RES))
    smaller = load_images(out, 16)
    assert smaller.shape == (3, 3, 16, 16)
    stored_colors = {tuple(img[:, 5, 5].tolist()) for img in smaller}
    assert stored_colors == {RED, GREEN, BLUE}


def test_load_images_errors_are_actionable(tmp_path: Path):
    with pytest.raises(DatasetError, match="is not a dataset"):
        load_images(tmp_path, RES)

    out = tmp_path / "dataset"
    ingest([write(tmp_path, "a.png", encode(solid(RED), "PNG"))], out, OPTIONS)
    with pytest.raises(DatasetError, match=r"^dataset stored at 32 px; re-ingest with --res 64 to train at 64"):
        load_images(out, 64)

    empty = tmp_path / "empty"
    ingest([write(tmp_path, "e.png", b"")], empty, OPTIONS)
    with pytest.raises(DatasetError, match="has no images"):
        load_images(empty, RES)

    (empty / "manifest.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        read_manifest(empty)


@pytest.mark.parametrize("bad", [
    {"resolution": 8}, {"resolution": 64.0}, {"fit": "stretch"},
    {"background": (300, 0, 0)}, {"background": (1, 2)}, {"max_pixels": 0},
])
def test_options_are_validated(bad):
    with pytest.raises(ValueError):
        IngestOptions(**bad)


@pytest.mark.skipif(not EMOJI.is_dir(), reason="shared emoji dataset not available")
def test_real_emoji_dataset(tmp_path: Path):
    sources = sorted(EMOJI.glob("*.png"))[:20]
    out = tmp_path / "emoji"
    report = ingest(sources, out, IngestOptions(resolution=64))
    assert report.rejected == [] and len(report.accepted) == 20
    images = load_images(out, 64)
    assert images.shape == (20, 3, 64, 64)
    for image in images:
        assert 0 < image.float().mean() < 255 and len(torch.unique(image)) > 2
