"""Leaks between splits: copies of one image in two splits (train/test, ...), at three levels.

- exact: one stored image recorded in 2+ splits (the same bytes uploaded twice), or two images with
  the same bytes or decoded pixels in different splits;
- near / semantic: a duplicate pair (``core.duplicates``) whose images sit in different splits.

Pairs come from the duplicate finder's clusters (so the shared neighbour graph, the Hamming search
and the remembered "not duplicates" apply unchanged); a leak's ``group`` is its duplicate cluster.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from core.collection import Collection, load_collection
from core.dataset_fields import in_dataset, names_in_split, split_column
from core.duplicates import LEVELS, Cluster, duplicate_report
from core.record_edits import remove_from_split
from core.services import AnalysisServices, Services
from core.trash import open_trash

COLUMNS = [
    "group",
    "level",
    "split_a",
    "split_b",
    "a_id",
    "a_filename",
    "b_id",
    "b_filename",
    "similarity",
    "phash_distance",
]


@dataclass
class LeakReport:
    """Every cross-split duplicate pair (one row per pair and split pair) and the splits compared."""

    pairs: pd.DataFrame  # COLUMNS, ordered by group
    splits: list[str]  # every split of the images compared (rows and columns of the matrix)

    def matrix(self, level: str | None = None) -> pd.DataFrame:
        """Leaked pairs per split pair (symmetric; the diagonal is always 0)."""
        pairs = self.pairs if level is None else self.pairs[self.pairs["level"] == level]
        counts = pd.DataFrame(0, index=self.splits, columns=self.splits, dtype=int)
        for (a, b), n in pairs.groupby(["split_a", "split_b"]).size().items():
            counts.loc[a, b] += n
            if a != b:
                counts.loc[b, a] += n
        return counts

    def level_counts(self) -> dict[str, int]:
        return {level: int((self.pairs["level"] == level).sum()) for level in LEVELS}

    def images_in(self, split: str) -> list[str]:
        """Ids of the images whose occurrence in ``split`` leaks (what "remove from split" removes)."""
        side_a = self.pairs.loc[self.pairs["split_a"] == split, "a_id"]
        side_b = self.pairs.loc[self.pairs["split_b"] == split, "b_id"]
        return sorted(set(side_a) | set(side_b))

    def to_json(self) -> str:
        return json.dumps(
            {
                "splits": self.splits,
                "levels": self.level_counts(),
                "matrix": self.matrix().to_dict(),
                "pairs": self.pairs.to_dict("records"),
            },
            indent=2,
        )

    def to_csv(self) -> str:
        return self.pairs.to_csv(index=False)


def find_leaks(
    collection: Collection,
    clusters: Sequence[Cluster],
    dataset: str | None = None,
    splits: Sequence[str] | None = None,
) -> LeakReport:
    """The leaks among ``collection``'s images (of ``dataset``), given its duplicate ``clusters``.

    ``splits``: only leaks between two of these (default: between any two splits)."""
    images = collection.images
    member = in_dataset(images, dataset).to_numpy() if len(images) else np.zeros(0, bool)
    split_of = dict(zip(images["id"], split_column(images, dataset), strict=True)) if len(images) else {}
    rows_of = images.set_index("id").to_dict("index") if len(images) else {}
    chosen = set(splits) if splits else None
    allowed = {i for i, inside in zip(images.get("id", []), member, strict=True) if inside}

    def wanted(a: str, b: str) -> bool:
        return a != b and (chosen is None or (a in chosen and b in chosen))

    rows: list[dict] = []
    group = 0
    for image_id in sorted(allowed):  # the same bytes recorded in two splits
        own = split_of[image_id]
        pairs = [(a, b) for a, b in combinations(own, 2) if wanted(a, b)]
        if pairs:
            group += 1
        for a, b in pairs:
            row = rows_of[image_id]
            rows.append(
                _row(group, "exact", a, b, image_id, names_in_split(row, a), image_id, names_in_split(row, b), 1.0, 0)
            )
    for cluster in clusters:
        found = []
        for link in cluster.links:
            if link["a"] not in allowed or link["b"] not in allowed:
                continue
            for a, b in _split_pairs(split_of[link["a"]], split_of[link["b"]]):
                if not wanted(a, b):
                    continue
                first, second = (link["a"], link["b"]) if a <= b else (link["b"], link["a"])
                split_a, split_b = sorted((a, b))
                found.append((split_a, split_b, first, second, link))
        if found:
            group += 1
        for split_a, split_b, first, second, link in found:
            rows.append(
                _row(
                    group,
                    link["level"],
                    split_a,
                    split_b,
                    first,
                    names_in_split(rows_of[first], split_a),
                    second,
                    names_in_split(rows_of[second], split_b),
                    link["similarity"],
                    link["phash_distance"],
                )
            )
    every_split = sorted({s for i in allowed for s in split_of[i]} if chosen is None else chosen)
    return LeakReport(pd.DataFrame(rows, columns=COLUMNS), every_split)


def _split_pairs(first: list[str], second: list[str]) -> set[tuple[str, str]]:
    """(split of the first image, split of the second) for every two different splits."""
    return {(a, b) for a in first for b in second if a != b}


def _row(
    group: int,
    level: str,
    split_a: str,
    split_b: str,
    a_id: str,
    a_names: list[str],
    b_id: str,
    b_names: list[str],
    similarity: float,
    phash_distance: int,
) -> dict:
    return {
        "group": group,
        "level": level,
        "split_a": split_a,
        "split_b": split_b,
        "a_id": a_id,
        "a_filename": ", ".join(a_names),
        "b_id": b_id,
        "b_filename": ", ".join(b_names),
        "similarity": round(float(similarity), 4),
        "phash_distance": int(phash_distance),
    }


def leak_report(
    services: Services | AnalysisServices,
    user: str,
    dataset: str | None = None,
    splits: Sequence[str] | None = None,
    collection: Collection | None = None,
    clusters: Sequence[Cluster] | None = None,
) -> LeakReport:
    """The report the Dataset QA page and ``python -m core leaks`` show (all three levels, the
    duplicate finder's default thresholds)."""
    collection = collection if collection is not None else load_collection(services, user)
    if clusters is None:
        clusters = duplicate_report(services, user, LEVELS, collection=collection)
    return find_leaks(collection, clusters, dataset, splits)


def remove_leaks_from(
    services: Services, user: str, report: LeakReport, split: str, dataset: str | None = None
) -> tuple[int, int]:
    """Remove the leaking images' occurrences in ``split`` (the evaluation split). An image left
    with no occurrence goes to the trash. Returns (images taken out of the split, images deleted)."""
    outcome = remove_from_split(open_trash(services), user, report.images_in(split), split, dataset)
    return outcome.kept_images + outcome.deleted_images, outcome.deleted_images
