"""``python -m core duplicates|anomalies``: parseable output, the same answers as the pages' engines."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from apptest_helpers import jpeg_variant
from helpers import png
from test_cli import ROOT, run_cli

from core.anomalies import anomaly_report
from core.collection import load_collection
from core.duplicates import clusters_frame, duplicate_report
from core.services import find_collection, open_analysis_services, open_services
from core.settings import load_settings


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("analysis")
    photos = root / "photos"
    photos.mkdir()
    original = png(seed=11, size=(200, 150))
    (photos / "original.png").write_bytes(original)
    (photos / "copy.jpg").write_bytes(jpeg_variant(original, 0.8, 70))
    for i in range(6):
        (photos / f"other{i}.png").write_bytes(png(seed=20 + i))
    result = run_cli("ingest", str(photos), "--user", "quinn", data_dir=root / "data")
    assert result.returncode == 0, result.stderr
    return root / "data"


def test_duplicates_json_and_csv_match_the_engine(data_dir):
    as_json = run_cli("duplicates", "--user", "quinn", "--level", "near", data_dir=data_dir)
    as_csv = run_cli("duplicates", "--user", "quinn", "--level", "near", "--format", "csv", data_dir=data_dir)
    assert as_json.returncode == 0 and as_csv.returncode == 0, as_json.stderr + as_csv.stderr
    clusters = json.loads(as_json.stdout)
    frame = pd.read_csv(io.StringIO(as_csv.stdout))

    services = open_services(load_settings(data_dir=data_dir, model="tiny:random", device="cpu"))
    try:
        expected = duplicate_report(services, "quinn", ("near",))
        expected_frame = clusters_frame(expected, load_collection(services, "quinn").images)
    finally:
        services.close()
    assert [c["members"] for c in clusters] == [c.members for c in expected]
    assert len(clusters) == 1 and clusters[0]["level"] == "near"
    assert {"keeper", "keeper_reason", "links", "min_similarity"} <= clusters[0].keys()
    assert list(frame["filename"]) == list(expected_frame["filename"])
    assert frame.loc[frame["is_keeper"], "filename"].tolist() == ["original.png"]


def test_anomalies_output_matches_the_engine(data_dir):
    result = run_cli(
        "anomalies", "--user", "quinn", "--method", "lof", "--k", "3", "--checks", "--top", "4", data_dir=data_dir
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 4
    assert {
        "id",
        "filename",
        "anomaly_score",
        "is_anomaly",
        "reasons",
        "review",
        "dark_score",
        "is_blurry_issue",
    } <= rows[0].keys()
    services = open_services(load_settings(data_dir=data_dir, model="tiny:random", device="cpu"))
    try:
        expected = anomaly_report(services, "quinn", "lof", 3, checks=True)
    finally:
        services.close()
    assert [r["id"] for r in rows] == expected["id"].head(4).tolist()
    assert [r["anomaly_score"] for r in rows] == pytest.approx(expected["anomaly_score"].head(4).tolist())


def test_unknown_user_name_is_a_usage_error(data_dir):
    result = run_cli("anomalies", "--user", "../etc", data_dir=data_dir)
    assert result.returncode == 2 and "invalid user name" in result.stderr


MODULES_AFTER = (
    "import sys, json; from core.cli import main; code = main(sys.argv[1:]); "
    "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules}), file=sys.stderr)"
)


@pytest.mark.parametrize(
    "command",
    [
        ["duplicates", "--user", "quinn"],
        ["anomalies", "--user", "quinn", "--method", "lof", "--k", "3"],
        ["project", "--user", "quinn", "--neighbors", "4", "--out", "{out}"],
    ],
)
def test_analyses_never_load_the_model(data_dir, tmp_path, command):
    """They embed nothing, so neither torch nor the model is loaded (tens of seconds saved)."""
    args = [a.replace("{out}", str(tmp_path / "map.csv")) for a in command]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VAD_")}
    environment.update({"VAD_DATA_DIR": str(data_dir), "VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu"})
    result = subprocess.run(
        [sys.executable, "-c", MODULES_AFTER, *args], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    outcome = json.loads(result.stderr.strip().splitlines()[-1])
    assert outcome == {"code": 0, "torch": False}, result.stderr
    if command[0] == "project":
        assert len(pd.read_csv(tmp_path / "map.csv")) == 8


def test_analysis_services_find_the_collection_the_model_writes(data_dir):
    settings = load_settings(data_dir=data_dir, model="tiny:random", device="cpu")
    assert find_collection(settings) == ("tiny:random", 64)
    assert find_collection(settings.model_copy(update={"model": "ViT-B-32:openai"})) is None
    opened = open_analysis_services(settings)
    try:
        assert opened.model_name == "tiny:random" and opened.index.count("quinn") == 8
    finally:
        opened.close()
