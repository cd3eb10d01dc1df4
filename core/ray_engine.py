"""Ingest on a Ray cluster: the CPU work in Ray tasks, the model in Ray actors.

The driver runs the same Ingestor as the local engine (read and sha256 ahead, skip what the
user has, journal, store, payload, upsert), so results, reports and the no-orphan rules are the
same by construction. Only the middle moves to the cluster: each batch's new files go to Ray
tasks that run ``core.prepare.prepare_chunk`` (decode, hashes, thumbnail, model input), and the
prepared batch goes to an embedding actor (one per GPU of the cluster, else CPU actors). The
actor sends back the prepared files without their model inputs, and the vectors.

Cluster nodes run the app's code and settings (the same image); the files must be readable by
the driver, which reads them once and hands their bytes to the tasks.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import RayError

from core.diskspace import DiskGuard
from core.embed import Embedder, load_embedder
from core.embed.transform import ImageTransform
from core.images import ImageLimits
from core.index import VectorIndex
from core.ingest import Candidate, Ingestor, Tally, embed_prepared
from core.prepare import PreparedImage, prepare_chunk
from core.services import Services
from core.settings import Settings
from core.storage import ObjectStore

log = logging.getLogger(__name__)

#: Files per prepare task, at most (as the local engine's worker chunks).
_MAX_CHUNK = 8
#: CPU embedding actors on a cluster without GPUs.
_CPU_ACTORS = 1

Outcomes = list[PreparedImage | str]
#: What an actor returns for a batch: the prepared files (without model inputs) or their reasons,
#: and the vectors of the prepared ones in order, or why embedding them failed.
Embedded = tuple[Outcomes, np.ndarray | str | None]


class EmbedActor:
    """Holds one model on one GPU (or CPU) of the cluster and embeds prepared batches."""

    def __init__(self, model: str, weights: Path | None, device: str, precision: str) -> None:
        self.embedder = load_embedder(model, weights, device, precision)

    def embed(self, *chunks: Outcomes) -> Embedded:
        outcomes = [outcome for chunk in chunks for outcome in chunk]
        prepared = [o for o in outcomes if isinstance(o, PreparedImage)]
        vectors: np.ndarray | str | None = None
        if prepared:
            try:
                vectors = embed_prepared(self.embedder, prepared)
            except Exception as exc:
                log.exception("embedding failed")
                vectors = str(exc)
        light = [o if isinstance(o, str) else dataclasses.replace(o, pixels=None, image=None) for o in outcomes]
        return light, vectors


class RayCluster:
    """A connection to a Ray cluster with embedding actors: sends each batch through them."""

    def __init__(self, settings: Settings) -> None:
        resources = ray.cluster_resources()
        self.cpus = max(1, int(resources.get("CPU", 1)))
        gpus = int(resources.get("GPU", 0))
        if gpus:
            actor = ray.remote(num_gpus=1, num_cpus=0)(EmbedActor)
            count, device = gpus, "cuda"
        else:  # like the local engine's main thread, the model shares the cores with the tasks
            actor = ray.remote(num_cpus=0)(EmbedActor)
            count, device = _CPU_ACTORS, "cpu"
        args = (settings.model, settings.model_weights, device, settings.precision)
        self.actors = [actor.remote(*args) for _ in range(count)]
        self._next_actor = cycle(self.actors)
        self._prepare = ray.remote(num_cpus=1)(prepare_chunk)

    @property
    def batches_ahead(self) -> int:
        """Batches in flight: one per actor, and one more being prepared."""
        return len(self.actors) + 1

    def submit(
        self, payloads: Sequence[bytes], limits: ImageLimits, transform: ImageTransform | None, batch_size: int
    ) -> ray.ObjectRef:
        """Prepare ``payloads`` in tasks and embed them in the next actor; a ref to ``Embedded``."""
        chunk = max(1, min(_MAX_CHUNK, batch_size // self.cpus))
        parts = [
            self._prepare.remote(list(payloads[i : i + chunk]), limits, transform)
            for i in range(0, len(payloads), chunk)
        ]
        return next(self._next_actor).embed.remote(*parts)

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)


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
    cluster = RayCluster(settings)
    try:
        yield cluster
    finally:
        cluster.close()
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
    """The Ingestor with its prepare and embed stages on a Ray cluster."""

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
        #: Each prepared candidate's vector (by position) or why its batch could not be embedded.
        self._vectors: dict[int, np.ndarray | str] = {}

    @classmethod
    def for_services(cls, services: Services, cluster: RayCluster) -> RayIngestor:
        """The Ray engine's counterpart of ``services.ingestor()``: the same store, index and limits."""
        return cls(cluster, **services.ingest_parts())

    def _prepared(
        self, batches: Iterable[tuple[int, list[Candidate]]], pool: object, tally: Tally
    ) -> Iterator[list[Candidate]]:
        """Each batch's prepared candidates, in order, with up to ``batches_ahead`` on the cluster."""
        transform = self.embedder.image_transform()
        in_flight: deque[tuple[int, list[Candidate], ray.ObjectRef | None]] = deque()
        try:
            for count, batch in batches:
                ref = None
                if batch:
                    ref = self.cluster.submit([c.data for c in batch], self.limits, transform, self.batch_size)
                in_flight.append((count, batch, ref))
                if len(in_flight) > self.cluster.batches_ahead:
                    yield self._collect_embedded(*in_flight.popleft(), tally)
            while in_flight:
                yield self._collect_embedded(*in_flight.popleft(), tally)
        finally:  # an ingest that stops early leaves no work queued on the cluster
            for _, _, ref in in_flight:
                if ref is not None:
                    with suppress(Exception):  # best effort: the actors go when the connection closes
                        ray.cancel(ref)

    def _collect_embedded(
        self, count: int, batch: list[Candidate], ref: ray.ObjectRef | None, tally: Tally
    ) -> list[Candidate]:
        if ref is None:
            return self._take(batch, [], count, tally)
        try:
            outcomes, vectors = ray.get(ref)
        except RayError as exc:
            reason = f"could not decode: a Ray worker stopped ({type(exc).__name__})"
            return self._take(batch, [reason] * len(batch), count, tally)
        ready = self._take(batch, outcomes, count, tally)
        for number, candidate in enumerate(ready):
            self._vectors[candidate.position] = vectors if isinstance(vectors, str) else vectors[number]
        return ready

    def _embed(self, ready: list[Candidate]) -> np.ndarray:
        """The vectors the actor computed; raises when it could not embed the batch."""
        vectors = [self._vectors.pop(c.position) for c in ready]
        failed = next((v for v in vectors if isinstance(v, str)), None)
        if failed is not None:
            raise RuntimeError(failed)
        return np.stack(vectors)
