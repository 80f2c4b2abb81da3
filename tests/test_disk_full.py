"""A full disk pauses training instead of failing it: the run says so, keeps its previous
checkpoint and export whole, tries the write again, and goes on by itself once there is space."""
from __future__ import annotations

import contextlib
import dataclasses
import errno
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import studio.cli_training as cli_training
import studio.files as files
from conftest import TINY, wait_for
from kill_loop import temporary_files
from studio.checkpoint import EXPORT_NAMES, latest_checkpoint, list_checkpoints, load_generator
from studio.cli import main
from studio.config import TrainConfig
from studio.files import append_json_lines, read_json_lines
from studio.run import Budget, Cadence, TrainingRun
from studio.run_folder import read_log
from studio.session import FAILED, FINISHED, TRAINING, TrainingSession
from studio.ui.train_view import status_line

NO_SPACE = "No space left on device"
AT_ONCE = Cadence(checkpoint_minutes=0, preview_minutes=0, log_every_steps=1, disk_full_retry_seconds=0)


CHECKPOINTS, EXPORTS = "checkpoints", "exports"      # the kinds of file a FullDisk can refuse


@dataclass
class FullDisk:
    """Writes of one kind of file (checkpoints or generator exports) find the disk full on
    `failures` writes after the first `skip`: half the file is written, then ENOSPC is raised,
    as a disk that fills up does. `on_failure()` looks around as each of them fails."""
    kind: str
    failures: int = 0
    skip: int = 0
    on_failure: Callable[[], None] = lambda: None

    def refuses(self, path: Path) -> bool:
        is_kind = path.name in EXPORT_NAMES if self.kind == EXPORTS else path.parent.name == "checkpoints"
        if not is_kind:
            return False
        if self.skip:
            self.skip -= 1
            return False
        if not self.failures:
            return False
        self.failures -= 1
        self.on_failure()
        return True


@pytest.fixture
def full_disk(monkeypatch) -> Callable[..., FullDisk]:
    """Every file is written through files.atomic_output: the disk fills up inside it."""
    real_output = files.atomic_output

    def make(kind: str, **settings) -> FullDisk:
        disk = FullDisk(kind, **settings)

        @contextlib.contextmanager
        def atomic_output(path, *args, **kwargs):
            with real_output(path, *args, **kwargs) as partial:
                yield partial
                if disk.refuses(Path(path)):
                    with open(partial, "r+b") as file:
                        file.truncate(partial.stat().st_size // 2)
                    raise OSError(errno.ENOSPC, NO_SPACE)
        monkeypatch.setattr(files, "atomic_output", atomic_output)
        return disk
    return make


def paused_message(run_dir, step: int, seconds: str, intact: int) -> str:
    return (f"The disk holding {run_dir} is full: training is paused at step {step} and tries again every "
            f"{seconds} s; free some space, or stop the run. The checkpoint at step {intact} is intact.")


# ---------------------------------------------------------------- the run
@pytest.mark.parametrize("kind, target, intact", [(CHECKPOINTS, "checkpoints/step-000000002.pt", 2),
                                                  (EXPORTS, "generator.safetensors", 3)],
                         ids=["checkpoint", "export"])
def test_a_full_disk_pauses_training_keeps_the_old_file_and_goes_on_when_freed(
        dataset32, tiny_config, tmp_path, full_disk, kind, target, intact):
    run_dir = tmp_path / "run"
    run = TrainingRun.start(dataset32, run_dir, tiny_config)
    run.train(Budget(steps=2))                                    # a checkpoint and an export of step 2
    good = (run_dir / target).read_bytes()
    disk = full_disk(kind)
    seen = []                                                     # what each failed write found
    disk.on_failure = lambda: seen.append((run.trainer.step_count, (run_dir / target).read_bytes() == good,
                                           len(temporary_files(run_dir))))
    said, back = [], []

    def fill_the_disk_at_step_3(stats):
        if stats.step == 3:
            disk.failures = 3

    last = run.train(Budget(steps=5), AT_ONCE, on_step=fill_the_disk_at_step_3, on_disk_full=said.append,
                     on_disk_space=lambda: back.append(run.trainer.step_count))

    # Paused at step 3 through three failed writes, the old file whole, each one's temporary file
    # gone before the next (only the one being written is there).
    assert seen == [(3, True, 1)] * 3
    assert said == [paused_message(run_dir, 3, "0", intact)] and back == [3]
    assert last.step == 5 and [row["step"] for row in read_log(run_dir)] == [1, 2, 3, 4, 5]
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-000000003.pt", "step-000000004.pt",
                                                           "step-000000005.pt"]
    assert latest_checkpoint(run_dir)[1]["step"] == 5
    load_generator(run_dir / "generator.safetensors")
    assert temporary_files(run_dir) == []


