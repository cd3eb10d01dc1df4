"""core.vectors: the on-disk vector cache follows the embedded index through every kind of write,
and is rebuilt (never trusted) after a crash between the index write and the cache write."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import unit_rows

from core import vectors
from core.index import ImageRecord, image_id, open_index, vector_cache_root
from core.index.base import Change
from core.index.edge import EdgeIndex
from core.settings import Settings, load_settings
from core.vectors import VectorCache, cache_of

ROOT = Path(__file__).resolve().parents[1]
DIM = 16
ALICE, BOB = "alice", "bob"


def records(user: str, first: int, count: int, seed: int = 0) -> list[ImageRecord]:
    vectors = unit_rows(np.random.default_rng(seed + first).normal(size=(count, DIM)))
    return [
        ImageRecord(
            id=image_id(user, f"{i:064x}"),
            payload={"user": user, "filename": f"{i}.png", "tags": [], "quality": {"entropy": float(i)}},
            vector=vectors[i - first],
        )
        for i in range(first, first + count)
    ]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(data_dir=tmp_path, model="tiny:random", device="cpu")


@pytest.fixture
def index(settings: Settings) -> Iterator[EdgeIndex]:
    opened = open_index(settings, "tiny:random", DIM)
    try:
        yield opened
    finally:
        opened.close()


def cache(index, settings: Settings) -> VectorCache:
    return cache_of(index, vector_cache_root(settings))


def assert_matches_index(index, settings: Settings, user: str) -> None:
    """The cache holds exactly the index's points of ``user``: ids, vectors and payloads."""
    snapshot = cache(index, settings).load(user)
    truth = {r.id: r for r in index.scroll(user, with_vectors=True)}
    assert sorted(snapshot.ids) == sorted(truth)
    for row, image in enumerate(snapshot.ids):
        np.testing.assert_array_equal(snapshot.vectors[row], truth[image].vector)
        payload = {k: v for k, v in snapshot.rows.iloc[row].items() if k != "id"}
        assert {k: v for k, v in payload.items() if k in truth[image].payload} == truth[image].payload


def test_cache_follows_upsert_delete_payload_and_reembed(index, settings: Settings) -> None:
    index.upsert(records(ALICE, 0, 20) + records(BOB, 0, 5))
    assert_matches_index(index, settings, ALICE)
    first = cache(index, settings).load(ALICE)

    index.upsert(records(ALICE, 20, 7))
    index.delete(ALICE, [r.id for r in records(ALICE, 0, 3)])
    index.set_payload(ALICE, [records(ALICE, 5, 1)[0].id], {"tags": ["cats"], "anomaly_review": "normal"})
    reembedded = records(ALICE, 10, 1, seed=99)  # same id, a new vector
    index.upsert(reembedded)
    assert_matches_index(index, settings, ALICE)
    assert_matches_index(index, settings, BOB)

    later = cache(index, settings).load(ALICE)
    assert later.epoch == first.epoch and later.seq > first.seq
    stamps = dict(zip(later.ids, later.stamps, strict=True))
    assert stamps[reembedded[0].id] > first.seq  # new vector: a new stamp for the graph
    assert stamps[records(ALICE, 5, 1)[0].id] <= first.seq  # payload only: the vector did not change
    assert not list((vector_cache_root(settings) / index.collection / ALICE / "log").glob("*.pkl"))  # folded


