"""Rare groups: flagged images that resemble each other more than they resemble the rest.

Built on the collection's shared neighbour graph (``core.graph``). Used twice:

- ``grow_flags``: over mutual neighbours (each among the other's ``LINK_K`` nearest), a flag
  spreads from an image above the fence to the near-flagged images it is linked to when they are
  unusual on average, so a small group of similar outliers (whose nearest neighbours are each
  other) is flagged as a whole instead of only its most isolated members;
- ``group_numbers`` / ``rare_groups``: closely linked flagged images (``close_links``) form the
  groups the Anomalies page and ``python -m core anomalies --groups`` list, with their distance to
  the rest and a short label.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components

from core.graph import NeighbourGraph

# Flags spread between mutual neighbours among the 15 nearest; listed groups link an image to its 8
# nearest when they are as close as 90 % of the collection's images are to their 8th nearest (fewer
# single outliers chained into a group; bench/anomalies_quality.py).
LINK_K = 15
GROUP_K = 8
CLOSE_PERCENTILE = 90
GROUP_COLUMNS = ["group", "size", "label", "distance", "score", "ids", "filenames", "thumbnail_keys", "reviews"]


def mutual_links(graph: NeighbourGraph, k: int = LINK_K) -> csr_matrix:
    """Symmetric 0/1 matrix: i and j are each among the other's ``k`` nearest."""
    n = len(graph)
    k = min(k, graph.k)
    indices, _ = graph.first(k)
    rows = np.repeat(np.arange(n), k)
    columns = indices.ravel()
    keep = columns >= 0
    links = coo_matrix((np.ones(int(keep.sum()), dtype=np.int8), (rows[keep], columns[keep])), shape=(n, n)).tocsr()
    return links.multiply(links.T).tocsr()


def _components(graph: NeighbourGraph, members: np.ndarray, k: int) -> np.ndarray:
    """Connected components of the mutual links between ``members`` (others: a component each)."""
    mask = csr_matrix(np.asarray(members, dtype=np.int8)[:, None])
    inner = mutual_links(graph, k).multiply(mask).multiply(mask.T)
    _, labels = connected_components(inner.tocsr(), directed=False)
    return labels


def grow_flags(
    flagged: np.ndarray,
    candidates: np.ndarray,
    scores: np.ndarray,
    group_floor: float,
    graph: NeighbourGraph,
    k: int = LINK_K,
) -> np.ndarray:
    """``flagged`` plus the candidates linked (through candidates) to a flagged image, when the
    linked images' mean score is above ``group_floor``."""
    reachable = candidates | flagged
    labels = _components(graph, reachable, k)
    rows = np.flatnonzero(reachable)  # one pass over the components (a million images: thousands)
    parts = pd.DataFrame({"label": labels[rows], "score": scores[rows], "seed": flagged[rows]}).groupby("label")
    stats = parts.agg(size=("score", "size"), mean=("score", "mean"), seeded=("seed", "any"))
    spreading = stats.index[(stats["size"] > 1) & stats["seeded"] & (stats["mean"] > group_floor)]
    grown = flagged.copy()
    grown[rows[np.isin(labels[rows], spreading)]] = True
    return grown


def close_links(graph: NeighbourGraph, members: np.ndarray, k: int = GROUP_K) -> csr_matrix:
    """Links between ``members`` where one is among the other's ``k`` nearest and they are as close
    as ordinary neighbours are (within the ``CLOSE_PERCENTILE`` of the collection's distances to
    the ``k``-th nearest): a far image is not chained to a group just because everything is far."""
    n = len(graph)
    k = min(k, graph.k)
    indices, similarities = graph.first(k)
    distances = 1.0 - similarities
    valid = indices >= 0
    kth = distances[:, k - 1][valid[:, k - 1]]
    close = np.percentile(kth, CLOSE_PERCENTILE) if len(kth) else np.inf
    rows = np.repeat(np.arange(n), k)[valid.ravel()]
    columns = indices[valid]
    keep = members[rows] & members[columns] & (distances[valid] <= close)
    return coo_matrix((np.ones(int(keep.sum()), np.int8), (rows[keep], columns[keep])), shape=(n, n)).tocsr()


