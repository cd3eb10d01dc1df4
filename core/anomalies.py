"""Anomaly scores: images unlike the rest of the collection, plus image-quality checks.

Methods share one shape (imagededup-style, chosen by name): ``scores(vectors, k, graph)`` returns
one number per image, higher = more unusual. Neighbour-based methods read the collection's shared
neighbour graph (``core.graph``) instead of searching on their own. Images are flagged above a
Tukey fence (Q3 + 1.5 IQR) of their collection's scores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

from core.cache import ResultCache
from core.collection import Collection, load_collection
from core.graph import NeighbourGraph, build
from core.quality import CHECKS, run_checks
from core.reviews import ANOMALY_REVIEWS
from core.services import AnalysisServices, Services

DEFAULT_K = 10
MIN_IMAGES = 3  # fewer images: nothing can be unlike "the rest"


class AnomalyMethod(ABC):
    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]

    #: whether ``scores`` reads the neighbour graph (it holds ``neighbours(k)`` per image)
    uses_graph: ClassVar[bool] = True

    @abstractmethod
    def scores(self, vectors: np.ndarray, k: int = DEFAULT_K, graph: NeighbourGraph | None = None) -> np.ndarray:
        """One score per row of ``vectors``; higher = more anomalous. ``graph``: the rows' neighbour
        graph (built here when not given)."""

    def neighbours(self, k: int) -> int:
        """How many neighbours per image ``scores`` reads from the graph."""
        return k


def _graph(vectors: np.ndarray, k: int, graph: NeighbourGraph | None) -> NeighbourGraph:
    return graph if graph is not None and graph.k >= k else build(vectors, k)


METHODS: dict[str, AnomalyMethod] = {}


def register(cls: type[AnomalyMethod]) -> type[AnomalyMethod]:
    METHODS[cls.name] = cls()
    return cls


@register
class KnnDistance(AnomalyMethod):
    name, label = "knn", "k-NN distance"
    description = "mean cosine distance to the k most similar images"

    def scores(self, vectors: np.ndarray, k: int = DEFAULT_K, graph: NeighbourGraph | None = None) -> np.ndarray:
        k = min(k, len(vectors) - 1)
        _, similarities = _graph(vectors, k, graph).first(k)
        return (1.0 - similarities).mean(axis=1)


@register
class LocalOutlier(AnomalyMethod):
    name, label = "lof", "Local Outlier Factor"
    description = "density of an image's neighbourhood compared with its neighbours' (scikit-learn)"

    def neighbours(self, k: int) -> int:
        return k + 1

    def scores(self, vectors: np.ndarray, k: int = DEFAULT_K, graph: NeighbourGraph | None = None) -> np.ndarray:
        n = len(vectors)
        k = min(k, n - 2)
        # scikit-learn asks a precomputed graph for k + 1 neighbours of each training sample (it
        # expects the sample itself among them and drops it, or drops the farthest when it's absent).
        width = k + 1
        indices, similarities = _graph(vectors, width, graph).first(width)
        distances = np.clip(1.0 - similarities, 1e-9, None)  # sparse graphs drop exact zeros
        graph = csr_matrix((distances.ravel(), indices.ravel(), np.arange(0, n * width + 1, width)), shape=(n, n))
        model = LocalOutlierFactor(n_neighbors=k, metric="precomputed")
        model.fit(graph)
        return -model.negative_outlier_factor_


@register
class IsolationForestMethod(AnomalyMethod):
    name, label = "iforest", "Isolation Forest"
    description = "how quickly random splits isolate an image (scikit-learn, on 50 PCA components)"

    uses_graph = False

    def scores(self, vectors: np.ndarray, k: int = DEFAULT_K, graph: NeighbourGraph | None = None) -> np.ndarray:
        # 50 components keep what sets real outliers apart (bench/anomalies_quality.py: AUROC 0.77
        # on ImageNet groups; 0.12 with a handful of components). On tiny, tight synthetic sets
        # Isolation Forest is weak: prefer knn or lof there.
        components = min(50, vectors.shape[1], len(vectors))
        reduced = PCA(n_components=components, random_state=0).fit_transform(vectors)
        model = IsolationForest(n_estimators=200, random_state=0).fit(reduced)
        return -model.score_samples(reduced)


def tukey_threshold(scores: np.ndarray) -> float:
    q1, q3 = np.percentile(scores, [25, 75])
    return float(q3 + 1.5 * (q3 - q1))


def detect_anomalies(
    collection: Collection, method: str = "knn", k: int = DEFAULT_K, checks: bool = True
) -> pd.DataFrame:
    """One row per image, most anomalous first: ``anomaly_score``, ``is_anomaly``, the quality
    checks' ``<check>_score`` / ``is_<check>_issue`` columns and a readable ``reasons``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    images = collection.images
    columns = ["id", "filename", "width", "height", "bytes", "thumbnail_key", "created_at"]
    frame = images.reindex(columns=columns).copy()
    if len(images) >= MIN_IMAGES:
        chosen = METHODS[method]
        graph = collection.neighbours(chosen.neighbours(k)) if chosen.uses_graph else None
        scores = chosen.scores(collection.vectors, k, graph)
        threshold = tukey_threshold(scores)
    else:  # too few images to say what is unusual
        scores, threshold = np.zeros(len(images)), np.inf
    frame["anomaly_score"] = np.round(scores, 5)
    frame["anomaly_threshold"] = threshold
    frame["is_anomaly"] = scores > threshold
    issue_columns: list[str] = []
    if checks and len(images):
        quality = run_checks(images)
        frame = pd.concat([frame, quality], axis=1)
        issue_columns = [f"is_{name}_issue" for name in CHECKS]
    frame["reasons"] = [_reasons(row, issue_columns) for row in frame.itertuples(index=False)]
    return frame.sort_values("anomaly_score", ascending=False, kind="stable").reset_index(drop=True)


