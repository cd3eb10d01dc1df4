"""Ingest inputs from an S3 bucket: ``s3://bucket/prefix`` through the configured S3 settings.

Every object under the prefix becomes one item, as a file in a folder does (see core.sources):
hidden, system and macOS metadata objects are skipped, unsafe names rejected, ``.zip`` objects
opened (downloaded to a temporary file, never held in memory), and each read is bounded by the
size the listing gave, so an object replaced by a larger one while we read is refused.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import IO

from minio import Minio
from minio.error import MinioException

from core.images import ImageRejected
from core.names import name_problem
from core.settings import Settings
from core.sources import IngestItem, is_zip_name, items_from_zip, rejected_item, skipped_item, skipped_kind
from core.storage.s3 import minio_client

SCHEME = "s3://"
_ERRORS = (MinioException, OSError, ValueError)
_CHUNK = 1024 * 1024
#: Downloaded archives kept by a process (object -> temporary file), least recently used first.
_DOWNLOADS: OrderedDict[tuple[S3Access, str, str], str] = OrderedDict()
_DOWNLOADS_LOCK = threading.Lock()
_KEPT_DOWNLOADS = 2


class S3InputError(RuntimeError):
    """An ``s3://`` input that cannot be listed at all (no S3 settings, bad URL, server down)."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """``s3://bucket/some/prefix`` -> (bucket, ``some/prefix``); the prefix may be empty."""
        if not url.startswith(SCHEME):
            raise S3InputError(f"not an s3:// URL: {url}")
        bucket, _, prefix = url[len(SCHEME) :].partition("/")
        if not bucket:
            raise S3InputError(f"no bucket in {url}")
        return cls(bucket, prefix)

    def url(self, key: str = "") -> str:
        return f"{SCHEME}{self.bucket}/{key or self.prefix}"


def is_s3_url(text: str) -> bool:
    return str(text).startswith(SCHEME)


@dataclass(frozen=True)
class S3Access:
    """Where and how to reach the S3 endpoint inputs are read from. Unlike a client it pickles,
    so the items it reads can be read on the machines of a cluster; each process makes one client
    per endpoint."""

    endpoint: str
    access_key: str
    secret_key: str = field(repr=False)
    secure: bool | None = None
    region: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> S3Access:
        """The configured endpoint and keys (VAD_S3_*)."""
        if not settings.s3_endpoint or not settings.s3_access_key or not settings.s3_secret_key:
            raise S3InputError("s3:// inputs need VAD_S3_ENDPOINT, VAD_S3_ACCESS_KEY and VAD_S3_SECRET_KEY")
        secret = settings.s3_secret_key.get_secret_value()
        return cls(settings.s3_endpoint, settings.s3_access_key, secret, settings.s3_secure, settings.s3_region)

    def client(self) -> Minio:
        return _client(self)


@lru_cache(maxsize=8)
def _client(access: S3Access) -> Minio:
    return minio_client(access.endpoint, access.access_key, access.secret_key, access.secure, access.region)


def input_client(settings: Settings) -> Minio:
    """A client for reading inputs with the configured endpoint and keys (VAD_S3_*)."""
    return S3Access.of(settings).client()


def items_from_s3(url: str, access: S3Access) -> Iterator[IngestItem]:
    """The objects under ``url``, sorted by key, one item each (zip members one item each)."""
    where = S3Location.parse(url)
    client = access.client()
    try:
        if not client.bucket_exists(where.bucket):
            raise S3InputError(f"no bucket {where.bucket!r} at the configured S3 endpoint")
        objects = [
            (obj.object_name, obj.size)
            for obj in client.list_objects(where.bucket, prefix=where.prefix, recursive=True)
            if obj.object_name and not obj.is_dir
        ]
    except _ERRORS as exc:
        raise S3InputError(f"could not list {url}: {exc}") from None
    if not objects:
        yield rejected_item(url, "no objects under this prefix")
        return
    for key, size in sorted(objects):
        path = where.url(key)
        relative = key[len(where.prefix) :].lstrip("/") or key
        if reason := name_problem(relative):
            yield rejected_item(path, reason)
        elif skip := skipped_kind(relative):
            yield skipped_item(path, skip)
        elif is_zip_name(key):
            yield from items_from_zip(path, partial(_open_archive, access, where.bucket, key))
        else:
            read = partial(_read_object, access, where.bucket, key, size)
            yield IngestItem(path=path, read=read, size=size, relative=relative)


def _read_object(access: S3Access, bucket: str, key: str, size: int | None) -> bytes:
    """The object's bytes, refusing one that grew past the listed size."""
    response = None
    try:
        response = access.client().get_object(bucket, key)
        data = response.read(size + 1) if size is not None else response.read()
    except _ERRORS as exc:
        raise ImageRejected(f"could not read the object ({exc})") from None
    finally:
        if response is not None:
            response.close()
            response.release_conn()
    if size is not None and len(data) != size:
        raise ImageRejected(f"the object changed while it was read (listed {size:,} bytes, read {len(data):,})")
    return data


def _open_archive(access: S3Access, bucket: str, key: str) -> IO[bytes]:
    """An archive object, read from a temporary file that this process downloaded it to. The last
    few downloads are kept, so a cluster worker that reads an archive's members in many blocks
    downloads it once."""
    with _DOWNLOADS_LOCK:
        where = (access, bucket, key)
        path = _DOWNLOADS.pop(where, None) or _download(access.client(), bucket, key)
        _DOWNLOADS[where] = path
        while len(_DOWNLOADS) > _KEPT_DOWNLOADS:  # handles open on it still read it
            Path(_DOWNLOADS.popitem(last=False)[1]).unlink(missing_ok=True)
        return open(path, "rb")  # the caller closes it


def _download(client: Minio, bucket: str, key: str) -> str:
    """The path of a new temporary file holding the object."""
    descriptor, path = tempfile.mkstemp(prefix="vad-archive-", suffix=".zip")
    response = None
    try:
        with open(descriptor, "wb") as handle:
            response = client.get_object(bucket, key)
            shutil.copyfileobj(response, handle, _CHUNK)
    except _ERRORS as exc:
        Path(path).unlink(missing_ok=True)
        raise OSError(f"could not download it ({exc})") from None
    finally:
        if response is not None:
            response.close()
            response.release_conn()
    return path


@atexit.register
def _remove_downloads() -> None:
    for path in _DOWNLOADS.values():
        Path(path).unlink(missing_ok=True)
