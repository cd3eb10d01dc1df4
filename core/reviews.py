"""Review decisions, kept in each image's payload so they survive restarts and go with the image.

- ``not_duplicate_of``: ids the user said are not duplicates of this image;
- ``anomaly_review``: ``"confirmed"`` or ``"normal"`` (absent: not reviewed);
- ``label_review``: ``{"status": "kept" | "relabelled", "label": L}`` after a mislabel review.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import pandas as pd

from core.index import VectorIndex

ANOMALY_REVIEWS = ("confirmed", "normal")


def mark_not_duplicates(index: VectorIndex, user: str, ids: Sequence[str]) -> int:
    """Remember that none of ``ids`` are duplicates of each other; returns pairs recorded."""
    records = {r.id: r for r in index.retrieve(user, list(ids))}
    pairs = list(combinations(sorted(records), 2))
    for image_id, record in records.items():
        others = {b if a == image_id else a for a, b in pairs if image_id in (a, b)}
        merged = sorted(set(record.payload.get("not_duplicate_of") or []) | others)
        index.set_payload(user, [image_id], {"not_duplicate_of": merged})
    return len(pairs)


def not_duplicate_pairs(images: pd.DataFrame) -> set[frozenset[str]]:
    """All remembered 'not duplicates' pairs of a collection's payloads."""
    pairs: set[frozenset[str]] = set()
    if "not_duplicate_of" not in images:
        return pairs
    for image_id, others in zip(images["id"], images["not_duplicate_of"], strict=True):
        for other in others if isinstance(others, list) else []:
            pairs.add(frozenset((image_id, other)))
    return pairs


def set_anomaly_review(index: VectorIndex, user: str, ids: Sequence[str], status: str | None) -> None:
    """Confirm as anomalies, mark as normal, or clear (``None``) the review of ``ids``."""
    if status is not None and status not in ANOMALY_REVIEWS:
        raise ValueError(f"review must be one of {ANOMALY_REVIEWS} or None, got {status!r}")
    index.set_payload(user, list(ids), {"anomaly_review": status})


LABEL_REVIEWS = ("kept", "relabelled")


def set_label_review(index: VectorIndex, user: str, ids: Sequence[str], status: str, label: str | None) -> None:
    """Remember that the label ``label`` of ``ids`` was kept or given after a mislabel review (a
    review holds while the image keeps that label)."""
    if status not in LABEL_REVIEWS:
        raise ValueError(f"label review must be one of {LABEL_REVIEWS}, got {status!r}")
    index.set_payload(user, list(ids), {"label_review": {"status": status, "label": label}})


def label_reviews(images: pd.DataFrame, labels: Sequence[str | None]) -> list[str]:
    """Each image's label review (``kept``, ``relabelled`` or empty) while it still has the label
    the review was made for."""
    if "label_review" not in images:
        return [""] * len(images)
    out = []
    for review, label in zip(images["label_review"], labels, strict=True):
        valid = isinstance(review, dict) and review.get("status") in LABEL_REVIEWS and review.get("label") == label
        out.append(review["status"] if valid else "")
    return out
