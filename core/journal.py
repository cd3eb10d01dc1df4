"""The intent journal: what an ingest is about to write, so that a killed one leaves nothing behind.

Before a batch's objects are written, the ingest appends one *intent* per image (user, point id,
object keys) to its own file under ``DATA_DIR/journal`` and fsyncs it; once the image is consistent
(point upserted, or its objects removed after a failure) it appends *done*. A file whose writer is
gone (it holds an exclusive lock while alive) and that still has open intents is what a kill -9,
a power cut or an unreachable store left: ``recover`` makes each open intent whole or removes it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from core.index import VectorIndex
from core.storage import ObjectStore, StorageError, StoreUnreachable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Intent:
    """One image about to be stored: its owner, point id and object keys (original first)."""

    user: str
    id: str
    keys: tuple[str, ...]


class IntentJournal:
    """One writer's journal file; created on the first intent, removed on close once all are done."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
        self.open_intents: dict[str, Intent] = {}
        self._handle: IO[str] | None = None

    def intend(self, intents: Iterable[Intent]) -> None:
        """Record the intents durably (written and fsynced) before any of their objects is."""
        lines = []
        for intent in intents:
            self.open_intents[intent.id] = intent
            lines.append(json.dumps({"intent": {"user": intent.user, "id": intent.id, "keys": list(intent.keys)}}))
        if lines:
            self._append(lines)

    def done(self, ids: Iterable[str]) -> None:
        """These images are consistent now (stored whole, or removed); no fsync: recovery re-checks."""
        ids = [i for i in ids if self.open_intents.pop(i, None) is not None]
        if ids:
            self._append([json.dumps({"done": ids})], sync=False)

    def close(self) -> None:
        """Release the file; it stays (for ``recover``) while some intent is still open."""
        if self._handle is None:
            return
        if not self.open_intents:
            self.path.unlink(missing_ok=True)
        self._handle.close()  # releases the lock
        self._handle = None

    def _append(self, lines: list[str], sync: bool = True) -> None:
        try:
            if self._handle is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._handle = self.path.open("a", encoding="utf-8")
                fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._handle.write("".join(f"{line}\n" for line in lines))
            self._handle.flush()
            if sync:
                os.fsync(self._handle.fileno())
        except OSError as exc:
            raise StorageError(f"could not write the intent journal {self.path}: {exc.strerror or exc}") from exc


def read_open_intents(path: Path) -> dict[str, Intent]:
    """The intents of a journal file without a later ``done`` (a torn last line is ignored)."""
    intents: dict[str, Intent] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if "intent" in entry:
                i = entry["intent"]
                intents[i["id"]] = Intent(i["user"], i["id"], tuple(i["keys"]))
            for done in entry.get("done", ()):
                intents.pop(done, None)
    return intents


@dataclass
class JournalFiles:
    """The journal files of a folder: those of live writers and those left behind."""

    live: list[Path] = field(default_factory=list)
    stale: list[Path] = field(default_factory=list)

    def live_keys(self) -> set[str]:
        """Object keys that a running ingest may be writing right now: never orphans."""
        keys: set[str] = set()
        for path in self.live:
            try:
                for intent in read_open_intents(path).values():
                    keys.update(intent.keys)
            except OSError:
                continue
        return keys


def journal_files(folder: Path) -> JournalFiles:
    """Sort ``folder``'s journal files into live (locked by their writer) and stale ones."""
    found = JournalFiles()
    for path in sorted(Path(folder).glob("*.jsonl")) if Path(folder).is_dir() else ():
        try:
            with path.open("r") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            found.live.append(path)
        except OSError:
            continue
        else:
            found.stale.append(path)
    return found


@dataclass
class Recovery:
    """What ``recover`` did with the open intents of stale journals."""

    completed: int = 0  # had their point and objects (or got their thumbnail back)
    removed: int = 0  # had no point: their objects were removed
    failed: list[str] = field(default_factory=list)  # could not be settled now (store unreachable...)


def recover(folder: Path, store: ObjectStore, index: VectorIndex) -> Recovery:
    """Settle every open intent of the stale journals in ``folder``; a settled file is removed."""
    report = Recovery()
    for path in journal_files(folder).stale:
        try:
            intents = read_open_intents(path)
        except OSError as exc:
            report.failed.append(f"{path}: {exc}")
            continue
        settled = True
        for intent in intents.values():
            try:
                if index.retrieve(intent.user, [intent.id]):
                    report.completed += settle_point(store, index, intent.user, intent.id, intent.keys)
                elif index.ids_in_other_collections(intent.user, [intent.id]):
                    report.completed += 1  # the objects belong to another model's point too: kept
                else:
                    remove_keys(store, intent.keys)
                    report.removed += 1
            except Exception as exc:  # the store or the index is down: keep the file for next time
                log.warning("could not settle image %s of %s from %s: %s", intent.id, intent.user, path, exc)
                report.failed.append(f"{intent.user}/{intent.id}: {exc}")
                settled = False
                if isinstance(exc, StoreUnreachable):
                    return report  # each further try would wait for the same timeout
        if settled:
            path.unlink(missing_ok=True)
    return report


