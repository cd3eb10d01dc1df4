"""Analyses at a million images (issue 12): vector cache, shared neighbour graph, duplicates,
anomalies, explorer and an incremental upload, on synthetic data.

    python -m bench.scale [--images 1000000] [--dim 512] [--pairs 1000] [--upload 1000]

Synthetic 512-d unit vectors in 200 clusters with planted exact, near (pHash 1-6 bits) and
semantic (cosine 0.96-0.99) duplicate pairs (bench/duplicates_scale.py's generator), plus planted
outliers: single images in random directions and one loose group of 50 similar outliers (pairwise
cosine about 0.4, below the clusters' 0.7-0.8). The collection goes through the real path: written
to the vector cache (core.vectors), read back memory-mapped, one neighbour graph (core.graph, k=50:
exact up to 50k images, an IVF list join above) shared by the duplicate finder, the k-NN anomaly score and the
explorer; then 1,000 new images are logged to the cache as an upload would, and the graph is
patched. Targets (issue 12) at 1M: graph <= 20 min with recall@10 >= 0.95 on 2,000 sampled
queries, duplicates <= 2 min, anomaly scores <= 1 min, explorer 2D <= 10 min, the upload's graph
update <= 60 s, peak RSS <= 8 GB; at 100k: graph + duplicates + anomalies <= 90 s and a second
visit from the caches <= 2 s. ``--only-explorer``: the graph, then the explorer's map of every
image (UMAP on a stratified sample, the rest placed from the graph).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from bench.common import peak_rss_mb, timer
from bench.duplicates_scale import (
    Planted,
    Row,
    cluster_recall,
    make_hashes,
    make_images,
    make_vectors,
    plant_rows,
    print_table,
)
from core.anomalies import detect_anomalies
from core.cache import ResultCache
from core.collection import Collection, from_snapshot
from core.duplicates import DuplicateFinder
from core.embed import normalise
from core.explorer import DEFAULT_DRAW_POINTS, ProjectionParams, projection_frame
from core.graph import GRAPH_K, GraphStore, recall_at
from core.index.base import Change, ImageRecord
from core.vectors import VectorCache

USER = "bench"
COLLECTION = "images_bench_512"
SEMANTIC_THRESHOLD = 0.93


def plant_outliers(
    rng: np.random.Generator, vectors: np.ndarray, planted: Planted, singles: int, group: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows (not in any planted pair) turned into single outliers and into one loose group."""
    taken = np.concatenate([planted.exact.ravel(), planted.near.ravel(), planted.semantic.ravel()])
    free = np.setdiff1d(np.arange(len(vectors)), taken)
    rows = rng.choice(free, size=singles + group, replace=False)
    single_rows, group_rows = rows[:singles], rows[singles:]
    dim = vectors.shape[1]
    vectors[single_rows] = normalise(rng.standard_normal(size=(singles, dim), dtype=np.float32))
    centre = rng.standard_normal(size=dim, dtype=np.float32) / np.sqrt(dim)
    spread = rng.standard_normal(size=(group, dim), dtype=np.float32) * np.float32(1.2 / np.sqrt(dim))
    vectors[group_rows] = normalise(centre + spread)  # pairwise cosine about 1 / (1 + 1.2^2) = 0.41
    return single_rows, group_rows


def load(cache: VectorCache, graphs: GraphStore) -> Collection:
    return from_snapshot(USER, cache.load(USER), graphs)


def time_load(cache: VectorCache, graphs: GraphStore) -> tuple[Row, Collection]:
    with timer() as t:
        collection = load(cache, graphs)
    return Row(
        "load the collection from the vector cache (memory-mapped)", t[0], f"{len(collection):,} images"
    ), collection


