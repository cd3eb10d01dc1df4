"""The vector index: embedded Qdrant engine (default) or a Qdrant server, chosen by settings."""

from __future__ import annotations

from core.index.base import (
    ImageRecord,
    IndexLocked,
    SearchHit,
    VectorIndex,
    VectorIndexError,
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
]


def open_index(settings: Settings, model_name: str, dimension: int, timeout: float = 30) -> VectorIndex:
    """The index for this model: a server collection if ``VAD_QDRANT_URL`` is set, else embedded.

    ``timeout`` bounds each request to a server (``doctor`` uses a short one).
    """
    collection = collection_name(model_name, dimension)
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
