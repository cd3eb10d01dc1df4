"""Batch ingest: validate, hash, skip what the user has, store original + thumbnail, embed, upsert.

Every file gets a result (stored / present / rejected with the reason / skipped: a hidden, system
or macOS metadata file). A failure at any step
undoes that file's earlier steps, so there is never an object without its point or a point
without its objects; the other files go on. What a batch is about to write is first recorded in
an intent journal (core.journal), so that a killed ingest is settled by the next one.

When a part that every file needs fails (the object store stops answering, the data disk fills
up), the ingest stops: the files not yet attempted are rejected with "not attempted: <reason>".
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path, PurePosixPath
from time import perf_counter, sleep
from typing import Any, Literal, TypeVar

import numpy as np

from core import metrics
from core.diskspace import DiskFull, DiskGuard
from core.embed import Embedder
from core.hashing import sha256_hex
from core.images import ImageLimits, ImageRejected, check_size, thumbnail_format
from core.index import ImageRecord, VectorIndex, image_id
from core.journal import Intent, IntentJournal, recover, remove_keys
from core.layouts import IngestOptions, apply_options
from core.prepare import PreparedImage, PreparePool, prepare_or_reason
from core.records import Occurrence, add_occurrences, derived, occurrence, occurrence_names
from core.sources import IngestItem, InputSkipped
from core.storage import ObjectStore, StorageError, StoreUnreachable, check_user, object_keys
from core.storage.breaker import Breaker

log = logging.getLogger(__name__)

Status = Literal["stored", "present", "rejected", "skipped"]
ProgressCallback = Callable[[int, int], None]
#: Seconds between the tries of removing a failed file's objects.
CLEANUP_BACKOFF_S = (0.2, 1.0)
T = TypeVar("T")
R = TypeVar("R")

#: Threads that read and sha256 files ahead of the main loop (file I/O and hashlib release the GIL).
_READ_THREADS = 4
#: Batches handed to the worker processes ahead of the one being embedded: enough to keep the
#: workers busy while the model runs, few enough to keep memory flat.
_BATCHES_AHEAD = 2
#: Files per worker task, at most: fewer round trips, yet every worker gets a share of a batch.
_MAX_CHUNK = 8
#: Files whose objects are written at the same time, by default (store puts wait on I/O, not on
#: the GIL).
STORE_THREADS = 8
#: A file not written because the store had stopped answering before its turn.
_NOT_ATTEMPTED = object()


@dataclass(frozen=True)
class IngestResult:
    """What happened to one file."""

    path: str
    status: Status
    reason: str | None = None
    image_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class IngestStopped:
    """Why an ingest stopped early (a part every file needs failed): ``reason`` goes into each
    remaining file's result, ``detail`` into the one line that says so."""

    reason: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.reason} ({self.detail})" if self.detail else self.reason


@dataclass(frozen=True)
class StageProgress:
    """How far each stage of a running ingest has got, out of ``total`` files."""

    total: int
    read: int  # read and sha256-hashed
    prepared: int  # decoded, hashed, thumbnailed and made a model input (or settled before that)
    done: int  # with a final result


StageCallback = Callable[[StageProgress], None]
ResultCallback = Callable[["IngestResult"], None]


@dataclass
class Candidate:
    """A file that passed the cheap checks (size, sha256) and is new for this user."""

    position: int
    item: IngestItem
    data: bytes
    sha256: str
    image_id: str
    decoded: PreparedImage | None = None
    phash: str = ""
    content_phash: str = ""
    content_size: tuple[int, int] = (0, 0)
    pixel_sha256: str = ""
    quality: dict[str, float] = field(default_factory=dict)
    thumbnail: bytes = b""
    keys: list[str] = field(default_factory=list)
    #: The file's size in bytes (``data`` is empty once a cluster node stored the file itself).
    size: int = -1
    #: Whether its objects are in the store already (written by a cluster node, under an intent).
    written: bool = False

    def __post_init__(self) -> None:
        if self.size < 0:
            self.size = len(self.data)

    def take(self, prepared: PreparedImage) -> None:
        self.decoded = prepared
        self.phash = prepared.phash
        self.content_phash = prepared.content_phash
        self.content_size = prepared.content_size
        self.pixel_sha256 = prepared.pixel_sha256
        self.quality = prepared.quality
        self.thumbnail = prepared.thumbnail


