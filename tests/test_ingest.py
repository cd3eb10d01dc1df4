"""core.ingest: the batch pipeline, its per-file results and the no-orphan rule under failures.

Real parts everywhere (LocalStore, EdgeIndex, the tiny random CLIP); failures are injected by
small subclasses/wrappers of those real parts that raise on one chosen call.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    S3Server,
    encode,
    jpeg,
    list_keys,
    pattern,
    png,
    png_claiming_size,
    truncated_jpeg,
    without_times,
    zip_bytes,
)
from PIL import Image

from core.embed import Embedder
from core.hashing import phash_hex, sha256_hex
from core.images import ImageLimits, decode
from core.index import ImageRecord, VectorIndex, VectorIndexError, collection_name, image_id
from core.index.edge import EdgeIndex
from core.index.server import ServerIndex
from core.ingest import Ingestor, IngestResult, StageProgress, delete_images
from core.prepare import PreparePool, default_workers
from core.services import open_services
from core.settings import SettingsError, load_settings
from core.sources import IngestItem, items_from_upload
from core.storage import LocalStore, ObjectStore, StorageError, image_key, thumbnail_key

USER = "alice"


def item(path: str, data: bytes) -> IngestItem:
    return IngestItem(path=path, read=lambda: data, size=len(data))


def items(files: dict[str, bytes]) -> list[IngestItem]:
    return [item(path, data) for path, data in files.items()]


def good_files(count: int, prefix: str = "img") -> dict[str, bytes]:
    return {f"{prefix}{i}.png": png(seed=100 + i) for i in range(count)}


def statuses(results: Sequence[IngestResult]) -> list[str]:
    return [r.status for r in results]


def id_of(data: bytes, user: str = USER) -> str:
    return image_id(user, sha256_hex(data))


def assert_no_orphans(
    store: ObjectStore, index: VectorIndex, files: dict[str, bytes], results: Sequence[IngestResult], user: str = USER
) -> None:
    """For every file, either its point and both its objects exist, or none of them does; and the
    results agree with what is stored."""
    points = {record.id: record for record in index.scroll(user)}
    keys = {k for k in list_keys(store) if k.split("/")[1:2] == [user]}
    referenced: set[str] = set()
    for record in points.values():
        pair = {record.payload["original_key"], record.payload["thumbnail_key"]}
        assert pair <= keys, f"point {record.id} lacks an object"
        referenced |= pair
    assert keys == referenced, f"objects without a point: {sorted(keys - referenced)}"
    for result in results:
        pid = id_of(files[result.path], user)
        if result.status in ("stored", "present"):
            assert result.image_id == pid
            assert pid in points, f"{result.path} is {result.status} but has no point"
        else:
            assert result.image_id is None
            assert pid not in points
            assert not any(pid in key for key in keys)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:  # overrides the parametrized conftest fixture: local disk only
    return LocalStore(tmp_path / "objects")


@pytest.fixture
def index(tmp_path: Path, tiny: Embedder):  # overrides the parametrized conftest fixture
    idx = EdgeIndex(tmp_path / "index", collection_name(tiny.name, tiny.dimension), tiny.dimension)
    yield idx
    idx.close()


@pytest.fixture
def ingestor(store: LocalStore, index: EdgeIndex, tiny: Embedder) -> Ingestor:
    return Ingestor(store, index, tiny, batch_size=2)


# --- the happy path -----------------------------------------------------------------------------


def test_stores_originals_thumbnails_and_points(ingestor: Ingestor, store: LocalStore, index: EdgeIndex, tiny) -> None:
    files = {
        "holiday/beach.png": png(seed=1, size=(300, 200)),
        "cat.jpg": jpeg(seed=2, size=(120, 90)),
        "renamed.jpg": png(seed=3, size=(64, 64)),  # content decides the type
        "big.webp": encode(pattern(4, (800, 400)), "WEBP"),
        "anim.gif": encode(pattern(5, (40, 30)), "GIF"),
    }
    before = datetime.now().astimezone()
    results = ingestor.ingest(items(files), USER)
    assert [r.path for r in results] == list(files)
    assert statuses(results) == ["stored"] * len(files)
    assert all(r.reason is None for r in results)
    assert index.count(USER) == len(files)

    formats = {
        "holiday/beach.png": "PNG",
        "cat.jpg": "JPEG",
        "renamed.jpg": "PNG",
        "big.webp": "WEBP",
        "anim.gif": "GIF",
    }
    records = {r.id: r for r in index.retrieve(USER, [r.image_id for r in results], with_vectors=True)}
    for result in results:
        data = files[result.path]
        decoded = decode(data)
        record = records[result.image_id]
        payload = record.payload
        assert result.image_id == id_of(data)
        assert payload["user"] == USER
        assert payload["filename"] == Path(result.path).name
        assert payload["sha256"] == sha256_hex(data)
        assert payload["phash"] == phash_hex(decoded.image)
        assert (payload["width"], payload["height"]) == Image.open(io.BytesIO(data)).size
        assert payload["bytes"] == len(data)
        assert payload["format"] == formats[result.path]
        assert payload["tags"] == []
        assert datetime.fromisoformat(payload["created_at"]) >= before.replace(microsecond=0)
        assert payload["original_key"] == image_key(USER, result.image_id, decoded.extension)
        assert payload["thumbnail_key"] == thumbnail_key(USER, result.image_id)
        assert store.get(payload["original_key"]) == data
        thumb = Image.open(io.BytesIO(store.get(payload["thumbnail_key"])))
        assert thumb.format == "JPEG"
        assert max(thumb.size) == min(256, max(decoded.image.size))
        # the vector is this file's embedding (batches are not mixed up)
        np.testing.assert_allclose(record.vector, tiny.embed_images([decoded.image])[0], atol=1e-4)
    assert records[id_of(files["renamed.jpg"])].payload["original_key"].endswith(".png")
    assert_no_orphans(store, index, files, results)


def test_ingesting_twice_stores_nothing_new(ingestor: Ingestor, store: LocalStore, index: EdgeIndex) -> None:
    files = good_files(3)
    first = ingestor.ingest(items(files), USER)
    assert statuses(first) == ["stored"] * 3
    snapshot = {p: p.stat().st_mtime_ns for p in store.root.rglob("*") if p.is_file()}
    second = ingestor.ingest(items(files), USER)
    assert statuses(second) == ["present"] * 3
    assert [r.image_id for r in second] == [r.image_id for r in first]
    assert all("already" in (r.reason or "") for r in second)
    assert {p: p.stat().st_mtime_ns for p in store.root.rglob("*") if p.is_file()} == snapshot
    assert index.count() == 3


@pytest.mark.parametrize("batch_size", [1, 8])
def test_the_same_file_twice_in_one_call(store: LocalStore, index: EdgeIndex, tiny: Embedder, batch_size: int) -> None:
    data = png(seed=9)
    files = {"a.png": data, "other.png": png(seed=10), "copy-of-a.png": data}
    results = Ingestor(store, index, tiny, batch_size=batch_size).ingest(items(files), USER)
    assert statuses(results) == ["stored", "stored", "present"]
    assert "a.png" in (results[2].reason or "")
    assert results[2].image_id == results[0].image_id
    assert index.count() == 2
    assert len(list_keys(store)) == 4


def test_bad_files_are_rejected_with_reasons(store: LocalStore, index: EdgeIndex, tiny: Embedder) -> None:
    files = {
        "good1.png": png(seed=1),
        "notes.png": b"just some text, not a picture\n",
        "broken.jpg": truncated_jpeg(),
        "empty.jpg": b"",
        "bomb.png": png_claiming_size(40_000, 40_000),
        "good2.jpg": jpeg(seed=2),
        "huge-file.png": png(seed=3, size=(400, 300)),
        "good3.png": png(seed=4),
    }
    limits = ImageLimits(max_bytes=len(files["huge-file.png"]) - 1)
    assert all(len(d) <= limits.max_bytes for p, d in files.items() if p != "huge-file.png")
    results = Ingestor(store, index, tiny, limits=limits, batch_size=3).ingest(items(files), USER)
    assert [r.path for r in results] == list(files)
    by_path = {r.path: r for r in results}
    for good in ("good1.png", "good2.jpg", "good3.png"):
        assert by_path[good].status == "stored"
    reasons = {
        "notes.png": "not an image",
        "broken.jpg": "truncated",
        "empty.jpg": "empty",
        "bomb.png": "decompression bomb",
        "huge-file.png": "over the",
    }
    for path, expected in reasons.items():
        assert by_path[path].status == "rejected"
        assert expected in by_path[path].reason
    assert index.count() == 3
    assert_no_orphans(store, index, files, results)


class SlowStore(LocalStore):
    """A local store whose every put takes 50 ms, as an S3 round trip does; counts puts in flight."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.in_flight = self.most_in_flight = 0
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(0.05)
            super().put(key, data, content_type)
        finally:
            with self._lock:
                self.in_flight -= 1


