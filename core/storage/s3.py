"""Object store on S3-compatible servers (MinIO, SeaweedFS, AWS) through the ``minio`` client."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from urllib3.exceptions import HTTPError, MaxRetryError, ProtocolError, ReadTimeoutError
from urllib3.exceptions import TimeoutError as HTTPTimeout

from core.storage.base import ObjectNotFound, ObjectStore, StorageError, StoreUnreachable

_MISSING = {"NoSuchKey", "NoSuchObject", "NoSuchBucket"}
# Everything the minio client raises for a server it cannot reach or that refuses a request.
_ERRORS = (MinioException, OSError, HTTPError, ValueError)
#: Of those, the ones that mean the server did not answer (or kept failing): StoreUnreachable.
_UNREACHABLE = (MaxRetryError, ProtocolError, HTTPTimeout, OSError)
#: Defaults: a dead server fails in about a second, a hung one in one read timeout per request.
CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 10.0
RETRIES = 2


def parse_endpoint(endpoint: str, secure: bool | None) -> tuple[str, bool]:
    """``http://host:port`` or ``host:port`` -> (``host:port``, TLS?); an explicit flag wins."""
    parsed = urlparse(endpoint if "://" in endpoint else f"//{endpoint}")
    host = parsed.netloc
    if secure is None:
        secure = parsed.scheme == "https"
    return host, secure


def minio_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    secure: bool | None = None,
    region: str | None = None,
    timeout: float = READ_TIMEOUT_S,
    retries: int = RETRIES,
) -> Minio:
    """A client whose requests wait at most ``timeout`` and retry as S3Store describes."""
    host, tls = parse_endpoint(endpoint, secure)
    retry = urllib3.Retry(
        total=retries,
        connect=retries,
        read=0,
        other=0,
        status=retries,
        backoff_factor=0.2,
        status_forcelist=[500, 502, 503, 504],
    )
    http = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=min(timeout, CONNECT_TIMEOUT_S), read=timeout),
        retries=retry,
        maxsize=16,
    )
    return Minio(host, access_key=access_key, secret_key=secret_key, secure=tls, region=region, http_client=http)


def endpoint_url(endpoint: str, secure: bool | None = None) -> str:
    """The endpoint as shown to people: ``http(s)://host:port``."""
    host, tls = parse_endpoint(endpoint, secure)
    return f"{'https' if tls else 'http'}://{host}"


class S3Store(ObjectStore):
    """Objects in one bucket, created if missing."""

    kind = "s3"

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool | None = None,
        region: str | None = None,
        timeout: float = READ_TIMEOUT_S,
        retries: int = RETRIES,
    ) -> None:
        """``timeout`` bounds each wait for the server (connecting: at most 3 s); ``retries`` re-sends a
        request whose connection failed or that got a 5xx, never one that timed out waiting for an
        answer. So one call takes at most ``(retries + 1) * 3 s`` plus back-off against a dead server
        and ``3 s + timeout`` against a hung one; then it raises StoreUnreachable."""
        self.endpoint = endpoint_url(endpoint, secure)
        self.bucket = bucket
        try:
            self.client = minio_client(endpoint, access_key, secret_key, secure, region, timeout, retries)
            if not self.client.bucket_exists(bucket):
                self.client.make_bucket(bucket)
        except _ERRORS as exc:
            raise _error(f"S3 at {self.endpoint}, bucket {bucket!r}", exc) from exc

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        try:
            self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        except _ERRORS as exc:
            raise _error(f"could not write {key}", exc) from exc

    def get(self, key: str) -> bytes:
        response = None
        try:
            response = self.client.get_object(self.bucket, key)
            return response.read()
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectNotFound(key) from None
            raise _error(f"could not read {key}", exc) from exc
        except _ERRORS as exc:
            raise _error(f"could not read {key}", exc) from exc
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def delete(self, key: str) -> None:
        try:
            self.client.remove_object(self.bucket, key)
        except S3Error as exc:
            if exc.code not in _MISSING:
                raise _error(f"could not delete {key}", exc) from exc
        except _ERRORS as exc:
            raise _error(f"could not delete {key}", exc) from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key)
            return True
        except S3Error as exc:
            if exc.code in _MISSING:
                return False
            raise _error(f"could not check {key}", exc) from exc
        except _ERRORS as exc:
            raise _error(f"could not check {key}", exc) from exc

    def list_keys(self, prefix: str) -> Iterator[str]:
        try:
            for obj in self.client.list_objects(self.bucket, prefix=prefix, recursive=True):
                if obj.object_name is not None:
                    yield obj.object_name
        except _ERRORS as exc:
            raise _error(f"could not list {prefix}", exc) from exc

    def url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return self.client.presigned_get_object(self.bucket, key, expires=expires)

    def describe(self) -> str:
        return f"S3 {self.endpoint}, bucket {self.bucket}"


def _error(what: str, exc: Exception) -> StorageError:
    """StoreUnreachable when the server did not answer, else StorageError; the message says why."""
    kind = StorageError if isinstance(exc, S3Error) or not isinstance(exc, _UNREACHABLE) else StoreUnreachable
    return kind(f"{what}: {_reason(exc)}")


def _reason(exc: Exception) -> str:
    if isinstance(exc, S3Error):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        # "HTTPConnection(host=..., port=...): Failed to establish a new connection: [Errno 111] ..."
        detail = str(exc.reason).split("): ", 1)[-1]
        return ("no answer: " if isinstance(exc.reason, ReadTimeoutError) else "cannot connect: ") + detail
    return str(exc) or type(exc).__name__
