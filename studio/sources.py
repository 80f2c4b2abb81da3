"""What the artist dropped, as the list of files ingest judges one by one.

Folders are walked, zip files opened, and a zip inside a zip opened one level down (its entries
are read when their turn comes, so only one inner archive is in memory at a time; a zip three
levels deep is left out with its reason). Nothing here decides what an image is: data.py does.
Whatever cannot be read (a symlink loop, a broken link, a file or folder without permission, a
named pipe) becomes that one file's rejection, never the end of the ingest. Names are shown as
the artist knows them, a name that is not UTF-8 with replacement characters.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import zipfile
import zlib
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

MAX_FILE_BYTES = 256 * 1024 * 1024  # also bounds zip entries, whose declared size can lie
SYSTEM_FILE_NAMES = {"Thumbs.db", "desktop.ini", "__MACOSX"}
ZIP_UTF8_FLAG = 0x800
ZIP_ENCRYPTED_FLAG = 0x1


class Rejected(Exception):
    """Raised while reading or judging one file; becomes that file's rejection."""

    def __init__(self, reason: str, sha256: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.sha256 = sha256


@dataclass
class Candidate:
    name: str                    # as the artist knows it
    read: Callable[[], bytes]
    # A zip inside a zip: its own entries, opened when its turn comes (read() gives its bytes).
    entries: Callable[[], list["Candidate"]] | None = None


def collect(sources: Sequence[str | Path], out_dir: Path, stack: ExitStack) -> list[Candidate]:
    """Every file the sources hold, in order; `out_dir` (our own output, which may sit inside a
    dropped folder) is never among them. Zip files stay open in `stack` while ingest reads them."""
    candidates: list[Candidate] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            candidates += _folder_candidates(path, out_dir, stack)
        elif path.is_file():
            candidates += _file_candidates(path, shown(path.name), stack)
        else:
            reason = _unusable(path) or "no such file or folder"
            candidates.append(Candidate(shown(str(source)), partial(reject, reason)))
    return candidates


def shown(name: str) -> str:
    """A file name as text that can be shown and stored: bytes that are not UTF-8 (which Python
    carries as lone surrogates) become replacement characters."""
    return os.fsencode(name).decode("utf-8", "replace")


def reject(reason: str) -> bytes:
    raise Rejected(reason)


# ---------------------------------------------------------------- folders


def _folder_candidates(root: Path, out_dir: Path, stack: ExitStack) -> list[Candidate]:
    """Each file under `root`, by its path inside it, in name order. Links to folders are
    followed, each folder once: a link back to a folder already read (a symlink loop, or a
    second way into one) is left out with its reason, as is whatever cannot be read."""
    def name_of(path: str) -> str:
        return shown(Path(os.path.relpath(path, root)).as_posix())

    def left_out(name: str, reason: str) -> None:
        candidates.append(Candidate(name, partial(reject, reason)))

    candidates: list[Candidate] = []
    seen = {_identity(root)}
    ours = _identity(out_dir) if out_dir.exists() else None
    def unreadable(error: OSError) -> None:
        left_out(name_of(error.filename) + "/", f"folder cannot be read ({error.strerror})")

    walk = os.walk(root, followlinks=True, onerror=unreadable)
    for folder, subfolders, names in walk:
        for subfolder in list(subfolders):
            identity = _identity(Path(folder, subfolder))
            if identity == ours or identity in seen:
                subfolders.remove(subfolder)                # os.walk then does not go in
                if identity != ours:
                    left_out(name_of(os.path.join(folder, subfolder)) + "/",
                             "link to a folder already read (a symlink loop), not followed")
            seen.add(identity)
        for file_name in names:
            path = Path(folder, file_name)
            problem = _unusable(path)
            if problem:
                left_out(name_of(str(path)), problem)
            else:
                candidates += _file_candidates(path, name_of(str(path)), stack)
    return sorted(candidates, key=lambda candidate: candidate.name)


def _identity(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_dev, status.st_ino


def _unusable(path: Path) -> str | None:
    """Why `path` cannot be read as a file (following links), or None if it can."""
    try:
        status = path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symlink loop, skipped"
        if error.errno == errno.ENOENT and path.is_symlink():
            return "broken link (what it points to is gone), skipped"
        return None if error.errno == errno.ENOENT else f"cannot be read ({error.strerror})"
    if not stat.S_ISREG(status.st_mode) and not stat.S_ISDIR(status.st_mode):
        return "not a file (a device, pipe or socket), skipped"   # reading a pipe would wait forever
    return None


# ---------------------------------------------------------------- files and zips


def _file_candidates(path: Path, name: str, stack: ExitStack) -> list[Candidate]:
    if path.suffix.lower() != ".zip" or _is_system_file(name):
        return [_candidate(name, name, partial(_read_file, path))]
    try:
        archive = stack.enter_context(zipfile.ZipFile(path))
    except Exception as error:  # whatever is wrong with the archive, it is only this file's problem
        return [Candidate(name, partial(reject, _zip_problem(error)))]
    return _zip_candidates(archive, name, inside_zip=False)


def _zip_candidates(archive: zipfile.ZipFile, name: str, inside_zip: bool) -> list[Candidate]:
    # Entries are read into memory, never extracted, so names like ../../x cannot escape.
    entries = sorted((i for i in archive.infolist() if not i.is_dir()), key=lambda i: i.filename)
    candidates = []
    for info in entries:
        inner, read = _zip_entry_name(info), partial(_read_zip_entry, archive, info)
        full = f"{name}:{inner}"
        if PurePosixPath(inner).suffix.lower() != ".zip" or _is_system_file(inner):
            candidates.append(_candidate(full, inner, read))
        elif inside_zip:
            candidates.append(Candidate(full, partial(
                reject, "a zip inside a zip inside a zip is not opened: unzip the outer ones first")))
        else:
            candidates.append(Candidate(full, read, entries=partial(_open_inner_zip, read, full)))
    return candidates


def _open_inner_zip(read: Callable[[], bytes], name: str) -> list[Candidate]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(read()))
    except Rejected:
        raise
    except Exception as error:
        raise Rejected(_zip_problem(error)) from None
    return _zip_candidates(archive, name, inside_zip=True)


def _zip_entry_name(info: zipfile.ZipInfo) -> str:
    """Zips made on a Mac carry UTF-8 names without saying so; Python reads those as cp437
    (the format's old default), which stays the reading of any name that is not UTF-8."""
    if info.flag_bits & ZIP_UTF8_FLAG:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def _zip_problem(error: Exception) -> str:
    return f"not a valid zip archive ({error})"


def _candidate(name: str, inner_path: str, read: Callable[[], bytes]) -> Candidate:
    """Only the path inside the dropped folder or archive decides whether a file is a system file."""
    if _is_system_file(inner_path):
        read = partial(reject, "system file, skipped")
    return Candidate(name, read)


def _read_file(path: Path) -> bytes:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise Rejected(f"file too large (over {MAX_FILE_BYTES // 2**20} MB)")
        with open(path, "rb") as file:
            return file.read()
    except PermissionError:
        raise Rejected("cannot be read: permission denied (check who may read the file)") from None
    except OSError as error:
        raise Rejected(f"cannot be read ({error.strerror or error})") from None


def _read_zip_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.flag_bits & ZIP_ENCRYPTED_FLAG:
        raise Rejected("password-protected zip entry: unzip the archive yourself and drop the folder")
    try:
        with archive.open(info) as entry:
            data = entry.read(MAX_FILE_BYTES + 1)  # bounded: the header's file_size is not trusted
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError, ValueError) as error:
        raise Rejected(f"zip entry is damaged ({error})") from None
    if len(data) > MAX_FILE_BYTES:
        raise Rejected(f"zip entry too large (over {MAX_FILE_BYTES // 2**20} MB, possible zip bomb)")
    return data


def _is_system_file(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p in SYSTEM_FILE_NAMES or (p.startswith(".") and p not in (".", "..")) for p in parts)