def time_graph(collection: Collection, queries: int, seed: int) -> list[Row]:
    with timer() as t:
        graph = collection.neighbours(GRAPH_K)
    how = "exact (flat)" if graph.exact else f"IVF list join, recall@10 {graph.recall:.3f} on its tuning sample"
    rows = [Row(f"neighbour graph, k={GRAPH_K} ({how})", t[0], f"{len(graph):,} lists", "<= 20 min at 1M")]
    sample = np.sort(np.random.default_rng(seed + 1).choice(len(collection), min(queries, len(collection)), False))
    with timer() as t:
        recall = recall_at(graph, collection.vectors, sample)
    result = f"recall@10 {recall:.4f} on {len(sample):,} sampled queries vs exact search"
    rows.append(Row("recall check (exact search of the sample)", t[0], result, ">= 0.95"))
    return rows


def time_duplicates(collection: Collection, planted: Planted) -> Row:
    with timer() as t:
        clusters = DuplicateFinder(semantic_threshold=SEMANTIC_THRESHOLD).find(collection)
    ids = collection.images["id"].to_numpy()
    recalls = ", ".join(
        f"{level} {cluster_recall(clusters, ids, pairs):.1%}"
        for level, pairs in (("exact", planted.exact), ("near", planted.near), ("semantic", planted.semantic))
    )
    return Row(
        "duplicates (all three levels, reads the graph)",
        t[0],
        f"{len(clusters):,} clusters; found: {recalls}",
        "<= 2 min",
    )


def time_anomalies(collection: Collection, outliers: np.ndarray) -> Row:
    with timer() as t:
        report = detect_anomalies(collection, "knn", 10, checks=True)
    rank = report.reset_index().set_index("id")["index"]  # 0 = most anomalous
    ids = collection.images["id"].to_numpy()
    worst = int(rank.loc[ids[outliers]].max())
    share = (worst + 1) / len(report)
    result = f"every planted outlier ranks in the top {share:.3%} (last at {worst + 1:,})"
    return Row("anomaly scores (k-NN distance, k=10, quality checks)", t[0], result, "<= 1 min; top 1 %")


def time_explorer(collection: Collection) -> Row:
    """The Explorer's 2D map of every image: UMAP fitted on a stratified sample, the rest placed
    from the (already built) shared graph; the page then draws its point budget of them."""
    params = ProjectionParams(dims=2)
    with timer() as t:
        frame = projection_frame(collection, params)
    fitted = int(frame["fitted"].sum())
    placed = len(frame) - fitted
    finite = bool(np.isfinite(frame[["x", "y"]].to_numpy()).all())
    result = (
        f"{fitted:,} fitted by UMAP + {placed:,} placed from the graph = {len(frame):,} positions"
        f"{'' if finite else ' (SOME NOT FINITE)'}; drawn: {min(len(frame), DEFAULT_DRAW_POINTS):,}"
    )
    return Row("explorer 2D (PCA-50, k-means strata, UMAP on the sample, place the rest)", t[0], result, "<= 10 min")


def time_upload(cache: VectorCache, graphs: GraphStore, before: int, count: int, dim: int, seed: int) -> Row:
    rng = np.random.default_rng(seed + 2)
    vectors = normalise(rng.standard_normal(size=(count, dim), dtype=np.float32))
    hashes = rng.integers(0, np.iinfo(np.uint64).max, size=count, dtype=np.uint64, endpoint=True)
    records = tuple(
        ImageRecord(f"upload-{i:05d}", {"user": USER, "filename": f"new_{i}.jpg", "phash": f"{h:016x}"}, vectors[i])
        for i, h in enumerate(hashes)
    )
    cache.record([Change("upsert", USER, tuple(r.id for r in records), records)])  # what the index hook logs
    with timer() as t:
        collection = load(cache, graphs)
        graph = collection.neighbours(GRAPH_K)
    how = "patched" if graph.version == before + 1 and graph.changed else "rebuilt"
    result = f"graph v{graph.version} {how}: {len(graph):,} lists"
    return Row(f"upload of {count:,} images: fold the cache + update the graph", t[0], result, "<= 60 s")


