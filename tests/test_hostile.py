"""The hostile-file corpus: every kind of file an artist may drop, through `python -m studio ingest`
and through the Dataset tab's handler. Each kind is accepted as it should be or left out with its
reason; nothing crashes, hangs or holds every picture in memory.

The corpus is one folder with a subfolder per kind, ingested once by each route; each kind is
then one test per route, which compares what became of its files with the table below.
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from studio import formats, sources
from studio.ui.dataset_tab import DatasetTab
from studio.workspace import Workspace
from test_data import (BLUE, RED, encode, gif_two_frames, jpeg_rotated, noise, palette_png_with_transparency,
                       png_bomb, png_chunk, solid)

RES = 64                 # the smallest stored size the Dataset tab offers; "too small" means under 32 px
THUMBNAILS = 10_000
THUMBNAIL_PX = 96        # decoded, 27 KB each: holding all 10,000 would take 276 MB
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
# Peak memory of one ingest over that of ingesting a single painting: well above what ingest
# needs for the corpus (its manifest and file list), well under one leak of every decoded
# thumbnail, or of the bomb's 300 MB of pixels.
MEMORY_HEADROOM_MB = 150

CORRUPT, NOT_IMAGE = "truncated or corrupt image", "not an image"


def accepted(width: int, height: int) -> str:
    """The outcome of an accepted file, with the size of the painting as seen upright."""
    return f"accepted {width}x{height}"


class Prefix(str):
    """An expected reason whose end (a library's error message) may vary."""


# ---------------------------------------------------------------- file makers


def zlib_bomb(width: int, height: int) -> bytes:
    """A whole, valid PNG of black pixels: a few hundred KB that decode to width*height*3 bytes."""
    packer, row = zlib.compressobj(9), b"\x00" * (1 + 3 * width)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", pixels) + png_chunk(b"IEND", b"")


def psd(width: int = 64, height: int = 64) -> bytes:
    """A flat 8-bit RGB Photoshop file (one that Pillow itself can open)."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, height, width, 8, 3)
    empty_sections = struct.pack(">III", 0, 0, 0)          # colour mode data, resources, layers
    return header + empty_sections + b"\x00\x00" + bytes([200]) * (width * height * 3)   # raw planar pixels


def zip_of(entries: dict[str, bytes], flags_set: int = 0, flags_cleared: int = 0) -> bytes:
    """A zip of `entries`, stored uncompressed; its entries' general-purpose flags changed as
    asked (in the local headers and the central directory), which zipfile cannot do itself."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    data = bytearray(buffer.getvalue())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = data.find(signature)
        while start != -1:
            flags = int.from_bytes(data[start + offset:start + offset + 2], "little")
            data[start + offset:start + offset + 2] = ((flags | flags_set) & ~flags_cleared).to_bytes(2, "little")
            start = data.find(signature, start + 4)
    return bytes(data)


def png(colour, size=(64, 64), mode="RGB") -> bytes:
    """A flat painting; duplicates are found by content, so each accepted one has its own colour."""
    return encode(solid(colour, size, mode), "PNG")


def thumbnails(folder: Path) -> None:
    """10,000 distinct small paintings (one pixel tells each apart), stored small on disk."""
    pixels = np.full((THUMBNAIL_PX, THUMBNAIL_PX, 3), 90, np.uint8)
    folder.mkdir(parents=True)
    for index in range(THUMBNAILS):
        pixels[0, 0] = (index % 256, index // 256, 0)
        Image.fromarray(pixels).save(folder / f"t{index:05d}.png", compress_level=1)


def files(named: dict[str, Callable[[], bytes]]) -> Callable[[Path], None]:
    """A maker writing one file per entry (its path in the kind's folder: its content's maker)."""
    def make(folder: Path) -> None:
        for name, content in named.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content())
    return make


def symlink_loop(folder: Path) -> None:
    files({"painting.png": lambda: png((19, 20, 21))})(folder)
    os.symlink(".", folder / "self")                  # a folder link back to where it is
    os.symlink("b.png", folder / "a.png")             # two file links pointing at each other
    os.symlink("a.png", folder / "b.png")
    os.symlink("gone.png", folder / "broken.png")


def named_pipe(folder: Path) -> None:
    folder.mkdir()
    os.mkfifo(folder / "pipe.png")                    # reading it would wait for a writer forever


def unreadable(folder: Path) -> None:
    files({"locked.png": lambda: png((22, 23, 24)), "locked/inside.png": lambda: png((25, 26, 27))})(folder)
    os.chmod(folder / "locked.png", 0)
    os.chmod(folder / "locked", 0)


def odd_names(folder: Path) -> None:
    folder.mkdir()
    (folder / "été.png").write_bytes(png((28, 29, 30)))
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.png"), "wb") as file:   # Latin-1, not UTF-8
        file.write(png((31, 32, 33)))


def nested_zips() -> bytes:
    inner = zip_of({"a.png": png((4, 5, 6))})
    middle = zip_of({"deep.zip": zip_of({"b.png": png((7, 8, 9))})})
    return zip_of({"c.png": png((1, 2, 3)), "inner.zip": inner, "middle.zip": middle, "broken.zip": b"PK\x03\x04 no"})


# ---------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Kind:
    folder: str                            # its subfolder in the corpus, and the test's id
    make: Callable[[Path], None]           # writes its files into that folder
    outcomes: dict[str, str]               # name inside the folder -> accepted(w, h) or the reason
    unreadable_as_root: bool = False       # root reads everything: see ingest_through_the_ui


KINDS = [
    Kind("truncated-png", files({"cut.png": lambda: encode(noise(), "PNG")[:3000]}), {"cut.png": CORRUPT}),
    Kind("truncated-jpeg", files({"cut.jpg": lambda: encode(noise(), "JPEG")[:2000]}), {"cut.jpg": CORRUPT}),
    Kind("zero-byte", files({"empty.png": lambda: b""}), {"empty.png": "empty file (0 bytes)"}),
    Kind("text-renamed-png", files({"notes.png": lambda: b"my notes, not a painting\n"}), {"notes.png": NOT_IMAGE}),
    Kind("decompression-bomb", files({"bomb.png": lambda: zlib_bomb(10_000, 10_000)}),
         {"bomb.png": "image too large (decompression bomb guard)"}),
    Kind("huge-dimensions", files({"huge.png": lambda: png_bomb(9_000, 9_000)}),
         {"huge.png": "image too large (decompression bomb guard): 9000x9000"}),
    Kind("one-pixel", files({"dot.png": lambda: png(RED, (1, 1))}),
         {"dot.png": "too small: 1x1, needs at least 32 px on the short side"}),
    Kind("cmyk", files({"print.jpg": lambda: encode(solid((0, 255, 255, 0), mode="CMYK"), "JPEG")}),
         {"print.jpg": accepted(64, 64)}),
    Kind("sixteen-bit", files({"grey16.png": lambda: encode(Image.fromarray(np.full((64, 64), 30000, np.uint16)), "PNG")}),
         {"grey16.png": accepted(64, 64)}),
    Kind("palette-transparency", files({"palette.png": palette_png_with_transparency}), {"palette.png": accepted(64, 64)}),
    Kind("grey-alpha", files({"la.png": lambda: png((100, 128), mode="LA")}), {"la.png": accepted(64, 64)}),
    Kind("animated-gif", files({"anim.gif": gif_two_frames}), {"anim.gif": accepted(64, 64)}),
    Kind("exif-rotated", files({"photo.jpg": jpeg_rotated}), {"photo.jpg": accepted(100, 200)}),
    Kind("avif", files({"web.avif": lambda: encode(solid(BLUE), "AVIF")}), {"web.avif": accepted(64, 64)}),
    Kind("svg", files({"logo.svg": lambda: b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" '
                                       b'width="64" height="64"><rect width="64" height="64" fill="red"/></svg>\n'}),
         {"logo.svg": formats.SVG}),
    Kind("psd", files({"layers.psd": psd}), {"layers.psd": formats.PSD}),
    Kind("heic", files({"phone.heic": lambda: struct.pack(">I", 24) + b"ftypheic\0\0\0\0mif1heic" + bytes(200)}),
         {"phone.heic": formats.HEIC}),
    Kind("pdf", files({"scan.pdf": lambda: b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"}),
         {"scan.pdf": formats.PDF}),
    Kind("gimp-xcf", files({"work.xcf": lambda: b"gimp xcf v011\x00" + b"\x00" * 64}), {"work.xcf": formats.XCF}),
    Kind("krita", files({"work.kra": lambda: zip_of({"mimetype": b"application/x-krita"})}), {"work.kra": formats.KRITA}),
    Kind("corrupt-zip", files({"broken.zip": lambda: b"PK\x03\x04 not really a zip"}),
         {"broken.zip": Prefix("not a valid zip archive")}),
    Kind("zip-slip", files({"slip.zip": lambda: zip_of({"../../evil.png": png((10, 11, 12)),
                                                        "/etc/evil2.png": png((13, 14, 15))})}),
         {"slip.zip:../../evil.png": accepted(64, 64), "slip.zip:/etc/evil2.png": accepted(64, 64)}),
    Kind("nested-zips", files({"outer.zip": nested_zips}), {
        "outer.zip:c.png": accepted(64, 64),
        "outer.zip:inner.zip:a.png": accepted(64, 64),                  # one level down is opened
        "outer.zip:middle.zip:deep.zip": "a zip inside a zip inside a zip is not opened: unzip the outer ones first",
        "outer.zip:broken.zip": Prefix("not a valid zip archive")}),
    Kind("password-zip", files({"locked.zip": lambda: zip_of({"secret.png": png((34, 35, 36))},
                                                             flags_set=sources.ZIP_ENCRYPTED_FLAG)}),
         {"locked.zip:secret.png": "password-protected zip entry: unzip the archive yourself and drop the folder"}),
    Kind("mac-zip-names", files({"mac.zip": lambda: zip_of({"rosé.png": png((16, 17, 18))},
                                                          flags_cleared=sources.ZIP_UTF8_FLAG)}),
         {"mac.zip:rosé.png": accepted(64, 64)}),
    Kind("symlink-loop", symlink_loop, {
        "painting.png": accepted(64, 64), "self/": "link to a folder already read (a symlink loop), not followed",
        "a.png": "symlink loop, skipped", "b.png": "symlink loop, skipped",
        "broken.png": "broken link (what it points to is gone), skipped"}),
    Kind("named-pipe", named_pipe, {"pipe.png": "not a file (a device, pipe or socket), skipped"}),
    Kind("unreadable", unreadable, {
        "locked.png": "cannot be read: permission denied (check who may read the file)",
        "locked/": "folder cannot be read (Permission denied)"}, unreadable_as_root=True),
    Kind("non-utf8-names", odd_names, {"été.png": accepted(64, 64), "caf\ufffd.png": accepted(64, 64)}),
    Kind("same-names", files({"a/painting.png": lambda: png(RED), "b/painting.png": lambda: png(BLUE),
                             "c/painting.png": lambda: png(RED)}),
         {"a/painting.png": accepted(64, 64), "b/painting.png": accepted(64, 64),
          "c/painting.png": "duplicate of same-names/a/painting.png"}),
    Kind("ten-thousand-thumbnails", lambda folder: thumbnails(folder / "thumbs"),
         {f"thumbs/t{i:05d}.png": accepted(THUMBNAIL_PX, THUMBNAIL_PX) for i in range(THUMBNAILS)}),
    Kind("no-images", files({"readme.txt": lambda: b"read me\n",
                             "letter.docx": lambda: zip_of({"word/document.xml": b"<w/>"})}),
         {"readme.txt": NOT_IMAGE, "letter.docx": NOT_IMAGE}),
]
KIND_IDS = [kind.folder for kind in KINDS]


def _file_names(kind: Kind) -> dict[str, str]:
    """The outcomes keyed by the names ingest shows: the path in the corpus."""
    return {f"{kind.folder}/{name}": outcome for name, outcome in kind.outcomes.items()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    for kind in KINDS:
        kind.make(root / kind.folder)
    yield root
    for kind in KINDS:                                  # let the tmp folder be cleaned away
        for path in (root / kind.folder).rglob("*"):
            if not path.is_symlink():
                path.chmod(0o755)


# ---------------------------------------------------------------- the two routes


@dataclass
class Result:
    outcomes: dict[str, str]    # shown name -> accepted(w, h) or the reason
    manifest: dict
    dataset: Path


def outcomes_of(dataset: Path, rejected: list[tuple[str, str]]) -> dict[str, str]:
    manifest = json.loads((dataset / "manifest.json").read_text(encoding="utf-8"))
    found = {entry["source"]: accepted(entry["width"], entry["height"]) for entry in manifest["images"]}
    assert not set(found) & {name for name, _ in rejected}
    return {**found, **dict(rejected)}


def run_ingest(args: list[str], folder: Path) -> tuple[subprocess.CompletedProcess, float]:
    """`python -m studio ingest ARGS` and its peak resident memory in MB, as the kernel counted
    it for that process alone (wait4)."""
    with open(folder / "stdout", "w+b") as stdout, open(folder / "stderr", "w+b") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "studio", "ingest", *args], stdout=stdout, stderr=stderr,
                                   stdin=subprocess.DEVNULL, cwd=folder, env=os.environ.copy())
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0), stderr.seek(0)
        done = subprocess.CompletedProcess(process.args, process.returncode, stdout.read().decode(), stderr.read().decode())
    return done, usage.ru_maxrss / 1024                  # Linux counts it in KB


@pytest.fixture(scope="module")
def baseline_mb(tmp_path_factory) -> float:
    """Peak memory of ingesting one painting: the interpreter, torch, PIL and the studio."""
    folder = tmp_path_factory.mktemp("baseline")
    (folder / "one.png").write_bytes(png(RED))
    done, peak = run_ingest(["one.png", "--out", "dataset", "--res", str(RES)], folder)
    assert done.returncode == 0, done.stderr
    return peak


@pytest.fixture(scope="module")
def through_the_cli(corpus, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    done, peak = run_ingest([str(corpus), "--out", "dataset", "--res", str(RES)], folder)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])      # the last line is JSON
    rejected = [(r["file"], r["reason"]) for r in report["rejected"]]
    dataset = folder / "dataset"
    manifest = json.loads((dataset / "manifest.json").read_text(encoding="utf-8"))
    assert report["accepted"] == len(manifest["images"])
    return Result(outcomes_of(dataset, rejected), manifest, dataset), peak, done


