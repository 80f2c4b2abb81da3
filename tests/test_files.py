"""Tests for studio.files: whole files or none, and JSON-lines logs that only ever grow by whole
lines and are shortened through a new file, never in place."""
from __future__ import annotations

import errno
import itertools
import json
import os
import stat
import threading

import pytest
import torch

from studio import files
from studio.files import (append_json_lines, atomic_output, read_json_lines, rewrite_json_lines, write_bytes,
                          write_json, write_torch)


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------- whole files
@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_writer_that_fails_half_way_leaves_the_old_file_and_no_temporary_one(tmp_path, error):
    target = tmp_path / "walk.gif"
    target.write_bytes(b"the walk exported before")
    with pytest.raises(type(error)):
        with atomic_output(target) as partial:
            partial.write_bytes(b"half a GIF")
            raise error
    assert target.read_bytes() == b"the walk exported before"
    assert names(tmp_path) == ["walk.gif"]


def test_torch_save_goes_through_the_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "generator.pt"
    write_torch(target, {"step": 1})
    real_save = torch.save

    def die_half_way(obj, file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", die_half_way)
    with pytest.raises(OSError):
        write_torch(target, {"step": 2})
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(target, weights_only=True) == {"step": 1}
    assert names(tmp_path) == ["generator.pt"]


def test_the_file_and_then_its_folder_are_flushed_to_disk(tmp_path, monkeypatch):
    flushed, real_fsync = [], os.fsync

    def fsync(fd):
        flushed.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)
    monkeypatch.setattr(files.os, "fsync", fsync)
    write_bytes(tmp_path / "a.bin", b"abc")
    assert flushed == ["file", "folder"]


def test_a_folder_that_cannot_be_flushed_is_not_an_error(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")   # as some network and FUSE mounts say
        real_fsync(fd)
    monkeypatch.setattr(files.os, "fsync", fsync)
    assert write_bytes(tmp_path / "a.bin", b"abc").read_bytes() == b"abc"


@pytest.mark.skipif(os.name != "posix", reason="permission bits are POSIX")
def test_a_written_file_gets_the_permissions_open_would_give_it(tmp_path):
    (tmp_path / "plain.txt").write_text("x")
    written = write_bytes(tmp_path / "atomic.txt", b"x")
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)


def test_a_temporary_file_left_by_a_killed_process_is_never_written_into(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "_SERIAL", itertools.count(7))
    stale = tmp_path / f".walk.{os.getpid()}-{threading.get_ident()}-7.partial.gif"
    stale.write_bytes(b"left by a process that had this one's id")
    with atomic_output(tmp_path / "walk.gif") as partial:
        assert partial != stale and partial.parent == tmp_path and partial.suffix == ".gif"
        partial.write_bytes(b"GIF89a")
    assert stale.read_bytes() == b"left by a process that had this one's id"
    assert (tmp_path / "walk.gif").read_bytes() == b"GIF89a"


def test_two_threads_writing_one_file_each_write_a_whole_file(tmp_path):
    target = tmp_path / "features.pt"
    both_inside, partials = threading.Barrier(2), []
    contents = {name: name.encode() * 200_000 for name in ("one", "two")}

    def write(name: str) -> None:
        with atomic_output(target) as partial:
            partials.append(partial)
            with open(partial, "wb") as file:
                half = len(contents[name]) // 2
                file.write(contents[name][:half])
                both_inside.wait(timeout=60)       # both are half-way through at once
                file.write(contents[name][half:])
    writers = [threading.Thread(target=write, args=(name,)) for name in contents]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert len(set(partials)) == 2
    assert target.read_bytes() in contents.values()
    assert names(tmp_path) == ["features.pt"]


def test_json_is_written_as_json_dumps_writes_it(tmp_path):
    data = {"dataset": "datasets/mine", "config": {"resolution": 64, "adam_betas": [0.0, 0.99]}}
    assert write_json(tmp_path / "run.json", data, indent=2).read_text() == json.dumps(data, indent=2)
    assert write_json(tmp_path / "walk.json", data).read_text() == json.dumps(data, indent=1)


# ---------------------------------------------------------------- JSON lines
def test_appending_adds_one_whole_line_per_row(tmp_path):
    log = tmp_path / "log.jsonl"
    append_json_lines(log, [{"step": 1, "d_loss": 0.5}, {"step": 2, "d_loss": 0.25}])
    append_json_lines(log, [])
    append_json_lines(log, ({"step": s} for s in (3, 4)))
    assert log.read_text() == "".join(json.dumps(row) + "\n" for row in
                                      [{"step": 1, "d_loss": 0.5}, {"step": 2, "d_loss": 0.25}, {"step": 3}, {"step": 4}])
    assert [row["step"] for row in read_json_lines(log)] == [1, 2, 3, 4]


def test_nothing_to_append_writes_no_file(tmp_path):
    append_json_lines(tmp_path / "metrics.jsonl", [])
    assert names(tmp_path) == []
    assert read_json_lines(tmp_path / "metrics.jsonl") == []


def test_a_line_cut_short_by_a_crash_spoils_no_row_appended_after_it(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\n{"step": 2, "loss')
    append_json_lines(log, [{"step": 2}])
    assert read_json_lines(log) == [{"step": 1}, {"step": 2}]


def test_a_resume_keeps_exactly_the_kept_rows_through_a_new_file(tmp_path):
    log = tmp_path / "log.jsonl"
    lines = ['{"step": 1, "g_loss": 0.1000000000000000055}', '{"step": 2}', '{"step": 3}', '{"step": 4}']
    log.write_text("\n".join(lines) + '\n{"step": 5, "lo')
    before = log.stat().st_ino

    rewrite_json_lines(log, lambda row: row["step"] <= 2)

    assert log.read_text() == lines[0] + "\n" + lines[1] + "\n"      # the kept lines as they were written
    assert names(tmp_path) == ["log.jsonl"]
    assert log.stat().st_ino != before                            # a new file, not the old one truncated


def test_a_crash_during_the_resume_rewrite_leaves_the_whole_history(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n')

    def power_cut(source, target):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(files.os, "replace", power_cut)
    with pytest.raises(OSError):
        rewrite_json_lines(log, lambda row: row["step"] <= 1)
    assert log.read_text() == '{"step": 1}\n{"step": 2}\n'
    assert names(tmp_path) == ["log.jsonl"]


def test_a_log_with_nothing_to_forget_is_not_rewritten(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1}\n{"step": 2}\n')
    before = log.stat().st_ino
    rewrite_json_lines(log, lambda row: row["step"] <= 2)
    assert log.stat().st_ino == before and log.read_text() == '{"step": 1}\n{"step": 2}\n'
    rewrite_json_lines(tmp_path / "metrics.jsonl", lambda row: False)   # a run that never measured KID
    assert names(tmp_path) == ["log.jsonl"]
