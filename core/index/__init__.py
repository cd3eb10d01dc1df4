"""The vector index: embedded Qdrant engine (default) or a Qdrant server, chosen by settings."""

from __future__ import annotations

from pathlib import Path

from core.index.base import (
    ImageRecord,
    IndexLocked,
    SearchHit,
    VectorIndex,
    VectorIndexError,
    attach_observer,
    collection_name,
    image_id,
)
from core.settings import Settings

__all__ = [
    "ImageRecord",
    "IndexLocked",
    "SearchHit",
    "VectorIndex",
    "VectorIndexError",
    "collection_name",
    "image_id",
    "open_index",
    "vector_cache_root",
]


def open_index(settings: Settings, model_name: str, dimension: int, timeout: float = 30) -> VectorIndex:
    """The index for this model: a server collection if ``VAD_QDRANT_URL`` is set, else embedded.

    ``timeout`` bounds each request to a server (``doctor`` uses a short one).
    """
    index = _open_collection(settings, collection_name(model_name, dimension), dimension, timeout)
    from core.vectors import VectorCache  # imported here: core.vectors builds on this package

    attach_observer(index, VectorCache(vector_cache_root(settings), index.collection, dimension, index))
    return index


def vector_cache_root(settings: Settings) -> Path:
    """Where the vector caches of every collection live (see core.vectors)."""
    return settings.data_dir / "cache" / "vectors"


def _open_collection(settings: Settings, collection: str, dimension: int, timeout: float) -> VectorIndex:
    if settings.qdrant_url:
        from core.index.server import ServerIndex

        api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return ServerIndex(
            settings.qdrant_url,
            collection,
            dimension,
            api_key=api_key,
            shards=settings.qdrant_shards,
            replicas=settings.qdrant_replicas,
            timeout=timeout,
        )
    from core.diskspace import DiskGuard
    from core.index.edge import EdgeIndex

    guard = DiskGuard(settings.data_dir, settings.min_free_bytes)
    return EdgeIndex(settings.data_dir / "index", collection, dimension, disk_guard=guard)
