"""Explorer logic: 2D/3D UMAP projections of a user's embeddings, sampled, coloured and cached.

UMAP (umap-learn, cosine metric) runs on a PCA reduction to 50 dimensions with neighbours given
to it: the collection's shared neighbour graph (``core.graph``) when every image is shown, else
exact faiss neighbours of the sample. Several times faster on 512-d embeddings than UMAP's own
search, and the neighbourhoods it preserves stay. Above ``max_points`` a stratified sample
(proportional to k-means groups of the embeddings) is projected instead.
"""

from __future__ import annotations

import logging
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
COLOR_OPTIONS = ("anomaly score", "duplicate cluster", "quality flag", "tag", "upload date")


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


def stratified_sample(vectors: np.ndarray, size: int, seed: int = 42) -> np.ndarray:
    """Row positions of a sample of ``size`` rows, proportional to k-means groups (sorted)."""
    n = len(vectors)
    if n <= size:
        return np.arange(n)
    groups = min(50, size // 10)
    if vectors.shape[1] > PCA_DIMENSIONS:
        vectors = _reduce(vectors, seed)
    labels = MiniBatchKMeans(n_clusters=groups, random_state=seed, n_init=3, batch_size=4096).fit_predict(vectors)
    rng = np.random.default_rng(seed)
    chosen = []
    for group in range(groups):
        members = np.flatnonzero(labels == group)
        take = max(1, round(len(members) * size / n))
        chosen.append(rng.choice(members, size=min(take, len(members)), replace=False))
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


def projection_frame(collection: Collection, params: ProjectionParams) -> pd.DataFrame:
    """Coordinates (x, y[, z]) with id and filename for the (possibly sampled) collection."""
    rows = stratified_sample(collection.vectors, params.max_points, params.seed)
    whole = len(rows) == len(collection)
    graph = collection.neighbours(params.n_neighbors) if whole else None
    coordinates = project(np.asarray(collection.vectors[rows]), params, graph)
    frame = collection.images.iloc[rows][["id", "filename"]].reset_index(drop=True)
    for axis, name in enumerate("xyz"[: params.dims]):
        frame[name] = coordinates[:, axis]
    frame.attrs["total"] = len(collection)
    return frame


def explorer_data(
    services: Services | AnalysisServices,
    user: str,
    params: ProjectionParams,
    cache: ResultCache | None = None,
    colour: str | None = None,
) -> pd.DataFrame:
    """What the Explorer page plots: cached coordinates plus the colour columns.

    Coordinates are cached on disk per user, model, set of images and parameters. Anomaly scores
    and quality flags come from the (also cached) anomaly report the Anomalies page uses; duplicate
    clusters, the costliest, are computed only when ``colour`` asks for them.
    """
    collection = load_collection(services, user)
    key = {"fingerprint": collection.fingerprint, "model": services.model_name, **asdict(params), "version": 2}
    frame = (
        projection_frame(collection, params)
        if cache is None
        else cache.get_or_compute("projection", user, key, lambda: projection_frame(collection, params))
    )
    frame = frame.merge(_colours(services, collection, cache, colour), on="id", how="left")
    frame.attrs["total"] = len(collection)
    return frame


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
    tags = info["tags"] if "tags" in info else pd.Series(dtype=object)
    colours["tag"] = colours["id"].map(lambda i: ", ".join(tags.get(i) or []) or "(no tag)")
    if colour in (None, "duplicate cluster"):
        clusters = duplicate_report(services, collection.user, collection=collection)
        cluster_of = {m: f"cluster {c.id}" for c in clusters for m in c.members}
        colours["duplicate cluster"] = colours["id"].map(lambda image_id: cluster_of.get(image_id, "none"))
    return colours


@dataclass(frozen=True)
class Location:
    """Where an image is on the map: its own point, or the nearest shown image's (not sampled)."""

    image_id: str
    shown_as: str  # the id of the point that stands for it
    x: float
    y: float
    z: float | None = None

    @property
    def on_map(self) -> bool:
        return self.image_id == self.shown_as


def locate(frame: pd.DataFrame, collection: Collection, image_id: str) -> Location | None:
    """Any image of the collection on a (possibly sampled) map; None if it is not in it.

    An image left out of the sample is placed at its nearest neighbour that is shown, found in
    the collection's neighbour graph (or, if none of its listed neighbours is shown, by cosine
    among the shown images)."""
    shown = pd.Index(frame["id"])
    ids = pd.Index(collection.images["id"])
    position = ids.get_indexer([image_id])[0]
    if position < 0:
        return None
    if image_id in shown:
        stand_in = image_id
    else:
        neighbours = collection.neighbours().indices[position]
        listed = [ids[n] for n in neighbours if n >= 0 and ids[n] in shown]
        if listed:
            stand_in = listed[0]
        else:
            rows = ids.get_indexer(shown)
            stand_in = shown[int(np.argmax(np.asarray(collection.vectors[rows]) @ collection.vectors[position]))]
    point = frame.iloc[shown.get_loc(stand_in)]
    z = float(point["z"]) if "z" in frame else None
    return Location(image_id, stand_in, float(point["x"]), float(point["y"]), z)


def ids_at_points(frame: pd.DataFrame, points: list[dict]) -> list[str]:
    """Image ids of the points a Plotly selection returned (matched by their coordinates, since
    colour groups split the points into several traces)."""
    if not points or frame.empty:
        return []
    lookup = {(float(x), float(y)): i for x, y, i in zip(frame["x"], frame["y"], frame["id"], strict=True)}
    found = [lookup.get((float(p.get("x", "nan")), float(p.get("y", "nan")))) for p in points]
    return list(dict.fromkeys(i for i in found if i is not None))


def write_projection(services: Services | AnalysisServices, user: str, path: str, params: ProjectionParams) -> int:
    """``python -m core project``: the same coordinates as the page, as CSV. Returns rows written."""
    frame = explorer_data(services, user, params, ResultCache(services.settings.data_dir / "cache"), colour="tag")
    frame[["id", "filename", *"xyz"[: params.dims]]].to_csv(path, index=False)
    return len(frame)
