"""Explorer: UMAP projections, sampling, caching, selection mapping, the page and the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from apptest_helpers import open_page, png, signed_in_app, texts, upload
from helpers import ingest_files, synthetic_collection, tiny_services
from test_cli import run_cli

import core.explorer as explorer
from core.cache import ResultCache
from core.explorer import ProjectionParams, explorer_data, ids_at_points, locate, project, stratified_sample


def clustered(n: int, dim: int = 64, groups: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, dim)) * 4
    labels = rng.integers(0, groups, n)
    vectors = centres[labels] + rng.normal(size=(n, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), labels


@pytest.mark.parametrize("dims", [2, 3])
def test_projection_shape_and_determinism(dims: int) -> None:
    vectors, _ = clustered(300)
    first = project(vectors, ProjectionParams(dims=dims, seed=7))
    again = project(vectors, ProjectionParams(dims=dims, seed=7))
    other = project(vectors, ProjectionParams(dims=dims, seed=8))
    assert first.shape == (300, dims) and np.isfinite(first).all()
    assert np.array_equal(first, again), "a fixed seed gives the same picture"
    assert not np.allclose(first, other)


def test_projection_keeps_groups_apart() -> None:
    vectors, labels = clustered(400, groups=3)
    points = project(vectors, ProjectionParams(seed=1))
    centres = np.array([points[labels == g].mean(axis=0) for g in range(3)])
    spread = max(points[labels == g].std(axis=0).max() for g in range(3))
    gaps = [np.linalg.norm(centres[a] - centres[b]) for a in range(3) for b in range(a + 1, 3)]
    assert min(gaps) > 2 * spread


@pytest.mark.parametrize("n", [0, 1, 2, 3, 6])
def test_tiny_collections_do_not_crash(n: int) -> None:
    vectors, _ = clustered(max(n, 1))
    assert project(vectors[:n], ProjectionParams(dims=3)).shape == (n, 3)


def test_invalid_parameters_are_refused() -> None:
    for bad in ({"dims": 4}, {"n_neighbors": 1}, {"min_dist": 2.0}, {"max_points": 5}):
        with pytest.raises(ValueError):
            ProjectionParams(**bad)


def test_stratified_sample_keeps_every_group() -> None:
    vectors, labels = clustered(3000, groups=6, seed=3)
    rows = stratified_sample(vectors, 300)
    assert 270 <= len(rows) <= 300 and len(set(rows)) == len(rows) and list(rows) == sorted(rows)
    shares = np.bincount(labels[rows], minlength=6) / len(rows)
    assert np.allclose(shares, np.bincount(labels, minlength=6) / 3000, atol=0.05)
    assert np.array_equal(stratified_sample(vectors[:100], 300), np.arange(100))


def test_ids_at_points_maps_selection_back_to_images() -> None:
    frame = pd.DataFrame({"id": ["a", "b", "c"], "x": [0.5, 1.5, 2.5], "y": [1.0, 2.0, 3.0]})
    points = [{"x": 2.5, "y": 3.0, "curve_number": 1, "point_index": 0}, {"x": 0.5, "y": 1.0}, {"x": 9, "y": 9}]
    assert ids_at_points(frame, points) == ["c", "a"]
    assert ids_at_points(frame, []) == []


def test_cache_hit_and_invalidation_per_user(tmp_path, monkeypatch) -> None:
    calls = []
    real = explorer.projection_frame
    monkeypatch.setattr(explorer, "projection_frame", lambda c, p: calls.append(c.user) or real(c, p))
    with tiny_services(tmp_path / "data") as services:
        ingest_files(services, "ann", {f"a{i}.png": png(seed=i) for i in range(8)})
        ingest_files(services, "ben", {f"b{i}.png": png(seed=50 + i) for i in range(8)})
        cache = ResultCache(tmp_path / "cache")
        params = ProjectionParams(n_neighbors=5)
        first = explorer_data(services, "ann", params, cache)
        explorer_data(services, "ben", params, cache)
        assert calls == ["ann", "ben"]
        again = explorer_data(services, "ann", params, cache)
        assert calls == ["ann", "ben"], "a second visit comes from the cache"
        pd.testing.assert_frame_equal(first[["id", "x", "y"]], again[["id", "x", "y"]])
        assert set(first["id"]) == {r.id for r in services.index.scroll("ann")}

        ingest_files(services, "ann", {"new.png": png(seed=99)})
        explorer_data(services, "ann", params, cache)
        explorer_data(services, "ben", params, cache)
        assert calls == ["ann", "ben", "ann"], "an upload invalidates only that user's projection"
        explorer_data(services, "ann", ProjectionParams(n_neighbors=6), cache)
        assert calls[-1] == "ann" and len(calls) == 4, "other parameters are another entry"


def test_colour_columns(tmp_path) -> None:
    with tiny_services(tmp_path / "data") as services:
        ingest_files(services, "cy", {f"c{i}.png": png(seed=10 + i) for i in range(6)})
        frame = explorer_data(services, "cy", ProjectionParams(n_neighbors=4))
    assert set(explorer.COLOR_OPTIONS) <= set(frame.columns)
    assert frame["tag"].eq("(no tag)").all() and frame["anomaly score"].notna().all()


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    monkeypatch.setenv("VAD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VAD_MODEL", "tiny:random")
    return tmp_path / "data"


def test_explorer_page(app_env):
    at = signed_in_app(app_env, "eve")
    assert "Not enough images to map" in texts(open_page(at, "explorer"))
    upload(open_page(at, "upload"), [(f"e{i}.png", png(seed=70 + i)) for i in range(12)])
    open_page(at, "explorer")
    assert not at.exception
    assert at.get("plotly_chart"), "the map is drawn"
    assert "Drag a box or a lasso" in texts(at)
    at.selectbox(key="exp_color").set_value("anomaly score")
    at.run()
    at.segmented_control(key="exp_dims").set_value("3D")
    at.run()
    assert not at.exception and "Selection works in the 2D view" in texts(at)
    at.number_input(key="exp_max").set_value(1000)
    at.run()
    assert not at.exception
    at.segmented_control(key="exp_dims").set_value("2D")
    at.text_input(key="exp_locate").input("e3.png")
    at.run()
    assert not at.exception and "★ marks e3.png." in texts(at)
    at.text_input(key="exp_locate").input("nowhere.png")
    at.run()
    assert "No image named 'nowhere.png' in this collection." in texts(at)


def test_cli_project_writes_the_page_coordinates(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(10):
        (photos / f"p{i}.png").write_bytes(png(seed=30 + i))
    data_dir = tmp_path / "data"
    assert run_cli("ingest", str(photos), "--user", "kim", data_dir=data_dir).returncode == 0
    out = tmp_path / "coords.csv"
    result = run_cli(
        "project", "--user", "kim", "--dims", "3", "--out", str(out), "--neighbors", "5", data_dir=data_dir
    )
    assert result.returncode == 0, result.stderr
    written = pd.read_csv(out)
    assert list(written.columns) == ["id", "filename", "x", "y", "z"] and len(written) == 10
    with tiny_services(data_dir) as services:
        expected = explorer_data(services, "kim", ProjectionParams(dims=3, n_neighbors=5))
    merged = written.merge(expected, on="id", suffixes=("", "_page"))
    assert np.allclose(merged[["x", "y", "z"]].to_numpy(), merged[["x_page", "y_page", "z_page"]].to_numpy(), atol=1e-4)


def test_locate_places_a_left_out_image_at_its_nearest_shown_neighbour() -> None:
    vectors, _ = clustered(80, dim=16)
    collection = synthetic_collection(vectors)
    frame = explorer.projection_frame(collection, ProjectionParams(max_points=30, n_neighbors=5))
    shown = set(frame["id"])
    inside = frame["id"].iloc[3]
    here = locate(frame, collection, inside)
    assert here.on_map and (here.x, here.y) == (frame["x"].iloc[3], frame["y"].iloc[3])

    left_out = next(i for i in collection.images["id"] if i not in shown)
    there = locate(frame, collection, left_out)
    assert not there.on_map and there.shown_as in shown
    row = collection.images.index[collection.images["id"] == left_out][0]
    similarity = collection.vectors @ collection.vectors[row]
    positions = collection.images.index[collection.images["id"].isin(shown)]
    best = collection.images["id"].iloc[positions[np.argmax(similarity[positions])]]
    assert there.shown_as == best, "the most similar image that is on the map"
    stand_in = frame.set_index("id").loc[there.shown_as]
    assert (there.x, there.y) == (stand_in["x"], stand_in["y"])
    assert locate(frame, collection, "no-such-image") is None
