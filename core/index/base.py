"""The vector index interface: one collection per embedding model, every call scoped to a user."""

from __future__ import annotations

import functools
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.payload import finite_payload
from core.storage.base import check_user

#: Namespace for point ids: uuid5(NAMESPACE, "user/sha256"), so the same file for the same user
#: always maps to the same point and ingesting it twice stores nothing new.
ID_NAMESPACE = uuid.UUID("6f1d7c55-3f0e-4c55-9a53-7b1f0e4c2d11")

HNSW_M = 16
HNSW_EF_CONSTRUCT = 100
VECTOR_NAME = "image"


class VectorIndexError(RuntimeError):
    """The vector index could not complete an operation."""


class IndexLocked(VectorIndexError):
    """The embedded index is held by another process; the message names it."""


def image_id(user: str, sha256: str) -> str:
    """The point id of ``user``'s copy of the file with this sha256."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{user}/{sha256}"))


def collection_name(model_name: str, dimension: int) -> str:
    """A collection name carrying the model id, e.g. ``images_vit-b-32-openai_512``."""
    slug = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")
    return f"images_{slug}_{dimension}"


@dataclass
class ImageRecord:
    """One stored image: its point id, payload and (optionally) its vector."""

    id: str
    payload: dict[str, Any]
    vector: np.ndarray | None = None

    @property
    def user(self) -> str:
        return self.payload["user"]


def record_from(point: Any, with_vectors: bool) -> ImageRecord:
    """An ImageRecord from a Qdrant record or point (edge and client types look alike)."""
    vector = None
    if with_vectors and point.vector:
        vector = np.asarray(point.vector[VECTOR_NAME], dtype=np.float32)
    return ImageRecord(id=str(point.id), payload=dict(point.payload or {}), vector=vector)


def point_rows(records: Sequence[ImageRecord], dimension: int) -> list[tuple[str, list[float], dict[str, Any]]]:
    """Each record as (id, vector as floats, payload fit for storing), once its owner is a valid
    user name and its vector has ``dimension`` values; raises before anything is written."""
    rows = []
    for record in records:
        check_user(record.payload.get("user", ""))
        vector = np.asarray(record.vector, dtype=np.float32)
        if vector.shape != (dimension,):
            raise VectorIndexError(f"vector of shape {vector.shape}, expected ({dimension},)")
        rows.append((record.id, vector.tolist(), finite_payload(record.payload)))
    return rows


def check_payload_change(values: Mapping[str, Any]) -> None:
    """Refuse a payload change that would give an image another owner."""
    if "user" in values:
        raise VectorIndexError("the owner of an image cannot be changed")


@dataclass(frozen=True)
class SearchHit:
    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


class VectorIndex(ABC):
    """A Qdrant collection of image vectors with payloads. All reads are filtered by user.

    Writes (upsert, delete, set_payload) of every implementation are reported to the observers
    attached with ``attach_observer`` (the vector cache keeps itself in step that way).
    """

    kind: str
    collection: str
    dimension: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for op in ("upsert", "delete", "set_payload"):
            if op in cls.__dict__ and not getattr(cls.__dict__[op], "__isabstractmethod__", False):
                setattr(cls, op, _observed(op, cls.__dict__[op]))

    @abstractmethod
    def upsert(self, records: Sequence[ImageRecord]) -> None:
        """Insert or replace points (each record must carry a vector and a ``user`` payload)."""

    @abstractmethod
    def retrieve(self, user: str, ids: Sequence[str], with_vectors: bool = False) -> list[ImageRecord]:
        """The user's records among ``ids`` (others' ids are silently absent)."""

    @abstractmethod
    def delete(self, user: str, ids: Sequence[str]) -> None:
        """Delete the user's points among ``ids``."""

    @abstractmethod
    def set_payload(self, user: str, ids: Sequence[str], values: dict[str, Any]) -> None:
        """Merge ``values`` into the payload of the user's points among ``ids``."""

    def set_payloads(self, user: str, values_by_id: Mapping[str, dict[str, Any]]) -> None:
        """Merge each image's own values into its payload, as one write for the observers (a
        backfill of thousands of images logs one change, not one per image)."""
        changes = [Change("set_payload", user, (str(i),), values=v) for i, v in values_by_id.items()]
        if not changes:
            return
        for values in values_by_id.values():
            check_payload_change(values)
        with ExitStack() as stack:
            for observer in self.__dict__.get("observers", []):
                stack.enter_context(observer.observe(changes))
            self._write_payloads(user, values_by_id)

    def _write_payloads(self, user: str, values_by_id: Mapping[str, dict[str, Any]]) -> None:
        """``set_payloads``'s index write (observed by the caller): one ``set_payload`` per image
        unless the implementation has a batch call."""
        write = getattr(type(self).set_payload, "__wrapped__", type(self).set_payload)  # not observed again
        for image_id, values in values_by_id.items():
            write(self, user, [image_id], values)

    @abstractmethod
    def search(
        self,
        user: str,
        vector: np.ndarray,
        limit: int = 10,
        min_score: float | None = None,
        exclude_ids: Sequence[str] = (),
        only_ids: Sequence[str] | None = None,
    ) -> list[SearchHit]:
        """The user's nearest images by cosine similarity, best first (among ``only_ids`` if given)."""

    @abstractmethod
    def scroll(self, user: str, with_vectors: bool = False, batch: int = 1000) -> Iterator[ImageRecord]:
        """Every record of the user, in pages."""

    def user_ids(self, user: str) -> Iterator[str]:
        """The ids of every point of the user (implementations skip reading the payloads)."""
        return (record.id for record in self.scroll(user))

    @abstractmethod
    def count(self, user: str | None = None) -> int:
        """Number of points of ``user`` (all users when None)."""

    @abstractmethod
    def counts_by_user(self) -> dict[str, int]:
        """Number of points per user."""

    @abstractmethod
    def describe(self) -> str:
        """Where the index lives, for status displays."""

    def existing_ids(self, user: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the user already has."""
        return {record.id for record in self.retrieve(user, ids)} if ids else set()

    def ids_in_other_collections(self, user: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the user has in this index's other collections (other models).

        Objects are shared by every model's collection, so an object whose point is in another
        collection is not an orphan and must never be removed.
        """
        return set()

    @abstractmethod
    def close(self) -> None:
        """Release files and connections."""


@dataclass(frozen=True)
class Change:
    """One user's part of an index write, as an observer sees it."""

    op: str  # "upsert", "delete" or "set_payload"
    user: str
    ids: tuple[str, ...]
    records: tuple[ImageRecord, ...] = ()  # upsert: the new points
    values: dict[str, Any] | None = None  # set_payload: the merged values


class IndexObserver(ABC):
    """Told about every write to an index it is attached to (e.g. the vector cache)."""

    @abstractmethod
    def observe(self, changes: Sequence[Change]) -> AbstractContextManager[None]:
        """Entered before the index write, exited after it succeeded (left by an exception if not)."""


def attach_observer(index: VectorIndex, observer: IndexObserver) -> None:
    """Have ``observer`` see every upsert, delete and set_payload of ``index`` from now on."""
    index.__dict__.setdefault("observers", []).append(observer)


def _changes(op: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Change]:
    if op == "upsert":
        records = list(kwargs.get("records", args[0] if args else ()))
        users = dict.fromkeys(r.payload.get("user", "") for r in records)
        return [
            Change(op, user, tuple(r.id for r in mine), tuple(mine))
            for user in users
            if (mine := [r for r in records if r.payload.get("user", "") == user])
        ]
    names = ("user", "ids", "values")
    bound = dict(zip(names, args, strict=False)) | kwargs
    if not bound.get("ids"):
        return []
    return [Change(op, bound["user"], tuple(str(i) for i in bound["ids"]), values=bound.get("values"))]


def _observed(op: str, method: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(method)
    def write(self: VectorIndex, *args: Any, **kwargs: Any) -> None:
        observers = self.__dict__.get("observers")
        changes = _changes(op, args, kwargs) if observers else []
        if not changes:
            return method(self, *args, **kwargs)
        with ExitStack() as stack:
            for observer in observers:
                stack.enter_context(observer.observe(changes))
            return method(self, *args, **kwargs)

    return write
