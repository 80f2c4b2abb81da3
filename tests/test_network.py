"""What the served studio hands out, and to whom: only the files its page shows, never a file by
its path; to this computer only, unless told otherwise and then behind a password; and uploads
within limits that say how to raise them."""
from __future__ import annotations

import http.client
import tempfile
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import gradio as gr
import httpx
import pytest
from gradio_client import Client, handle_file

from browser import free_port
from studio.cli import main
from studio.config import ConfigError
from studio.data import IngestOptions, ingest, read_manifest
from studio.ui.app import launch_options
from studio.ui.dataset_tab import DatasetTab, UploadLimits
from studio.workspace import Workspace

SECRET = b"the artist's private notes"
CHECKPOINT = Path("checkpoints", "run", "checkpoints", "step-000000001.pt")
DROP = (None, "too many", 64, "crop", "#ffffff")     # the Dataset tab's settings after the loose files


def plant(workspace: Path, shapes_dir: Path) -> Path:
    """Put a dataset of three paintings, private notes and a checkpoint in `workspace`; return the
    painting the page shows first."""
    dataset = workspace / "datasets" / "shapes"
    ingest(sorted(shapes_dir.iterdir())[:3], dataset, IngestOptions(resolution=32))
    (workspace / "secret.txt").write_bytes(SECRET)
    (workspace / CHECKPOINT).parent.mkdir(parents=True)
    (workspace / CHECKPOINT).write_bytes(SECRET)
    return dataset / read_manifest(dataset)["images"][-1]["file"]


def get(url: str, path: str) -> tuple[int, bytes]:
    """GET `path` sent exactly as written (an HTTP library would resolve its ../ first)."""
    address = urlparse(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def assert_refused(url: str, path: str) -> None:
    status, body = get(url, path)
    assert status == 403, f"{path} was served"
    assert SECRET not in body and b"root:" not in body


def shown_thumbnails(client: Client) -> list[bytes]:
    """The Dataset tab's paintings, as opening the page fetches them."""
    gallery = client.predict(None, api_name="/dataset_tab")[2]
    return [Path(item["image"]).read_bytes() for item in gallery]


def serve_from_cli(monkeypatch, argv: list[str], visit) -> int:
    """Run `python -m studio ARGV` in this process, calling visit(url) where it would wait for Ctrl-C."""
    monkeypatch.setattr(gr.Blocks, "block_thread", lambda demo: visit(f"http://127.0.0.1:{demo.server_port}"))
    return main(["--no-browser", "--port", str(free_port()), *argv])


# ---------------------------------------------------------------- what is served
@pytest.fixture(scope="module")
def planted(studio_app, shapes_dir) -> SimpleNamespace:
    """The served studio's url and workspace, with things planted in it, and its newest painting."""
    painting = plant(studio_app.workspace, shapes_dir)
    return SimpleNamespace(url=studio_app.url, workspace=studio_app.workspace, painting=painting)


@pytest.mark.parametrize("path", [
    "{workspace}/secret.txt",
    "{workspace}/" + CHECKPOINT.as_posix(),
    "{workspace}/datasets/shapes/manifest.json",
    "{workspace}/../{name}/secret.txt",
    "/etc/passwd",
    "../../../../../../../../etc/passwd",
    "..%2F..%2F..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
])
def test_no_file_is_served_by_its_path(planted, path):
    workspace = planted.workspace.resolve()
    assert_refused(planted.url, "/gradio_api/file=" + path.format(workspace=workspace, name=workspace.name))


def test_the_paintings_the_page_shows_are_served(planted):
    assert shown_thumbnails(Client(planted.url, verbose=False))[0] == planted.painting.read_bytes()


def test_the_studio_serves_a_workspace_outside_the_working_and_temp_folders(tmp_path, shapes_dir, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))   # where gradio may copy from, but not here
    (tmp_path / "temp").mkdir()
    workspace = tmp_path / "workspace"
    painting = plant(workspace, shapes_dir)

    def visit(url: str) -> None:
        assert shown_thumbnails(Client(url, verbose=False))[0] == painting.read_bytes()
        for path in ("secret.txt", CHECKPOINT.as_posix(), f"{workspace}/secret.txt", "../../../../../etc/passwd"):
            assert_refused(url, f"/gradio_api/file={path}")     # relative paths start in the workspace

    assert serve_from_cli(monkeypatch, ["--workspace", str(workspace)], visit) == 0


def test_the_page_needs_a_workspace_gradio_can_copy_from(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "temp"))
    with pytest.raises(ConfigError, match="serve it from inside that folder"):
        launch_options(tmp_path / "workspace")


# ---------------------------------------------------------------- who may reach it
@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "studio.example.org"])
def test_another_host_needs_a_password_or_insecure(host, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gr.Blocks, "launch", lambda *args, **kwargs: pytest.fail("the studio was served"))

    assert main(["--host", host, "--workspace", str(tmp_path)]) == 2

    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and error.startswith(f"error: --host {host} ")
    assert "--auth USER:PASSWORD" in error and "--insecure" in error


