"""Likely mislabels: labelled images whose nearest neighbours mostly carry another label.

For each labelled image, its ``k`` (20) nearest labelled neighbours in the collection's shared neighbour
graph vote (weighted by cosine similarity) for their labels: out-of-sample class probabilities,
since an image never votes for itself. The self-confidence ``label_probability`` (the share of the
vote for the given label) ranks the review: ``mislabel_score = 1 - label_probability``. An image is
flagged (``is_mislabel_issue``) as in confident learning (Northcutt et al., 2021): some other label
reaches its class's threshold (the mean probability of that label among images carrying it) and
beats the given label. Works for any number of labels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.collection import Collection, load_collection
from core.dataset_fields import in_dataset, label_column, split_column
from core.graph import GRAPH_K
from core.record_edits import set_label
from core.reviews import label_reviews, set_label_review
from core.services import AnalysisServices, Services

DEFAULT_K = 20  # bench/labels_quality.py: 10 leaves many ties at score 1 (precision at N 48 %, 20: 70 %)
MIN_PER_LABEL = 5  # fewer images with a label: its neighbours rarely include another one of it
COLUMNS = [
    "id",
    "filename",
    "splits",
    "label",
    "suggested_label",
    "label_probability",
    "suggested_probability",
    "mislabel_score",
    "is_mislabel_issue",
    "neighbours",
    "reliable",
    "review",
]


@dataclass
class MislabelReport:
    """One row per labelled image, most likely mislabelled first, and what limits the scores."""

    frame: pd.DataFrame
    small_labels: dict[str, int] = field(default_factory=dict)  # label -> images, below MIN_PER_LABEL
    notes: list[str] = field(default_factory=list)

    def to_review(self, reviewed: bool = False) -> pd.DataFrame:
        """The flagged rows (without the reviewed ones unless ``reviewed``)."""
        rows = self.frame[self.frame["is_mislabel_issue"]]
        return rows if reviewed else rows[rows["review"] == ""]

    def export(self, flagged: bool = True) -> pd.DataFrame:
        """What is exported: the flagged images (reviewed or not), or every labelled one."""
        return self.to_review(reviewed=True) if flagged else self.frame

    def to_csv(self, flagged: bool = True) -> str:
        return self.export(flagged).to_csv(index=False)

    def to_json(self, flagged: bool = True) -> str:
        rows = json.loads(self.export(flagged).to_json(orient="records"))
        return json.dumps({"notes": self.notes, "small_labels": self.small_labels, "images": rows}, indent=2) + "\n"


def class_probabilities(
    labels: np.ndarray, indices: np.ndarray, similarities: np.ndarray, classes: list[str], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Similarity-weighted votes of each row's first ``k`` labelled neighbours: (probabilities
    (n, classes), neighbours used). ``labels``: class index per row, -1 for unlabelled."""
    n = len(indices)
    valid = indices >= 0
    neighbour_labels = np.where(valid, labels[np.where(valid, indices, 0)], -1)
    labelled = neighbour_labels >= 0
    taken = labelled & (np.cumsum(labelled, axis=1) <= k)
    weights = np.where(taken, np.clip(similarities, 0.0, None), 0.0) + np.where(taken, 1e-6, 0.0)
    votes = np.zeros((n, len(classes)))
    rows = np.repeat(np.arange(n), indices.shape[1])
    np.add.at(votes, (rows[taken.ravel()], neighbour_labels.ravel()[taken.ravel()]), weights.ravel()[taken.ravel()])
    total = votes.sum(axis=1, keepdims=True)
    return np.divide(votes, total, out=np.zeros_like(votes), where=total > 0), taken.sum(axis=1)


