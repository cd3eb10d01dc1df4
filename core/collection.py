"""A user's whole collection for analysis: payloads as a DataFrame plus the vectors, row-aligned.

Read from the vector cache (``core.vectors``: memory-mapped vectors, Parquet payload columns)
rather than by scrolling the index, and paired with the collection's one neighbour graph
(``core.graph``), which every analysis shares.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.graph import GRAPH_K, GraphStore, NeighbourGraph, build
from core.hashing import content_of
from core.images import ImageLimits, decode, open_rgb
from core.index import vector_cache_root
from core.jobs import JobContext, JobFunction
from core.quality import STAT_COLUMNS, image_stats, lacks_stats, stats_frame
from core.services import AnalysisServices, Services
from core.vectors import Snapshot, cache_of

log = logging.getLogger(__name__)

#: Images whose backfilled fields are written to the index together.
_BACKFILL_BATCH = 1000


@dataclass
class Collection:
    """Rows of ``images`` and ``vectors`` describe the same images, in the same order."""

    user: str
    images: pd.DataFrame
    vectors: np.ndarray
    snapshot: Snapshot | None = field(default=None, repr=False)  # where the rows came from
    graphs: GraphStore | None = field(default=None, repr=False)  # where the graph is cached
    _graph: NeighbourGraph | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def fingerprint(self) -> str:
        """Changes whenever an image is added or removed (or re-embedded with another model)."""
        digest = hashlib.sha256(self.user.encode())
        for image_id in sorted(self.images["id"]):
            digest.update(image_id.encode())
        return digest.hexdigest()[:24]

    def neighbours(self, k: int = GRAPH_K, rebuild: bool = False) -> NeighbourGraph:
        """The collection's neighbour graph with at least ``k`` neighbours per image (shared)."""
        if self._graph is None or self._graph.k < k or rebuild:
            if self.graphs is not None and self.snapshot is not None:
                s = self.snapshot
                self._graph = self.graphs.get(self.user, s.ids, self.vectors, s.stamps, s.seq, s.epoch, k, rebuild)
            else:
                self._graph = build(self.vectors, max(k, GRAPH_K))
        return self._graph


def load_collection(services: Services | AnalysisServices, user: str) -> Collection:
    """Every image of ``user`` with its vector; fills in quality stats older images lack."""
    cache = cache_of(services.index, vector_cache_root(services.settings))
    snapshot = cache.load(user)
    images = snapshot.rows.copy()
    if images.empty:
        columns = pd.DataFrame(columns=["id", "filename", "quality"])
        return Collection(user, columns, np.zeros((0, services.index.dimension), "f4"))
    if "quality" not in images:
        images["quality"] = None
    if _backfill_quality(services, user, images) | _backfill_content_phash(services, user, images):
        snapshot = cache.load(user)  # the new fields were written to the index, and so to the cache
        images = snapshot.rows.copy()
    return from_snapshot(user, snapshot, _graphs(services), images)


def from_snapshot(
    user: str, snapshot: Snapshot, graphs: GraphStore | None, images: pd.DataFrame | None = None
) -> Collection:
    """The collection of a vector-cache snapshot (``images``: its rows, if already adjusted)."""
    images = snapshot.rows if images is None else images
    if "quality" not in images:
        images = images.assign(quality=None)
    images = pd.concat([images, stats_frame(images["quality"])], axis=1)
    return Collection(user, images.reset_index(drop=True), snapshot.vectors, snapshot, graphs)


@dataclass(frozen=True)
class GraphStatus:
    """What the pages say about the neighbour graph they are looking at."""

    version: int
    count: int
    exact: bool
    recall: float | None
    changed: int  # rows changed since the last full build
    pending: bool  # the collection changed since: the next analysis patches (or rebuilds) it

    def describe(self) -> str:
        how = "exact" if self.exact else f"approximate, recall@10 {self.recall:.3f}"
        text = f"Neighbour graph v{self.version} · {self.count:,} images · {how}"
        if self.changed:
            text += f" · {self.changed:,} changed since the last full build"
        return text + (" · update pending" if self.pending else "")


def graph_status(services: Services | AnalysisServices, user: str) -> GraphStatus | None:
    """The stored graph of ``user`` (read from its metadata only), or None before the first one."""
    info = _graphs(services).info(user)
    if info is None:
        return None
    latest = cache_of(services.index, vector_cache_root(services.settings)).latest(user)
    return GraphStatus(
        version=info["version"],
        count=info["count"],
        exact=info["exact"],
        recall=info["recall"],
        changed=info["changed"],
        pending=latest != info["seq"],
    )