def test_a_batch_writes_its_files_side_by_side(tmp_path: Path, index: EdgeIndex, tiny: Embedder) -> None:
    store = SlowStore(tmp_path / "slow")
    files = good_files(16)
    results = Ingestor(store, index, tiny, batch_size=16).ingest(items(files), USER)
    assert statuses(results) == ["stored"] * 16
    assert store.most_in_flight > 1  # one after the other, 32 puts would take 1.6 s
    assert_no_orphans(store, index, files, results)


def test_unreadable_items_are_rejected(ingestor: Ingestor, index: EdgeIndex) -> None:
    [corrupt_zip] = items_from_upload("upload.zip", b"this is no zip")
    results = ingestor.ingest([corrupt_zip, item("ok.png", png(seed=1))], USER)
    assert statuses(results) == ["rejected", "stored"]
    assert "could not read" in results[0].reason
    assert "zip" in results[0].reason


def test_zip_upload_is_ingested(ingestor: Ingestor, index: EdgeIndex) -> None:
    archive = zip_bytes({"a.png": png(seed=1), "__MACOSX/a.png": b"junk", "sub/b.jpg": jpeg(seed=2)})
    results = ingestor.ingest(list(items_from_upload("photos.zip", archive)), USER)
    assert [(r.path, r.status, r.reason) for r in results] == [
        ("photos.zip/__MACOSX/a.png", "skipped", "macOS metadata (__MACOSX)"),
        ("photos.zip/a.png", "stored", None),
        ("photos.zip/sub/b.jpg", "stored", None),
    ]
    filenames = sorted(r.payload["filename"] for r in index.scroll(USER))
    assert filenames == ["a.png", "b.jpg"]


