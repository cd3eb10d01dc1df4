"""Health checks: ``python -m core doctor`` and the admin Status page run the same registered checks.

Each check is a small class registered by name; it returns a ``CheckResult`` (ok / warn / fail /
skip, a one-line summary and details). Checks share a ``DoctorContext`` so later checks reuse what
earlier ones opened (the model, the store) and the Status page can hand in the app's live services.
"""

from __future__ import annotations

import os
import shutil
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path
from time import perf_counter
from typing import Literal

import pandas as pd
from PIL import Image

from core.diskspace import describe_bytes
from core.embed import Embedder, load_embedder
from core.index import IndexLocked, VectorIndex, open_index
from core.journal import scan_orphans
from core.services import Services
from core.settings import Settings, SettingsError, load_settings
from core.storage import ObjectStore, open_store
from core.trash import held_keys

Status = Literal["ok", "warn", "fail", "skip"]
GIB = 1024**3
#: Free space below these on the data or model-cache disk fails / warns.
DISK_FAIL_BELOW = 1 * GIB
DISK_WARN_BELOW = 5 * GIB
#: Short limits so a wrong endpoint fails in seconds, not minutes.
PROBE_TIMEOUT_S = 5
#: S3 error codes that mean a wrong access key or secret key.
S3_CREDENTIAL_ERRORS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch"})


@dataclass(frozen=True)
class CheckResult:
    """What one check found."""

    name: str
    status: Status
    summary: str
    details: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class DoctorContext:
    """State shared by the checks; pass ``services`` to check a running app's live parts."""

    env: dict[str, str] | None = None
    services: Services | None = None
    settings: Settings | None = None
    embedder: Embedder | None = None
    store: ObjectStore | None = None
    index: VectorIndex | None = None
    opened: list[VectorIndex] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.services is not None:
            self.settings = self.services.settings
            self.embedder = self.services.embedder
            self.store = self.services.store
            self.index = self.services.index

    def close(self) -> None:
        """Close what the checks opened themselves (never the live services)."""
        for index in self.opened:
            index.close()
        self.opened.clear()


class Check(ABC):
    """One health check. Subclasses set ``name`` and ``needs`` (checks that must pass first)."""

    name: str
    title: str
    needs: tuple[str, ...] = ()

    @abstractmethod
    def run(self, ctx: DoctorContext) -> CheckResult:
        """Run the check; raise nothing (report failures as a ``fail`` result)."""

    def result(self, status: Status, summary: str, **details: object) -> CheckResult:
        return CheckResult(self.name, status, summary, {k: str(v) for k, v in details.items()})


CHECKS: dict[str, type[Check]] = {}


def register(cls: type[Check]) -> type[Check]:
    CHECKS[cls.name] = cls
    return cls


@register
class SettingsCheck(Check):
    name, title = "settings", "Configuration"

    def run(self, ctx: DoctorContext) -> CheckResult:
        if ctx.settings is None:
            try:
                ctx.settings = load_settings(ctx.env)
            except SettingsError as exc:
                return self.result("fail", str(exc))
        s = ctx.settings
        index = f"Qdrant server {s.qdrant_url}" if s.qdrant_url else f"embedded index in {s.data_dir / 'index'}"
        store = f"S3 {s.s3_endpoint}, bucket {s.s3_bucket}" if s.s3_endpoint else f"local disk {s.data_dir}"
        details = {"index": index, "images": store, "model": s.model, "data folder": str(s.data_dir)}
        if s.qdrant_url and s.qdrant_url != ":memory:" and s.qdrant_api_key is None:
            return self.result("warn", "no VAD_QDRANT_API_KEY: the Qdrant server accepts anyone", **details)
        return self.result("ok", f"{index}; images on {store}", **details)