def rebuild_graph(services: Services | AnalysisServices, user: str) -> NeighbourGraph:
    """Build the user's graph again from scratch (the pages' "Recompute")."""
    return load_collection(services, user).neighbours(rebuild=True)


def graph_job(services: Services | AnalysisServices, user: str, rebuild: bool = False) -> JobFunction:
    """A background job (core.jobs) that brings the user's graph up to date (or rebuilds it)."""

    def run(job: JobContext) -> dict:
        job.progress(0, 2, "reading the vectors")
        collection = load_collection(services, user)
        job.check()
        step = "rebuilding the neighbour graph" if rebuild else "updating the neighbour graph"
        job.progress(1, 2, f"{step} of {len(collection):,} images")
        graph = collection.neighbours(rebuild=rebuild)
        job.progress(2, 2, "done")
        return {"version": graph.version, "images": len(graph)}

    return run


def _graphs(services: Services | AnalysisServices) -> GraphStore:
    return GraphStore(services.settings.data_dir / "cache" / "graph", services.index.collection)


def _backfill_quality(services: Services | AnalysisServices, user: str, images: pd.DataFrame) -> bool:
    """Measure the quality stats of images stored before (some of) them were recorded.

    From the stored original, decoded the way ingest decodes it (the checks are calibrated on
    that working copy; on a thumbnail blur and low information are missed far more often), or from
    the thumbnail when the original cannot be read. Runs once per image: the stats are saved.
    """
    settings = services.settings
    limits = ImageLimits(max_pixels=settings.max_pixels, max_bytes=settings.max_file_bytes)

    def measured() -> Iterator[tuple[Any, dict[str, Any]]]:
        for position in images.index[[lacks_stats(q) for q in images["quality"]]]:
            row = images.loc[position]
            try:
                stats = image_stats(decode(services.store.get(row["original_key"]), limits).image)
            except Exception:  # an unreadable original: measure the thumbnail instead
                try:
                    stats = image_stats(open_rgb(services.store.get(row["thumbnail_key"])))
                except Exception:  # nothing readable: leave the checks blank for this image
                    log.warning("no quality stats for %s", row["id"], exc_info=True)
                    continue
            yield position, {"quality": stats}

    return _save_in_batches(services, user, images, measured())


def _backfill_content_phash(services: Services | AnalysisServices, user: str, images: pd.DataFrame) -> bool:
    """Hash and measure the picture inside any border of images stored before ``content_phash``
    and ``content_size`` were recorded.

    From the stored original, decoded as ingest decodes it. An unreadable original gets the full
    pHash (a picture without a border has the same), so it is not read again on every load."""
    for column in ("content_phash", "content_size"):
        if column not in images:
            images[column] = None
    settings = services.settings
    limits = ImageLimits(max_pixels=settings.max_pixels, max_bytes=settings.max_file_bytes)

    def measured() -> Iterator[tuple[Any, dict[str, Any]]]:
        for position in images.index[[not (isinstance(h, str) and h) for h in images["content_phash"]]]:
            row = images.loc[position]
            try:
                decoded = decode(services.store.get(row["original_key"]), limits)
                content = content_of(decoded.image, decoded.width, decoded.height)
                yield position, {"content_phash": content.phash, "content_size": [content.width, content.height]}
            except Exception:  # an unreadable original: fall back to the whole picture
                log.warning("no content pHash for %s; using its pHash", row["id"], exc_info=True)
                yield position, {"content_phash": row["phash"], "content_size": [int(row["width"]), int(row["height"])]}

    return _save_in_batches(services, user, images, measured())


def _save_in_batches(
    services: Services | AnalysisServices,
    user: str,
    images: pd.DataFrame,
    measured: Iterator[tuple[Any, dict[str, Any]]],
) -> bool:
    """Put each backfilled image's values in ``images`` and in the index, ``_BACKFILL_BATCH``
    images per write (one logged change each); whether there were any."""
    batch: dict[str, dict[str, Any]] = {}
    written = False
    for position, values in measured:
        for key, value in values.items():
            images.at[position, key] = value
        batch[images.at[position, "id"]] = values
        written = True
        if len(batch) == _BACKFILL_BATCH:
            services.index.set_payloads(user, batch)
            batch = {}
    services.index.set_payloads(user, batch)
    return written


__all__ = ["STAT_COLUMNS", "Collection", "load_collection"]
