"""Explorer: UMAP projections, sampling, caching, selection mapping, the page and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from apptest_helpers import open_page, png, signed_in_app, texts, upload
from helpers import ingest_files, tiny_services
from test_cli import run_cli

import core.explorer as explorer
from core import record_edits
from core.cache import ResultCache
from core.collection import Collection
from core.explorer import (
    ProjectionParams,
    density,
    drawn_rows,
    explorer_data,
    ids_at_points,
    locate,
    place,
    project,
    stratified_sample,
)
from core.graph import NeighbourGraph


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


def test_stratified_sample_keeps_every_split_and_label() -> None:
    vectors, _ = clustered(3000, groups=3, seed=4)
    strata = np.array(["train|cat"] * 2000 + ["test|cat"] * 990 + ["test|rare"] * 10)
    rows = stratified_sample(vectors, 300, strata=strata)
    assert len(rows) <= 300
    kept = pd.Series(strata[rows]).value_counts()
    assert set(kept.index) == set(strata), "a small stratum keeps at least one image"
    assert abs(kept["train|cat"] / len(rows) - 2 / 3) < 0.05 and kept["test|rare"] <= 3


def test_ids_at_points_maps_selection_back_to_images() -> None:
    frame = pd.DataFrame({"id": ["a", "b", "c"], "x": [0.5, 1.5, 2.5], "y": [1.0, 2.0, 3.0]})
    points = [{"x": 2.5, "y": 3.0, "curve_number": 1, "point_index": 0}, {"x": 0.5, "y": 1.0}, {"x": 9, "y": 9}]
    assert ids_at_points(frame, points) == ["c", "a"]
    assert ids_at_points(frame, []) == []
    same_place = pd.DataFrame({"id": ["a", "b"], "x": [1.0, 1.0], "y": [2.0, 2.0]})
    clicked = [{"x": 1.0, "y": 2.0, "customdata": ["a"]}, {"x": 1.0, "y": 2.0, "customdata": ["b"]}]
    assert ids_at_points(same_place, clicked) == ["a", "b"], "the id travels with the point"
    assert ids_at_points(same_place, [{"x": 5.0, "y": 5.0, "z": 3.0}]) == [], "the density layer is no image"


def test_place_uses_the_nearest_placed_neighbours() -> None:
    # Row 0..2 fitted; row 3's list: 0 (0.9), 1 (0.5); row 4's list: 3 only; row 5 has no neighbour.
    indices = np.array([[1, 2], [0, 2], [0, 1], [0, 1], [3, -1], [-1, -1]])
    similarities = np.array(
        [[0.5, 0.4], [0.5, 0.4], [0.4, 0.4], [0.9, 0.5], [0.8, -np.inf], [-np.inf, -np.inf]], dtype=np.float32
    )
    graph = NeighbourGraph(indices, similarities, exact=True)
    fitted = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=np.float32)
    vectors = np.eye(6, dtype=np.float32)
    vectors[5] = vectors[2]  # row 5 is most like fitted row 2
    coordinates = place(graph, np.array([0, 1, 2]), fitted, vectors)
    assert np.array_equal(coordinates[:3], fitted)
    weight = np.exp((0.5 - 0.9) / explorer.PLACE_SHARPNESS)  # the nearer neighbour weighs far more
    assert np.allclose(coordinates[3], [10 * weight / (1 + weight), 0], atol=1e-4)
    assert np.allclose(coordinates[4], coordinates[3]), "placed in the next round, from row 3"
    assert np.array_equal(coordinates[5], fitted[2]), "no neighbour: at its most similar fitted image"


def test_sample_and_place_give_every_image_a_position_near_its_group() -> None:
    vectors, labels = clustered(1200, dim=32, groups=4, seed=5)
    names = [f"img-{i:04d}" for i in range(1200)]
    collection = Collection("alice", pd.DataFrame({"id": names, "filename": names}), vectors)
    frame = explorer.projection_frame(collection, ProjectionParams(max_points=200, n_neighbors=10))
    assert len(frame) == 1200 and 150 <= frame["fitted"].sum() <= 200
    points = frame[["x", "y"]].to_numpy()
    assert np.isfinite(points).all()
    fitted = frame["fitted"].to_numpy()
    centres = np.array([points[fitted & (labels == g)].mean(axis=0) for g in range(4)])
    nearest = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
    assert (nearest[~fitted] == labels[~fitted]).mean() > 0.97, "placed images land in their own group"
    graph = collection.neighbours()
    assert graph.k >= explorer.PLACE_NEAREST, "placement read the collection's shared graph"
    for image_id in collection.images["id"].sample(20, random_state=1):  # any image can be located
        here = locate(frame, image_id)
        row = frame.set_index("id").loc[image_id]
        assert (here.x, here.y, here.fitted) == (row["x"], row["y"], row["fitted"])
    assert locate(frame, "no-such-image") is None


def test_drawn_rows_keep_the_budget_fitted_first_and_density_counts_the_rest() -> None:
    frame = pd.DataFrame({"fitted": [True] * 30 + [False] * 70})
    mask = drawn_rows(frame, 50)
    assert mask.sum() == 50 and mask[:30].all()
    assert drawn_rows(frame, 20).sum() == 20 and drawn_rows(frame, 20)[30:].sum() == 0
    assert drawn_rows(frame, 500).all()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=1000), rng.normal(size=1000)
    xs, ys, grid = density(x, y, bins=20)
    assert grid.shape == (20, 20) and len(xs) == len(ys) == 20 and np.nansum(grid) == 1000


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
    # Images stored before datasets / splits / labels existed read as the defaults.
    assert frame["split"].eq("(no split)").all() and frame["label"].eq("(no label)").all()
    assert frame["dataset"].eq("default").all()


def test_colours_by_split_and_label_and_the_selection_sets_them(tmp_path) -> None:
    with tiny_services(tmp_path / "data") as services:
        ids = ingest_files(services, "sy", {f"s{i}.png": png(seed=20 + i) for i in range(8)})
        names = sorted(ids)
        services.index.set_payload("sy", [ids[names[0]]], {"splits": ["test", "train"], "datasets": ["pets"]})
        occurrence = {"name": names[1], "path": names[1], "dataset": "default", "split": None, "label": None}
        services.index.set_payload("sy", [ids[names[1]]], {"occurrences": [occurrence]})
        chosen = [ids[names[1]], ids[names[2]]]
        assert record_edits.set_split(services.index, "sy", chosen, "val") == 2
        assert record_edits.set_label(services.index, "sy", chosen, "cat") == 2
        record_edits.set_label(services.index, "sy", [ids[names[2]]], "dog")
        frame = explorer_data(services, "sy", ProjectionParams(n_neighbors=4), colour="split").set_index("id")
    assert frame.loc[ids[names[0]], "split"] == "test, train", "a leak shows both splits"
    assert frame.loc[ids[names[0]], "dataset"] == "pets"
    assert frame.loc[ids[names[1]], ["split", "label"]].tolist() == ["val", "cat"]
    assert frame.loc[ids[names[2]], ["split", "label"]].tolist() == ["val", "dog"], "label changed, split kept"
    assert frame.loc[ids[names[3]], ["split", "label"]].tolist() == ["(no split)", "(no label)"]
    with tiny_services(tmp_path / "data") as services:  # persisted: a fresh process reads the same
        payload = services.index.retrieve("sy", [ids[names[1]]])[0].payload
    assert payload["splits"] == ["val"] and payload["label"] == "cat"
    assert payload["occurrences"][0]["split"] == "val", "a split is where the image's files are"


def test_explorer_page(app_env):
    at = signed_in_app(app_env, "eve")
    assert "Not enough images to map" in texts(open_page(at, "explorer"))
    upload(open_page(at, "upload"), [(f"e{i}.png", png(seed=70 + i)) for i in range(12)])
    open_page(at, "explorer")
    assert not at.exception
    assert at.get("plotly_chart"), "the map is drawn"
    assert "Drag a box or a lasso" in texts(at) and "Click a point to see its image" in texts(at)
    assert "drawn as points" not in texts(at), "12 images: every one is a point, nothing to explain"
    for colour in ("anomaly score", "split", "label"):
        at.selectbox(key="exp_color").set_value(colour)
        at.run()
        assert not at.exception, colour
    at.segmented_control(key="exp_dims").set_value("3D")
    at.run()
    assert not at.exception and "Clicking and selecting work in the 2D view" in texts(at)
    at.number_input(key="exp_max").set_value(1000)
    at.run()
    assert not at.exception
    at.segmented_control(key="exp_dims").set_value("2D")
    at.text_input(key="exp_locate").input("e3.png")
    at.run()
    assert not at.exception and "★ marks e3.png." in texts(at)
    at.text_input(key="exp_locate").input("E1")  # part of a name, any case: e1.png, e10.png, e11.png
    at.run()
    assert "★ marks 3 images." in texts(at)
    at.text_input(key="exp_locate").input("nowhere.png")
    at.run()
    assert "No image named 'nowhere.png' (or with it in its name) here." in texts(at)
    at.text_input(key="exp_locate").input("")
    at.run()
    points = [trace for trace in drawn_figure(at)["data"] if trace.get("name") != "located"]
    assert all("%{customdata[1]:.2f}" in t["hovertemplate"] for t in points), "hover numbers are rounded"
    ids = [row[0] for trace in points for row in trace["customdata"]][:2]  # each point carries its image id
    at.session_state["explorer_highlight"] = {"ids": ids, "what": "search results"}
    at.run()
    assert not at.exception and "★ marks 2 search results." in texts(at)


def drawn_figure(at) -> dict:
    """The Plotly figure the page sent to the browser."""
    return json.loads(at.get("plotly_chart")[0].proto.spec)


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
    assert list(written.columns) == ["id", "filename", "x", "y", "z", "fitted"] and len(written) == 10
    with tiny_services(data_dir) as services:
        expected = explorer_data(services, "kim", ProjectionParams(dims=3, n_neighbors=5))
    merged = written.merge(expected, on="id", suffixes=("", "_page"))
    assert np.allclose(merged[["x", "y", "z"]].to_numpy(), merged[["x_page", "y_page", "z_page"]].to_numpy(), atol=1e-4)
