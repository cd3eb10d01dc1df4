"""Object store on the local file system (the default)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from core.files import replace_file
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
        try:
            try:
                replace_file(path, data, private=True, durable=False)
            except FileNotFoundError:  # the key's folder does not exist yet
                os.makedirs(os.path.dirname(path), exist_ok=True)
                replace_file(path, data, private=True, durable=False)
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
