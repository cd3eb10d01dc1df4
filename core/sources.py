"""Turn command-line paths and uploads (files, folders, .zip archives) into items to ingest.

Every input becomes exactly one item, so that it gets exactly one result line. What is not read
is an item whose ``read()`` raises with the reason: InputSkipped for what is left out on purpose
(hidden and system files, macOS metadata, hidden folders, links to folders), ImageRejected for
what is refused (special files, archive members with unsafe names or methods, an empty archive or
folder, a name with control characters). Archive members are read through a bounded stream: never
more than their declared size plus one byte, so a member that lies about its size cannot inflate.
"""

from __future__ import annotations

import copy
import io
import os
import stat
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO

from core.images import ImageRejected
from core.names import name_problem

_SYSTEM_NAMES = {"thumbs.db", "desktop.ini"}
#: Compression methods whose reads zipfile bounds by the requested length (bzip2 and LZMA inflate
#: whole input blocks at once, which a crafted member can make gigabytes large).
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
_ZIP_METHOD_NAMES = {zipfile.ZIP_BZIP2: "bzip2", zipfile.ZIP_LZMA: "LZMA"}


@dataclass(frozen=True)
class IngestItem:
    """One candidate file: a display path, its size when known, and a way to read its bytes.

    ``relative``: its path inside the folder or archive it came from (None for a file given on
    its own); ``dataset``, ``split``, ``label``: what ``core.layouts`` found for it (None: none).
    ``read`` pickles (cloudpickle) and reads the same bytes in any process that sees the same
    paths and S3 endpoint, so that the Ray engine's tasks read items on the cluster's nodes.
    """

    path: str
    read: Callable[[], bytes]
    size: int | None = None
    relative: str | None = None
    dataset: str | None = None
    split: str | None = None
    label: str | None = None


class InputSkipped(Exception):
    """An input left out on purpose (hidden, system or macOS metadata file); ``str(exc)`` says why."""


def skipped_item(path: str, reason: str) -> IngestItem:
    """An input that is not read and is no error: ingesting it gives one "skipped" result."""

    def skip() -> bytes:
        raise InputSkipped(reason)

    return IngestItem(path=path, read=skip)


def rejected_item(path: str, reason: str) -> IngestItem:
    """An input that is not read: ingesting it gives one "rejected" result with ``reason``."""

    def refuse() -> bytes:
        raise ImageRejected(reason)

    return IngestItem(path=path, read=refuse)


def is_zip_name(name: str) -> bool:
    return name.lower().endswith(".zip")


def skipped_kind(name: str) -> str | None:
    """What a relative path inside a folder or archive is when it is not read (hidden, macOS
    metadata, a system file), or None."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if "__MACOSX" in parts:
        return "macOS metadata (__MACOSX)"
    if any(part.startswith(".") for part in parts):
        return "hidden (name starts with a dot)"
    if parts and parts[-1].lower() in _SYSTEM_NAMES:
        return "system file"
    return None


def _skip_reason(name: str) -> str | None:
    return skipped_kind(name)


def items_from_paths(paths: Iterable[Path]) -> Iterator[IngestItem]:
    """Files as they are, folders recursively (sorted), and the members of .zip archives."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            yield from _items_from_folder(path)
        elif path.is_file():
            yield from _items_from_file(path, path.name)
        elif path.exists() or path.is_symlink():
            yield rejected_item(str(path), _not_regular(path))
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")


def items_from_upload(name: str, data: bytes) -> Iterator[IngestItem]:
    """An uploaded file: a .zip archive is opened, anything else is one item."""
    problem = name_problem(name)
    if problem:
        yield rejected_item(name, problem)
    elif is_zip_name(name):
        yield from items_from_zip(name, lambda: io.BytesIO(data))
    else:
        yield IngestItem(path=name, read=lambda: data, size=len(data))


def _items_from_folder(root: Path) -> Iterator[IngestItem]:
    """Every entry under ``root``, sorted by path; hidden folders and links to folders are one
    item each and are not entered."""
    entries: list[tuple[Path, str | None]] = []  # (path, reason it is not read)
    skipped: set[Path] = set()  # entries left out on purpose, not errors

    def unreadable(error: OSError) -> None:
        entries.append((Path(error.filename), f"could not read the folder: {error.strerror}"))

    for folder, subfolders, files in os.walk(root, onerror=unreadable):
        base = Path(folder)
        for name in list(subfolders):
            child = base / name
            kind = "link to a folder" if child.is_symlink() else skipped_kind(name)
            if kind:
                reason = f"folder not entered: {kind}"
                subfolders.remove(name)
                entries.append((child, reason))
                skipped.add(child)
        entries.extend((base / name, None) for name in files)
    if not entries:
        yield rejected_item(str(root), "empty folder: no files in it")
        return
    for path, reason in sorted(entries):
        relative = path.relative_to(root).as_posix()
        if path in skipped:
            yield skipped_item(str(path), reason or "")
            continue
        reason = reason or name_problem(relative)
        if reason is None and (skip := _skip_reason(relative)):
            yield skipped_item(str(path), skip)
            continue
        if reason is None and not path.is_file():
            reason = _not_regular(path)
        if reason:
            yield rejected_item(str(path), reason)
        else:
            yield from _items_from_file(path, relative, inside=True)