def time_second_visit(root: Path, dim: int, results: ResultCache) -> Row:
    cache = VectorCache(root / "vectors", COLLECTION, dim)  # new objects: nothing held in memory
    graphs = GraphStore(root / "graph", COLLECTION)
    with timer() as t:
        collection = load(cache, graphs)
        collection.neighbours(GRAPH_K)
        key = {"fingerprint": "bench", "n": len(collection), "method": "knn"}
        results.get_or_compute("anomalies", USER, key, lambda: detect_anomalies(collection, "knn", 10))
    return Row("second visit: collection + graph + anomaly report from the caches", t[0], "", "<= 2 s at 100k")


def report(rows: list[Row], row: Row) -> None:
    """Keep ``row`` and print it at once (a long run shows its progress)."""
    rows.append(row)
    print(f"{row.stage}: {row.seconds:.1f} s, peak RSS {row.peak_mb:,.0f} MB; {row.result}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--pairs", type=int, default=1000, help="planted near and semantic pairs (each)")
    parser.add_argument("--outliers", type=int, default=20, help="planted single outliers")
    parser.add_argument("--group", type=int, default=50, help="size of the planted group of similar outliers")
    parser.add_argument("--upload", type=int, default=1000, help="images added after the first analyses")
    parser.add_argument("--queries", type=int, default=2000, help="sampled queries for the recall check")
    parser.add_argument("--skip-explorer", action="store_true")
    parser.add_argument(
        "--only-explorer", action="store_true", help="the graph, then the explorer (no duplicates, anomalies, upload)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="cache folder (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(format="%(message)s")
    logging.getLogger("core.explorer").setLevel(logging.INFO)  # the explorer's fit / place split

    root = args.workdir or Path(tempfile.mkdtemp(prefix="vad-scale-"))
    rng = np.random.default_rng(args.seed)
    planted = plant_rows(rng, args.images, args.pairs)
    hashes = make_hashes(rng, args.images, planted)
    vectors = make_vectors(rng, args.images, args.dim, planted)
    singles, group = plant_outliers(rng, vectors, planted, args.outliers, args.group)
    images = make_images(rng, hashes, planted)
    cache = VectorCache(root / "vectors", COLLECTION, args.dim)
    with timer() as t:
        cache.write(USER, images["id"].tolist(), vectors, images.drop(columns="id"))
    del vectors, images
    print(
        f"{args.images:,} images, {args.dim}-d vectors; planted pairs: {len(planted.exact)} exact, "
        f"{len(planted.near)} near, {len(planted.semantic)} semantic; outliers: {args.outliers} single + a "
        f"group of {args.group}; vector cache written in {t[0]:.1f} s under {root}",
        flush=True,
    )
    graphs = GraphStore(root / "graph", COLLECTION)
    rows: list[Row] = []
    row, collection = time_load(cache, graphs)
    report(rows, row)
    for row in time_graph(collection, args.queries, args.seed):
        report(rows, row)
    if args.only_explorer:
        report(rows, time_explorer(collection))
        print_table(rows)
        print(f"\npeak RSS: {peak_rss_mb():,.0f} MB (target <= 8,192 MB)")
        return
    report(rows, time_duplicates(collection, planted))
    report(rows, time_anomalies(collection, np.concatenate([singles, group])))
    together = rows[1].seconds + rows[3].seconds + rows[4].seconds
    report(rows, Row("graph + duplicates + anomalies", together, "", "<= 90 s at 100k"))
    results = ResultCache(root / "results")
    time_second_visit(root, args.dim, results)  # fills the anomaly result cache
    report(rows, time_second_visit(root, args.dim, results))
    if not args.skip_explorer:
        report(rows, time_explorer(collection))
    version = collection.neighbours().version
    del collection
    report(rows, time_upload(cache, graphs, version, args.upload, args.dim, args.seed))
    print_table(rows)
    print(f"\npeak RSS: {peak_rss_mb():,.0f} MB (target <= 8,192 MB)")


if __name__ == "__main__":
    main()