class Tally:
    """Each file's result by position, and how far each stage got."""

    def __init__(
        self,
        total: int,
        progress: ProgressCallback | None,
        stages: StageCallback | None,
        on_result: ResultCallback | None,
    ) -> None:
        self.results: list[IngestResult | None] = [None] * total
        self.read = self.prepared = self.done = 0
        self._progress = progress
        self._stages = stages
        self._on_result = on_result
        self._lock = threading.Lock()  # a batch is stored on a thread of its own while the next is embedded

    def record(self, position: int, result: IngestResult) -> None:
        with self._lock:
            self.results[position] = result
            self.done += 1
            if self._on_result:
                self._on_result(result)

    def notify(self) -> None:
        total = len(self.results)
        if self._progress:
            self._progress(self.done, total)
        if self._stages:
            self._stages(StageProgress(total, self.read, self.prepared, self.done))


class Ingestor:
    """Runs the ingest pipeline against one store, index and embedder.

    Stages overlap: threads read and hash files ahead; worker processes (``pool``) decode and
    prepare the next batches; this thread embeds one batch while another writes the batch before
    it to the store (up to ``store_threads`` files at a time) and the index. Without a pool, or
    for fewer files than a batch, the CPU work runs here.
    """

    def __init__(
        self,
        store: ObjectStore,
        index: VectorIndex,
        embedder: Embedder,
        limits: ImageLimits = ImageLimits(),
        batch_size: int = 32,
        pool: PreparePool | None = None,
        journal_dir: Path | None = None,
        disk_guard: DiskGuard | None = None,
        store_threads: int = STORE_THREADS,
    ) -> None:
        """``journal_dir``: where intents are journaled (None: no journal); ``disk_guard``: checked
        before each batch is stored; ``store_threads``: files whose objects are written at a time."""
        self.store = store
        self.index = index
        self.embedder = embedder
        self.limits = limits
        self.batch_size = batch_size
        self.pool = pool
        self.journal_dir = journal_dir
        self.store_threads = store_threads
        self.disk_guard = disk_guard
        #: Why the last ``ingest`` stopped early, if it did.
        self.stopped: IngestStopped | None = None
        self._journal: IntentJournal | None = None
        self._breaker = Breaker()
        self._breaker_lock = threading.Lock()  # the store's writer threads count into it
        #: Occurrences to append to images the user already has (image id -> occurrences).
        self._occurrences: dict[str, list[Occurrence]] = {}
        #: The store's writer threads, for the length of one ``ingest`` call.
        self._writers: ThreadPoolExecutor | None = None

    def ingest(
        self,
        items: Sequence[IngestItem],
        user: str,
        progress: ProgressCallback | None = None,
        stages: StageCallback | None = None,
        on_result: ResultCallback | None = None,
        options: IngestOptions | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> list[IngestResult]:
        """Ingest ``items`` for ``user``; results come back in the order of ``items``.

        ``progress(done, total)`` and ``stages(StageProgress)`` are called after every batch, and
        each result is handed to ``on_result`` as soon as it is known. ``options`` give the files
        their dataset, split and label (``core.layouts``; a bad manifest raises ManifestError
        before anything is stored). A file with content the user has adds its occurrence to that
        image. ``should_stop`` is asked after every batch: once it says yes, the files not yet
        attempted are reported as "not attempted: cancelled" (what was stored stays)."""
        check_user(user)
        items = apply_options(items, options)
        self._occurrences = {}
        self._settle_journals()
        self.stopped = None
        self._breaker = Breaker()
        self._journal = self._open_journal()
        started = perf_counter()
        tally = Tally(len(items), progress, stages, on_result)
        seen: dict[str, int] = {}  # sha256 -> position of its first copy in this call
        repeats: list[tuple[int, int]] = []  # (position of a repeat, position of the first copy)
        # Starting the workers costs more than preparing one batch here.
        pool = self.pool if self.pool is not None and (self.pool.started or len(items) > self.batch_size) else None

        with (
            closing(self._ready_batches(items, user, seen, repeats, pool, tally)) as prepared,
            ThreadPoolExecutor(max(1, self.store_threads), thread_name_prefix="ingest-store") as self._writers,
            ThreadPoolExecutor(1, thread_name_prefix="ingest-batch") as storing,
        ):
            writing: Future[None] | None = None  # the batch before, stored while this one is embedded
            for ready in prepared:
                embedded = self._embedded(ready, tally.record)
                if writing is not None:
                    writing.result()
                    writing = None
                if not self.stopped and embedded:  # once stopped, an embedded batch is not attempted
                    writing = storing.submit(self._store_batch, user, embedded, tally.record)
                tally.notify()
                if not self.stopped and should_stop is not None and should_stop():
                    self._stop(IngestStopped("cancelled"), [])
                if self.stopped:
                    break  # closing the generator cancels the work queued in the pool
            if writing is not None:
                writing.result()
                tally.notify()
        self._writers = None
        if self._journal:
            self._journal.close()
        if self.stopped:
            self._not_attempted(items, tally.results, {position for position, _ in repeats}, tally.record)
        for position, first in repeats:  # a repeat shares the fate of its first copy
            outcome = tally.results[first]
            assert outcome is not None
            if outcome.status == "rejected":
                repeat = IngestResult(items[position].path, "rejected", outcome.reason)
            else:
                reason = f"same content as {items[first].path}"
                repeat = IngestResult(items[position].path, "present", reason, outcome.image_id)
                self._add_occurrence(outcome.image_id, items[position])
            tally.record(position, repeat)
        self._record_occurrences(user)
        tally.notify()
        finished = [r for r in tally.results if r is not None]
        for result in finished:
            metrics.IMAGES_INGESTED.labels(outcome=result.status).inc()
        metrics.INGEST_DURATION.observe(perf_counter() - started)
        return finished

    def _open_journal(self) -> IntentJournal | None:
        """This call's intent journal (None without a journal folder)."""
        return IntentJournal(self.journal_dir) if self.journal_dir else None

    def _settle_journals(self) -> None:
        """Settle what earlier, killed ingests left in the journal (logged; never stops this one)."""
        if self.journal_dir is None:
            return
        try:
            found = recover(self.journal_dir, self.store, self.index)
        except Exception:
            log.exception("could not settle the intent journal in %s", self.journal_dir)
            return
        if found.completed or found.removed or found.failed:
            log.warning(
                "intent journal: %d interrupted images kept, %d removed, %d left for later",
                found.completed,
                found.removed,
                len(found.failed),
            )

    def _not_attempted(
        self,
        items: Sequence[IngestItem],
        results: list[IngestResult | None],
        repeats: set[int],
        record: Callable[[int, IngestResult], None],
    ) -> None:
        assert self.stopped is not None
        for position, item in enumerate(items):
            if results[position] is None and position not in repeats:
                record(position, IngestResult(item.path, "rejected", f"not attempted: {self.stopped.reason}"))

    def _ready_batches(
        self,
        items: Sequence[IngestItem],
        user: str,
        seen: dict[str, int],
        repeats: list[tuple[int, int]],
        pool: PreparePool | None,
        tally: Tally,
    ) -> Iterator[list[Candidate]]:
        """Each batch's new candidates, prepared, in order: the files are read and hashed ahead
        in threads, checked against this call's earlier files (``seen``; a repeat goes to
        ``repeats``) and the index, and prepared in ``pool``. The other files' results are recorded."""

        def fresh_batches(
            hashed: Iterator[tuple[int, Candidate | IngestResult]],
        ) -> Iterator[tuple[int, list[Candidate]]]:
            for batch in _chunks(hashed, self.batch_size):
                tally.read += len(batch)
                yield len(batch), self._new_candidates(user, batch, seen, repeats, tally.record)

        def read(entry: tuple[int, IngestItem]) -> tuple[int, Candidate | IngestResult]:
            return entry[0], read_and_hash(*entry, self.limits)

        with ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="ingest-read") as readers:
            hashed = _ordered_map(readers, read, enumerate(items), ahead=2 * self.batch_size)
            yield from self._prepared(fresh_batches(hashed), pool, tally)

    def _new_candidates(
        self,
        user: str,
        hashed: list[tuple[int, Candidate | IngestResult]],
        seen: dict[str, int],
        repeats: list[tuple[int, int]],
        record: Callable[[int, IngestResult], None],
    ) -> list[Candidate]:
        candidates: list[Candidate] = []
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
            existing = {r.id: r.payload for r in self.index.retrieve(user, [c.image_id for c in candidates])}
        except Exception as exc:
            for c in candidates:
                record(c.position, IngestResult(c.item.path, "rejected", f"index unavailable: {exc}"))
            return []
        fresh = []
        for c in candidates:
            if c.image_id in existing:
                self._add_occurrence(c.image_id, c.item)
                reason = f"same content as {_stored_name(existing[c.image_id])}, already in your collection"
                record(c.position, IngestResult(c.item.path, "present", reason, c.image_id))
            else:
                fresh.append(c)
        return fresh

    def _add_occurrence(self, image_id: str | None, item: IngestItem) -> None:
        if image_id is not None:
            self._occurrences.setdefault(image_id, []).append(_occurrence(item))

    def _record_occurrences(self, user: str) -> None:
        """Append the occurrences of files whose content the user has (same path, dataset and
        split again: nothing); a failure is logged, the files' results stand."""
        if not self._occurrences:
            return
        try:
            add_occurrences(self.index, user, self._occurrences)
        except Exception:
            log.exception("could not record %d images' new occurrences", len(self._occurrences))
        self._occurrences = {}

    def _prepared(
        self, batches: Iterable[tuple[int, list[Candidate]]], pool: PreparePool | None, tally: Tally
    ) -> Iterator[list[Candidate]]:
        """Each batch's candidates with their prepared images, in order; failures are recorded.
        With a pool, up to ``_BATCHES_AHEAD`` batches are prepared while one is consumed."""
        transform = self.embedder.image_transform()
        if pool is None:
            for count, batch in batches:
                outcomes = [prepare_or_reason(c.data, self.limits, transform) for c in batch]
                yield self._take(batch, outcomes, count, tally)
            return
        chunk = max(1, min(_MAX_CHUNK, self.batch_size // pool.workers))
        in_flight: deque[tuple[int, list[Candidate], list[Future[list[PreparedImage | str]]]]] = deque()
        try:
            for count, batch in batches:
                chunks = [batch[i : i + chunk] for i in range(0, len(batch), chunk)]
                futures = [pool.submit([c.data for c in part], self.limits, transform) for part in chunks]
                in_flight.append((count, batch, futures))
                if len(in_flight) > _BATCHES_AHEAD:
                    yield self._collect(*in_flight.popleft(), chunk, tally)
            while in_flight:
                yield self._collect(*in_flight.popleft(), chunk, tally)
        finally:  # an ingest that stops early leaves no work queued in a shared pool
            for _, _, futures in in_flight:
                for future in futures:
                    future.cancel()

    def _collect(
        self,
        count: int,
        batch: list[Candidate],
        futures: list[Future[list[PreparedImage | str]]],
        chunk: int,
        tally: Tally,
    ) -> list[Candidate]:
        outcomes: list[PreparedImage | str] = []
        for number, future in enumerate(futures):
            try:
                outcomes.extend(future.result())
            except BrokenProcessPool as exc:
                size = len(batch[number * chunk : (number + 1) * chunk])
                outcomes.extend([f"could not decode: a worker process stopped ({exc})"] * size)
        return self._take(batch, outcomes, count, tally)

    def _take(
        self, batch: list[Candidate], outcomes: list[PreparedImage | str], count: int, tally: Tally
    ) -> list[Candidate]:
        """Candidates that were prepared; the others are recorded as rejected with their reason."""
        ready = []
        for candidate, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, str):
                if outcome.startswith("could not decode"):
                    log.warning("decoding %s failed: %s", candidate.item.path, outcome)
                tally.record(candidate.position, IngestResult(candidate.item.path, "rejected", outcome))
                continue
            metrics.IMAGE_PROCESSING.labels(stage="decode").observe(outcome.seconds)
            candidate.take(outcome)
            ready.append(candidate)
        tally.prepared += count
        return ready

    def _embed(self, ready: list[Candidate]) -> np.ndarray:
        return embed_prepared(self.embedder, [c.decoded for c in ready if c.decoded is not None])

    def _embedded(
        self, ready: list[Candidate], record: Callable[[int, IngestResult], None]
    ) -> list[tuple[Candidate, np.ndarray]]:
        """A batch of prepared candidates with their vectors; when the batch cannot be embedded,
        none, each rejected with the reason."""
        if not ready:
            return []
        try:
            started = perf_counter()
            vectors = self._embed(ready)
            per_image = (perf_counter() - started) / len(ready)
            for _ in ready:
                metrics.IMAGE_PROCESSING.labels(stage="embed").observe(per_image)
        except Exception as exc:
            log.exception("embedding failed")
            for c in ready:
                record(c.position, IngestResult(c.item.path, "rejected", f"embedding failed: {exc}"))
            return []
        return list(zip(ready, vectors, strict=True))

    def _store_batch(
        self, user: str, batch: list[tuple[Candidate, Any]], record: Callable[[int, IngestResult], None]
    ) -> None:
        """Check the disk, journal the batch's intents, store each file's objects, upsert the points.

        Stops the ingest (``self.stopped``) on a full disk, an unwritable journal, or when the store
        stopped answering (the breaker opened); the files of the batch not yet stored are then
        left for ``_not_attempted``.
        """
        try:
            if self.disk_guard:  # room for the batch's objects, and the minimum left after them
                self.disk_guard.check(need=sum(len(c.data) + len(c.thumbnail) for c, _ in batch))
            if self._journal:
                self._journal.intend(
                    Intent(user, c.image_id, object_keys(user, c.image_id, c.decoded.extension))
                    for c, _ in batch
                    if c.decoded
                )
        except DiskFull as exc:
            self._stop(IngestStopped(str(exc)), [c for c, _ in batch])
            return
        except StorageError as exc:
            self._stop(IngestStopped("the intent journal could not be written", str(exc)), [c for c, _ in batch])
            return
        stored: list[tuple[Candidate, ImageRecord]] = []
        unattempted: list[Candidate] = []
        for (candidate, vector), outcome in zip(batch, self._put_all(user, [c for c, _ in batch]), strict=True):
            if outcome is _NOT_ATTEMPTED:
                unattempted.append(candidate)
            elif outcome is not None:
                self._remove_objects(user, candidate)
                record(candidate.position, IngestResult(candidate.item.path, "rejected", f"could not store: {outcome}"))
            else:
                stored.append((candidate, ImageRecord(candidate.image_id, self._payload(user, candidate), vector)))
        if unattempted:
            self._stop(self._unreachable(), unattempted)
        self._upsert(user, stored, record)
        if self._breaker.open and not self.stopped:
            self._stop(self._unreachable(), [])

    def _put_all(self, user: str, candidates: list[Candidate]) -> list[Exception | object | None]:
        """Write each candidate's original and thumbnail, up to ``store_threads`` candidates at a
        time (each put is I/O, on S3 a round trip). In order, each one's outcome: None (written),
        the error, or ``_NOT_ATTEMPTED`` (the breaker was open before its turn)."""

        def put(candidate: Candidate) -> Exception | object | None:
            if candidate.written:
                return None
            if self._breaker.open:
                return _NOT_ATTEMPTED
            try:
                self._store_objects(user, candidate)
            except Exception as exc:
                with self._breaker_lock:
                    self._breaker.failure(exc)
                return exc
            with self._breaker_lock:
                self._breaker.success()
            return None

        if self._writers is None or self.store_threads <= 1 or len(candidates) <= 1:
            return [put(c) for c in candidates]
        return list(self._writers.map(put, candidates))

    def _unreachable(self) -> IngestStopped:
        return IngestStopped("object store unreachable", f"{self.store.describe()}: {self._breaker.last_error}")

    def _stop(self, stopped: IngestStopped, unattempted: Sequence[Candidate]) -> None:
        """Stop the ingest; the candidates not attempted wrote nothing, so their intents are done
        (those a cluster node wrote stay open, to be settled by ``recover``)."""
        log.warning("ingest stopped: %s", stopped)
        self.stopped = stopped
        if self._journal:
            self._journal.done(c.image_id for c in unattempted if not c.written)

    def _upsert(
        self,
        user: str,
        stored: list[tuple[Candidate, ImageRecord]],
        record: Callable[[int, IngestResult], None],
    ) -> None:
        try:
            self.index.upsert([r for _, r in stored])
            failures: list[tuple[Candidate, Exception]] = []
        except DiskFull as exc:  # refused before writing anything; every retry would be refused too
            for candidate, _ in stored:
                self._remove_objects(user, candidate)
                record(candidate.position, IngestResult(candidate.item.path, "rejected", f"index write failed: {exc}"))
            self._stop(IngestStopped(str(exc)), [])
            return
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
                # The point may be there: keep its objects; the journal's open intent settles it later.
                log.exception("could not remove a half-written point %s", candidate.image_id)
            else:
                self._remove_objects(user, candidate)
            record(candidate.position, IngestResult(candidate.item.path, "rejected", f"index write failed: {exc}"))
        if self._journal:
            self._journal.done(c.image_id for c, _ in stored if c.image_id not in failed)
        for candidate, _ in stored:
            if candidate.image_id not in failed:
                record(candidate.position, IngestResult(candidate.item.path, "stored", None, candidate.image_id))

    def _store_objects(self, user: str, candidate: Candidate) -> None:
        assert candidate.decoded is not None
        original, thumb = object_keys(user, candidate.image_id, candidate.decoded.extension)
        with metrics.timed(metrics.IMAGE_PROCESSING, stage="store"):
            candidate.keys.append(original)
            self.store.put(original, candidate.data, candidate.decoded.mime_type)
            candidate.keys.append(thumb)
            self.store.put(thumb, candidate.thumbnail, thumbnail_format(thumb)[1])

    def _remove_objects(self, user: str, candidate: Candidate) -> None:
        """Remove what was written of a failed file, trying each key again after a short pause.

        What cannot be removed (or is not tried, once the store stopped answering) stays in the
        journal as an open intent: the next ingest or ``python -m core repair`` removes it. Objects
        that another model's collection refers to (the same image, ingested under another model)
        are kept.
        """
        try:
            shared = bool(self.index.ids_in_other_collections(user, [candidate.image_id]))
        except Exception:
            log.exception("could not check the other collections for %s; left for repair", candidate.image_id)
            return
        remaining = [] if shared else list(candidate.keys)
        for pause in (*CLEANUP_BACKOFF_S, None):
            for key in list(remaining):
                if self._breaker.open:
                    break
                try:
                    self.store.delete(key)
                    remaining.remove(key)
                    self._breaker.success()
                except StorageError as exc:
                    self._breaker.failure(exc)
            if not remaining or self._breaker.open or pause is None:
                break
            sleep(pause)
        if remaining:
            log.warning("could not remove %s after a failed ingest; left for repair", ", ".join(remaining))
        elif self._journal:
            self._journal.done([candidate.image_id])

    @staticmethod
    def _payload(user: str, candidate: Candidate) -> dict[str, Any]:
        decoded = candidate.decoded
        assert decoded is not None
        now = datetime.now(UTC)
        return {
            "user": user,
            "filename": PurePosixPath(candidate.item.path.replace("\\", "/")).name,
            "source_path": candidate.item.path,
            "sha256": candidate.sha256,
            "phash": candidate.phash,
            "content_phash": candidate.content_phash,
            "content_size": list(candidate.content_size),
            "pixel_sha256": candidate.pixel_sha256,
            "quality": candidate.quality,
            "width": decoded.width,
            "height": decoded.height,
            "bytes": candidate.size,
            "format": decoded.format,
            "created_at": now.isoformat(timespec="seconds"),
            "created_ts": now.timestamp(),
            "original_key": candidate.keys[0],
            "thumbnail_key": candidate.keys[1],
            "tags": [],
            **derived([_occurrence(candidate.item, now)]),
        }


def _occurrence(item: IngestItem, when: datetime | None = None) -> Occurrence:
    """The occurrence an ingested file records: its path inside its folder or archive (else the
    path given), dataset, split and label."""
    return occurrence(item.relative or item.path, item.dataset, item.split, item.label, when)


def _stored_name(payload: dict[str, Any]) -> str:
    """The name a stored image is known by: its first file name."""
    names = occurrence_names(payload)
    return (names[0] if names else "") or payload.get("filename") or "an image"


def read_and_hash(position: int, item: IngestItem, limits: ImageLimits) -> Candidate | IngestResult:
    """The file read and sha256-hashed (a candidate without its image id yet), or its result:
    skipped, or rejected (too large, unreadable)."""
    try:
        if item.size is not None:
            check_size(item.size, limits)
        data = item.read()
        check_size(len(data), limits)
    except InputSkipped as exc:
        return IngestResult(item.path, "skipped", str(exc))
    except ImageRejected as exc:
        return IngestResult(item.path, "rejected", str(exc))
    except Exception as exc:  # unreadable file or archive member
        return IngestResult(item.path, "rejected", f"could not read the file: {exc}")
    return Candidate(position, item, data, sha256_hex(data), "")


def embed_prepared(embedder: Embedder, prepared: Sequence[PreparedImage]) -> np.ndarray:
    """One batch's vectors: from the ready model inputs, or from the images when the model
    does its own preprocessing."""
    if prepared[0].pixels is not None:
        return embedder.embed_pixels(np.stack([p.pixels for p in prepared]))
    return embedder.embed_images([p.image for p in prepared])


def delete_images(store: ObjectStore, index: VectorIndex, user: str, ids: Sequence[str]) -> int:
    """Delete the user's images among ``ids`` for good: point first, then original and thumbnail.

    Not undoable: the app's pages and the CLI delete through ``core.trash`` instead (restorable for
    ``VAD_TRASH_DAYS``; its purge removes the objects, minding images that came back).

    An object that cannot be removed is logged and left as an orphan for ``doctor`` / ``repair``:
    the images are gone from the collection either way.
    """
    records = index.retrieve(user, list(ids))
    if not records:
        return 0
    index.delete(user, [r.id for r in records])
    for position, r in enumerate(records):
        keys = [k for k in (r.payload.get("original_key"), r.payload.get("thumbnail_key")) if k]
        try:
            remove_keys(store, keys)
        except StoreUnreachable as exc:  # each further call would wait as long: leave them all
            log.warning("%d images deleted, their objects left for repair: %s", len(records) - position, exc)
            break
        except StorageError as exc:
            log.warning("image %s deleted, but not all its objects (%s): left for repair", r.id, exc)
    return len(records)


def _chunks(iterable: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(iterable)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _ordered_map(executor: ThreadPoolExecutor, fn: Callable[[T], R], iterable: Iterable[T], ahead: int) -> Iterator[R]:
    """``executor.map`` with at most ``ahead`` calls running or done but not yet consumed."""
    pending: deque[Future[R]] = deque()
    for value in iterable:
        pending.append(executor.submit(fn, value))
        if len(pending) >= ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
