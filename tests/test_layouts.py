"""core.layouts: datasets, splits and labels from folder layouts and manifests (no model, no index)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import png, zip_bytes

from core.images import ImageRejected
from core.layouts import IngestOptions, ManifestError, apply_options, layout_fields, read_manifest
from core.sources import IngestItem, items_from_paths, items_from_upload


def fields(items: list[IngestItem]) -> dict[str, tuple[str | None, str | None, str | None]]:
    return {item.path: (item.dataset, item.split, item.label) for item in items}


def rejection(item: IngestItem) -> str:
    with pytest.raises(ImageRejected) as caught:
        item.read()
    return str(caught.value)


@pytest.mark.parametrize(
    ("relative", "layout", "expected"),
    [
        ("train/cat/a.jpg", "split/label", {"split": "train", "label": "cat"}),
        ("pets/train/cat/a.jpg", "split/label", {"dataset": "pets", "split": "train", "label": "cat"}),
        ("cat/a.jpg", "label", {"label": "cat"}),
        ("pets/cat/a.jpg", "label", {"dataset": "pets", "label": "cat"}),
        ("./train\\cat/a.jpg", "split/label", {"split": "train", "label": "cat"}),
        ("any/depth/a.jpg", "none", {}),
    ],
)
def test_layouts_read_the_folders_above_the_file(relative: str, layout: str, expected: dict) -> None:
    assert layout_fields(relative, layout) == expected


@pytest.mark.parametrize(
    ("relative", "layout"),
    [("a.jpg", "split/label"), ("cat/a.jpg", "split/label"), ("a/b/c/d/e.jpg", "split/label"), ("a.jpg", "label")],
)
def test_a_file_at_another_depth_is_named_with_the_expected_layout(relative: str, layout: str) -> None:
    reason = layout_fields(relative, layout)
    assert isinstance(reason, str) and reason.startswith(f"not in the {layout} layout: expected ")


def test_a_zip_upload_in_the_split_label_layout(tmp_path: Path) -> None:
    archive = zip_bytes(
        {"train/cat/a.png": png(1), "test/dog/b.png": png(2), "pets/val/cat/c.png": png(3), "readme.png": png(4)}
    )
    items = apply_options(items_from_upload("ds.zip", archive), IngestOptions(layout="split/label"))
    found = fields(items)
    assert found["ds.zip/train/cat/a.png"] == (None, "train", "cat")
    assert found["ds.zip/test/dog/b.png"] == (None, "test", "dog")
    assert found["ds.zip/pets/val/cat/c.png"] == ("pets", "val", "cat")
    stray = next(i for i in items if i.path == "ds.zip/readme.png")
    assert "not in the split/label layout" in rejection(stray)
    # --dataset wins over the dataset folder
    named = fields(apply_options(items_from_upload("ds.zip", archive), IngestOptions("split/label", "mine")))
    assert named["ds.zip/pets/val/cat/c.png"] == ("mine", "val", "cat")


def test_a_folder_in_the_label_layout_and_a_lone_file_that_follows_none(tmp_path: Path) -> None:
    (tmp_path / "flowers" / "rose").mkdir(parents=True)
    (tmp_path / "flowers" / "rose" / "r.png").write_bytes(png(1))
    (tmp_path / "lone.png").write_bytes(png(2))
    items = apply_options(
        items_from_paths([tmp_path / "flowers", tmp_path / "lone.png"]), IngestOptions(layout="label")
    )
    assert [(i.relative, i.label) for i in items] == [("rose/r.png", "rose"), (None, None)]


def test_a_csv_manifest_gives_splits_and_labels() -> None:
    manifest = read_manifest("m.csv", b"Path,split,label,notes\ntrain/a.png,train,cat,x\n./b.png,test,,\n")
    archive = zip_bytes({"train/a.png": png(1), "b.png": png(2), "c.png": png(3)})
    items = apply_options(items_from_upload("up.zip", archive), IngestOptions(manifest=manifest))
    assert fields(items) == {
        "up.zip/train/a.png": (None, "train", "cat"),
        "up.zip/b.png": (None, "test", None),
        "up.zip/c.png": (None, None, None),  # not in the manifest: no split, no label
    }


def test_a_json_manifest_with_datasets() -> None:
    rows = [{"path": "a.png", "split": "train", "label": "cat", "dataset": "pets"}, {"path": "b.png", "label": 7}]
    manifest = read_manifest("m.json", json.dumps(rows).encode())
    items = apply_options(
        items_from_upload("up.zip", zip_bytes({"a.png": png(1), "b.png": png(2)})), IngestOptions(manifest=manifest)
    )
    assert fields(items) == {"up.zip/a.png": ("pets", "train", "cat"), "up.zip/b.png": (None, None, "7")}


def test_every_bad_csv_row_is_named_and_nothing_is_accepted() -> None:
    text = (
        "path,split,label\n"
        "a.png,train,cat\n"
        ",train,cat\n"  # line 3: no path
        "a.png,test,dog\n"  # line 4: repeated
        "../up.png,train,cat\n"  # line 5: climbs out
        "c.png,train,\x1bdog\n"  # line 6: control character
        "d.png,train,cat,extra\n"  # line 7: too many values
    )
    with pytest.raises(ManifestError) as caught:
        read_manifest("m.csv", text.encode())
    problems = caught.value.problems
    assert [p.split(":")[0] for p in problems] == ["line 3", "line 4", "line 5", "line 6", "line 7"]
    assert "no path" in problems[0]
    assert "already on line 2" in problems[1]
    assert "relative" in problems[2]
    assert "control characters" in problems[3]
    assert "more values than columns" in problems[4]
    assert str(caught.value).startswith("manifest m.csv: 5 problems, nothing imported:")


@pytest.mark.parametrize(
    ("name", "data", "needle"),
    [
        ("m.csv", b"file,split\na.png,train\n", "no 'path' column"),
        ("m.json", b"{not json", "not valid JSON"),
        ("m.json", b'{"path": "a.png"}', "expected a JSON list"),
        ("m.json", b'[{"path": "a.png", "label": ["x"]}, 3]', "entry 1: label must be a name"),
        ("m.csv", b"path,split\n", "no rows"),
        ("m.csv", b"\xff\xfe", "not UTF-8"),
    ],
)
def test_unreadable_manifests_say_why(name: str, data: bytes, needle: str) -> None:
    with pytest.raises(ManifestError, match=needle):
        read_manifest(name, data)


def test_a_manifest_row_without_a_file_refuses_the_whole_ingest() -> None:
    manifest = read_manifest("m.csv", b"path,split\na.png,train\nmissing.png,test\n")
    with pytest.raises(ManifestError) as caught:
        apply_options(items_from_upload("up.zip", zip_bytes({"a.png": png(1)})), IngestOptions(manifest=manifest))
    assert caught.value.problems == ["line 3: no file at 'missing.png' in the input"]


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown layout"):
        IngestOptions(layout="label/split")
    manifest = read_manifest("m.csv", b"path\na.png\n")
    with pytest.raises(ValueError, match="not both"):
        IngestOptions(layout="label", manifest=manifest)
    assert IngestOptions(dataset="  my   pets ").dataset == "my pets"
