"""Batch ingest: validate, hash, skip what the user has, store original + thumbnail, embed, upsert.

Every file gets a result (stored / present / rejected with the reason). A failure at any step
undoes that file's earlier steps, so there is never an object without its point or a point
without its objects; the other files go on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from time import perf_counter
from typing import Any, Literal

from core import metrics
from core.embed import Embedder
from core.hashing import phash_hex, pixel_sha256, sha256_hex
from core.images import DecodedImage, ImageLimits, ImageRejected, check_size, decode, thumbnail_bytes
from core.index import ImageRecord, VectorIndex, image_id
from core.quality import image_stats
from core.sources import IngestItem
from core.storage import ObjectStore, check_user, image_key, thumbnail_key

log = logging.getLogger(__name__)

Status = Literal["stored", "present", "rejected"]
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class IngestResult:
    """What happened to one file."""

    path: str
    status: Status
    reason: str | None = None
    image_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Candidate:
    """A file that passed the cheap checks (size, sha256) and is new for this user."""

    position: int
    item: IngestItem
    data: bytes
    sha256: str
    image_id: str
    decoded: DecodedImage | None = None
    phash: str = ""
    pixel_sha256: str = ""
    quality: dict[str, float] = field(default_factory=dict)
    thumbnail: bytes = b""
    keys: list[str] = field(default_factory=list)


class Ingestor:
    """Runs the ingest pipeline against one store, index and embedder."""

    def __init__(
        self,
        store: ObjectStore,
        index: VectorIndex,
        embedder: Embedder,
        limits: ImageLimits = ImageLimits(),
        batch_size: int = 32,
        workers: int | None = None,
    ) -> None:
        self.store = store
        self.index = index
        self.embedder = embedder
        self.limits = limits
        self.batch_size = batch_size
        # Decoding overlaps with embedding; leave the model half the cores (1 of 2 here).
        self.workers = workers or max(1, (os.cpu_count() or 2) // 2)

    def ingest(
        self, items: Sequence[IngestItem], user: str, progress: ProgressCallback | None = None
    ) -> list[IngestResult]:
        """Ingest ``items`` for ``user``; results come back in the order of ``items``."""
        check_user(user)
        started = perf_counter()
        results: list[IngestResult | None] = [None] * len(items)
        seen: dict[str, int] = {}  # sha256 -> position of its first copy in this call
        repeats: list[tuple[int, int]] = []  # (position of a repeat, position of the first copy)
        done = 0

        def record(position: int, result: IngestResult) -> None:
            nonlocal done
            results[position] = result
            done += 1

        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ingest") as pool:
            pending: list[tuple[_Candidate, Future[_Candidate]]] = []
            for start in range(0, len(items), self.batch_size):
                batch = list(enumerate(items[start : start + self.batch_size], start))
                hashed = list(pool.map(self._read_and_hash, batch))
                fresh = self._new_candidates(user, hashed, seen, repeats, record)
                # Decode this batch in the pool while the previous one is embedded and stored.
                decoding = [(c, pool.submit(self._decode, c)) for c in fresh]
                if pending:
                    self._finish(user, pending, record)
                pending = decoding
                if progress:
                    progress(done, len(items))
            if pending:
                self._finish(user, pending, record)
        for position, first in repeats:  # a repeat shares the fate of its first copy
            outcome = results[first]
            assert outcome is not None
            if outcome.status == "rejected":
                repeat = IngestResult(items[position].path, "rejected", outcome.reason)
            else:
                reason = f"same content as {items[first].path}"
                repeat = IngestResult(items[position].path, "present", reason, outcome.image_id)
            record(position, repeat)
        if progress:
            progress(done, len(items))
        finished = [r for r in results if r is not None]
        for result in finished:
            metrics.IMAGES_INGESTED.labels(outcome=result.status).inc()
        metrics.INGEST_DURATION.observe(perf_counter() - started)
        return finished

    def _read_and_hash(self, entry: tuple[int, IngestItem]) -> tuple[int, _Candidate | IngestResult]:
        position, item = entry
        try:
            if item.size is not None:
                check_size(item.size, self.limits)
            data = item.read()
            check_size(len(data), self.limits)
        except ImageRejected as exc:
            return position, IngestResult(item.path, "rejected", str(exc))
        except Exception as exc:  # unreadable file or archive member
            return position, IngestResult(item.path, "rejected", f"could not read the file: {exc}")
        return position, _Candidate(position, item, data, sha256_hex(data), "")

    def _new_candidates(
        self,
        user: str,
        hashed: list[tuple[int, _Candidate | IngestResult]],
        seen: dict[str, int],
        repeats: list[tuple[int, int]],
        record: Callable[[int, IngestResult], None],
    ) -> list[_Candidate]:
        candidates: list[_Candidate] = []
        for position, entry in hashed:
            if isinstance(entry, IngestResult):
                record(position, entry)
                continue
            entry.image_id = image_id(user, entry.sha256)
            if entry.sha256 in seen:
                repeats.append((entry.position, seen[entry.sha256]))
                continue
            seen[entry.sha256] = entry.position
            candidates.append(entry)
        try:
            existing = self.index.existing_ids(user, [c.image_id for c in candidates])
        except Exception as exc:
            for c in candidates:
                record(c.position, IngestResult(c.item.path, "rejected", f"index unavailable: {exc}"))
            return []
        fresh = []
        for c in candidates:
            if c.image_id in existing:
                record(c.position, IngestResult(c.item.path, "present", "already in your collection", c.image_id))
            else:
                fresh.append(c)
        return fresh

    def _decode(self, candidate: _Candidate) -> _Candidate:
        with metrics.timed(metrics.IMAGE_PROCESSING, stage="decode"):
            decoded = decode(candidate.data, self.limits)
            candidate.decoded = decoded
            candidate.phash = phash_hex(decoded.image)
            candidate.pixel_sha256 = pixel_sha256(decoded.image)
            candidate.quality = image_stats(decoded.image)
            candidate.thumbnail = thumbnail_bytes(decoded)
        return candidate

    def _finish(
        self,
        user: str,
        pending: list[tuple[_Candidate, Future[_Candidate]]],
        record: Callable[[int, IngestResult], None],
    ) -> None:
        ready: list[_Candidate] = []
        for candidate, future in pending:
            try:
                ready.append(future.result())
            except ImageRejected as exc:
                record(candidate.position, IngestResult(candidate.item.path, "rejected", str(exc)))
            except Exception as exc:
                log.exception("decoding %s failed", candidate.item.path)
                record(candidate.position, IngestResult(candidate.item.path, "rejected", f"could not decode: {exc}"))
        if not ready:
            return
        try:
            started = perf_counter()
            vectors = self.embedder.embed_images([c.decoded.image for c in ready if c.decoded])
            per_image = (perf_counter() - started) / len(ready)
            for _ in ready:
                metrics.IMAGE_PROCESSING.labels(stage="embed").observe(per_image)
        except Exception as exc:
            log.exception("embedding failed")
            for c in ready:
                record(c.position, IngestResult(c.item.path, "rejected", f"embedding failed: {exc}"))
            return
        stored: list[tuple[_Candidate, ImageRecord]] = []
        for candidate, vector in zip(ready, vectors, strict=True):
            try:
                self._store_objects(user, candidate)
            except Exception as exc:
                self._remove_objects(candidate)
                record(candidate.position, IngestResult(candidate.item.path, "rejected", f"could not store: {exc}"))
                continue
            stored.append((candidate, ImageRecord(candidate.image_id, self._payload(user, candidate), vector)))
        self._upsert(user, stored, record)

    def _upsert(
        self,
        user: str,
        stored: list[tuple[_Candidate, ImageRecord]],
        record: Callable[[int, IngestResult], None],
    ) -> None:
        try:
            self.index.upsert([r for _, r in stored])
            failures: list[tuple[_Candidate, Exception]] = []
        except Exception:
            # Retry one by one so that a single bad record does not reject the whole batch.
            failures = []
            for candidate, rec in stored:
                try:
                    self.index.upsert([rec])
                except Exception as exc:
                    failures.append((candidate, exc))
        failed = {c.image_id for c, _ in failures}
        for candidate, exc in failures:
            try:
                self.index.delete(user, [candidate.image_id])
            except Exception:
                log.exception("could not remove a half-written point %s", candidate.image_id)
            self._remove_objects(candidate)
            record(candidate.position, IngestResult(candidate.item.path, "rejected", f"index write failed: {exc}"))
        for candidate, _ in stored:
            if candidate.image_id not in failed:
                record(candidate.position, IngestResult(candidate.item.path, "stored", None, candidate.image_id))

    def _store_objects(self, user: str, candidate: _Candidate) -> None:
        assert candidate.decoded is not None
        original = image_key(user, candidate.image_id, candidate.decoded.extension)
        thumb = thumbnail_key(user, candidate.image_id)
        with metrics.timed(metrics.IMAGE_PROCESSING, stage="store"):
            candidate.keys.append(original)
            self.store.put(original, candidate.data, candidate.decoded.mime_type)
            candidate.keys.append(thumb)
            self.store.put(thumb, candidate.thumbnail, "image/webp")

    def _remove_objects(self, candidate: _Candidate) -> None:
        for key in candidate.keys:
            try:
                self.store.delete(key)
            except Exception:
                log.exception("could not remove %s after a failed ingest", key)

    @staticmethod
    def _payload(user: str, candidate: _Candidate) -> dict[str, Any]:
        decoded = candidate.decoded
        assert decoded is not None
        now = datetime.now(UTC)
        return {
            "user": user,
            "filename": PurePosixPath(candidate.item.path.replace("\\", "/")).name,
            "source_path": candidate.item.path,
            "sha256": candidate.sha256,
            "phash": candidate.phash,
            "pixel_sha256": candidate.pixel_sha256,
            "quality": candidate.quality,
            "width": decoded.width,
            "height": decoded.height,
            "bytes": len(candidate.data),
            "format": decoded.format,
            "created_at": now.isoformat(timespec="seconds"),
            "created_ts": now.timestamp(),
            "original_key": candidate.keys[0],
            "thumbnail_key": candidate.keys[1],
            "tags": [],
        }


def delete_images(store: ObjectStore, index: VectorIndex, user: str, ids: Sequence[str]) -> int:
    """Delete the user's images among ``ids``: point first, then original and thumbnail."""
    records = index.retrieve(user, list(ids))
    if not records:
        return 0
    index.delete(user, [r.id for r in records])
    for r in records:
        for key in (r.payload.get("original_key"), r.payload.get("thumbnail_key")):
            if key:
                store.delete(key)
    return len(records)
