"""Duplicate and anomaly engines at scale: 100k synthetic images (pHashes + 512-d vectors).

    python -m bench.duplicates_scale [--images 100000] [--dim 512] [--pairs 1000] [--skip-anomalies]

Random 64-bit pHashes with planted near-duplicate pairs (1-6 bits apart), clustered L2-normalised
float32 vectors with planted semantic duplicates (cosine 0.96-0.99) and a few exact copies (same
sha256, pHash and vector). A near copy's vector and a semantic copy's pHash are unrelated to
their original's, so each level is checked on its own. Times the near-duplicate pair search, the k-NN graph, the whole
DuplicateFinder.find and the three anomaly methods, and checks that the planted pairs are found.
Targets (issue): near-duplicate search <= 30 s, k-NN graph <= 3 min, peak memory <= 4 GB.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench.common import peak_rss_mb, timer
from bench.tables import table
from core.anomalies import METHODS
from core.collection import Collection
from core.duplicates import DEFAULT_NEAR_THRESHOLD, LEVELS, Cluster, DuplicateFinder
from core.embed import normalise
from core.hamming import hamming_pairs
from core.neighbors import knn

K = 10
SEMANTIC_THRESHOLD = DuplicateFinder().semantic_threshold


@dataclass
class Planted:
    """Row pairs (original, copy) planted at each level."""

    exact: np.ndarray
    near: np.ndarray
    semantic: np.ndarray


@dataclass
class Row:
    """One line of the results table."""

    stage: str
    seconds: float
    result: str
    target: str = ""
    peak_mb: float = field(default_factory=peak_rss_mb)  # ru_maxrss never decreases: the peak so far


def plant_rows(rng: np.random.Generator, n: int, pairs: int) -> Planted:
    """Disjoint (original, copy) row pairs: pairs // 5 exact, ``pairs`` near, ``pairs`` semantic."""
    sizes = [pairs // 5, pairs, pairs]
    rows = rng.permutation(n)[: 2 * sum(sizes)]
    chunks = np.split(rows, np.cumsum([2 * s for s in sizes])[:-1])
    return Planted(*(chunk.reshape(-1, 2) for chunk in chunks))


def make_hashes(rng: np.random.Generator, n: int, planted: Planted) -> np.ndarray:
    """Uniform random 64-bit hashes; near copies differ from their original in 1-6 bits."""
    hashes = rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)
    for original, copy in planted.near:
        bits = rng.choice(64, size=int(rng.integers(1, 7)), replace=False)
        hashes[copy] = hashes[original] ^ np.bitwise_or.reduce(np.left_shift(np.uint64(1), bits.astype(np.uint64)))
    hashes[planted.exact[:, 1]] = hashes[planted.exact[:, 0]]
    return hashes


def make_vectors(rng: np.random.Generator, n: int, dim: int, planted: Planted) -> np.ndarray:
    """200 clusters of varying spread (in-cluster cosine about 0.80-0.87, far below the
    semantic threshold); semantic copies are their original plus a small perturbation."""
    centres = rng.normal(size=(200, dim)).astype(np.float32)
    spread = rng.uniform(0.4, 0.6, size=len(centres)).astype(np.float32)
    label = rng.integers(0, len(centres), size=n)
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 10_000):  # in chunks: no float64 copy of the whole matrix
        part = label[start : start + 10_000]
        noise = rng.standard_normal(size=(len(part), dim), dtype=np.float32)
        vectors[start : start + len(part)] = normalise(centres[part] + spread[part, None] * noise)
    originals, copies = planted.semantic[:, 0], planted.semantic[:, 1]
    # A perturbation of norm s gives cosine about 1 / sqrt(1 + s^2): 0.96-0.99 for s in 0.1-0.3.
    step = rng.standard_normal(size=(len(copies), dim), dtype=np.float32)
    step *= rng.uniform(0.1, 0.3, size=(len(copies), 1)).astype(np.float32) / np.linalg.norm(step, axis=1)[:, None]
    vectors[copies] = normalise(vectors[originals] + step)
    vectors[planted.exact[:, 1]] = vectors[planted.exact[:, 0]]
    return vectors


def make_images(rng: np.random.Generator, hashes: np.ndarray, planted: Planted) -> pd.DataFrame:
    """The payload columns DuplicateFinder reads."""
    n = len(hashes)
    sha = np.array([f"{i:064x}" for i in range(n)], dtype=object)
    sha[planted.exact[:, 1]] = sha[planted.exact[:, 0]]
    width = rng.integers(300, 4000, size=n)
    return pd.DataFrame(
        {
            "id": [f"img-{i:07d}" for i in range(n)],
            "sha256": sha,
            "pixel_sha256": sha,
            "phash": [f"{int(h):016x}" for h in hashes],
            "width": width,
            "height": (width * rng.uniform(0.5, 1.5, size=n)).astype(int),
            "bytes": rng.integers(20_000, 5_000_000, size=n),
            "created_ts": 1.7e9 + rng.uniform(0, 3e7, size=n),
            "filename": [f"IMG_{i:07d}.jpg" for i in range(n)],
        }
    )