@pytest.fixture(scope="module")
def through_the_ui(corpus, tmp_path_factory) -> Result:
    """The Dataset tab's handler, given the corpus folder. As root every file can be read, so
    there the refusal the system gives anyone else is made to happen where ingest opens the
    file or lists the folder."""
    workspace = Workspace(tmp_path_factory.mktemp("ui") / "ws")
    with pytest.MonkeyPatch.context() as patch:
        if AS_ROOT:
            locked = [corpus / "unreadable" / "locked.png", corpus / "unreadable" / "locked"]
            real_open, real_scandir = open, os.scandir

            def refuse(opener):
                def open_unless_locked(path, *args, **kwargs):
                    if Path(os.fsdecode(path)) in locked:
                        raise PermissionError(13, "Permission denied", str(path))
                    return opener(path, *args, **kwargs)
                return open_unless_locked
            patch.setattr(sources, "open", refuse(real_open), raising=False)
            patch.setattr(os, "scandir", refuse(real_scandir))
        pick, summary, gallery, rejected, *_ = DatasetTab(workspace).ingest(
            [str(corpus)], None, "hostile", RES, "crop", "#ffffff", progress=lambda *args, **kwargs: None)
    rows = [tuple(row) for row in rejected.value["data"]]
    dataset = workspace.dataset_dir("hostile")
    result = Result(outcomes_of(dataset, rows), json.loads((dataset / "manifest.json").read_text()), dataset)
    accepted_count = sum(o.startswith("accepted") for o in result.outcomes.values())
    assert f"Accepted **{accepted_count}**, rejected **{len(rows)}**" in summary
    assert rejected.visible and len(gallery) == 48
    for cell in (text for row in rows for text in row):    # the page is sent as UTF-8 JSON
        cell.encode("utf-8")
    return result


