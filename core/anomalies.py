"""Anomaly scores: images unlike the rest of the collection, plus image-quality checks.

Methods share one shape (imagededup-style, chosen by name): ``scores(vectors, k, graph)`` returns
one number per image, higher = more unusual, and ``flag(scores, graph)`` says which are flagged.
Neighbour-based methods read the collection's shared neighbour graph (``core.graph``) instead of
searching on their own. Images are flagged above a Tukey fence (Q3 + 1.5 IQR) of their
collection's scores; the default, ``multiscale``, also flags the small groups of similar outliers
linked to a flagged image (``core.anomaly_groups``). Linked flagged images form the report's
``group`` column (0: a single outlier or not flagged).
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

from core.anomaly_groups import distance_to_rest, group_numbers, grow_flags
from core.cache import ResultCache
from core.collection import Collection, load_collection
from core.graph import GRAPH_K, NeighbourGraph, build
from core.quality import CHECKS, run_checks
from core.reviews import ANOMALY_REVIEWS
from core.services import AnalysisServices, Services

DEFAULT_METHOD = "multiscale"
DEFAULT_K = 10
CACHE_VERSION = 3  # 2: quality checks calibrated on real photos; 3: multiscale default, groups
MIN_IMAGES = 3  # fewer images: nothing can be unlike "the rest"


class AnomalyMethod(ABC):
    name: ClassVar[str]
    label: ClassVar[str]
    description: ClassVar[str]

    #: whether ``scores`` reads the neighbour graph (it holds ``neighbours(k)`` per image)
    uses_graph: ClassVar[bool] = True
    #: whether ``k`` changes the scores
    uses_k: ClassVar[bool] = True
    #: shown next to the method where it is offered (e.g. a method that fails the benchmark)
    warning: ClassVar[str] = ""

    @abstractmethod
    def scores(self, vectors: np.ndarray, k: int = DEFAULT_K, graph: NeighbourGraph | None = None) -> np.ndarray:
        """One score per row of ``vectors``; higher = more anomalous. ``graph``: the rows' neighbour
        graph (built here when not given)."""

    def neighbours(self, k: int) -> int:
        """How many neighbours per image ``scores`` reads from the graph."""
        return k

    def flag(self, scores: np.ndarray, graph: NeighbourGraph | None) -> tuple[np.ndarray, float]:
        """Which images are flagged, and the threshold shown: above the Tukey fence."""
        threshold = tukey_threshold(scores)
        return scores > threshold, threshold


def _graph(vectors: np.ndarray, k: int, graph: NeighbourGraph | None) -> NeighbourGraph:
    return graph if graph is not None and graph.k >= k else build(vectors, k)


METHODS: dict[str, AnomalyMethod] = {}


def register(cls: type[AnomalyMethod]) -> type[AnomalyMethod]:
    METHODS[cls.name] = cls()
    return cls


@register
class MultiScaleKnn(AnomalyMethod):
    name, label = "multiscale", "k-NN over several scales (default)"
    description = (
        "mean cosine distance to the nearest 5, 8, 12, ... images, up to half the collection (at most 50), "
        "each scaled by the collection's spread, the largest kept; flags single outliers and small groups "
        "of similar ones"
    )
    uses_k = False
    SMALLEST = 5
    STEP = 1.5
    FRACTION = 0.5
    # An image above Q3 + 0.5 IQR joins the flagged images it is linked to when their mean score is
    # above Q3 + 0.75 IQR (bench/anomalies_quality.py: planted groups and scattered outliers alike).
    CANDIDATE_FENCE = 0.5
    GROUP_FENCE = 0.75

    def neighbours(self, k: int) -> int:
        return GRAPH_K

    @classmethod
    def scales(cls, n: int) -> list[int]:
        """Neighbourhood sizes: from ``SMALLEST`` up to ``FRACTION`` of the collection (graph's k at most)."""
        top = max(1, min(GRAPH_K, max(cls.SMALLEST, int(cls.FRACTION * n)), n - 1))
        sizes, k = [], min(cls.SMALLEST, top)
        while k < top:
            sizes.append(k)
            k = max(k + 1, round(k * cls.STEP))
        return [*sizes, top]

    def scores(self, vectors: np.ndarray, k: int = DEFAULT_K, graph: NeighbourGraph | None = None) -> np.ndarray:
        sizes = self.scales(len(vectors))
        _, similarities = _graph(vectors, sizes[-1], graph).first(sizes[-1])
        # rounded: identical images get exactly equal distances, not float noise blown up by the scaling
        mean_distances = np.round(np.cumsum(1.0 - similarities.astype(np.float64), axis=1), 6)
        return np.max([_robust_z(mean_distances[:, size - 1] / size) for size in sizes], axis=0)

    def flag(self, scores: np.ndarray, graph: NeighbourGraph | None) -> tuple[np.ndarray, float]:
        flagged, threshold = super().flag(scores, graph)
        if graph is None or not flagged.any():
            return flagged, threshold
        q1, q3 = np.percentile(scores, [25, 75])
        candidates = scores > q3 + self.CANDIDATE_FENCE * (q3 - q1)
        return grow_flags(flagged, candidates, scores, q3 + self.GROUP_FENCE * (q3 - q1), graph), threshold


def _robust_z(values: np.ndarray) -> np.ndarray:
    """Distance from the median in interquartile ranges (0 everywhere when there is no spread)."""
    median = np.median(values)
    q1, q3 = np.percentile(values, [25, 75])
    spread = q3 - q1
    return (values - median) / spread if spread > 0 else values - median


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
    uses_k = False
    warning = (
        "Isolation Forest ranked real outliers worse than the other methods on this project's benchmark "
        "(bench/anomalies_quality.py, docs/benchmarks.md); use it to compare, not to decide."
    )

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
    collection: Collection, method: str = DEFAULT_METHOD, k: int = DEFAULT_K, checks: bool = True
) -> pd.DataFrame:
    """One row per image, most anomalous first: ``anomaly_score``, ``is_anomaly``, ``group`` (linked
    flagged images; 0: none), ``distance_to_rest`` (cosine distance to the nearest image outside the
    group), the quality checks' ``<check>_score`` / ``is_<check>_issue`` columns and ``reasons``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    images = collection.images
    columns = ["id", "filename", "width", "height", "bytes", "thumbnail_key", "created_at"]
    frame = images.reindex(columns=columns).copy()
    if len(images) >= MIN_IMAGES:
        chosen = METHODS[method]
        graph = collection.neighbours(max(chosen.neighbours(k), GRAPH_K))  # groups read it whatever the method
        scores = chosen.scores(collection.vectors, k, graph)
        flagged, threshold = chosen.flag(scores, graph)
        groups = group_numbers(flagged, scores, graph)
        distances = distance_to_rest(groups, graph)
    else:  # too few images to say what is unusual
        scores, threshold = np.zeros(len(images)), np.inf
        flagged, groups, distances = np.zeros(len(images), bool), np.zeros(len(images), int), np.zeros(len(images))
    frame["anomaly_score"] = np.round(scores, 5)
    frame["anomaly_threshold"] = round(threshold, 4) if np.isfinite(threshold) else threshold
    frame["is_anomaly"] = flagged
    frame["group"] = groups
    frame["distance_to_rest"] = np.round(distances, 4)
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


def attach_tags(report: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """Each image's current tags as a ``tags`` column (lists; tags change without rescoring)."""
    tags = images.set_index("id")["tags"] if "tags" in images else pd.Series(dtype=object)
    out = report.copy()
    out["tags"] = [list(t) if isinstance(t, list | tuple | np.ndarray) else [] for t in out["id"].map(tags)]
    return out


