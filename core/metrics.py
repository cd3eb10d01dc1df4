"""Prometheus metrics (prometheus-client), served on a side port when ``VAD_METRICS_PORT`` is set.

The metrics are always counted in-process (it costs nanoseconds); only the HTTP endpoint is optional.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter

from prometheus_client import Counter, Histogram, disable_created_metrics, start_http_server

log = logging.getLogger(__name__)
disable_created_metrics()  # no `*_created` timestamp series: half the scrape, no value for dashboards

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SLOW = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0)

PAGE_RUNS = Counter("app_page_runs_total", "Page runs: views and widget interactions, per page", ["page"])
REQUESTS = Counter("app_requests_total", "Page actions handled", ["page", "action", "outcome"])
REQUEST_DURATION = Histogram("app_request_duration_seconds", "Time per page action", ["page", "action"], buckets=_SLOW)
ERRORS = Counter("app_errors_total", "Page actions and background steps that failed", ["page", "action"])
IMAGES_INGESTED = Counter("images_ingested_total", "Files through the ingest pipeline, by result", ["outcome"])
INGEST_DURATION = Histogram("ingest_duration_seconds", "Time per ingest call (one upload or CLI run)", buckets=_SLOW)
IMAGE_PROCESSING = Histogram(
    "image_processing_duration_seconds",
    "Time per image and stage: decode (decode, hashes, stats, thumbnail), embed, store",
    ["stage"],
    buckets=_FAST,
)
VECTOR_SEARCH = Histogram(
    "vector_search_duration_seconds", "Time per vector index search, by query kind", ["kind"], buckets=_FAST
)
QUERY_EMBEDDING = Histogram(
    "query_embedding_duration_seconds", "Time to embed a search query (text or uploaded image)", ["kind"], buckets=_FAST
)

_server_lock = threading.Lock()
_server_port: int | None = None


class MetricsServerError(RuntimeError):
    """The metrics endpoint could not be started (port taken, bad address)."""


def start_metrics_server(port: int, address: str = "0.0.0.0") -> int:
    """Serve ``/metrics`` on ``address:port`` once per process; later calls return the same port."""
    global _server_port
    with _server_lock:
        if _server_port is not None:
            return _server_port
        try:
            start_http_server(port, addr=address)
        except OSError as exc:
            raise MetricsServerError(f"VAD_METRICS_PORT: cannot serve metrics on {address}:{port} ({exc})") from exc
        _server_port = port
        log.info("metrics endpoint on http://%s:%d/metrics", address, port)
        return port


@contextmanager
def timed(histogram: Histogram, **labels: str) -> Iterator[None]:
    """Observe the block's duration in ``histogram`` (with ``labels``), also when it raises."""
    start = perf_counter()
    try:
        yield
    finally:
        (histogram.labels(**labels) if labels else histogram).observe(perf_counter() - start)