def settle_point(store: ObjectStore, index: VectorIndex, user: str, image_id: str, keys: Iterable[str]) -> int:
    """Make an existing point whole: a missing thumbnail is made again from the original; a point
    whose original is gone is deleted with what is left of it. Returns 1 if it stays."""
    original, *others = list(keys)
    if not store.exists(original):
        index.delete(user, [image_id])
        remove_keys(store, others)
        return 0
    for key in others:
        if not store.exists(key):
            store.put(key, *_thumbnail(store.get(original), key))
    return 1


def remove_keys(store: ObjectStore, keys: Iterable[str], attempts: int = 3) -> None:
    """Delete ``keys``, trying each up to ``attempts`` times; raises the last StorageError, and
    StoreUnreachable at once (the store already retried what a retry could fix)."""
    for key in keys:
        for attempt in range(attempts):
            try:
                store.delete(key)
                break
            except StoreUnreachable:
                raise
            except StorageError:
                if attempt == attempts - 1:
                    raise


def _thumbnail(original: bytes, key: str) -> tuple[bytes, str]:
    """A thumbnail made again from ``original`` for ``key``, and its MIME type."""
    from core.images import decode, thumbnail_for_key

    return thumbnail_for_key(decode(original), key)


# --- the full scan: every object and every point --------------------------------------------------

OBJECT_PREFIXES = ("images/", "thumbnails/")


@dataclass
class OrphanScan:
    """Objects no point refers to, and points with a missing object."""

    orphan_keys: list[str] = field(default_factory=list)
    broken_points: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)  # (user, id, keys)
    objects: int = 0
    points: int = 0

    @property
    def clean(self) -> bool:
        return not self.orphan_keys and not self.broken_points


def scan_orphans(
    store: ObjectStore,
    index: VectorIndex,
    journal_folder: Path,
    user: str | None = None,
    held: Iterable[str] = (),
) -> OrphanScan:
    """Compare the store's objects with the index's points (of ``user``, or of everyone).

    Objects that a running ingest announced in its journal are left out: they get their point soon;
    so are ``held`` ones (the images in the trash: ``core.trash.held_keys``).
    """
    scan = OrphanScan()
    keys: set[str] = set()
    for prefix in OBJECT_PREFIXES:
        keys.update(store.list_keys(f"{prefix}{user}/" if user else prefix))
    scan.objects = len(keys)
    users = {user} if user else set(index.counts_by_user()) | {k.split("/")[1] for k in keys if k.count("/") >= 2}
    referenced: set[str] = set()
    for name in sorted(users):
        for record in _records(index, name):
            scan.points += 1
            pair = tuple(str(record.payload.get(k) or "") for k in ("original_key", "thumbnail_key"))
            referenced.update(pair)
            if not all(k in keys for k in pair):
                scan.broken_points.append((name, record.id, pair))
    busy = journal_files(journal_folder).live_keys()
    scan.orphan_keys = sorted(_not_shared(index, keys - referenced - busy - set(held)))
    return scan


def _not_shared(index: VectorIndex, keys: set[str]) -> set[str]:
    """``keys`` less those of images that another model's collection holds (objects are shared)."""
    by_user: dict[str, dict[str, list[str]]] = {}
    for key in keys:
        parts = key.split("/")
        if len(parts) == 3:
            by_user.setdefault(parts[1], {}).setdefault(PurePosixPath(key).stem, []).append(key)
    shared: set[str] = set()
    for user, ids in by_user.items():
        try:
            kept = index.ids_in_other_collections(user, list(ids))
        except ValueError:  # not a valid user name: nobody's points
            continue
        shared.update(key for image_id in kept for key in ids[image_id])
    return keys - shared


def _records(index: VectorIndex, user: str) -> Iterator:
    try:
        yield from index.scroll(user)
    except ValueError:  # a key prefix that is not a valid user name has no points
        return


@dataclass
class Repair:
    """What ``repair_orphans`` changed."""

    removed_objects: int = 0
    completed_points: int = 0
    removed_points: int = 0
    failed: list[str] = field(default_factory=list)


def repair_orphans(store: ObjectStore, index: VectorIndex, scan: OrphanScan) -> Repair:
    """Remove the orphan objects; make each broken point whole or remove it (see ``settle_point``)."""
    report = Repair()
    for key in scan.orphan_keys:
        try:
            remove_keys(store, [key])
            report.removed_objects += 1
        except StorageError as exc:
            report.failed.append(f"{key}: {exc}")
    for user, image_id, keys in scan.broken_points:
        try:
            if settle_point(store, index, user, image_id, keys):
                report.completed_points += 1
            else:
                report.removed_points += 1
        except Exception as exc:
            report.failed.append(f"{user}/{image_id}: {exc}")
    return report
