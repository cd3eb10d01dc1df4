"""The Dataset QA page's facade: one user's collection and duplicate clusters, and the three views
computed from them (leaks between splits, likely mislabels, class balance)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from core.anomalies import cached_scores
from core.balance import per_label_issues, split_label_counts
from core.cache import ResultCache
from core.collection import Collection, load_collection
from core.dataset_fields import all_datasets, in_dataset, label_column, split_column
from core.duplicates import LEVELS, Cluster, duplicate_report
from core.leaks import LeakReport, find_leaks
from core.mislabels import DEFAULT_K, MislabelReport, detect_mislabels
from core.reviews import not_duplicate_pairs
from core.services import AnalysisServices, Services


@dataclass
class DatasetQA:
    """What every Dataset QA view reads: the collection and its duplicate clusters (all levels)."""

    collection: Collection
    clusters: list[Cluster]

    def datasets(self) -> list[str]:
        return all_datasets(self.collection.images)

    def splits(self, dataset: str | None = None) -> list[str]:
        images = self.collection.images
        return sorted({s for splits in split_column(images, dataset) for s in splits})

    def labels(self, dataset: str | None = None) -> list[str]:
        images = self.collection.images
        inside = in_dataset(images, dataset)
        return sorted({lab for lab, keep in zip(label_column(images), inside, strict=True) if lab and keep})

    def leaks(self, dataset: str | None = None, splits: Sequence[str] | None = None) -> LeakReport:
        return find_leaks(self.collection, self.clusters, dataset, splits)

    def mislabels(self, dataset: str | None = None, k: int = DEFAULT_K) -> MislabelReport:
        return detect_mislabels(self.collection, k, dataset)

    def balance(self, dataset: str | None = None) -> pd.DataFrame:
        return split_label_counts(self.collection, dataset)

    def label_issues(self, anomalies: pd.DataFrame | None, dataset: str | None = None) -> pd.DataFrame:
        return per_label_issues(self.collection, anomalies, self.clusters, dataset)


def duplicate_key(collection: Collection) -> tuple[str, int]:
    """What the duplicate clusters depend on beyond thresholds: the images and the remembered
    'not duplicates' (labels and splits do not change them)."""
    return collection.fingerprint, len(not_duplicate_pairs(collection.images))


def clusters_of(services: Services | AnalysisServices, collection: Collection) -> list[Cluster]:
    return duplicate_report(services, collection.user, LEVELS, collection=collection)


def load_qa(services: Services | AnalysisServices, user: str) -> DatasetQA:
    collection = load_collection(services, user)
    return DatasetQA(collection, clusters_of(services, collection))


def cached_anomalies(services: Services | AnalysisServices, collection: Collection) -> pd.DataFrame:
    """The Anomalies page's default report (k-NN, k 10, with checks) from its disk cache."""
    return cached_scores(services, collection, "knn", 10, True, ResultCache(services.settings.data_dir / "cache"))