@register
class ModelCheck(Check):
    name, title, needs = "model", "Embedding model", ("settings",)

    def run(self, ctx: DoctorContext) -> CheckResult:
        s = ctx.settings
        assert s is not None
        try:
            if ctx.embedder is None:
                ctx.embedder = load_embedder(s.model, s.model_weights, s.device)
            vector = ctx.embedder.embed_images([Image.new("RGB", (64, 64), (120, 160, 200))])[0]
        except Exception as exc:
            return self.result("fail", f"VAD_MODEL={s.model!r} could not be loaded or run: {exc}")
        e = ctx.embedder
        details = {"model": e.name, "dimension": e.dimension, "text search": e.supports_text, "device": e.device}
        if vector.shape != (e.dimension,):
            return self.result("fail", f"{e.name} returned a vector of shape {vector.shape}", **details)
        if e.random_weights:
            return self.result("warn", f"{e.name} has random weights: results are meaningless", **details)
        if e.notice:
            return self.result("warn", e.notice, **details)
        return self.result("ok", e.describe(), **details)


@register
class StoreCheck(Check):
    name, title, needs = "store", "Image store", ("settings",)

    def run(self, ctx: DoctorContext) -> CheckResult:
        s = ctx.settings
        assert s is not None
        try:
            if ctx.store is None:
                ctx.store = open_store(s, timeout=PROBE_TIMEOUT_S, retries=0)
            key = f"doctor-probe-{uuid.uuid4().hex}"
            payload = uuid.uuid4().bytes
            ctx.store.put(key, payload)
            try:
                read = ctx.store.get(key)
            finally:
                ctx.store.delete(key)
        except Exception as exc:
            where = f"VAD_S3_ENDPOINT={s.s3_endpoint}" if s.s3_endpoint else f"VAD_DATA_DIR={s.data_dir}"
            code = getattr(exc.__cause__, "code", None)  # the S3 error behind a StorageError
            if code in S3_CREDENTIAL_ERRORS:
                where += ": the server refused the credentials (check VAD_S3_ACCESS_KEY and VAD_S3_SECRET_KEY)"
            elif code == "AccessDenied":
                where += f": access denied (may VAD_S3_ACCESS_KEY use bucket {s.s3_bucket}?)"
            return self.result("fail", f"{where}: {exc}")
        if read != payload:
            return self.result("fail", f"{ctx.store.describe()}: an object read back differs from what was written")
        return self.result("ok", f"{ctx.store.describe()}: write, read and delete work", store=ctx.store.describe())


@register
class IndexCheck(Check):
    name, title, needs = "index", "Vector index", ("settings", "model")

    def run(self, ctx: DoctorContext) -> CheckResult:
        s, e = ctx.settings, ctx.embedder
        assert s is not None and e is not None
        try:
            if ctx.index is None:
                ctx.index = open_index(s, e.name, e.dimension, timeout=PROBE_TIMEOUT_S)
                ctx.opened.append(ctx.index)
            counts = ctx.index.counts_by_user()
        except IndexLocked as exc:
            return self.result("warn", f"in use by another process (the running app?): {exc}")
        except Exception as exc:
            where = f"VAD_QDRANT_URL={s.qdrant_url}" if s.qdrant_url else f"VAD_DATA_DIR={s.data_dir}"
            if getattr(exc.__cause__, "status_code", None) in (401, 403):  # qdrant-client's UnexpectedResponse
                where += ": the server refused the API key (check VAD_QDRANT_API_KEY)"
            return self.result("fail", f"{where}: {exc}")
        details = {"index": ctx.index.describe(), "images": sum(counts.values()), "users": len(counts)}
        version = server_version(ctx.index)
        if version:
            details["server version"] = version
        return self.result("ok", f"{ctx.index.describe()}: {sum(counts.values()):,} images", **details)


@register
class DiskCheck(Check):
    name, title, needs = "disk", "Free disk space", ("settings",)

    def run(self, ctx: DoctorContext) -> CheckResult:
        s = ctx.settings
        assert s is not None
        places = {"data": s.data_dir, "model cache": model_cache_dir()}
        details: dict[str, object] = {}
        worst: Status = "ok"
        problems = []
        for label, path in places.items():
            existing = _existing_parent(path)
            free = shutil.disk_usage(existing).free
            details[label] = f"{path}: {free / GIB:.1f} GiB free"
            # Below VAD_MIN_FREE_MB the data folder refuses writes: that is a failure whatever the constant.
            fail_below = max(DISK_FAIL_BELOW, s.min_free_bytes) if label == "data" else DISK_FAIL_BELOW
            if free < fail_below:
                worst = "fail"
            elif free < DISK_WARN_BELOW:
                worst = "warn" if worst == "ok" else worst
            else:
                continue
            problems.append(f"{label} ({path}) has {describe_bytes(free)} free")
        try:
            s.data_dir.mkdir(parents=True, exist_ok=True)
            probe = s.data_dir / f".doctor-{uuid.uuid4().hex}"
            try:
                probe.write_bytes(b"ok")
            finally:
                probe.unlink(missing_ok=True)
        except OSError as exc:
            problems.append(f"VAD_DATA_DIR={s.data_dir} is not writable: {exc}")
            return self.result("fail", "; ".join(problems), **details)
        if problems:
            return self.result(worst, "; ".join(problems), **details)
        return self.result("ok", "; ".join(str(v) for v in details.values()), **details)


