"""Duplicate clusters at three levels: exact (same bytes or pixels), near (pHash), semantic (cosine).

Candidate pairs come from sparse searches (groups of equal hashes, a multi-index Hamming search,
the collection's shared neighbour graph), never an n x n matrix. Connected candidates are then
split by complete linkage, so every pair inside a cluster is a duplicate at some level: no
chaining of A~B~C into one cluster when A and C are far apart. Each cluster proposes a keeper and
says why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from core.collection import Collection, load_collection
from core.graph import NeighbourGraph
from core.hamming import hamming_pairs
from core.reviews import not_duplicate_pairs
from core.services import AnalysisServices, Services

LEVELS = ("exact", "near", "semantic")
DEFAULT_NEAR_THRESHOLD = 8
#: Cosine similarity at or above which two images are semantic duplicates, per model family
#: (from bench/duplicates_quality.py; see docs/benchmarks.md).
SEMANTIC_DEFAULTS = {"efficientnet-lite0": 0.85, "clip": 0.93, "random": 0.999}
_FAR = 1e6  # distance for pairs that are not duplicates at any level
_MAX_LINKAGE = 3000  # larger components are split greedily around their best-connected images


def default_semantic_threshold(model_name: str) -> float:
    if model_name.startswith("efficientnet"):
        return SEMANTIC_DEFAULTS["efficientnet-lite0"]
    if model_name.endswith(":random"):
        return SEMANTIC_DEFAULTS["random"]
    return SEMANTIC_DEFAULTS["clip"]


@dataclass
class Cluster:
    """Images that are all duplicates of each other; ``members[0]`` is the proposed keeper."""

    id: int
    members: list[str]
    keeper_reason: str
    level: str
    min_similarity: float
    links: list[dict[str, Any]] = field(default_factory=list)

    @property
    def keeper(self) -> str:
        return self.members[0]

    @property
    def to_delete(self) -> list[str]:
        return self.members[1:]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "keeper": self.keeper}


@dataclass(frozen=True)
class DuplicateFinder:
    """Finds duplicate clusters in one user's collection."""

    near_threshold: int = DEFAULT_NEAR_THRESHOLD
    semantic_threshold: float = 0.93
    levels: tuple[str, ...] = LEVELS
    neighbours: int = 10

    def find(self, collection: Collection, not_duplicates: set[frozenset[str]] | None = None) -> list[Cluster]:
        images = collection.images
        n = len(images)
        if n < 2:
            return []
        ids = images["id"].to_numpy()
        hashes = np.array([int(h, 16) for h in images["phash"]], dtype=np.uint64)
        vectors = collection.vectors
        exact_keys = _exact_keys(images)
        ignored = not_duplicates or set()

        graph = collection.neighbours(self.neighbours) if "semantic" in self.levels else None
        rows, cols = self._candidate_pairs(exact_keys, hashes, graph)
        keep = np.array(
            [frozenset((ids[a], ids[b])) not in ignored for a, b in zip(rows, cols, strict=True)], dtype=bool
        )
        rows, cols = rows[keep], cols[keep]
        if len(rows) == 0:
            return []
        graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
        _, labels = connected_components(graph, directed=False)

        clusters: list[Cluster] = []
        for label in np.unique(labels[np.concatenate([rows, cols])]):
            members = np.flatnonzero(labels == label)
            distances = self._pair_distances(members, exact_keys, hashes, vectors, ids, ignored)
            for group in _split(distances):
                if len(group) > 1:
                    clusters.append(self._cluster(members[group], images, exact_keys, hashes, vectors))
        clusters.sort(key=lambda c: (-len(c.members), -c.min_similarity))
        for number, cluster in enumerate(clusters, 1):
            cluster.id = number
        return clusters

    def _candidate_pairs(
        self, exact_keys: np.ndarray, hashes: np.ndarray, graph: NeighbourGraph | None
    ) -> tuple[np.ndarray, np.ndarray]:
        pairs: list[tuple[np.ndarray, np.ndarray]] = []
        if "exact" in self.levels:
            pairs.append(_equal_pairs(exact_keys))
        if "near" in self.levels:
            a, b, _ = hamming_pairs(hashes, self.near_threshold)
            pairs.append((a, b))
        if graph is not None and len(graph):
            indices, similarities = graph.first(min(self.neighbours, len(graph) - 1))
            row, col = np.nonzero((similarities >= self.semantic_threshold) & (indices >= 0))
            a, b = row, indices[row, col]
            pairs.append((np.minimum(a, b), np.maximum(a, b)))
        if not pairs:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        stacked = np.unique(
            np.stack([np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])], axis=1), axis=0
        )
        stacked = stacked[stacked[:, 0] != stacked[:, 1]]
        return stacked[:, 0].astype(np.int64), stacked[:, 1].astype(np.int64)

    def _pair_distances(
        self,
        members: np.ndarray,
        exact_keys: np.ndarray,
        hashes: np.ndarray,
        vectors: np.ndarray,
        ids: np.ndarray,
        ignored: set[frozenset[str]],
    ) -> np.ndarray:
        """Square matrix of 'duplicate distances' within a component: <= 1 means a duplicate."""
        m = len(members)
        distance = np.full((m, m), _FAR)
        if "exact" in self.levels:
            keys = exact_keys[members]
            distance[keys[:, None] == keys[None, :]] = 0.0
        if "near" in self.levels:
            bits = np.bitwise_count(hashes[members][:, None] ^ hashes[members][None, :]).astype(np.float64)
            near = bits / self.near_threshold if self.near_threshold else np.where(bits == 0, 0.0, _FAR)
            distance = np.minimum(distance, np.where(bits <= self.near_threshold, near, _FAR))
        if "semantic" in self.levels:
            similarity = vectors[members] @ vectors[members].T
            semantic = (1.0 - similarity) / max(1e-6, 1.0 - self.semantic_threshold)
            distance = np.minimum(distance, np.where(similarity >= self.semantic_threshold, semantic, _FAR))
        if ignored:
            position = {image_id: i for i, image_id in enumerate(ids[members])}
            for pair in ignored:
                i, j = (position.get(image_id) for image_id in pair)
                if i is not None and j is not None:
                    distance[i, j] = distance[j, i] = _FAR
        np.fill_diagonal(distance, 0.0)
        return distance

    def _cluster(
        self, members: np.ndarray, images: pd.DataFrame, exact_keys: np.ndarray, hashes: np.ndarray, vectors: np.ndarray
    ) -> Cluster:
        rows = images.iloc[members]
        order, reason = keeper_order(rows)
        members = members[order]
        links, similarities, best = [], [], 2
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                a, b = members[x], members[y]
                bits = int(np.bitwise_count(hashes[a] ^ hashes[b]))
                similarity = float(vectors[a] @ vectors[b])
                if "exact" in self.levels and exact_keys[a] == exact_keys[b]:
                    level = "exact"
                elif "near" in self.levels and bits <= self.near_threshold:
                    level = "near"
                else:
                    level = "semantic"
                best = min(best, LEVELS.index(level))
                similarities.append(similarity)
                links.append(
                    {
                        "a": images.iloc[a]["id"],
                        "b": images.iloc[b]["id"],
                        "level": level,
                        "phash_distance": bits,
                        "similarity": round(similarity, 4),
                    }
                )
        return Cluster(
            id=0,
            members=list(images.iloc[members]["id"]),
            keeper_reason=reason,
            level=LEVELS[best],
            min_similarity=round(min(similarities), 4),
            links=links,
        )


