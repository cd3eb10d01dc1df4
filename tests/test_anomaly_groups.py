"""The multiscale default and rare groups: a planted group of similar outliers and single outliers
are flagged (where the k-NN Tukey fence misses the group), linked flagged images form groups with a
label and a distance to the rest, ``anomalies --groups`` prints what the page lists, and the page's
two parts and group actions work (AppTest)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from apptest_helpers import open_page, signed_in_app, texts
from helpers import encode, synthetic_collection, textured
from PIL import Image
from test_cli import run_cli

from core.anomalies import DEFAULT_METHOD, METHODS, MultiScaleKnn, detect_anomalies
from core.anomaly_groups import rare_groups, short_label

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

INLIERS, GROUP, SINGLES = 120, 12, 4


def planted(seed: int, dim: int = 32) -> np.ndarray:
    """Rows 0-119: one broad kind; 120-131: a tight group of another kind; 132-135: four far singles."""
    rng = np.random.default_rng(seed)
    centre, other = rng.normal(size=dim), rng.normal(size=dim)
    inliers = centre + 0.35 * np.linalg.norm(centre) / np.sqrt(dim) * rng.normal(size=(INLIERS, dim))
    group = other + 0.15 * np.linalg.norm(other) / np.sqrt(dim) * rng.normal(size=(GROUP, dim))
    return np.vstack([inliers, group, rng.normal(size=(SINGLES, dim)) * 3])


def ids(rows: range) -> set[str]:
    return {f"img-{i:03d}" for i in rows}


GROUP_IDS = ids(range(INLIERS, INLIERS + GROUP))
SINGLE_IDS = ids(range(INLIERS + GROUP, INLIERS + GROUP + SINGLES))


def test_multiscale_is_the_default_and_listed_first() -> None:
    assert DEFAULT_METHOD == "multiscale" and next(iter(METHODS)) == "multiscale"
    assert MultiScaleKnn.scales(136) == [5, 8, 12, 18, 27, 40, 50]
    assert MultiScaleKnn.scales(20) == [5, 8, 10]
    assert MultiScaleKnn.scales(4) == [3]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_flags_a_planted_group_and_single_outliers(seed: int) -> None:
    collection = synthetic_collection(planted(seed))  # scored on the collection's own neighbour graph
    report = detect_anomalies(collection, checks=False).set_index("id")
    flagged = set(report.index[report["is_anomaly"]])
    assert flagged >= GROUP_IDS | SINGLE_IDS
    assert len(flagged - GROUP_IDS - SINGLE_IDS) <= 3, "few ordinary images flagged"
    groups = report.loc[sorted(GROUP_IDS), "group"]
    assert groups.nunique() == 1 and groups.iloc[0] > 0, "the group is listed as one group"
    assert set(report.index[report["group"] == groups.iloc[0]]) == GROUP_IDS, "and nothing else joins it"
    assert (report.loc[sorted(GROUP_IDS), "reasons"] == f"unlike the rest (group {groups.iloc[0]})").all()
    # The group's nearest images outside it are much farther than its members from each other
    inlier_distance = report.loc[sorted(ids(range(INLIERS))), "distance_to_rest"].median()
    assert report.loc[sorted(GROUP_IDS), "distance_to_rest"].min() > 2 * inlier_distance


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_knn_with_the_tukey_fence_misses_the_group(seed: int) -> None:
    """Why the default changed: each member's 10 nearest are the other members."""
    report = detect_anomalies(synthetic_collection(planted(seed)), "knn", k=10, checks=False).set_index("id")
    assert report.loc[sorted(GROUP_IDS), "is_anomaly"].sum() <= GROUP // 2
    assert report.loc[sorted(SINGLE_IDS), "is_anomaly"].all()


def test_rare_groups_summarise_the_report() -> None:
    collection = synthetic_collection(planted(0))
    report = detect_anomalies(collection, checks=False)
    report["review"] = ""
    report["tags"] = [["scanned"] if i in GROUP_IDS else [] for i in report["id"]]
    groups = rare_groups(report)
    assert len(groups) == 1
    group = groups.iloc[0]
    assert set(group["ids"]) == GROUP_IDS and group["size"] == GROUP
    assert group["label"] == f"tag “scanned” ({GROUP} of {GROUP})"
    members = report[report["id"].isin(GROUP_IDS)]
    assert group["distance"] == pytest.approx(members["distance_to_rest"].mean(), abs=1e-3)
    assert group["score"] == pytest.approx(members["anomaly_score"].mean(), abs=1e-3)
    assert rare_groups(report.assign(group=0)).empty


def test_short_label_prefers_tags_then_file_name_stems() -> None:
    names = ["IMG_0042.jpg", "IMG_0043.jpg", "logo-3.png"]
    assert short_label(names, [[], [], []]) == "“img” (2 of 3)"
    assert short_label(names, [["logos"], ["logos", "logos"], []]) == "tag “logos” (2 of 3)"
    assert short_label(["n01440764_tench.JPEG", "n01443537_tench.JPEG"], [[], []]) == "“tench” (2 of 2)"
    assert short_label(["0001.png", "0002.png"], [[], []]) == "2 images"
    assert short_label(["goldfinch.jpg", "robin.jpg", "junco.jpg"], [[], [], []]) == "“goldfinch”, “robin”, …"


def test_identical_images_form_no_group_and_score_equal() -> None:
    report = detect_anomalies(synthetic_collection(np.ones((30, 8))), checks=False)
    assert not report["is_anomaly"].any() and (report["group"] == 0).all()
    assert np.ptp(report["anomaly_score"]) == 0


