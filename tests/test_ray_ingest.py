"""``ingest --engine ray`` on a real Ray cluster: a head and a worker node as separate processes on
127.0.0.1, against the local engine on the same files.

The same folder (photos, a repeat, a zip, a file that is not an image) is ingested by both engines
into two data folders: the reports, exit codes, point ids, payloads, vectors and stored objects
must be the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    RAY_DRIVER_ENV,
    free_port,
    jpeg,
    list_keys,
    png,
    running_ray_cluster,
    tiny_services,
    without_times,
    zip_bytes,
)

from core.records import occurrence_names

ROOT = Path(__file__).resolve().parents[1]
USER = "alice"


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_ray_cluster(tmp_path_factory.mktemp("ray-logs")) as address:
        yield address


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for seed in range(16):
        (folder / f"photo-{seed:02d}.jpg").write_bytes(jpeg(seed))
    (folder / "copy-of-03.jpg").write_bytes(jpeg(3))
    (folder / "not-an-image.jpg").write_bytes(b"this is text, not a JPEG")
    (folder / "more.zip").write_bytes(zip_bytes({f"inner-{n}.png": png(100 + n) for n in range(4)}))
    return folder


def ingest(engine: str, photos: Path, data_dir: Path, ray_address: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VAD_")}
    environment.update(RAY_DRIVER_ENV)
    environment.update({"VAD_DATA_DIR": str(data_dir), "VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu"})
    return subprocess.run(
        [sys.executable, "-m", "core", "ingest", str(photos), "--user", USER, "--json", "--engine", engine],
        cwd=ROOT,
        env={**environment, "VAD_RAY_ADDRESS": ray_address},
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def runs(photos: Path, ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    """engine -> (completed CLI run, its data folder)."""
    found = {}
    for engine in ("local", "ray"):
        data_dir = tmp_path_factory.mktemp(f"data-{engine}")
        found[engine] = (ingest(engine, photos, data_dir, ray_address), data_dir)
    return found


def report(result: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_ray_engine_reports_what_the_local_engine_reports(runs: dict[str, tuple]) -> None:
    local, ray = runs["local"][0], runs["ray"][0]
    assert ray.returncode == local.returncode == 1, ray.stderr  # 1: the text file is rejected
    assert report(ray) == report(local)
    by_status = {entry["path"].rsplit("/", 1)[-1]: entry for entry in report(ray)}
    assert by_status["not-an-image.jpg"]["status"] == "rejected"
    assert by_status["not-an-image.jpg"]["reason"].startswith("not an image")
    assert by_status["photo-03.jpg"]["status"] == "present"  # "copy-of-03.jpg" comes first
    assert sum(entry["status"] == "stored" for entry in report(ray)) == 20  # 16 photos and 4 zip members
    summary = "22 files: 20 stored, 1 already present, 1 rejected"
    assert summary in ray.stderr and summary in local.stderr


def test_the_ray_engine_stores_the_same_points_and_objects(runs: dict[str, tuple]) -> None:
    stored = {}
    for engine, (_, data_dir) in runs.items():
        with tiny_services(data_dir) as services:
            points = {r.id: r for r in services.index.scroll(USER, with_vectors=True)}
            stored[engine] = points, list_keys(services.store)
    (local_points, local_keys), (ray_points, ray_keys) = stored["local"], stored["ray"]
    assert len(ray_points) == 20
    assert ray_points.keys() == local_points.keys()
    # the repeat is an occurrence of the same image, recorded by both engines
    names = sorted(occurrence_names(p.payload) for p in ray_points.values() if len(p.payload["occurrences"]) > 1)
    assert names == [["copy-of-03.jpg", "photo-03.jpg"]]
    for point_id, point in ray_points.items():
        expected = local_points[point_id]
        assert without_times(point.payload) == without_times(expected.payload)
        np.testing.assert_allclose(point.vector, expected.vector, atol=1e-5)
    # Every point's two objects and nothing else: no orphan.
    assert (
        ray_keys == local_keys == {p.payload[k] for p in ray_points.values() for k in ("original_key", "thumbnail_key")}
    )


def test_a_second_ray_ingest_finds_everything_present(runs: dict[str, tuple], photos: Path, ray_address: str) -> None:
    again = ingest("ray", photos, runs["ray"][1], ray_address)
    assert again.returncode == 1, again.stderr
    statuses = {entry["path"].rsplit("/", 1)[-1]: entry["status"] for entry in report(again)}
    assert statuses.pop("not-an-image.jpg") == "rejected"
    assert set(statuses.values()) == {"present"}


def test_a_ray_address_where_nothing_answers_is_a_usage_error(photos: Path, tmp_path: Path) -> None:
    result = ingest("ray", photos, tmp_path, f"127.0.0.1:{free_port()}")
    assert result.returncode == 2, result.stderr
    assert "error: could not join the Ray cluster: nothing answers at 127.0.0.1:" in result.stderr
    assert result.stdout == ""
