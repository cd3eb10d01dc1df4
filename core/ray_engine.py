"""Ingest on a Ray cluster with Ray Data: the nodes read, hash and prepare the files, actors embed.

The driver lists the inputs with the local engine's rules (``core.inputs``: folders, zips,
``s3://`` prefixes), so every file gets the same item and the same report. The items go to a Ray
Data pipeline:

1. Ray tasks, on whichever node runs them: read the file there (a path the nodes see, a member of
   a zip on such a path, an S3 object through the configured endpoint), check its size, sha256
   it, leave out content the user had when the ingest started (nothing more is done for it), and
   prepare the rest (``core.prepare``: decode, hashes, quality stats, thumbnail, model input).
2. Actors, one per GPU of the cluster (else CPU actors): embed the prepared files.

The driver takes the files back in order and runs the rest of the local engine's ``Ingestor`` on
each batch: repeats within the call, the index's own check of what the user has, the intent
journal, the store and the index writes. Reports, point ids and the no-orphan rules are therefore
the local engine's by construction.

With an S3 store (which every node reaches) and a journal, the tasks also write each new file's
original and thumbnail, so that its bytes never travel to the driver. Each task first journals
its files' intents in the driver's journal, through an actor on the driver's node
(``JournalService``), exactly as the local engine journals a batch before writing it; what the
driver then does not store (a repeat, a batch that could not be embedded, an ingest stopped
early) is settled by ``core.journal.recover`` at the end of the ingest. With a local store the
bytes come back to the driver, which writes them.

Cluster nodes run the app's code (the same image) and must see the folders being ingested.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import socket
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray import cloudpickle
from ray.data import ActorPoolStrategy, DataContext, Dataset
from ray.util.annotations import RayDeprecationWarning
from ray.util.client import ray as ray_client
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from core.diskspace import DiskGuard
from core.embed import Embedder, default_batch_size, load_embedder
from core.embed.transform import ImageTransform
from core.images import ImageLimits, thumbnail_format
from core.index import VectorIndex, image_id
from core.ingest import (
    STORE_THREADS,
    Candidate,
    Ingestor,
    IngestResult,
    IngestStopped,
    Tally,
    embed_prepared,
    read_and_hash,
)
from core.journal import Intent, IntentJournal
from core.prepare import PreparedImage, PreparePool, prepare_or_reason, run_below_others
from core.services import Services
from core.settings import Settings
from core.sources import IngestItem
from core.storage import ObjectStore, object_keys, open_store

log = logging.getLogger(__name__)

#: Files per Ray Data block, at most (a block is one prepare task, as a chunk of the local engine's
#: workers), and blocks at most, so that a million files do not make a million tiny tasks.
_MAX_BLOCK = 8
_MAX_BLOCKS = 20_000
#: CPU embedding actors on a cluster without GPUs.
_CPU_ACTORS = 1
#: The prepare tasks' own runtime environment: Ray keeps worker processes apart by environment,
#: so the processes these tasks lower in priority never host the embedding actor or another job.
_PREPARE_WORKERS = {"env_vars": {"VAD_RAY_STAGE": "prepare"}}
#: Tries of a prepare task whose worker died, after the first.
_TASK_RETRIES = 2
_REMOVED_MEANWHILE = "removed from your collection while this ingest ran: ingest it again"
_WORKER_LOST = "could not decode: a Ray worker stopped while reading or preparing it"


@dataclasses.dataclass
class NodeOutcome:
    """What the cluster made of one file."""

    #: Its result when it was settled there (skipped, or rejected before it could be prepared).
    result: IngestResult | None = None
    sha256: str = ""
    #: Its bytes; None when the user had its content when the ingest started (not prepared), or
    #: when the node stored it (then ``keys`` says where).
    data: bytes | None = None
    #: Its size in bytes, once read.
    size: int = 0
    #: Its original's and thumbnail's keys, when the node wrote them (under an open intent).
    keys: tuple[str, ...] = ()
    #: Why the node could not write them (a StorageError), if it could not.
    store_error: Exception | None = None
    #: The prepared image (without its model input once embedded), or why it could not be prepared.
    prepared: PreparedImage | str | None = None
    #: Its vector, or why its batch could not be embedded.
    vector: np.ndarray | str | None = None


def known_keys(ids: Iterator[str]) -> np.ndarray:
    """Sorted 64-bit keys of point ids, for ``is_known`` (one array, shared by the tasks unchanged)."""
    keys = np.fromiter((_key(i) for i in ids), dtype=np.uint64)
    keys.sort()
    return keys


def is_known(point_id: str, known: np.ndarray) -> bool:
    """Whether ``point_id`` is among the ids of ``known``. A 64-bit key can match another id's (odds
    of about 5e-8 at a million images each side); the driver's check against the index is exact,
    and rejects such a file as it rejects one removed meanwhile, to be ingested again."""
    key = _key(point_id)
    at = int(np.searchsorted(known, key))
    return at < len(known) and int(known[at]) == key


def _key(point_id: str) -> int:
    return int.from_bytes(uuid.UUID(point_id).bytes[:8], "big")


@dataclasses.dataclass(frozen=True)
class NodeWriter:
    """What a task needs to store its new files itself: the store's settings and the journal."""

    settings: Settings
    journal: Any  # the JournalService actor's handle

    def write(self, user: str, outcomes: list[NodeOutcome]) -> None:
        """Journal the prepared files' intents (one round trip), then write their objects; each
        outcome's bytes are dropped once written, its error kept if not."""
        store = _node_store(self.settings)
        intents = []
        for outcome in outcomes:
            assert isinstance(outcome.prepared, PreparedImage)
            point = image_id(user, outcome.sha256)
            intents.append(Intent(user, point, object_keys(user, point, outcome.prepared.extension)))
        ray.get(self.journal.intend.remote(intents))

        def put(outcome: NodeOutcome, keys: tuple[str, ...]) -> None:
            assert isinstance(outcome.prepared, PreparedImage) and outcome.data is not None
            try:
                store.put(keys[0], outcome.data, outcome.prepared.mime_type)
                store.put(keys[1], outcome.prepared.thumbnail, thumbnail_format(keys[1])[1])
            except Exception as exc:  # what was written stays under the open intent
                outcome.store_error = exc
            outcome.keys, outcome.data = keys, None
            outcome.prepared = dataclasses.replace(outcome.prepared, thumbnail=b"")

        # Several files at a time, as the local engine writes them: each put is a round trip.
        with ThreadPoolExecutor(min(len(outcomes), STORE_THREADS), thread_name_prefix="node-store") as writers:
            list(writers.map(put, outcomes, [intent.keys for intent in intents]))


