"""Vector cache: each user's vectors and payload columns on disk, in step with the index.

Analyses read a memory-mapped ``vectors.npy`` (float32, one row per image) and a Parquet table of
payload columns instead of scrolling the index. Layout, per collection and user::

    {root}/{collection}/{user}/current        name of the live base folder
                               base-{seq}/    vectors.npy, rows.parquet, meta.json
                               log/{seq}.pkl  changes since that base (upsert, delete, set_payload)
                               dirty          an index write is (or was, if we crashed) in flight
                               lock           flock: one writer or reader at a time, across processes

Every write to the index is observed (``core.index.base.IndexObserver``): ``dirty`` is created
before the index write and removed once the change is logged, so a process killed in between
leaves ``dirty`` behind and the next reader rebuilds from the index instead of trusting the cache.
Readers also compare the row count with the index's, which catches writers that bypassed the
cache (another data folder, an older version). Logged changes are folded into a new base on read.

Each row carries a ``stamp``: the sequence number of the change that last wrote its vector, so the
neighbour graph (``core.graph``) can tell which rows are new or re-embedded since it was built.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pickle
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.files import replace_file
from core.index.base import Change, IndexObserver, VectorIndex
from core.storage.base import check_user

log = logging.getLogger(__name__)

FORMAT = 1
_CHUNK = 65_536  # rows copied at a time when a base is rewritten
# Payload-only changes (reviews, tags) are applied in memory on read while they are few; a new base
# is written once this many change files or changed rows have piled up, or with any new vector.
_FOLD_AFTER_LOGS = 64
_FOLD_AFTER_ROWS = 5_000
# The last parsed base of a few users' caches in this process, and the base with the changes still
# in its log applied: reading a base parses every row's JSON columns, and applying the log copies
# the changed columns, which a page's every rerun after a review would otherwise pay again.
_READ: OrderedDict[str, tuple[tuple, Snapshot]] = OrderedDict()
_READ_LOCK = threading.Lock()
_READ_KEPT = 8


@dataclass
class Snapshot:
    """One user's cached collection. Rows of ``vectors``, ``stamps`` and ``rows`` line up."""

    vectors: np.ndarray  # (n, d) float32, memory-mapped read-only
    stamps: np.ndarray  # (n,) int64
    rows: pd.DataFrame  # "id" plus one column per payload field
    seq: int  # the last change folded in
    epoch: str  # changes when the cache had to start over without its previous base

    @property
    def ids(self) -> np.ndarray:
        return self.rows["id"].to_numpy()

    def __len__(self) -> int:
        return len(self.rows)


