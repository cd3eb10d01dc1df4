"""Ingest throughput per stage and end to end, the limiting stage, and peak memory.

    python -m bench.ingest ../shared/datasets/imagenet-sample/images
    python -m bench.ingest PHOTOS --files 3000 --device cuda --precisions fp32,fp16   # GPU machine

PATH is a folder of photos. With ``--files N`` the bench first makes N distinct 500x375 JPEGs
from them (random crop, flip and tint of the photos, in a temporary folder), so a few carried
photos are enough on a machine without network. Random weights are fine for timing (same
compute as the real model). Stages are timed alone on a sample, then the whole pipeline runs
for ``--workers`` (1 and the default: one per core) and each precision. ``--rss-files`` runs
end to end in fresh processes for several input sizes and reports the peak memory (PSS) of
the process and its workers, to show that memory stays flat however many files there are.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from bench.common import timer
from core.embed import Embedder, default_batch_size, load_embedder, resolve_device
from core.hashing import sha256_hex
from core.images import ImageLimits
from core.index import ImageRecord
from core.ingest import Ingestor
from core.prepare import PreparedImage, PreparePool, default_workers, prepare_image
from core.services import open_services
from core.settings import load_settings
from core.sources import IngestItem, items_from_paths

SIZE = (500, 375)


def make_jpegs(photos: list[Path], count: int, folder: Path, seed: int = 0) -> None:
    """``count`` distinct 500x375 JPEGs: a random crop of a photo, maybe mirrored, slightly tinted."""
    rng = random.Random(seed)
    sources = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in photos]
    for number in range(count):
        image = sources[number % len(sources)]
        width, height = image.size
        scale = rng.uniform(0.6, 1.0)
        crop_w, crop_h = max(8, int(width * scale)), max(8, int(height * scale))
        left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
        copy = image.crop((left, top, left + crop_w, top + crop_h)).resize(SIZE, Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            copy = ImageOps.mirror(copy)
        copy = ImageEnhance.Brightness(copy).enhance(rng.uniform(0.8, 1.2))
        copy.save(folder / f"img{number:06d}.jpg", quality=90)


def _pss_kb(pid: int) -> int:
    """Proportional set size (shared pages split between the processes that map them)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants (the worker pool and its fork server)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


@contextmanager
def peak_memory(every_s: float = 1.0) -> Iterator[list[float]]:
    """``with peak_memory() as peak: ...`` then ``peak[0]`` is the largest PSS (MB) of this
    process and its descendants together, sampled every ``every_s``. One sample reads the
    process's whole memory map: about 30 ms of CPU once the model is loaded, so sampling every
    0.2 s took 15 % of a core from the pipeline it measures (2 cores: about 8 points of its rate)."""
    box, stop = [0.0], threading.Event()

    def measure() -> None:
        box[0] = max(box[0], sum(_pss_kb(pid) for pid in _tree(os.getpid())) / 1024)

    def sample() -> None:
        while not stop.wait(every_s):
            measure()

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        stop.set()
        thread.join()
        measure()  # once more at the end: a run shorter than ``every_s`` still has a figure


def end_to_end(
    items: list[IngestItem], model: str, device: str, precision: str, batch: int, workers: int, memory_every_s: float
) -> dict:
    """One ingest of ``items`` into an empty temporary store and index, as the CLI runs it, its
    memory sampled every ``memory_every_s`` (a sample costs the pipeline about 30 ms of CPU)."""
    with tempfile.TemporaryDirectory() as data_dir:
        settings = load_settings(
            data_dir=data_dir, model=model, device=device, precision=precision, batch_size=batch, ingest_workers=workers
        )
        services = open_services(settings)
        try:
            warm_up(services.prepare_pool, services.embedder, services.limits)
            with peak_memory(memory_every_s) as peak, timer() as elapsed:
                results = services.ingestor().ingest(items, "bench")
            with timer() as again:
                present = services.ingestor().ingest(items, "bench")
        finally:
            services.close()
    return {
        "images_s": len(items) / elapsed[0],
        "stored": sum(r.status == "stored" for r in results),
        "rejected": sum(r.status == "rejected" for r in results),
        "reingest_files_s": len(items) / again[0],
        "present": sum(r.status == "present" for r in present),
        "peak_pss_mb": peak[0],
    }


