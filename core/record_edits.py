"""Edits of images' records (``core.records``): bulk label, split and dataset, and removing
occurrences (an image left without any goes to the user's trash, ``core.trash``: restorable).

Every write goes through ``VectorIndex.set_payload``, so the vector cache follows and the edits
survive restarts; every call is scoped to one user.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from core.index import VectorIndex
from core.records import (
    DEFAULT_DATASET,
    FIELDS,
    Occurrence,
    clean_name,
    derived,
    label,
    occurrence_key,
    occurrences,
)
from core.trash import Trash

OccurrenceKey = tuple[str, str, str | None]
#: Images read from the index at a time.
BATCH = 1000


def _batches(ids: Sequence[str]) -> list[list[str]]:
    ids = list(dict.fromkeys(ids))
    return [ids[start : start + BATCH] for start in range(0, len(ids), BATCH)]


def set_label(index: VectorIndex, user: str, ids: Sequence[str], value: str | None) -> int:
    """Set (None: clear) the label of the user's images among ``ids``; returns images found."""
    value = clean_name(value, "label")
    found = 0
    for batch in _batches(ids):
        mine = [r.id for r in index.retrieve(user, batch)]
        if mine:
            index.set_payload(user, mine, {"label": value})
            found += len(mine)
    return found


def set_split(index: VectorIndex, user: str, ids: Sequence[str], value: str | None) -> int:
    """Put every occurrence of the user's images among ``ids`` in split ``value`` (None: no
    split); returns images changed."""
    value = clean_name(value, "split")
    return _rewrite(index, user, ids, lambda entry: {**entry, "split": value})


def set_dataset(index: VectorIndex, user: str, ids: Sequence[str], value: str | None) -> int:
    """Move every occurrence of the user's images among ``ids`` to dataset ``value`` (None:
    "default"); returns images changed."""
    value = clean_name(value, "dataset") or DEFAULT_DATASET
    return _rewrite(index, user, ids, lambda entry: {**entry, "dataset": value})


def _rewrite(index: VectorIndex, user: str, ids: Sequence[str], change: Callable[[Occurrence], Occurrence]) -> int:
    changed = 0
    for record in (r for batch in _batches(ids) for r in index.retrieve(user, batch)):
        values = derived([change(e) for e in occurrences(record.payload)], label(record.payload))
        if any(values[field] != record.payload.get(field) for field in FIELDS):
            index.set_payload(user, [record.id], values)
            changed += 1
    return changed


@dataclass(frozen=True)
class OccurrenceRemoval:
    """What a removal did: occurrences removed, images kept (with fewer occurrences), images deleted."""

    removed: int = 0
    kept_images: int = 0
    deleted_images: int = 0

    def __add__(self, other: OccurrenceRemoval) -> OccurrenceRemoval:
        return OccurrenceRemoval(
            self.removed + other.removed,
            self.kept_images + other.kept_images,
            self.deleted_images + other.deleted_images,
        )


def remove_occurrences(
    trash: Trash, user: str, image_id: str, keys: Sequence[OccurrenceKey] | None
) -> OccurrenceRemoval:
    """Remove occurrences of one image by key (path, dataset, split; None: all of them). An image
    left without occurrences is moved to ``trash`` (its collection's)."""
    index = trash.index
    records = index.retrieve(user, [image_id])
    if not records:
        return OccurrenceRemoval()
    payload = records[0].payload
    entries = occurrences(payload)
    drop = None if keys is None else {(path, dataset or DEFAULT_DATASET, split) for path, dataset, split in keys}
    left = [] if drop is None else [e for e in entries if occurrence_key(e) not in drop]
    if not left:
        batch = trash.move(user, [image_id])
        return OccurrenceRemoval(len(entries), 0, batch.count if batch else 0)
    if len(left) == len(entries):
        return OccurrenceRemoval(0, 1, 0)
    index.set_payload(user, [image_id], derived(left, label(payload)))
    return OccurrenceRemoval(len(entries) - len(left), 1, 0)


def remove_from_split(
    trash: Trash, user: str, ids: Sequence[str], split: str, dataset: str | None = None
) -> OccurrenceRemoval:
    """Remove the occurrences in ``split`` (of ``dataset``, or of any) of the user's images among
    ``ids`` (a leak out of the evaluation split); an image left without occurrences goes to the trash."""
    total = OccurrenceRemoval()
    for record in (r for batch in _batches(ids) for r in trash.index.retrieve(user, batch)):
        keys = [
            occurrence_key(e)
            for e in occurrences(record.payload)
            if e.get("split") == split and dataset in (None, e.get("dataset") or DEFAULT_DATASET)
        ]
        if keys:
            total += remove_occurrences(trash, user, record.id, keys)
    return total
