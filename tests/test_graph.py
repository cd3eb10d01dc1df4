"""core.graph: the shared neighbour graph is exact on small sets, meets the recall bound when
approximate, patches additions and deletions like a rebuild would, and is built once for every
consumer (duplicates, anomalies, explorer)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import encode, ingest_files, textured, tiny_services, unit_rows

from core import collection as collection_module
from core import graph as graph_module
from core.anomalies import anomaly_report
from core.cache import ResultCache
from core.collection import load_collection
from core.duplicates import duplicate_report
from core.explorer import ProjectionParams, explorer_data
from core.graph import TARGET_RECALL, GraphStore, build, recall_at, update
from core.neighbors import knn
from core.services import Services


def clustered(n: int, dim: int = 32, groups: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim))
    return unit_rows(centres[rng.integers(0, groups, n)] + 0.35 * rng.normal(size=(n, dim)))


@pytest.mark.parametrize(("n", "k"), [(1, 5), (4, 5), (300, 10), (800, 50)])
def test_small_graphs_equal_exact_search(n: int, k: int) -> None:
    vectors = unit_rows(np.random.default_rng(n).normal(size=(n, 24)))
    graph = build(vectors, k)
    expected_idx, expected_sim = knn(vectors, k)
    assert graph.exact and graph.k == k and len(graph) == n
    np.testing.assert_array_equal(graph.indices, expected_idx)
    np.testing.assert_allclose(graph.similarities, expected_sim, atol=1e-6)


def test_approximate_graph_meets_the_recall_bound() -> None:
    vectors = clustered(5000)
    graph = build(vectors, 20, exact_limit=1000)
    assert not graph.exact
    assert graph.recall is not None and graph.recall >= TARGET_RECALL
    sample = np.random.default_rng(1).choice(len(vectors), 500, replace=False)  # a fresh sample
    assert recall_at(graph, vectors, sample) >= TARGET_RECALL
    assert not (graph.indices == np.arange(len(vectors))[:, None]).any()


def changed_set(vectors: np.ndarray, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Delete 25 rows, re-embed 5, add 40: (new vectors, moved, added, survivors' old rows)."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    deleted = rng.choice(n, 25, replace=False)
    kept = np.setdiff1d(np.arange(n), deleted)
    reembedded = kept[rng.choice(len(kept), 5, replace=False)]
    fresh = clustered(45, vectors.shape[1], seed=seed + 1)
    new = vectors[kept].copy()
    positions = np.searchsorted(kept, reembedded)
    new[positions] = fresh[:5]
    new = np.vstack([new, fresh[5:]])
    moved = np.full(n, -1)
    moved[kept] = np.arange(len(kept))
    moved[reembedded] = -1
    added = np.concatenate([positions, np.arange(len(kept), len(new))])
    return new, moved, added, kept


def test_incremental_update_equals_a_rebuild_when_exact() -> None:
    vectors = clustered(1200)
    new, moved, added, _ = changed_set(vectors)
    patched = update(build(vectors, 15), new, moved, added)
    rebuilt = build(new, 15)
    np.testing.assert_allclose(patched.similarities, rebuilt.similarities, atol=1e-5)
    assert (patched.indices == rebuilt.indices).mean() > 0.999  # ties may swap places
    assert patched.version == 2 and patched.changed == 25 + 5 + 5 + 40


def test_incremental_update_keeps_the_recall_bound_when_approximate() -> None:
    vectors = clustered(4000)
    new, moved, added, _ = changed_set(vectors)
    patched = update(build(vectors, 20, exact_limit=1000), new, moved, added)
    assert not patched.exact
    sample = np.random.default_rng(2).choice(len(new), 500, replace=False)
    assert recall_at(patched, new, sample) >= TARGET_RECALL
    assert (patched.indices >= 0).all() and not (patched.indices == np.arange(len(new))[:, None]).any()


def test_store_patches_small_changes_and_rebuilds_past_the_fraction(tmp_path: Path, monkeypatch) -> None:
    builds: list[int] = []
    real = graph_module.build
    monkeypatch.setattr(
        graph_module, "build", lambda vectors, *a, **kw: builds.append(len(vectors)) or real(vectors, *a, **kw)
    )
    store = GraphStore(tmp_path, "images_x_32")
    vectors = clustered(500)
    ids = np.array([f"id-{i}" for i in range(500)])
    first = store.get("alice", ids, vectors, np.ones(500, np.int64), 1, "epoch")
    again = store.get("alice", ids, vectors, np.ones(500, np.int64), 1, "epoch")
    assert builds == [500] and again.version == first.version == 1
    np.testing.assert_array_equal(again.indices, first.indices)

    more = np.vstack([vectors, clustered(20, seed=9)])  # 4 % new: patched
    more_ids = np.concatenate([ids, [f"new-{i}" for i in range(20)]])
    stamps = np.concatenate([np.ones(500, np.int64), np.full(20, 2)])
    patched = store.get("alice", more_ids, more, stamps, 2, "epoch")
    assert builds == [500] and patched.version == 2 and len(patched) == 520
    np.testing.assert_array_equal(patched.indices, build(more, 50).indices)

    most = np.vstack([more, clustered(200, seed=10)])  # past 20 % changed: rebuilt
    most_ids = np.concatenate([more_ids, [f"late-{i}" for i in range(200)]])
    stamps = np.concatenate([stamps, np.full(200, 3)])
    rebuilt = store.get("alice", most_ids, most, stamps, 3, "epoch")
    assert builds == [500, 720] and rebuilt.version == 3 and rebuilt.changed == 0
    store.get("alice", most_ids, most, stamps, 3, "another epoch")  # the cache started over
    assert builds == [500, 720, 720]


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    with tiny_services(tmp_path / "data") as opened:
        ingest_files(opened, "alice", {f"photo-{i}.png": encode(textured(i), "PNG") for i in range(12)})
        yield opened


def test_every_consumer_reads_the_one_graph(services: Services, monkeypatch, tmp_path: Path) -> None:
    builds: list[int] = []
    real = graph_module.build

    def counting(vectors, *args, **kwargs):  # type: ignore[no-untyped-def]
        builds.append(len(vectors))
        return real(vectors, *args, **kwargs)

    for module in (graph_module, collection_module):
        monkeypatch.setattr(module, "build", counting)
    monkeypatch.setattr("core.anomalies.build", counting)
    cache = ResultCache(tmp_path / "results")
    duplicate_report(services, "alice")
    for method in ("knn", "lof"):
        anomaly_report(services, "alice", method=method, cache=cache)
    explorer_data(services, "alice", ProjectionParams(n_neighbors=5), cache, colour="duplicate cluster")
    assert builds == [12]
    assert load_collection(services, "alice").neighbours().version == 1
