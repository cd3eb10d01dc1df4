"""core.index: the embedded index (qdrant-edge) and the Qdrant-client index pass the same tests.

Every read and write is scoped to a user: another user's ids behave as if they did not exist.
"""

from __future__ import annotations

import os
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from core.index import (
    ImageRecord,
    IndexLocked,
    VectorIndex,
    VectorIndexError,
    collection_name,
    image_id,
    open_index,
)
from core.index.edge import EdgeIndex
from core.index.server import ServerIndex
from core.settings import load_settings

DIM = 8  # the `index` fixture in conftest.py makes 8-d collections


def unit(seed: int, dim: int = DIM) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def make_records(user: str, count: int, start: int = 0) -> list[ImageRecord]:
    return [
        ImageRecord(
            image_id(user, f"sha-{i}"), {"user": user, "n": i, "tags": []}, unit(zlib.crc32(f"{user}/{i}".encode()))
        )
        for i in range(start, start + count)
    ]


@pytest.fixture
def filled(index: VectorIndex) -> tuple[VectorIndex, list[ImageRecord], list[ImageRecord]]:
    """An index with 4 points of alice and 3 of bob."""
    alice, bob = make_records("alice", 4), make_records("bob", 3)
    index.upsert(alice + bob)
    return index, alice, bob


# --- ids and names ------------------------------------------------------------------------------


def test_image_id_is_deterministic_per_user_and_content() -> None:
    sha = "ab" * 32
    assert image_id("alice", sha) == image_id("alice", sha)
    assert image_id("alice", sha) != image_id("bob", sha)
    assert image_id("alice", sha) != image_id("alice", "cd" * 32)
    assert len(image_id("alice", sha)) == 36  # a UUID string, as Qdrant point ids need


def test_collection_name_carries_the_model() -> None:
    assert collection_name("tiny:random", 64) == "images_tiny-random_64"
    clip = collection_name("ViT-B-32:openai", 512)
    assert clip.startswith("images_vit-b-32")
    assert "openai" in clip
    assert clip.endswith("_512")
    assert collection_name("ViT-B-32:openai", 512) != collection_name("ViT-B-16:openai", 512)


# --- both backends ------------------------------------------------------------------------------


def test_upsert_retrieve_count(filled) -> None:
    index, alice, _ = filled
    assert index.count() == 7
    assert index.count("alice") == 4
    assert index.count("bob") == 3
    assert index.count("nobody") == 0
    assert index.counts_by_user() == {"alice": 4, "bob": 3}
    got = index.retrieve("alice", [alice[0].id, alice[2].id], with_vectors=True)
    assert {r.id for r in got} == {alice[0].id, alice[2].id}
    by_id = {r.id: r for r in got}
    np.testing.assert_allclose(by_id[alice[0].id].vector, alice[0].vector, atol=1e-5)
    assert by_id[alice[0].id].payload == alice[0].payload
    assert by_id[alice[0].id].user == "alice"
    assert index.retrieve("alice", [alice[0].id])[0].vector is None
    assert index.retrieve("alice", []) == []


def test_upsert_replaces_a_point(filled) -> None:
    index, alice, _ = filled
    replacement = ImageRecord(alice[0].id, {"user": "alice", "n": 99}, unit(1234))
    index.upsert([replacement])
    assert index.count("alice") == 4
    [got] = index.retrieve("alice", [alice[0].id], with_vectors=True)
    assert got.payload == {"user": "alice", "n": 99}
    np.testing.assert_allclose(got.vector, replacement.vector, atol=1e-5)


def test_search_ranks_by_cosine_similarity(filled) -> None:
    index, alice, _ = filled
    hits = index.search("alice", alice[1].vector, limit=10)
    assert hits[0].id == alice[1].id
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert {h.id for h in hits} == {r.id for r in alice}  # only alice's points
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    expected = {r.id: float(r.vector @ alice[1].vector) for r in alice}
    for hit in hits:
        assert hit.score == pytest.approx(expected[hit.id], abs=1e-4)
        assert hit.payload["user"] == "alice"
    assert len(index.search("alice", alice[1].vector, limit=2)) == 2


def test_search_with_min_score_and_exclude_ids(filled) -> None:
    index, alice, _ = filled
    query = alice[0].vector
    hits = index.search("alice", query, limit=10, min_score=0.999)
    assert [h.id for h in hits] == [alice[0].id]
    hits = index.search("alice", query, limit=10, exclude_ids=[alice[0].id])
    assert alice[0].id not in {h.id for h in hits}
    assert len(hits) == 3
    threshold = sorted(float(r.vector @ query) for r in alice)[1]  # keeps the 3 best
    hits = index.search("alice", query, limit=10, min_score=threshold - 1e-4, exclude_ids=[alice[0].id])
    assert len(hits) == 2
    assert all(h.score >= threshold - 1e-3 for h in hits)