@register
class OrphansCheck(Check):
    name, title, needs = "orphans", "Orphaned objects", ("settings", "store", "index")

    def run(self, ctx: DoctorContext) -> CheckResult:
        s = ctx.settings
        assert s is not None
        if ctx.store is None or ctx.index is None:
            return self.result("skip", "skipped: the store or the index could not be opened")
        try:
            scan = scan_orphans(ctx.store, ctx.index, s.data_dir / "journal", held=held_keys(s.data_dir))
        except Exception as exc:
            return self.result("fail", f"could not compare the objects with the index: {exc}")
        details = {
            "objects": scan.objects,
            "points": scan.points,
            "objects without a point": len(scan.orphan_keys),
            "points with a missing object": len(scan.broken_points),
        }
        if scan.clean:
            return self.result("ok", f"{scan.objects:,} objects and {scan.points:,} points match", **details)
        return self.result(
            "warn",
            f"{len(scan.orphan_keys)} objects without a point and {len(scan.broken_points)} points with a "
            "missing object (an interrupted ingest?): run python -m core repair",
            **details,
        )


def model_cache_dir() -> Path:
    """Where Hugging Face / open_clip weights are cached (``HF_HOME`` or ``~/.cache/huggingface``)."""
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


def _existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def server_version(index: VectorIndex) -> str | None:
    """The Qdrant server's version, when the index is on a server that reports it."""
    client = getattr(index, "client", None)
    if client is None or getattr(index, "url", None) == ":memory:":
        return None
    try:
        return str(client.info().version)
    except Exception:
        return None


def run_checks(ctx: DoctorContext | None = None, names: list[str] | None = None) -> list[CheckResult]:
    """Run the registered checks in order; a check whose prerequisite did not pass is skipped.

    ``names`` selects checks; the checks they need run too (a check cannot run without them).
    """
    ctx = ctx or DoctorContext()
    wanted = _with_prerequisites(names) if names is not None else set(CHECKS)
    results: dict[str, CheckResult] = {}
    try:
        for name, cls in CHECKS.items():
            if name not in wanted:
                continue
            check = cls()
            blocked = [n for n in check.needs if n in results and results[n].status == "fail"]
            if blocked:
                results[name] = check.result("skip", f"skipped: {', '.join(blocked)} failed")
                continue
            started = perf_counter()
            try:
                found = check.run(ctx)
            except Exception as exc:  # a bug in a check must not hide the others
                found = check.result("fail", f"the check itself failed: {type(exc).__name__}: {exc}")
            results[name] = replace(found, seconds=perf_counter() - started)
    finally:
        ctx.close()
    return list(results.values())


def _with_prerequisites(names: list[str]) -> set[str]:
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check: {', '.join(unknown)} (known: {', '.join(CHECKS)})")
    wanted: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted.add(name)
            pending.extend(CHECKS[name].needs)
    return wanted


def failed(results: list[CheckResult]) -> list[str]:
    return [r.name for r in results if r.status == "fail"]


def results_frame(results: list[CheckResult]) -> pd.DataFrame:
    """One row per check: name, title, status, summary, seconds."""
    return pd.DataFrame(
        [
            {
                "check": r.name,
                "title": CHECKS[r.name].title if r.name in CHECKS else r.name,
                "status": r.status,
                "summary": r.summary,
                "seconds": round(r.seconds, 2),
            }
            for r in results
        ],
        columns=["check", "title", "status", "summary", "seconds"],
    )
