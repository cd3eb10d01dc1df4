"""core.prepare: the per-image CPU work, inline and in real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from apptest_helpers import ROOT
from helpers import encode, jpeg, pattern, png, png_claiming_size, truncated_jpeg
from PIL import Image

from core.embed import Embedder
from core.embed.transform import ImageTransform
from core.hashing import content_of, phash_hex, pixel_sha256
from core.images import ImageLimits, decode, thumbnail_bytes
from core.index import collection_name
from core.index.edge import EdgeIndex
from core.ingest import Ingestor
from core.prepare import PreparedImage, PreparePool, prepare_chunk, prepare_image
from core.quality import image_stats
from core.sources import IngestItem
from core.storage import LocalStore

LIMITS = ImageLimits()
BAD = {
    "text": (b"just text", "not an image"),
    "truncated": (truncated_jpeg(), "truncated"),
    "bomb": (png_claiming_size(40_000, 40_000), "decompression bomb"),
}


class ExitingSteps:
    """Model preprocessing that kills its worker process, as a crash in a native decoder would."""

    def __call__(self, image: Image.Image) -> Image.Image:
        os._exit(3)


def test_prepare_image_computes_what_ingest_stores(tiny: Embedder) -> None:
    data = jpeg(seed=3, size=(640, 480))
    transform = tiny.image_transform()
    assert transform is not None
    prepared = prepare_image(data, LIMITS, transform)
    decoded = decode(data)
    assert (prepared.width, prepared.height, prepared.format) == (640, 480, "JPEG")
    assert (prepared.extension, prepared.mime_type) == ("jpg", "image/jpeg")
    assert prepared.phash == phash_hex(decoded.image)
    assert prepared.content_phash == content_of(decoded.image).phash == prepared.phash  # no border: one pHash
    assert prepared.pixel_sha256 == pixel_sha256(decoded.image)
    assert prepared.quality == image_stats(decoded.image)
    assert prepared.thumbnail == thumbnail_bytes(decoded)
    assert prepared.image is None
    assert prepared.pixels is not None
    assert prepared.pixels.dtype == np.uint8 and prepared.pixels.shape == (64, 64, 3)
    np.testing.assert_array_equal(prepared.pixels, transform.pixels(decoded.image))
    # without a separable transform the working copy travels instead
    whole = prepare_image(data, LIMITS, None)
    assert whole.pixels is None and whole.image is not None and whole.image.size == decoded.image.size


def test_prepare_chunk_turns_failures_into_reasons(tiny: Embedder) -> None:
    outcomes = prepare_chunk([png(seed=1), *(data for data, _ in BAD.values())], LIMITS, tiny.image_transform())
    assert isinstance(outcomes[0], PreparedImage)
    for outcome, (_, reason) in zip(outcomes[1:], BAD.values(), strict=True):
        assert isinstance(outcome, str) and reason in outcome


def test_worker_processes_match_inline_work(prepare_pool: PreparePool, tiny: Embedder) -> None:
    payloads = [png(seed=1), jpeg(seed=2, size=(500, 375)), encode(pattern(4, (300, 80)), "WEBP"), BAD["text"][0]]
    transform = tiny.image_transform()
    futures = [prepare_pool.submit(payloads[i : i + 2], LIMITS, transform) for i in (0, 2)]
    remote = [outcome for future in futures for outcome in future.result(timeout=120)]
    local = prepare_chunk(payloads, LIMITS, transform)
    assert remote[-1] == local[-1] and "not an image" in remote[-1]
    for theirs, ours in zip(remote[:-1], local[:-1], strict=True):
        assert isinstance(theirs, PreparedImage) and isinstance(ours, PreparedImage)
        assert (theirs.phash, theirs.pixel_sha256, theirs.thumbnail) == (ours.phash, ours.pixel_sha256, ours.thumbnail)
        assert theirs.quality == ours.quality
        np.testing.assert_array_equal(theirs.pixels, ours.pixels)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling classes")
def test_workers_run_in_the_idle_class_below_the_model(prepare_pool: PreparePool, tiny: Embedder) -> None:
    prepare_pool.submit([png(seed=1)], LIMITS, tiny.image_transform()).result(timeout=120)
    workers = list(prepare_pool._running()._processes)  # the executor's worker pids
    assert workers and all(os.sched_getscheduler(pid) == os.SCHED_IDLE for pid in workers)


def test_the_pool_recovers_from_a_dead_worker(prepare_pool: PreparePool, tiny: Embedder) -> None:
    crashing = ImageTransform((ExitingSteps(),), (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(Exception, match="terminated abruptly"):
        prepare_pool.submit([png(seed=1)], LIMITS, crashing).result(timeout=120)
    [outcome] = prepare_pool.submit([png(seed=1)], LIMITS, tiny.image_transform()).result(timeout=120)
    assert isinstance(outcome, PreparedImage)


def test_a_dead_worker_rejects_its_files_and_ingest_goes_on(
    tmp_path: Path, tiny: Embedder, prepare_pool: PreparePool
) -> None:
    class CrashingEmbedder(type(tiny)):  # the tiny model, whose preprocessing kills the worker
        def image_transform(self) -> ImageTransform:
            return ImageTransform((ExitingSteps(),), (0.5,) * 3, (0.5,) * 3)

    embedder = CrashingEmbedder("tiny", "random")
    index = EdgeIndex(tmp_path / "index", collection_name(tiny.name, tiny.dimension), tiny.dimension)
    try:
        files = [IngestItem(f"f{i}.png", (lambda d: lambda: d)(png(seed=i)), None) for i in range(5)]
        results = Ingestor(LocalStore(tmp_path / "objects"), index, embedder, batch_size=2, pool=prepare_pool).ingest(
            files, "alice"
        )
        assert [r.status for r in results] == ["rejected"] * 5
        assert all("worker process stopped" in (r.reason or "") for r in results)
        assert index.count("alice") == 0
        assert not list((tmp_path / "objects").rglob("*.*"))
    finally:
        index.close()


class CountingPool(PreparePool):
    """A real pool that counts the tasks handed to it."""

    def __init__(self) -> None:
        super().__init__(workers=1)
        self.tasks = 0

    def submit(self, *args, **kwargs):
        self.tasks += 1
        return super().submit(*args, **kwargs)


def test_fewer_files_than_a_batch_do_not_start_the_pool(tmp_path: Path, tiny: Embedder) -> None:
    pool = CountingPool()
    index = EdgeIndex(tmp_path / "index", collection_name(tiny.name, tiny.dimension), tiny.dimension)
    try:
        files = [IngestItem(f"f{i}.png", (lambda d: lambda: d)(png(seed=i)), None) for i in range(3)]
        ingestor = Ingestor(LocalStore(tmp_path / "objects"), index, tiny, batch_size=3, pool=pool)
        assert [r.status for r in ingestor.ingest(files, "alice")] == ["stored"] * 3
        assert pool.tasks == 0
    finally:
        index.close()
        pool.close()


def test_workers_never_run_the_callers_main_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny: Embedder
) -> None:
    """Under Streamlit (and AppTest) ``__main__`` is the page script: a new worker must not run it."""
    script = tmp_path / "page.py"
    script.write_text("raise SystemExit('the page script ran in a worker')\n")
    page = types.ModuleType("__main__")
    page.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", page)
    with PreparePool(workers=1) as pool:  # a fresh pool: its worker starts while the page is __main__
        (outcome,) = pool.submit([png(seed=9)], ImageLimits(), tiny.image_transform()).result(timeout=120)
    assert isinstance(outcome, PreparedImage)
    assert sys.modules["__main__"] is page


POOL_THEN_WAIT = """
import sys, time
from core.images import ImageLimits
from core.prepare import PreparePool
pool = PreparePool(workers=2)
pool.submit([sys.stdin.buffer.read()], ImageLimits(), None).result()
print(*pool._running()._processes, flush=True)  # the worker pids
time.sleep(600)
"""


def test_workers_end_with_a_parent_killed_by_sigkill() -> None:
    """Idle workers hold their own task queue open: without a watch on the parent, a kill -9 of
    the ingest left them (hundreds of MB each) running for ever."""
    parent = subprocess.Popen(
        [sys.executable, "-c", POOL_THEN_WAIT], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=False
    )
    try:
        parent.stdin.write(png(seed=3))
        parent.stdin.close()
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert workers and all(alive(pid) for pid in workers)  # started on demand: one or two
    finally:
        parent.kill()
        parent.wait(30)
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped by init, counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
