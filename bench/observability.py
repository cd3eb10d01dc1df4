"""What logs, metrics and health checks cost: per-action overhead, a scrape, and `doctor`.

    python -m bench.observability [--calls 20000]

Measures: one histogram observation (`metrics.timed`), one tracked action (`telemetry.track`: two
counters, a histogram and one masked JSON log line), a scrape of the metrics endpoint with every
page/action series populated, and `python -m core doctor` on the embedded defaults (a subprocess,
so torch's import and the model load are included).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import timeit
import urllib.request

from bench.common import percentiles_ms, timer
from core import metrics, telemetry
from core.logs import configure_logging
from core.settings import load_settings

PAGES = {
    "upload": ["upload"],
    "search": ["search_text", "search_image", "search_upload"],
    "gallery": ["tag", "delete"],
    "duplicates": ["find_duplicates", "delete_duplicates", "not_duplicates"],
    "anomalies": ["score_anomalies", "review"],
    "explorer": ["project", "tag", "delete"],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    configure_logging(load_settings({}), stream=io.StringIO())

    def observe() -> None:
        with metrics.timed(metrics.VECTOR_SEARCH, kind="text"):
            pass

    def tracked() -> None:
        with telemetry.track("bench", page="bench", user="someone", images=3):
            pass

    observe_us = timeit.timeit(observe, number=args.calls) / args.calls * 1e6
    track_us = timeit.timeit(tracked, number=args.calls) / args.calls * 1e6

    for page, actions in PAGES.items():
        for action in actions:
            with telemetry.track(action, page=page, user="someone"):
                pass
    port = metrics.start_metrics_server(_free_port(), "127.0.0.1")
    scrapes = []
    size = 0
    for _ in range(50):
        with timer() as took, urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            size = len(response.read())
        scrapes.append(took[0])

    doctor_runs = []
    with tempfile.TemporaryDirectory() as data:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VAD_")} | {"VAD_DATA_DIR": data}
        for _ in range(2):  # the first run also creates the data folder and the index
            with timer() as took:
                command = [sys.executable, "-m", "core", "doctor", "--format", "json"]
                done = subprocess.run(command, env=env, capture_output=True, text=True)
            doctor_runs.append({"seconds": round(took[0], 2), **_check_seconds(done.stdout)})

    print(
        json.dumps(
            {
                "metrics_timed_us_per_call": round(observe_us, 1),
                "telemetry_track_us_per_call": round(track_us, 1),
                "scrape": {**{k: round(v, 2) for k, v in percentiles_ms(scrapes).items()}, "bytes": size},
                "doctor_embedded_defaults": doctor_runs,
            },
            indent=2,
        )
    )


def _check_seconds(report: str) -> dict[str, float]:
    try:
        return {c["name"]: c["seconds"] for c in json.loads(report)["checks"]}
    except (ValueError, KeyError):
        return {"unreadable report": 0.0}


if __name__ == "__main__":
    main()
