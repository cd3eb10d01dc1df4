"""Embedded vector index: Qdrant's engine in-process (qdrant-edge), one shard per model on disk."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    FacetRequest,
    FieldCondition,
    Filter,
    HasIdCondition,
    HnswIndexConfig,
    MatchValue,
    PayloadSchemaType,
    Point,
    Query,
    QueryRequest,
    ScrollRequest,
    UpdateOperation,
)

from core.diskspace import DiskGuard
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
from core.index.lock import DirectoryLock
from core.payload import finite_payload
from core.storage.base import check_user

#: The switch interval while points are handed to qdrant-edge (Python's default is 5 ms).
_HANDOFF_INTERVAL_S = 5e-5
_handoffs_lock = threading.Lock()
_handoffs_open = 0
_saved_interval = 0.0


@contextmanager
def _prompt_gil_handoffs() -> Iterator[None]:
    """Let this thread get the GIL back within 50 µs, not 5 ms, while points are converted.

    qdrant-edge lets go of the GIL several times for every point it converts (about once per
    payload field). Each time, a thread running Python meanwhile keeps the GIL for a whole switch
    interval: with one such thread (an analysis job, a page being drawn) the ingest's upserts took
    31 ms per image instead of 0.2 ms. The interval is process-wide; it is restored when the last
    thread inside leaves."""
    global _handoffs_open, _saved_interval
    with _handoffs_lock:
        if _handoffs_open == 0:
            _saved_interval = sys.getswitchinterval()
            sys.setswitchinterval(_HANDOFF_INTERVAL_S)
        _handoffs_open += 1
    try:
        yield
    finally:
        with _handoffs_lock:
            _handoffs_open -= 1
            if _handoffs_open == 0:
                sys.setswitchinterval(_saved_interval)


def _user_filter(user: str, ids: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> Filter:
    must: list[Any] = [FieldCondition(key="user", match=MatchValue(check_user(user)))]
    if ids is not None:
        must.append(HasIdCondition({str(i) for i in ids}))
    return Filter(must=must, must_not=[HasIdCondition({str(i) for i in exclude})] if exclude else None)


class EdgeIndex(VectorIndex):
    """A qdrant-edge shard under ``root/collection``. Calls are serialised by a lock.

    The shard's files are memory-mapped, and a write to them on a full disk is a SIGBUS (opening
    one preallocates about 40 MB): with a ``disk_guard``, opening and every write first check the
    free space and raise DiskFull instead.
    """

    kind = "embedded"

    def __init__(self, root: Path, collection: str, dimension: int, disk_guard: DiskGuard | None = None) -> None:
        self.collection = collection
        self.dimension = dimension
        self.path = Path(root) / collection
        self._lock = threading.RLock()
        self._disk = disk_guard or DiskGuard(Path(root), 0)
        self._disk.check()
        self._dir_lock = DirectoryLock(Path(root), "embedded vector index")
        try:
            self.shard = self._open()
        except Exception:
            self._dir_lock.release()
            raise

    def _open(self) -> EdgeShard:
        config = EdgeConfig(
            vectors={VECTOR_NAME: EdgeVectorParams(size=self.dimension, distance=Distance.Cosine)},
            hnsw_config=HnswIndexConfig(m=HNSW_M, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=10_000),
        )
        try:
            if (self.path / "edge_config.json").exists():
                return EdgeShard.load(str(self.path), config)  # checks the stored vector size
            self.path.mkdir(parents=True, exist_ok=True)
            shard = EdgeShard.create(str(self.path), config)
            shard.update(UpdateOperation.create_field_index("user", PayloadSchemaType.Keyword))
            return shard
        except Exception as exc:
            raise VectorIndexError(f"could not open the embedded index at {self.path}: {exc}") from exc

    def upsert(self, records: Sequence[ImageRecord]) -> None:
        if not records:
            return
        rows = point_rows(records, self.dimension)
        with _prompt_gil_handoffs():
            points = [Point(point_id, {VECTOR_NAME: vector}, payload) for point_id, vector, payload in rows]
        with self._lock:
            self._disk.check()
            self.shard.update(UpdateOperation.upsert_points(points))

    def retrieve(self, user: str, ids: Sequence[str], with_vectors: bool = False) -> list[ImageRecord]:
        if not ids:
            return []
        request = ScrollRequest(
            limit=len(ids), filter=_user_filter(user, ids), with_payload=True, with_vector=with_vectors
        )
        with self._lock:
            records, _ = self.shard.scroll(request)
        return [record_from(r, with_vectors) for r in records]

    def delete(self, user: str, ids: Sequence[str]) -> None:
        if ids:
            with self._lock:
                self._disk.check()
                self.shard.update(UpdateOperation.delete_points_by_filter(_user_filter(user, ids)))

    def set_payload(self, user: str, ids: Sequence[str], values: dict[str, Any]) -> None:
        check_payload_change(values)
        if ids:
            with self._lock:
                self._disk.check()
                with _prompt_gil_handoffs():
                    operation = UpdateOperation.set_payload_by_filter(_user_filter(user, ids), finite_payload(values))
                self.shard.update(operation)

    def search(
        self,
        user: str,
        vector: np.ndarray,
        limit: int = 10,
        min_score: float | None = None,
        exclude_ids: Sequence[str] = (),
        only_ids: Sequence[str] | None = None,
    ) -> list[SearchHit]:
        request = QueryRequest(
            query=Query.Nearest(np.asarray(vector, dtype=np.float32).tolist(), using=VECTOR_NAME),
            filter=_user_filter(user, ids=only_ids, exclude=exclude_ids),
            limit=limit,
            with_payload=True,
            score_threshold=min_score,
        )
        with self._lock:
            points = self.shard.query(request)
        return [SearchHit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in points]

    def scroll(self, user: str, with_vectors: bool = False, batch: int = 1000) -> Iterator[ImageRecord]:
        offset = None
        while True:
            request = ScrollRequest(
                offset=offset, limit=batch, filter=_user_filter(user), with_payload=True, with_vector=with_vectors
            )
            with self._lock:
                records, offset = self.shard.scroll(request)
            yield from (record_from(r, with_vectors) for r in records)
            if offset is None:
                return

    def user_ids(self, user: str) -> Iterator[str]:
        offset = None
        while True:
            request = ScrollRequest(
                offset=offset, limit=10_000, filter=_user_filter(user), with_payload=False, with_vector=False
            )
            with self._lock:
                records, offset = self.shard.scroll(request)
            yield from (str(r.id) for r in records)
            if offset is None:
                return

    def count(self, user: str | None = None) -> int:
        request = CountRequest(exact=True, filter=_user_filter(user) if user is not None else None)
        with self._lock:
            return int(self.shard.count(request))

    def counts_by_user(self) -> dict[str, int]:
        with self._lock:
            response = self.shard.facet(FacetRequest(key="user", limit=100_000, exact=True))
        return {str(hit.value): int(hit.count) for hit in response.hits if hit.count}

    def ids_in_other_collections(self, user: str, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        if not ids:
            return found
        request = ScrollRequest(limit=len(ids), filter=_user_filter(user, ids), with_payload=False, with_vector=False)
        for path in sorted(self.path.parent.iterdir()):
            if path == self.path or not (path / "edge_config.json").exists():
                continue
            with self._lock:  # this process holds the directory's lock: the other shards are ours to read
                self._disk.check()
                shard = EdgeShard.load(str(path))
                try:
                    records, _ = shard.scroll(request)
                finally:
                    shard.close()
            found.update(str(r.id) for r in records)
        return found

    def describe(self) -> str:
        return f"embedded Qdrant (qdrant-edge) at {self.path}"

    def close(self) -> None:
        with self._lock:
            if self.shard is not None:
                self.shard.close()
                self.shard = None
            self._dir_lock.release()
