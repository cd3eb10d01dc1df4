"""Anomaly quality on real photos: AUROC and precision at the number of outliers, per method.

    python -m bench.anomalies_quality [../shared/datasets/imagenet-sample] [--groups dog vehicle bird device container]
        [--draws 10] [--rate 0.03] [--k 10] [--model efficientnet-lite0]

For each coarse group of labels.csv the inliers are all photos of that group and the outliers
about ``--rate`` of that count, drawn from photos outside the group (``--draws`` fixed seeds,
averaged: a group of 67 photos gets only 2 outliers, so one draw is noisy). Vectors are
EfficientNet-Lite0 features (or ``--model``'s) of the same working copies the ingest pipeline
embeds, cached in a temporary .npy file. The Tukey-fence columns show what the app flags
(``core.anomalies.tukey_threshold``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from bench.common import timer
from bench.tables import table
from core.anomalies import METHODS, tukey_threshold
from core.embed import load_embedder
from core.images import decode

DEFAULT_MODEL = "efficientnet-lite0"
DEFAULT_DATASET = Path("../shared/datasets/imagenet-sample")
METHOD_NAMES = ("knn", "lof", "iforest")


@dataclass
class Photo:
    file: str
    groups: frozenset[str]


@dataclass
class Result:
    """Means over the draws for one group and method."""

    group: str
    method: str
    inliers: int
    outliers: int
    auroc: float
    auroc_std: float
    precision_at_n: float
    flagged: float
    fence_recall: float


def read_labels(dataset: Path) -> list[Photo]:
    with (dataset / "labels.csv").open(newline="") as handle:
        return [Photo(row["file"], frozenset(filter(None, row["groups"].split(";")))) for row in csv.DictReader(handle)]


def embeddings(dataset: Path, photos: list[Photo], model: str, batch: int = 32) -> np.ndarray:
    """The model's vectors of every photo, from a temporary cache when present."""
    key = hashlib.sha256("\n".join([model, *(p.file for p in photos)]).encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"vad-bench-{model.replace(':', '-').replace('/', '-')}-{key}.npy"
    if cache.exists():
        print(f"embeddings from cache {cache}")
        return np.load(cache)
    embedder = load_embedder(model, None, "cpu")
    parts = []
    with timer() as t:
        for start in range(0, len(photos), batch):
            images = [decode((dataset / "images" / p.file).read_bytes()).image for p in photos[start : start + batch]]
            parts.append(embedder.embed_images(images))
    vectors = np.vstack(parts)
    print(f"embedded {len(photos)} photos in {t[0]:.0f} s (decode + {model}, CPU); cached in {cache}")
    np.save(cache, vectors)
    return vectors


def draw(photos: list[Photo], group: str, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers of the group's photos plus ``rate`` as many outsiders, and 1/0 outlier labels."""
    inside = np.array([i for i, p in enumerate(photos) if group in p.groups])
    outside = np.array([i for i, p in enumerate(photos) if group not in p.groups])
    count = max(1, round(rate * len(inside)))
    outliers = np.random.default_rng(seed).choice(outside, size=count, replace=False)
    rows = np.concatenate([inside, outliers])
    return rows, np.concatenate([np.zeros(len(inside), int), np.ones(count, int)])


def evaluate(vectors: np.ndarray, labels: np.ndarray, method: str, k: int) -> tuple[float, float, int, float]:
    """AUROC, precision at the number of outliers, Tukey-fence flags and the outliers' share flagged."""
    scores = METHODS[method].scores(vectors, k=k)
    count = int(labels.sum())
    top = np.argsort(-scores, kind="stable")[:count]
    flagged = scores > tukey_threshold(scores)
    fence_recall = float(flagged[labels == 1].mean())
    return float(roc_auc_score(labels, scores)), float(labels[top].mean()), int(flagged.sum()), fence_recall


def run_group(photos: list[Photo], vectors: np.ndarray, group: str, args: argparse.Namespace) -> list[Result]:
    per_method: dict[str, list[tuple[float, float, int, float]]] = {m: [] for m in METHOD_NAMES}
    for draw_number in range(args.draws):
        rows, labels = draw(photos, group, args.rate, seed=args.seed + draw_number)
        for method in METHOD_NAMES:
            per_method[method].append(evaluate(vectors[rows], labels, method, args.k))
    inliers = int((labels == 0).sum())
    results = []
    for method, values in per_method.items():
        auroc, precision, flagged, fence = (np.array(column, dtype=float) for column in zip(*values, strict=True))
        results.append(
            Result(
                group,
                method,
                inliers,
                len(labels) - inliers,
                float(auroc.mean()),
                float(auroc.std()),
                float(precision.mean()),
                float(flagged.mean()),
                float(fence.mean()),
            )
        )
    return results


def group_table(results: list[Result]) -> str:
    headers = [
        "group",
        "inliers",
        "outliers",
        "method",
        "AUROC (mean ± sd)",
        "P@outliers",
        "flagged",
        "outliers flagged",
    ]
    rows = [
        [
            r.group,
            r.inliers,
            r.outliers,
            r.method,
            f"{r.auroc:.3f} ± {r.auroc_std:.3f}",
            f"{r.precision_at_n:.2f}",
            f"{r.flagged:.1f}",
            f"{100 * r.fence_recall:.0f} %",
        ]
        for r in results
    ]
    return table(headers, rows)


def mean_table(results: list[Result]) -> str:
    rows = []
    for method in METHOD_NAMES:
        mine = [r for r in results if r.method == method]
        rows.append(
            [
                method,
                f"{np.mean([r.auroc for r in mine]):.3f}",
                f"{np.mean([r.precision_at_n for r in mine]):.2f}",
                f"{100 * np.mean([r.fence_recall for r in mine]):.0f} %",
            ]
        )
    return table(["method", "mean AUROC", "mean P@outliers", "outliers flagged (Tukey fence)"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, nargs="?", default=DEFAULT_DATASET)
    parser.add_argument("--groups", nargs="+", default=["dog", "vehicle", "bird", "device", "container"])
    parser.add_argument("--draws", type=int, default=10, help="outlier draws (seeds) per group")
    parser.add_argument("--rate", type=float, default=0.03, help="outliers per inlier")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="VAD_MODEL name, e.g. ViT-B-32:openai where CLIP loads")
    args = parser.parse_args()

    photos = read_labels(args.dataset)
    vectors = embeddings(args.dataset, photos, args.model)
    results = [r for group in args.groups for r in run_group(photos, vectors, group, args)]
    print(f"\n{args.model} features, k={args.k}, outliers {args.rate:.0%} of each group, {args.draws} draws\n")
    print(group_table(results))
    print(f"\nmean over the groups ({', '.join(args.groups)})\n")
    print(mean_table(results))


if __name__ == "__main__":
    main()