def _items_from_file(path: Path, name: str, inside: bool = False) -> Iterator[IngestItem]:
    problem = name_problem(name)
    if problem:
        yield rejected_item(str(path), problem)
    elif is_zip_name(path.name):
        yield from items_from_zip(str(path), partial(path.open, "rb"))
    else:
        relative = name if inside else None
        yield IngestItem(path=str(path), read=path.read_bytes, size=path.stat().st_size, relative=relative)


def _not_regular(path: Path) -> str:
    try:
        mode = path.stat().st_mode
    except OSError:
        return "broken link: its target does not exist"
    kind = "a folder" if stat.S_ISDIR(mode) else "a pipe" if stat.S_ISFIFO(mode) else "a device or socket"
    return f"not a regular file ({kind})"


def items_from_zip(label: str, opener: Callable[[], IO[bytes]]) -> Iterator[IngestItem]:
    """Members of an archive, one item each; an unreadable archive becomes one item whose read()
    raises, an archive without files one rejected item. The members' items pickle with
    ``opener``, which opens the archive again where they are unpickled."""
    handle = None
    try:
        handle = opener()
        archive = zipfile.ZipFile(handle)
        members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        if handle is not None:
            handle.close()
        message = f"not a readable .zip archive ({exc})"

        def fail() -> bytes:
            raise ValueError(message)

        yield IngestItem(path=label, read=fail)
        return
    if not members:
        archive.close()
        yield rejected_item(label, "empty archive: no files in it")
        return
    # The archive stays open while items refer to it (ZipFile reads members thread-safely) and
    # closes when the last item is dropped.
    shared = SharedArchive(opener, archive)
    for member in sorted(members, key=lambda m: m.orig_filename):
        name = member.orig_filename  # zipfile cuts `filename` at a NUL byte; this is the full name
        path = f"{label}/{name}"
        reason = name_problem(name) or _unsafe_member(member)
        if reason:
            yield rejected_item(path, reason)
        elif skip := _skip_reason(name):
            yield skipped_item(path, skip)
        else:
            read = partial(_read_member, shared, member)
            yield IngestItem(path=path, read=read, size=member.file_size, relative=name.replace("\\", "/"))


def _unsafe_member(member: zipfile.ZipInfo) -> str | None:
    """Why a member is not read: a path that climbs out or is absolute, encryption, a method
    whose reads are not bounded."""
    name = member.orig_filename.replace("\\", "/")
    if name.startswith("/") or ".." in PurePosixPath(name).parts or (len(name) > 1 and name[1] == ":"):
        return "unsafe path in the archive (absolute, or climbing out with '..')"
    if member.flag_bits & 0x1:
        return "encrypted archive member"
    if member.compress_type not in _ZIP_METHODS:
        method = _ZIP_METHOD_NAMES.get(member.compress_type, f"method {member.compress_type}")
        return f"archive member compressed with {method}: only stored and deflate members are read"
    return None


class SharedArchive:
    """An open archive that all its members' items read from. It pickles as its opener: a process
    that unpickles members (a cluster worker) opens the archive once for all the members that
    were pickled together."""

    def __init__(self, opener: Callable[[], IO[bytes]], archive: zipfile.ZipFile | None = None) -> None:
        self._opener = opener
        self._archive = archive
        self._lock = threading.Lock()

    def zip(self) -> zipfile.ZipFile:
        with self._lock:
            if self._archive is None:
                self._archive = zipfile.ZipFile(self._opener())
            return self._archive

    def __getstate__(self) -> dict[str, object]:
        return {"opener": self._opener}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["opener"])  # type: ignore[misc]


def _read_member(archive: SharedArchive, member: zipfile.ZipInfo) -> bytes:
    """The member's bytes, inflating at most its declared size plus one byte (zipfile alone would
    inflate all of a lying member before cutting it to size)."""
    declared = member.file_size
    bounded = copy.copy(member)
    bounded.file_size = declared + 1  # lets zipfile hand over one byte past the declared size
    del bounded.CRC  # zipfile then skips its CRC check, which would fail on that byte; done below
    try:
        with archive.zip().open(bounded) as stream:
            data = stream.read(declared + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise ImageRejected(f"corrupt archive member ({exc})") from None
    if len(data) > declared:
        raise ImageRejected(f"archive member expands past its declared size of {declared:,} bytes")
    if len(data) < declared:
        raise ImageRejected(f"archive member is shorter than its declared size of {declared:,} bytes")
    if zlib.crc32(data) != member.CRC:
        raise ImageRejected("corrupt archive member (bad CRC-32)")
    return data
