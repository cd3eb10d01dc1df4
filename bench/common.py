"""Small helpers shared by the benchmarks."""

from __future__ import annotations

import resource
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

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


def synthetic_payload(
    user: str, number: int, point: str, rng: np.random.Generator, quality: dict[str, float] | None = None
) -> dict[str, Any]:
    """A plausible image payload for synthetic points (no stored original)."""
    from core.storage import image_key, thumbnail_key

    now = datetime.now(UTC)
    payload: dict[str, Any] = {
        "user": user,
        "filename": f"{user}_{number:06d}.jpg",
        "sha256": uuid.uuid4().hex * 2,
        "phash": f"{rng.integers(0, 2**63):016x}",
        "width": 640,
        "height": 480,
        "content_size": [640, 480],  # what ingest records for a picture without a border
        "bytes": 120_000,
        "format": "JPEG",
        "created_at": now.isoformat(timespec="seconds"),
        "created_ts": now.timestamp(),
        "original_key": image_key(user, point, "jpg"),
        "thumbnail_key": thumbnail_key(user, point),
        "tags": [],
    }
    payload["content_phash"] = payload["phash"]
    if quality is not None:
        payload["quality"] = quality
    return payload
