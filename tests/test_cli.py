"""Tests for `python -m studio`: in-process through studio.cli.main (fast), plus one real subprocess."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import needs_inception
from studio.checkpoint import latest_checkpoint, list_checkpoints
from studio.cli import main
from studio.cli_common import CountProgress

TINY_TRAIN = ["--res", "32", "--width", "8", "--batch", "4", "--precision", "fp32", "--device", "cpu"]


def last_json(text: str) -> dict:
    lines = text.strip().splitlines()
    assert lines, "nothing on stdout"
    return json.loads(lines[-1])


def png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


# ---------------------------------------------------------------- ingest
def test_ingest_prints_a_summary_and_json_last(shapes_dir, tmp_path, capsys):
    src = tmp_path / "drop"
    src.mkdir()
    for name in ("shape00.png", "shape01.png", "shape02.png"):
        shutil.copy(shapes_dir / name, src / name)
    shutil.copy(shapes_dir / "shape00.png", src / "zz_copy.png")
    (src / "notes.txt").write_text("not a painting")
    out = tmp_path / "dataset"

    code = main(["ingest", str(src), "--out", str(out), "--res", "32"])

    captured = capsys.readouterr()
    assert code == 0
    assert "Accepted 3 images, rejected 2" in captured.out
    assert "rejected notes.txt: not an image" in captured.out
    result = last_json(captured.out)
    assert set(result) == {"accepted", "rejected", "out"}
    assert result["accepted"] == 3 and result["out"] == str(out)
    assert {r["file"]: r["reason"] for r in result["rejected"]} == {
        "notes.txt": "not an image", "zz_copy.png": "duplicate of shape00.png"}
    assert len(list((out / "images").glob("*.png"))) == 3
    assert "Traceback" not in captured.err


def test_ingest_progress_in_a_log_is_whole_lines_not_one_per_file(shapes_dir, tmp_path, capsys):
    src = tmp_path / "drop"
    src.mkdir()
    for i, image in enumerate(sorted(shapes_dir.glob("*.png"))[:12]):
        shutil.copy(image, src / f"painting{i:02d}.png")

    assert main(["ingest", str(src), "--out", str(tmp_path / "dataset"), "--res", "32"]) == 0

    err = capsys.readouterr().err          # captured, so not a terminal
    assert "\r" not in err
    assert err.splitlines() == ["  1/12 painting00.png", "  12/12 painting11.png"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_rewrites_one_line_then_ends_it(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    progress = CountProgress()
    progress(5, 100, "a-painting-with-a-long-name.png")
    progress(100, 100, "b.png")
    first = "  5/100 a-painting-with-a-long-name.png"
    assert sys.stderr.getvalue() == f"\r{first}\r{'  100/100 b.png'.ljust(len(first))}\n"


# ---------------------------------------------------------------- train
def test_train_then_resume(dataset32, tmp_path, capsys):
    run_dir = tmp_path / "run"

    code = main(["train", str(dataset32), "--out", str(run_dir), *TINY_TRAIN, "--steps", "3"])

    captured = capsys.readouterr()
    assert code == 0
    result = last_json(captured.out)
    assert result["step"] == 3 and result["images_seen"] == 12 and result["run"] == str(run_dir)
    assert result["numerics"].startswith("cpu fp32")
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-000000003.pt"]
    assert (run_dir / "generator.safetensors").is_file() and (run_dir / "samples" / "step-000000003.png").is_file()
    assert "Traceback" not in captured.err

    code = main(["train", str(dataset32), "--out", str(run_dir), "--resume", "--steps", "5"])

    captured = capsys.readouterr()
    assert code == 0
    assert "Resuming" in captured.out and "at step 3" in captured.out
    result = last_json(captured.out)
    assert result["step"] == 5 and result["images_seen"] == 20
    assert latest_checkpoint(run_dir)[1]["step"] == 5
    assert result["metrics"] is None                                  # KID only when asked for


@needs_inception
def test_train_can_measure_kid_as_it_goes(dataset32, tmp_path, capsys):
    run_dir = tmp_path / "run"
    code = main(["train", str(dataset32), "--out", str(run_dir), *TINY_TRAIN, "--steps", "2",
                 "--kid-minutes", "30", "--kid-samples", "8"])
    captured = capsys.readouterr()
    assert code == 0
    assert "step 2: KID" in captured.out
    measured = last_json(captured.out)["metrics"]
    assert measured["step"] == 2 and measured["n_fake"] == 8 and measured["kid"] > 0
    assert [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [measured]


# ---------------------------------------------------------------- generate
def test_generate_a_grid(tiny_run_dir, tmp_path, capsys):
    out = tmp_path / "grid.png"

    code = main(["generate", str(tiny_run_dir), "--n", "4", "--out", str(out)])

    assert code == 0
    result = last_json(capsys.readouterr().out)
    assert result["seeds"] == [0, 1, 2, 3] and result["files"] == [str(out)] and result["resolution"] == 32
    assert png(out).shape == (2 * 34 + 2, 2 * 34 + 2, 3)     # 2x2 tiles of 32 px with 2 px gaps


def test_generate_one_png_per_seed_into_a_folder(tiny_run_dir, tmp_path, capsys):
    folder = tmp_path / "samples"

    code = main(["generate", str(tiny_run_dir / "generator.safetensors"), "--n", "4", "--out", f"{folder}/"])

    assert code == 0
    result = last_json(capsys.readouterr().out)
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == [f"seed{s:06d}.png" for s in range(4)]
    assert result["files"] == [str(f) for f in files]
    images = [png(f) for f in files]
    assert all(image.shape == (32, 32, 3) for image in images)
    assert not np.array_equal(images[0], images[1])

    # Seed 0 is the same picture in a grid as on its own.
    grid = tmp_path / "grid.png"
    assert main(["generate", str(tiny_run_dir), "--n", "4", "--out", str(grid)]) == 0
    assert np.array_equal(png(grid)[2:34, 2:34], images[0])


def test_generate_with_a_later_first_seed(tiny_run_dir, tmp_path, capsys):
    assert main(["generate", str(tiny_run_dir), "--n", "2", "--seed", "2", "--out", f"{tmp_path}/a/"]) == 0
    assert main(["generate", str(tiny_run_dir), "--n", "4", "--out", f"{tmp_path}/b/"]) == 0
    assert last_json(capsys.readouterr().out)["seeds"] == [0, 1, 2, 3]
    assert np.array_equal(png(tmp_path / "a" / "seed000002.png"), png(tmp_path / "b" / "seed000002.png"))


# ---------------------------------------------------------------- user errors
def _text_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.pt"
    path.write_text("this is not a checkpoint\n")
    return path


USER_ERRORS = {
    "train: missing dataset folder": (
        lambda tmp, run, data: ["train", str(tmp / "no-such-dataset"), "--out", str(tmp / "r"), *TINY_TRAIN,
                                "--steps", "1"],
        "is not a dataset"),
    "train: bad resolution": (
        lambda tmp, run, data: ["train", str(data), "--out", str(tmp / "r"), *TINY_TRAIN, "--res", "48"],
        "power of two"),
    "train: resume without a run": (
        lambda tmp, run, data: ["train", str(data), "--out", str(tmp / "r"), "--resume", "--steps", "1"],
        "cannot resume"),
    "train: too few KID samples": (
        lambda tmp, run, data: ["train", str(data), "--out", str(tmp / "r"), *TINY_TRAIN, "--steps", "1",
                                "--kid-minutes", "1", "--kid-samples", "3"],
        "at least 4 samples"),
    "generate: nonexistent checkpoint": (
        lambda tmp, run, data: ["generate", str(tmp / "missing.pt"), "--out", str(tmp / "g.png")],
        "does not exist"),
    "generate: text file as checkpoint": (
        lambda tmp, run, data: ["generate", str(_text_file(tmp)), "--out", str(tmp / "g.png")],
        "damaged or not a checkpoint file"),
    "generate: folder without a run": (
        lambda tmp, run, data: ["generate", str(data), "--out", str(tmp / "g.png")],
        "no usable checkpoint"),
    "generate: --out with .jpg": (
        lambda tmp, run, data: ["generate", str(run), "--n", "2", "--out", str(tmp / "g.jpg")],
        "should end in .png"),
}


def run_user_error(case, tmp_path, tiny_run_dir, dataset32, capsys):
    build, words = USER_ERRORS[case]
    code = main(build(tmp_path, tiny_run_dir, dataset32))
    captured = capsys.readouterr()
    return code, captured, words


@pytest.mark.parametrize("case", list(USER_ERRORS))
def test_user_errors_exit_2_with_an_error_line_and_no_traceback(case, tmp_path, tiny_run_dir, dataset32, capsys):
    code, captured, words = run_user_error(case, tmp_path, tiny_run_dir, dataset32, capsys)
    assert code == 2
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("error: ") and words in last
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "g.jpg").exists()


@pytest.mark.parametrize("case", list(USER_ERRORS))
def test_user_errors_are_one_line_on_stderr(case, tmp_path, tiny_run_dir, dataset32, capsys):
    code, captured, _ = run_user_error(case, tmp_path, tiny_run_dir, dataset32, capsys)
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_bad_option_values_exit_2_without_traceback(dataset32, tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["train", str(dataset32), "--out", str(tmp_path / "r"), "--steps", "0"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "--steps: 0 must be greater than zero" in err and "Traceback" not in err


def test_help_lists_the_commands_and_the_studio_options(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert all(word in out for word in ("ingest", "train", "generate", "--workspace", "--port", "--no-browser"))


def test_no_command_opens_the_studio(monkeypatch, tmp_path):
    import studio.ui.app
    from studio.ui.dataset_tab import UploadLimits

    calls = []
    monkeypatch.setattr(studio.ui.app, "launch", lambda *args, **kwargs: calls.append((args, kwargs)) or 0)
    assert main(["--workspace", str(tmp_path), "--port", "7999", "--no-browser"]) == 0
    assert main([]) == 0
    defaults = {"auth": None, "uploads": UploadLimits()}      # this computer only: no password needed
    assert calls == [((tmp_path, "127.0.0.1", 7999), {"open_browser": False, **defaults}),
                     ((Path("."), "127.0.0.1", None), {"open_browser": True, **defaults})]


def test_the_headless_commands_do_not_load_gradio():
    done = subprocess.run([sys.executable, "-c", "import sys, studio.cli; sys.exit('gradio' in sys.modules)"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- the real entry point
def test_python_dash_m_studio_runs(tiny_run_dir, tmp_path):
    out = tmp_path / "grid.png"
    done = subprocess.run(
        [sys.executable, "-m", "studio", "generate", str(tiny_run_dir), "--n", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=os.environ.copy())
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    result = last_json(done.stdout)
    assert result["files"] == [str(out)] and result["seeds"] == [0, 1]
    assert png(out).shape == (34 + 2, 2 * 34 + 2, 3)          # 1 row of 2 tiles
