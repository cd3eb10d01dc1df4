"""Class balance: images per split and label, classes that are nearly empty or over-represented,
and per-label counts of anomalies and duplicates (read from analyses already computed)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from core.collection import Collection
from core.dataset_fields import in_dataset, label_column, split_column
from core.duplicates import Cluster

NO_SPLIT = "(no split)"
UNLABELLED = "(unlabelled)"
NEAR_EMPTY_SHARE = 0.2  # a label with under a fifth of its split's median label count
OVER_SHARE = 3.0  # a label with over three times its split's median label count
MIN_IMAGES = 5  # ... or with fewer images than this in a split that has any


def split_label_counts(collection: Collection, dataset: str | None = None) -> pd.DataFrame:
    """Images per label (rows) and split (columns). An image in two splits counts in both."""
    images = collection.images
    inside = in_dataset(images, dataset).to_numpy() if len(images) else []
    pairs = [
        (label or UNLABELLED, split)
        for keep, splits, label in zip(inside, split_column(images, dataset), label_column(images), strict=True)
        if keep
        for split in (splits or [NO_SPLIT])
    ]
    if not pairs:
        return pd.DataFrame(dtype=int)
    frame = pd.DataFrame(pairs, columns=["label", "split"])
    table = pd.crosstab(frame["label"], frame["split"])
    table.columns.name, table.index.name = None, "label"
    return table.astype(int)


def flags(counts: pd.DataFrame) -> pd.DataFrame:
    """``near empty`` / ``over-represented`` / "" per cell of ``split_label_counts``; the
    unlabelled row is never flagged."""
    out = pd.DataFrame("", index=counts.index, columns=counts.columns)
    labelled = counts.drop(index=UNLABELLED, errors="ignore")
    for split in counts.columns:
        column = labelled[split]
        if column.sum() == 0 or len(column) < 2:
            continue
        median = float(column.median())
        near_empty = (column < NEAR_EMPTY_SHARE * median) | (column < MIN_IMAGES)
        out.loc[column.index[near_empty], split] = "near empty"
        out.loc[column.index[column > OVER_SHARE * median], split] = "over-represented"
    return out


def balance_rows(counts: pd.DataFrame) -> pd.DataFrame:
    """Long form of the counts (label, split, images, flag) for charts and export."""
    if counts.empty:
        return pd.DataFrame(columns=["label", "split", "images", "flag"])
    long = counts.reset_index().melt(id_vars="label", var_name="split", value_name="images")
    marks = flags(counts).reset_index().melt(id_vars="label", var_name="split", value_name="flag")
    return long.merge(marks, on=["label", "split"])


def per_label_issues(
    collection: Collection,
    anomalies: pd.DataFrame | None,
    clusters: Sequence[Cluster],
    dataset: str | None = None,
) -> pd.DataFrame:
    """Per label: images, anomalies (``is_anomaly`` of an anomaly report) and images in a duplicate
    cluster, with the shares."""
    images = collection.images
    inside = in_dataset(images, dataset)
    labels = pd.Series(label_column(images), index=images.index).fillna(UNLABELLED)[inside]
    ids = images.loc[inside, "id"]
    frame = pd.DataFrame({"id": ids.to_numpy(), "label": labels.to_numpy()})
    flagged = set()
    if anomalies is not None and "is_anomaly" in anomalies:
        flagged = set(anomalies.loc[anomalies["is_anomaly"].astype(bool), "id"])
    duplicated = {m for c in clusters for m in c.members}
    frame["anomalies"] = frame["id"].isin(flagged)
    frame["duplicates"] = frame["id"].isin(duplicated)
    table = frame.groupby("label").agg(
        images=("id", "size"), anomalies=("anomalies", "sum"), duplicates=("duplicates", "sum")
    )
    table["anomaly_share"] = (table["anomalies"] / table["images"]).round(3)
    table["duplicate_share"] = (table["duplicates"] / table["images"]).round(3)
    return table.astype({"anomalies": int, "duplicates": int}).sort_values("images", ascending=False)