def group_numbers(flagged: np.ndarray, scores: np.ndarray, graph: NeighbourGraph, k: int = GROUP_K) -> np.ndarray:
    """Group 1, 2, ... (highest mean score first) of each flagged image closely linked to another
    flagged one (``close_links``); 0 for single outliers and unflagged images."""
    _, labels = connected_components(close_links(graph, flagged, k), directed=False)
    numbers = np.zeros(len(flagged), dtype=np.int64)
    found = pd.DataFrame({"label": labels[flagged], "score": scores[flagged]}).groupby("label")["score"]
    sizes, means = found.size(), found.mean()
    ranked = means[sizes >= 2].sort_values(ascending=False, kind="stable").index
    number_of = pd.Series(np.arange(1, len(ranked) + 1), index=ranked)
    numbers[flagged] = pd.Series(labels[flagged]).map(number_of).fillna(0).to_numpy(dtype=np.int64)
    return numbers


def distance_to_rest(groups: np.ndarray, graph: NeighbourGraph) -> np.ndarray:
    """Cosine distance from each image to its nearest neighbour outside its own group (a single
    image's group is itself). When every listed neighbour is in the group, the farthest listed one
    stands in (a lower bound)."""
    indices, similarities = graph.indices, graph.similarities
    own = np.where(groups > 0, groups, -1 - np.arange(len(groups)))  # singles: a group of their own
    valid = indices >= 0
    outside = valid & (own[np.where(valid, indices, 0)] != own[:, None])
    nearest = np.where(outside, similarities, -np.inf).max(axis=1, initial=-np.inf)
    farthest = np.where(valid, similarities, np.inf).min(axis=1, initial=np.inf)
    best = np.where(np.isfinite(nearest), nearest, np.where(np.isfinite(farthest), farthest, 1.0))
    return (1.0 - best).astype(np.float64)


def short_label(filenames: list[str], tag_lists: list[list[str]]) -> str:
    """The members' most common tag, else their most common file-name stem (``IMG_0042.jpg`` ->
    ``img``), with how many members share it."""
    tags = Counter(tag for tags in tag_lists for tag in dict.fromkeys(tags or []))
    if tags:
        tag, count = tags.most_common(1)[0]
        return f"tag “{tag}” ({count} of {len(filenames)})"
    stems = Counter(filter(None, (_stem(name) for name in filenames)))
    if not stems:
        return f"{len(filenames)} images"
    stem, count = stems.most_common(1)[0]
    if count == 1:  # no shared name: the first two say more than "1 of n"
        first = list(stems)[:2]
        return ", ".join(f"“{name}”" for name in first) + (", …" if len(stems) > 2 else "")
    return f"“{stem}” ({count} of {len(filenames)})"


def _stem(filename: str) -> str:
    """The words of a file name without extension, digits and separators: ``n01440764_tench.JPEG``
    -> ``tench``, ``IMG_0042.jpg`` -> ``img``."""
    base = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", str(filename)).lower()
    words = [w for w in re.split(r"[^a-z]+", re.sub(r"[a-z]\d{4,}", " ", base)) if len(w) >= 2]
    return " ".join(words[:3])


def rare_groups(report: pd.DataFrame) -> pd.DataFrame:
    """One row per group of the report (``group`` > 0), most unusual first: size, label, mean
    distance to the rest, mean score, and the members (ids, file names, thumbnails, reviews)."""
    if "group" not in report or not (report["group"] > 0).any():
        return pd.DataFrame(columns=GROUP_COLUMNS)
    members = report[report["group"] > 0]
    rows = []
    for number, part in members.groupby("group", sort=True):
        part = part.sort_values("anomaly_score", ascending=False, kind="stable")
        tags = list(part["tags"]) if "tags" in part else [[] for _ in range(len(part))]
        rows.append(
            {
                "group": int(number),
                "size": len(part),
                "label": short_label(list(part["filename"]), tags),
                "distance": round(float(part["distance_to_rest"].mean()), 3),
                "score": round(float(part["anomaly_score"].mean()), 3),
                "ids": list(part["id"]),
                "filenames": list(part["filename"]),
                "thumbnail_keys": list(part.get("thumbnail_key", pd.Series([""] * len(part)))),
                "reviews": list(part["review"]) if "review" in part else [""] * len(part),
            }
        )
    return pd.DataFrame(rows, columns=GROUP_COLUMNS)
