"""Vector index on a Qdrant server or cluster (``VAD_QDRANT_URL``) through qdrant-client.

``:memory:`` runs qdrant-client's local mode, which speaks the same API: tests use it.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from core.index.base import (
    HNSW_EF_CONSTRUCT,
    HNSW_M,
    VECTOR_NAME,
    ImageRecord,
    SearchHit,
    VectorIndex,
    VectorIndexError,
    check_payload_change,
    point_rows,
    record_from,
)
from core.payload import finite_payload
from core.storage.base import check_user

_ERRORS = (UnexpectedResponse, ResponseHandlingException, OSError, ValueError, RuntimeError)


def _user_filter(user: str, ids: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> models.Filter:
    must: list[Any] = [models.FieldCondition(key="user", match=models.MatchValue(value=check_user(user)))]
    if ids is not None:
        must.append(models.HasIdCondition(has_id=[str(i) for i in ids]))
    must_not = [models.HasIdCondition(has_id=[str(i) for i in exclude])] if exclude else None
    return models.Filter(must=must, must_not=must_not)


class ServerIndex(VectorIndex):
    """One collection on a Qdrant server, user as a tenant-indexed keyword payload field."""

    kind = "server"

    def __init__(
        self,
        url: str,
        collection: str,
        dimension: int,
        api_key: str | None = None,
        shards: int = 1,
        replicas: int = 1,
        timeout: float = 30,
    ) -> None:
        self.url = url
        self.collection = collection
        self.dimension = dimension
        self.shards = shards
        self.replicas = replicas
        local = url == ":memory:"
        # qdrant-client's local mode is not thread-safe; a server is.
        self._lock = threading.RLock() if local else nullcontext()
        try:
            if local:
                self.client = QdrantClient(location=url)
            else:
                # The server's version is reported by `doctor`; no warning on every start. An API key
                # over plain http is the norm inside a compose network (docs/deployment.md: TLS
                # between hosts), so qdrant-client's warning about it is not repeated at each start.
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "Api key is used with an insecure connection")
                    self.client = QdrantClient(
                        url=url, api_key=api_key, timeout=max(1, round(timeout)), check_compatibility=False
                    )
            self._ensure_collection()
        except _ERRORS as exc:
            raise VectorIndexError(f"could not reach Qdrant at {url}: {exc}") from exc

    def _ensure_collection(self) -> None:
        if self.client.collection_exists(self.collection):
            info = self.client.get_collection(self.collection)
            vectors = info.config.params.vectors
            size = vectors[VECTOR_NAME].size if isinstance(vectors, dict) and VECTOR_NAME in vectors else None
            if size != self.dimension:
                raise VectorIndexError(
                    f"collection {self.collection} holds {size}-d vectors, the model makes {self.dimension}-d"
                )
            return
        self.client.create_collection(
            self.collection,
            vectors_config={VECTOR_NAME: models.VectorParams(size=self.dimension, distance=models.Distance.COSINE)},
            hnsw_config=models.HnswConfigDiff(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT),
            shard_number=self.shards,
            replication_factor=self.replicas,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # local mode: payload indexes are a no-op
            self.client.create_payload_index(
                self.collection,
                "user",
                field_schema=models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
            )

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            with self._lock:
                return getattr(self.client, method)(self.collection, *args, **kwargs)
        except _ERRORS as exc:
            raise VectorIndexError(f"Qdrant {method} failed: {exc}") from exc

    def upsert(self, records: Sequence[ImageRecord]) -> None:
        if not records:
            return
        points = [
            models.PointStruct(id=point_id, vector={VECTOR_NAME: vector}, payload=payload)
            for point_id, vector, payload in point_rows(records, self.dimension)
        ]
        self._call("upsert", points=points, wait=True)

    def ids_in_other_collections(self, user: str, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        if not ids:
            return found
        try:
            with self._lock:
                names = [c.name for c in self.client.get_collections().collections]
                for name in names:
                    if name.startswith("images_") and name != self.collection:
                        records, _ = self.client.scroll(name, scroll_filter=_user_filter(user, ids), limit=len(ids))
                        found.update(str(r.id) for r in records)
        except _ERRORS as exc:
            raise VectorIndexError(f"Qdrant: could not read the other collections: {exc}") from exc
        return found

    def retrieve(self, user: str, ids: Sequence[str], with_vectors: bool = False) -> list[ImageRecord]:
        if not ids:
            return []
        records, _ = self._call(
            "scroll",
            scroll_filter=_user_filter(user, ids),
            limit=len(ids),
            with_payload=True,
            with_vectors=with_vectors,
        )
        return [record_from(r, with_vectors) for r in records]

    def delete(self, user: str, ids: Sequence[str]) -> None:
        if ids:
            self._call("delete", points_selector=models.FilterSelector(filter=_user_filter(user, ids)), wait=True)

    def set_payload(self, user: str, ids: Sequence[str], values: dict[str, Any]) -> None:
        check_payload_change(values)
        if ids:
            self._call(
                "set_payload",
                payload=finite_payload(values),
                points=models.FilterSelector(filter=_user_filter(user, ids)),
                wait=True,
            )

    def _write_payloads(self, user: str, values_by_id: Mapping[str, dict[str, Any]]) -> None:
        operations = [
            models.SetPayloadOperation(
                set_payload=models.SetPayload(payload=finite_payload(values), filter=_user_filter(user, [image_id]))
            )
            for image_id, values in values_by_id.items()
        ]
        self._call("batch_update_points", update_operations=operations, wait=True)

    def search(
        self,
        user: str,
        vector: np.ndarray,
        limit: int = 10,
        min_score: float | None = None,
        exclude_ids: Sequence[str] = (),
        only_ids: Sequence[str] | None = None,
    ) -> list[SearchHit]:
        response = self._call(
            "query_points",
            query=np.asarray(vector, dtype=np.float32).tolist(),
            using=VECTOR_NAME,
            query_filter=_user_filter(user, ids=only_ids, exclude=exclude_ids),
            limit=limit,
            score_threshold=min_score,
            with_payload=True,
        )
        return [SearchHit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in response.points]

    def scroll(self, user: str, with_vectors: bool = False, batch: int = 1000) -> Iterator[ImageRecord]:
        offset = None
        while True:
            records, offset = self._call(
                "scroll",
                scroll_filter=_user_filter(user),
                limit=batch,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
            yield from (record_from(r, with_vectors) for r in records)
            if offset is None:
                return

    def user_ids(self, user: str) -> Iterator[str]:
        offset = None
        while True:
            records, offset = self._call(
                "scroll",
                scroll_filter=_user_filter(user),
                limit=10_000,
                offset=offset,
                with_payload=False,
                with_vectors=False,
            )
            yield from (str(r.id) for r in records)
            if offset is None:
                return

    def count(self, user: str | None = None) -> int:
        return int(self._call("count", count_filter=_user_filter(user) if user is not None else None, exact=True).count)

    def counts_by_user(self) -> dict[str, int]:
        response = self._call("facet", key="user", limit=100_000, exact=True)
        return {str(hit.value): int(hit.count) for hit in response.hits if hit.count}

    def describe(self) -> str:
        where = "in-memory (test mode)" if self.url == ":memory:" else self.url
        return f"Qdrant server {where}, collection {self.collection}"

    def close(self) -> None:
        with self._lock:
            self.client.close()