def test_search_among_some_ids_returns_the_best_of_those_only(filled) -> None:
    """A dataset/split/label filter restricts the search inside the index, not after the top hits."""
    index, alice, bob = filled
    query = alice[0].vector
    allowed = [alice[2].id, alice[3].id, bob[0].id]  # bob's id is never alice's result
    hits = index.search("alice", query, limit=1, only_ids=allowed)
    best = max(alice[2:4], key=lambda r: float(r.vector @ query))
    assert [h.id for h in hits] == [best.id]
    assert {h.id for h in index.search("alice", query, limit=10, only_ids=allowed)} == {alice[2].id, alice[3].id}
    assert index.search("alice", query, limit=10, only_ids=[]) == []


def test_scroll_returns_every_point_of_the_user_in_pages(filled) -> None:
    index, alice, bob = filled
    more = make_records("alice", 5, start=4)
    index.upsert(more)
    records = list(index.scroll("alice", with_vectors=True, batch=3))
    assert sorted(r.id for r in records) == sorted(r.id for r in alice + more)
    assert all(r.vector is not None and r.vector.shape == (DIM,) for r in records)
    assert sorted(r.id for r in index.scroll("bob")) == sorted(r.id for r in bob)
    assert list(index.scroll("nobody")) == []


def test_user_ids_lists_every_point_of_the_user_only(filled) -> None:
    index, alice, bob = filled
    more = make_records("alice", 5, start=4)
    index.upsert(more)
    assert sorted(index.user_ids("alice")) == sorted(r.id for r in alice + more)
    assert sorted(index.user_ids("bob")) == sorted(r.id for r in bob)
    assert list(index.user_ids("nobody")) == []


def test_set_payload_merges_values(filled) -> None:
    index, alice, _ = filled
    index.set_payload("alice", [alice[0].id, alice[1].id], {"tags": ["cat"], "reviewed": True})
    first, second, third = (index.retrieve("alice", [r.id])[0].payload for r in alice[:3])
    assert first == {"user": "alice", "n": 0, "tags": ["cat"], "reviewed": True}
    assert second["tags"] == ["cat"]
    assert third == alice[2].payload


def test_set_payloads_merges_each_images_own_values_for_the_user_only(filled) -> None:
    index, alice, bob = filled
    index.set_payloads(
        "alice", {alice[0].id: {"tags": ["cat"]}, alice[1].id: {"tags": ["dog"], "n": 9}, bob[0].id: {"tags": ["x"]}}
    )
    first, second, third = (index.retrieve("alice", [r.id])[0].payload for r in alice[:3])
    assert first == {"user": "alice", "n": 0, "tags": ["cat"]}
    assert second == {"user": "alice", "n": 9, "tags": ["dog"]}
    assert third == alice[2].payload
    assert index.retrieve("bob", [bob[0].id])[0].payload == bob[0].payload  # not alice's to change
    with pytest.raises(VectorIndexError, match="owner"):
        index.set_payloads("alice", {alice[0].id: {"user": "bob"}})
    index.set_payloads("alice", {})  # nothing to write


def test_the_owner_cannot_be_changed(filled) -> None:
    index, alice, _ = filled
    with pytest.raises(VectorIndexError, match="owner"):
        index.set_payload("alice", [alice[0].id], {"user": "bob"})
    assert index.retrieve("alice", [alice[0].id])[0].user == "alice"


def test_delete(filled) -> None:
    index, alice, _ = filled
    index.delete("alice", [alice[0].id, alice[1].id])
    assert index.count("alice") == 2
    assert index.retrieve("alice", [alice[0].id]) == []
    assert index.count("bob") == 3
    index.delete("alice", [])
    index.delete("alice", [alice[0].id])  # already gone: fine
    assert index.count() == 5


def test_existing_ids(filled) -> None:
    index, alice, bob = filled
    unknown = image_id("alice", "never-stored")
    assert index.existing_ids("alice", [alice[0].id, unknown, bob[0].id]) == {alice[0].id}
    assert index.existing_ids("alice", []) == set()


def test_users_never_see_each_others_points(filled) -> None:
    index, alice, bob = filled
    alice_ids = [r.id for r in alice]
    # bob knows alice's ids, but every call behaves as if they did not exist
    assert index.retrieve("bob", alice_ids) == []
    assert index.existing_ids("bob", alice_ids) == set()
    hits = index.search("bob", alice[0].vector, limit=100)
    assert {h.id for h in hits} == {r.id for r in bob}
    assert {r.id for r in index.scroll("bob")} == {r.id for r in bob}
    index.set_payload("bob", alice_ids, {"tags": ["hacked"]})
    index.delete("bob", alice_ids)
    assert index.count("alice") == 4
    for record in index.retrieve("alice", alice_ids):
        assert record.payload["tags"] == []


@pytest.mark.parametrize("user", ["", "../alice", "a b"])
def test_calls_with_an_invalid_user_raise(index: VectorIndex, user: str) -> None:
    index.upsert(make_records("alice", 2))
    with pytest.raises(ValueError):
        index.retrieve(user, [image_id("alice", "sha-0")])
    with pytest.raises(ValueError):
        index.search(user, unit(0))
    with pytest.raises(ValueError):
        list(index.scroll(user))
    with pytest.raises(ValueError):
        index.upsert([ImageRecord(image_id("x", "y"), {"user": user}, unit(0))])


