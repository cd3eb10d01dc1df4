"""The app through AppTest: a zip uploaded in the split/label layout, the sidebar filter, the
Gallery's bulk label edit, the detail dialog's occurrences, and a bad manifest that stores nothing."""

from __future__ import annotations

import pytest
from apptest_helpers import open_page, png, signed_in_app, texts, upload
from helpers import zip_bytes

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PETS = {"train/cat/a.png": png(1), "test/cat/a.png": png(1), "train/dog/b.png": png(2), "test/dog/c.png": png(3)}


def test_a_zip_in_the_split_label_layout_then_filter_and_relabel(app_env) -> None:
    at = open_page(signed_in_app(app_env, "gina"), "upload")
    at.radio(key="upload_layout").set_value("split/label")
    upload(at, [("pets.zip", zip_bytes(PETS))])
    assert not at.exception
    table = at.dataframe[0].value
    results = dict(zip(table["path"], table["status"], strict=True))
    assert results["pets.zip/train/cat/a.png"] == "present"
    assert sum(status == "stored" for status in results.values()) == 3

    open_page(at, "gallery")
    assert "**3** image(s)" in texts(at)
    at.multiselect(key="filter_splits").select("test").run()
    assert "**2** image(s)" in texts(at)  # a.png (in both splits) and c.png
    at.multiselect(key="filter_labels").select("dog").run()
    assert "**1** image(s)" in texts(at)

    at.multiselect(key="filter_labels").unselect("dog").run()
    for box in [c for c in at.checkbox if str(c.key).startswith("select_")]:
        box.check()
    at.run()
    at.selectbox(key="gallery_labels_pick_label").select("New…").run()
    at.text_input(key="gallery_labels_new_label").input("pet").run()
    at.button(key="gallery_labels_apply_label").click().run()
    assert not at.exception
    at.multiselect(key="filter_splits").unselect("test").run()
    at.multiselect(key="filter_labels").select("pet").run()
    assert "**2** image(s)" in texts(at)  # only the two selected images were relabelled
    for page in ("duplicates", "anomalies"):  # pages that list images narrow them too
        assert not open_page(at, page).exception


def test_a_manifest_with_a_missing_file_stores_nothing(app_env) -> None:
    at = open_page(signed_in_app(app_env, "hugo"), "upload")
    manifest = b"path,split,label\na.png,train,cat\nmissing.png,test,dog\n"
    at.radio(key="upload_layout").set_value("manifest").run()
    assert "Add the manifest file first" in texts(at)
    at.file_uploader(key="upload_manifest").set_value([("labels.csv", manifest, "text/csv")])
    upload(at, [("pets.zip", zip_bytes({"a.png": png(1)}))])
    assert not at.exception
    assert "The manifest labels.csv has 1 problem(s); nothing was imported." in texts(at)
    problems = list(at.dataframe[0].value["Problem"])
    assert problems == ["line 3: no file at 'missing.png' in the input"]
    assert "Start by adding images" in texts(at)
