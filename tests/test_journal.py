"""core.journal and the cleanup rules: intents, recovery, the orphan scan and repair, the breaker.

Real parts (LocalStore, EdgeIndex, the tiny model, the Ingestor); failures come from small
subclasses of the real store that fail chosen calls.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from helpers import list_keys, png
from PIL import Image
from qdrant_client import models
from test_ingest import USER, id_of, items

from core.embed import Embedder
from core.index import collection_name
from core.index.base import VECTOR_NAME
from core.index.edge import EdgeIndex
from core.index.server import ServerIndex
from core.ingest import Ingestor, delete_images
from core.journal import (
    Intent,
    IntentJournal,
    journal_files,
    read_open_intents,
    recover,
    repair_orphans,
    scan_orphans,
)
from core.storage import LocalStore, StorageError, StoreUnreachable, image_key, thumbnail_key
from core.storage.breaker import Breaker


class FailingDeletes(LocalStore):
    """A real LocalStore whose delete() fails ``failures`` times (-1: always) and whose put() fails for
    chosen keys."""

    def __init__(self, root: Path, failures: int = 0, fail_puts: frozenset[str] = frozenset()) -> None:
        super().__init__(root)
        self.failures = failures
        self.fail_puts = set(fail_puts)

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        if key in self.fail_puts:
            raise StorageError(f"injected failure writing {key}")
        super().put(key, data, content_type)

    def delete(self, key: str) -> None:
        if self.failures:
            self.failures -= 1
            raise StorageError(f"injected failure deleting {key}")
        super().delete(key)


@pytest.fixture
def index(tmp_path: Path, tiny: Embedder):
    idx = EdgeIndex(tmp_path / "index", collection_name(tiny.name, tiny.dimension), tiny.dimension)
    yield idx
    idx.close()


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    return tmp_path / "journal"


def keys_of(data: bytes) -> tuple[str, str]:
    return image_key(USER, id_of(data), "png"), thumbnail_key(USER, id_of(data))


# --- the journal file ---------------------------------------------------------------------------


def test_open_intents_are_those_without_done_and_a_torn_line_is_ignored(journal: Path) -> None:
    writer = IntentJournal(journal)
    writer.intend([Intent(USER, "a", ("k1", "k2")), Intent(USER, "b", ("k3", "k4"))])
    writer.done(["a"])
    with writer.path.open("a") as handle:
        handle.write('{"intent": {"user": "alice", "id": "c", "ke')  # killed mid-write
    assert read_open_intents(writer.path) == {"b": Intent(USER, "b", ("k3", "k4"))}
    assert journal_files(journal).live == [writer.path]  # its writer still holds it
    writer.close()
    assert journal_files(journal).stale == [writer.path]  # an open intent keeps the file


def test_a_journal_with_everything_done_is_removed_on_close(journal: Path) -> None:
    writer = IntentJournal(journal)
    writer.intend([Intent(USER, "a", ("k1", "k2"))])
    first_line = json.loads(writer.path.read_text().splitlines()[0])
    assert first_line == {"intent": {"user": USER, "id": "a", "keys": ["k1", "k2"]}}
    writer.done(["a"])
    writer.close()
    assert list(journal.iterdir()) == []


def test_objects_of_a_running_ingest_are_not_orphans(tmp_path: Path, index: EdgeIndex, journal: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    data = png(seed=1)
    original, thumb = keys_of(data)
    writer = IntentJournal(journal)
    writer.intend([Intent(USER, id_of(data), (original, thumb))])
    store.put(original, data)  # written, point not yet upserted
    assert scan_orphans(store, index, journal).clean
    writer.close()  # its writer is gone: now the object is an orphan, and recovery removes it
    assert scan_orphans(store, index, journal).orphan_keys == [original]
    settled = recover(journal, store, index)
    assert (settled.removed, settled.completed, settled.failed) == (1, 0, [])
    assert list_keys(store) == set()
    assert list(journal.iterdir()) == []


# --- recovery and repair ------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "encoding"), [(".jpg", "JPEG"), (".webp", "WEBP")])
def test_a_point_without_its_thumbnail_gets_it_back(
    tmp_path: Path, index: EdgeIndex, tiny, journal, suffix: str, encoding: str
) -> None:
    """Made again in its key's encoding: JPEG, or WebP for a point of an older collection."""
    store = LocalStore(tmp_path / "objects")
    data = png(seed=2)
    Ingestor(store, index, tiny, journal_dir=journal).ingest(items({"a.png": data}), USER)
    original, thumb = keys_of(data)
    store.delete(thumb)
    thumb = thumb.removesuffix(".jpg") + suffix
    index.set_payload(USER, [id_of(data)], {"thumbnail_key": thumb})
    scan = scan_orphans(store, index, journal)
    assert scan.broken_points == [(USER, id_of(data), (original, thumb))]
    fixed = repair_orphans(store, index, scan)
    assert (fixed.completed_points, fixed.removed_points, fixed.failed) == (1, 0, [])
    assert Image.open(io.BytesIO(store.get(thumb))).format == encoding
    assert scan_orphans(store, index, journal).clean


