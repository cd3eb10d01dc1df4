"""The trash: deleted images wait here ``VAD_TRASH_DAYS`` days, then are removed for good.

Moving images to the trash deletes their points from the index (so every page, analysis, the
vector cache and the neighbour graph forget them at once, as for any index write) and keeps each
point's payload and vector in the data folder; the original and the thumbnail stay in the store.
Restoring upserts the very same points (id, payload, vector). Purging (once the retention is
over, or on "Empty trash") removes the objects, unless the image came back meanwhile (uploaded
again) or another model's collection still holds it: the rules ``core.journal`` applies.

One delete is one *batch*: ``DATA_DIR/trash/<collection>/<user>/<batch>.json`` (the payloads, when
they were deleted) next to ``<batch>.npy`` (their vectors, row-aligned). The JSON file is written
last, atomically: a batch without it does not exist. The points are deleted only after the batch
is on disk, so a crash in between loses nothing (the point is still there; purging it later
only drops the trash entry).
"""

from __future__ import annotations

import fcntl
import json
import logging
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from core.files import replace_file
from core.index import ImageRecord, VectorIndex
from core.journal import remove_keys
from core.storage import ObjectStore, StorageError, StoreUnreachable, check_user

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrashedImage:
    """One image in the trash: its point (without the vector) and when it was deleted."""

    id: str
    batch: str
    deleted_at: datetime
    payload: dict[str, Any] = field(repr=False)

    @property
    def filename(self) -> str:
        return str(self.payload.get("filename", self.id))

    @property
    def keys(self) -> list[str]:
        """Its objects in the store: original, then thumbnail."""
        return [k for k in (self.payload.get("original_key"), self.payload.get("thumbnail_key")) if k]

    def expires_at(self, days: float) -> datetime:
        return self.deleted_at + timedelta(days=days)


@dataclass(frozen=True)
class TrashBatch:
    """What one delete moved to the trash (restore it to undo that delete)."""

    id: str
    user: str
    count: int


@dataclass
class Restored:
    """What a restore did: points put back, and images it could not bring back (with why)."""

    restored: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


