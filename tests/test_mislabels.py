"""core.mislabels and core.balance: flipped labels ranked first on made sets (any number of labels),
the unreliable-label notes, review decisions that persist across restarts and stay per user, the
CLI's output; counts per split and label with their flags."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import ingest_files, png, synthetic_collection, tiny_services
from test_cli import run_cli
from test_leaks import set_fields

from core.balance import NO_SPLIT, UNLABELLED, balance_rows, flags, per_label_issues, split_label_counts
from core.duplicates import Cluster
from core.mislabels import MIN_PER_LABEL, detect_mislabels, keep_label, mislabel_report, relabel
from core.services import Services

ALICE, BOB = "alice", "bob"


def clustered(labels_per_class: int, classes: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Tight clusters of vectors around far-apart centres, labelled by their cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, 48)) * 3
    vectors = np.concatenate([c + rng.normal(size=(labels_per_class, 48)) for c in centres])
    labels = [f"class-{c}" for c in range(classes) for _ in range(labels_per_class)]
    return vectors, labels


@pytest.mark.parametrize("classes", [2, 3, 7])
def test_flipped_labels_rank_first(classes):
    vectors, truth = clustered(12, classes)
    given = list(truth)
    flipped = {3: truth[-1], 15: truth[0]}  # image 3 of class 0 and image 15 of class 1
    for row, wrong in flipped.items():
        given[row] = wrong
    report = detect_mislabels(synthetic_collection(vectors, label=given))
    frame = report.frame
    assert len(frame) == len(given)
    top = frame.head(len(flipped))
    assert set(top["id"]) == {f"img-{row:03d}" for row in flipped}
    assert top["is_mislabel_issue"].all()
    assert list(top["suggested_label"]) == [truth[int(i[4:])] for i in top["id"]]
    assert frame["is_mislabel_issue"].sum() == len(flipped)
    assert report.notes == [] and frame["reliable"].all()
    assert (frame["label_probability"] + frame["mislabel_score"]).round(3).eq(1.0).all()


def test_unlabelled_images_do_not_vote_and_small_labels_are_called_unreliable():
    vectors, truth = clustered(10, 2)
    extra = np.random.default_rng(5).normal(size=(3, 48)) * 3
    labels = truth[:-3] + [None, None, None] + ["rare"] * 3
    report = detect_mislabels(synthetic_collection(np.concatenate([vectors, extra]), label=labels))
    assert "img-017" not in set(report.frame["id"])  # unlabelled
    assert report.small_labels == {"rare": 3}
    assert f"Fewer than {MIN_PER_LABEL} images" in report.notes[0] and "rare (3)" in report.notes[0]
    assert not report.frame.loc[report.frame["label"] == "rare", "reliable"].any()


def test_one_label_is_not_enough():
    vectors, _ = clustered(6, 1)
    report = detect_mislabels(synthetic_collection(vectors, label=["cat"] * 6))
    assert report.frame.empty and "at least two labels" in report.notes[0]


def test_balance_counts_flags_and_issues():
    vectors, labels = clustered(1, 26)
    labels = ["cat"] * 10 + ["dog"] * 10 + ["fox"] * 2 + ["owl"] * 2 + [None, "cat"]
    splits = [["train"]] * 20 + [["train"], ["test"], ["train"], ["test"], [], ["test", "train"]]
    collection = synthetic_collection(vectors, label=labels, splits=splits)
    counts = split_label_counts(collection)
    assert counts.loc["cat", "train"] == 11 and counts.loc["cat", "test"] == 1
    assert counts.loc[UNLABELLED, NO_SPLIT] == 1 and counts.loc["fox", "test"] == 1
    marks = flags(counts)
    assert marks.loc["fox", "train"] == "near empty" and marks.loc["cat", "train"] == ""
    assert (marks.loc[UNLABELLED] == "").all()
    assert len(balance_rows(counts)) == counts.size
    clusters = [Cluster(1, ["img-000", "img-001"], "", "near", 0.99)]
    anomalies = collection.images[["id"]].assign(is_anomaly=collection.images["id"] == "img-020")
    issues = per_label_issues(collection, anomalies, clusters)
    assert issues.loc["cat", "duplicates"] == 2 and issues.loc["fox", "anomalies"] == 1
    assert issues.loc["cat", "images"] == 11


# --- the real pipeline: review decisions persist, per user; the CLI ----------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def labelled(data_dir: Path) -> Iterator[tuple[Services, dict[str, dict[str, str]]]]:
    with tiny_services(data_dir) as services:
        ids = {}
        for user in (ALICE, BOB):
            ids[user] = ingest_files(services, user, {f"p{i}.png": png(i) for i in range(6)})
            for i, (name, image_id) in enumerate(ids[user].items()):
                set_fields(services, user, image_id, (name, "train", "cat" if i < 3 else "dog"))
        yield services, ids


def test_review_decisions_persist_and_stay_per_user(labelled, data_dir):
    services, ids = labelled
    kept, moved = ids[ALICE]["p0.png"], ids[ALICE]["p1.png"]
    keep_label(services, ALICE, [kept], "cat")
    assert relabel(services, ALICE, [moved], "dog") == 1
    services.close()
    with tiny_services(data_dir) as reopened:
        frame = mislabel_report(reopened, ALICE).frame.set_index("id")
        assert frame.loc[kept, "review"] == "kept" and frame.loc[kept, "label"] == "cat"
        assert frame.loc[moved, "review"] == "relabelled" and frame.loc[moved, "label"] == "dog"
        payload = reopened.index.retrieve(ALICE, [moved])[0].payload
        assert [o["label"] for o in payload["occurrences"]] == ["cat"], "a file keeps the label it came with"
        bob = mislabel_report(reopened, BOB).frame
        assert (bob["review"] == "").all() and (bob.set_index("id").loc[ids[BOB]["p1.png"], "label"] == "cat")
        relabel(reopened, ALICE, [kept], "dog")  # a later relabel voids the "kept" review of "cat"
        assert mislabel_report(reopened, ALICE).frame.set_index("id").loc[kept, "review"] == "relabelled"


def test_cli_prints_the_report_the_page_shows(labelled, data_dir):
    services, _ = labelled
    expected = mislabel_report(services, ALICE)
    services.close()
    result = run_cli("mislabels", "--user", ALICE, "--all", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads(expected.to_json(flagged=False))
    assert len(json.loads(result.stdout)["images"]) == 6
    as_csv = run_cli("mislabels", "--user", ALICE, "--format", "csv", data_dir=data_dir)
    assert as_csv.stdout == expected.to_csv() and "unreliable" in as_csv.stderr
