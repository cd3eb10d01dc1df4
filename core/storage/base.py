"""The object store interface and the key layout shared by every backend."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import timedelta

_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


class StorageError(RuntimeError):
    """The object store could not complete an operation."""


class ObjectNotFound(StorageError, KeyError):
    """No object is stored under the key."""


class StoreUnreachable(StorageError):
    """The store did not answer (refused connection, timeout): the next call will likely fail too."""


def check_user(user: str) -> str:
    """User names become key prefixes and payload values: letters, digits, '.', '_', '@', '-'."""
    if not isinstance(user, str) or not _USER_RE.fullmatch(user):
        raise ValueError(
            f"invalid user name {user!r}: use 1-64 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return user


def image_key(user: str, image_id: str, extension: str) -> str:
    return f"images/{check_user(user)}/{image_id}.{extension}"


def thumbnail_key(user: str, image_id: str) -> str:
    """Where a new image's thumbnail goes (a JPEG; older collections have ``.webp`` ones)."""
    return f"thumbnails/{check_user(user)}/{image_id}.jpg"


def object_keys(user: str, image_id: str, extension: str) -> tuple[str, str]:
    """A new image's original and thumbnail keys."""
    return image_key(user, image_id, extension), thumbnail_key(user, image_id)


class ObjectStore(ABC):
    """Bytes under string keys. Implementations must be safe to call from several threads."""

    #: Short backend name shown to users ("local", "s3").
    kind: str

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store ``data`` under ``key``, replacing any previous object atomically."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; raises ObjectNotFound."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abstractmethod
    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key that starts with ``prefix`` (e.g. ``images/alice/``), in no set order."""

    @abstractmethod
    def url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        """A URL that reads the object (presigned for S3, file:// for local disk)."""

    @abstractmethod
    def describe(self) -> str:
        """Where the objects live, for status displays."""