@pytest.mark.parametrize(
    "index",
    [
        "edge",
        pytest.param("server"),
    ],
    indirect=True,
)
def test_count_with_an_empty_user_name_raises(index: VectorIndex) -> None:
    index.upsert(make_records("alice", 2))
    with pytest.raises(ValueError):
        index.count("")


def test_upsert_checks_the_vector_size(index: VectorIndex) -> None:
    with pytest.raises(VectorIndexError, match="shape"):
        index.upsert([ImageRecord(image_id("alice", "x"), {"user": "alice"}, unit(0, DIM + 1))])
    assert index.count() == 0


def test_describe(index: VectorIndex) -> None:
    assert index.collection in index.describe()


# --- the embedded index -------------------------------------------------------------------------


def test_edge_index_keeps_its_data_when_reopened(tmp_path: Path) -> None:
    root = tmp_path / "index"
    first = EdgeIndex(root, "c_8", DIM)
    records = make_records("alice", 3)
    first.upsert(records)
    first.set_payload("alice", [records[0].id], {"tags": ["kept"]})
    first.close()
    second = EdgeIndex(root, "c_8", DIM)
    try:
        assert second.count("alice") == 3
        assert second.retrieve("alice", [records[0].id])[0].payload["tags"] == ["kept"]
        hits = second.search("alice", records[2].vector, limit=1)
        assert hits[0].id == records[2].id
    finally:
        second.close()


def test_edge_index_writes_restore_the_switch_interval_even_when_side_by_side(tmp_path: Path) -> None:
    """Points are converted with quick GIL handoffs (``_prompt_gil_handoffs``); the process's
    switch interval is back to what it was once every writer is done, and nothing is lost."""
    index = EdgeIndex(tmp_path / "index", "c_8", DIM)
    before = sys.getswitchinterval()
    try:
        users = ["alice", "bob", "carol", "dave"]
        with ThreadPoolExecutor(len(users)) as writers:
            for done in [writers.submit(index.upsert, make_records(user, 40)) for user in users]:
                done.result()
        index.set_payload("alice", [make_records("alice", 1)[0].id], {"tags": ["seen"]})
        assert sys.getswitchinterval() == before
        assert [index.count(user) for user in users] == [40] * 4
        with pytest.raises(ValueError, match="UUID"):  # a conversion that fails restores it too
            index.upsert([ImageRecord("not-an-id", {"user": "alice"}, unit(1))])
        assert sys.getswitchinterval() == before
    finally:
        index.close()


def test_edge_index_is_locked_while_open(tmp_path: Path) -> None:
    root = tmp_path / "index"
    first = EdgeIndex(root, "c_8", DIM)
    try:
        with pytest.raises(IndexLocked) as excinfo:
            EdgeIndex(root, "other_collection_8", DIM)  # the lock covers the whole root
        assert f"process {os.getpid()}" in str(excinfo.value)
        assert "VAD_QDRANT_URL" in str(excinfo.value)
        first.upsert(make_records("alice", 1))  # the holder is unaffected
        assert first.count() == 1
    finally:
        first.close()
    EdgeIndex(root, "c_8", DIM).close()  # free again once closed


def test_edge_index_dimension_mismatch_on_reopen(tmp_path: Path) -> None:
    root = tmp_path / "index"
    index = EdgeIndex(root, "c", DIM)
    index.upsert(make_records("alice", 2))
    index.close()
    with pytest.raises(VectorIndexError):
        EdgeIndex(root, "c", DIM * 2)
    reopened = EdgeIndex(root, "c", DIM)  # the failed open released the lock and changed nothing
    try:
        assert reopened.count() == 2
    finally:
        reopened.close()


def test_server_index_dimension_mismatch() -> None:
    index = ServerIndex(":memory:", "c", DIM)
    try:
        # `:memory:` lives as long as its client, so check the existing collection on the same client
        index.dimension = DIM * 2
        with pytest.raises(VectorIndexError, match=f"{DIM}-d"):
            index._ensure_collection()
    finally:
        index.close()


def test_open_index_follows_the_settings(tmp_path: Path) -> None:
    embedded = open_index(load_settings(env={"VAD_DATA_DIR": str(tmp_path)}), "tiny:random", 64)
    try:
        assert isinstance(embedded, EdgeIndex)
        assert embedded.collection == "images_tiny-random_64"
        assert embedded.path == tmp_path / "index" / "images_tiny-random_64"
    finally:
        embedded.close()
    server = open_index(load_settings(env={"VAD_QDRANT_URL": ":memory:"}), "tiny:random", 64)
    try:
        assert isinstance(server, ServerIndex)
        assert server.collection == "images_tiny-random_64"
        assert server.dimension == 64
    finally:
        server.close()