def test_a_few_payload_changes_are_read_from_their_logs_until_enough_pile_up(
    index, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    index.upsert(records(ALICE, 0, 20))
    cache(index, settings).load(ALICE)
    folder = vector_cache_root(settings) / index.collection / ALICE
    base = (folder / "current").read_text()
    ids = [r.id for r in records(ALICE, 0, 20)]
    index.set_payload(ALICE, ids[:2], {"anomaly_review": "normal"})
    index.set_payload(ALICE, ids[2:3], {"tags": ["cats"], "filename": "renamed.png"})
    assert_matches_index(index, settings, ALICE)
    assert (folder / "current").read_text() == base  # two reviews: no rewrite of the whole base
    assert len(list((folder / "log").glob("*.pkl"))) == 2
    from_logs = cache(index, settings).load(ALICE)

    monkeypatch.setattr(vectors, "_FOLD_AFTER_LOGS", 2)
    folded = cache(index, settings).load(ALICE)
    assert (folder / "current").read_text() != base
    assert not list((folder / "log").glob("*.pkl"))
    assert folded.seq == from_logs.seq
    pd.testing.assert_frame_equal(from_logs.rows, folded.rows)  # values and column types as read from disk


def test_a_batch_of_payloads_is_one_logged_change(index, settings: Settings) -> None:
    index.upsert(records(ALICE, 0, 10))
    cache(index, settings).load(ALICE)
    ids = [r.id for r in records(ALICE, 0, 10)]
    index.set_payloads(ALICE, {image: {"quality": {"entropy": 0.5 + n}} for n, image in enumerate(ids[:6])})
    folder = vector_cache_root(settings) / index.collection / ALICE
    assert len(list((folder / "log").glob("*.pkl"))) == 1
    assert_matches_index(index, settings, ALICE)


def test_changing_the_rows_a_read_returned_leaves_the_next_read_intact(index, settings: Settings) -> None:
    index.upsert(records(ALICE, 0, 5))
    index.set_payload(ALICE, [records(ALICE, 0, 1)[0].id], {"anomaly_review": "normal"})  # a pending change
    for _ in range(2):  # the first read keeps what it parsed, the second is served from it
        returned = cache(index, settings).load(ALICE)
        returned.rows["filename"] = "changed.png"
        returned.rows.loc[0, "anomaly_review"] = "confirmed"
        assert_matches_index(index, settings, ALICE)


def test_a_write_that_bypassed_the_cache_is_caught_by_the_count(index, settings: Settings) -> None:
    index.upsert(records(ALICE, 0, 10))
    cache(index, settings).load(ALICE)
    index.close()
    bare = EdgeIndex(settings.data_dir / "index", index.collection, DIM)  # no cache attached
    try:
        bare.upsert(records(ALICE, 10, 2))
        assert len(VectorCache(vector_cache_root(settings), bare.collection, DIM, bare).load(ALICE)) == 12
    finally:
        bare.close()


def test_a_failed_index_write_leaves_the_cache_to_be_rebuilt(index, settings: Settings) -> None:
    index.upsert(records(ALICE, 0, 4))
    cache(index, settings).load(ALICE)
    bad = records(ALICE, 4, 1)
    bad[0].vector = np.ones(DIM + 1, np.float32)  # refused by the index
    with pytest.raises(Exception, match="shape"):
        index.upsert(bad)
    assert (vector_cache_root(settings) / index.collection / ALICE / "dirty").exists()
    assert_matches_index(index, settings, ALICE)
    assert not (vector_cache_root(settings) / index.collection / ALICE / "dirty").exists()


KILLED_WRITER = """
import os, signal, sys
import numpy as np
from core.index import open_index
from core.settings import load_settings
from core.vectors import VectorCache

settings = load_settings(data_dir=sys.argv[1], model="tiny:random", device="cpu")
index = open_index(settings, "tiny:random", {dim})
ids = [r.id for r in index.scroll("alice")][:2]
VectorCache._log = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # dies after the index write
index.set_payload("alice", ids, {{"tags": ["written-then-killed"]}})
"""


def test_kill_9_between_index_write_and_cache_write_rebuilds(index, settings: Settings) -> None:
    index.upsert(records(ALICE, 0, 6))
    before = cache(index, settings).load(ALICE)
    assert all(tags == [] for tags in before.rows["tags"])
    index.close()

    script = textwrap.dedent(KILLED_WRITER.format(dim=DIM))
    result = subprocess.run([sys.executable, "-c", script, str(settings.data_dir)], cwd=ROOT, timeout=120)
    assert result.returncode == -9

    reopened = open_index(settings, "tiny:random", DIM)
    try:
        assert (vector_cache_root(settings) / reopened.collection / ALICE / "dirty").exists()
        tagged = {r.id for r in reopened.scroll(ALICE) if r.payload.get("tags") == ["written-then-killed"]}
        assert len(tagged) == 2  # the index has the write the cache never logged
        after = cache(reopened, settings).load(ALICE)
        assert {i for i, tags in zip(after.ids, after.rows["tags"], strict=True) if tags} == tagged
        assert_matches_index(reopened, settings, ALICE)
    finally:
        reopened.close()


def test_vectors_are_memory_mapped_and_rows_line_up(index, settings: Settings) -> None:
    index.upsert(records(ALICE, 0, 30))
    snapshot = cache(index, settings).load(ALICE)
    assert isinstance(snapshot.vectors, np.memmap) and snapshot.vectors.dtype == np.float32
    assert snapshot.vectors.shape == (30, DIM) == (len(snapshot.rows), DIM) == (len(snapshot.stamps), DIM)
    assert cache(index, settings).load("nobody").vectors.shape == (0, DIM)


def test_cache_without_an_index_serves_what_was_written(tmp_path: Path) -> None:
    store = VectorCache(tmp_path, "images_x_16", DIM)
    rows = records(ALICE, 0, 5)
    store.write(
        ALICE, [r.id for r in rows], np.vstack([r.vector for r in rows]), pd.DataFrame([r.payload for r in rows])
    )
    more = records(ALICE, 5, 2)
    store.record([Change("upsert", ALICE, tuple(r.id for r in more), tuple(more))])
    snapshot = store.load(ALICE)
    assert list(snapshot.ids) == [r.id for r in rows + more]
    np.testing.assert_array_equal(snapshot.vectors[5:], np.vstack([r.vector for r in more]))


def test_images_added_to_an_empty_collection_keep_their_integer_columns(index, settings: Settings) -> None:
    """A new user's cache is read while empty (the app's sidebar does), then uploads fold in: the
    widths stay integers (an empty base once turned them into floats: "450.0×313.0" on the cards)."""
    assert len(cache(index, settings).load(ALICE)) == 0
    added = records(ALICE, 0, 3)
    for number, record in enumerate(added):
        record.payload.update(width=400 + number, height=300)
    index.upsert(added)
    rows = cache(index, settings).load(ALICE).rows
    assert rows["width"].dtype.kind == "i" and sorted(rows["width"]) == [400, 401, 402]