def test_a_full_disk_while_the_log_grows_pauses_too_and_repeats_no_row(dataset32, tiny_config, tmp_path,
                                                                        monkeypatch):
    run_dir = tmp_path / "run"
    run = TrainingRun.start(dataset32, run_dir, tiny_config)
    real_write_all, attempts, said = files._write_all, [], []

    def half_of_the_second_and_third(file, data):
        attempts.append(len(data))
        if len(attempts) in (2, 3):                               # whole rows of steps 5 and 6, half of 7
            real_write_all(file, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, NO_SPACE)
        real_write_all(file, data)
    monkeypatch.setattr(files, "_write_all", half_of_the_second_and_third)

    run.train(Budget(steps=8), dataclasses.replace(AT_ONCE, checkpoint_minutes=60, log_every_steps=4),
              on_disk_full=said.append)

    assert len(attempts) == 4
    assert len(said) == 1 and said[0].startswith(f"The disk holding {run_dir} is full: training is paused at step 8")
    assert [row["step"] for row in read_json_lines(run_dir / "log.jsonl")] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_an_append_that_fails_half_way_takes_its_rows_back(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    append_json_lines(log, [{"step": 1}])
    real_write_all = files._write_all

    def half(file, data):
        real_write_all(file, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, NO_SPACE)
    monkeypatch.setattr(files, "_write_all", half)
    with pytest.raises(OSError, match=NO_SPACE):
        append_json_lines(log, [{"step": 2}, {"step": 3}])
    assert log.read_text() == '{"step": 1}\n'

    monkeypatch.undo()
    append_json_lines(log, [{"step": 2}, {"step": 3}])            # the retry
    assert read_json_lines(log) == [{"step": 1}, {"step": 2}, {"step": 3}]


# ---------------------------------------------------------------- the studio
def test_the_train_tab_says_training_waits_for_space_then_goes_on(dataset32, tmp_path, full_disk):
    run_dir = tmp_path / "run"
    session = TrainingSession(cadence=dataclasses.replace(AT_ONCE, disk_full_retry_seconds=0.01))
    disk = full_disk(CHECKPOINTS, skip=1, failures=3)       # step 1 is saved; step 2 finds the disk full
    shown = []
    disk.on_failure = lambda: shown.append(session.snapshot())
    try:
        session.start(dataset32, run_dir, TrainConfig(**TINY), Budget(steps=4))
        finished = wait_for(lambda: (s := session.snapshot()).state == FINISHED and s)
    finally:
        session.stop(timeout=30)

    waiting = shown[1:]                                           # after the first failure has been reported
    assert len(waiting) == 2
    for snap in waiting:
        assert snap.state == TRAINING and snap.latest.step == 2
        assert snap.disk_full == paused_message(run_dir, 2, "0.01", 1)
        assert snap.disk_full in status_line(snap)
    assert finished.disk_full is None and "is full" not in status_line(finished)
    assert latest_checkpoint(run_dir)[1]["step"] == 4


def test_stopping_while_the_disk_is_full_keeps_the_last_checkpoint_and_says_what_is_not_saved(
        dataset32, tmp_path, full_disk):
    run_dir = tmp_path / "run"
    # Space never comes back, and the next try would be ten minutes away: the stop does not wait for it.
    session = TrainingSession(cadence=dataclasses.replace(AT_ONCE, disk_full_retry_seconds=600))
    full_disk(CHECKPOINTS, skip=1, failures=10**6)
    try:
        session.start(dataset32, run_dir, TrainConfig(**TINY), Budget())
        wait_for(lambda: session.snapshot().disk_full)
        session.stop(timeout=60)
        snap = session.snapshot()
    finally:
        session.stop(timeout=30)

    assert snap.state == FAILED
    assert snap.error == (f"DiskFull: stopped while the disk holding {run_dir} was full, at step 2, which is not "
                          f"saved. The checkpoint at step 1 is intact.")
    assert snap.error in status_line(snap)
    assert [p.name for p in list_checkpoints(run_dir)] == ["step-000000001.pt"]
    assert latest_checkpoint(run_dir)[1]["step"] == 1
    assert temporary_files(run_dir) == []


# ---------------------------------------------------------------- the command line
@dataclasses.dataclass(frozen=True)
class RetryAtOnce(Cadence):
    disk_full_retry_seconds: float = 0.0


def test_the_cli_says_on_stderr_that_training_waits_for_space_and_goes_on(dataset32, tmp_path, monkeypatch,
                                                                          full_disk, capsys):
    monkeypatch.setattr(cli_training, "Cadence", RetryAtOnce)
    run_dir = tmp_path / "run"
    full_disk(EXPORTS, failures=2)                       # the export after the last step
    tiny = ["--res", "32", "--width", "8", "--batch", "4", "--precision", "fp32", "--memory-format", "contiguous",
            "--device", "cpu"]

    assert main(["train", str(dataset32), "--out", str(run_dir), *tiny, "--steps", "2"]) == 0

    err = capsys.readouterr().err
    assert paused_message(run_dir, 2, "0", 2) in err
    assert "Disk space is back: training goes on." in err
    assert err.index("is full") < err.index("Disk space is back")
    load_generator(run_dir / "generator.safetensors")
    assert temporary_files(run_dir) == []
