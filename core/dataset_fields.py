"""Datasets, splits and labels of images as the dataset QA analyses read them (per row of an
images DataFrame, within one dataset or all). The fields and their defaults belong to
``core.records``; edits go through ``core.record_edits``.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from core import records
from core.records import DEFAULT_DATASET

Row = dict[str, Any] | pd.Series


def splits_in(row: Row, dataset: str | None = None) -> list[str]:
    """The image's splits (within ``dataset`` when given), sorted."""
    if dataset is None:
        return sorted(records.splits(row))
    return sorted(
        {
            o["split"]
            for o in records.occurrences(row)
            if (o.get("dataset") or DEFAULT_DATASET) == dataset and o.get("split")
        }
    )


def datasets_in(row: Row) -> list[str]:
    return sorted(records.datasets(row))


def label_of(row: Row) -> str | None:
    return records.label(row)


def names_in_split(row: Row, split: str) -> list[str]:
    """The file names the image was uploaded under in ``split`` (its filename when none is recorded)."""
    names = [o.get("name") for o in records.occurrences(row) if o.get("split") == split and o.get("name")]
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
    fields = [
        c
        for c in ("occurrences", "datasets", "splits", "label", "filename", "source_path", "created_at")
        if c in images
    ]
    return images[fields].to_dict("records") if fields else [{} for _ in range(len(images))]
