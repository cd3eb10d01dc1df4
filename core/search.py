"""Search logic: by a stored image, by an uploaded image (not stored), or by text.

``only_ids`` restricts a search to some of the user's images (e.g. those a dataset, split or label
filter keeps); the restriction runs inside the index, so the best matches among them come back.
"""

from __future__ import annotations

from collections.abc import Sequence

from core import metrics
from core.images import decode
from core.index import SearchHit
from core.services import Services


class SearchError(ValueError):
    """The query can't be run; the message says why (bad upload, empty text, unknown image)."""


def by_image_id(
    services: Services,
    user: str,
    image_id: str,
    limit: int = 12,
    min_score: float | None = None,
    only_ids: Sequence[str] | None = None,
) -> list[SearchHit]:
    records = services.index.retrieve(user, [image_id], with_vectors=True)
    if not records or records[0].vector is None:
        raise SearchError("that image is not in your collection")
    with metrics.timed(metrics.VECTOR_SEARCH, kind="image"):
        return services.index.search(
            user, records[0].vector, limit=limit, min_score=min_score, exclude_ids=[image_id], only_ids=only_ids
        )


def by_upload(
    services: Services,
    user: str,
    data: bytes,
    limit: int = 12,
    min_score: float | None = None,
    only_ids: Sequence[str] | None = None,
) -> list[SearchHit]:
    """Search with an image that is not stored: it is validated and embedded, nothing is kept."""
    decoded = decode(data, services.limits)  # raises ImageRejected (a ValueError) with the reason
    with metrics.timed(metrics.QUERY_EMBEDDING, kind="upload"):
        vector = services.embedder.embed_images([decoded.image])[0]
    with metrics.timed(metrics.VECTOR_SEARCH, kind="upload"):
        return services.index.search(user, vector, limit=limit, min_score=min_score, only_ids=only_ids)


def by_text(
    services: Services,
    user: str,
    text: str,
    limit: int = 12,
    min_score: float | None = None,
    only_ids: Sequence[str] | None = None,
) -> list[SearchHit]:
    """Natural-language search; raises TextSearchUnavailable when the model has no text encoder."""
    query = " ".join(str(text).split())[:300]
    if not query:
        raise SearchError("type a few words to search for, e.g. 'a dog on a beach'")
    with metrics.timed(metrics.QUERY_EMBEDDING, kind="text"):
        vector = services.embedder.embed_texts([query])[0]
    with metrics.timed(metrics.VECTOR_SEARCH, kind="text"):
        return services.index.search(user, vector, limit=limit, min_score=min_score, only_ids=only_ids)