# ---------------------------------------------------------------- each kind, each route


def check(kind: Kind, result: Result) -> None:
    expected = _file_names(kind)
    got = {name: outcome for name, outcome in result.outcomes.items() if name.startswith(kind.folder + "/")}
    assert set(got) == set(expected)
    for name, outcome in expected.items():
        if isinstance(outcome, Prefix):
            assert got[name].startswith(outcome), name
        else:
            assert got[name] == outcome, name


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_each_kind_through_the_cli(kind, through_the_cli):
    if kind.unreadable_as_root and AS_ROOT:
        pytest.skip("as root every file is readable; the Dataset tab's run makes the refusal happen")
    check(kind, through_the_cli[0])


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
def test_each_kind_through_the_dataset_tab(kind, through_the_ui):
    check(kind, through_the_ui)


@pytest.mark.parametrize("route", ["cli", "ui"])
def test_every_accepted_painting_is_stored_as_a_square_and_nothing_escapes(route, through_the_cli, through_the_ui,
                                                                           tmp_path_factory):
    result = through_the_cli[0] if route == "cli" else through_the_ui
    stored = sorted((result.dataset / "images").iterdir())
    assert len(stored) == len(result.manifest["images"]) > THUMBNAILS
    for entry in result.manifest["images"][:50] + result.manifest["images"][-50:]:
        with Image.open(result.dataset / entry["file"]) as image:
            assert (image.mode, image.size) == ("RGB", (RES, RES))
    assert not list(tmp_path_factory.getbasetemp().rglob("evil*.png"))     # the zip's ../../ went nowhere
    assert not Path("/etc/evil2.png").exists()