class VectorCache(IndexObserver):
    """The on-disk vector cache of one index collection (``index=None``: no index to follow)."""

    def __init__(self, root: Path, collection: str, dimension: int, index: VectorIndex | None = None) -> None:
        self.root = Path(root) / collection
        self.dimension = dimension
        self.index = index

    # --- observing index writes -------------------------------------------------------------

    @contextmanager
    def observe(self, changes: Sequence[Change]) -> Iterator[None]:
        users = sorted({change.user for change in changes})
        with _locked([self._folder(user) for user in users]):
            for user in users:
                (self._folder(user) / "dirty").write_text(str(os.getpid()))
            yield  # the index write; if it raises, ``dirty`` stays and readers rebuild
            for user in users:
                self._log(user, [c for c in changes if c.user == user])
                (self._folder(user) / "dirty").unlink(missing_ok=True)

    def record(self, changes: Sequence[Change]) -> None:
        """Log changes without an index write (the benchmark feeds the cache directly)."""
        with self.observe(changes):
            pass

    # --- reading ------------------------------------------------------------------------------

    def load(self, user: str) -> Snapshot:
        """The user's cached collection, folded up to date, or rebuilt from the index if stale."""
        folder = self._folder(user)
        with _locked([folder]):
            snapshot = None if (folder / "dirty").exists() else self._read_base(folder)
            pending = self._pending_logs(folder, snapshot.seq) if snapshot is not None else []
            if snapshot is not None and pending:
                snapshot = self._fold(folder, snapshot, pending)
            if snapshot is not None and self.index is not None and self.index.count(user) != len(snapshot):
                log.info("vector cache of %s is stale (count differs from the index): rebuilding", user)
                snapshot = None
            if snapshot is None:
                snapshot = self._rebuild(user, folder)
            return snapshot

    def latest(self, user: str) -> int | None:
        """The sequence number the user's cache will have once folded; None if it must be rebuilt."""
        folder = self._folder(user)
        return None if (folder / "dirty").exists() else self._last_seq(folder)

    def write(self, user: str, ids: Sequence[str], vectors: np.ndarray, payloads: pd.DataFrame) -> Snapshot:
        """Replace the user's cache with these rows (a rebuild, or the benchmark's bulk load)."""
        folder = self._folder(user)
        with _locked([folder]):
            seq = self._last_seq(folder) + 1
            rows = payloads.reset_index(drop=True).copy()
            rows.insert(0, "id", list(ids))
            snapshot = self._write_base(folder, vectors, np.full(len(rows), seq, np.int64), rows, seq, _new_epoch())
            self._drop_logs(folder, seq)
            (folder / "dirty").unlink(missing_ok=True)
            return snapshot

    # --- internals ----------------------------------------------------------------------------

    def _folder(self, user: str) -> Path:
        folder = self.root / check_user(user)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _log(self, user: str, changes: list[Change]) -> None:
        folder = self._folder(user) / "log"
        folder.mkdir(exist_ok=True)
        seq = self._last_seq(self._folder(user)) + 1
        entries = [_entry(change) for change in changes]
        replace_file(folder / f"{seq:012d}.pkl", pickle.dumps(entries, protocol=5))

    def _last_seq(self, folder: Path) -> int:
        logs = [int(p.stem) for p in (folder / "log").glob("*.pkl")] if (folder / "log").is_dir() else []
        bases = [int(p.name.removeprefix("base-")) for p in folder.glob("base-*") if p.is_dir()]
        return max([0, *logs, *bases])

    def _pending_logs(self, folder: Path, after: int) -> list[Path]:
        if not (folder / "log").is_dir():
            return []
        return sorted(p for p in (folder / "log").glob("*.pkl") if int(p.stem) > after)

    def _read_base(self, folder: Path) -> Snapshot | None:
        """The live base, from the in-process copy when it is still the live one (bases never
        change once written: a change makes a new one), else read and parsed from disk."""
        try:
            base = folder / (folder / "current").read_text().strip()
            meta = json.loads((base / "meta.json").read_text())
        except (OSError, ValueError):
            return None
        key = (str(base), meta.get("epoch"), meta.get("seq"), meta.get("count"))
        known = _recall(str(folder), key)
        if known is not None:
            return known
        snapshot = self._parse_base(base, meta)
        return None if snapshot is None else _remember(str(folder), key, snapshot)

    def _parse_base(self, base: Path, meta: dict[str, Any]) -> Snapshot | None:
        try:
            if meta.get("format") != FORMAT or meta.get("dimension") != self.dimension:
                return None
            vectors = np.load(base / "vectors.npy", mmap_mode="r")
            rows = pd.read_parquet(base / "rows.parquet")
        except (OSError, ValueError, KeyError):
            return None
        stamps = rows.pop("_stamp").to_numpy(np.int64)
        for column in meta["json_columns"]:
            rows[column] = [json.loads(v) if isinstance(v, str) else None for v in rows[column]]
        if len(rows) != len(vectors) or len(rows) != meta["count"]:
            return None
        return Snapshot(vectors, stamps, rows, int(meta["seq"]), meta["epoch"])

    def _fold(self, folder: Path, base: Snapshot, pending: list[Path]) -> Snapshot:
        """Apply the logged changes in ``pending`` to ``base``. A few payload changes stay in their
        log files (applied again on the next read: a review costs no rewrite of the whole base);
        otherwise the result is written as the new base."""
        memo = (str(folder / "log"), (base.epoch, base.seq, len(base), tuple(p.name for p in pending)))
        known = _recall(*memo) if len(pending) < _FOLD_AFTER_LOGS else None  # applied by an earlier read
        if known is not None:
            return known
        position = pd.Index(base.rows["id"])
        keep = np.ones(len(base), dtype=bool)
        added: dict[str, tuple[np.ndarray, dict[str, Any], int]] = {}
        updates: list[tuple[int, dict[str, Any]]] = []
        seq = base.seq
        for path in pending:
            seq = int(path.stem)
            for op, ids, data in pickle.loads(path.read_bytes()):
                places = position.get_indexer(ids)
                for number, (image_id, at) in enumerate(zip(ids, places, strict=True)):
                    if op in ("upsert", "delete"):
                        if at >= 0:
                            keep[at] = False
                        added.pop(image_id, None)
                        if op == "upsert":
                            added[image_id] = (data[0][number], dict(data[1][number]), seq)
                    elif image_id in added:
                        added[image_id][1].update(data)
                    elif at >= 0 and keep[at]:
                        updates.append((at, data))
        rows = base.rows.copy(deep=False)  # copy-on-write: the changed columns are replaced below
        changed: dict[str, list[Any]] = {}
        for at, values in updates:
            for column, value in values.items():
                if column not in changed:
                    changed[column] = rows[column].tolist() if column in rows else [None] * len(rows)
                changed[column][at] = value
        for column, cells in changed.items():  # column types as a base read from disk has them
            rows[column] = pd.Series(cells, index=rows.index)
            if column in base.rows:
                with suppress(TypeError, ValueError):
                    rows[column] = rows[column].astype(base.rows[column].dtype)
        new_rows = pd.DataFrame([{"id": i, **payload} for i, (_, payload, _) in added.items()])
        # Only frames with rows are joined: an empty one would give the others its column types
        # (a new user's widths became floats).
        rows = pd.concat([frame for frame in (rows[keep], new_rows) if len(frame)] or [rows[keep]], ignore_index=True)
        new_vectors = [v for v, _, _ in added.values()]
        stamps = np.concatenate([base.stamps[keep], np.array([s for _, _, s in added.values()], np.int64)])
        payloads_only = keep.all() and not new_vectors
        if payloads_only and len(pending) < _FOLD_AFTER_LOGS and len(updates) < _FOLD_AFTER_ROWS:
            return _remember(*memo, Snapshot(base.vectors, stamps, rows, seq, base.epoch))
        if payloads_only and isinstance(base.vectors, np.memmap):  # payloads only: share the file
            vectors: np.ndarray | _Stacked | Path = Path(base.vectors.filename)
        else:
            vectors = _Stacked(base.vectors, keep, new_vectors, self.dimension)
        snapshot = self._write_base(folder, vectors, stamps, rows, seq, base.epoch)
        self._drop_logs(folder, seq)
        return snapshot

    def _rebuild(self, user: str, folder: Path) -> Snapshot:
        """Everything from the index (scrolling it once); keeps stamps of unchanged vectors."""
        if self.index is None:
            raise ValueError(f"no vector cache for {user} and no index to rebuild it from")
        ids, vectors, payloads = [], [], []
        for record in self.index.scroll(user, with_vectors=True):
            ids.append(record.id)
            vectors.append(np.asarray(record.vector, dtype=np.float32))
            payloads.append({k: v for k, v in record.payload.items()})
        matrix = np.vstack(vectors) if vectors else np.zeros((0, self.dimension), np.float32)
        del vectors
        seq = self._last_seq(folder) + 1
        stamps = np.full(len(ids), seq, dtype=np.int64)
        old = self._read_base(folder)
        if old is not None and len(ids):  # vectors that did not change keep their stamp
            at = pd.Index(old.rows["id"]).get_indexer(ids)
            known = np.flatnonzero(at >= 0)
            same = np.all(np.asarray(old.vectors[at[known]]) == matrix[known], axis=1)
            stamps[known[same]] = old.stamps[at[known[same]]]
        rows = pd.DataFrame(payloads)
        rows.insert(0, "id", ids)
        epoch = old.epoch if old is not None else _new_epoch()
        snapshot = self._write_base(folder, matrix, stamps, rows, seq, epoch)
        self._drop_logs(folder, seq)
        (folder / "dirty").unlink(missing_ok=True)
        return snapshot

    def _write_base(
        self,
        folder: Path,
        vectors: np.ndarray | _Stacked | Path,
        stamps: np.ndarray,
        rows: pd.DataFrame,
        seq: int,
        epoch: str,
    ) -> Snapshot:
        """Write a new base; ``vectors``: rows to copy, or the path of an older base's file to share."""
        target = folder / f"base-{seq}"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        if isinstance(vectors, Path):  # an unchanged vectors file of an older base: linked, not copied
            os.link(vectors, target / "vectors.npy")
        else:
            out = np.lib.format.open_memmap(
                target / "vectors.npy", mode="w+", dtype=np.float32, shape=(len(rows), self.dimension)
            )
            for start in range(0, len(rows), _CHUNK):
                out[start : start + _CHUNK] = vectors[start : start + _CHUNK]
            out.flush()
            del out
        table = rows.reset_index(drop=True).copy()
        json_columns = [c for c in table.columns if c != "id" and _holds_containers(table[c])]
        for column in json_columns:
            table[column] = [None if v is None else json.dumps(v) for v in table[column]]
        table["_stamp"] = stamps
        table.to_parquet(target / "rows.parquet", index=False)
        meta = {"format": FORMAT, "seq": seq, "count": len(table), "dimension": self.dimension, "epoch": epoch}
        (target / "meta.json").write_text(json.dumps({**meta, "json_columns": json_columns}))
        _fsync_tree(target)
        replace_file(folder / "current", target.name)
        for stale in folder.glob("base-*"):
            if stale != target:
                shutil.rmtree(stale, ignore_errors=True)
        snapshot = self._read_base(folder)
        assert snapshot is not None
        return snapshot

    def _drop_logs(self, folder: Path, upto: int) -> None:
        if (folder / "log").is_dir():
            for path in (folder / "log").glob("*.pkl"):
                if int(path.stem) <= upto:
                    path.unlink(missing_ok=True)


