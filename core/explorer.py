"""Explorer logic: 2D/3D UMAP projections of a user's embeddings, sampled, coloured and cached.

UMAP (umap-learn, cosine metric) runs on a PCA reduction to 50 dimensions with neighbours given
to it: the collection's shared neighbour graph (``core.graph``) when the whole collection is
fitted, else exact faiss neighbours of the sample. Several times faster on 512-d embeddings than
UMAP's own search, and the neighbourhoods it preserves stay.

Above ``max_points`` UMAP is fitted on a stratified sample (proportional to k-means groups of the
embeddings, crossed with dataset / split / label when images carry them) and every other image is
*placed*: at the similarity-weighted mean position of its nearest placed neighbours in the shared
graph, which is how umap-learn's ``transform`` starts; rounds repeat until neighbours of neighbours
are placed. No second neighbour search: every image has a position, so any image can be located.
The page draws a point budget of them and shows the rest as a density layer.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import asdict, dataclass

import faiss
import numpy as np
import pandas as pd
from sklearn.cluster import MiniBatchKMeans
from sklearn.decomposition import PCA

from core.anomalies import DEFAULT_K, cached_scores
from core.cache import ResultCache
from core.collection import Collection, load_collection
from core.duplicates import duplicate_report
from core.embed import normalise
from core.graph import NeighbourGraph
from core.quality import CHECKS
from core.services import AnalysisServices, Services

log = logging.getLogger(__name__)

PCA_DIMENSIONS = 50
DEFAULT_MAX_POINTS = 20_000
PCA_FIT_ROWS = 100_000
DEFAULT_DRAW_POINTS = 50_000
PLACE_NEAREST = 5  # placed neighbours averaged for each image placed from the graph
PLACE_SHARPNESS = 0.02  # cosine gap that divides a neighbour's weight by e (nearer ones weigh more)
PLACE_ROUNDS = 6
COLOR_OPTIONS = (
    "anomaly score",
    "duplicate cluster",
    "quality flag",
    "split",
    "label",
    "dataset",
    "tag",
    "upload date",
)
NO_VALUE = {"tag": "(no tag)", "split": "(no split)", "label": "(no label)", "duplicate cluster": "none"}


@dataclass(frozen=True)
class ProjectionParams:
    dims: int = 2
    n_neighbors: int = 15
    min_dist: float = 0.1
    seed: int = 42
    max_points: int = DEFAULT_MAX_POINTS

    def __post_init__(self) -> None:
        if self.dims not in (2, 3):
            raise ValueError("dims must be 2 or 3")
        if not 2 <= self.n_neighbors <= 200:
            raise ValueError("n_neighbors must be between 2 and 200")
        if not 0.0 <= self.min_dist <= 1.0:
            raise ValueError("min_dist must be between 0 and 1")
        if self.max_points < 10:
            raise ValueError("max_points must be at least 10")


def project(
    vectors: np.ndarray, params: ProjectionParams = ProjectionParams(), graph: NeighbourGraph | None = None
) -> np.ndarray:
    """UMAP coordinates, shape (n, dims); deterministic for a given seed. ``graph``: the rows'
    neighbour graph (else exact neighbours of the PCA reduction are searched here)."""
    import umap  # imported lazily: numba compiles on first import (several seconds)

    n = len(vectors)
    if n == 0:
        return np.zeros((0, params.dims), dtype=np.float32)
    if n <= params.dims + 1:  # too few points for UMAP's spectral initialisation
        return np.pad(vectors[:, : params.dims], ((0, 0), (0, max(0, params.dims - vectors.shape[1]))))
    reduced = vectors
    if vectors.shape[1] > PCA_DIMENSIONS and n > PCA_DIMENSIONS:
        reduced = PCA(n_components=PCA_DIMENSIONS, random_state=params.seed).fit_transform(vectors)
    reduced = np.ascontiguousarray(normalise(reduced))
    # Neighbours given to UMAP (each point first in its own list, as UMAP expects) replace its own
    # approximate search: faster here, and the same for every run.
    neighbours = min(params.n_neighbors, n - 1)
    if graph is not None and graph.k >= neighbours - 1:
        others, similarities = graph.first(neighbours - 1)
        indices = np.hstack([np.arange(n)[:, None], others])
        similarities = np.hstack([np.ones((n, 1), np.float32), similarities])
    else:
        index = faiss.IndexFlatIP(reduced.shape[1])
        index.add(reduced)
        similarities, indices = index.search(reduced, neighbours)
    distances = np.clip(1.0 - similarities, 0.0, 2.0).astype(np.float32)
    reducer = umap.UMAP(
        n_components=params.dims,
        n_neighbors=neighbours,
        min_dist=params.min_dist,
        metric="cosine",
        random_state=params.seed,
        init="spectral" if n > 20 else "random",
        precomputed_knn=(indices, distances, None),
    )
    with warnings.catch_warnings():  # n_jobs with a seed, no search index for transform: both expected
        warnings.simplefilter("ignore", UserWarning)
        return reducer.fit_transform(reduced).astype(np.float32)


def stratified_sample(vectors: np.ndarray, size: int, seed: int = 42, strata: np.ndarray | None = None) -> np.ndarray:
    """Row positions of a sample of ``size`` rows, proportional to k-means groups (sorted).

    ``strata``: one label per row (e.g. dataset / split / label); the groups are then k-means
    group x stratum, so every stratum keeps its share and at least one row."""
    n = len(vectors)
    if n <= size:
        return np.arange(n)
    groups = min(50, size // 10)
    if vectors.shape[1] > PCA_DIMENSIONS:
        vectors = _reduce(vectors, seed)
    labels = MiniBatchKMeans(n_clusters=groups, random_state=seed, n_init=3, batch_size=4096).fit_predict(vectors)
    if strata is not None:
        strata = np.asarray(strata, dtype=object)
        labels = pd.factorize(pd.Series(labels).astype(str) + "|" + pd.Series(strata).astype(str))[0]
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    chosen = []
    for members in np.split(order, bounds):
        take = round(len(members) * size / n)
        take = max(1, take) if strata is None else take  # a stratum keeps one image (below), not each cell
        chosen.append(rng.choice(members, size=min(take, len(members)), replace=False))
    if strata is not None:
        missing = np.setdiff1d(pd.unique(strata), strata[np.concatenate(chosen)])
        chosen += [rng.choice(np.flatnonzero(strata == value), size=1) for value in missing]
    picked = np.concatenate(chosen)
    if len(picked) > size:
        picked = rng.choice(picked, size=size, replace=False)
    return np.sort(picked)


def _reduce(vectors: np.ndarray, seed: int) -> np.ndarray:
    """PCA to 50 dimensions; above ``PCA_FIT_ROWS`` rows fitted on a sample and applied in chunks,
    so memory stays near the (memory-mapped) vectors themselves."""
    n = len(vectors)
    if n <= PCA_FIT_ROWS:
        return PCA(n_components=PCA_DIMENSIONS, random_state=seed).fit_transform(vectors)
    sample = np.sort(np.random.default_rng(seed).choice(n, PCA_FIT_ROWS, replace=False))
    pca = PCA(n_components=PCA_DIMENSIONS, random_state=seed).fit(np.asarray(vectors[sample]))
    chunks = range(0, n, PCA_FIT_ROWS)
    return np.vstack([pca.transform(np.asarray(vectors[s : s + PCA_FIT_ROWS])) for s in chunks]).astype(np.float32)


def place(graph: NeighbourGraph, fitted_rows: np.ndarray, fitted: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Coordinates of every row: ``fitted`` for ``fitted_rows``, the rest placed from the graph.

    Each round places every row that has a placed neighbour among its graph list, at the weighted
    mean of its ``PLACE_NEAREST`` nearest placed ones (weight exp((cosine - best) / sharpness));
    rows placed in a round are used from the next (so the result does not depend on order). Rows
    no round reaches (isolated in the graph) go to their most similar fitted row."""
    n, dims = len(graph), fitted.shape[1]
    coordinates = np.zeros((n, dims), dtype=np.float32)
    coordinates[fitted_rows] = fitted
    placed = np.zeros(n, dtype=bool)
    placed[fitted_rows] = True
    for _ in range(PLACE_ROUNDS):
        todo = np.flatnonzero(~placed)
        if not len(todo):
            break
        found = np.zeros(n, dtype=bool)
        update = coordinates.copy()
        for chunk in np.array_split(todo, max(1, len(todo) // 50_000)):
            neighbours, similarities = graph.indices[chunk], graph.similarities[chunk]
            usable = (neighbours >= 0) & placed[np.maximum(neighbours, 0)]
            usable &= np.cumsum(usable, axis=1) <= PLACE_NEAREST
            best = np.max(np.where(usable, similarities, -np.inf), axis=1, keepdims=True)
            weights = np.where(usable, np.exp((np.where(usable, similarities, 0) - best) / PLACE_SHARPNESS), 0.0)
            total = weights.sum(axis=1)
            has = total > 0
            mean = np.einsum("mk,mkd->md", weights, coordinates[np.maximum(neighbours, 0)])
            update[chunk[has]] = mean[has] / total[has, None]
            found[chunk[has]] = True
        if not found.any():
            break
        coordinates, placed = update, placed | found
    stray = np.flatnonzero(~placed)
    if len(stray):
        sample = np.asarray(vectors[fitted_rows])
        for chunk in np.array_split(stray, max(1, len(stray) // 10_000)):
            nearest = np.argmax(np.asarray(vectors[chunk]) @ sample.T, axis=1)
            coordinates[chunk] = fitted[nearest]
    return coordinates


def label_strata(images: pd.DataFrame) -> np.ndarray | None:
    """Dataset / split / label of each row as one string, or None when no image carries them."""
    columns = [c for c in ("datasets", "splits", "label") if c in images]
    if not columns:
        return None
    parts = [images[c].map(lambda v: _text(v, "")) for c in columns]
    joined = parts[0].str.cat(parts[1:], sep="|") if len(parts) > 1 else parts[0]
    return joined.to_numpy() if joined.nunique() > 1 else None


def projection_frame(collection: Collection, params: ProjectionParams) -> pd.DataFrame:
    """Coordinates (x, y[, z]) of every image, with id, filename and ``fitted`` (True: in UMAP's
    fit; False: placed from the neighbour graph)."""
    n, started = len(collection), time.perf_counter()
    rows = stratified_sample(collection.vectors, params.max_points, params.seed, label_strata(collection.images))
    if len(rows) == n:
        coordinates = project(np.asarray(collection.vectors), params, collection.neighbours(params.n_neighbors))
    else:
        fitted = project(np.asarray(collection.vectors[rows]), params)
        graph = collection.neighbours()
        placing = time.perf_counter()
        coordinates = place(graph, rows, fitted, collection.vectors)
        log.info(
            "explorer: sampled and fitted %d by UMAP in %.1f s, %d placed from the graph in %.1f s",
            len(rows),
            placing - started,
            n - len(rows),
            time.perf_counter() - placing,
        )
    frame = collection.images[["id", "filename"]].reset_index(drop=True)
    for axis, name in enumerate("xyz"[: params.dims]):
        frame[name] = coordinates[:, axis]
    frame["fitted"] = np.zeros(n, dtype=bool)
    frame.loc[rows, "fitted"] = True
    frame.attrs["total"] = n
    return frame


def explorer_data(
    services: Services | AnalysisServices,
    user: str,
    params: ProjectionParams,
    cache: ResultCache | None = None,
    colour: str | None = None,
) -> pd.DataFrame:
    """What the Explorer page plots: cached coordinates of every image plus the colour columns.

    Coordinates are cached on disk per user, model, set of images and parameters. Anomaly scores
    and quality flags come from the (also cached) anomaly report the Anomalies page uses; duplicate
    clusters, the costliest, are computed only when ``colour`` asks for them.
    """
    collection = load_collection(services, user)
    key = {"fingerprint": collection.fingerprint, "model": services.model_name, **asdict(params), "version": 3}
    frame = (
        projection_frame(collection, params)
        if cache is None
        else cache.get_or_compute("projection", user, key, lambda: projection_frame(collection, params))
    )
    frame = frame.merge(_colours(services, collection, cache, colour), on="id", how="left")
    frame.attrs["total"] = len(collection)
    return frame


def _text(value: object, empty: str) -> str:
    """A payload field (a list such as splits, datasets, tags; or a label) as text; ``empty``
    when it has no value."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(str(v) for v in value) if len(value) else empty
    return value if isinstance(value, str) and value else empty


def _colours(
    services: Services | AnalysisServices, collection: Collection, cache: ResultCache | None, colour: str | None
) -> pd.DataFrame:
    """Per-image values to colour by (duplicate clusters only when asked for)."""
    anomalies = cached_scores(services, collection, "knn", DEFAULT_K, True, cache)  # the Anomalies page's report
    flags = anomalies[[f"is_{name}_issue" for name in CHECKS]]
    first_flag = flags.idxmax(axis=1).str.removeprefix("is_").str.removesuffix("_issue")
    colours = pd.DataFrame(
        {
            "id": anomalies["id"],
            "anomaly score": anomalies["anomaly_score"],
            "quality flag": np.where(flags.any(axis=1), first_flag.map(lambda n: CHECKS[n].label), "none"),
        }
    )
    info = collection.images.set_index("id")
    colours["upload date"] = colours["id"].map(info["created_at"]).str.slice(0, 10)
    # Payload fields of the datasets wave; images stored before it lack them (see core/records.py).
    for name, field, empty in (
        ("tag", "tags", NO_VALUE["tag"]),
        ("split", "splits", NO_VALUE["split"]),
        ("dataset", "datasets", "default"),
        ("label", "label", NO_VALUE["label"]),
    ):
        values = info[field].reindex(colours["id"]) if field in info else pd.Series([None] * len(colours))
        colours[name] = [_text(value, empty) for value in values]
    if colour in (None, "duplicate cluster"):
        clusters = duplicate_report(services, collection.user, collection=collection)
        cluster_of = {m: f"cluster {c.id}" for c in clusters for m in c.members}
        colours["duplicate cluster"] = colours["id"].map(lambda image_id: cluster_of.get(image_id, "none"))
    return colours


def drawn_rows(frame: pd.DataFrame, budget: int, seed: int = 42) -> np.ndarray:
    """Which rows of ``frame`` to draw as points (a boolean mask of at most ``budget`` rows): the
    fitted sample first, then placed images at random; the rest is drawn as density."""
    n = len(frame)
    if n <= budget:
        return np.ones(n, dtype=bool)
    rng = np.random.default_rng(seed)
    fitted = np.flatnonzero(frame["fitted"].to_numpy()) if "fitted" in frame else np.zeros(0, dtype=int)
    placed = np.setdiff1d(np.arange(n), fitted)
    if len(fitted) >= budget:
        chosen = rng.choice(fitted, size=budget, replace=False)
    else:
        chosen = np.concatenate([fitted, rng.choice(placed, size=budget - len(fitted), replace=False)])
    mask = np.zeros(n, dtype=bool)
    mask[chosen] = True
    return mask


def density(x: np.ndarray, y: np.ndarray, bins: int = 120) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of points per cell of a ``bins`` x ``bins`` grid (NaN where empty): x and y cell
    centres and the (y, x) grid, small enough to send to the browser in place of the points."""
    counts, x_edges, y_edges = np.histogram2d(x, y, bins=bins)
    grid = np.where(counts.T > 0, counts.T, np.nan)
    return (x_edges[:-1] + x_edges[1:]) / 2, (y_edges[:-1] + y_edges[1:]) / 2, grid


@dataclass(frozen=True)
class Location:
    """Where an image is on the map; ``fitted``: in UMAP's fit (else placed from its neighbours)."""

    image_id: str
    x: float
    y: float
    z: float | None = None
    fitted: bool = True


def locate(frame: pd.DataFrame, image_id: str) -> Location | None:
    """Any image of the collection on the map (every image has a position); None if not in it."""
    position = pd.Index(frame["id"]).get_indexer([image_id])[0]
    if position < 0:
        return None
    point = frame.iloc[position]
    z = float(point["z"]) if "z" in frame else None
    return Location(image_id, float(point["x"]), float(point["y"]), z, bool(point.get("fitted", True)))


def ids_at_points(frame: pd.DataFrame, points: list[dict]) -> list[str]:
    """Image ids of the points a Plotly selection returned: the id the figure put first in each
    point's ``customdata``, else matched by coordinates (colour groups split the points into
    several traces). Points of other traces (the density layer) are ignored."""
    if not points or frame.empty:
        return []
    known = set(frame["id"])
    lookup = {(float(x), float(y)): i for x, y, i in zip(frame["x"], frame["y"], frame["id"], strict=True)}
    found = []
    for point in points:
        data = point.get("customdata")
        if isinstance(data, (list, tuple)) and data and data[0] in known:
            found.append(data[0])
        else:
            found.append(lookup.get((float(point.get("x", "nan")), float(point.get("y", "nan")))))
    return list(dict.fromkeys(i for i in found if i is not None))


def write_projection(services: Services | AnalysisServices, user: str, path: str, params: ProjectionParams) -> int:
    """``python -m core project``: the same coordinates as the page, as CSV. Returns rows written."""
    frame = explorer_data(services, user, params, ResultCache(services.settings.data_dir / "cache"), colour="tag")
    frame[["id", "filename", *"xyz"[: params.dims], "fitted"]].to_csv(path, index=False)
    return len(frame)
