"""Walk exports and their sidecars (studio.explore, studio.export) and `python -m studio interpolate`."""
from __future__ import annotations

import hashlib
import json
import shutil
import threading

import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image

from conftest import altered_export

from frames import read_frames_zip
from studio import explore
from studio.cli import main
from studio.explore import (SidecarError, export_still, export_walk, open_model, read_sidecar, render_images,
                            walk_frames)
from studio.export import write_mp4
from studio.files import atomic_output
from studio.latent import Recipe, even_walk


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture
def run(tiny_run_dir, tmp_path):
    return shutil.copytree(tiny_run_dir, tmp_path / "tiny")


def moved_walk():
    """Two seeds and a slider state, as an artist collects them."""
    recipes = [Recipe(seed=3), Recipe(seed=17, psi=0.8), Recipe(seed=3, offsets=((0, 2.0), (4, -1.0)))]
    return even_walk(recipes, 12, mode="loop", easing="ease-in-out", hold=1)


def test_a_slider_moved_by_plus_a_then_minus_a_renders_the_same_image(run):
    model = open_model(run)
    recipe = Recipe(seed=7, psi=0.9)
    before = np.asarray(render_images(model, [recipe])[0])
    there = recipe.moved({1: 2.5})
    moved = np.asarray(render_images(model, [there])[0])
    back = np.asarray(render_images(model, [there.moved({1: 2.5 - 2.5})])[0])
    assert np.abs(moved.astype(float) - before).mean() > 1
    assert np.array_equal(back, before)


def test_the_sidecar_renders_exactly_the_same_frames_again(run, tmp_path):
    model = open_model(run)
    out = tmp_path / "exports" / "walk.zip"
    sidecar = export_walk(model, moved_walk(), out, fps=12, size=64)
    frames = read_frames_zip(out)
    assert frames.shape == (12, 64, 64, 3)
    facts = json.loads(sidecar.read_text())
    assert facts["generator"]["sha256"] and facts["frames"] == 12 and facts["frame_ms"] == 80
    assert facts["walk"]["keyframes"][0] == {"recipe": 3, "frames": 3, "hold": 1, "easing": "ease-in-out"}
    assert set(facts["directions"]["used"]) == {"0", "4"} and len(facts["directions"]["used"]["0"]["vector"]) == 16

    again_model, walk, fps, size = read_sidecar(sidecar)
    assert (walk, fps, size) == (moved_walk(), 12, 64)
    assert np.array_equal(walk_frames(again_model, walk, size), frames)

    code = main(["interpolate", "--from-sidecar", str(sidecar), "--out", str(tmp_path / "again.zip")])
    assert code == 0 and np.array_equal(read_frames_zip(tmp_path / "again.zip"), frames)


