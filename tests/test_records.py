"""Occurrences, datasets, splits and labels (core.records, core.record_edits, core.record_filters)
with real parts: the tiny model, the embedded index, the local store, the vector cache and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import list_keys, png, tiny_services, zip_bytes

from core import record_edits, records
from core.gallery import list_images
from core.index import ImageRecord
from core.layouts import IngestOptions, ManifestError, read_manifest
from core.record_filters import RecordFilter, apply_filter, filter_choices, parse_filter
from core.sources import items_from_upload
from core.trash import open_trash

ROOT = Path(__file__).resolve().parents[1]
USER = "alice"
#: One photo in two splits (byte-identical), one only in train, one only in test.
SPLIT_ZIP = {"train/cat/a.png": png(1), "test/cat/a.png": png(1), "train/dog/b.png": png(2), "test/dog/c.png": png(3)}


def upload(services, name: str, data: bytes, user: str = USER, **options):
    items = list(items_from_upload(name, data))
    return services.ingestor().ingest(items, user, options=IngestOptions(**options) if options else None)


def payload_of(services, image_id: str, user: str = USER) -> dict:
    (record,) = services.index.retrieve(user, [image_id])
    return record.payload


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def split_upload(data_dir: Path):
    """Services with SPLIT_ZIP uploaded in the split/label layout; yields (services, results by path)."""
    with tiny_services(data_dir) as services:
        results = upload(services, "pets.zip", zip_bytes(SPLIT_ZIP), layout="split/label")
        yield services, {r.path.removeprefix("pets.zip/"): r for r in results}


def test_a_file_in_train_and_test_is_one_image_with_two_occurrences(split_upload) -> None:
    services, results = split_upload
    assert [results[p].status for p in sorted(SPLIT_ZIP)] == ["stored", "stored", "present", "stored"]
    assert results["train/cat/a.png"].image_id == results["test/cat/a.png"].image_id
    assert services.index.count(USER) == 3
    payload = payload_of(services, results["test/cat/a.png"].image_id)
    assert payload["splits"] == ["test", "train"]  # the exact leak, visible on the image
    assert payload["datasets"] == ["default"]
    assert payload["label"] == "cat"
    assert [(o["path"], o["split"], o["label"]) for o in payload["occurrences"]] == [
        ("test/cat/a.png", "test", "cat"),
        ("train/cat/a.png", "train", "cat"),
    ]
    assert records.occurrence_names(payload) == ["a.png"]
    single = payload_of(services, results["train/dog/b.png"].image_id)
    assert (single["splits"], single["label"], len(single["occurrences"])) == (["train"], "dog", 1)


def test_a_byte_identical_upload_names_the_match_and_adds_its_occurrence_once(split_upload) -> None:
    services, results = split_upload
    target = results["train/dog/b.png"].image_id
    (again,) = upload(services, "holiday.png", png(2))
    assert (again.status, again.image_id) == ("present", target)
    assert again.reason == "same content as b.png, already in your collection"
    assert records.occurrence_names(payload_of(services, target)) == ["b.png", "holiday.png"]
    before = payload_of(services, target)["occurrences"]
    upload(services, "holiday.png", png(2))  # same path, dataset and split: nothing new
    assert payload_of(services, target)["occurrences"] == before
    upload(services, "holiday.png", png(2), dataset="beach")  # another dataset: a new occurrence
    assert payload_of(services, target)["datasets"] == ["beach", "default"]
    assert len(payload_of(services, target)["occurrences"]) == 3


def test_deleting_one_occurrence_keeps_the_image_and_the_last_removes_it(split_upload) -> None:
    services, results = split_upload
    image_id = results["test/cat/a.png"].image_id
    keys = {k for k in list_keys(services.store) if image_id in k}
    assert len(keys) == 2
    removed = record_edits.remove_occurrences(open_trash(services), USER, image_id, [("test/cat/a.png", None, "test")])
    assert removed == record_edits.OccurrenceRemoval(removed=1, kept_images=1, deleted_images=0)
    payload = payload_of(services, image_id)
    assert payload["splits"] == ["train"] and [o["path"] for o in payload["occurrences"]] == ["train/cat/a.png"]
    unknown = record_edits.remove_occurrences(open_trash(services), USER, image_id, [("nope", None, None)])
    assert unknown.removed == 0
    last = record_edits.remove_occurrences(open_trash(services), USER, image_id, None)
    assert last == record_edits.OccurrenceRemoval(removed=1, kept_images=0, deleted_images=1)
    assert services.index.retrieve(USER, [image_id]) == []
    assert [item.id for item in open_trash(services).items(USER)] == [image_id]  # restorable
    assert keys <= list_keys(services.store)  # kept while the image is in the trash


def test_remove_from_split_takes_leaks_out_of_the_test_split(split_upload) -> None:
    services, results = split_upload
    leak, only_test = results["test/cat/a.png"].image_id, results["test/dog/c.png"].image_id
    outcome = record_edits.remove_from_split(open_trash(services), USER, [leak, only_test], "test")
    assert outcome == record_edits.OccurrenceRemoval(removed=2, kept_images=1, deleted_images=1)
    assert payload_of(services, leak)["splits"] == ["train"]
    assert services.index.retrieve(USER, [only_test]) == []


def test_bulk_edits_persist_across_a_restart_and_stay_per_user(data_dir: Path) -> None:
    with tiny_services(data_dir) as services:
        ids = [r.image_id for r in upload(services, "pets.zip", zip_bytes(SPLIT_ZIP), layout="split/label")]
        bob = [r.image_id for r in upload(services, "pets.zip", zip_bytes(SPLIT_ZIP), user="bob", layout="split/label")]
        alice_ids = sorted(set(ids))
        assert record_edits.set_label(services.index, USER, alice_ids, " tabby ") == 3
        assert record_edits.set_split(services.index, USER, alice_ids[:1], "val") == 1
        assert record_edits.set_dataset(services.index, USER, alice_ids[:1], "pets") == 1
        assert record_edits.set_label(services.index, USER, bob, "not mine") == 0  # bob's ids: not alice's
        with pytest.raises(records.InvalidName, match="control characters"):
            record_edits.set_label(services.index, USER, alice_ids, "bad\x1b[31m")
    with tiny_services(data_dir) as services:  # a new process's view: index and vector cache
        frame = list_images(services, USER).set_index("id")
        assert set(frame["label"]) == {"tabby"}
        edited = frame.loc[alice_ids[0]]
        assert (list(edited["splits"]), list(edited["datasets"])) == (["val"], ["pets"])
        assert {o["split"] for o in payload_of(services, alice_ids[0])["occurrences"]} == {"val"}
        bob_labels = {payload_of(services, i, "bob")["label"] for i in bob}
        assert bob_labels == {"cat", "dog"}


def test_filters_by_dataset_split_and_label(split_upload) -> None:
    services, _ = split_upload
    upload(services, "lone.png", png(9), dataset="other")
    images = list_images(services, USER)
    names = dict(zip(images["id"], images["filename"], strict=True))

    def kept(record_filter: RecordFilter) -> list[str]:
        return sorted(names[i] for i in apply_filter(images, record_filter)["id"])

    assert kept(RecordFilter()) == ["a.png", "b.png", "c.png", "lone.png"]
    assert kept(RecordFilter(splits=("test",))) == ["a.png", "c.png"]
    assert kept(RecordFilter(splits=(None,))) == ["lone.png"]
    assert kept(RecordFilter(labels=("dog",), splits=("train",))) == ["b.png"]
    assert kept(RecordFilter(labels=(None, "cat"))) == ["a.png", "lone.png"]
    assert kept(RecordFilter(datasets=("other",))) == ["lone.png"]
    assert kept(parse_filter(["split=train", "split=", "label=dog"])) == ["b.png"]
    choices = filter_choices(images)
    assert (choices.datasets, choices.splits, choices.labels) == (
        ["default", "other"],
        ["test", "train"],
        ["cat", "dog"],
    )
    assert choices.has_no_split and choices.has_no_label
    with pytest.raises(ValueError, match="expected dataset=NAME"):
        parse_filter(["colour=red"])


def test_images_stored_before_the_fields_read_with_defaults(data_dir: Path) -> None:
    with tiny_services(data_dir) as services:
        (stored,) = upload(services, "old.png", png(5))
        (record,) = services.index.retrieve(USER, [stored.image_id], with_vectors=True)
        legacy = {k: v for k, v in record.payload.items() if k not in records.FIELDS}
        services.index.upsert([ImageRecord(record.id, legacy, record.vector)])
        assert (records.datasets(legacy), records.splits(legacy), records.label(legacy)) == (["default"], [], None)
        assert records.occurrence_names(legacy) == ["old.png"]
        images = list_images(services, USER)
        assert len(apply_filter(images, RecordFilter(datasets=("default",), splits=(None,), labels=(None,)))) == 1
        (again,) = upload(services, "copy.png", png(5), layout="none", dataset="new")
        assert again.reason == "same content as old.png, already in your collection"
        payload = payload_of(services, stored.image_id)
        assert [(o["name"], o["dataset"]) for o in payload["occurrences"]] == [
            ("old.png", "default"),
            ("copy.png", "new"),
        ]
        assert payload["datasets"] == ["default", "new"]


def test_a_bad_manifest_stores_nothing(data_dir: Path) -> None:
    manifest = read_manifest("m.csv", b"path,split\na.png,train\nb.png,test\n")
    with tiny_services(data_dir) as services:
        with pytest.raises(ManifestError, match=r"no file at 'b\.png'"):
            upload(services, "up.zip", zip_bytes({"a.png": png(1)}), manifest=manifest)
        assert services.index.count(USER) == 0 and not list_keys(services.store)


def run_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VAD_")}
    environment.update({"VAD_DATA_DIR": str(data_dir), "VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu"})
    return subprocess.run(
        [sys.executable, "-m", "core", *args], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=180
    )


def test_cli_ingest_with_a_layout_then_labels_set_and_occurrences(data_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "pets"
    for relative, data in SPLIT_ZIP.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)
    bad = tmp_path / "bad.csv"
    bad.write_text("path,split\ntrain/cat/a.png,train\nnowhere.png,test\n")
    refused = run_cli("ingest", str(folder), "--user", USER, "--manifest", str(bad), data_dir=data_dir)
    assert refused.returncode == 2, refused.stderr
    assert "line 3: no file at 'nowhere.png' in the input" in refused.stderr
    ingested = run_cli("ingest", str(folder), "--user", USER, "--layout", "split/label", "--json", data_dir=data_dir)
    assert ingested.returncode == 0, ingested.stderr
    assert "4 files: 3 stored, 1 already present, 0 rejected" in ingested.stderr

    relabel = run_cli("labels", "set", "--user", USER, "--filter", "split=test", "--label", "kitten", data_dir=data_dir)
    assert relabel.returncode == 0, relabel.stderr
    assert relabel.stdout.strip() == "2 images: label kitten"
    nothing = run_cli("labels", "set", "--user", "bob", "--filter", "split=test", "--label", "x", data_dir=data_dir)
    assert nothing.returncode == 1 and "no image matches" in nothing.stdout
    with tiny_services(data_dir) as services:
        images = list_images(services, USER)
        labels = dict(zip(images["filename"], images["label"], strict=True))
        leak = images.loc[images["filename"] == "a.png", "id"].item()
    assert labels == {"a.png": "kitten", "b.png": "dog", "c.png": "kitten"}

    listed = run_cli("occurrences", "list", "--user", USER, "--id", leak, data_dir=data_dir)
    assert [o["split"] for o in json.loads(listed.stdout)] == ["test", "train"]
    removed = run_cli(
        "occurrences", "remove", "--user", USER, "--id", leak, "--path", "test/cat/a.png", "--split", "test",
        data_dir=data_dir,
    )  # fmt: skip
    assert removed.returncode == 0 and removed.stdout.strip() == "removed 1 occurrence(s)", removed.stderr
    with tiny_services(data_dir) as services:
        assert payload_of(services, leak)["splits"] == ["train"]
