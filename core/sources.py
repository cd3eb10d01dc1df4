"""Turn command-line paths and uploads (files, folders, .zip archives) into items to ingest."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import IO

_SKIPPED_NAMES = {"thumbs.db", "desktop.ini"}


@dataclass(frozen=True)
class IngestItem:
    """One candidate file: a display path, its size when known, and a way to read its bytes."""

    path: str
    read: Callable[[], bytes]
    size: int | None = None


def is_zip_name(name: str) -> bool:
    return name.lower().endswith(".zip")


def _skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(part.startswith(".") or part == "__MACOSX" for part in parts) or parts[-1].lower() in _SKIPPED_NAMES


def items_from_paths(paths: Iterable[Path]) -> Iterator[IngestItem]:
    """Files as they are, folders recursively (sorted), and the members of .zip archives."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                if not _skipped(child.relative_to(path).as_posix()):
                    yield from _items_from_file(child)
        elif path.is_file():
            yield from _items_from_file(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")


def items_from_upload(name: str, data: bytes) -> Iterator[IngestItem]:
    """An uploaded file: a .zip archive is opened, anything else is one item."""
    if is_zip_name(name):
        yield from _items_from_zip(name, lambda: io.BytesIO(data))
    else:
        yield IngestItem(path=name, read=lambda: data, size=len(data))


def _items_from_file(path: Path) -> Iterator[IngestItem]:
    if is_zip_name(path.name):
        yield from _items_from_zip(str(path), partial(path.open, "rb"))
    else:
        yield IngestItem(path=str(path), read=path.read_bytes, size=path.stat().st_size)


def _items_from_zip(label: str, opener: Callable[[], IO[bytes]]) -> Iterator[IngestItem]:
    """Members of an archive; an unreadable archive becomes one item whose read() raises."""
    handle = None
    try:
        handle = opener()
        archive = zipfile.ZipFile(handle)
        members = [m for m in archive.infolist() if not m.is_dir() and not _skipped(m.filename)]
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        if handle is not None:
            handle.close()
        message = f"not a readable .zip archive ({exc})"

        def fail() -> bytes:
            raise ValueError(message)

        yield IngestItem(path=label, read=fail)
        return
    # The archive stays open while items refer to it (ZipFile reads members thread-safely) and
    # closes when the last item is dropped.
    for member in sorted(members, key=lambda m: m.filename):
        yield IngestItem(path=f"{label}/{member.filename}", read=partial(archive.read, member), size=member.file_size)