def detect_mislabels(collection: Collection, k: int = DEFAULT_K, dataset: str | None = None) -> MislabelReport:
    """Score every labelled image of ``collection`` (of ``dataset``) against its neighbours' labels."""
    images = collection.images
    labels = pd.Series(label_column(images), index=images.index, dtype=object)
    labels[~in_dataset(images, dataset)] = None
    counts = labels.value_counts()
    classes = sorted(counts.index)
    empty = MislabelReport(pd.DataFrame(columns=COLUMNS))
    if len(classes) < 2:
        empty.notes.append("Mislabels need at least two labels among the images.")
        return empty
    code = labels.map({c: i for i, c in enumerate(classes)}).fillna(-1).astype(int).to_numpy()
    width = min(GRAPH_K, len(images) - 1)
    indices, similarities = collection.neighbours(width).first(width)
    probabilities, used = class_probabilities(code, indices, similarities, classes, k)

    rows = np.flatnonzero(code >= 0)
    given = code[rows]
    p_given = probabilities[rows, given]
    thresholds = np.array([probabilities[rows[given == c], c].mean() for c in range(len(classes))])
    confident = np.where(probabilities[rows] >= thresholds, probabilities[rows], -1.0)
    best_confident = confident.argmax(axis=1)
    flagged = (confident.max(axis=1) > p_given) & (best_confident != given) & (used[rows] > 0)
    suggested = probabilities[rows].argmax(axis=1)
    suggested = np.where(flagged, best_confident, suggested)
    small = {c: int(n) for c, n in counts.items() if n < MIN_PER_LABEL}

    label_names = np.array(classes, dtype=object)
    frame = pd.DataFrame(
        {
            "id": images["id"].to_numpy()[rows],
            "filename": images["filename"].to_numpy()[rows],
            "splits": [", ".join(s) for s in np.array(split_column(images, dataset), dtype=object)[rows]],
            "label": label_names[given],
            "suggested_label": np.where(used[rows] > 0, label_names[suggested], None),
            "label_probability": np.round(p_given, 3),
            "suggested_probability": np.round(probabilities[rows, suggested], 3),
            "mislabel_score": np.round(1.0 - p_given, 3),
            "is_mislabel_issue": flagged,
            "neighbours": used[rows],
            "reliable": (counts.reindex(label_names[given]).to_numpy() >= MIN_PER_LABEL) & (used[rows] >= k // 2),
            "review": np.array(label_reviews(images, list(labels)), dtype=object)[rows],
        },
        columns=COLUMNS,
    )
    # Ties (no vote at all for the given label) go to the most unanimous neighbourhoods first.
    order = ["mislabel_score", "suggested_probability", "id"]
    frame = frame.sort_values(order, ascending=[False, False, True], kind="stable").reset_index(drop=True)
    notes = []
    if small:
        listed = ", ".join(f"{c} ({n})" for c, n in sorted(small.items(), key=lambda item: item[1]))
        notes.append(f"Fewer than {MIN_PER_LABEL} images carry these labels, so their scores are unreliable: {listed}.")
    if (used[rows] < k // 2).any():
        notes.append(
            f"{int((used[rows] < k // 2).sum())} image(s) have fewer than {k // 2} labelled neighbours among "
            f"their {width} nearest: label more images around them for a reliable score."
        )
    return MislabelReport(frame, small, notes)


def mislabel_report(
    services: Services | AnalysisServices,
    user: str,
    k: int = DEFAULT_K,
    dataset: str | None = None,
    collection: Collection | None = None,
) -> MislabelReport:
    """The report the Dataset QA page and ``python -m core mislabels`` show."""
    collection = collection if collection is not None else load_collection(services, user)
    return detect_mislabels(collection, k, dataset)


def keep_label(services: Services | AnalysisServices, user: str, ids: Sequence[str], label: str) -> None:
    """The reviewer says the label ``label`` of ``ids`` is right: they leave the review list."""
    set_label_review(services.index, user, ids, "kept", label)


def relabel(services: Services | AnalysisServices, user: str, ids: Sequence[str], label: str) -> int:
    """Give ``ids`` the label ``label`` and remember it as a review decision."""
    changed = set_label(services.index, user, ids, label)
    set_label_review(services.index, user, ids, "relabelled", label)
    return changed
