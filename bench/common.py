"""Small helpers shared by the benchmarks."""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def timer() -> Iterator[list[float]]:
    """``with timer() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    box = [0.0]
    start = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - start


def percentiles_ms(samples_s: list[float]) -> dict[str, float]:
    array = np.asarray(samples_s) * 1000
    return {"p50_ms": float(np.percentile(array, 50)), "p95_ms": float(np.percentile(array, 95))}