def test_known_sizes_are_checked_before_reading(ingestor: Ingestor) -> None:
    def must_not_be_read() -> bytes:
        raise AssertionError("an oversized file was read")

    huge = IngestItem(path="huge.png", read=must_not_be_read, size=10**12)
    empty = IngestItem(path="empty.png", read=must_not_be_read, size=0)
    results = ingestor.ingest([huge, empty], USER)
    assert statuses(results) == ["rejected", "rejected"]
    assert "over the" in results[0].reason
    assert "empty" in results[1].reason


def mixed_files() -> dict[str, bytes]:
    """Eleven files, every third one not an image, and a copy of the first one at the end."""
    files: dict[str, bytes] = {}
    for i in range(11):
        files[f"f{i:02d}.png"] = b"not an image %d" % i if i % 3 == 1 else png(seed=200 + i)
    files["f11.png"] = files["f00.png"]  # duplicate of the first, in a later batch
    return files


@pytest.mark.parametrize("workers", ["inline", "processes"])
def test_results_come_back_in_input_order(
    store: LocalStore, index: EdgeIndex, tiny: Embedder, prepare_pool: PreparePool, workers: str
) -> None:
    files = mixed_files()
    pool = prepare_pool if workers == "processes" else None
    results = Ingestor(store, index, tiny, batch_size=3, pool=pool).ingest(items(files), USER)
    assert [r.path for r in results] == list(files)
    expected = ["rejected" if i % 3 == 1 else "stored" for i in range(11)] + ["present"]
    assert statuses(results) == expected
    assert all("not an image" in r.reason for r in results if r.status == "rejected")
    assert_no_orphans(store, index, files, results)


