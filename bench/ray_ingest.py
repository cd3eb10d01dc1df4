"""The Ray engine against the local engine on the same files, as users run them (the CLI).

    python -m bench.ray_ingest ../shared/datasets/imagenet-sample/images --model efficientnet-lite0

Starts a Ray head and one worker node on 127.0.0.1 (one CPU each, as the tests do), then ingests
PATH with ``--engine local`` and ``--engine ray`` into fresh data folders, ``--repeat`` times each
with the order alternating, and reports each run's wall time (model load and Ray connection
included), the best throughput of each engine and their ratio, and whether the two reports,
point ids, payloads and vectors (within 1e-5) are the same. With ``--s3`` both engines store into
buckets of a SeaweedFS server started on 127.0.0.1 (the Ray engine's tasks then write the objects
themselves) instead of each data folder.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from core.services import open_services
from core.settings import load_settings
from tests.helpers import RAY_DRIVER_ENV, running_ray_cluster, running_weed

ROOT = Path(__file__).resolve().parents[1]
USER = "bench"
TIMESTAMPS = {"created_at", "created_ts"}


def without_times(payload: dict) -> dict:
    """The payload without the times of this ingest (each occurrence's ``added_at`` too)."""
    kept = {k: v for k, v in payload.items() if k not in TIMESTAMPS}
    kept["occurrences"] = [{k: v for k, v in o.items() if k != "added_at"} for o in kept.get("occurrences", [])]
    return kept


ENGINES = ("local", "ray")


def ingest(
    engine: str, path: Path, data_dir: Path, model: str, address: str, store: dict[str, str]
) -> tuple[float, list[str]]:
    """Seconds and JSON report lines of ``python -m core ingest PATH --engine ENGINE``; ``store``:
    the S3 settings, if any."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VAD_")}
    environment.update(RAY_DRIVER_ENV)
    environment.update({"VAD_DATA_DIR": str(data_dir), "VAD_MODEL": model, "VAD_RAY_ADDRESS": address})
    environment.update({f"VAD_{name.upper()}": value for name, value in store.items()})
    command = [sys.executable, "-m", "core", "ingest", str(path), "--user", USER, "--json", "--engine", engine]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{engine} ingest failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, done.stdout.splitlines()


def points(data_dir: Path, model: str, store: dict[str, str]) -> dict[str, tuple[dict, np.ndarray]]:
    services = open_services(load_settings(data_dir=data_dir, model=model, **store))
    try:
        return {r.id: (without_times(r.payload), r.vector) for r in services.index.scroll(USER, with_vectors=True)}
    finally:
        services.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", type=Path, help="a folder of photos")
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--repeat", type=int, default=2, help="runs per engine, alternating which goes first")
    parser.add_argument("--s3", action="store_true", help="store into SeaweedFS on 127.0.0.1, not the data folders")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as scratch, ExitStack() as stack:
        work = Path(scratch)
        stores: dict[str, dict[str, str]] = {}
        if args.s3:
            (work / "s3").mkdir()
            server = stack.enter_context(running_weed(work / "s3")).server
            access = {"s3_endpoint": f"http://{server.endpoint}", "s3_access_key": server.access_key}
            access["s3_secret_key"] = server.secret_key
        seconds: dict[str, list[float]] = {engine: [] for engine in ENGINES}
        reports: dict[str, list[str]] = {}
        with running_ray_cluster(work) as address:
            for run in range(args.repeat):  # alternate, so that a busy spell does not favour one engine
                for engine in ENGINES if run % 2 == 0 else ENGINES[::-1]:
                    store = {**access, "s3_bucket": f"{engine}{run}-{uuid.uuid4().hex[:8]}"} if args.s3 else {}
                    stores[f"{engine}{run}"] = store
                    took, reports[engine] = ingest(
                        engine, args.path, work / f"{engine}{run}", args.model, address, store
                    )
                    seconds[engine].append(took)
        stored = {engine: points(work / f"{engine}0", args.model, stores[f"{engine}0"]) for engine in ENGINES}
    local, ray = stored["local"], stored["ray"]
    same_points = local.keys() == ray.keys() and all(local[i][0] == ray[i][0] for i in local)
    largest = max((float(np.abs(local[i][1] - ray[i][1]).max()) for i in local if i in ray), default=0.0)
    files = len(reports["local"])
    best = {engine: min(times) for engine, times in seconds.items()}
    figures = {
        "files": files,
        "model": args.model,
        "store": "s3 (SeaweedFS on 127.0.0.1)" if args.s3 else "local (each data folder)",
        "local_s": [round(t, 1) for t in seconds["local"]],
        "ray_s": [round(t, 1) for t in seconds["ray"]],
        "local_img_s_best": round(files / best["local"], 1),
        "ray_img_s_best": round(files / best["ray"], 1),
        "ray_vs_local_best": round(best["local"] / best["ray"], 2),
        "same_report": reports["local"] == reports["ray"],
        "same_points_and_payloads": same_points,
        "largest_vector_difference": largest,
        "load_average": os.getloadavg(),
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