@pytest.fixture
def launches(monkeypatch) -> list[dict]:
    """The keyword arguments of every gradio launch() from here on (it still serves)."""
    calls = []
    serve = gr.Blocks.launch

    def record(demo, *args, **kwargs):
        calls.append(kwargs)
        return serve(demo, *args, **kwargs)
    monkeypatch.setattr(gr.Blocks, "launch", record)
    return calls


@pytest.mark.parametrize("given", ["--auth", "--auth-file"])
def test_another_host_asks_for_the_password_and_says_what_it_exposes(given, tmp_path, shapes_dir, monkeypatch,
                                                                     capsys, launches):
    plant(tmp_path / "workspace", shapes_dir)
    (tmp_path / "login").write_text("ann:s3cret\n")
    credentials = "ann:s3cret" if given == "--auth" else str(tmp_path / "login")

    def visit(url: str) -> None:
        assert get(url, "/gradio_api/info")[0] == 401
        assert httpx.post(f"{url}/gradio_api/upload", files={"files": ("a.png", b"...")}).status_code == 401
        with pytest.raises(Exception):
            Client(url, auth=("ann", "wrong"), verbose=False)
        assert shown_thumbnails(Client(url, auth=("ann", "s3cret"), verbose=False))

    argv = ["--host", "0.0.0.0", given, credentials, "--workspace", str(tmp_path / "workspace")]
    assert serve_from_cli(monkeypatch, argv, visit) == 0

    assert launches[0]["auth"] == ("ann", "s3cret") and launches[0]["share"] is False
    said = capsys.readouterr().err
    assert "Serving on 0.0.0.0" in said and "has the password" in said
    assert "view this workspace's datasets, runs and exports and start trainings" in said


def test_insecure_serves_another_host_without_a_password_and_says_so(tmp_path, shapes_dir, monkeypatch, capsys,
                                                                    launches):
    plant(tmp_path / "workspace", shapes_dir)

    def visit(url: str) -> None:
        assert shown_thumbnails(Client(url, verbose=False))

    argv = ["--host", "0.0.0.0", "--insecure", "--workspace", str(tmp_path / "workspace")]
    assert serve_from_cli(monkeypatch, argv, visit) == 0

    assert launches[0]["auth"] is None and launches[0]["share"] is False
    assert "with no password, can view this workspace's datasets" in capsys.readouterr().err


def test_a_malformed_password_is_refused_without_being_echoed(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--auth", "s3cret"])
    assert exit.value.code == 2
    error = capsys.readouterr().err
    assert "USER:PASSWORD" in error and "s3cret" not in error


# ---------------------------------------------------------------- how much may be uploaded
def paintings(shapes_dir: Path, count: int) -> list[str]:
    return [str(path) for path in sorted(shapes_dir.iterdir())[:count]]


def test_a_drop_of_more_files_than_the_limit_is_refused_and_nothing_is_stored(tmp_path, shapes_dir):
    tab = DatasetTab(Workspace(tmp_path), UploadLimits(max_upload_files=3))

    with pytest.raises(gr.Error, match=r"4 files are more than the 3 .* a higher --max-upload-files"):
        tab.ingest(paintings(shapes_dir, 4), *DROP)
    assert not (tmp_path / "datasets").exists()

    tab.ingest(paintings(shapes_dir, 3), *DROP)                   # the limit itself is taken
    assert len(list((tmp_path / "datasets" / "too-many" / "images").iterdir())) == 3


def test_a_drop_larger_than_the_total_limit_is_refused_and_nothing_is_stored(tmp_path, shapes_dir):
    files = paintings(shapes_dir, 4)
    total_gb = sum(Path(file).stat().st_size for file in files) / 2**30
    tab = DatasetTab(Workspace(tmp_path), UploadLimits(max_upload_total_gb=total_gb * 0.99))

    with pytest.raises(gr.Error, match=r"more than the .* GB .* a higher --max-upload-total-gb"):
        tab.ingest(files, *DROP)
    assert not (tmp_path / "datasets").exists()


def test_upload_limits_on_the_command_line_reach_the_page(tmp_path, shapes_dir, monkeypatch):
    def visit(url: str) -> None:
        too_large = httpx.post(f"{url}/gradio_api/upload", files={"files": ("huge.png", bytes(2 * 2**20))})
        assert too_large.status_code == 413
        client = Client(url, verbose=False)
        with pytest.raises(Exception, match="--max-upload-files"):
            client.predict([handle_file(file) for file in paintings(shapes_dir, 3)], *DROP, api_name="/ingest")

    argv = ["--max-upload-mb", "1", "--max-upload-files", "2", "--workspace", str(tmp_path / "workspace")]
    assert serve_from_cli(monkeypatch, argv, visit) == 0
    # Nothing of the refused drop is stored: the only dataset is the demo a new workspace gets.
    assert [folder.name for folder in (tmp_path / "workspace" / "datasets").iterdir()] == ["demo"]
