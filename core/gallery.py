"""Gallery logic: the QA table of a user's images (payloads, quality flags, cached anomaly scores
and duplicate status), filtered and sorted by a ``GalleryQuery`` that round-trips through the URL;
tags, review, delete (to the trash), similar, re-embed, re-thumbnail.

Analyses are only ever *read* here from their disk caches (``core.cache``): the page says when
one is missing and offers to compute it, once, through ``compute_analyses``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.anomalies import DEFAULT_K, anomaly_report, cached_scores
from core.cache import ResultCache
from core.collection import Collection
from core.duplicates import Cluster, default_semantic_threshold, duplicate_report
from core.hashing import content_of, phash_hex
from core.images import decode, thumbnail_for_key
from core.index import SearchHit, vector_cache_root
from core.quality import CHECKS, run_checks, stats_frame
from core.reviews import not_duplicate_pairs, set_anomaly_review
from core.services import AnalysisServices, Services
from core.trash import TrashBatch, open_trash
from core.vectors import Snapshot, cache_of

COLUMNS = [
    "id",
    "filename",
    "width",
    "height",
    "bytes",
    "format",
    "created_at",
    "created_ts",
    "tags",
    "sha256",
    "phash",
    "thumbnail_key",
    "original_key",
    "datasets",
    "splits",
    "label",
]
_NO_IDS = pd.DataFrame({"id": pd.Series(dtype=str)})
#: The anomaly method the gallery shows: the Anomalies page's default (same disk cache).
ANOMALY_METHOD = "knn"
UNUSUAL, NO_FLAG = "unusual", "none"
FLAGS: dict[str, str] = {UNUSUAL: "Unlike the rest", **{n: c.label for n, c in CHECKS.items()}, NO_FLAG: "No flag"}
REVIEWS = {"unreviewed": "Not reviewed", "confirmed": "Confirmed anomaly", "normal": "Marked normal"}
DUPLICATE_STATUS = {
    "in_cluster": "In a cluster",
    "keeper": "Keeper",
    "extra": "Extra copy",
    "none": "Not a duplicate",
}
#: URL key -> (label, column, ascending); ties are broken by file name.
SORTS: dict[str, tuple[str, str, bool]] = {
    "newest": ("Newest first", "created_ts", False),
    "oldest": ("Oldest first", "created_ts", True),
    "name": ("Name A-Z", "filename", True),
    "name-desc": ("Name Z-A", "filename", False),
    "largest": ("Largest file", "bytes", False),
    "smallest": ("Smallest file", "bytes", True),
    "pixels": ("Most pixels", "pixels", False),
    "unusual": ("Most unusual first", "anomaly_score", False),
    "quality": ("Worst quality first", "quality_score", True),
}


@dataclass(frozen=True)
class Page:
    rows: pd.DataFrame
    number: int
    count: int
    total: int


def list_images(services: Services, user: str) -> pd.DataFrame:
    """All of the user's images as one row each (payload fields, no vectors), from the vector
    cache (``core.vectors``) rather than a scroll of the index."""
    return _listing(_snapshot(services, user).rows)


def _snapshot(services: Services | AnalysisServices, user: str) -> Snapshot:
    return cache_of(services.index, vector_cache_root(services.settings)).load(user)


def _listing(rows: pd.DataFrame) -> pd.DataFrame:
    frame = rows.reindex(columns=COLUMNS) if len(rows) else pd.DataFrame(columns=COLUMNS)
    frame["tags"] = frame["tags"].apply(_as_list)
    return frame


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, (list, tuple, np.ndarray)) else []


def all_tags(images: pd.DataFrame) -> list[str]:
    return sorted({tag for tags in images["tags"] for tag in tags})


# --- the QA table ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Analyses:
    """The cached analyses the table shows; None: not computed for the current images yet."""

    anomalies: pd.DataFrame | None  # id, anomaly_score, is_anomaly
    duplicates: pd.DataFrame | None  # id, cluster, duplicate ("keeper" or "extra")


def qa_table(services: Services | AnalysisServices, user: str) -> tuple[pd.DataFrame, Analyses]:
    """Every image of ``user`` with what the gallery filters on, and the analyses found cached."""
    snapshot = _snapshot(services, user)
    analyses = cached_analyses(services, user, snapshot)
    return annotate(snapshot.rows, analyses), analyses


def annotate(rows: pd.DataFrame, analyses: Analyses) -> pd.DataFrame:
    """The listing plus derived columns: pixels, day, review, dataset fields, quality flags and
    the worst check score (from the payload's stats), anomaly score and duplicate status."""
    table = _listing(rows)
    table["pixels"] = pd.to_numeric(table["width"]) * pd.to_numeric(table["height"])
    table["day"] = pd.to_datetime(table["created_at"], utc=True, errors="coerce").dt.date
    table["review"] = _column(rows, "anomaly_review").where(lambda r: r.isin(["confirmed", "normal"]), "")
    table["datasets"] = [_as_list(v) or ["default"] for v in _column(rows, "datasets")]
    table["splits"] = [_as_list(v) for v in _column(rows, "splits")]
    table["label"] = [v if isinstance(v, str) and v else None for v in _column(rows, "label")]
    table["format"] = table["format"].fillna("").astype(str).str.upper()
    quality = _quality(rows, table)
    issues = quality[[f"is_{n}_issue" for n in CHECKS]].fillna(False).to_numpy(dtype=bool)
    table["quality_flags"] = [[n for n, hit in zip(CHECKS, row, strict=True) if hit] for row in issues]
    table["quality_score"] = quality[[f"{n}_score" for n in CHECKS]].min(axis=1, skipna=True)
    table = _merge(table, analyses.anomalies, {"anomaly_score": np.nan, "is_anomaly": False})
    return _merge(table, analyses.duplicates, {"cluster": -1, "duplicate": "none"}, known=analyses.duplicates)


def _column(rows: pd.DataFrame, name: str) -> pd.Series:
    return rows[name].reset_index(drop=True) if name in rows else pd.Series([None] * len(rows), dtype=object)


def _quality(rows: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    if table.empty:
        return pd.DataFrame(columns=[c for n in CHECKS for c in (f"{n}_score", f"is_{n}_issue")])
    stats = stats_frame(_column(rows, "quality"))
    return run_checks(pd.concat([table.reset_index(drop=True), stats], axis=1))


def _merge(
    table: pd.DataFrame, extra: pd.DataFrame | None, defaults: dict[str, Any], known: object = True
) -> pd.DataFrame:
    """Left-join ``extra`` on id; rows it lacks get ``defaults`` (all None when ``known`` is None)."""
    if extra is None or known is None:
        return table.assign(**dict.fromkeys(defaults, None))
    merged = table.merge(extra[["id", *defaults]], on="id", how="left")
    for column, default in defaults.items():
        if not (isinstance(default, float) and np.isnan(default)):
            merged[column] = merged[column].where(merged[column].notna(), default).astype(type(default))
    return merged


# --- cached analyses: read, or compute once on request ---------------------------------------------


class NotCached(LookupError):
    """The analysis has not been computed for the current images."""


class _CachedOnly(ResultCache):
    """A ResultCache that reads and never computes (a miss raises NotCached)."""

    def get_or_compute(self, kind: str, user: str, key: dict[str, Any], compute: Any) -> pd.DataFrame:
        def missing() -> pd.DataFrame:
            raise NotCached(kind)

        return super().get_or_compute(kind, user, key, missing)


def cached_analyses(services: Services | AnalysisServices, user: str, snapshot: Snapshot | None = None) -> Analyses:
    """The anomaly scores and duplicate status of ``user``'s current images, if cached."""
    snapshot = snapshot or _snapshot(services, user)
    ids_only = Collection(user, snapshot.rows[["id"]] if len(snapshot.rows) else _NO_IDS, snapshot.vectors)
    cache = _CachedOnly(_cache_root(services))
    try:
        anomalies = cached_scores(services, ids_only, ANOMALY_METHOD, DEFAULT_K, True, cache)
    except NotCached:
        anomalies = None
    try:
        duplicates = cache.get_or_compute("duplicate-status", user, _duplicates_key(services, user, snapshot), None)
    except NotCached:
        duplicates = None
    return Analyses(anomalies, duplicates)


def compute_analyses(services: Services | AnalysisServices, user: str) -> Analyses:
    """Compute and cache what ``cached_analyses`` lacks (the Anomalies page shares the scores)."""
    cache = ResultCache(_cache_root(services))
    anomalies = anomaly_report(services, user, ANOMALY_METHOD, DEFAULT_K, True, cache)
    snapshot = _snapshot(services, user)
    key = _duplicates_key(services, user, snapshot)
    duplicates = cache.get_or_compute(
        "duplicate-status", user, key, lambda: duplicate_status(duplicate_report(services, user))
    )
    return Analyses(anomalies, duplicates)


def duplicate_status(clusters: Sequence[Cluster]) -> pd.DataFrame:
    """One row per clustered image: its cluster and whether it is the keeper or an extra copy."""
    rows = [
        {"id": member, "cluster": cluster.id, "duplicate": "keeper" if member == cluster.keeper else "extra"}
        for cluster in clusters
        for member in cluster.members
    ]
    return pd.DataFrame(rows, columns=["id", "cluster", "duplicate"])


def _duplicates_key(services: Services | AnalysisServices, user: str, snapshot: Snapshot) -> dict[str, Any]:
    """What the Duplicates page's default clusters depend on: the images, model, thresholds and
    the pairs the user said are not duplicates."""
    pairs = sorted("|".join(sorted(pair)) for pair in not_duplicate_pairs(snapshot.rows))
    return {
        "fingerprint": _fingerprint(user, snapshot),
        "model": services.model_name,
        "near": services.settings.phash_threshold,
        "semantic": default_semantic_threshold(services.model_name),
        "not_duplicates": hashlib.sha256("\n".join(pairs).encode()).hexdigest()[:16],
        "version": 1,
    }


def _fingerprint(user: str, snapshot: Snapshot) -> str:
    """The analyses' cache key for this set of images (``Collection.fingerprint``: ids only)."""
    return Collection(user, snapshot.rows[["id"]] if len(snapshot.rows) else _NO_IDS, snapshot.vectors).fingerprint


def _cache_root(services: Services | AnalysisServices) -> Path:
    return services.settings.data_dir / "cache"


def analyses_stamp(services: Services | AnalysisServices, user: str) -> int:
    """Changes when an analysis of ``user`` is cached (by any page or the CLI): cheap to read."""
    try:
        return (_cache_root(services) / user).stat().st_mtime_ns
    except OSError:
        return 0


# --- the query: filters and sort, as kept in the URL ---------------------------------------------


@dataclass(frozen=True)
class GalleryQuery:
    """What the gallery shows. Within a field any value matches; all fields must match."""

    text: str = ""
    flag: tuple[str, ...] = ()
    review: tuple[str, ...] = ()
    duplicate: tuple[str, ...] = ()
    tag: tuple[str, ...] = ()
    format: tuple[str, ...] = ()
    dataset: tuple[str, ...] = ()
    split: tuple[str, ...] = ()
    label: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None
    min_kb: int | None = None
    max_kb: int | None = None
    min_score: float | None = None
    sort: str = "newest"

    def to_params(self) -> dict[str, str]:
        """URL query parameters for the fields that differ from the defaults."""
        params: dict[str, str] = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value == spec.default:
                continue
            params[spec.name] = ",".join(value) if isinstance(value, tuple) else str(value)
        return params

    @classmethod
    def from_params(cls, params: Mapping[str, str | list[str]]) -> GalleryQuery:
        """The query of a URL; values that do not parse are ignored (a hand-edited link still opens)."""
        query = cls()
        for spec in fields(cls):
            raw = params.get(spec.name)
            if raw is None:
                continue
            text = ",".join(raw) if isinstance(raw, list) else str(raw)
            try:
                value = _parse(spec.name, spec.default, text)
            except ValueError:
                continue
            query = replace(query, **{spec.name: value})
        return query

    @property
    def active(self) -> int:
        """How many filters are set (the sort does not count)."""
        return len([k for k in self.to_params() if k != "sort"])


_CHOICES: dict[str, Mapping[str, str]] = {"flag": FLAGS, "review": REVIEWS, "duplicate": DUPLICATE_STATUS}


def _parse(name: str, default: object, text: str) -> object:
    if isinstance(default, tuple):
        values = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
        if name in _CHOICES:
            values = tuple(v for v in values if v in _CHOICES[name])
        return tuple(v.upper() for v in values) if name == "format" else values
    if name == "sort":
        if text not in SORTS:
            raise ValueError(text)
        return text
    if name in ("since", "until"):
        return date.fromisoformat(text)
    if name in ("min_kb", "max_kb"):
        return max(0, int(text))
    if name == "min_score":
        return float(text)
    return text[:200]


def select(table: pd.DataFrame, query: GalleryQuery) -> pd.DataFrame:
    """The rows of ``table`` (from ``annotate``) that match ``query``, in its sort order."""
    mask = np.ones(len(table), dtype=bool)
    if query.text.strip():
        mask &= _name_contains(table, query.text)
    if query.flag:
        mask &= _flag_mask(table, query.flag)
    if query.review:
        review = table["review"].replace("", "unreviewed")
        mask &= review.isin(query.review).to_numpy()
    if query.duplicate:
        mask &= _duplicate_mask(table["duplicate"], query.duplicate)
    for name, column in (("tag", "tags"), ("dataset", "datasets"), ("split", "splits")):
        wanted = set(getattr(query, name))
        if wanted:
            mask &= np.array([bool(wanted.intersection(values)) for values in table[column]], dtype=bool)
    if query.format:
        mask &= table["format"].isin(query.format).to_numpy()
    if query.label:
        mask &= table["label"].isin(query.label).to_numpy()
    if query.since:
        mask &= (table["day"] >= query.since).fillna(False).to_numpy(dtype=bool)
    if query.until:
        mask &= (table["day"] <= query.until).fillna(False).to_numpy(dtype=bool)
    if query.min_kb is not None:
        mask &= (pd.to_numeric(table["bytes"]) >= query.min_kb * 1024).to_numpy()
    if query.max_kb is not None:
        mask &= (pd.to_numeric(table["bytes"]) <= query.max_kb * 1024).to_numpy()
    if query.min_score is not None:
        mask &= (pd.to_numeric(table["anomaly_score"]) >= query.min_score).fillna(False).to_numpy(dtype=bool)
    return sort(table[mask], query.sort)


def filter_by_name(images: pd.DataFrame, text: str) -> pd.DataFrame:
    """The rows whose file name contains ``text`` (trimmed, case-insensitive, literal)."""
    return images[_name_contains(images, text)] if text.strip() else images


def _name_contains(images: pd.DataFrame, text: str) -> np.ndarray:
    return images["filename"].str.contains(text.strip(), case=False, regex=False, na=False).to_numpy(dtype=bool)


def sort(table: pd.DataFrame, key: str) -> pd.DataFrame:
    """One of SORTS (unknown: newest first); missing values last, ties by file name."""
    _, column, ascending = SORTS.get(key, SORTS["newest"])
    values = pd.to_numeric(table[column], errors="coerce") if column != "filename" else table[column].str.lower()
    order = pd.DataFrame({"value": values, "name": table["filename"].str.lower()}, index=table.index)
    order = order.sort_values(["value", "name"], ascending=[ascending, True], kind="stable", na_position="last")
    return table.loc[order.index]


def _flag_mask(table: pd.DataFrame, flags: Sequence[str]) -> np.ndarray:
    unusual = table["is_anomaly"].fillna(False).astype(bool).to_numpy()
    checks = table["quality_flags"]
    mask = np.zeros(len(table), dtype=bool)
    if UNUSUAL in flags:
        mask |= unusual
    wanted = set(flags) - {UNUSUAL, NO_FLAG}
    if wanted:
        mask |= np.array([bool(wanted.intersection(f)) for f in checks], dtype=bool)
    if NO_FLAG in flags:
        mask |= ~unusual & np.array([not f for f in checks], dtype=bool)
    return mask


def _duplicate_mask(status: pd.Series, wanted: Sequence[str]) -> np.ndarray:
    values = status.fillna("unknown")
    mask = values.isin([w for w in wanted if w in ("keeper", "extra", "none")])
    if "in_cluster" in wanted:
        mask |= values.isin(["keeper", "extra"])
    return mask.to_numpy()


def paginate(images: pd.DataFrame, number: int, per_page: int) -> Page:
    count = max(1, -(-len(images) // per_page))
    number = min(max(1, number), count)
    start = (number - 1) * per_page
    return Page(rows=images.iloc[start : start + per_page], number=number, count=count, total=len(images))


def normalise_tags(text: str) -> list[str]:
    """Comma-separated tags, trimmed, lower-cased, de-duplicated, in order."""
    seen: dict[str, None] = {}
    for part in text.split(","):
        tag = " ".join(part.strip().lower().split())[:40].strip()
        if tag:
            seen[tag] = None
    return list(seen)


def set_tags(services: Services, user: str, image_id: str, tags: Sequence[str]) -> None:
    services.index.set_payload(user, [image_id], {"tags": list(tags)})


def add_tags(services: Services, user: str, ids: Sequence[str], tags: Sequence[str]) -> int:
    """Add tags to many images; returns how many images were changed."""
    records = services.index.retrieve(user, list(ids))
    for record in records:
        merged = list(dict.fromkeys([*record.payload.get("tags", []), *tags]))
        services.index.set_payload(user, [record.id], {"tags": merged})
    return len(records)


def remove_tags(services: Services, user: str, ids: Sequence[str], tags: Sequence[str]) -> int:
    """Remove tags from many images; returns how many images had one of them."""
    doomed = set(tags)
    changed = 0
    for record in services.index.retrieve(user, list(ids)):
        current = list(record.payload.get("tags") or [])
        if doomed.intersection(current):
            services.index.set_payload(user, [record.id], {"tags": [t for t in current if t not in doomed]})
            changed += 1
    return changed


def set_review(services: Services, user: str, ids: Sequence[str], review: str | None) -> int:
    """Mark images as confirmed anomalies, normal, or not reviewed (None); returns how many."""
    mine = sorted(services.index.existing_ids(user, list(ids)))
    set_anomaly_review(services.index, user, mine, review)
    return len(mine)


def move_to_trash(services: Services, user: str, ids: Sequence[str]) -> TrashBatch | None:
    """Delete the user's images among ``ids`` the undoable way (``core.trash``: restorable until
    the trash is emptied or the retention ends); the batch to restore, None if none was theirs."""
    return open_trash(services).move(user, ids)


def delete(services: Services, user: str, ids: Sequence[str]) -> int:
    """``move_to_trash``, returning how many images were deleted."""
    batch = move_to_trash(services, user, ids)
    return batch.count if batch else 0


def similar(services: Services, user: str, image_id: str, limit: int = 8) -> list[SearchHit]:
    """The user's images most similar to one of their images (itself excluded)."""
    records = services.index.retrieve(user, [image_id], with_vectors=True)
    if not records or records[0].vector is None:
        return []
    return services.index.search(user, records[0].vector, limit=limit, exclude_ids=[image_id])


def original_bytes(services: Services, user: str, image_id: str) -> bytes | None:
    records = services.index.retrieve(user, [image_id])
    return services.store.get(records[0].payload["original_key"]) if records else None


def re_embed(services: Services, user: str, image_id: str) -> bool:
    """Recompute the image's vector from its stored original (e.g. after a model change)."""
    records = services.index.retrieve(user, [image_id])
    if not records:
        return False
    record = records[0]
    decoded = decode(services.store.get(record.payload["original_key"]), services.limits)
    record.vector = services.embedder.embed_images([decoded.image])[0]
    record.payload["phash"] = phash_hex(decoded.image)
    content = content_of(decoded.image, decoded.width, decoded.height, record.payload["phash"])
    record.payload["content_phash"], record.payload["content_size"] = content.phash, [content.width, content.height]
    services.index.upsert([record])
    return True


def regenerate_thumbnail(services: Services, user: str, image_id: str) -> bool:
    records = services.index.retrieve(user, [image_id])
    if not records:
        return False
    payload = records[0].payload
    decoded = decode(services.store.get(payload["original_key"]), services.limits)
    services.store.put(payload["thumbnail_key"], *thumbnail_for_key(decoded, payload["thumbnail_key"]))
    return True