def test_a_sidecar_whose_generator_is_gone_or_changed_says_so(run, tmp_path, capsys):
    sidecar = export_walk(open_model(run), moved_walk(), tmp_path / "walk.gif", fps=12, size=64)
    (run / "generator.safetensors").write_bytes(altered_export(run / "generator.safetensors"))
    with pytest.raises(SidecarError, match="is not the generator walk.json was made from: its SHA-256"):
        read_sidecar(sidecar)

    (run / "generator.safetensors").unlink()
    assert main(["interpolate", "--from-sidecar", str(sidecar), "--out", str(tmp_path / "again.gif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the generator") and "is missing" in err[0]

    (tmp_path / "notes.json").write_text('{"shopping": "list"}')
    with pytest.raises(SidecarError, match="not a sidecar of a walk"):
        read_sidecar(tmp_path / "notes.json")


def test_interpolate_writes_a_looping_gif_and_prints_json_last(run, tmp_path, capsys):
    out = tmp_path / "walk.gif"
    code = main(["interpolate", str(run), "--seeds", "3,17,42", "--frames", "12", "--fps", "24", "--loop",
                 "--easing", "ease-in-out", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0
    result = last_json(captured.out)
    assert result == {"out": str(out), "frames": 12, "sidecar": str(tmp_path / "walk.json")}
    frames = iio.imread(out, index=None)
    assert frames.shape[:3] == (12, 256, 256)
    assert not np.array_equal(frames[0], frames[-1])                   # a loop does not repeat its first frame
    with Image.open(out) as gif:
        assert gif.info["loop"] == 0 and gif.info["duration"] == 40    # forever; 24 fps in whole 1/100 s
    assert "12/12 frames" in captured.err
    assert json.loads((tmp_path / "walk.json").read_text())["walk"]["mode"] == "loop"


def test_interpolate_along_a_direction_and_to_mp4(run, tmp_path, capsys):
    plain, moved = tmp_path / "plain.zip", tmp_path / "moved.mp4"
    assert main(["interpolate", str(run), "--seeds", "1,2", "--frames", "8", "--size", "64", "--out", str(plain)]) == 0
    assert main(["interpolate", str(run), "--seeds", "1,2", "--frames", "8", "--size", "100", "--ping-pong",
                 "--direction", "0=1.5", "--out", str(moved)]) == 0
    video = iio.imread(moved, index=None, plugin="FFMPEG")
    assert video.shape[:3] == (8, 112, 112)                            # padded up to H.264's 16 px blocks
    sidecar = json.loads(moved.with_suffix(".json").read_text())
    assert sidecar["walk"]["keyframes"][0]["recipe"] == {"seed": 1, "offsets": {"0": 1.5}}


@pytest.mark.parametrize("arguments,message", [
    (["--seeds", "1,2", "--out", "walk.webm"], "cannot export a webm"),
    (["--seeds", "1,2", "--out", "."], "cannot export a file without an extension"),
    (["--seeds", "1,2", "--out", "folder.gif"], "is a folder"),
    (["--seeds", "1,2", "--out", "notes.txt/walk.gif"], "cannot write notes.txt/walk.gif"),
    (["--seeds", "1,2", "--direction", "0=nan", "--out", "walk.gif"], "must be a finite number of σ, not 0=nan"),
    (["--seeds", "1,2", "--direction", "0=inf", "--out", "walk.gif"], "not 0=inf"),
    (["--seeds", f"1,{2**64}", "--out", "walk.gif"], f"a seed is a whole number from 0 to {2**64 - 1}"),
    (["--seeds", "1,-2", "--out", "walk.gif"], "not -2"),
    (["--seeds", "1,2", "--direction", "40=1", "--out", "walk.gif"], "direction 40 does not exist"),
    (["--seeds", "1,2,3", "--frames", "2", "--out", "walk.gif"], "too few for 3 keyframes"),
    (["--out", "walk.gif"], "give RUN_OR_GENERATOR and --seeds"),
    (["--seeds", "1,2", "--psi", "3", "--out", "walk.gif"], "psi must be in (0, 2]"),
])
def test_interpolate_explains_mistakes_in_one_line(run, tmp_path, capsys, monkeypatch, arguments, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.gif").mkdir()
    (tmp_path / "notes.txt").write_text("not a folder")
    assert main(["interpolate", str(run), *arguments]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not list(tmp_path.glob("walk.*"))                        # nothing written, not even a sidecar


def test_interpolate_refuses_a_bad_out_before_it_loads_anything(tmp_path, capsys):
    assert main(["interpolate", str(tmp_path / "no-such-run"), "--seeds", "1,2", "--out", "walk.webm"]) == 2
    assert "cannot export a webm" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--seeds", "1,2"], ["--frames", "60"], ["--loop"], ["--ping-pong"],
                                   ["--fps", "10", "--size", "64"], ["--direction", "0=1"], ["--psi", "1"]])
def test_a_sidecar_renders_its_own_walk_and_refuses_flags_that_would_change_it(run, tmp_path, capsys, flags):
    sidecar = export_walk(open_model(run), moved_walk(), tmp_path / "walk.zip", fps=12, size=64)
    assert main(["interpolate", "--from-sidecar", str(sidecar), *flags, "--out", str(tmp_path / "again.zip")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--from-sidecar renders the walk it records" in err[0]
    assert all(flag in err[0] for flag in flags if flag.startswith("--"))
    assert not (tmp_path / "again.zip").exists()


def test_the_contact_sheet_carries_its_recipe(run, tmp_path):
    sheet = tmp_path / "sheet.png"
    export_walk(open_model(run), moved_walk(), sheet, fps=12)
    with Image.open(sheet) as image:
        assert image.size == (3 * 128 + 4 * 4, 128 + 2 * 4)             # three keyframes in a row
        assert json.loads(image.text["gan-art-studio"])["walk"] == moved_walk().to_json()


def test_a_still_records_its_recipe_and_generator(run, tmp_path):
    model = open_model(run)
    recipe = Recipe(seed=5, psi=0.9, offsets=((2, -1.5),))
    with Image.open(export_still(model, recipe, tmp_path / "still.png")) as image:
        facts = json.loads(image.text["gan-art-studio"])
        assert image.size == (256, 256)
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(render_images(model, [recipe], 256)[0]))
    assert Recipe.from_json(facts["recipe"]) == recipe and facts["generator"]["sha256"] == model.sha256
    assert list(facts["directions"]["used"]) == ["2"]


def test_the_recorded_sha256_is_of_the_weights_that_render_even_when_the_file_is_replaced_meanwhile(
        run, tmp_path, monkeypatch):
    file = run / "generator.safetensors"
    rendered = file.read_bytes()
    newer = altered_export(file)
    load = explore.load_generator

    def load_while_the_trainer_saves(*args, **kwargs):     # a checkpoint replaces the export meanwhile
        loaded = load(*args, **kwargs)
        file.write_bytes(newer)
        return loaded
    monkeypatch.setattr(explore, "load_generator", load_while_the_trainer_saves)
    model = open_model(run)
    assert model.sha256 == hashlib.sha256(rendered).hexdigest() != hashlib.sha256(file.read_bytes()).hexdigest()
    assert export_still(model, Recipe(seed=1), tmp_path / "still.png")


def test_a_failed_export_leaves_the_earlier_file_whole_and_no_partial_file(run, tmp_path, monkeypatch):
    out = tmp_path / "exports" / "walk.gif"
    out.parent.mkdir()
    out.write_bytes(b"the walk exported before")

    def full_disk(frames, path, fps):
        path.write_bytes(b"half a GIF")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(explore, "write_gif", full_disk)
    with pytest.raises(OSError):
        export_walk(open_model(run), moved_walk(), out, fps=12, size=64)
    assert out.read_bytes() == b"the walk exported before"
    assert sorted(p.name for p in out.parent.iterdir()) == ["walk.gif", "walk.json"]   # its sidecar is written first


def test_two_writers_of_one_file_each_get_their_own_temporary_file(tmp_path):
    out = tmp_path / "walk.gif"
    both_inside, partials = threading.Barrier(2), []

    def write(text: str) -> None:
        with atomic_output(out) as partial:
            partials.append(partial)
            partial.write_text(text)
            both_inside.wait(timeout=60)
    writers = [threading.Thread(target=write, args=(text,)) for text in ("one", "two")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert len(set(partials)) == 2 and all(p.suffix == ".gif" and p.parent == tmp_path for p in partials)
    assert out.read_text() in ("one", "two") and list(tmp_path.iterdir()) == [out]


def test_mp4_frames_of_any_size_are_padded_for_the_encoder(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (4, 30, 50, 3), dtype=np.uint8)
    video = iio.imread(write_mp4(frames, tmp_path / "odd.mp4", fps=8), index=None, plugin="FFMPEG")
    assert video.shape == (4, 32, 64, 3)
