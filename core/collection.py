"""A user's whole collection for analysis: payloads as a DataFrame plus the vectors, row-aligned."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.images import open_rgb
from core.quality import STAT_COLUMNS, image_stats, stats_frame
from core.services import Services

log = logging.getLogger(__name__)


@dataclass
class Collection:
    """Rows of ``images`` and ``vectors`` describe the same images, in the same order."""

    user: str
    images: pd.DataFrame
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    @property
    def fingerprint(self) -> str:
        """Changes whenever an image is added or removed (or re-embedded with another model)."""
        digest = hashlib.sha256(self.user.encode())
        for image_id in sorted(self.images["id"]):
            digest.update(image_id.encode())
        return digest.hexdigest()[:24]


def load_collection(services: Services, user: str) -> Collection:
    """Every image of ``user`` with its vector; fills in quality stats older images lack."""
    rows, vectors = [], []
    for record in services.index.scroll(user, with_vectors=True):
        rows.append({"id": record.id, **record.payload})
        vectors.append(record.vector)
    images = pd.DataFrame(rows)
    if images.empty:
        dimension = services.embedder.dimension
        return Collection(user, pd.DataFrame(columns=["id", "filename", "quality"]), np.zeros((0, dimension), "f4"))
    if "quality" not in images:
        images["quality"] = None
    _backfill_quality(services, user, images)
    images = pd.concat([images, stats_frame(images["quality"])], axis=1)
    return Collection(user, images.reset_index(drop=True), np.vstack(vectors).astype(np.float32))


def _backfill_quality(services: Services, user: str, images: pd.DataFrame) -> None:
    """Quality stats from the thumbnail for images stored before stats were recorded."""
    missing = images.index[[not isinstance(q, dict) or not q for q in images["quality"]]]
    for position in missing:
        row = images.loc[position]
        try:
            stats = image_stats(open_rgb(services.store.get(row["thumbnail_key"])))
        except Exception:  # an unreadable thumbnail: leave the checks blank for this image
            log.warning("no quality stats for %s", row["id"], exc_info=True)
            continue
        images.at[position, "quality"] = stats
        services.index.set_payload(user, [row["id"]], {"quality": stats})


__all__ = ["STAT_COLUMNS", "Collection", "load_collection"]