def warm_up(pool: PreparePool, embedder: Embedder, limits: ImageLimits) -> None:
    """Start every worker and the model's first pass before timing (a CLI run pays this once)."""
    probe = Image.new("RGB", SIZE, (120, 80, 40))
    data = _jpeg_bytes(probe)
    for future in [pool.submit([data], limits, embedder.image_transform()) for _ in range(pool.workers)]:
        future.result()
    embedder.embed_images([probe])


def _jpeg_bytes(image: Image.Image) -> bytes:
    import io

    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def prepare_in_pool(payloads: list[bytes], embedder: Embedder, limits: ImageLimits, workers: int, batch: int) -> float:
    """Images/s of the worker stage alone, fed as ingest feeds it."""
    transform = embedder.image_transform()
    chunk = max(1, min(8, batch // workers))
    with PreparePool(workers) as pool:
        warm_up(pool, embedder, limits)
        with timer() as elapsed:
            futures = []
            for start in range(0, len(payloads), chunk):
                futures.append(pool.submit(payloads[start : start + chunk], limits, transform))
                if len(futures) >= 4 * workers:
                    futures.pop(0).result()
            for future in futures:
                future.result()
    return len(payloads) / elapsed[0]


def main_process_costs(payloads: list[bytes], prepared: list[PreparedImage], embedder: Embedder, batch: int) -> dict:
    """Seconds per image of the work the main process does besides the forward pass."""
    from core.index.edge import EdgeIndex
    from core.storage import LocalStore

    n = len(prepared)
    with timer() as hand_over:  # what a worker's result costs the main process (pickle both ways)
        for item in prepared:
            pickle.loads(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
        for data in payloads:
            pickle.loads(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    with tempfile.TemporaryDirectory() as folder:
        store = LocalStore(Path(folder) / "objects")
        index = EdgeIndex(Path(folder) / "index", "bench", embedder.dimension)
        try:
            with timer() as storing:
                for number, (item, data) in enumerate(zip(prepared, payloads, strict=True)):
                    store.put(f"images/bench/{number}.jpg", data, "image/jpeg")
                    store.put(f"thumbnails/bench/{number}.jpg", item.thumbnail, "image/jpeg")
            vectors = np.random.default_rng(0).normal(size=(n, embedder.dimension)).astype(np.float32)
            records = [
                ImageRecord(f"{number:032x}", {"user": "bench", "n": number}, vectors[number]) for number in range(n)
            ]
            with timer() as upserting:
                for start in range(0, n, batch):
                    index.existing_ids("bench", [r.id for r in records[start : start + batch]])
                    index.upsert(records[start : start + batch])
        finally:
            index.close()
    with timer() as stacking:
        for start in range(0, n, batch):
            np.stack([p.pixels for p in prepared[start : start + batch]])
    return {
        "hand_over": hand_over[0] / n,
        "store": storing[0] / n,
        "index": upserting[0] / n,
        "stack": stacking[0] / n,
    }


class _GivenPrepared(Ingestor):
    """The ingest's main process alone: each file's prepared result is given (the sample's, in
    turn) and the model is skipped. What is left is what the main process does per file whatever
    the device: reading and hashing in threads, the checks, the journal, the store and the index."""

    def __init__(self, given: list[PreparedImage], **parts: Any) -> None:
        super().__init__(**parts)
        self.given = given

    def _prepared(self, batches, pool, tally):  # the overridden signature
        for count, batch in batches:
            yield self._take(batch, [self.given[c.position % len(self.given)] for c in batch], count, tally)

    def _embed(self, ready: list) -> np.ndarray:
        vectors = np.random.default_rng(len(ready)).normal(size=(len(ready), self.embedder.dimension))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def main_process_alone(
    items: list[IngestItem], prepared: list[PreparedImage], model: str, device: str, batch: int, busy_threads: int = 0
) -> float:
    """Images/s of the main process's share of an ingest into an empty local store and index: the
    rate no device and no number of workers can take the pipeline past. ``busy_threads`` threads
    run Python meanwhile in the same process, as an analysis job or a page being drawn does in the
    app."""
    with tempfile.TemporaryDirectory() as data_dir:
        services = open_services(load_settings(data_dir=data_dir, model=model, device=device, batch_size=batch))
        try:
            ingestor = _GivenPrepared(prepared, **services.ingest_parts())
            with busy_python(busy_threads), timer() as elapsed:
                ingestor.ingest(items, "bench")
        finally:
            services.close()
    return len(items) / elapsed[0]


@contextmanager
def busy_python(threads: int) -> Iterator[None]:
    """``threads`` threads that run Python code (holding the GIL) until the block ends."""
    done = threading.Event()

    def spin() -> None:
        count = 0
        while not done.is_set():
            count += 1

    running = [threading.Thread(target=spin, daemon=True) for _ in range(threads)]
    for thread in running:
        thread.start()
    try:
        yield
    finally:
        done.set()
        for thread in running:
            thread.join()


def model_alone(embedder: Embedder, prepared: list[PreparedImage], batch: int, images: int) -> float:
    """Images/s of ``embed_pixels`` on ready inputs (host-to-device copy and normalisation included)."""
    pixels = np.stack([p.pixels for p in prepared])
    batches = [pixels[np.arange(start, start + batch) % len(pixels)] for start in range(0, images, batch)]
    embedder.embed_pixels(batches[0])  # first pass: allocations, kernel choices
    with timer() as elapsed:
        for chunk in batches:
            embedder.embed_pixels(chunk)
    return len(batches) * batch / elapsed[0]


def rss_run(args: argparse.Namespace, files: Path, count: int) -> dict:
    """End to end in a fresh process, so that its peak memory is its own."""
    command = [sys.executable, "-m", "bench.ingest", str(files), "--limit", str(count), "--model", args.rss_model]
    command += ["--device", args.device, "--end-to-end-only"]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="a folder of photos")
    parser.add_argument("--model", default="ViT-B-32:random")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precisions", default="auto", help="comma-separated: auto, fp32, fp16, bf16")
    parser.add_argument("--workers", default="1,default", help="comma-separated worker counts; default = one per core")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 on a CPU, 256 on a GPU")
    parser.add_argument("--files", type=int, default=None, help="make this many distinct 500x375 JPEGs first")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N files")
    parser.add_argument("--sample", type=int, default=256, help="files for the single-stage timings")
    parser.add_argument("--model-images", type=int, default=None, help="images for the model-alone timing")
    parser.add_argument("--rss-files", default="", help="e.g. 1000,5000: end to end in fresh processes")
    parser.add_argument("--rss-model", default="tiny:random", help="model for the --rss-files runs")
    parser.add_argument(
        "--busy-threads", type=int, default=0, help="also time the main process alone with N threads busy in Python"
    )
    parser.add_argument("--end-to-end-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as made:
        folder = args.path
        if args.files:
            photos = sorted(p for p in args.path.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
            with timer() as making:
                make_jpegs(photos, args.files, Path(made))
            print(
                f"made {args.files} distinct {SIZE[0]}x{SIZE[1]} JPEGs from {len(photos)} photos in {making[0]:.0f} s"
            )
            folder = Path(made)
        every = list(items_from_paths([folder]))
        items = every[: args.limit]
        if args.end_to_end_only:
            workers = default_workers()
            print(json.dumps(end_to_end(items, args.model, device, "auto", args.batch_size, workers, 1.0)))
            return
        run(args, items, device, folder, len(every))


def run(args: argparse.Namespace, items: list[IngestItem], device: str, folder: Path, available: int) -> None:
    n = len(items)
    batch = args.batch_size or default_batch_size(device)
    worker_counts = [default_workers() if w == "default" else int(w) for w in args.workers.split(",")]
    precisions = args.precisions.split(",")
    print(f"{n} files from {folder}, model {args.model} on {device}, batch {batch}, {default_workers()} cores")

    embedder = load_embedder(args.model, None, device, precisions[0])
    limits = ImageLimits()
    sample = items[: args.sample]
    with timer() as reading:
        payloads = [item.read() for item in sample]
        for data in payloads:
            sha256_hex(data)
    prepare_image(payloads[0], limits, embedder.image_transform())  # first call: lazy imports (scipy)
    with timer() as preparing:
        prepared = [prepare_image(data, limits, embedder.image_transform()) for data in payloads]
    rates = {"read + sha256 (1 thread)": len(sample) / reading[0], "prepare (1 process)": len(sample) / preparing[0]}
    for workers in worker_counts:
        rates[f"prepare ({workers} worker processes)"] = prepare_in_pool(payloads, embedder, limits, workers, batch)
    costs = main_process_costs(payloads, prepared, embedder, batch)
    alone = main_process_alone(items, prepared, args.model, device, batch)
    rates["main process alone (prepared given, no model)"] = alone
    if args.busy_threads:
        busy = main_process_alone(items, prepared, args.model, device, batch, args.busy_threads)
        rates[f"main process alone, {args.busy_threads} thread(s) busy in Python"] = busy
    print("\nper stage, alone:")
    for name, rate in rates.items():
        unit = "ms per image" if name.startswith("main process") else "ms per image per core"
        print(f"  {name:<48} {rate:8.1f} images/s ({1000 / rate:.2f} {unit})")
    for name, seconds in costs.items():
        print(f"  main process: {name:<26} {seconds * 1000:8.3f} ms per image")

    model_images = args.model_images or max(batch * 4, 256 if device == "cpu" else 4096)
    for precision in precisions:
        embedder = load_embedder(args.model, None, device, precision)
        before = model_alone(embedder, prepared, batch, model_images)
        print(f"\nmodel alone, {embedder.describe()}: {before:.1f} images/s ({model_images} images)")
        for workers in worker_counts:
            # Memory is the --rss-files runs' job: here a sample every 5 s, not 1 s, takes 0.6 % of
            # a core from the pipeline instead of 3 %, and the peak is still printed.
            result = end_to_end(items, args.model, device, precision, batch, workers, memory_every_s=5.0)
            # The model alone again right after: each run is compared with the mean of the two
            # measures around it, so that a machine's drift (clock, neighbours) weighs less.
            after = model_alone(embedder, prepared, batch, model_images)
            model_rate = (before + after) / 2
            stages = {
                "model": model_rate,
                "prepare": rates[f"prepare ({workers} worker processes)"],
                "main process": rates["main process alone (prepared given, no model)"],
            }
            limiting = min(stages, key=stages.__getitem__)
            print(
                f"  end to end, {workers} workers: {result['images_s']:.1f} images/s "
                f"({result['images_s'] / model_rate:.0%} of the model alone, {before:.1f} / {after:.1f} images/s "
                f"just before / after; limiting stage alone: {limiting} {stages[limiting]:.1f}/s), "
                f"{result['stored']} stored, {result['rejected']} rejected; "
                f"re-ingest {result['reingest_files_s']:.0f} files/s; peak PSS {result['peak_pss_mb']:.0f} MB"
            )
            before = after

    for count in [int(c) for c in args.rss_files.split(",") if c]:
        if count > available:
            print(f"\nmemory: skipped {count} files (only {available}; use --files)")
            continue
        result = rss_run(args, folder, count)
        print(
            f"\nmemory, {count} files end to end ({args.rss_model}, {default_workers()} workers, fresh process): "
            f"peak PSS {result['peak_pss_mb']:.0f} MB, {result['images_s']:.1f} images/s"
        )


if __name__ == "__main__":
    main()
