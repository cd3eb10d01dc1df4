"""Upload logic: ingest uploaded files and archives, then warn about near-duplicates of stored images."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from core.ingest import IngestResult, ProgressCallback, StageCallback
from core.layouts import IngestOptions
from core.services import Services
from core.sources import IngestItem, items_from_upload


@dataclass(frozen=True)
class NearDuplicate:
    """A newly stored image whose pHash is within the threshold of an image stored before."""

    new_id: str
    new_filename: str
    existing_id: str
    existing_filename: str
    distance: int


def ingest_uploads(
    services: Services,
    user: str,
    files: Iterable[tuple[str, bytes]],
    progress: ProgressCallback | None = None,
    stages: StageCallback | None = None,
    options: IngestOptions | None = None,
) -> list[IngestResult]:
    """Ingest uploaded files through the services' pipeline (the same worker processes as the CLI);
    ``options``: their dataset, split and label (``core.layouts``)."""
    items: list[IngestItem] = [item for name, data in files for item in items_from_upload(name, data)]
    return services.ingestor().ingest(items, user, progress=progress, stages=stages, options=options)


def phash_matrix(hashes: Sequence[str]) -> np.ndarray:
    """Hex pHashes as uint64, for vectorised Hamming distances."""
    return np.array([int(h, 16) for h in hashes], dtype=np.uint64)


def near_duplicates_of_new(
    services: Services, user: str, new_ids: Sequence[str], threshold: int | None = None
) -> list[NearDuplicate]:
    """For each new image, the closest earlier image within ``threshold`` bits (one per new image)."""
    if not new_ids:
        return []
    threshold = services.settings.phash_threshold if threshold is None else threshold
    new_set = set(new_ids)
    new, old = [], []
    for record in services.index.scroll(user):
        (new if record.id in new_set else old).append(record)
    if not new or not old:
        return []
    old_hashes = phash_matrix([r.payload["phash"] for r in old])
    found = []
    for record in new:
        distances = np.bitwise_count(old_hashes ^ np.uint64(int(record.payload["phash"], 16)))
        best = int(np.argmin(distances))
        if distances[best] <= threshold:
            found.append(
                NearDuplicate(
                    record.id,
                    record.payload["filename"],
                    old[best].id,
                    old[best].payload["filename"],
                    int(distances[best]),
                )
            )
    return sorted(found, key=lambda d: (d.distance, d.new_filename))
