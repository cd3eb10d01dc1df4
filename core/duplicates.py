"""Duplicate clusters at three levels: exact (same bytes or pixels), near (pHash), semantic (cosine).

Candidate pairs come from sparse searches (groups of equal hashes, a multi-index Hamming search
over both pHashes of every image, the collection's shared neighbour graph), never an n x n matrix.
The near level compares the pHash of the whole picture and the pHash of the picture inside any
border, letterbox bars or screenshot-like frame (``content_phash``). Connected candidates are then
split into stars around a keeper: every member is a duplicate of the keeper (at any level), so an
original and all its copies form one cluster even when two copies are not duplicates of each
other (a flipped and a framed copy), while two images that are only linked through a third one's
copy never meet (no chains). The semantic threshold is stricter for images much smaller than the
model's input (their features tell less apart); ``semantic_thresholds`` says which and why.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from core.collection import Collection, load_collection
from core.graph import NeighbourGraph
from core.hamming import hamming_pairs
from core.images import scaled_size
from core.quality import STAT_COLUMNS, run_checks
from core.reviews import not_duplicate_pairs
from core.services import AnalysisServices, Services

LEVELS = ("exact", "near", "semantic")
DEFAULT_NEAR_THRESHOLD = 8
#: Cosine similarity at or above which two images are semantic duplicates, per model family
#: (from bench/duplicates_quality.py; see docs/benchmarks.md).
SEMANTIC_DEFAULTS = {"efficientnet-lite0": 0.85, "clip": 0.93, "random": 0.999}
#: Side (px) of the model's input. Images whose shorter side is well below it are upscaled to it,
#: and upscaled photos of the same kind look alike to the features.
MODEL_INPUT_SIDE = 224
#: Shorter side under which the semantic threshold tightens, and how far: the threshold's distance
#: to 1 shrinks in proportion to the side, down to ``_SMALL_MARGIN`` of it.
SMALL_SIDE = MODEL_INPUT_SIDE // 2
_SMALL_MARGIN = 0.67  # 32 px photos: 0.90 at a 0.85 base (bench/duplicates_quality.py, small images)
_FAR = 1e6  # distance for pairs that are not duplicates at any level
#: Clusters up to this size list every pair in ``links``; larger ones only the keeper's pairs.
MAX_LINKED_MEMBERS = 200


def default_semantic_threshold(model_name: str) -> float:
    if model_name.startswith("efficientnet"):
        return SEMANTIC_DEFAULTS["efficientnet-lite0"]
    if model_name.endswith(":random"):
        return SEMANTIC_DEFAULTS["random"]
    return SEMANTIC_DEFAULTS["clip"]


def small_image_threshold(base: float, side: float) -> float:
    """The semantic threshold for an image whose shorter side is ``side`` px: ``base`` from
    ``SMALL_SIDE`` up, closer to 1 below it (a 32 px image: 1 - 0.67 x (1 - base))."""
    if side >= SMALL_SIDE:
        return base
    return 1.0 - (1.0 - base) * max(_SMALL_MARGIN, side / SMALL_SIDE)


@dataclass(frozen=True)
class SemanticThresholds:
    """The semantic threshold per image, and the sentence the page shows about it."""

    base: float
    per_image: np.ndarray  # row-aligned with the collection's images
    small: int  # images under SMALL_SIDE on their shorter side

    def describe(self) -> str:
        text = f"Semantic threshold {self.base:.4g}"
        if self.small:
            strictest = float(self.per_image.max())
            text += (
                f"; up to {strictest:.4g} for the {self.small:,} image(s) under {SMALL_SIDE} px on the shorter "
                f"side: the model sees them upscaled to {MODEL_INPUT_SIDE} px, where different photos of one "
                "kind look alike"
            )
        return text


def semantic_thresholds(images: pd.DataFrame, base: float) -> SemanticThresholds:
    """``base`` for every image, tightened for small ones (``small_image_threshold``)."""
    if len(images) == 0 or "width" not in images:
        return SemanticThresholds(base, np.full(len(images), base), 0)
    sides = np.minimum(images["width"].to_numpy(np.float64), images["height"].to_numpy(np.float64))
    per_image = np.array([small_image_threshold(base, side) for side in sides])
    return SemanticThresholds(base, per_image, int((sides < SMALL_SIDE).sum()))


@dataclass
class Cluster:
    """A keeper and its duplicates: ``members[0]`` is the keeper, every other member a duplicate
    of it (at some level; two non-keepers need not be duplicates of each other). ``links``: the
    keeper's pair with each member first, then every other pair (up to ``MAX_LINKED_MEMBERS``)."""

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
class _Hashes:
    """Each image's whole-picture pHash and the pHash of its content box (row-aligned)."""

    full: np.ndarray
    content: np.ndarray

    @classmethod
    def of(cls, images: pd.DataFrame) -> _Hashes:
        full = np.array([int(h, 16) for h in images["phash"]], dtype=np.uint64)
        if "content_phash" not in images:
            return cls(full, full)
        content = [
            int(c, 16) if isinstance(c, str) and c else int(f, 16)
            for c, f in zip(images["content_phash"], images["phash"], strict=True)
        ]
        return cls(full, np.array(content, dtype=np.uint64))

    def bits(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(whole-picture bits, fewest bits over the other three pairings) for every pair of ``rows``."""
        full, content = self.full[rows], self.content[rows]
        whole = np.bitwise_count(full[:, None] ^ full[None, :]).astype(np.int64)
        inner = np.minimum.reduce(
            [
                np.bitwise_count(content[:, None] ^ content[None, :]),
                np.bitwise_count(full[:, None] ^ content[None, :]),
                np.bitwise_count(content[:, None] ^ full[None, :]),
            ]
        ).astype(np.int64)
        return whole, inner


@dataclass(frozen=True)
class DuplicateFinder:
    """Finds duplicate clusters in one user's collection.

    ``semantic_threshold`` is the base; images smaller than ``SMALL_SIDE`` get a stricter one
    (``semantic_thresholds``) unless ``size_aware`` is off. A pair is a semantic duplicate when its
    cosine reaches the stricter of its two images' thresholds."""

    near_threshold: int = DEFAULT_NEAR_THRESHOLD
    semantic_threshold: float = 0.93
    levels: tuple[str, ...] = LEVELS
    neighbours: int = 10
    size_aware: bool = True

    def thresholds(self, images: pd.DataFrame) -> SemanticThresholds:
        if not self.size_aware:
            return SemanticThresholds(self.semantic_threshold, np.full(len(images), self.semantic_threshold), 0)
        return semantic_thresholds(images, self.semantic_threshold)

    def find(self, collection: Collection, not_duplicates: set[frozenset[str]] | None = None) -> list[Cluster]:
        images = collection.images
        n = len(images)
        if n < 2:
            return []
        ids = images["id"].to_numpy()
        hashes = _Hashes.of(images)
        vectors = collection.vectors
        exact_keys = _exact_keys(images)
        limits = self.thresholds(images).per_image
        ignored = not_duplicates or set()

        graph = collection.neighbours(self.neighbours) if "semantic" in self.levels else None
        rows, cols = self._candidate_pairs(exact_keys, hashes, graph, limits)
        keep = np.array(
            [frozenset((ids[a], ids[b])) not in ignored for a, b in zip(rows, cols, strict=True)], dtype=bool
        )
        rows, cols = rows[keep], cols[keep]
        if len(rows) == 0:
            return []
        graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
        _, labels = connected_components(graph, directed=False)
        facts = _keeper_facts(images, np.unique(np.concatenate([rows, cols])))

        clusters: list[Cluster] = []
        for label in np.unique(labels[np.concatenate([rows, cols])]):
            members = np.flatnonzero(labels == label)
            distances = self._pair_distances(members, exact_keys, hashes, vectors, limits, ids, ignored)
            rank = np.empty(len(members), dtype=np.int64)
            rank[keeper_order(facts.iloc[members])[0]] = np.arange(len(members))
            for star in _stars(distances, rank):
                clusters.append(self._cluster(members[star], facts, ids, exact_keys, hashes, vectors, limits))
        clusters.sort(key=lambda c: (-len(c.members), -c.min_similarity))
        for number, cluster in enumerate(clusters, 1):
            cluster.id = number
        return clusters

    def _candidate_pairs(
        self, exact_keys: np.ndarray, hashes: _Hashes, graph: NeighbourGraph | None, limits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        pairs: list[tuple[np.ndarray, np.ndarray]] = []
        n = len(exact_keys)
        if "exact" in self.levels:
            pairs.append(_equal_pairs(exact_keys))
        if "near" in self.levels:
            # One search over both hashes of every image finds the pairs of any two of them; an
            # image whose content box is the whole picture (most) adds no second hash.
            second = np.flatnonzero(hashes.content != hashes.full)
            owner = np.concatenate([np.arange(n), second])
            a, b, _ = hamming_pairs(np.concatenate([hashes.full, hashes.content[second]]), self.near_threshold)
            pairs.append((np.minimum(owner[a], owner[b]), np.maximum(owner[a], owner[b])))
        if graph is not None and len(graph):
            indices, similarities = graph.first(min(self.neighbours, len(graph) - 1))
            safe = np.maximum(indices, 0)
            needed = np.maximum(limits[:, None], limits[safe])
            row, col = np.nonzero((similarities >= needed) & (indices >= 0))
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
        hashes: _Hashes,
        vectors: np.ndarray,
        limits: np.ndarray,
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
            bits = np.minimum(*hashes.bits(members)).astype(np.float64)
            near = bits / self.near_threshold if self.near_threshold else np.where(bits == 0, 0.0, _FAR)
            distance = np.minimum(distance, np.where(bits <= self.near_threshold, near, _FAR))
        if "semantic" in self.levels:
            similarity = vectors[members] @ vectors[members].T
            needed = np.maximum(limits[members][:, None], limits[members][None, :])
            semantic = (1.0 - similarity) / np.maximum(1e-6, 1.0 - needed)
            distance = np.minimum(distance, np.where(similarity >= needed, semantic, _FAR))
        if ignored:
            position = {image_id: i for i, image_id in enumerate(ids[members])}
            for pair in ignored:
                i, j = (position.get(image_id) for image_id in pair)
                if i is not None and j is not None:
                    distance[i, j] = distance[j, i] = np.inf  # never in one cluster, not even via a keeper
        np.fill_diagonal(distance, 0.0)
        return distance

    def _cluster(
        self,
        members: np.ndarray,
        facts: pd.DataFrame,
        ids: np.ndarray,
        exact_keys: np.ndarray,
        hashes: _Hashes,
        vectors: np.ndarray,
        limits: np.ndarray,
    ) -> Cluster:
        """``members[0]`` is the keeper (the star's centre); the others follow in keeper order."""
        rows = facts.iloc[members]
        order, reason = keeper_order(rows)
        if order[0] != 0:
            first = rows.iloc[0]
            reason = (
                f"the one image all the others duplicate ({_whole(first['width'])}×{_whole(first['height'])}); "
                "larger ones are not duplicates of every other"
            )
        members = np.concatenate([[members[0]], members[order[order != 0]]])
        links = self._links(members, ids, exact_keys, hashes, vectors, limits)
        keeper_links = links[: len(members) - 1]
        best = min((LEVELS.index(link["level"]) for link in keeper_links if link["level"]), default=len(LEVELS))
        return Cluster(
            id=0,
            members=list(ids[members]),
            keeper_reason=reason,
            level=LEVELS[min(best, len(LEVELS) - 1)],
            min_similarity=min(link["similarity"] for link in keeper_links),
            links=links,
        )

    def _links(
        self,
        members: np.ndarray,
        ids: np.ndarray,
        exact_keys: np.ndarray,
        hashes: _Hashes,
        vectors: np.ndarray,
        limits: np.ndarray,
    ) -> list[dict[str, Any]]:
        """Which level (and which test of it) makes two members duplicates (level None if none):
        the keeper's pairs first, then every other pair up to ``MAX_LINKED_MEMBERS`` members."""
        whole, inner = hashes.bits(members)
        similarity = vectors[members] @ vectors[members].T
        keys = exact_keys[members]
        needed = np.maximum(limits[members][:, None], limits[members][None, :])
        m = len(members)
        pairs = [(0, y) for y in range(1, m)]
        if m <= MAX_LINKED_MEMBERS:
            pairs += [(x, y) for x in range(1, m) for y in range(x + 1, m)]
        links = []
        for x, y in pairs:
            level, via = None, None
            if "exact" in self.levels and keys[x] == keys[y]:
                level, via = "exact", "same pixels"
            elif "near" in self.levels and whole[x, y] <= self.near_threshold:
                level, via = "near", "pHash"
            elif "near" in self.levels and inner[x, y] <= self.near_threshold:
                level, via = "near", "pHash inside borders"
            elif "semantic" in self.levels and similarity[x, y] >= needed[x, y]:
                level, via = "semantic", "cosine"
            links.append(
                {
                    "a": ids[members[x]],
                    "b": ids[members[y]],
                    "level": level,
                    "via": via,
                    "phash_distance": int(whole[x, y]),
                    "content_phash_distance": int(inner[x, y]),
                    "similarity": round(float(similarity[x, y]), 4),
                }
            )
        return links


def keeper_order(rows: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Positions of ``rows`` best first, and why: the fewest quality flags (``quality_flags``, when
    given: a too dark or blurry copy is never kept over a clean one), then the most picture pixels
    (inside any border; within 10 % of the most counts as as many, since the border is found on a
    small copy), then the least border around it (a picture's share of its image within 5 points
    of the largest share), then the largest file, then the oldest. The copies that are not kept
    follow in the same order, smaller pictures by their pixels."""
    full = (rows["width"] * rows["height"]).to_numpy(np.float64)
    picture = _picture_pixels(rows, full)
    share = picture / np.maximum(full, 1.0)
    sizes = rows["bytes"].to_numpy()
    created = rows["created_ts"].to_numpy(dtype=np.float64)
    flags = rows["quality_flags"].to_numpy() if "quality_flags" in rows else np.zeros(len(rows))
    fewest = flags == flags.min()
    largest = fewest & (picture >= 0.9 * picture[fewest].max())
    least_border = largest & (share >= share[largest].max() - 0.05)
    smaller = np.where(largest, 0.0, -picture)
    order = np.lexsort((created, -sizes, ~least_border, smaller, ~largest, ~fewest))
    first = order[0]
    w, h = _whole(rows["width"].iloc[first]), _whole(rows["height"].iloc[first])
    if largest.sum() == 1:
        reason = f"most pixels ({w}×{h})"
    elif least_border.sum() == 1:
        reason = f"as many pixels, least border around them ({w}×{h})"
    elif (least_border & (sizes == sizes[first])).sum() == 1:
        reason = f"same pixel count, largest file ({sizes[first] / 1024:.0f} KB)"
    else:
        when = datetime.fromtimestamp(created[first], UTC).strftime("%Y-%m-%d %H:%M")
        reason = f"same pixels and file size, oldest (added {when} UTC)"
    if not fewest.all():
        clean = "no quality flags" if flags[first] == 0 else "fewest quality flags"
        reason = f"{clean} ({w}×{h})" if fewest.sum() == 1 else f"{clean}, then {reason}"
    return order, reason


def _keeper_facts(images: pd.DataFrame, clustered: np.ndarray) -> pd.DataFrame:
    """The columns ``keeper_order`` reads, as plain NumPy columns: a row lookup in the collection's
    Arrow-backed table costs milliseconds at a million rows, in this copy microseconds.
    ``quality_flags`` (how many quality checks flag the image) is counted for the ``clustered``
    rows only, where the stats are known."""
    columns = {
        "width": images["width"].to_numpy(np.float64, na_value=np.nan),
        "height": images["height"].to_numpy(np.float64, na_value=np.nan),
        "bytes": images["bytes"].to_numpy(np.float64, na_value=np.nan),
        "created_ts": images["created_ts"].to_numpy(np.float64, na_value=np.nan),
    }
    if "content_size" in images:
        columns["content_size"] = images["content_size"].to_numpy(object)
    if set(STAT_COLUMNS) <= set(images.columns):
        flags = np.zeros(len(images), dtype=np.int64)
        checks = run_checks(images.iloc[clustered])
        flags[clustered] = checks.filter(like="is_").sum(axis=1).to_numpy()
        columns["quality_flags"] = flags
    return pd.DataFrame(columns)


def _picture_pixels(rows: pd.DataFrame, full: np.ndarray) -> np.ndarray:
    """Pixels of each row's picture inside any border (``content_size``), else of the whole image."""
    if "content_size" not in rows:
        return full
    sizes = [s[0] * s[1] if s is not None and len(s) == 2 and s[0] * s[1] > 0 else None for s in rows["content_size"]]
    return np.array([f if p is None else min(float(p), f) for p, f in zip(sizes, full, strict=True)])


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


def _stars(distance: np.ndarray, rank: np.ndarray) -> list[np.ndarray]:
    """Split a component into stars: repeatedly take the image that is a duplicate of the most
    others still unassigned (ties: the better keeper, lower ``rank``) with all those others.

    Positions in ``distance`` (<= 1: a duplicate; inf: marked "not duplicates", never in one
    star), centre first; lone images are left out. Each
    round costs one pass over the rows of the images it removes, so a component of m images costs
    O(m^2) in all."""
    close = distance <= 1.0
    np.fill_diagonal(close, False)
    apart = np.isinf(distance)
    remaining = np.ones(len(distance), dtype=bool)
    degree = close.sum(axis=1)
    stars = []
    while True:
        score = np.where(remaining, degree, -1)
        best = score.max()
        if best <= 0:
            return stars
        tied = np.flatnonzero(score == best)
        centre = int(tied[np.argmin(rank[tied])])
        star = [centre]
        candidates = np.flatnonzero(close[centre] & remaining)
        for other in candidates[np.argsort(distance[centre, candidates], kind="stable")]:
            if not apart[other, star].any():  # no two members the user said are different
                star.append(int(other))
        star = np.array(star)
        remaining[star] = False
        degree -= close[:, star].sum(axis=1)
        stars.append(star)


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
                    "width": _whole(image["width"]),
                    "height": _whole(image["height"]),
                    "bytes": _whole(image["bytes"]),
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


@dataclass(frozen=True)
class DuplicateReport:
    """What the Duplicates page shows: the clusters, the thresholds in use (and why), and the
    payload fields of the clustered images for the side-by-side compare."""

    clusters: list[Cluster]
    thresholds: SemanticThresholds
    near_threshold: int
    details: pd.DataFrame  # one row per clustered image, indexed by id


def find_duplicates(
    services: Services | AnalysisServices,
    user: str,
    levels: tuple[str, ...] = LEVELS,
    near_threshold: int | None = None,
    semantic_threshold: float | None = None,
    collection: Collection | None = None,
) -> DuplicateReport:
    """The clusters at the settings' pHash threshold and the model's semantic threshold (unless
    given), with the per-image thresholds that were used."""
    collection = collection if collection is not None else load_collection(services, user)
    finder = DuplicateFinder(
        near_threshold=services.settings.phash_threshold if near_threshold is None else near_threshold,
        semantic_threshold=(
            default_semantic_threshold(services.model_name) if semantic_threshold is None else semantic_threshold
        ),
        levels=levels,
    )
    clusters = finder.find(collection, not_duplicate_pairs(collection.images))
    clustered = {m for c in clusters for m in c.members}
    images = collection.images
    columns = [c for c in COMPARE_COLUMNS if c in images]
    details = images.loc[images["id"].isin(clustered), ["id", *columns]].set_index("id")
    return DuplicateReport(clusters, finder.thresholds(images), finder.near_threshold, details)


def duplicate_report(
    services: Services | AnalysisServices,
    user: str,
    levels: tuple[str, ...] = LEVELS,
    near_threshold: int | None = None,
    semantic_threshold: float | None = None,
    collection: Collection | None = None,
) -> list[Cluster]:
    """The clusters the Duplicates page and ``python -m core duplicates`` show."""
    return find_duplicates(services, user, levels, near_threshold, semantic_threshold, collection).clusters


COMPARE_COLUMNS = [
    "filename",
    "width",
    "height",
    "content_size",
    "bytes",
    "format",
    "created_at",
    "sha256",
    "pixel_sha256",
    "phash",
    "content_phash",
]


def comparison(cluster: Cluster, details: pd.DataFrame) -> pd.DataFrame:
    """The compare view's metadata diff: one row per field, one column per member (keeper first),
    values rounded for people, and ``differs`` where the members do not all agree."""
    links = {frozenset((link["a"], link["b"])): link for link in cluster.links}
    columns: dict[str, dict[str, str]] = {}
    for number, member in enumerate(cluster.members):
        row = details.loc[member]
        link = links.get(frozenset((cluster.keeper, member)))
        content = row.get("content_size")
        has_content = content is not None and len(content) == 2 and content[0] and content[1]
        label = f"{number + 1}. {'keeper' if member == cluster.keeper else 'copy'}"
        columns[label] = {
            "File": str(row["filename"]),
            "Size": f"{_whole(row['width'])} × {_whole(row['height'])} px",
            "Picture inside borders": (f"{int(content[0])} × {int(content[1])} px" if has_content else "—"),
            "File size": _people_bytes(_whole(row["bytes"])),
            "Format": str(row.get("format", "") or "—"),
            "Added": _people_date(row.get("created_at")),
            "SHA-256": str(row.get("sha256", ""))[:12] + "…",
            "pHash": str(row.get("phash", "")),
            "pHash inside borders": str(row.get("content_phash") or "—"),
            **_link_rows(link),
        }
    frame = pd.DataFrame(columns)
    frame["differs"] = frame.nunique(axis=1) > 1
    frame.loc[list(_link_rows(None)), "differs"] = False
    return frame


def same_scale(pictures: list[Image.Image], sizes: list[tuple[int, int]], side: int = 640) -> list[Image.Image]:
    """Each picture redrawn at one scale for all: the largest original's longer side becomes
    ``side`` px and every picture keeps its original size relative to it, centred on a canvas
    as big as the largest (so equal columns show them at the same scale, a half-size copy at half
    the size). ``sizes``: the originals' (width, height); ``pictures`` may be smaller copies."""
    scale = side / max(max(w, h) for w, h in sizes)
    canvas_size = (round(max(w for w, _ in sizes) * scale), round(max(h for _, h in sizes) * scale))
    canvases = []
    for picture, (width, height) in zip(pictures, sizes, strict=True):
        shown = picture.resize(scaled_size(width, height, scale), Image.Resampling.LANCZOS)
        canvas = Image.new("RGB", canvas_size, _CANVAS)
        canvas.paste(shown, ((canvas_size[0] - shown.width) // 2, (canvas_size[1] - shown.height) // 2))
        canvases.append(canvas)
    return canvases


_CANVAS = (240, 242, 246)


def _link_rows(link: dict[str, Any] | None) -> dict[str, str]:
    """How a member is linked to the keeper, in short cells (the keeper's own are dashes)."""
    if link is None:
        return {"Found by": "—", "pHash bits to the keeper": "—", "Cosine to the keeper": "—"}
    bits = f"{link['phash_distance']}"
    if link["content_phash_distance"] < link["phash_distance"]:
        bits += f" ({link['content_phash_distance']} inside borders)"
    return {
        "Found by": f"{link['level']}: {link['via']}" if link["level"] else "not a duplicate",
        "pHash bits to the keeper": bits,
        "Cosine to the keeper": f"{link['similarity']:.2f}",
    }


def _whole(value: object) -> int:
    """An integer payload field; 0 where a partial or older record lacks it (None, NaN)."""
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def _people_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def _people_date(value: object) -> str:
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(value or "—")
