"""The per-image CPU work of ingest, in worker processes.

Everything that is not the model runs here: decode (draft mode), pHash, pixel hash, quality
stats, the WebP thumbnail, and the model's own preprocessing into a ready uint8 input. In
threads this work holds the GIL (16 cores did the work of 1.4); in processes it scales with
the cores. The pool starts on first use and lives until closed, so the app keeps one across
reruns and the CLI opens one per run.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
import types
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext, ForkServerProcess
from time import perf_counter
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from core.hashing import content_of, phash_hex, pixel_sha256
from core.images import FormatInfo, ImageLimits, ImageRejected, decode, thumbnail_bytes
from core.quality import image_stats

if TYPE_CHECKING:  # torch is imported only where something is embedded
    from core.embed.transform import ImageTransform


@dataclass(frozen=True)
class PreparedImage(FormatInfo):
    """What ingest keeps of one decoded file. ``pixels`` is the model's input when the model
    splits its preprocessing; otherwise ``image`` (the working copy) goes to ``embed_images``."""

    width: int
    height: int
    format: str
    phash: str
    pixel_sha256: str
    quality: dict[str, float]
    thumbnail: bytes
    #: pHash of the picture inside any border, letterbox bars or frame (``core.hashing.content_box``).
    content_phash: str = ""
    #: Width and height (original pixels) of that picture inside any border.
    content_size: tuple[int, int] = (0, 0)
    #: Time the worker spent on this file (decode to model input).
    seconds: float = 0.0
    pixels: np.ndarray | None = field(default=None, repr=False)
    image: Image.Image | None = field(default=None, repr=False)


def prepare_image(data: bytes, limits: ImageLimits, transform: ImageTransform | None) -> PreparedImage:
    """Decode and measure one file's bytes; raises ImageRejected with the user-facing reason."""
    started = perf_counter()
    decoded = decode(data, limits)
    working = decoded.image
    pixels = transform.pixels(working) if transform is not None else None
    grey = working.convert("L")  # one grey copy for the hashes and the stats: they all read grey levels
    phash = phash_hex(grey)
    content = content_of(grey, decoded.width, decoded.height, phash)
    return PreparedImage(
        width=decoded.width,
        height=decoded.height,
        format=decoded.format,
        phash=phash,
        content_phash=content.phash,
        content_size=(content.width, content.height),
        pixel_sha256=pixel_sha256(working),
        quality=image_stats(working, grey),
        thumbnail=thumbnail_bytes(decoded),
        seconds=perf_counter() - started,
        pixels=pixels,
        image=working if transform is None else None,
    )


def prepare_or_reason(data: bytes, limits: ImageLimits, transform: ImageTransform | None) -> PreparedImage | str:
    """``prepare_image``, with a failure turned into its reason (a string pickles whatever failed)."""
    try:
        return prepare_image(data, limits, transform)
    except ImageRejected as exc:
        return str(exc)
    except Exception as exc:  # a decoder bug or an exotic file: this file fails, not the batch
        return f"could not decode: {exc}"


def prepare_chunk(
    payloads: Sequence[bytes], limits: ImageLimits, transform: ImageTransform | None
) -> list[PreparedImage | str]:
    """A worker's task: several files per round trip, to spread the cost of the hand-over."""
    return [prepare_or_reason(data, limits, transform) for data in payloads]


def default_workers() -> int:
    """One worker process per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _init_worker() -> None:
    """Each worker does one image at a time (no thread pools inside it to fight the others), and
    exits with the process that started it."""
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    run_below_others()
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent.sentinel,), name="parent-watch", daemon=True).start()


def run_below_others() -> None:
    """Schedule this process below the app's server and the model's threads: where cores are
    short, a click or the forward pass goes first and the workers take the time left over.

    Linux's idle class does this best: a model thread that wakes preempts a worker at once, so the
    forward pass's threads never wait on each other behind a worker (2 cores: 4.8 % more images/s
    end to end than at nice 10). Elsewhere, or where a sandbox forbids it, nice 10."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(10)


def _exit_with(parent_sentinel: int) -> None:
    """Wait for the parent to end, then end this worker.

    Idle workers block on the task queue, whose write end they hold themselves, so a parent killed
    with SIGKILL would otherwise leave them (hundreds of MB each) running for ever.
    """
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(0)


@contextmanager
def _bare_main() -> Iterator[None]:
    """While a worker is launched, ``__main__`` is an empty module.

    multiprocessing makes each new process run the parent's ``__main__`` script again; under
    Streamlit (and AppTest) that is the app's page script, which must not run in a worker.
    Streamlit itself swaps ``sys.modules["__main__"]`` on every rerun in the same way.
    """
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


class _WorkerProcess(ForkServerProcess):
    @staticmethod
    def _Popen(process_obj):
        with _bare_main():
            return ForkServerProcess._Popen(process_obj)


class _WorkerContext(ForkServerContext):
    """The forkserver start method, with workers that never re-run the caller's ``__main__``."""

    Process = _WorkerProcess


class PreparePool:
    """Worker processes for ``prepare_chunk``; started on first use, shared by threads, reusable."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        """Whether the worker processes are up (then even a small ingest is worth sending)."""
        return self._executor is not None

    def submit(
        self, payloads: Sequence[bytes], limits: ImageLimits, transform: ImageTransform | None
    ) -> Future[list[PreparedImage | str]]:
        """Prepare ``payloads`` in a worker; the future's list holds a result or a reason per file.

        A pool whose worker died (out of memory, a crash in a native decoder) fails the futures it
        had; the next submit replaces it."""
        executor = self._running()
        try:
            return executor.submit(prepare_chunk, list(payloads), limits, transform)
        except BrokenProcessPool:
            self._drop(executor)
            return self._running().submit(prepare_chunk, list(payloads), limits, transform)

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> PreparePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drop(self, broken: ProcessPoolExecutor) -> None:
        """Forget a broken executor, unless another thread already replaced it."""
        with self._lock:
            if self._executor is broken:
                self._executor = None
        broken.shutdown(wait=False, cancel_futures=True)

    def _running(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                # forkserver, not fork: forking a process whose PyTorch threads already run is
                # unsafe. The server imports this module once; each worker is a cheap fork of it.
                context = _WorkerContext()
                context.set_forkserver_preload([__name__])
                self._executor = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker)
            return self._executor