def _recall(name: str, key: tuple) -> Snapshot | None:
    """The snapshot kept under ``name`` if it was kept for ``key``, with rows of its own."""
    with _READ_LOCK:
        known = _READ.get(name)
        if known is None or known[0] != key:
            return None
        _READ.move_to_end(name)
    # Callers may change their rows: pandas copies on write, so a shallow copy keeps the kept one intact.
    return replace(known[1], rows=known[1].rows.copy(deep=False))


def _remember(name: str, key: tuple, snapshot: Snapshot) -> Snapshot:
    """Keep ``snapshot`` under ``name`` for ``key``; returns it with rows of its own."""
    with _READ_LOCK:
        _READ[name] = (key, snapshot)
        _READ.move_to_end(name)
        while len(_READ) > _READ_KEPT:
            _READ.popitem(last=False)
    return replace(snapshot, rows=snapshot.rows.copy(deep=False))


class _Stacked:
    """Rows ``base[keep]`` followed by ``extra``, sliceable in chunks without building it whole."""

    def __init__(self, base: np.ndarray, keep: np.ndarray, extra: list[np.ndarray], dimension: int) -> None:
        self.kept = np.flatnonzero(keep)
        self.base = base
        self.extra = np.vstack(extra).astype(np.float32) if extra else np.zeros((0, dimension), np.float32)

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(len(self.kept) + len(self.extra))
        head = self.base[self.kept[start : min(stop, len(self.kept))]] if start < len(self.kept) else None
        tail = self.extra[max(0, start - len(self.kept)) : max(0, stop - len(self.kept))]
        return tail if head is None else np.vstack([head, tail])


