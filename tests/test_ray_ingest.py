"""``ingest --engine ray`` on a real Ray cluster: a head and a worker node as separate processes on
127.0.0.1, against the local engine on the same files.

The same folder (photos, a repeat, a zip, a file that is not an image) is ingested by both engines
into two data folders: the reports, exit codes, point ids, payloads, vectors and stored objects
must be the same.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import (
    RAY_DRIVER_ENV,
    S3Server,
    free_port,
    jpeg,
    list_keys,
    png,
    running_ray_cluster,
    tiny_services,
    without_times,
    zip_bytes,
)
from ray import cloudpickle

from core import ray_engine
from core.embed import CPU_BATCH_SIZE, GPU_BATCH_SIZE, load_embedder
from core.hashing import sha256_hex
from core.images import ImageLimits
from core.index import collection_name, image_id
from core.index.edge import EdgeIndex
from core.ingest import Tally
from core.journal import Intent, read_open_intents, recover
from core.prepare import PreparedImage, prepare_image
from core.ray_engine import (
    EmbedStage,
    NodeOutcome,
    NodeWriter,
    RayIngestor,
    RemoteJournal,
    connect,
    is_known,
    known_keys,
    read_and_prepare,
)
from core.records import occurrence_names
from core.s3_source import S3Access
from core.settings import Settings, load_settings
from core.sources import IngestItem, items_from_paths
from core.storage import LocalStore, StorageError, StoreUnreachable, open_store

ROOT = Path(__file__).resolve().parents[1]
USER = "alice"


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_ray_cluster(tmp_path_factory.mktemp("ray-logs")) as address:
        yield address


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for seed in range(16):
        (folder / f"photo-{seed:02d}.jpg").write_bytes(jpeg(seed))
    (folder / "copy-of-03.jpg").write_bytes(jpeg(3))
    (folder / "not-an-image.jpg").write_bytes(b"this is text, not a JPEG")
    (folder / "more.zip").write_bytes(zip_bytes({f"inner-{n}.png": png(100 + n) for n in range(4)}))
    return folder


def ingest(
    engine: str, photos: Path | str, data_dir: Path, ray_address: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    """The CLI's ingest of ``photos`` with ``engine``; ``settings``: more VAD_* variables."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VAD_")}
    environment.update(RAY_DRIVER_ENV)
    environment.update({"VAD_DATA_DIR": str(data_dir), "VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu"})
    environment.update({f"VAD_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run(
        [sys.executable, "-m", "core", "ingest", str(photos), "--user", USER, "--json", "--engine", engine],
        cwd=ROOT,
        env={**environment, "VAD_RAY_ADDRESS": ray_address},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def runs(photos: Path, ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """engine -> (completed CLI run, its data folder)."""
    found = {}
    for engine in ("local", "ray"):
        data_dir = tmp_path_factory.mktemp(f"data-{engine}")
        found[engine] = (ingest(engine, photos, data_dir, ray_address), data_dir)
    return found


def report(result: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_ray_engine_reports_what_the_local_engine_reports(runs: dict[str, tuple]) -> None:
    local, ray = runs["local"][0], runs["ray"][0]
    assert ray.returncode == local.returncode == 1, ray.stderr  # 1: the text file is rejected
    assert report(ray) == report(local)
    by_status = {entry["path"].rsplit("/", 1)[-1]: entry for entry in report(ray)}
    assert by_status["not-an-image.jpg"]["status"] == "rejected"
    assert by_status["not-an-image.jpg"]["reason"].startswith("not an image")
    assert by_status["photo-03.jpg"]["status"] == "present"  # "copy-of-03.jpg" comes first
    assert sum(entry["status"] == "stored" for entry in report(ray)) == 20  # 16 photos and 4 zip members
    summary = "22 files: 20 stored, 1 already present, 1 rejected"
    assert summary in ray.stderr and summary in local.stderr


def test_the_ray_engine_stores_the_same_points_and_objects(runs: dict[str, tuple]) -> None:
    stored = {}
    for engine, (_, data_dir) in runs.items():
        with tiny_services(data_dir) as services:
            points = {r.id: r for r in services.index.scroll(USER, with_vectors=True)}
            stored[engine] = points, list_keys(services.store)
    (local_points, local_keys), (ray_points, ray_keys) = stored["local"], stored["ray"]
    assert len(ray_points) == 20
    assert ray_points.keys() == local_points.keys()
    # the repeat is an occurrence of the same image, recorded by both engines
    names = sorted(occurrence_names(p.payload) for p in ray_points.values() if len(p.payload["occurrences"]) > 1)
    assert names == [["copy-of-03.jpg", "photo-03.jpg"]]
    for point_id, point in ray_points.items():
        expected = local_points[point_id]
        assert without_times(point.payload) == without_times(expected.payload)
        np.testing.assert_allclose(point.vector, expected.vector, atol=1e-5)
    # Every point's two objects and nothing else: no orphan.
    assert (
        ray_keys == local_keys == {p.payload[k] for p in ray_points.values() for k in ("original_key", "thumbnail_key")}
    )


def test_a_second_ray_ingest_finds_everything_present(runs: dict[str, tuple], photos: Path, ray_address: str) -> None:
    again = ingest("ray", photos, runs["ray"][1], ray_address)
    assert again.returncode == 1, again.stderr
    statuses = {entry["path"].rsplit("/", 1)[-1]: entry["status"] for entry in report(again)}
    assert statuses.pop("not-an-image.jpg") == "rejected"
    assert set(statuses.values()) == {"present"}


def test_a_ray_address_where_nothing_answers_is_a_usage_error(photos: Path, tmp_path: Path) -> None:
    result = ingest("ray", photos, tmp_path, f"127.0.0.1:{free_port()}")
    assert result.returncode == 2, result.stderr
    assert "error: could not join the Ray cluster: nothing answers at 127.0.0.1:" in result.stderr
    assert result.stdout == ""


@pytest.mark.s3
def test_the_ray_engine_reads_s3_inputs_on_the_nodes(
    s3_server: S3Server, ray_address: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Objects and a zip's members are read by the cluster's tasks through the S3 settings the
    items carry; both engines store into buckets of their own."""
    access = S3Access(f"http://{s3_server.endpoint}", s3_server.access_key, s3_server.secret_key)
    bucket = f"in-{uuid.uuid4().hex[:12]}"
    client = access.client()
    client.make_bucket(bucket)
    objects = {
        "photos/a.jpg": jpeg(seed=1),
        "photos/sub/b.png": png(seed=2),
        "photos/.hidden.jpg": jpeg(seed=3),
        "photos/pack.zip": zip_bytes({f"c{n}.png": png(seed=10 + n) for n in range(5)}),
        "photos/again.jpg": jpeg(seed=1),
    }
    for key, data in objects.items():
        client.put_object(bucket, key, io.BytesIO(data), len(data))
    runs, folders = {}, {}
    for engine in ("local", "ray"):
        folders[engine] = tmp_path_factory.mktemp(f"s3-{engine}")
        runs[engine] = ingest(
            engine,
            f"s3://{bucket}/photos/",
            folders[engine],
            ray_address,
            **store_of(access, f"store-{engine}-{bucket}"),
        )
    assert runs["ray"].returncode == runs["local"].returncode == 0, runs["ray"].stderr
    assert report(runs["ray"]) == report(runs["local"])
    statuses = {entry["path"].removeprefix(f"s3://{bucket}/photos/"): entry["status"] for entry in report(runs["ray"])}
    assert statuses == {
        ".hidden.jpg": "skipped",
        "a.jpg": "stored",
        "again.jpg": "present",
        **{f"pack.zip/c{n}.png": "stored" for n in range(5)},
        "sub/b.png": "stored",
    }
    # The nodes wrote the Ray engine's objects (an S3 store): the same objects, each a point's, and
    # every intent settled.
    stored = {}
    for engine, folder in folders.items():
        with tiny_services(folder, **store_of(access, f"store-{engine}-{bucket}")) as services:
            points = list(services.index.scroll(USER))
            stored[engine] = list_keys(services.store)
            assert stored[engine] == {p.payload[k] for p in points for k in ("original_key", "thumbnail_key")}
        assert not list(folder.joinpath("journal").glob("*.jsonl"))
    assert stored["ray"] == stored["local"] and len(stored["ray"]) == 14


@pytest.fixture
def s3_driver(s3_server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings of a driver in this process that stores into a fresh bucket; its input folder
    ``tmp_path / "in"`` is made, empty."""
    for name, value in RAY_DRIVER_ENV.items():
        monkeypatch.setenv(name, value)
    access = S3Access(f"http://{s3_server.endpoint}", s3_server.access_key, s3_server.secret_key)
    (tmp_path / "in").mkdir()
    bucket = f"driver-{uuid.uuid4().hex[:12]}"
    return load_settings(data_dir=tmp_path, model="tiny:random", device="cpu", **store_of(access, bucket))


def store_of(access: S3Access, bucket: str) -> dict[str, str]:
    return {
        "s3_endpoint": access.endpoint,
        "s3_access_key": access.access_key,
        "s3_secret_key": access.secret_key,
        "s3_bucket": bucket,
    }


@pytest.mark.s3
def test_the_nodes_store_new_files_under_intents_and_keep_their_bytes(
    s3_driver: Settings, ray_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stage 1 with a writer, as a task runs it: a new file's intent is in the driver's journal
    (kept by an actor on the driver's node) before its objects are written, and its bytes do not
    travel on; what the driver then does not keep, ``recover`` removes."""
    monkeypatch.setattr(ray_engine, "_yield_to_the_model", lambda: None)  # keep this process's priority
    settings = s3_driver
    (tmp_path / "in" / "had.png").write_bytes(png(seed=2))
    (tmp_path / "in" / "new.png").write_bytes(png(seed=1))
    batch = {
        "position": np.arange(2),
        "item": np.array([cloudpickle.dumps(i) for i in items_from_paths([tmp_path / "in"])], dtype=object),
    }
    known = known_keys(iter([image_id(USER, sha256_hex(png(seed=2)))]))
    transform = load_embedder("tiny:random", device="cpu").image_transform()
    with connect(settings, ray_address):
        journal = RemoteJournal(tmp_path / "journal")
        prepared = read_and_prepare(batch, USER, ImageLimits(), transform, known, NodeWriter(settings, journal.actor))
        journal.close()
    had, new = (pickle.loads(blob) for blob in prepared["outcome"])
    assert (had.data, had.keys) == (None, ())  # the user has it: nothing written
    assert new.data is None and new.store_error is None and new.size == len(png(seed=1))
    assert isinstance(new.prepared, PreparedImage) and new.prepared.thumbnail == b""
    point = image_id(USER, sha256_hex(png(seed=1)))
    assert new.keys == (f"images/{USER}/{point}.png", f"thumbnails/{USER}/{point}.jpg")
    store = open_store(settings)
    assert store.get(new.keys[0]) == png(seed=1)
    assert store.get(new.keys[1])[:3] == b"\xff\xd8\xff"  # a JPEG thumbnail
    (journal_file,) = (tmp_path / "journal").glob("*.jsonl")
    assert list(read_open_intents(journal_file).values()) == [Intent(USER, point, new.keys)]
    # No point was upserted for it (as when the driver rejects a file the node stored): removed.
    index = EdgeIndex(tmp_path / "index", "test_8", 8)
    try:
        settled = recover(tmp_path / "journal", store, index)
    finally:
        index.close()
    assert (settled.removed, settled.completed, settled.failed) == (1, 0, [])
    assert list_keys(store) == set()
    assert not journal_file.exists()


@pytest.mark.s3
def test_a_ray_ingest_into_s3_never_sends_a_file_to_the_driver(
    s3_driver: Settings, ray_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an S3 store the tasks write every object; the driver writes none, and what it keeps
    is whole: each object a point's, no intent left open (a repeat included)."""
    settings = s3_driver
    for seed in range(5):
        (tmp_path / "in" / f"p{seed}.png").write_bytes(png(seed=seed))
    (tmp_path / "in" / "p5-copy.png").write_bytes(png(seed=0))
    store, driver_puts = open_store(settings), []
    put = store.put
    monkeypatch.setattr(store, "put", lambda key, *rest: (driver_puts.append(key), put(key, *rest)))
    tiny = load_embedder("tiny:random", device="cpu")
    index = EdgeIndex(tmp_path / "index", collection_name(tiny.name, tiny.dimension), tiny.dimension)
    try:
        with connect(settings, ray_address) as cluster:
            ingestor = RayIngestor(cluster, store, index, tiny, batch_size=4, journal_dir=tmp_path / "journal")
            assert ingestor.nodes_write
            results = ingestor.ingest(list(items_from_paths([tmp_path / "in"])), USER)
        assert [r.status for r in results] == ["stored"] * 5 + ["present"]
        assert driver_puts == []
        points = list(index.scroll(USER))
        assert list_keys(store) == {p.payload[k] for p in points for k in ("original_key", "thumbnail_key")}
        assert len(points) == 5 and {p.payload["bytes"] for p in points} == {len(png(seed=n)) for n in range(5)}
    finally:
        index.close()
    assert not list(tmp_path.joinpath("journal").glob("*.jsonl"))


def test_files_a_node_could_not_store_are_rejected_and_an_unreachable_store_stops_the_ingest(tmp_path: Path) -> None:
    """The driver's side of a task's failed writes: each file is rejected with the store's reason,
    and as many "did not answer" as the breaker allows stop the ingest, as the driver's own writes do."""
    tiny = load_embedder("tiny:random", device="cpu")
    index = EdgeIndex(tmp_path / "index", collection_name(tiny.name, tiny.dimension), tiny.dimension)
    cluster = SimpleNamespace(remote_driver=False, settings=None)
    ingestor = RayIngestor(cluster, LocalStore(tmp_path / "objects"), index, tiny)  # type: ignore[arg-type]
    files = {f"f{n}.png": png(seed=n) for n in range(4)}
    items = [IngestItem(path=name, read=lambda data=data: data, size=len(data)) for name, data in files.items()]
    prepared = prepare_image(png(seed=0), ImageLimits(), tiny.image_transform())
    errors = [StorageError("access denied"), *[StoreUnreachable("connection refused")] * 3]
    outcomes = [
        NodeOutcome(sha256=sha256_hex(data), size=len(data), keys=("a", "b"), store_error=error, prepared=prepared)
        for data, error in zip(files.values(), errors, strict=True)
    ]
    batch = {"position": np.arange(4), "outcome": np.array([pickle.dumps(o) for o in outcomes], dtype=object)}
    tally = Tally(4, None, None, None)
    try:
        assert ingestor._settle(USER, items, batch, {}, [], tally) == []
    finally:
        index.close()
    assert [r.reason for r in tally.results] == [
        "could not store: access denied",
        *["could not store: connection refused"] * 3,
    ]
    assert ingestor.stopped is not None and ingestor.stopped.reason == "object store unreachable"


def test_the_cluster_stages_prepare_only_new_content_and_embed_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The two Ray Data stages, called as the cluster calls them: content the user had when the
    ingest started is hashed and nothing more; new content is prepared and embedded."""
    (tmp_path / "new.png").write_bytes(png(seed=1))
    (tmp_path / "had.png").write_bytes(png(seed=2))
    (tmp_path / "text.png").write_bytes(b"not an image")
    items = list(items_from_paths([tmp_path]))
    assert [Path(item.path).name for item in items] == ["had.png", "new.png", "text.png"]
    monkeypatch.setattr(ray_engine, "_yield_to_the_model", lambda: None)  # keep this process's priority
    embedder = load_embedder("tiny:random", device="cpu")
    known = known_keys(iter([image_id(USER, sha256_hex(png(seed=2)))]))
    batch = {"position": np.arange(3), "item": np.array([cloudpickle.dumps(i) for i in items], dtype=object)}
    prepared = read_and_prepare(batch, USER, ImageLimits(), embedder.image_transform(), known)
    embedded = EmbedStage("tiny:random", None, "cpu", "fp32")(prepared)
    had, new, text = (pickle.loads(blob) for blob in embedded["outcome"])
    assert (had.sha256, had.data, had.prepared, had.vector) == (sha256_hex(png(seed=2)), None, None, None)
    assert new.data == png(seed=1) and isinstance(new.prepared, PreparedImage)
    assert new.prepared.pixels is None  # the model input stays on the cluster
    expected = embedder.embed_pixels(prepare_image(png(seed=1), ImageLimits(), embedder.image_transform()).pixels[None])
    np.testing.assert_allclose(new.vector, expected[0], atol=1e-6)
    assert text.result is None and text.prepared == "not an image: the content is not a recognised image format"
    assert text.vector is None


def test_known_keys_find_exactly_the_ids_given() -> None:
    ids = [image_id(USER, f"{n:064x}") for n in range(1000)]
    known = known_keys(iter(ids[:500]))
    assert all(is_known(i, known) for i in ids[:500])
    assert not any(is_known(i, known) for i in ids[500:])
    assert not is_known(ids[0], known_keys(iter([])))


def test_zip_members_pickle_as_their_archive_and_read_anywhere(tmp_path: Path) -> None:
    (tmp_path / "pack.zip").write_bytes(zip_bytes({f"m{n}.png": png(seed=n) for n in range(3)}))
    items = list(items_from_paths([tmp_path]))
    travelled = cloudpickle.loads(cloudpickle.dumps(items))  # one pickle: one archive opened for all
    assert [item.read() for item in travelled] == [png(seed=n) for n in range(3)]
    assert len({id(item.read.args[0]) for item in travelled}) == 1


def test_a_file_that_kills_its_worker_is_rejected_and_the_others_go_on(
    ray_address: str, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that ends its worker process (as a decoder crash would), in this process's driver:
    Ray tries its block again, then each of the block's files on its own; only that file is
    rejected, every other one is stored."""
    for name, value in RAY_DRIVER_ENV.items():
        monkeypatch.setenv(name, value)
    killer = IngestItem(path="kills-its-worker.png", read=partial(os._exit, 3))
    items = [*items_from_paths(sorted(photos.glob("photo-0*.jpg"))), killer]
    with tiny_services(tmp_path) as services, connect(services.settings, ray_address) as cluster:
        results = RayIngestor.for_services(services, cluster).ingest(items, USER)
        stored = set(services.index.user_ids(USER))
    assert [r.status for r in results] == ["stored"] * 10 + ["rejected"]
    assert results[-1].reason == "could not decode: a Ray worker stopped while reading or preparing it"
    assert stored == {r.image_id for r in results[:-1]}


def test_the_batch_suits_the_clusters_device_not_the_drivers(tmp_path: Path) -> None:
    """A driver on a CPU machine sends GPU actors GPU-sized batches, unless VAD_BATCH_SIZE is set."""
    with tiny_services(tmp_path / "auto") as services:
        assert services.batch_size == CPU_BATCH_SIZE  # the driver's own device
        assert RayIngestor.for_services(services, SimpleNamespace(gpus=2)).batch_size == GPU_BATCH_SIZE
        assert RayIngestor.for_services(services, SimpleNamespace(gpus=0)).batch_size == CPU_BATCH_SIZE
    with tiny_services(tmp_path / "set", batch_size=48) as services:
        assert RayIngestor.for_services(services, SimpleNamespace(gpus=2)).batch_size == 48