_NODE_STORES: dict[tuple[Any, ...], ObjectStore] = {}


def _node_store(settings: Settings) -> ObjectStore:
    """This worker process's client of the configured store (made once per store)."""
    secret = settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
    spec = (settings.s3_endpoint, settings.s3_access_key, secret, settings.s3_bucket, settings.s3_region)
    if spec not in _NODE_STORES:
        _NODE_STORES[spec] = open_store(settings)
    return _NODE_STORES[spec]


def read_and_prepare(
    batch: dict[str, np.ndarray],
    user: str,
    limits: ImageLimits,
    transform: ImageTransform | None,
    known: np.ndarray,
    writer: NodeWriter | None = None,
) -> dict[str, np.ndarray]:
    """Ray Data stage 1 (a task): each file read, hashed and, when new, prepared (and, with a
    ``writer``, stored)."""
    _yield_to_the_model()
    outcomes = []
    for position, blob in zip(batch["position"], batch["item"], strict=True):
        found = read_and_hash(int(position), cloudpickle.loads(blob), limits)
        if isinstance(found, IngestResult):
            outcome = NodeOutcome(result=found)
        elif is_known(image_id(user, found.sha256), known):
            outcome = NodeOutcome(sha256=found.sha256, size=len(found.data))
        else:
            prepared = prepare_or_reason(found.data, limits, transform)
            outcome = NodeOutcome(sha256=found.sha256, data=found.data, size=len(found.data), prepared=prepared)
        outcomes.append(outcome)
    ready = [o for o in outcomes if isinstance(o.prepared, PreparedImage)]
    if writer is not None and ready:
        writer.write(user, ready)
    return {"position": batch["position"], "outcome": _pickled(outcomes)}


