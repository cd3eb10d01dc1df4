"""One neighbour graph per collection: the top-k cosine neighbours of every image, with similarities.

Built once per version of a user's collection and cached on disk; the semantic duplicate level,
every anomaly method and the Explorer's UMAP read it instead of searching on their own.

- Up to ``EXACT_LIMIT`` images: exact search (faiss flat, inner product on unit vectors).
- Above: an IVF list join. k-means lists; each list is searched exactly (one matrix product, so
  BLAS speed) against its nearest lists, as many as it takes for recall@10 against exact search,
  on a sample of the collection's own images, to reach ``TARGET_RECALL``; the graph keeps the
  recall measured on the result.
- Changes are patched in (``update``): new or re-embedded images are searched exactly against the
  collection, and every other image's list is merged with its nearest new ones; lists that lost a
  deleted neighbour are refilled (exactly below the limit, from neighbours of neighbours above it).
  Past ``REBUILD_FRACTION`` of the collection changed since the last full build, it is rebuilt.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from core.files import replace_file
from core.neighbors import drop_self, knn
from core.storage.base import check_user

log = logging.getLogger(__name__)

GRAPH_K = 50
EXACT_LIMIT = 50_000
TARGET_RECALL = 0.95
# The join tunes well above the bound: each probe is cheap (BLAS), and a neighbour it misses may be
# a missed duplicate (at 1M: 0.966 recall@10 lost 0.5 % of planted semantic pairs, 0.99 none).
TUNING_RECALL = 0.99
TUNING_QUERIES = 1_000
MAX_PROBES = 256  # lists searched per list at most
_CHUNK = 65_536  # rows assigned to their list at a time
REBUILD_FRACTION = 0.2
FORMAT = 1


@dataclass
class NeighbourGraph:
    """Row i's neighbours ``indices[i]`` (best first, never i; -1 = none) and their cosines."""

    indices: np.ndarray  # (n, k) int64
    similarities: np.ndarray  # (n, k) float32, -inf where there is no neighbour
    exact: bool
    recall: float | None = None  # recall@10 against exact search on a sample (approximate only)
    version: int = 1
    changed: int = 0  # rows added, removed or re-embedded since the last full build

    @property
    def k(self) -> int:
        return self.indices.shape[1]

    def __len__(self) -> int:
        return len(self.indices)

    def first(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest of each row (k may not exceed the graph's)."""
        if k > self.k:
            raise ValueError(f"the graph holds {self.k} neighbours per image, {k} were asked for")
        return self.indices[:, :k], self.similarities[:, :k]


def build(vectors: np.ndarray, k: int = GRAPH_K, exact_limit: int = EXACT_LIMIT, seed: int = 0) -> NeighbourGraph:
    """The graph of unit-length ``vectors``: exact up to ``exact_limit`` rows, IVF above."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors) <= exact_limit:
        indices, similarities = knn(vectors, k)
        return NeighbourGraph(indices, similarities, exact=True)
    indices, similarities, recall = _approximate(vectors, k, seed)
    return NeighbourGraph(indices, similarities, exact=False, recall=recall)


def recall_at(graph: NeighbourGraph, vectors: np.ndarray, rows: np.ndarray, k: int = 10) -> float:
    """Share of each sampled row's exact ``k`` nearest that the graph lists (ties count as found)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    _, exact = _exact_rows(vectors, rows, k)
    found = graph.similarities[rows, :k]
    # A listed neighbour at least as close as the exact k-th one is a correct one.
    return float(np.mean(np.sum(found >= exact[:, -1:] - 1e-5, axis=1) / k))


# --- approximate search ---------------------------------------------------------------------------


def _approximate(vectors: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """An IVF list join: k-means splits the rows into lists, and each list's rows are searched
    exactly, in one matrix product, against the rows of the ``probes`` lists whose centres are
    nearest its own. ``probes`` is the fewest that puts the exact 10 nearest of sampled rows in
    reach at ``TUNING_RECALL``; the recall returned is measured on the result."""
    n, dimension = vectors.shape
    nlist = max(16, int(2 * math.sqrt(n)))
    rng = np.random.default_rng(seed)
    training = np.ascontiguousarray(vectors[np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))])
    kmeans = faiss.Kmeans(dimension, nlist, niter=10, seed=seed, spherical=True)
    kmeans.train(training)
    del training
    centres = kmeans.centroids
    lists = _nearest_centre(vectors, centres)
    order = np.argsort(lists, kind="stable")
    bounds = np.searchsorted(lists[order], np.arange(nlist + 1))
    _, nearby = faiss.knn(centres, centres, min(nlist, MAX_PROBES), metric=faiss.METRIC_INNER_PRODUCT)

    queries = np.sort(rng.choice(n, size=min(n, TUNING_QUERIES), replace=False))
    truth, truth_sim = _exact_rows(vectors, queries, 10)
    probes = _probes_for(lists, nearby, queries, truth)
    packed = np.ascontiguousarray(vectors[order])  # each list's rows side by side
    indices = np.full((n, k), -1, dtype=np.int64)
    similarities = np.full((n, k), -np.inf, dtype=np.float32)
    for centre in range(nlist):
        start, stop = bounds[centre], bounds[centre + 1]
        if start == stop:
            continue
        candidates = np.concatenate([np.arange(bounds[m], bounds[m + 1]) for m in nearby[centre, :probes]])
        found_sim, found = faiss.knn(
            packed[start:stop], packed[candidates], min(k + 1, len(candidates)), metric=faiss.METRIC_INNER_PRODUCT
        )
        rows = order[start:stop]
        found = np.where(found >= 0, order[candidates[np.maximum(found, 0)]], -1)
        indices[rows], similarities[rows] = drop_self(found, found_sim, rows, k)
    del packed
    recall = float(np.mean(np.sum(similarities[queries, :10] >= truth_sim[:, -1:] - 1e-5, axis=1) / 10))
    log.info("IVF list join: %d lists, %d probed each, recall@10 %.3f on %d rows", nlist, probes, recall, len(queries))
    return indices, similarities, recall


def _nearest_centre(vectors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each row's list: the nearest centre, in chunks (the vectors may be memory-mapped)."""
    lists = np.empty(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), _CHUNK):
        chunk = np.ascontiguousarray(vectors[start : start + _CHUNK])
        lists[start : start + _CHUNK] = faiss.knn(chunk, centres, 1, metric=faiss.METRIC_INNER_PRODUCT)[1][:, 0]
    return lists


def _probes_for(lists: np.ndarray, nearby: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> int:
    """The fewest nearest lists to search per list so that, of the sampled rows' exact neighbours
    ``truth``, the target share lies in the searched lists (the search within them is exact)."""
    rank = np.full((len(queries), nearby.shape[0]), nearby.shape[1], dtype=np.int64)
    own = nearby[lists[queries]]  # each query's list's nearest lists, best first
    np.put_along_axis(rank, own, np.broadcast_to(np.arange(own.shape[1]), own.shape), axis=1)
    reached = np.take_along_axis(rank, lists[np.maximum(truth, 0)], axis=1)
    reached = np.where(truth >= 0, reached, -1)  # no neighbour to find: nothing missed
    needed = max(TARGET_RECALL, TUNING_RECALL)
    for probes in range(1, nearby.shape[1] + 1):
        if np.mean(reached < probes) >= needed:
            return probes
    return nearby.shape[1]


def _exact_rows(vectors: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest of ``vectors[rows]`` among all rows, without the row itself."""
    queries = np.ascontiguousarray(vectors[rows])
    similarities, indices = faiss.knn(queries, vectors, min(k + 1, len(vectors)), metric=faiss.METRIC_INNER_PRODUCT)
    return drop_self(indices, similarities, rows, k)


# --- incremental update ---------------------------------------------------------------------------


def update(graph: NeighbourGraph, vectors: np.ndarray, moved: np.ndarray, added: np.ndarray) -> NeighbourGraph:
    """The graph of ``vectors`` from an older ``graph``.

    ``moved[i]`` is the new row of the graph's row i (-1: deleted or re-embedded); ``added`` are
    the new rows not in the old graph (new or re-embedded images).
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, k = len(vectors), graph.k
    indices = np.full((n, k), -1, dtype=np.int64)
    similarities = np.full((n, k), -np.inf, dtype=np.float32)
    survivors = np.flatnonzero(moved >= 0)
    rows = moved[survivors]
    old = graph.indices[survivors]
    mapped = np.where(old >= 0, moved[np.where(old >= 0, old, 0)], -1)
    indices[rows] = mapped
    similarities[rows] = np.where(mapped >= 0, graph.similarities[survivors], -np.inf)
    lost = rows[((old >= 0) & (mapped < 0)).any(axis=1)]  # rewritten below, whatever their order

    if len(added):
        found, found_sim = _exact_rows(vectors, added, k)
        indices[added], similarities[added] = found, found_sim
        if graph.exact:
            closer, near, near_sim = _new_among_nearest(vectors, rows, added, similarities, k)
        else:
            closer, near, near_sim = _reverse_offers(found, found_sim, added, similarities)
        merged_idx = np.concatenate([indices[closer], near], axis=1)
        merged_sim = np.concatenate([similarities[closer], near_sim], axis=1)
        order = np.argsort(-merged_sim, axis=1, kind="stable")[:, :k]
        indices[closer] = np.take_along_axis(merged_idx, order, axis=1)
        similarities[closer] = np.take_along_axis(merged_sim, order, axis=1)

    if len(lost):  # the next-nearest beyond the old list is unknown: search these rows again
        if graph.exact:
            indices[lost], similarities[lost] = _exact_rows(vectors, lost, k)
        else:
            _refill_from_neighbours(vectors, indices, similarities, lost)
    changed = graph.changed + int((moved < 0).sum()) + len(added)
    return replace(graph, indices=indices, similarities=similarities, version=graph.version + 1, changed=changed)


def _new_among_nearest(
    vectors: np.ndarray, rows: np.ndarray, added: np.ndarray, similarities: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact: the rows whose lists the new ones enter, with their nearest new rows (best first).

    Every row is queried against the new ones (which spares a copy of the survivors' vectors)."""
    near_sim, near = faiss.knn(
        vectors, np.ascontiguousarray(vectors[added]), min(k, len(added)), metric=faiss.METRIC_INNER_PRODUCT
    )
    changes = near_sim[rows, 0] > similarities[rows, -1]
    return rows[changes], added[near[rows[changes]]], near_sim[rows[changes]]


def _reverse_offers(
    found: np.ndarray, found_sim: np.ndarray, added: np.ndarray, similarities: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Approximate: each new row is offered to the lists of its own nearest rows (reverse
    neighbours, as in NN-descent), one (rows, offers, similarities) padded matrix."""
    targets, offers, scores = found.ravel(), np.repeat(added, found.shape[1]), found_sim.ravel()
    keep = (targets >= 0) & ~np.isin(targets, added)
    targets, offers, scores = targets[keep], offers[keep], scores[keep]
    keep = scores > similarities[targets, -1]  # better than the list's last entry
    targets, offers, scores = targets[keep], offers[keep], scores[keep]
    rows, slot_of = np.unique(targets, return_inverse=True)
    order = np.argsort(slot_of, kind="stable")
    counts = np.bincount(slot_of, minlength=len(rows))
    column = np.arange(len(order)) - np.repeat(np.cumsum(counts) - counts, counts)
    near = np.full((len(rows), max(1, counts.max(initial=1))), -1, dtype=np.int64)
    near_sim = np.full(near.shape, -np.inf, dtype=np.float32)
    near[slot_of[order], column] = offers[order]
    near_sim[slot_of[order], column] = scores[order]
    return rows, near, near_sim


def _refill_from_neighbours(
    vectors: np.ndarray, indices: np.ndarray, similarities: np.ndarray, rows: np.ndarray
) -> None:
    """Refill each row's list from its neighbours' neighbours (one NN-descent step)."""
    k = indices.shape[1]
    for row in rows:
        first = indices[row][indices[row] >= 0]
        candidates = np.unique(np.concatenate([first, indices[first].ravel()]))
        candidates = candidates[(candidates >= 0) & (candidates != row)]
        scores = vectors[candidates] @ vectors[row]
        best = np.argsort(-scores, kind="stable")[:k]
        indices[row] = -1
        similarities[row] = -np.inf
        indices[row, : len(best)] = candidates[best]
        similarities[row, : len(best)] = scores[best]


# --- on-disk cache ---------------------------------------------------------------------------------


class GraphStore:
    """Each user's graph under ``root/{collection}/{user}/``, brought up to date on ``get``."""

    def __init__(self, root: Path, collection: str) -> None:
        self.root = Path(root) / collection

    def get(
        self,
        user: str,
        ids: np.ndarray,
        vectors: np.ndarray,
        stamps: np.ndarray,
        seq: int,
        epoch: str,
        k: int = GRAPH_K,
        rebuild: bool = False,
    ) -> NeighbourGraph:
        """The graph of this snapshot of the user's collection (built, patched or read back)."""
        folder = self.root / check_user(user)
        previous = self._meta(folder)
        stored = None if rebuild else self._read(folder, epoch, k)
        if stored is not None and stored[1] == seq and len(stored[2]) == len(ids):
            return stored[0]
        graph = None
        if stored is not None:
            old_graph, old_seq, old_ids = stored
            moved = pd.Index(ids).get_indexer(old_ids)
            fresh = stamps > old_seq
            moved = np.where((moved >= 0) & ~fresh[np.maximum(moved, 0)], moved, -1)
            added = np.flatnonzero(fresh | ~pd.Index(ids).isin(old_ids))
            if not len(added) and np.array_equal(moved, np.arange(len(ids))):
                # Only payloads changed since (tags, reviews): the same graph, now of this seq.
                self._write_meta(folder, old_graph, self._meta(folder)["file"], seq, epoch)
                return old_graph
            changes = old_graph.changed + int((moved < 0).sum()) + len(added)
            if changes <= REBUILD_FRACTION * max(len(ids), 1):
                graph = update(old_graph, vectors, moved, added)
        if graph is None:
            version = previous["version"] + 1 if previous is not None else 1
            graph = replace(build(vectors, max(k, GRAPH_K)), version=version)
        self._write(folder, graph, ids, seq, epoch)
        return graph

    def info(self, user: str) -> dict | None:
        """What is stored for ``user`` (version, count, exact, recall, changed, seq), if anything."""
        return self._meta(self.root / check_user(user))

    def _meta(self, folder: Path) -> dict | None:
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        return meta if meta.get("format") == FORMAT else None

    def _read(self, folder: Path, epoch: str, k: int) -> tuple[NeighbourGraph, int, np.ndarray] | None:
        meta = self._meta(folder)
        if meta is None or meta["epoch"] != epoch or meta["k"] < k:
            return None
        try:
            with np.load(folder / meta["file"], allow_pickle=False) as data:
                graph = NeighbourGraph(
                    data["indices"].astype(np.int64),
                    data["similarities"],
                    exact=meta["exact"],
                    recall=meta["recall"],
                    version=meta["version"],
                    changed=meta["changed"],
                )
                ids = data["ids"]
        except (OSError, ValueError, KeyError):
            return None
        return graph, int(meta["seq"]), ids

    def _write(self, folder: Path, graph: NeighbourGraph, ids: np.ndarray, seq: int, epoch: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        name = f"graph-{uuid.uuid4().hex}.npz"
        indices = graph.indices.astype(np.int32 if len(graph) < 2**31 else np.int64)
        np.savez(folder / name, indices=indices, similarities=graph.similarities, ids=np.asarray(ids, dtype=str))
        self._write_meta(folder, graph, name, seq, epoch)
        for stale in folder.glob("graph-*.npz"):
            if stale.name != name:
                stale.unlink(missing_ok=True)

    def _write_meta(self, folder: Path, graph: NeighbourGraph, name: str, seq: int, epoch: str) -> None:
        meta = {
            "format": FORMAT,
            "file": name,
            "seq": seq,
            "epoch": epoch,
            "k": graph.k,
            "exact": graph.exact,
            "recall": graph.recall,
            "version": graph.version,
            "changed": graph.changed,
            "count": len(graph),
        }
        replace_file(folder / "meta.json", json.dumps(meta), durable=False)