def anomaly_report(
    services: Services | AnalysisServices,
    user: str,
    method: str = DEFAULT_METHOD,
    k: int = DEFAULT_K,
    checks: bool = True,
    cache: ResultCache | None = None,
) -> pd.DataFrame:
    """The report the Anomalies page and ``python -m core anomalies`` show (cached on disk)."""
    collection = load_collection(services, user)
    report = cached_scores(services, collection, method, k, checks, cache)
    return attach_tags(attach_reviews(report, collection.images), collection.images)


def cached_scores(
    services: Services | AnalysisServices,
    collection: Collection,
    method: str = DEFAULT_METHOD,
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
        "version": CACHE_VERSION,
    }
    return cache.get_or_compute(
        "anomalies", collection.user, key, lambda: detect_anomalies(collection, method, k, checks)
    )


def _reasons(row: tuple, issue_columns: list[str]) -> str:
    values = row._asdict()
    reasons = []
    if values["is_anomaly"]:
        group = values.get("group", 0)
        reasons.append(f"unlike the rest (group {group})" if group else "unlike the rest of the collection")
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


def quality_problems(report: pd.DataFrame, check: str) -> pd.DataFrame:
    """Images flagged by ``check``, worst first (lowest ``<check>_score``)."""
    if check not in CHECKS:
        raise ValueError(f"unknown check {check!r}; choose one of {', '.join(CHECKS)}")
    column = f"is_{check}_issue"
    if column not in report:
        return report.iloc[0:0]
    flagged = report[report[column].fillna(False).astype(bool)]
    return flagged.sort_values(f"{check}_score", ascending=True, kind="stable")


def check_counts(report: pd.DataFrame) -> dict[str, int]:
    """How many images each quality check flags."""
    return {
        name: int(report[f"is_{name}_issue"].fillna(False).sum()) for name in CHECKS if f"is_{name}_issue" in report
    }