@ray.remote(num_cpus=0)
class JournalService:
    """The driver's intent journal, served to the tasks from the driver's node: a task journals its
    files here before it writes their objects, as the local engine journals a batch."""

    def __init__(self, folder: str) -> None:
        self.journal = IntentJournal(Path(folder))

    def intend(self, intents: list[Intent]) -> None:
        self.journal.intend(intents)

    def done(self, ids: list[str]) -> None:
        self.journal.done(ids)

    def close(self) -> None:
        self.journal.close()


class RemoteJournal(IntentJournal):
    """The driver's side of a ``JournalService``: the same calls, answered by the actor."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.actor = JournalService.options(scheduling_strategy=here).remote(str(folder))  # type: ignore[attr-defined]

    def intend(self, intents: Iterable[Intent]) -> None:
        ray.get(self.actor.intend.remote(list(intents)))

    def done(self, ids: Iterable[str]) -> None:
        ray.get(self.actor.done.remote(list(ids)))

    def close(self) -> None:
        try:
            ray.get(self.actor.close.remote())
        finally:
            ray.kill(self.actor)


@cache
def _yield_to_the_model() -> None:
    """Run this worker process's tasks below the embedding actor, as the local engine's prepare
    workers run below its model: where they share cores, the model (the slowest stage) goes first."""
    run_below_others()


class EmbedStage:
    """Ray Data stage 2 (an actor): holds one model on one GPU (or the CPU) and embeds the
    prepared files of each batch; their model inputs are dropped before they travel on."""

    def __init__(self, model: str, weights: Path | None, device: str, precision: str) -> None:
        if device == "cpu":  # Ray gives an actor without CPUs of its own one thread; it shares them all
            import torch

            torch.set_num_threads(len(os.sched_getaffinity(0)))
        self.embedder = load_embedder(model, weights, device, precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes: list[NodeOutcome] = [pickle.loads(blob) for blob in batch["outcome"]]
        ready = [o for o in outcomes if isinstance(o.prepared, PreparedImage)]
        if ready:
            vectors: Sequence[np.ndarray | str]
            try:
                vectors = list(embed_prepared(self.embedder, [o.prepared for o in ready]))  # type: ignore[misc]
            except Exception as exc:
                log.exception("embedding failed")
                vectors = [str(exc)] * len(ready)
            for outcome, vector in zip(ready, vectors, strict=True):
                outcome.vector = vector
                outcome.prepared = dataclasses.replace(outcome.prepared, pixels=None, image=None)  # type: ignore[type-var]
        return {"position": batch["position"], "outcome": _pickled(outcomes)}


def _pickled(outcomes: list[NodeOutcome]) -> np.ndarray:
    """A binary column (Ray Data would otherwise try, and fail, to make Arrow columns of them)."""
    column = np.empty(len(outcomes), dtype=object)
    column[:] = [pickle.dumps(o, protocol=pickle.HIGHEST_PROTOCOL) for o in outcomes]
    return column


class RayCluster:
    """A connection to a Ray cluster: builds each ingest's Ray Data pipeline for its resources."""

    def __init__(self, settings: Settings) -> None:
        resources = ray.cluster_resources()
        self.settings = settings
        self.cpus = max(1, int(resources.get("CPU", 1)))
        self.gpus = int(resources.get("GPU", 0))
        #: Whether this driver joined through Ray Client (``ray://``): then no node of the cluster
        #: runs here, to keep the driver's journal.
        self.remote_driver = ray_client.is_connected()

    def pipeline(
        self,
        items: Sequence[IngestItem],
        positions: Sequence[int],
        user: str,
        limits: ImageLimits,
        transform: ImageTransform | None,
        known: np.ndarray,
        batch_size: int,
        per_block: int | None = None,
        writer: NodeWriter | None = None,
    ) -> Dataset:
        """The files of ``items`` at ``positions`` read, prepared (and, with a ``writer``, stored)
        and embedded on the cluster, in order; ``per_block``: files per prepare task (default: a
        share of a batch per CPU)."""
        if per_block is None:
            per_block = max(1, min(_MAX_BLOCK, batch_size // self.cpus), -(-len(positions) // _MAX_BLOCKS))
        rows = [{"position": p, "item": cloudpickle.dumps(items[p])} for p in positions]
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // per_block)))
        with warnings.catch_warnings():
            # Ray Data 2.60 names no parameter for a task's retries (it retries a dead worker's
            # task forever by default) and warns about the generic way to set them.
            warnings.simplefilter("ignore", RayDeprecationWarning)
            dataset = dataset.map_batches(
                read_and_prepare,
                batch_size=None,
                fn_kwargs={"user": user, "limits": limits, "transform": transform, "known": known, "writer": writer},
                num_cpus=1,
                max_retries=_TASK_RETRIES,
                runtime_env=_PREPARE_WORKERS,
            )
        settings = self.settings
        if self.gpus:
            device, actors, resources = "cuda", self.gpus, {"num_gpus": 1, "num_cpus": 0}
        else:  # like the local engine's main thread, the model shares the cores with the tasks
            device, actors, resources = "cpu", _CPU_ACTORS, {"num_cpus": 0}
        return dataset.map_batches(
            EmbedStage,
            fn_constructor_args=(settings.model, settings.model_weights, device, settings.precision),
            batch_size=batch_size,
            compute=ActorPoolStrategy(size=actors),
            **resources,
        )


@contextmanager
def connect(settings: Settings, address: str | None = None) -> Iterator[RayCluster]:
    """Join the cluster at ``address`` (default ``VAD_RAY_ADDRESS``; none: start Ray here)."""
    address = address or settings.ray_address
    if address:
        _check_reachable(address)
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None:
        options["include_dashboard"] = False
    ray.init(address=address, **options)
    context = DataContext.get_current()
    context.execution_options.preserve_order = True  # a repeat's first copy is the one listed first
    context.enable_progress_bars = False  # the CLI draws its own
    context.max_errored_blocks = -1  # a block lost for good rejects its files, not the whole ingest
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
    try:
        yield RayCluster(settings)
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast when nothing answers at a ``host:port`` address (Ray itself retries for minutes)."""
    if "://" in address or address == "auto":
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout).close()
    except (OSError, ValueError) as exc:
        raise ConnectionError(f"nothing answers at {address} ({exc})") from None


class RayIngestor(Ingestor):
    """The Ingestor with its read, prepare and embed stages on a Ray cluster (Ray Data)."""

    def __init__(
        self,
        cluster: RayCluster,
        store: ObjectStore,
        index: VectorIndex,
        embedder: Embedder,
        limits: ImageLimits = ImageLimits(),
        batch_size: int = 32,
        journal_dir: Path | None = None,
        disk_guard: DiskGuard | None = None,
    ) -> None:
        super().__init__(
            store, index, embedder, limits, batch_size, pool=None, journal_dir=journal_dir, disk_guard=disk_guard
        )
        self.cluster = cluster
        #: Each ready candidate's vector (by position) or why its batch could not be embedded.
        self._vectors: dict[int, np.ndarray | str] = {}
        #: Whether the tasks store the new files themselves: the store must be one every node
        #: reaches (S3), and there must be a journal for their intents.
        self.nodes_write = store.kind == "s3" and journal_dir is not None and not cluster.remote_driver

    @classmethod
    def for_services(cls, services: Services, cluster: RayCluster) -> RayIngestor:
        """The Ray engine's counterpart of ``services.ingestor()``: the same store, index and limits.
        Unless ``VAD_BATCH_SIZE`` sets it, the batch suits the actors' device, not the driver's."""
        parts = services.ingest_parts()
        if services.settings.batch_size is None:
            parts["batch_size"] = default_batch_size("cuda" if cluster.gpus else "cpu")
        return cls(cluster, **parts)

    def ingest(self, items: Sequence[IngestItem], user: str, *args: Any, **kwargs: Any) -> list[IngestResult]:
        """``Ingestor.ingest`` on the cluster. When the tasks stored files themselves, what the
        driver did not keep of them (their intents still open) is settled before returning."""
        try:
            return super().ingest(items, user, *args, **kwargs)
        finally:
            if self.nodes_write:
                self._settle_journals()

    def _open_journal(self) -> IntentJournal | None:
        if self.nodes_write and self.journal_dir is not None:
            return RemoteJournal(self.journal_dir)
        return super()._open_journal()

    def _ready_batches(
        self,
        items: Sequence[IngestItem],
        user: str,
        seen: dict[str, int],
        repeats: list[tuple[int, int]],
        pool: PreparePool | None,
        tally: Tally,
    ) -> Iterator[list[Candidate]]:
        """Each batch's new candidates as the cluster prepared and embedded them, in order."""
        self._vectors = {}
        known = known_keys(self.index.user_ids(user))
        transform = self.embedder.image_transform()
        arrived = np.zeros(len(items), dtype=bool)
        writer = None
        if isinstance(self._journal, RemoteJournal):
            writer = NodeWriter(self.cluster.settings, self._journal.actor)

        def through_cluster(positions: Sequence[int], per_block: int | None) -> Iterator[list[Candidate]]:
            dataset = self.cluster.pipeline(
                items, positions, user, self.limits, transform, known, self.batch_size, per_block, writer
            )
            batches = iter(dataset.iter_batches(batch_size=self.batch_size, batch_format="numpy"))
            while True:
                try:
                    batch = next(batches)
                except StopIteration:
                    return
                except Exception as exc:  # the cluster failed as a whole
                    log.exception("the Ray pipeline failed")
                    self._stop(IngestStopped("the Ray cluster failed", f"{type(exc).__name__}: {exc}"[:500]), [])
                    return
                arrived[batch["position"]] = True
                yield self._settle(user, items, batch, seen, repeats, tally)

        yield from through_cluster(range(len(items)), None)
        # A block whose worker died even when tried again (a file that crashes a decoder, a node
        # lost) never arrives. Its files are tried once more, one per task, so that only a file
        # that kills its worker is lost; it is rejected, as a broken worker's files are locally.
        if not self.stopped and not arrived.all():
            yield from through_cluster(np.flatnonzero(~arrived).tolist(), 1)
        if self.stopped:
            return
        lost = np.flatnonzero(~arrived)
        for position in lost.tolist():
            tally.record(position, IngestResult(items[position].path, "rejected", _WORKER_LOST))
        tally.read += len(lost)
        tally.prepared += len(lost)

    def _settle(
        self,
        user: str,
        items: Sequence[IngestItem],
        batch: dict[str, np.ndarray],
        seen: dict[str, int],
        repeats: list[tuple[int, int]],
        tally: Tally,
    ) -> list[Candidate]:
        """One batch from the cluster through the local engine's checks: its ready candidates."""
        hashed: list[tuple[int, Candidate | IngestResult]] = []
        outcomes: dict[int, NodeOutcome] = {}
        for position, blob in zip(batch["position"].tolist(), batch["outcome"], strict=True):
            outcome: NodeOutcome = pickle.loads(blob)
            if outcome.result is not None:
                hashed.append((position, outcome.result))
                continue
            outcomes[position] = outcome
            candidate = Candidate(position, items[position], outcome.data or b"", outcome.sha256, "", size=outcome.size)
            candidate.keys, candidate.written = list(outcome.keys), bool(outcome.keys)
            hashed.append((position, candidate))
        tally.read += len(hashed)
        ready, prepared = [], []
        for candidate in self._new_candidates(user, hashed, seen, repeats, tally.record):
            outcome = outcomes[candidate.position]
            if outcome.data is None and not outcome.keys:  # the user had it when the ingest started, not any more
                tally.record(candidate.position, IngestResult(candidate.item.path, "rejected", _REMOVED_MEANWHILE))
                continue
            if outcome.store_error is not None:  # its intent stays open: recover settles what was written
                with self._breaker_lock:  # the store thread of the batch before counts into it too
                    self._breaker.failure(outcome.store_error)
                reason = f"could not store: {outcome.store_error}"
                tally.record(candidate.position, IngestResult(candidate.item.path, "rejected", reason))
                if self._breaker.open and not self.stopped:
                    self._stop(self._unreachable(), [])
                continue
            if candidate.written:
                with self._breaker_lock:
                    self._breaker.success()
            assert outcome.prepared is not None
            ready.append(candidate)
            prepared.append(outcome.prepared)
            if outcome.vector is not None:
                self._vectors[candidate.position] = outcome.vector
        return self._take(ready, prepared, len(hashed), tally)

    def _embed(self, ready: list[Candidate]) -> np.ndarray:
        """The vectors the actors computed; raises when they could not embed the batch."""
        vectors = [self._vectors.pop(c.position) for c in ready]
        failed = next((v for v in vectors if isinstance(v, str)), None)
        if failed is not None:
            raise RuntimeError(failed)
        return np.stack(vectors)
