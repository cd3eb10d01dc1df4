"""The Dataset QA page through AppTest: empty states, the leak matrix and "remove from the
evaluation split", a mislabel review remembered across sessions, the balance table."""

from __future__ import annotations

from pathlib import Path

import pytest
from apptest_helpers import new_app, open_page, png, sign_in, signed_in_app, texts
from helpers import encode, ingest_files, pattern, tiny_services
from test_leaks import set_fields

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VAD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VAD_MODEL", "tiny:random")
    monkeypatch.setenv("VAD_DEVICE", "cpu")
    return tmp_path / "data"


def store_dataset(data_dir: Path, user: str, with_fields: bool = True) -> dict[str, str]:
    """Five cats and one dog in train; one cat also in test (the same bytes), a pixel-identical
    copy of a train cat (twin) in test."""
    files = {f"cat{i}.png": png(10 + i) for i in range(5)}
    files["dog.png"] = png(30)
    files["twin-copy.webp"] = encode(pattern(7, (96, 64)), "WEBP", lossless=True)
    files["twin.png"] = encode(pattern(7, (96, 64)), "PNG")
    with tiny_services(data_dir) as services:
        ids = ingest_files(services, user, files)
        if with_fields:
            for name, image_id in ids.items():
                label = "dog" if name.startswith("dog") else "cat"
                split = "test" if name.endswith("copy.webp") else "train"
                set_fields(services, user, image_id, (name, split, label))
            set_fields(services, user, ids["cat0.png"], ("cat0.png", "train", "cat"), ("cat0.png", "test", "cat"))
    return ids


def _metric(at, label: str) -> str:
    return next(m.value for m in at.main.metric if m.label == label)


def test_empty_states(app_env):
    store_dataset(app_env, "plain", with_fields=False)  # before the app opens the embedded index
    at = signed_in_app(app_env, "newbie")
    assert "No images yet" in texts(open_page(at, "dataset_qa"))
    at = open_page(signed_in_app(app_env, "plain"), "dataset_qa")
    assert not at.exception
    assert "No splits yet" in texts(at) and "--layout split/label" in texts(at)
    assert "No labels yet" in texts(at)


def test_leaks_removed_from_the_evaluation_split(app_env):
    store_dataset(app_env, "lena")
    at = open_page(signed_in_app(app_env, "lena"), "dataset_qa")
    assert not at.exception, at.exception
    assert _metric(at, "Leaked pairs") == _metric(at, "Exact") == "2"
    matrix = next(d for d in at.dataframe if d.value.shape == (2, 2)).value
    assert matrix.loc["train", "test"] == matrix.loc["test", "train"] == 2
    assert "**Group 1** · exact · test ↔ train" in texts(at)
    assert at.selectbox(key="qa_eval_split").value == "test"
    assert at.button(key="qa_remove").disabled, "removal needs the confirmation"
    at.checkbox(key="qa_remove_confirm").check().run()
    at.button(key="qa_remove").click().run()
    assert not at.exception
    assert "No leaks between these splits" in texts(at) or "Only one split (train)" in texts(at)
    gallery = texts(open_page(at, "gallery"))
    assert "twin.png" in gallery and "twin-copy.webp" not in gallery, "the copy's only occurrence was in test"


def test_mislabel_review_is_remembered(app_env):
    ids = store_dataset(app_env, "milo")
    at = open_page(signed_in_app(app_env, "milo"), "dataset_qa")
    assert _metric(at, "Likely mislabelled") == "1"
    assert "Label **dog** → suggested **cat**" in texts(at)
    assert any("Fewer than 5 images" in w.value for w in at.warning)
    at.button(key=f"qa_keep_{ids['dog.png']}").click().run()
    assert not at.exception
    assert "Nothing to review" in texts(at) and _metric(at, "Reviewed") == "1"

    again = open_page(sign_in(new_app(), "milo"), "dataset_qa")  # a new session: read from the index
    assert "Nothing to review" in texts(again) and _metric(again, "Reviewed") == "1"
    again.toggle(key="qa_mis_reviewed").set_value(True).run()
    assert "reviewed: kept" in texts(again)
    dog = ids["dog.png"]
    assert again.button(key=f"qa_suggest_{dog}").label == "Relabel to cat"
    assert again.button(key=f"qa_apply_{dog}").disabled, "choose a label first"
    again.selectbox(key=f"qa_to_{dog}").set_value("cat").run()
    again.button(key=f"qa_apply_{dog}").click().run()
    assert not again.exception
    assert "Only one label (cat)" in texts(again)


def test_balance_table_flags_small_classes(app_env):
    store_dataset(app_env, "bea")
    at = open_page(signed_in_app(app_env, "bea"), "dataset_qa")
    table = next(d for d in at.dataframe if "train" in getattr(d.value, "columns", []) and "cat" in d.value.index)
    assert (
        table.value.loc["cat", "train"] == 6
        and table.value.loc["cat", "test"] == 2
        and table.value.loc["dog", "train"] == 1
    )
    assert "dog in train: near empty" in texts(at)
    assert len(at.get("plotly_chart")) == 1