def pair_recall(found: set[tuple[int, int]], planted: np.ndarray) -> float:
    hits = sum((min(a, b), max(a, b)) in found for a, b in planted)
    return hits / max(1, len(planted))


def cluster_recall(clusters: list[Cluster], ids: np.ndarray, planted: np.ndarray) -> float:
    """Fraction of planted pairs whose two images ended in the same cluster."""
    label = {member: cluster.id for cluster in clusters for member in cluster.members}
    hits = sum(label.get(ids[a], -1) == label.get(ids[b], -2) for a, b in planted)
    return hits / max(1, len(planted))


def time_near(hashes: np.ndarray, planted: Planted) -> Row:
    with timer() as t:
        a, b, _ = hamming_pairs(hashes, DEFAULT_NEAR_THRESHOLD)
    recall = pair_recall(set(zip(a.tolist(), b.tolist(), strict=True)), planted.near)
    result = f"{len(a):,} pairs; planted recall {recall:.1%}"
    return Row(f"near-duplicate pairs (hamming_pairs, <= {DEFAULT_NEAR_THRESHOLD} bits)", t[0], result, "<= 30 s")


def time_knn(vectors: np.ndarray, planted: Planted) -> Row:
    with timer() as t:
        indices, similarities = knn(vectors, K)
    originals, copies = planted.semantic[:, 0], planted.semantic[:, 1]
    close = similarities[originals] >= SEMANTIC_THRESHOLD
    recall = float(((indices[originals] == copies[:, None]) & close).any(axis=1).mean())
    result = f"planted copy in top-{K} at >= {SEMANTIC_THRESHOLD}: {recall:.1%}"
    return Row(f"k-NN graph (knn, k={K}, exact inner product)", t[0], result, "<= 180 s")


def time_find(collection: Collection, planted: Planted, levels: tuple[str, ...] = LEVELS) -> Row:
    with timer() as t:
        clusters = DuplicateFinder(levels=levels).find(collection)
    ids = collection.images["id"].to_numpy()
    recalls = ", ".join(
        f"{level} {cluster_recall(clusters, ids, pairs):.1%}"
        for level, pairs in (("exact", planted.exact), ("near", planted.near), ("semantic", planted.semantic))
        if level in levels
    )
    largest = max((len(c.members) for c in clusters), default=0)
    result = f"{len(clusters):,} clusters (largest {largest}); planted recall: {recalls}"
    return Row(f"DuplicateFinder.find ({' + '.join(levels)})", t[0], result)


def time_anomalies(vectors: np.ndarray) -> list[Row]:
    rows = []
    for name in ("knn", "lof", "iforest"):
        with timer() as t:
            scores = METHODS[name].scores(vectors, k=K)
        rows.append(Row(f"anomaly scores: METHODS[{name!r}] (k={K})", t[0], f"{len(scores):,} scores"))
    return rows


def print_table(rows: list[Row]) -> None:
    cells = [[r.stage, f"{r.seconds:.1f} s", r.target, f"{r.peak_mb:,.0f} MB", r.result] for r in rows]
    print(table(["stage", "time", "target", "peak RSS so far", "result"], cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=1000, help="planted near and semantic pairs (each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-anomalies", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    planted = plant_rows(rng, args.images, args.pairs)
    hashes = make_hashes(rng, args.images, planted)
    vectors = make_vectors(rng, args.images, args.dim, planted)
    collection = Collection("bench", make_images(rng, hashes, planted), vectors)
    print(
        f"{args.images:,} images, {args.dim}-d vectors; planted pairs: {len(planted.exact)} exact, "
        f"{len(planted.near)} near (1-6 bits), {len(planted.semantic)} semantic (cosine 0.96-0.99); "
        f"semantic threshold {SEMANTIC_THRESHOLD}"
    )
    print(f"peak RSS after generating the data: {peak_rss_mb():,.0f} MB\n")

    rows = [
        time_near(hashes, planted),
        time_knn(vectors, planted),
        time_find(collection, planted),
        time_find(collection, planted, levels=("exact", "near")),  # what find costs besides the k-NN graph
    ]
    if not args.skip_anomalies:
        rows += time_anomalies(vectors)
    print_table(rows)
    print(f"\npeak RSS: {peak_rss_mb():,.0f} MB (target <= 4,096 MB)")


if __name__ == "__main__":
    main()
