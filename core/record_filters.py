"""Filters of a collection's images by dataset, split and label (``core.records`` fields).

A filter keeps the images that match every field it sets; within a field, any of its values.
``None`` among the splits or labels stands for "no split" / "no label". Frames without the
columns (images stored before them) read with the defaults: dataset "default", no split, no label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.records import DEFAULT_DATASET, clean_name, list_value

#: How "no split" / "no label" is written in a ``--filter`` expression and shown in widgets.
NONE_TEXT = "(none)"
FILTER_KEYS = ("dataset", "split", "label")


@dataclass(frozen=True)
class RecordFilter:
    """Empty tuples: no condition on that field."""

    datasets: tuple[str, ...] = ()
    splits: tuple[str | None, ...] = ()
    labels: tuple[str | None, ...] = ()

    @property
    def active(self) -> bool:
        return bool(self.datasets or self.splits or self.labels)

    def describe(self) -> str:
        """E.g. ``dataset pets · split test or (none)``; "" when inactive."""
        parts = []
        for name, values in (("dataset", self.datasets), ("split", self.splits), ("label", self.labels)):
            if values:
                parts.append(f"{name} " + " or ".join(NONE_TEXT if v is None else v for v in values))
        return " · ".join(parts)


@dataclass(frozen=True)
class FilterChoices:
    """The values present in a collection, sorted (``has_no_*``: some image lacks one)."""

    datasets: list[str]
    splits: list[str]
    labels: list[str]
    has_no_split: bool
    has_no_label: bool


def image_datasets(images: pd.DataFrame) -> list[list[str]]:
    column = images["datasets"] if "datasets" in images else [None] * len(images)
    return [list_value(v) or [DEFAULT_DATASET] for v in column]


def image_splits(images: pd.DataFrame) -> list[list[str]]:
    column = images["splits"] if "splits" in images else [None] * len(images)
    return [list_value(v) for v in column]


def image_labels(images: pd.DataFrame) -> list[str | None]:
    column = images["label"] if "label" in images else [None] * len(images)
    return [v if isinstance(v, str) and v else None for v in column]


def filter_mask(images: pd.DataFrame, record_filter: RecordFilter | None) -> np.ndarray:
    """One bool per row of ``images``: whether the image matches the filter."""
    keep = np.ones(len(images), dtype=bool)
    if record_filter is None or not record_filter.active:
        return keep
    if record_filter.datasets:
        wanted = set(record_filter.datasets)
        keep &= np.array([bool(wanted.intersection(v)) for v in image_datasets(images)], dtype=bool)
    if record_filter.splits:
        wanted_splits = set(record_filter.splits)
        keep &= np.array(
            [bool(wanted_splits.intersection(v)) if v else None in wanted_splits for v in image_splits(images)],
            dtype=bool,
        )
    if record_filter.labels:
        wanted_labels = set(record_filter.labels)
        keep &= np.array([v in wanted_labels for v in image_labels(images)], dtype=bool)
    return keep


def apply_filter(images: pd.DataFrame, record_filter: RecordFilter | None) -> pd.DataFrame:
    """The rows of ``images`` that match (all of them when the filter is None or inactive)."""
    if record_filter is None or not record_filter.active:
        return images
    return images.loc[filter_mask(images, record_filter)]


def filter_choices(images: pd.DataFrame) -> FilterChoices:
    splits = image_splits(images)
    labels = image_labels(images)
    return FilterChoices(
        datasets=sorted({d for values in image_datasets(images) for d in values}),
        splits=sorted({s for values in splits for s in values}),
        labels=sorted({v for v in labels if v is not None}),
        has_no_split=any(not values for values in splits),
        has_no_label=any(v is None for v in labels),
    )


def parse_filter(expressions: Sequence[str]) -> RecordFilter:
    """A filter from ``KEY=VALUE`` expressions (``dataset``, ``split``, ``label``); a key given
    again adds a value; ``split=`` or ``split=(none)`` means no split. ValueError naming a bad one."""
    values: dict[str, list[str | None]] = {key: [] for key in FILTER_KEYS}
    for expression in expressions:
        key, sep, value = expression.partition("=")
        key = key.strip().lower()
        if not sep or key not in FILTER_KEYS:
            raise ValueError(f"bad filter {expression!r}: expected dataset=NAME, split=NAME or label=NAME")
        name = None if value.strip() in ("", NONE_TEXT) else clean_name(value, key)
        if name is None and key == "dataset":
            raise ValueError(f"bad filter {expression!r}: a dataset needs a name")
        values[key].append(name)
    return RecordFilter(
        datasets=tuple(v for v in values["dataset"] if v is not None),
        splits=tuple(dict.fromkeys(values["split"])),
        labels=tuple(dict.fromkeys(values["label"])),
    )
