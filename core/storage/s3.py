"""Object store on S3-compatible servers (MinIO, SeaweedFS, AWS) through the ``minio`` client."""

from __future__ import annotations

import io
from datetime import timedelta
from urllib.parse import urlparse

import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from urllib3.exceptions import HTTPError, MaxRetryError, ReadTimeoutError

from core.storage.base import ObjectNotFound, ObjectStore, StorageError

_MISSING = {"NoSuchKey", "NoSuchObject", "NoSuchBucket"}
# Everything the minio client raises for a server it cannot reach or that refuses a request.
_ERRORS = (MinioException, OSError, HTTPError, ValueError)


def parse_endpoint(endpoint: str, secure: bool | None) -> tuple[str, bool]:
    """``http://host:port`` or ``host:port`` -> (``host:port``, TLS?); an explicit flag wins."""
    parsed = urlparse(endpoint if "://" in endpoint else f"//{endpoint}")
    host = parsed.netloc
    if secure is None:
        secure = parsed.scheme == "https"
    return host, secure


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
        timeout: float = 60,
        retries: int = 3,
    ) -> None:
        host, tls = parse_endpoint(endpoint, secure)
        self.endpoint = f"{'https' if tls else 'http'}://{host}"
        self.bucket = bucket
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout, 10), read=timeout),
            retries=urllib3.Retry(total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
            maxsize=16,
        )
        try:
            self.client = Minio(
                host, access_key=access_key, secret_key=secret_key, secure=tls, region=region, http_client=http
            )
            if not self.client.bucket_exists(bucket):
                self.client.make_bucket(bucket)
        except _ERRORS as exc:
            raise StorageError(f"S3 at {self.endpoint}, bucket {bucket!r}: {_reason(exc)}") from exc

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        try:
            self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        except _ERRORS as exc:
            raise StorageError(f"could not write {key}: {_reason(exc)}") from exc

    def get(self, key: str) -> bytes:
        response = None
        try:
            response = self.client.get_object(self.bucket, key)
            return response.read()
        except S3Error as exc:
            if exc.code in _MISSING:
                raise ObjectNotFound(key) from None
            raise StorageError(f"could not read {key}: {_reason(exc)}") from exc
        except _ERRORS as exc:
            raise StorageError(f"could not read {key}: {_reason(exc)}") from exc
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    def delete(self, key: str) -> None:
        try:
            self.client.remove_object(self.bucket, key)
        except S3Error as exc:
            if exc.code not in _MISSING:
                raise StorageError(f"could not delete {key}: {_reason(exc)}") from exc
        except _ERRORS as exc:
            raise StorageError(f"could not delete {key}: {_reason(exc)}") from exc

    def exists(self, key: str) -> bool:
        try:
            self.client.stat_object(self.bucket, key)
            return True
        except S3Error as exc:
            if exc.code in _MISSING:
                return False
            raise StorageError(f"could not check {key}: {_reason(exc)}") from exc
        except _ERRORS as exc:
            raise StorageError(f"could not check {key}: {_reason(exc)}") from exc

    def url(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return self.client.presigned_get_object(self.bucket, key, expires=expires)

    def describe(self) -> str:
        return f"S3 {self.endpoint}, bucket {self.bucket}"


def _reason(exc: Exception) -> str:
    if isinstance(exc, S3Error):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        # "HTTPConnection(host=..., port=...): Failed to establish a new connection: [Errno 111] ..."
        detail = str(exc.reason).split("): ", 1)[-1]
        return ("no answer: " if isinstance(exc.reason, ReadTimeoutError) else "cannot connect: ") + detail
    return str(exc) or type(exc).__name__