class Trash:
    """The trash of one collection (one model) of the index, for every user."""

    def __init__(self, root: Path, store: ObjectStore, index: VectorIndex, days: float) -> None:
        self.folder = Path(root) / index.collection
        self.store = store
        self.index = index
        self.days = days

    # --- writes ---------------------------------------------------------------------------------

    def move(self, user: str, ids: Sequence[str]) -> TrashBatch | None:
        """Move the user's images among ``ids`` to the trash; None when none of them is theirs."""
        records = self.index.retrieve(user, list(dict.fromkeys(ids)), with_vectors=True)
        if not records:
            return None
        batch = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
        with self._locked(user) as folder:
            self._write(folder, batch, datetime.now(UTC), records)
            self.index.delete(user, [r.id for r in records])
        self.purge_expired(user)
        return TrashBatch(batch, user, len(records))

    def restore(self, user: str, ids: Iterable[str] | None = None, batch: str | None = None) -> Restored:
        """Put images back exactly as they were: all of them, those of ``ids``, or one ``batch``.

        An image whose original is no longer in the store cannot come back (it is dropped from
        the trash); one uploaded again meanwhile stays as it is now.
        """
        wanted = None if ids is None else set(ids)
        done = Restored()
        with self._locked(user) as folder:
            for name, deleted_at, records in self._batches(folder, with_vectors=True):
                if batch is not None and name != batch:
                    continue
                chosen = [r for r in records if wanted is None or r.id in wanted]
                if not chosen:
                    continue
                chosen_ids = {r.id for r in chosen}
                present = self.index.existing_ids(user, list(chosen_ids))
                back = [r for r in chosen if r.id not in present and self._original_exists(r, done)]
                self.index.upsert(back)
                done.restored += [r.id for r in back]
                done.skipped |= {i: "already in the collection (uploaded again)" for i in present}
                self._rewrite(folder, name, deleted_at, [r for r in records if r.id not in chosen_ids])
        return done

    def purge(self, user: str, ids: Iterable[str] | None = None) -> int:
        """Remove images from the trash for good (all when ``ids`` is None); returns how many."""
        wanted = None if ids is None else set(ids)
        return self._purge(user, lambda item: wanted is None or item.id in wanted)

    def purge_expired(self, user: str, now: datetime | None = None) -> int:
        """Remove for good what has been in the user's trash longer than the retention."""
        limit = (now or datetime.now(UTC)) - timedelta(days=self.days)
        return self._purge(user, lambda item: item.deleted_at <= limit)

    # --- reads ----------------------------------------------------------------------------------

    def items(self, user: str) -> list[TrashedImage]:
        """The user's trash, most recently deleted first."""
        folder = self._user_folder(user)
        found = [
            TrashedImage(r.id, name, deleted_at, r.payload)
            for name, deleted_at, records in self._batches(folder)
            for r in records
        ]
        return sorted(found, key=lambda item: (item.deleted_at, item.batch), reverse=True)

    def count(self, user: str) -> int:
        return len(self.items(user))

    # --- internals ------------------------------------------------------------------------------

    def _purge(self, user: str, doomed: Any) -> int:
        removed = 0
        with self._locked(user) as folder:
            for name, deleted_at, records in self._batches(folder, with_vectors=True):
                items = {r.id: TrashedImage(r.id, name, deleted_at, r.payload) for r in records}
                chosen = [i for i in items.values() if doomed(i)]
                if not chosen:
                    continue
                gone: set[str] = set()
                try:
                    gone = self._remove_objects(user, chosen)
                finally:
                    self._rewrite(folder, name, deleted_at, [r for r in records if r.id not in gone])
                removed += len(gone)
        return removed

    def _remove_objects(self, user: str, items: list[TrashedImage]) -> set[str]:
        """Remove the objects of ``items`` no point refers to; the ids that are settled."""
        ids = [i.id for i in items]
        kept = self.index.existing_ids(user, ids) | self.index.ids_in_other_collections(user, ids)
        settled: set[str] = set()
        for item in items:
            if item.id not in kept:
                try:
                    remove_keys(self.store, item.keys)
                except StoreUnreachable as exc:  # each further call would wait as long: try again later
                    log.warning("trash of %s: objects left for the next purge: %s", user, exc)
                    break
                except StorageError as exc:
                    log.warning("trash of %s: image %s kept for the next purge: %s", user, item.id, exc)
                    continue
            settled.add(item.id)
        return settled

    def _original_exists(self, record: ImageRecord, done: Restored) -> bool:
        key = record.payload.get("original_key")
        if key and self.store.exists(key):
            return True
        done.skipped[record.id] = "its original is no longer in the store"
        return False

    def _user_folder(self, user: str) -> Path:
        return self.folder / check_user(user)

    @contextmanager
    def _locked(self, user: str) -> Iterator[Path]:
        """The user's trash folder, held exclusively (other sessions, the CLI) while in use."""
        folder = self._user_folder(user)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield folder

    def _batches(self, folder: Path, with_vectors: bool = False) -> Iterator[tuple[str, datetime, list[ImageRecord]]]:
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            try:
                meta = json.loads(path.read_text(encoding="utf-8"))
                vectors = np.load(path.with_suffix(".npy")) if with_vectors else None
            except (OSError, ValueError) as exc:
                log.warning("unreadable trash batch %s: %s", path, exc)
                continue
            records = [
                ImageRecord(item["id"], item["payload"], None if vectors is None else vectors[row])
                for row, item in enumerate(meta["items"])
            ]
            yield path.stem, datetime.fromisoformat(meta["deleted_at"]), records

    def _write(self, folder: Path, batch: str, deleted_at: datetime, records: list[ImageRecord]) -> None:
        vectors = np.stack([np.asarray(r.vector, dtype=np.float32) for r in records])
        meta = {
            "deleted_at": deleted_at.isoformat(),
            "collection": self.index.collection,
            "items": [{"id": r.id, "payload": r.payload} for r in records],
        }
        replace_file(folder / f"{batch}.npy", lambda handle: np.save(handle, vectors), private=True)
        replace_file(folder / f"{batch}.json", json.dumps(meta), private=True)

    def _rewrite(self, folder: Path, batch: str, deleted_at: datetime, remaining: list[ImageRecord]) -> None:
        if remaining:
            self._write(folder, batch, deleted_at, remaining)
            return
        (folder / f"{batch}.json").unlink(missing_ok=True)  # first: the batch is gone from here on
        (folder / f"{batch}.npy").unlink(missing_ok=True)


def trash_root(data_dir: Path) -> Path:
    return Path(data_dir) / "trash"


def held_keys(data_dir: Path, user: str | None = None) -> set[str]:
    """Object keys that images in any trash (every model's) still need: never orphans."""
    keys: set[str] = set()
    for path in trash_root(data_dir).glob(f"*/{user or '*'}/*.json"):
        try:
            items = json.loads(path.read_text(encoding="utf-8"))["items"]
        except (OSError, ValueError, KeyError):
            continue
        for item in items:
            payload = item.get("payload", {})
            keys.update(k for k in (payload.get("original_key"), payload.get("thumbnail_key")) if k)
    return keys


def open_trash(services: Any) -> Trash:
    """The trash of the services' collection (``Services`` or ``AnalysisServices``)."""
    settings = services.settings
    return Trash(trash_root(settings.data_dir), services.store, services.index, settings.trash_days)
