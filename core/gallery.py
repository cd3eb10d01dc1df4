"""Gallery logic: list, sort, filter and page a user's images; tag, re-embed, re-thumbnail, delete."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.hashing import content_of, phash_hex
from core.images import decode, thumbnail_bytes
from core.index import SearchHit, vector_cache_root
from core.ingest import delete_images
from core.services import Services
from core.vectors import cache_of

SORTS: dict[str, tuple[str, bool]] = {
    "Newest first": ("created_ts", False),
    "Oldest first": ("created_ts", True),
    "Name A-Z": ("filename", True),
    "Name Z-A": ("filename", False),
    "Largest file": ("bytes", False),
    "Smallest file": ("bytes", True),
}
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
]


@dataclass(frozen=True)
class Page:
    rows: pd.DataFrame
    number: int
    count: int
    total: int


def list_images(services: Services, user: str) -> pd.DataFrame:
    """All of the user's images as one row each (payload fields, no vectors), from the vector
    cache (``core.vectors``) rather than a scroll of the index."""
    rows = cache_of(services.index, vector_cache_root(services.settings)).load(user).rows
    frame = rows.reindex(columns=COLUMNS) if len(rows) else pd.DataFrame(columns=COLUMNS)
    frame["tags"] = frame["tags"].apply(lambda tags: list(tags) if isinstance(tags, list) else [])
    return frame


def all_tags(images: pd.DataFrame) -> list[str]:
    return sorted({tag for tags in images["tags"] for tag in tags})


def filter_and_sort(
    images: pd.DataFrame, text: str = "", tag: str | None = None, sort: str = "Newest first"
) -> pd.DataFrame:
    """Filename substring filter (case-insensitive), optional tag, then one of SORTS."""
    selected = images
    if text.strip():
        selected = selected[selected["filename"].str.contains(text.strip(), case=False, regex=False, na=False)]
    if tag:
        selected = selected.loc[np.array([tag in tags for tags in selected["tags"]], dtype=bool)]
    column, ascending = SORTS.get(sort, SORTS["Newest first"])
    return selected.sort_values([column, "filename"], ascending=[ascending, True], kind="stable", key=_case_insensitive)


def _case_insensitive(values: pd.Series) -> pd.Series:
    return values.str.lower() if values.name == "filename" else values


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


def delete(services: Services, user: str, ids: Sequence[str]) -> int:
    return delete_images(services.store, services.index, user, ids)


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
    content = content_of(decoded.image, decoded.width, decoded.height)
    record.payload["content_phash"], record.payload["content_size"] = content.phash, [content.width, content.height]
    services.index.upsert([record])
    return True


def regenerate_thumbnail(services: Services, user: str, image_id: str) -> bool:
    records = services.index.retrieve(user, [image_id])
    if not records:
        return False
    payload = records[0].payload
    decoded = decode(services.store.get(payload["original_key"]), services.limits)
    services.store.put(payload["thumbnail_key"], thumbnail_bytes(decoded), "image/webp")
    return True