def test_a_batch_is_stored_while_the_next_one_is_embedded(
    store: LocalStore, index: EdgeIndex, tiny: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store and the model overlap: the first batch's writes wait for the second batch's
    embedding to start (serial stages would make them wait the whole 20 s), and every result
    still comes back stored, in order."""
    embeddings = 0
    second_started = threading.Event()
    waited: list[bool] = []
    embed = tiny.embed_pixels

    def counting(pixels):
        nonlocal embeddings
        embeddings += 1
        if embeddings == 2:
            second_started.set()
        return embed(pixels)

    put = store.put

    def waiting(key, data, content_type):
        if not waited:
            waited.append(second_started.wait(20))
        return put(key, data, content_type)

    monkeypatch.setattr(tiny, "embed_pixels", counting)
    monkeypatch.setattr(store, "put", waiting)
    files = good_files(6)
    results = Ingestor(store, index, tiny, batch_size=2, store_threads=1).ingest(items(files), USER)
    assert waited == [True]
    assert statuses(results) == ["stored"] * 6
    assert [r.path for r in results] == list(files)
    assert_no_orphans(store, index, files, results)


def test_worker_processes_give_the_same_points_as_inline_work(
    tmp_path: Path, tiny: Embedder, prepare_pool: PreparePool
) -> None:
    files = {**mixed_files(), "big.jpg": jpeg(seed=7, size=(900, 600)), "anim.gif": encode(pattern(5, (40, 30)), "GIF")}
    points = []
    for name, pool in (("inline", None), ("processes", prepare_pool)):
        index = EdgeIndex(tmp_path / name / "index", collection_name(tiny.name, tiny.dimension), tiny.dimension)
        try:
            Ingestor(LocalStore(tmp_path / name / "objects"), index, tiny, batch_size=4, pool=pool).ingest(
                items(files), USER
            )
            points.append({r.id: r for r in index.scroll(USER, with_vectors=True)})
        finally:
            index.close()
    inline, processes = points
    assert inline.keys() == processes.keys() and len(inline) == 9
    for point_id, record in inline.items():
        other = processes[point_id]
        assert without_times(record.payload) == without_times(other.payload)
        np.testing.assert_allclose(record.vector, other.vector, atol=1e-6)


def test_stage_progress_counts_every_file(store: LocalStore, index: EdgeIndex, tiny: Embedder, prepare_pool) -> None:
    seen: list[StageProgress] = []
    files = mixed_files()
    Ingestor(store, index, tiny, batch_size=3, pool=prepare_pool).ingest(items(files), USER, stages=seen.append)
    assert seen[-1] == StageProgress(total=12, read=12, prepared=12, done=12)
    for earlier, later in pairwise(seen):
        assert earlier.read <= later.read and earlier.prepared <= later.prepared and earlier.done <= later.done
    assert all(s.prepared <= s.read <= s.total and s.done <= s.total for s in seen)


def test_progress_reports_every_file(ingestor: Ingestor) -> None:
    calls: list[tuple[int, int]] = []
    files = {**good_files(4), "bad.png": b"text"}
    ingestor.ingest(items(files), USER, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (5, 5)
    assert all(total == 5 for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_invalid_user_is_refused(ingestor: Ingestor, store: LocalStore) -> None:
    with pytest.raises(ValueError, match="invalid user name"):
        ingestor.ingest(items(good_files(1)), "../bob")
    assert list_keys(store) == set()


def test_users_have_separate_collections(ingestor: Ingestor, store: LocalStore, index: EdgeIndex) -> None:
    files = good_files(2)
    alice = ingestor.ingest(items(files), "alice")
    bob = ingestor.ingest(items(files), "bob")  # the same files are new for bob
    assert statuses(alice) == statuses(bob) == ["stored", "stored"]
    assert {r.image_id for r in alice}.isdisjoint(r.image_id for r in bob)
    assert index.counts_by_user() == {"alice": 2, "bob": 2}
    assert {k.split("/")[1] for k in list_keys(store)} == {"alice", "bob"}
    assert_no_orphans(store, index, files, alice, "alice")
    assert_no_orphans(store, index, files, bob, "bob")


def test_delete_images(ingestor: Ingestor, store: LocalStore, index: EdgeIndex) -> None:
    files = good_files(3)
    alice = ingestor.ingest(items(files), "alice")
    bob = ingestor.ingest(items(files), "bob")
    alice_ids = [r.image_id for r in alice]

    # bob cannot delete alice's images, even knowing their ids
    assert delete_images(store, index, "bob", alice_ids) == 0
    assert index.count("alice") == 3
    assert len(list_keys(store)) == 12

    assert delete_images(store, index, "alice", [alice_ids[0], alice_ids[1], id_of(b"unknown")]) == 2
    assert index.count("alice") == 1
    remaining = {k for k in list_keys(store) if k.split("/")[1] == "alice"}
    assert remaining == {
        image_key("alice", alice_ids[2], "png"),
        thumbnail_key("alice", alice_ids[2]),
    }
    assert index.count("bob") == 3
    assert_no_orphans(store, index, files, bob, "bob")
    assert delete_images(store, index, "alice", []) == 0


# --- the no-orphan rule under injected failures -------------------------------------------------


class FlakyStore(LocalStore):
    """A real LocalStore whose put() fails for chosen keys."""

    def __init__(self, root: Path, fail_keys: set[str]) -> None:
        super().__init__(root)
        self.fail_keys = fail_keys

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        if key in self.fail_keys:
            raise StorageError(f"injected failure writing {key}")
        super().put(key, data, content_type)


class FlakyEmbedder(Embedder):
    """The tiny model, failing on chosen calls of embed_images (1 = first call)."""

    def __init__(self, inner: Embedder, fail_calls: set[int]) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.fail_calls = fail_calls
        self.calls = 0

    def embed_images(self, images):
        self.calls += 1
        if self.calls in self.fail_calls:
            raise RuntimeError("injected embedding failure")
        return self.inner.embed_images(images)


class FlakyIndex(EdgeIndex):
    """A real EdgeIndex whose upsert() fails for any batch holding a chosen id; with
    ``write_first`` the points are written before the error (as after a timeout)."""

    def __init__(self, root: Path, collection: str, dimension: int, fail_ids=(), write_first: bool = False) -> None:
        super().__init__(root, collection, dimension)
        self.fail_ids = set(fail_ids)
        self.write_first = write_first

    def upsert(self, records: Sequence[ImageRecord]) -> None:
        if any(r.id in self.fail_ids for r in records):
            if self.write_first:
                super().upsert(records)
            raise VectorIndexError("injected upsert failure")
        super().upsert(records)


@pytest.fixture
def flaky_parts(tmp_path: Path, tiny: Embedder):
    def make(fail_keys=(), fail_calls=(), fail_ids=(), write_first=False):
        store = FlakyStore(tmp_path / "objects", set(fail_keys))
        collection = collection_name(tiny.name, tiny.dimension)
        index = FlakyIndex(tmp_path / "index", collection, tiny.dimension, fail_ids, write_first)
        opened.append(index)
        return store, index, FlakyEmbedder(tiny, set(fail_calls))

    opened: list[FlakyIndex] = []
    yield make
    for index in opened:
        index.close()


# six PNGs, ingested in batches of 2: [f0 f1] [f2 f3] [f4 f5]
FILES = {f"f{i}.png": png(seed=300 + i) for i in range(6)}
IDS = {path: id_of(data) for path, data in FILES.items()}

FAILURES = {
    "thumbnail put fails": (dict(fail_keys={thumbnail_key(USER, IDS["f1.png"])}), {"f1.png": "could not store"}),
    "original put fails": (dict(fail_keys={image_key(USER, IDS["f3.png"], "png")}), {"f3.png": "could not store"}),
    "embedding of batch 2 fails": (dict(fail_calls={2}), {"f2.png": "embedding failed", "f3.png": "embedding failed"}),
    "upsert fails": (dict(fail_ids={IDS["f4.png"]}), {"f4.png": "index write failed"}),
    "upsert writes, then fails": (dict(fail_ids={IDS["f0.png"]}, write_first=True), {"f0.png": "index write failed"}),
    "everything at once": (
        dict(
            fail_keys={thumbnail_key(USER, IDS["f1.png"])},
            fail_calls={2},
            fail_ids={IDS["f4.png"], IDS["f5.png"]},
        ),
        {
            "f1.png": "could not store",
            "f2.png": "embedding failed",
            "f3.png": "embedding failed",
            "f4.png": "index write failed",
            "f5.png": "index write failed",
        },
    ),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_no_orphans_when_a_step_fails(flaky_parts, tiny: Embedder, case: str) -> None:
    injected, expected_rejections = FAILURES[case]
    store, index, embedder = flaky_parts(**injected)
    results = Ingestor(store, index, embedder, batch_size=2).ingest(items(FILES), USER)

    assert [r.path for r in results] == list(FILES)
    for result in results:
        if result.path in expected_rejections:
            assert result.status == "rejected", result
            assert expected_rejections[result.path] in result.reason
            assert "injected" in result.reason
        else:
            assert result.status == "stored", result
    assert index.count(USER) == len(FILES) - len(expected_rejections)
    assert_no_orphans(store, index, FILES, results)

    # once the parts work again, the rejected files go in and the others are present
    store.fail_keys.clear()
    index.fail_ids.clear()
    embedder.fail_calls.clear()
    again = Ingestor(store, index, embedder, batch_size=2).ingest(items(FILES), USER)
    assert statuses(again) == ["stored" if p in expected_rejections else "present" for p in FILES]
    assert index.count(USER) == len(FILES)
    assert_no_orphans(store, index, FILES, again)


def test_a_copy_of_a_rejected_file_is_not_reported_present(flaky_parts) -> None:
    files = {"notes.png": b"plain text", "copy-of-notes.png": b"plain text", "good.png": png(seed=1)}
    store, index, embedder = flaky_parts()
    results = Ingestor(store, index, embedder).ingest(items(files), USER)
    assert statuses(results) == ["rejected", "rejected", "stored"]
    assert_no_orphans(store, index, files, results)


def test_a_copy_of_a_file_that_failed_to_store_is_not_reported_present(flaky_parts) -> None:
    data = png(seed=5)
    files = {"a.png": data, "copy-of-a.png": data}
    store, index, embedder = flaky_parts(fail_keys={thumbnail_key(USER, id_of(data))})
    results = Ingestor(store, index, embedder).ingest(items(files), USER)
    assert results[0].status == "rejected"
    assert_no_orphans(store, index, files, results)


def test_index_unavailable_rejects_without_storing(tmp_path: Path, tiny: Embedder) -> None:
    index = EdgeIndex(tmp_path / "index", "c", tiny.dimension)
    index.close()  # every call now fails
    store = LocalStore(tmp_path / "objects")
    results = Ingestor(store, index, tiny).ingest(items(good_files(2)), USER)
    assert statuses(results) == ["rejected", "rejected"]
    assert all("index unavailable" in r.reason for r in results)
    assert list_keys(store) == set()


# --- other backends -----------------------------------------------------------------------------


@pytest.mark.s3
def test_end_to_end_on_s3_and_qdrant_client(s3_server: S3Server, tiny: Embedder) -> None:
    store = s3_server.store()
    index = ServerIndex(":memory:", collection_name(tiny.name, tiny.dimension), tiny.dimension)
    try:
        files = {**good_files(3), "bad.png": b"text", "copy.png": png(seed=100)}
        ingestor = Ingestor(store, index, tiny, batch_size=2)
        results = ingestor.ingest(items(files), USER)
        assert statuses(results) == ["stored", "stored", "stored", "rejected", "present"]
        assert_no_orphans(store, index, files, results)
        record = index.retrieve(USER, [results[1].image_id])[0]
        assert store.get(record.payload["original_key"]) == files["img1.png"]
        assert Image.open(io.BytesIO(store.get(record.payload["thumbnail_key"]))).format == "JPEG"

        assert statuses(ingestor.ingest(items(good_files(3)), USER)) == ["present"] * 3
        assert delete_images(store, index, USER, [results[0].image_id]) == 1
        assert index.count(USER) == 2
        assert len(list_keys(store)) == 4
        assert_no_orphans(store, index, files, results[1:3])
    finally:
        index.close()


def test_services_wire_the_parts_from_settings(tmp_path: Path) -> None:
    services = open_services(load_settings(env={"VAD_DATA_DIR": str(tmp_path), "VAD_MODEL": "tiny:random"}))
    try:
        assert services.embedder.name == "tiny:random"
        assert isinstance(services.store, LocalStore)
        assert isinstance(services.index, EdgeIndex)
        assert services.index.path == tmp_path / "index" / "images_tiny-random_64"
        assert services.limits == ImageLimits(max_pixels=100_000_000, max_bytes=64 * 2**20)
        results = services.ingestor().ingest(items(good_files(2)), USER)
        assert statuses(results) == ["stored", "stored"]
        assert services.index.counts_by_user() == {USER: 2}
        assert len(list(tmp_path.joinpath("objects").rglob("*.jpg"))) == 2  # the thumbnails
    finally:
        services.close()


def test_services_size_the_pipeline_from_settings(tmp_path: Path) -> None:
    env = {"VAD_DATA_DIR": str(tmp_path), "VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu"}
    defaults = open_services(load_settings(env={**env, "VAD_BATCH_SIZE": "", "VAD_INGEST_WORKERS": ""}))
    try:
        assert defaults.embedder.precision == "fp32"
        assert defaults.batch_size == 32  # a CPU's batch
        assert defaults.prepare_pool.workers == default_workers()
        assert defaults.ingestor().pool is defaults.prepare_pool
    finally:
        defaults.close()
    tuned = {**env, "VAD_BATCH_SIZE": "8", "VAD_INGEST_WORKERS": "3", "VAD_PRECISION": "BF16"}
    services = open_services(load_settings(env=tuned))
    try:
        assert (services.batch_size, services.ingestor().batch_size) == (8, 8)
        assert services.prepare_pool.workers == 3
        assert services.embedder.precision == "bf16"
    finally:
        services.close()
    with pytest.raises(SettingsError, match="VAD_PRECISION"):
        load_settings(env={"VAD_PRECISION": "fp64"})
    with pytest.raises(SettingsError, match="VAD_INGEST_WORKERS"):
        load_settings(env={"VAD_INGEST_WORKERS": "0"})