def test_a_point_whose_original_is_gone_is_removed(tmp_path: Path, index: EdgeIndex, tiny, journal) -> None:
    store = LocalStore(tmp_path / "objects")
    kept, lost = png(seed=3), png(seed=4)
    Ingestor(store, index, tiny, journal_dir=journal).ingest(items({"kept.png": kept, "lost.png": lost}), USER)
    store.delete(keys_of(lost)[0])
    fixed = repair_orphans(store, index, scan_orphans(store, index, journal))
    assert (fixed.completed_points, fixed.removed_points) == (0, 1)
    assert index.existing_ids(USER, [id_of(kept), id_of(lost)]) == {id_of(kept)}
    assert list_keys(store) == set(keys_of(kept))


def test_repair_of_one_user_leaves_the_others_alone(tmp_path: Path, index: EdgeIndex, journal: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    store.put("images/alice/stray.png", b"x")
    store.put("thumbnails/bob/stray.webp", b"x")
    scan = scan_orphans(store, index, journal, user="bob")
    assert scan.orphan_keys == ["thumbnails/bob/stray.webp"]
    assert repair_orphans(store, index, scan).removed_objects == 1
    assert list_keys(store) == {"images/alice/stray.png"}


# --- cleanup of a failed file -------------------------------------------------------------------


def test_cleanup_of_a_failed_file_tries_again(tmp_path: Path, index: EdgeIndex, tiny, journal) -> None:
    data = png(seed=5)
    thumb = keys_of(data)[1]
    store = FailingDeletes(tmp_path / "objects", failures=2, fail_puts=frozenset({thumb}))
    results = Ingestor(store, index, tiny, journal_dir=journal).ingest(items({"a.png": data}), USER)
    assert results[0].status == "rejected" and "could not store" in results[0].reason
    assert store.failures == 0  # both failed deletes were tried again
    assert list_keys(store) == set()
    assert list(journal.iterdir()) == []


def test_what_cleanup_cannot_remove_is_settled_by_the_next_ingest(tmp_path: Path, index: EdgeIndex, tiny, journal):
    data, other = png(seed=6), png(seed=7)
    original, thumb = keys_of(data)
    store = FailingDeletes(tmp_path / "objects", failures=-1, fail_puts=frozenset({thumb}))
    results = Ingestor(store, index, tiny, journal_dir=journal).ingest(items({"a.png": data}), USER)
    assert results[0].status == "rejected"
    assert list_keys(store) == {original}  # could not be removed: left in the journal
    stale = journal_files(journal).stale
    assert [read_open_intents(p) for p in stale] == [{id_of(data): Intent(USER, id_of(data), (original, thumb))}]

    store.failures = 0
    store.fail_puts.clear()
    again = Ingestor(store, index, tiny, journal_dir=journal).ingest(items({"b.png": other}), USER)
    assert again[0].status == "stored"
    assert list_keys(store) == set(keys_of(other))
    assert list(journal.iterdir()) == []


def test_deleting_images_removes_the_points_even_if_objects_stay(tmp_path: Path, index: EdgeIndex, tiny, journal):
    store = FailingDeletes(tmp_path / "objects")
    data = png(seed=8)
    Ingestor(store, index, tiny, journal_dir=journal).ingest(items({"a.png": data}), USER)
    store.failures = -1
    assert delete_images(store, index, USER, [id_of(data)]) == 1
    assert index.count(USER) == 0
    scan = scan_orphans(store, index, journal)
    assert scan.orphan_keys == sorted(keys_of(data))
    store.failures = 0
    repair_orphans(store, index, scan)
    assert list_keys(store) == set()


class UnreachableDeletes(LocalStore):
    """A real LocalStore whose delete() gets no answer, as from a hung server; counts the calls."""

    deletes = 0

    def delete(self, key: str) -> None:
        self.deletes += 1
        raise StoreUnreachable(f"could not delete {key}: no answer")


def test_deleting_images_from_an_unreachable_store_waits_once(tmp_path: Path, index: EdgeIndex, tiny, journal):
    store = UnreachableDeletes(tmp_path / "objects")
    files = {f"{i}.png": png(seed=20 + i) for i in range(3)}
    results = Ingestor(store, index, tiny, journal_dir=journal).ingest(items(files), USER)
    assert delete_images(store, index, USER, [r.image_id for r in results]) == 3
    assert index.count(USER) == 0
    assert store.deletes == 1  # not 3 images x 2 objects x 3 tries of a timeout each
    assert len(scan_orphans(store, index, journal).orphan_keys) == 6  # for repair, once it answers


# --- the breaker --------------------------------------------------------------------------------


def test_breaker_opens_after_consecutive_unanswered_calls_or_the_deadline() -> None:
    now = [0.0]
    breaker = Breaker(threshold=3, deadline_s=20, clock=lambda: now[0])
    unreachable = StoreUnreachable("no answer")
    breaker.failure(unreachable)
    breaker.failure(unreachable)
    assert not breaker.open
    breaker.failure(StorageError("AccessDenied"))  # the store answered: the streak is over
    breaker.failure(unreachable)
    breaker.failure(unreachable)
    assert not breaker.open
    breaker.failure(unreachable)
    assert breaker.open and breaker.last_error is unreachable
    breaker.success()
    assert not breaker.open
    breaker.failure(unreachable)
    now[0] = 20.0  # one slow failure, then the deadline
    assert breaker.open


# --- objects are shared by every model's collection ----------------------------------------------


def test_objects_of_another_models_collection_are_never_removed(tmp_path: Path, tiny: Embedder, journal) -> None:
    data = png(seed=9)
    original, thumb = keys_of(data)
    store = FailingDeletes(tmp_path / "objects")
    root = tmp_path / "models"
    model_a = EdgeIndex(root, "images_a_64", tiny.dimension)
    Ingestor(store, model_a, tiny, journal_dir=journal).ingest(items({"x.png": data}), USER)
    model_a.close()

    model_b = EdgeIndex(root, "images_b_64", tiny.dimension)  # another model: its collection is empty
    try:
        assert scan_orphans(store, model_b, journal).clean
        store.fail_puts.add(thumb)  # the same file under model B fails: its cleanup keeps A's objects
        results = Ingestor(store, model_b, tiny, journal_dir=journal).ingest(items({"x.png": data}), USER)
        assert results[0].status == "rejected"
        assert list_keys(store) == {original, thumb}
        writer = IntentJournal(journal)  # and a killed ingest of it under model B is settled the same way
        writer.intend([Intent(USER, id_of(data), (original, thumb))])
        writer.close()
        assert recover(journal, store, model_b).removed == 0
        assert list_keys(store) == {original, thumb}
    finally:
        model_b.close()


def test_a_qdrant_server_index_finds_ids_in_its_other_collections() -> None:
    """The server code path, on qdrant-client's ``:memory:`` mode: model A's collection next to B's."""
    index = ServerIndex(":memory:", "images_b_8", 8)
    try:
        vectors = {VECTOR_NAME: models.VectorParams(size=8, distance=models.Distance.COSINE)}
        index.client.create_collection("images_a_8", vectors_config=vectors)
        points = [
            models.PointStruct(id=id_of(b"a"), vector={VECTOR_NAME: [1.0] * 8}, payload={"user": USER}),
            models.PointStruct(id=id_of(b"b", "bob"), vector={VECTOR_NAME: [1.0] * 8}, payload={"user": "bob"}),
        ]
        index.client.upsert("images_a_8", points=points)
        assert index.ids_in_other_collections(USER, [id_of(b"a"), id_of(b"b", "bob"), id_of(b"c")]) == {id_of(b"a")}
        assert index.ids_in_other_collections(USER, []) == set()
    finally:
        index.close()
