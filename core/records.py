"""Where each stored image occurs: its file occurrences, datasets, splits and label.

Storage is deduplicated by content (one point per user and sha256), but every file that carried
those bytes is kept as an *occurrence* on the image's payload::

    occurrences: [{"name", "path", "dataset", "split", "label", "added_at"}, ...]
    datasets:    sorted names of the occurrences' datasets (at least ["default"])
    splits:      sorted names of the occurrences' splits (may be empty)
    label:       the image's current label (from its first labelled occurrence; bulk edits set it)

``datasets`` and ``splits`` are derived from the occurrences and rewritten with them. An
occurrence's own label records what its file said (its folder or manifest row); the image's
``label`` is one value, the one analyses use. Images stored before these fields existed read as
one occurrence (their file name) in dataset "default", no split and no label.

Edits of these fields (bulk labels, splits, removing occurrences) are in ``core.record_edits``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from core.index import VectorIndex
from core.names import display_name

DEFAULT_DATASET = "default"
#: Longest dataset, split or label name accepted.
MAX_NAME = 100
FIELDS = ("occurrences", "datasets", "splits", "label")
#: Images whose payloads are read at a time when occurrences are added.
_RETRIEVE_BATCH = 1000

Occurrence = dict[str, Any]


class InvalidName(ValueError):
    """A dataset, split or label name that cannot be stored; ``str(exc)`` says why."""


def clean_name(value: object, what: str) -> str | None:
    """A dataset, split or label name trimmed of spaces (None or blank: None); InvalidName if it
    holds control characters or is longer than ``MAX_NAME``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = " ".join(str(value).split())
    if not text:
        return None
    if any(ord(char) < 32 or 0x7F <= ord(char) < 0xA0 for char in str(value).strip()):
        raise InvalidName(f"{what} contains control characters: {display_name(str(value))}")
    if len(text) > MAX_NAME:
        raise InvalidName(f"{what} is longer than {MAX_NAME} characters: {display_name(text[:40])}…")
    return text


def occurrence(
    path: str,
    dataset: str | None = None,
    split: str | None = None,
    label: str | None = None,
    added_at: datetime | None = None,
) -> Occurrence:
    """One occurrence of a file: ``path`` inside its upload or folder (``/``-separated)."""
    path = path.replace("\\", "/")
    when = (added_at or datetime.now(UTC)).isoformat(timespec="seconds")
    return {
        "name": PurePosixPath(path).name,
        "path": path,
        "dataset": dataset or DEFAULT_DATASET,
        "split": split,
        "label": label,
        "added_at": when,
    }


def occurrence_key(entry: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """What makes two occurrences the same: path, dataset and split."""
    return entry.get("path") or "", entry.get("dataset") or DEFAULT_DATASET, entry.get("split")


# --- reading (with the defaults of images stored before these fields) ---------------------------


def occurrences(payload: Mapping[str, Any]) -> list[Occurrence]:
    """The image's occurrences; an older image reads as one occurrence of its file name."""
    found = payload.get("occurrences")
    if isinstance(found, list) and found:
        return [dict(entry) for entry in found]
    name = payload.get("filename") or ""
    return [
        {
            "name": name,
            "path": (payload.get("source_path") or name).replace("\\", "/"),
            "dataset": DEFAULT_DATASET,
            "split": None,
            "label": _text(payload.get("label")),
            "added_at": payload.get("created_at") or "",
        }
    ]


def datasets(payload: Mapping[str, Any]) -> list[str]:
    return list_value(payload.get("datasets")) or [DEFAULT_DATASET]


def splits(payload: Mapping[str, Any]) -> list[str]:
    return list_value(payload.get("splits"))


def label(payload: Mapping[str, Any]) -> str | None:
    return _text(payload.get("label"))


def occurrence_names(payload: Mapping[str, Any]) -> list[str]:
    """Every file name the image was stored under, in order, without repeats."""
    return list(dict.fromkeys(entry.get("name") or "" for entry in occurrences(payload)))


def list_value(value: object) -> list[str]:
    """A payload or DataFrame cell that should hold a list of names (missing, NaN: [])."""
    if isinstance(value, str):
        return [value]
    if value is None or isinstance(value, float):
        return []
    try:
        return [str(v) for v in value]  # type: ignore[union-attr]
    except TypeError:
        return []


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


# --- writing -----------------------------------------------------------------------------------


def derived(entries: Sequence[Mapping[str, Any]], current_label: str | None = None) -> dict[str, Any]:
    """The payload fields of an image with these occurrences; ``current_label`` (an earlier or
    edited label) is kept, else the first labelled occurrence gives it."""
    unique: dict[tuple[str, str, str | None], Occurrence] = {}
    for entry in entries:  # the first of equal occurrences stays (its upload time)
        unique.setdefault(occurrence_key(entry), dict(entry))
    kept = list(unique.values())
    return {
        "occurrences": kept,
        "datasets": sorted({e.get("dataset") or DEFAULT_DATASET for e in kept}) or [DEFAULT_DATASET],
        "splits": sorted({e["split"] for e in kept if e.get("split")}),
        "label": current_label or next((e["label"] for e in kept if e.get("label")), None),
    }


def merged(payload: Mapping[str, Any], new: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The payload fields after adding ``new`` occurrences, or None when none is new (same path,
    dataset and split as one the image has)."""
    entries = occurrences(payload)
    known = {occurrence_key(e) for e in entries}
    added = [dict(e) for e in new if occurrence_key(e) not in known]
    if not added and isinstance(payload.get("occurrences"), list) and payload["occurrences"]:
        return None
    return derived(entries + added, label(payload))


def add_occurrences(index: VectorIndex, user: str, new: Mapping[str, Sequence[Occurrence]]) -> int:
    """Append occurrences to the user's images (image id -> occurrences); returns images changed."""
    changed = 0
    ids = list(new)
    for start in range(0, len(ids), _RETRIEVE_BATCH):
        for record in index.retrieve(user, ids[start : start + _RETRIEVE_BATCH]):
            values = merged(record.payload, new[record.id])
            if values is not None:
                index.set_payload(user, [record.id], values)
                changed += 1
    return changed