def test_the_cli_names_each_rejection_and_ends_with_json(through_the_cli):
    result, _, done = through_the_cli
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith(f"Accepted {len(result.manifest['images'])} images, rejected")
    assert "unsupported formats" in lines[0] and "symlink loops" in lines[0]
    assert f"  rejected psd/layers.psd: {formats.PSD}" in lines


# ---------------------------------------------------------------- memory and limits


def test_memory_stays_bounded_on_the_corpus_and_on_a_bomb(through_the_cli, baseline_mb, tmp_path):
    _, corpus_peak, _ = through_the_cli                   # 10,000 thumbnails among the rest
    (tmp_path / "bomb.png").write_bytes(zlib_bomb(10_000, 10_000))
    done, bomb_peak = run_ingest(["bomb.png", "--out", "dataset", "--res", str(RES)], tmp_path)
    assert "decompression bomb guard" in done.stdout
    assert corpus_peak < baseline_mb + MEMORY_HEADROOM_MB, (corpus_peak, baseline_mb)
    assert bomb_peak < baseline_mb + MEMORY_HEADROOM_MB, (bomb_peak, baseline_mb)


def test_ten_thousand_loose_files_are_one_drop_too_many_for_the_default_limit(corpus, tmp_path):
    workspace = Workspace(tmp_path / "ws")
    thumbs = sorted(str(p) for p in (corpus / "ten-thousand-thumbnails" / "thumbs").iterdir())
    with pytest.raises(gr.Error, match="10,000 files are more than the 5,000.*--max-upload-files"):
        DatasetTab(workspace).ingest(thumbs, None, "thumbs", RES, "crop", "#ffffff", progress=lambda *a, **k: None)
    assert workspace.dataset_names() == []                  # nothing of the drop was stored
