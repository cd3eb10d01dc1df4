"""Object store on the local file system (the default)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from core.storage.base import ObjectNotFound, ObjectStore, StorageError


class LocalStore(ObjectStore):
    """Objects as files under ``root``; writes go to a temp file and are renamed into place.

    A put is a few system calls and little Python: ingest makes two for each image, from several
    threads, and Python work in them holds the GIL that the ingest's main thread needs."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return Path(self._file(key))

    def _file(self, key: str) -> str:
        """The file of ``key`` under the root. A key is a relative path without ``..``, checked as
        text: keys are made by this application, and the folders under the root are its own."""
        if not key or key.startswith("/") or "\0" in key or ".." in key.split("/"):
            raise StorageError(f"invalid object key {key!r}")
        return os.path.join(self.root, key)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        path = self._file(key)
        folder = os.path.dirname(path)
        temp = os.path.join(folder, f".tmp-{secrets.token_hex(8)}")
        try:
            try:
                _write_new(temp, data)
            except FileNotFoundError:  # the key's folder does not exist yet
                os.makedirs(folder, exist_ok=True)
                _write_new(temp, data)
            try:
                os.replace(temp, path)
            except BaseException:
                _remove(temp)
                raise
        except OSError as exc:
            raise StorageError(f"could not write {key}: {exc.strerror or exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageError(f"could not read {key}: {exc.strerror or exc}") from exc

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"could not delete {key}: {exc.strerror or exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str) -> Iterator[str]:
        # Start the walk at the deepest folder the prefix names; temp files of a put are keys too
        # (a killed writer leaves them), so that repair can find and remove them.
        top = self._path(prefix.rsplit("/", 1)[0]) if "/" in prefix else self.root
        for folder, _, files in os.walk(top):
            for name in files:
                key = (Path(folder) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return self._path(key).as_uri()

    def describe(self) -> str:
        return f"local directory {self.root}"


def _write_new(path: str, data: bytes) -> None:
    """Write ``data`` to a new file at ``path`` (readable by its owner only, as ``mkstemp`` makes
    it); a file left half written is removed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except BaseException:
        _remove(path)
        raise


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
