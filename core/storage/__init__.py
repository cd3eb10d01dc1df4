"""Object storage for originals and thumbnails: local directory or S3/MinIO, chosen by settings."""

from __future__ import annotations

from core.settings import Settings
from core.storage.base import (
    ObjectNotFound,
    ObjectStore,
    StorageError,
    StoreUnreachable,
    check_user,
    image_key,
    object_keys,
    thumbnail_key,
)
from core.storage.local import LocalStore
from core.storage.s3 import READ_TIMEOUT_S, RETRIES, S3Store

__all__ = [
    "LocalStore",
    "ObjectNotFound",
    "ObjectStore",
    "S3Store",
    "StorageError",
    "StoreUnreachable",
    "check_user",
    "image_key",
    "object_keys",
    "open_store",
    "thumbnail_key",
]


def open_store(settings: Settings, timeout: float = READ_TIMEOUT_S, retries: int = RETRIES) -> ObjectStore:
    """The store the settings name: S3 when ``VAD_S3_ENDPOINT`` is set, else ``DATA_DIR/objects``.

    ``timeout`` and ``retries`` bound each S3 request (see S3Store; ``doctor`` uses short ones).
    """
    if settings.s3_endpoint:
        assert settings.s3_access_key and settings.s3_secret_key  # checked by Settings
        return S3Store(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key.get_secret_value(),
            settings.s3_bucket,
            secure=settings.s3_secure,
            region=settings.s3_region,
            timeout=timeout,
            retries=retries,
        )
    return LocalStore(settings.data_dir / "objects")
