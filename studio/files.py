"""One way to write a file: whole, or not at all.

Every file the studio writes goes through here. A file is written under a temporary name in its
own folder (a rename across disks is not atomic), flushed to disk, renamed over its target and
the folder flushed too, so that the rename itself survives a power cut. Readers (the UI, a
resumed run, a second studio) see the old file or the new one, never half of one; a full disk
leaves the old file alone, and a crash at worst a temporary one beside it, which no listing takes
for the real thing: its name starts with "." and it ends in ".partial" before the target's
suffix. `remove_partials` clears those away once their writer is gone. A writer of many small
files (ingest's thousands of thumbnails) may skip the flushes one by one (`durable=False`) and
flush them all at once with `flush_to_disk` before it writes the file that lists them: a flush
costs a few milliseconds, a minute for 10,000 files.

JSON-lines logs (log.jsonl, metrics.jsonl) grow by appending whole lines, flushed to disk; a line
cut short by a crash is skipped when read, and an append that fails (a full disk) takes back what
it wrote, so that trying again repeats no row. Shortening one (a resumed run forgets the rows it is
about to redo) writes the rows it keeps to a new file and renames that over, so a crash during
a resume leaves the whole old history instead of a truncated one.
"""
from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch

_SERIAL = itertools.count()   # tells apart the temporary files of one thread
# How _new_partial names a temporary file: ".<stem>.<pid>-<thread>-<serial>.partial<suffix>".
_PARTIAL_NAME = re.compile(r"^\..*\.(?P<pid>\d+)-\d+-\d+\.partial(\.[^.]+)?$")


@contextlib.contextmanager
def atomic_output(path: str | Path, durable: bool = True) -> Iterator[Path]:
    """A temporary path to write `path` through. When the block ends without an error the file
    is flushed to disk (unless not `durable`: then `flush_to_disk` must follow) and renamed over
    `path`; on any error (a full disk, Ctrl-C, a failing encoder) it is removed and `path` is
    left as it was. The temporary file exists, empty, when the block starts; it keeps `path`'s
    suffix, from which encoders choose the format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _new_partial(path)
    try:
        yield partial
        if durable:
            _fsync_file(partial)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_folder(path.parent)


def write_bytes(path: str | Path, data: bytes, durable: bool = True) -> Path:
    with atomic_output(path, durable) as partial:
        partial.write_bytes(data)
    return Path(path)


def flush_to_disk(paths: list[Path]) -> None:
    """Make files written with `durable=False` (and their names) as durable as `durable=True`
    would have: one sync of every disk where the system has it, else a flush of each."""
    if hasattr(os, "sync"):
        os.sync()
        return
    for path in paths:
        _fsync_file(path)
    for folder in {path.parent for path in paths}:
        _fsync_folder(folder)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data, indent: int = 1) -> Path:
    """`json.dumps(data, indent=indent)`, with no newline after it."""
    return write_text(path, json.dumps(data, indent=indent))


def write_torch(path: str | Path, obj) -> Path:
    """torch.save through the temporary file, so a checkpoint cut short is never `path`."""
    with atomic_output(path) as partial, open(partial, "wb") as file:
        torch.save(obj, file)
    return Path(path)


def append_json_lines(path: str | Path, rows: Iterable[dict]) -> None:
    """Add one line per row (`json.dumps(row)`) to a JSON-lines file, flushed to disk: all the
    rows, or none if writing fails. A last line that a crash cut short is ended first, so it
    spoils no new row."""
    data = "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8")
    if not data:
        return
    # Unbuffered, so that after a failed write no buffered rest is written when the file closes.
    with open(path, "ab+", buffering=0) as file:   # appends land at the end wherever it is read
        end = file.seek(0, os.SEEK_END)
        if end:
            file.seek(end - 1)
            if file.read(1) != b"\n":
                data = b"\n" + data
        try:
            _write_all(file, data)
            os.fsync(file.fileno())
        except BaseException:
            file.truncate(end)   # a full disk may have taken some of the rows: a retry writes them all
            raise


def _write_all(file, data: bytes) -> None:
    """An unbuffered file may take part of `data` in one write (as a disk fills up)."""
    view = memoryview(data)
    while view:
        view = view[file.write(view):]


def read_json_lines(path: str | Path) -> list[dict]:
    """One row per line; a line cut short by a crash is skipped; no file, no rows."""
    return [row for _, row in _parsed_lines(_read(Path(path)))]


def read_json_lines_from(path: str | Path, offset: int, most_bytes: int) -> tuple[list[dict], int]:
    """The rows of the whole lines in the `most_bytes` after byte `offset` (at least one line,
    however long), and the offset past the last of them: a line still being appended is left
    for the next read. For following a log as it grows, reading only what was added."""
    with open(path, "rb") as file:
        file.seek(offset)
        data = file.read(most_bytes)
        while data and b"\n" not in data and (more := file.read(most_bytes)):
            data += more
    whole = data[:data.rfind(b"\n") + 1]
    return [row for _, row in _parsed_lines(whole.decode("utf-8", errors="replace"))], offset + len(whole)


def rewrite_json_lines(path: str | Path, keep: Callable[[dict], bool]) -> None:
    """Keep only the rows for which `keep(row)` is true (and the lines that parse), as they were
    written. The kept lines go to a new file that is renamed over the old one: the file is never
    truncated in place, so a crash here leaves the old history whole. A file that would not
    change is not written."""
    path = Path(path)
    text = _read(path)
    kept = "".join(line + "\n" for line, row in _parsed_lines(text) if keep(row))
    if kept != text:
        write_text(path, kept)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _parsed_lines(text: str) -> Iterator[tuple[str, object]]:
    """Each line that parses as JSON, with what it holds."""
    for line in text.splitlines():
        try:
            yield line, json.loads(line)
        except ValueError:
            continue


def _new_partial(path: Path) -> Path:
    """Create an empty temporary file beside `path`, named by process, thread and a counter, so
    that two writers of one file never share one. O_EXCL: a file left by a killed process that
    had this one's id is skipped, never written into. Created like open() would, so the final
    file gets the usual permissions (mkstemp's are owner-only)."""
    stem = path.stem[:40]   # the extra parts must fit the 255-byte limit on a file's name too
    while True:
        partial = path.with_name(f".{stem}.{os.getpid()}-{threading.get_ident()}-{next(_SERIAL)}"
                                 f".partial{path.suffix}")
        try:
            os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return partial


def remove_partials(folder: str | Path) -> list[Path]:
    """Delete the temporary files in `folder` (not below it) whose writers died half-way
    (kill -9, a power cut), and return them. Nothing else is touched: only names that
    `_new_partial` makes, and only those of processes that are no longer running, since a
    running one may still be writing its file."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        named = _PARTIAL_NAME.match(path.name)
        if named and path.is_file() and not _may_be_running(int(named["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _may_be_running(pid: int) -> bool:
    """Whether process `pid` may still exist. Only POSIX can be asked without harm (on Windows,
    os.kill ends a process): elsewhere every writer is taken to be alive and its file stays."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)       # signal 0 sends nothing: it only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:   # it does, as another user's
        pass
    return True


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as file:   # Windows flushes only through a handle that may write
        os.fsync(file.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable. Windows cannot open a folder, and some file systems
    (network shares, some FUSE mounts) refuse to flush one: there the rename is as durable as
    the system makes it."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)