def keeper_order(rows: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Positions of ``rows`` best first (most pixels, then largest file, then oldest), and why."""
    pixels = (rows["width"] * rows["height"]).to_numpy()
    sizes = rows["bytes"].to_numpy()
    created = rows["created_ts"].to_numpy(dtype=np.float64)
    order = np.lexsort((created, -sizes, -pixels))
    first = order[0]
    w, h = int(rows.iloc[first]["width"]), int(rows.iloc[first]["height"])
    if (pixels == pixels[first]).sum() == 1:
        reason = f"most pixels ({w}×{h})"
    elif ((pixels == pixels[first]) & (sizes == sizes[first])).sum() == 1:
        reason = f"same pixel count, largest file ({sizes[first] / 1024:.0f} KB)"
    else:
        when = datetime.fromtimestamp(created[first], UTC).strftime("%Y-%m-%d %H:%M")
        reason = f"same pixels and file size, oldest (added {when} UTC)"
    return order, reason


def _exact_keys(images: pd.DataFrame) -> np.ndarray:
    """Equal for files with the same bytes or the same decoded pixels."""
    pixel = images["pixel_sha256"] if "pixel_sha256" in images else pd.Series([None] * len(images))
    return np.array([p if isinstance(p, str) and p else s for p, s in zip(pixel, images["sha256"], strict=True)])


def _equal_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of rows with the same key (only rows whose key repeats are grouped)."""
    repeated = np.flatnonzero(pd.Series(keys).duplicated(keep=False).to_numpy())
    a, b = [], []
    for _, rows in pd.Series(repeated).groupby(keys[repeated]):
        values = rows.to_numpy()
        for i in range(len(values)):
            for j in range(i + 1, len(values)):
                a.append(values[i])
                b.append(values[j])
    return np.array(a, dtype=np.int64), np.array(b, dtype=np.int64)


def _split(distance: np.ndarray) -> list[np.ndarray]:
    """Complete-linkage groups whose every pair is within distance 1."""
    m = len(distance)
    if m == 2:
        return [np.arange(2)] if distance[0, 1] <= 1.0 else [np.array([0]), np.array([1])]
    if m > _MAX_LINKAGE:
        return _greedy_split(distance)
    condensed = distance[np.triu_indices(m, 1)]
    labels = fcluster(linkage(condensed, method="complete"), t=1.0, criterion="distance")
    return [np.flatnonzero(labels == label) for label in np.unique(labels)]


def _greedy_split(distance: np.ndarray) -> list[np.ndarray]:
    """For very large components: repeatedly take the best-connected image and the images within
    distance 1 of it and of each other (a clique grown greedily)."""
    close = distance <= 1.0
    remaining = np.ones(len(distance), dtype=bool)
    groups = []
    while remaining.any():
        degree = np.where(remaining, (close & remaining).sum(axis=1), -1)
        seed = int(np.argmax(degree))
        group = [seed]
        candidates = np.flatnonzero(close[seed] & remaining)
        for c in candidates[np.argsort(distance[seed, candidates])]:
            if c != seed and close[c, group].all():
                group.append(int(c))
        remaining[group] = False
        groups.append(np.array(group))
    return groups


def clusters_frame(clusters: list[Cluster], images: pd.DataFrame) -> pd.DataFrame:
    """One row per clustered image, for tables and CSV export."""
    info = images.set_index("id")
    rows = []
    for cluster in clusters:
        for member in cluster.members:
            image = info.loc[member]
            rows.append(
                {
                    "cluster": cluster.id,
                    "level": cluster.level,
                    "image_id": member,
                    "filename": image["filename"],
                    "is_keeper": member == cluster.keeper,
                    "keeper_reason": cluster.keeper_reason if member == cluster.keeper else "",
                    "width": int(image["width"]),
                    "height": int(image["height"]),
                    "bytes": int(image["bytes"]),
                    "cluster_size": len(cluster.members),
                    "min_similarity": cluster.min_similarity,
                }
            )
    columns = [
        "cluster",
        "level",
        "image_id",
        "filename",
        "is_keeper",
        "keeper_reason",
        "width",
        "height",
        "bytes",
        "cluster_size",
        "min_similarity",
    ]
    return pd.DataFrame(rows, columns=columns)


def duplicate_report(
    services: Services | AnalysisServices,
    user: str,
    levels: tuple[str, ...] = LEVELS,
    near_threshold: int | None = None,
    semantic_threshold: float | None = None,
    collection: Collection | None = None,
) -> list[Cluster]:
    """The clusters the Duplicates page and ``python -m core duplicates`` show."""
    collection = collection if collection is not None else load_collection(services, user)
    finder = DuplicateFinder(
        near_threshold=services.settings.phash_threshold if near_threshold is None else near_threshold,
        semantic_threshold=(
            default_semantic_threshold(services.model_name) if semantic_threshold is None else semantic_threshold
        ),
        levels=levels,
    )
    return finder.find(collection, not_duplicate_pairs(collection.images))