def _entry(change: Change) -> tuple[str, list[str], Any]:
    if change.op == "upsert":
        vectors = np.vstack([np.asarray(r.vector, np.float32) for r in change.records])
        return "upsert", list(change.ids), (vectors, [dict(r.payload) for r in change.records])
    if change.op == "delete":
        return "delete", list(change.ids), None
    return "set_payload", list(change.ids), dict(change.values or {})


def _holds_containers(column: pd.Series) -> bool:
    return column.dtype == object and any(isinstance(v, (dict, list, tuple, np.ndarray)) for v in column)


def _new_epoch() -> str:
    return uuid.uuid4().hex


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


@contextmanager
def _locked(folders: list[Path]) -> Iterator[None]:
    """Exclusive flock on each folder's ``lock`` file (sorted: no deadlock between writers)."""
    handles = []
    try:
        for folder in sorted(folders):
            handle = open(folder / "lock", "a+")  # noqa: SIM115 - closed below
            fcntl.flock(handle, fcntl.LOCK_EX)
            handles.append(handle)
        yield
    finally:
        for handle in reversed(handles):
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def cache_of(index: VectorIndex, root: Path) -> VectorCache:
    """The vector cache attached to ``index`` (by ``open_index``), or a new one under ``root``."""
    for observer in index.__dict__.get("observers", []):
        if isinstance(observer, VectorCache):
            return observer
    return VectorCache(root, index.collection, index.dimension, index)