def attach_reviews(report: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """The current review of each image (``confirmed``, ``normal`` or empty) as a ``review`` column."""
    reviews = images.set_index("id")["anomaly_review"] if "anomaly_review" in images else pd.Series(dtype=object)
    out = report.copy()
    out["review"] = out["id"].map(reviews).where(lambda r: r.isin(ANOMALY_REVIEWS), "")
    return out


def anomaly_report(
    services: Services | AnalysisServices,
    user: str,
    method: str = "knn",
    k: int = DEFAULT_K,
    checks: bool = True,
    cache: ResultCache | None = None,
) -> pd.DataFrame:
    """The report the Anomalies page and ``python -m core anomalies`` show (cached on disk)."""
    collection = load_collection(services, user)
    report = cached_scores(services, collection, method, k, checks, cache)
    return attach_reviews(report, collection.images)


def cached_scores(
    services: Services | AnalysisServices,
    collection: Collection,
    method: str = "knn",
    k: int = DEFAULT_K,
    checks: bool = True,
    cache: ResultCache | None = None,
) -> pd.DataFrame:
    """``detect_anomalies``, from the disk cache when this set of images was scored before."""
    if cache is None:
        return detect_anomalies(collection, method, k, checks)
    key = {
        "fingerprint": collection.fingerprint,
        "model": services.model_name,
        "method": method,
        "k": k,
        "checks": checks,
        "version": 2,  # 2: quality checks calibrated on real photos
    }
    return cache.get_or_compute(
        "anomalies", collection.user, key, lambda: detect_anomalies(collection, method, k, checks)
    )


def _reasons(row: tuple, issue_columns: list[str]) -> str:
    values = row._asdict()
    reasons = ["unlike the rest of the collection"] if values["is_anomaly"] else []
    for column in issue_columns:  # "is_dark_issue": the check's label with its score, to judge borderline ones
        if values.get(column):
            name = column[3:-6]
            score = values.get(f"{name}_score")
            shown = "" if score is None or pd.isna(score) else f" ({score:.2f} < {CHECKS[name].threshold:g})"
            reasons.append(f"{CHECKS[name].label.lower()}{shown}")
    return ", ".join(reasons)


UNUSUAL = "unusual"


def filter_report(report: pd.DataFrame, show: list[str] | None = None, reviewed: bool = True) -> pd.DataFrame:
    """Rows flagged by any of ``show`` (``"unusual"`` and/or check names; None: any flag), optionally
    without the ones already reviewed."""
    selected = show if show is not None else [UNUSUAL, *CHECKS]
    mask = pd.Series(False, index=report.index)
    for name in selected:
        column = "is_anomaly" if name == UNUSUAL else f"is_{name}_issue"
        if column in report:
            mask |= report[column].fillna(False).astype(bool)
    if not reviewed:
        mask &= report["review"].fillna("") == ""
    return report[mask]
