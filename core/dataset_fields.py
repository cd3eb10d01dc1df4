"""Datasets, splits and labels of images, read and edited for the dataset QA analyses.

The payload fields (``occurrences``, ``datasets``, ``splits``, ``label``) belong to
``core.records``; until that module is merged this is the tiny accessor the QA modules use. Images
stored before those fields existed read as dataset "default", no split and no label.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from core.index import VectorIndex

DEFAULT_DATASET = "default"


def _list(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else []


def occurrences_of(row: dict[str, Any] | pd.Series) -> list[dict[str, Any]]:
    return [o for o in _list(row.get("occurrences")) if isinstance(o, dict)]


def splits_in(row: dict[str, Any] | pd.Series, dataset: str | None = None) -> list[str]:
    """The image's splits (within ``dataset`` when given), sorted."""
    occurrences = occurrences_of(row)
    if dataset is not None and occurrences:
        return sorted({o["split"] for o in occurrences if o.get("dataset") == dataset and o.get("split")})
    if dataset is not None and dataset not in datasets_in(row):
        return []
    return sorted({s for s in _list(row.get("splits")) if isinstance(s, str) and s})


def datasets_in(row: dict[str, Any] | pd.Series) -> list[str]:
    return sorted({d for d in _list(row.get("datasets")) if isinstance(d, str) and d}) or [DEFAULT_DATASET]


def label_of(row: dict[str, Any] | pd.Series) -> str | None:
    label = row.get("label")
    return label if isinstance(label, str) and label else None


def names_in_split(row: dict[str, Any] | pd.Series, split: str) -> list[str]:
    """The file names the image was uploaded under in ``split`` (its filename when none is recorded)."""
    names = [o.get("name") for o in occurrences_of(row) if o.get("split") == split and o.get("name")]
    return names or [str(row.get("filename", ""))]


def split_column(images: pd.DataFrame, dataset: str | None = None) -> list[list[str]]:
    return [splits_in(row, dataset) for row in _rows(images)]


def label_column(images: pd.DataFrame) -> list[str | None]:
    return [label_of(row) for row in _rows(images)]


def all_datasets(images: pd.DataFrame) -> list[str]:
    return sorted({d for row in _rows(images) for d in datasets_in(row)}) or [DEFAULT_DATASET]


def in_dataset(images: pd.DataFrame, dataset: str | None) -> pd.Series:
    """Which rows belong to ``dataset`` (all rows when None)."""
    if dataset is None:
        return pd.Series(True, index=images.index)
    return pd.Series([dataset in datasets_in(row) for row in _rows(images)], index=images.index, dtype=bool)


def _rows(images: pd.DataFrame) -> list[dict[str, Any]]:
    fields = [c for c in ("occurrences", "datasets", "splits", "label", "filename") if c in images]
    return images[fields].to_dict("records") if fields else [{} for _ in range(len(images))]


# --- edits (to be replaced by core.records' own) ------------------------------------------------


def derived_fields(occurrences: list[dict[str, Any]], label: str | None) -> dict[str, Any]:
    """``datasets`` / ``splits`` kept in step with ``occurrences``."""
    return {
        "occurrences": occurrences,
        "datasets": sorted({o.get("dataset") or DEFAULT_DATASET for o in occurrences}) or [DEFAULT_DATASET],
        "splits": sorted({o["split"] for o in occurrences if o.get("split")}),
        "label": label,
    }


def remove_split(
    index: VectorIndex, user: str, ids: Sequence[str], split: str, dataset: str | None = None
) -> tuple[list[str], list[str]]:
    """Drop the occurrences of ``ids`` in ``split`` (of ``dataset``, or any). Returns (ids edited,
    ids left with no occurrence at all, which the caller deletes)."""
    edited, emptied = [], []
    for record in index.retrieve(user, list(ids)):
        payload = record.payload
        occurrences = occurrences_of(payload)
        if not occurrences:  # an image recorded with splits only: one implicit occurrence per split
            occurrences = [
                {"name": payload.get("filename"), "dataset": d, "split": s, "label": label_of(payload)}
                for d in datasets_in(payload)
                for s in splits_in(payload)
            ]
        kept = [o for o in occurrences if not (o.get("split") == split and dataset in (None, o.get("dataset")))]
        if len(kept) == len(occurrences):
            continue
        if kept:
            index.set_payload(user, [record.id], derived_fields(kept, label_of(payload)))
            edited.append(record.id)
        else:
            emptied.append(record.id)
    return edited, emptied


def set_label(index: VectorIndex, user: str, ids: Sequence[str], label: str | None) -> int:
    """Give ``ids`` the label ``label`` (on the image and on each of its occurrences)."""
    records = index.retrieve(user, list(ids))
    for record in records:
        occurrences = [{**o, "label": label} for o in occurrences_of(record.payload)]
        values: dict[str, Any] = {"label": label}
        if occurrences:
            values["occurrences"] = occurrences
        index.set_payload(user, [record.id], values)
    return len(records)
