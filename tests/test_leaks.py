"""core.leaks: copies across splits at each level, never within one split; the matrix, the split
filter, "remove from the evaluation split" (persisted, per user) and the CLI's output.

Levels are tested on Collections built directly (vectors and hashes we control); the bulk action
and the CLI go through the real pipeline (local store, embedded index, tiny random CLIP), with
splits written straight into the payload (the fields of core.records, see ``set_fields``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import encode, ingest_files, pattern, synthetic_collection, tiny_services
from test_cli import run_cli

from core.duplicates import DuplicateFinder
from core.leaks import find_leaks, leak_report, remove_leaks_from
from core.records import derived
from core.services import Services

ALICE, BOB = "alice", "bob"


def set_fields(services: Services, user: str, image_id: str, *occurrences: tuple[str, str | None, str | None]) -> None:
    """Record (name, split, label) occurrences on an image, as core.records does at ingest."""
    label = next((o[2] for o in reversed(occurrences) if o[2]), None)
    records = [
        {"name": n, "path": n, "dataset": "default", "split": s, "label": lab, "added_at": "2026-11-30T00:00:00+00:00"}
        for n, s, lab in occurrences
    ]
    services.index.set_payload(user, [image_id], derived(records, label))


def flip(phash: str, bits: int) -> str:
    return f"{int(phash, 16) ^ ((1 << bits) - 1):016x}"


@pytest.fixture
def made_collection():
    """img-000/001: a semantic copy (train/test); 002/003: a near copy (train/test); 004/005: same
    pixels (train/test); 006: one image in train and test; 007/008: a near copy, both in train;
    009: an unrelated validation image; 010/011: a near copy in val and test."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(12, 64))
    vectors[1] = vectors[0] + 0.05 * rng.normal(size=64)
    base = synthetic_collection(vectors)
    phash = list(base.images["phash"])
    pixel = list(base.images["pixel_sha256"])
    phash[3], phash[8], phash[11] = flip(phash[2], 3), flip(phash[7], 2), flip(phash[10], 1)
    pixel[5] = pixel[4]
    splits = [["train"], ["test"], ["train"], ["test"], ["train"], ["test"], ["test", "train"]]
    splits += [["train"], ["train"], ["val"], ["val"], ["test"]]
    return synthetic_collection(vectors, phash=phash, pixel_sha256=pixel, splits=splits)


def test_each_level_is_found_across_splits_and_never_within_one(made_collection):
    clusters = DuplicateFinder(semantic_threshold=0.9).find(made_collection)
    report = find_leaks(made_collection, clusters)
    found = {(r.a_id, r.b_id, r.split_a, r.split_b): r.level for r in report.pairs.itertuples()}
    assert found == {
        ("img-006", "img-006", "test", "train"): "exact",
        ("img-005", "img-004", "test", "train"): "exact",
        ("img-003", "img-002", "test", "train"): "near",
        ("img-001", "img-000", "test", "train"): "semantic",
        ("img-011", "img-010", "test", "val"): "near",
    }
    assert not (report.pairs["split_a"] == report.pairs["split_b"]).any()
    assert {"img-007", "img-008"}.isdisjoint(set(report.pairs["a_id"]) | set(report.pairs["b_id"]))
    assert report.level_counts() == {"exact": 2, "near": 2, "semantic": 1}
    assert report.pairs["group"].nunique() == 5
    assert report.pairs.loc[report.pairs["level"] == "semantic", "similarity"].iloc[0] > 0.9


def test_matrix_and_split_filter(made_collection):
    clusters = DuplicateFinder(semantic_threshold=0.9).find(made_collection)
    report = find_leaks(made_collection, clusters)
    matrix = report.matrix()
    assert report.splits == ["test", "train", "val"]
    assert matrix.loc["train", "test"] == matrix.loc["test", "train"] == 4
    assert matrix.loc["val", "test"] == 1 and matrix.loc["train", "val"] == 0
    assert np.diag(matrix.to_numpy()).sum() == 0
    assert report.matrix("near").loc["train", "test"] == 1
    assert report.images_in("test") == ["img-001", "img-003", "img-005", "img-006", "img-011"]

    only = find_leaks(made_collection, clusters, splits=["train", "val"])
    assert only.pairs.empty and only.splits == ["train", "val"]
    assert only.matrix().to_numpy().sum() == 0
    assert len(find_leaks(made_collection, clusters, splits=["val", "test"]).pairs) == 1


def test_no_splits_no_leaks(made_collection):
    images = made_collection.images.drop(columns="splits")
    made_collection.images = images
    assert find_leaks(made_collection, DuplicateFinder(semantic_threshold=0.9).find(made_collection)).pairs.empty


# --- the real pipeline: remove from the evaluation split, per user, across restarts ------------


