"""Anomaly quality on real photos: AUROC, precision at the number of outliers and the flagged set.

    python -m bench.anomalies_quality [../shared/datasets/imagenet-sample] [--inliers dog mammal bird]
        [--planted-draws 8] [--groups dog vehicle bird device container] [--draws 10] [--rate 0.03] [--k 10]
        [--model efficientnet-lite0] [--skip-rate]

Planted cases (issue 13), per inlier group of ``--inliers`` and draw (seed): the group's photos plus

- grouped outliers: 8-15 photos of one other group (sharing no photo with the inliers);
- scattered outliers: one photo from each of 4-8 other groups;

scored by every method at its defaults and flagged as the app flags them (``method.flag``), on the
collection's neighbour graph (``core.graph.build``, as ``Collection.neighbours`` builds it).
Recall / precision: of the flagged set against the planted outliers.

Rate cases (``--skip-rate`` leaves them out): for each coarse group of labels.csv the inliers are
all photos of that group and the outliers about ``--rate`` of that count, drawn from photos outside
the group (``--draws`` fixed seeds, averaged: a group of 67 photos gets only 2 outliers, so one
draw is noisy). Vectors are
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
from core.graph import GRAPH_K, build
from core.images import decode

DEFAULT_MODEL = "efficientnet-lite0"
DEFAULT_DATASET = Path("../shared/datasets/imagenet-sample")
METHOD_NAMES = ("knn", "lof", "iforest")
PLANTED_METHODS = ("multiscale", "knn", "lof", "iforest")
GROUP_SIZES = (8, 15)  # grouped outliers: 8 to 15 photos of one other group
SCATTERED = (4, 8)  # scattered outliers: one photo from each of 4 to 8 other groups
MIN_GROUP = 8  # an outlier group needs at least this many photos outside the inliers


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


@dataclass
class Planted:
    """One planted case: rows of the photos, 1/0 outlier labels, and what was planted."""

    case: str  # "grouped" or "scattered"
    inliers: str
    outliers: str
    rows: np.ndarray
    labels: np.ndarray


def plant(photos: list[Photo], inliers: str, seed: int) -> list[Planted]:
    """The grouped and the scattered case of one draw."""
    rng = np.random.default_rng(seed)
    inside = [i for i, p in enumerate(photos) if inliers in p.groups]
    taken = set(inside)
    others = sorted({g for p in photos for g in p.groups} - {inliers})
    disjoint = [g for g in others if not any(g in photos[i].groups for i in inside)]

    def pool(group: str) -> list[int]:
        return [i for i, p in enumerate(photos) if group in p.groups and i not in taken]

    candidates = [g for g in disjoint if len(pool(g)) >= MIN_GROUP]
    group = candidates[rng.integers(len(candidates))]
    size = min(int(rng.integers(GROUP_SIZES[0], GROUP_SIZES[1] + 1)), len(pool(group)))
    grouped = rng.choice(pool(group), size=size, replace=False)
    chosen = rng.choice(
        disjoint, size=min(int(rng.integers(SCATTERED[0], SCATTERED[1] + 1)), len(disjoint)), replace=False
    )
    scattered: list[int] = []
    for name in chosen:
        left = [i for i in pool(name) if i not in scattered]
        if left:
            scattered.append(int(rng.choice(left)))

    def case(kind: str, outliers: list[int] | np.ndarray, what: str) -> Planted:
        rows = np.concatenate([inside, outliers]).astype(int)
        return Planted(kind, inliers, what, rows, np.r_[np.zeros(len(inside), int), np.ones(len(outliers), int)])

    return [case("grouped", grouped, f"{size} {group}"), case("scattered", scattered, ", ".join(chosen))]


def evaluate_planted(vectors: np.ndarray, labels: np.ndarray, method: str) -> dict[str, float]:
    """AUROC, P@outliers, and recall / precision / size of the flagged set at the method's defaults."""
    graph = build(vectors, GRAPH_K)
    chosen = METHODS[method]
    scores = chosen.scores(vectors, 10, graph)
    flagged, _ = chosen.flag(scores, graph)
    count = int(labels.sum())
    top = np.argsort(-scores, kind="stable")[:count]
    return {
        "auroc": float(roc_auc_score(labels, scores)),
        "p_at_n": float(labels[top].mean()),
        "recall": float(flagged[labels == 1].mean()),
        "precision": float(labels[flagged].mean()) if flagged.any() else 0.0,
        "flagged": float(flagged.sum()),
    }


def planted_tables(photos: list[Photo], vectors: np.ndarray, args: argparse.Namespace) -> str:
    """Per inlier group and case (means over the draws), then the mean over the groups."""
    found: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    for inliers in args.inliers:
        for seed in range(args.seed, args.seed + args.planted_draws):
            for case in plant(photos, inliers, seed):
                for method in PLANTED_METHODS:
                    found.setdefault((case.case, inliers, method), []).append(
                        evaluate_planted(vectors[case.rows], case.labels, method)
                    )
    headers = ["case", "inliers", "method", "AUROC (mean, min)", "P@outliers", "flagged", "recall", "precision"]

    def row(case: str, inliers: str, method: str, values: list[dict[str, float]]) -> list[str]:
        mean = {key: float(np.mean([v[key] for v in values])) for key in values[0]}
        low = min(v["auroc"] for v in values)
        return [
            case,
            inliers,
            method,
            f"{mean['auroc']:.3f} ({low:.2f})",
            f"{mean['p_at_n']:.2f}",
            f"{mean['flagged']:.1f}",
            f"{100 * mean['recall']:.0f} %",
            f"{100 * mean['precision']:.0f} %",
        ]

    rows = [row(*key, values) for key, values in found.items()]
    for case in ("grouped", "scattered"):
        for method in PLANTED_METHODS:
            every = [v for (c, _, m), values in found.items() if c == case and m == method for v in values]
            rows.append(row(case, "**all**", method, every))
    return table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, nargs="?", default=DEFAULT_DATASET)
    parser.add_argument("--inliers", nargs="+", default=["dog", "mammal", "bird"], help="planted cases' inlier groups")
    parser.add_argument("--planted-draws", type=int, default=8, help="draws (seeds) per inlier group, planted cases")
    parser.add_argument("--skip-rate", action="store_true", help="only the planted cases")
    parser.add_argument("--groups", nargs="+", default=["dog", "vehicle", "bird", "device", "container"])
    parser.add_argument("--draws", type=int, default=10, help="outlier draws (seeds) per group")
    parser.add_argument("--rate", type=float, default=0.03, help="outliers per inlier")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="VAD_MODEL name, e.g. ViT-B-32:openai where CLIP loads")
    args = parser.parse_args()

    photos = read_labels(args.dataset)
    vectors = embeddings(args.dataset, photos, args.model)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    with timer() as t:
        planted = planted_tables(photos, vectors, args)
    print(f"\nplanted outliers, {args.model} features, every method at its defaults, {args.planted_draws} draws")
    print(f"per inlier group ({t[0]:.0f} s)\n")
    print(planted)
    if args.skip_rate:
        return
    results = [r for group in args.groups for r in run_group(photos, vectors, group, args)]
    print(f"\n{args.model} features, k={args.k}, outliers {args.rate:.0%} of each group, {args.draws} draws\n")
    print(group_table(results))
    print(f"\nmean over the groups ({', '.join(args.groups)})\n")
    print(mean_table(results))


if __name__ == "__main__":
    main()