# --- real images, CLI and page --------------------------------------------------------------------


def stripes(seed: int, size: tuple[int, int] = (128, 96)) -> Image.Image:
    """Grey stripes with a little grain: one kind, unlike the textured photos (and grayscale)."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((size[1], size[0], 3), dtype=np.int16)
    for x in range(0, size[0], 16):
        pixels[:, x : x + 8] = 240
    grain = rng.integers(-10, 11, (size[1], size[0], 1))
    return Image.fromarray(np.clip(pixels + grain, 0, 255).astype(np.uint8))


def collection_files() -> dict[str, bytes]:
    files = {f"photo-{i:02d}.png": encode(textured(i, (128, 96)), "PNG") for i in range(30)}
    files |= {f"stripes-{i}.png": encode(stripes(i), "PNG") for i in range(5)}
    files["red.png"] = encode(Image.new("RGB", (128, 96), (200, 30, 30)), "PNG")
    return files


STRIPES = {f"stripes-{i}.png" for i in range(5)}


@pytest.fixture
def app_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A collection ingested by the CLI; the app (AppTest) then opens the same data folder."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, data in collection_files().items():
        (photos / name).write_bytes(data)
    data_dir = tmp_path / "data"
    result = run_cli("ingest", str(photos), "--user", "gwen", data_dir=data_dir)
    assert result.returncode == 0, result.stderr
    monkeypatch.setenv("VAD_DATA_DIR", str(data_dir))
    monkeypatch.setenv("VAD_MODEL", "tiny:random")
    return data_dir


def test_page_parts_match_the_cli_and_review_a_group(app_data: Path) -> None:
    """Real images: a group of five striped images and one red image among 30 textured photos."""
    as_json = run_cli("anomalies", "--user", "gwen", "--groups", data_dir=app_data)
    as_csv = run_cli("anomalies", "--user", "gwen", "--groups", "--format", "csv", data_dir=app_data)
    checks = run_cli("anomalies", "--user", "gwen", "--checks", data_dir=app_data)
    assert as_json.returncode == as_csv.returncode == checks.returncode == 0, as_json.stderr + as_csv.stderr
    groups = json.loads(as_json.stdout)
    assert [set(g["filenames"]) for g in groups] == [STRIPES]
    assert {"group", "size", "label", "distance", "score", "ids", "reviews"} <= groups[0].keys()
    assert as_csv.stdout.splitlines()[0].startswith("group,size,label,distance,score,ids")
    report = {r["filename"]: r for r in json.loads(checks.stdout)}
    assert {name for name, r in report.items() if r["is_anomaly"]} >= STRIPES | {"red.png"}
    assert report["red.png"]["group"] == 0 and report["red.png"]["reasons"].startswith("unlike the rest of")
    assert groups[0]["label"] == "“stripes” (5 of 5)"
    grey = sorted((r for r in report.values() if r["is_grayscale_issue"]), key=lambda r: r["grayscale_score"])
    assert {r["filename"] for r in grey} == STRIPES

    at = open_page(signed_in_app(app_data, "gwen"), "anomalies")
    assert not at.exception
    unusual, quality = at.tabs
    assert unusual.label.endswith("Unlike the rest") and quality.label.endswith("Quality problems")
    assert at.selectbox(key="anom_method").value == "multiscale"
    shown = "\n".join(m.value for m in unusual.markdown)
    for group in groups:  # the page lists what the CLI prints
        header = (
            f"**Group {group['group']}** · {group['size']} images · {group['label']} · "
            f"distance to the rest {group['distance']:.2f} · score {group['score']:.2f}"
        )
        assert header in shown, shown
    assert "**1** rare group(s) and **1** single image(s)" in shown

    # quality problems: one check at a time, worst first, with its own review buttons
    at.pills(key="anom_check").set_value("grayscale")
    at.run()
    assert not at.exception
    captions = [c.value for c in at.tabs[1].caption]
    assert any("Grayscale: flagged under a score of" in c and "5 image(s)" in c for c in captions), captions
    prefix = "anomq_confirm_"
    cards = [b.key.removeprefix(prefix) for b in at.tabs[1].button if (b.key or "").startswith(prefix)]
    assert cards == [r["id"] for r in grey], "worst first"
    at.button(key=f"anomq_normal_{grey[0]['id']}").click()
    at.run()
    assert "\n".join(m.value for m in at.tabs[1].markdown).count("· marked normal") == 1

    # a group is tagged and reviewed as a whole
    at.text_input(key="anom_group_tags_1").input("stripy")
    at.button(key="anom_group_tag_1").click()
    at.run()
    assert not at.exception
    assert "· tag “stripy” (5 of 5) ·" in "\n".join(m.value for m in at.tabs[0].markdown), "the label is the tag now"
    at.button(key="anom_group_confirm_1").click()
    at.run()
    assert not at.exception
    shown = "\n".join(m.value for m in at.tabs[0].markdown)
    assert f"score {groups[0]['score']:.2f} · confirmed" in shown, "the whole group was confirmed"
    assert shown.count("✔ confirmed") == 5, "each member's card says so"

    at.button(key="anom_group_delete_1").click()  # inside the "Delete group" popover: a second step
    at.run()
    assert not at.exception
    assert "No group of similar unusual images." in texts(at)
    assert "**31** image(s)" in texts(open_page(at, "gallery")), "the group's 5 images went to the trash"
    assert at.session_state["trash_undo"].count == 5, "and the sidebar offers to undo it"