def files() -> dict[str, bytes]:
    return {
        "both.png": encode(pattern(1, (160, 120)), "PNG"),
        "train.png": encode(pattern(2, (160, 120)), "PNG"),
        "test-same-pixels.webp": encode(pattern(2, (160, 120)), "WEBP", lossless=True),
        "test-only.png": encode(pattern(3, (160, 120)), "PNG"),
    }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def stored(data_dir: Path) -> Iterator[tuple[Services, dict[str, str]]]:
    with tiny_services(data_dir) as services:
        ids = {}
        for user in (ALICE, BOB):
            ids[user] = ingest_files(services, user, files())
            set_fields(services, user, ids[user]["both.png"], ("both.png", "train", None), ("both.png", "test", None))
            set_fields(services, user, ids[user]["train.png"], ("train.png", "train", None))
            set_fields(services, user, ids[user]["test-same-pixels.webp"], ("test-same-pixels.webp", "test", None))
            set_fields(services, user, ids[user]["test-only.png"], ("test-only.png", "test", None))
        yield services, ids


def test_remove_from_the_evaluation_split_persists_and_stays_per_user(stored, data_dir):
    services, ids = stored
    report = leak_report(services, ALICE)
    assert report.level_counts()["exact"] == 2
    leaked = report.pairs[report.pairs["a_id"] == ids[ALICE]["both.png"]]
    assert leaked[["a_filename", "b_filename"]].values.tolist() == [["both.png", "both.png"]]
    assert remove_leaks_from(services, ALICE, report, "test") == (2, 1)
    assert leak_report(services, ALICE).pairs.empty
    services.close()

    with tiny_services(data_dir) as reopened:
        alice = {r.id: r.payload for r in reopened.index.retrieve(ALICE, list(ids[ALICE].values()))}
        assert alice[ids[ALICE]["both.png"]]["splits"] == ["train"]
        assert [o["split"] for o in alice[ids[ALICE]["both.png"]]["occurrences"]] == ["train"]
        assert ids[ALICE]["test-same-pixels.webp"] not in alice  # its only occurrence was in test
        assert alice[ids[ALICE]["test-only.png"]]["splits"] == ["test"]
        assert reopened.index.count(BOB) == 4
        assert leak_report(reopened, BOB).level_counts()["exact"] == 2


def test_cli_prints_the_report_the_page_shows(stored, data_dir):
    services, _ = stored
    expected = leak_report(services, ALICE)
    expected_filtered = leak_report(services, ALICE, splits=["train", "test"])
    services.close()
    as_json = run_cli("leaks", "--user", ALICE, data_dir=data_dir)
    as_csv = run_cli("leaks", "--user", ALICE, "--splits", "train,test", "--format", "csv", data_dir=data_dir)
    assert as_json.returncode == 0 and as_csv.returncode == 0, as_json.stderr + as_csv.stderr
    assert json.loads(as_json.stdout) == json.loads(expected.to_json())
    assert as_csv.stdout == expected_filtered.to_csv()
    assert len(pd.read_csv(io.StringIO(as_csv.stdout))) == 2
    bad = run_cli("leaks", "--user", ALICE, "--splits", "train", data_dir=data_dir)
    assert bad.returncode == 2 and "at least two splits" in bad.stderr


def test_a_dataset_is_checked_on_its_own():
    """Copies in two datasets are no leak of either; splits are read per dataset from occurrences."""
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(3, 64))
    pixel = [f"{7:064x}"] * 3  # three images with the same pixels

    def occurrence(dataset: str, split: str) -> dict:
        return {"name": f"{dataset}-{split}.png", "dataset": dataset, "split": split, "label": None}

    occurrences = [
        [occurrence("cars", "train"), occurrence("birds", "test")],
        [occurrence("cars", "test")],
        [occurrence("birds", "train")],
    ]
    collection = synthetic_collection(
        vectors,
        pixel_sha256=pixel,
        occurrences=occurrences,
        datasets=[["birds", "cars"], ["cars"], ["birds"]],
        splits=[["test", "train"], ["test"], ["train"]],
    )
    clusters = DuplicateFinder(semantic_threshold=0.99).find(collection)
    cars = find_leaks(collection, clusters, dataset="cars").pairs
    assert cars[["a_id", "split_a", "b_id", "split_b"]].values.tolist() == [["img-001", "test", "img-000", "train"]]
    assert cars["a_filename"].tolist() == ["cars-test.png"] and cars["b_filename"].tolist() == ["cars-train.png"]
    birds = find_leaks(collection, clusters, dataset="birds").pairs
    assert birds[["a_id", "split_a", "b_id", "split_b"]].values.tolist() == [["img-000", "test", "img-002", "train"]]
    everything = find_leaks(collection, clusters).pairs
    assert len(everything) == 4  # img-000 alone (test/train), 000-001, 000-002 and 001-002
