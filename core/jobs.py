"""Background jobs: uploads, imports and analyses run off the request path, their state on disk.

One ``JobRunner`` per process (the app keeps it in a cached resource) runs jobs in a small thread
pool. Each job is a JSON file ``DATA_DIR/jobs/<user>/<job_id>.json`` (status, progress, counts,
summary), rewritten atomically as it moves, and its per-item results are appended to
``<job_id>.results.jsonl`` next to it, so a page, another session or another process can follow it
and read its final report after the page that started it is gone.

Statuses: queued, running, done, failed, cancelled, interrupted. A job found "queued" or "running"
by a runner that is gone (its heartbeat stopped) is marked interrupted, keeping what it had done:
every runner checks this when it starts and every few seconds after.

Each runner writes a heartbeat, ``jobs/runners/<runner_id>.json`` (its pid and the time), every
poll. Other processes hand jobs to a runner through ``jobs/inbox/``: ``request_job`` writes a
request file, a runner's poller claims it (an atomic rename) and runs the handler registered for
its kind; ``runner_pids`` tells a caller at once whether a runner is listening. A
``<job_id>.cancel`` file cancels a job from another process.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from core.files import replace_file
from core.index.lock import pid_alive
from core.storage.base import check_user

log = logging.getLogger(__name__)

JobStatus = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
ACTIVE: tuple[JobStatus, ...] = ("queued", "running")
FINISHED: tuple[JobStatus, ...] = ("done", "failed", "cancelled", "interrupted")
#: Finished jobs kept per user (older ones are removed with their results).
KEEP_FINISHED = 20
#: Seconds between two writes of a running job's progress (status changes are written at once).
WRITE_INTERVAL_S = 0.25
#: A runner whose heartbeat is older than this is taken for gone.
HEARTBEAT_MAX_AGE_S = 5.0
#: Seconds between two checks for jobs whose runner is gone.
SETTLE_INTERVAL_S = 5.0


class JobCancelled(Exception):
    """Raised by ``JobContext.check`` once the job was asked to stop."""


@dataclass
class Job:
    """The state of one job, as stored in its JSON file."""

    id: str
    user: str
    kind: str  # what it does: upload, import, ingest, graph, ...
    title: str  # what people read
    status: JobStatus = "queued"
    key: str | None = None  # at most one active job per (user, key)
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    done: int = 0
    total: int | None = None
    detail: str = ""  # the current step, in words
    counts: dict[str, int] = field(default_factory=dict)  # per-item outcomes so far
    summary: dict[str, Any] = field(default_factory=dict)  # the job's own result (small)
    error: str | None = None
    runner: str = ""  # the id of the runner that holds it

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def fraction(self) -> float | None:
        """Share done, when the job knows its total."""
        return min(1.0, self.done / self.total) if self.total else None

    def describe(self) -> str:
        """One line for people: the step, and how far it got."""
        if self.status == "queued":
            return "waiting for a free worker"
        parts = [f"{self.done:,} of {self.total:,}"] if self.total else []
        if self.detail:
            parts.append(self.detail)
        if self.status != "running":
            parts.insert(0, self.status)
        if self.error:
            parts.append(self.error)
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


JobFunction = Callable[["JobContext"], "dict[str, Any] | None"]
#: Builds a job from an inbox request: (title, function), or raises ValueError naming the problem.
RequestHandler = Callable[[Mapping[str, Any]], tuple[str, JobFunction]]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_id_lock = threading.Lock()
_last_id_micros = 0


def new_job_id() -> str:
    """Sortable by creation time to the microsecond (strictly rising within a process), unique across processes."""
    global _last_id_micros
    with _id_lock:
        _last_id_micros = max(time.time_ns() // 1000, _last_id_micros + 1)
        micros = _last_id_micros
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{datetime.fromtimestamp(seconds, UTC):%Y%m%dT%H%M%S}{fraction:06d}-{uuid.uuid4().hex[:8]}"


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    replace_file(path, json.dumps(data), durable=False)  # rewritten often; a lost update is redone


def _fresh(beat: Mapping[str, Any], max_age: float) -> bool:
    try:
        return time.time() - float(beat["beat"]) <= max_age and pid_alive(int(beat["pid"]))
    except (KeyError, TypeError, ValueError):
        return False


class JobFiles:
    """Where jobs live under the data folder, and how they are read back (any process)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "jobs"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def runners(self) -> Path:
        return self.root / "runners"

    def heartbeats(self) -> dict[str, dict[str, Any]]:
        """Every runner's last heartbeat, by runner id."""
        beats = {}
        for path in self.runners.glob("*.json") if self.runners.is_dir() else []:
            try:
                beats[path.stem] = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
        return beats

    def folder(self, user: str) -> Path:
        return self.root / check_user(user)

    def state_path(self, user: str, job_id: str) -> Path:
        return self.folder(user) / f"{_checked_id(job_id)}.json"

    def results_path(self, user: str, job_id: str) -> Path:
        return self.folder(user) / f"{_checked_id(job_id)}.results.jsonl"

    def cancel_path(self, user: str, job_id: str) -> Path:
        return self.folder(user) / f"{_checked_id(job_id)}.cancel"

    def inputs(self, user: str, job_id: str) -> Path:
        """A folder for what the job reads (e.g. saved uploads); removed once the job has ended."""
        return self.folder(user) / f"{_checked_id(job_id)}.inputs"

    def load(self, user: str, job_id: str) -> Job | None:
        try:
            return Job.from_dict(json.loads(self.state_path(user, job_id).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def save(self, job: Job) -> None:
        path = self.state_path(job.user, job.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_json(path, job.to_dict())

    def list(self, user: str) -> list[Job]:
        """The user's jobs, newest first."""
        folder = self.folder(user)
        if not folder.is_dir():
            return []
        names = sorted((p.name.removesuffix(".json") for p in folder.glob("*.json")), reverse=True)
        return [job for name in names if (job := self.load(user, name)) is not None]

    def users(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and p.name not in ("inbox", "runners"))

    def results(self, user: str, job_id: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Per-item results from byte ``offset`` on (complete lines only), and the next offset."""
        try:
            with self.results_path(user, job_id).open("rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError:
            return [], offset
        end = data.rfind(b"\n") + 1
        rows = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        return rows, offset + end

    def remove(self, user: str, job_id: str) -> None:
        for path in (self.state_path(user, job_id), self.results_path(user, job_id), self.cancel_path(user, job_id)):
            path.unlink(missing_ok=True)
        self.remove_inputs(user, job_id)

    def remove_inputs(self, user: str, job_id: str) -> None:
        shutil.rmtree(self.inputs(user, job_id), ignore_errors=True)


def _checked_id(job_id: str) -> str:
    if not job_id or not all(c.isalnum() or c in "-_" for c in job_id) or len(job_id) > 64:
        raise ValueError(f"not a job id: {job_id!r}")
    return job_id


class JobContext:
    """What a running job sees: its cancel flag, and ways to report progress and results."""

    def __init__(self, runner: JobRunner, job: Job) -> None:
        self._runner = runner
        self.job = job
        self._event = threading.Event()
        self._last_write = 0.0
        self._results = None

    @property
    def user(self) -> str:
        return self.job.user

    def cancelled(self) -> bool:
        """True once someone asked the job to stop (a button here, or a cancel file from elsewhere)."""
        return self._event.is_set()

    def check(self) -> None:
        """Raise JobCancelled if the job was asked to stop (call between steps)."""
        if self.cancelled():
            raise JobCancelled("cancelled")

    def progress(self, done: int | None = None, total: int | None = None, detail: str | None = None) -> None:
        """Record how far the job got; written to disk at most every ``WRITE_INTERVAL_S``."""
        with self._runner._lock:
            if done is not None:
                self.job.done = done
            if total is not None:
                self.job.total = total
            if detail is not None:
                self.job.detail = detail
        if time.monotonic() - self._last_write >= WRITE_INTERVAL_S:
            self.flush()

    def result(self, row: Mapping[str, Any], outcome: str | None = None) -> None:
        """Append one item's result to the job's report (and count its ``outcome``)."""
        if self._results is None:
            self._results = self._runner.files.results_path(self.user, self.job.id).open("a", encoding="utf-8")
        self._results.write(json.dumps(dict(row)) + "\n")
        self._results.flush()
        if outcome:
            with self._runner._lock:
                self.job.counts[outcome] = self.job.counts.get(outcome, 0) + 1

    def flush(self) -> None:
        self._last_write = time.monotonic()
        self._runner._save(self.job)

    def _close(self) -> None:
        if self._results is not None:
            self._results.close()


class JobRunner:
    """Runs jobs in a thread pool; one active job per (user, key); state under ``data_dir/jobs``."""

    def __init__(
        self,
        data_dir: Path,
        workers: int = 2,
        handlers: Mapping[str, RequestHandler] | None = None,
        poll_s: float = 0.5,
    ) -> None:
        self.files = JobFiles(data_dir)
        self.files.runners.mkdir(parents=True, exist_ok=True)
        self.id = uuid.uuid4().hex[:12]
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="job")
        self._lock = threading.RLock()
        self._running: dict[str, JobContext] = {}  # job id -> context, while queued or running
        self._done: dict[str, threading.Event] = {}
        self._handlers = dict(handlers or {})
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._beat()
        #: Jobs found orphaned (queued or running under a runner that is gone) when this one started.
        self.interrupted = self.settle_orphans()
        self._settled_at = time.monotonic()
        self._poller = threading.Thread(target=self._poll_forever, name=f"job-poll-{self.id}", daemon=True)
        self._poller.start()

    # --- submitting and reading -----------------------------------------------------------------

    def submit(
        self, user: str, kind: str, title: str, fn: JobFunction, key: str | None = None, job_id: str | None = None
    ) -> Job:
        """Queue ``fn`` as a job of ``user``; with a ``key``, an active job of that key is returned instead."""
        check_user(user)
        with self._lock:
            if key is not None and (same := self.active(user, key)) is not None:
                return same
            job = Job(job_id or new_job_id(), user, kind, title, key=key, created_at=_now(), runner=self.id)
            context = JobContext(self, job)
            self._running[job.id] = context
            self._done[job.id] = threading.Event()
            self._save(job)
        self._pool.submit(self._run, context, fn)
        return job

    def active(self, user: str, key: str | None = None) -> Job | None:
        """The user's active job of ``key`` (or any active job of the user), if there is one."""
        with self._lock:
            for context in self._running.values():
                job = context.job
                if job.user == user and (key is None or job.key == key):
                    return Job.from_dict(job.to_dict())
        return None

    def jobs(self, user: str, limit: int = KEEP_FINISHED) -> list[Job]:
        """The user's jobs, newest first: the live state of active ones, the stored state of the rest."""
        with self._lock:
            live = {c.job.id: Job.from_dict(c.job.to_dict()) for c in self._running.values() if c.job.user == user}
        stored = self.files.list(user)[:limit]
        jobs = [live.pop(job.id, job) for job in stored]
        return sorted([*live.values(), *jobs], key=lambda j: j.id, reverse=True)[:limit]

    def get(self, user: str, job_id: str) -> Job | None:
        with self._lock:
            context = self._running.get(job_id)
            if context is not None and context.job.user == user:
                return Job.from_dict(context.job.to_dict())
        return self.files.load(user, job_id)

    def results(self, user: str, job_id: str) -> list[dict[str, Any]]:
        return self.files.results(user, job_id)[0]

    def wait(self, user: str, job_id: str, timeout: float | None = None) -> Job | None:
        """The job once it finished, or its state after ``timeout`` seconds."""
        event = self._done.get(job_id)
        if event is not None:
            event.wait(timeout)
        return self.get(user, job_id)

    def cancel(self, user: str, job_id: str) -> bool:
        """Ask the user's job to stop; False when it is not active here."""
        with self._lock:
            context = self._running.get(job_id)
            if context is None or context.job.user != user:
                return False
            context._event.set()
            if context.job.status == "queued":
                context.job.detail = "cancelling"
        return True

    # --- running --------------------------------------------------------------------------------

    def _run(self, context: JobContext, fn: JobFunction) -> None:
        job = context.job
        try:
            if context.cancelled():
                raise JobCancelled("cancelled before it started")
            with self._lock:
                job.status, job.started_at = "running", _now()
            context.flush()
            summary = fn(context)
            with self._lock:
                job.summary.update(summary or {})
                job.status = "cancelled" if context.cancelled() else "done"
        except JobCancelled:
            with self._lock:
                job.status = "cancelled"
        except Exception as exc:
            log.exception("job %s (%s) of %s failed", job.id, job.kind, job.user)
            with self._lock:
                job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
        finally:
            context._close()
            with self._lock:
                job.finished_at = _now()
                self._save(job)
                self._running.pop(job.id, None)
                done = self._done.pop(job.id, None)
            self.files.cancel_path(job.user, job.id).unlink(missing_ok=True)
            self.files.remove_inputs(job.user, job.id)
            self._prune(job.user)
            if done is not None:
                done.set()

    def _save(self, job: Job) -> None:
        with self._lock:
            snapshot = job.to_dict()
        try:
            self.files.save(Job.from_dict(snapshot))
        except OSError:
            log.exception("could not write the state of job %s", job.id)

    def _prune(self, user: str) -> None:
        finished = [job for job in self.files.list(user) if job.status in FINISHED]
        for job in finished[KEEP_FINISHED:]:
            self.files.remove(user, job.id)

    def settle_orphans(self) -> list[Job]:
        """Jobs left queued or running by a runner that is gone become interrupted (what they did stays)."""
        beats = self.files.heartbeats()
        live = {rid for rid, beat in beats.items() if _fresh(beat, HEARTBEAT_MAX_AGE_S)} | {self.id}
        for rid in set(beats) - live:
            (self.files.runners / f"{rid}.json").unlink(missing_ok=True)
        settled = []
        for user in self.files.users():
            for job in self.files.list(user):
                if job.active and job.runner not in live:
                    job.status, job.finished_at = "interrupted", _now()
                    job.detail = f"the app stopped after {job.done:,} of {job.total or '?'}"
                    self.files.save(job)
                    self.files.remove_inputs(user, job.id)
                    settled.append(job)
        return settled

    # --- the poller: heartbeat, requests from other processes, cancel files, orphans -----------

    def _beat(self) -> None:
        _write_json(self.files.runners / f"{self.id}.json", {"pid": os.getpid(), "beat": time.time()})

    def _poll_forever(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self._beat()
                self._take_requests()
                self._take_cancels()
                if time.monotonic() - self._settled_at > SETTLE_INTERVAL_S:
                    self._settled_at = time.monotonic()
                    self.settle_orphans()
            except Exception:
                log.exception("the job poller failed once; it goes on")

    def _take_requests(self) -> None:
        inbox = self.files.inbox
        if not inbox.is_dir():
            return
        for path in sorted(inbox.glob("*.json")):
            claimed = path.with_suffix(".claimed")
            try:
                os.replace(path, claimed)  # only one runner gets it
                request = json.loads(claimed.read_text())
            except (OSError, ValueError):
                continue
            finally:
                claimed.unlink(missing_ok=True)
            self._accept(request)

    def _accept(self, request: Mapping[str, Any]) -> None:
        user, job_id, kind = str(request.get("user", "")), str(request.get("job_id", "")), str(request.get("kind", ""))
        try:
            check_user(user)
            _checked_id(job_id)
        except ValueError:
            log.warning("ignored a job request without a valid user and id: %r", dict(request))
            return
        handler = self._handlers.get(kind)
        try:
            if handler is None:
                raise ValueError(f"this app does not run {kind!r} jobs")
            title, fn = handler(request)
        except ValueError as exc:
            job = Job(job_id, user, kind, kind, status="failed", created_at=_now(), finished_at=_now())
            job.error, job.runner = str(exc), self.id
            self.files.save(job)
            return
        self.submit(user, kind, title, fn, job_id=job_id)

    def _take_cancels(self) -> None:
        with self._lock:
            contexts = list(self._running.values())
        for context in contexts:
            if self.files.cancel_path(context.user, context.job.id).exists():
                self.cancel(context.user, context.job.id)

    def close(self, wait: bool = True) -> None:
        """Stop polling; cancel what is running (it ends as cancelled) and wait for it."""
        self._stop.set()
        with self._lock:
            for context in self._running.values():
                context._event.set()
        self._pool.shutdown(wait=wait, cancel_futures=False)
        self._poller.join(timeout=5)
        (self.files.runners / f"{self.id}.json").unlink(missing_ok=True)


# --- the other side: a process that hands a job to a running app ---------------------------------


def runner_pids(data_dir: Path, max_age: float = HEARTBEAT_MAX_AGE_S) -> set[int]:
    """The processes whose runners listen on this data folder (fresh heartbeat, live process)."""
    return {int(beat["pid"]) for beat in JobFiles(data_dir).heartbeats().values() if _fresh(beat, max_age)}


def request_job(data_dir: Path, kind: str, user: str, **arguments: Any) -> str:
    """Put a job request in the inbox; returns the id its job will have."""
    files = JobFiles(data_dir)
    files.inbox.mkdir(parents=True, exist_ok=True)
    job_id = new_job_id()
    _write_json(files.inbox / f"{job_id}.json", {"kind": kind, "user": check_user(user), "job_id": job_id, **arguments})
    return job_id


def withdraw_request(data_dir: Path, job_id: str) -> bool:
    """Take back a request no runner claimed yet; False if one did."""
    path = JobFiles(data_dir).inbox / f"{_checked_id(job_id)}.json"
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def request_cancel(data_dir: Path, user: str, job_id: str) -> None:
    """Ask the runner holding the job to stop it."""
    path = JobFiles(data_dir).cancel_path(user, job_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def follow(
    data_dir: Path, user: str, job_id: str, poll_s: float = 0.2, pickup_s: float = 10.0
) -> Iterator[tuple[Job | None, list[dict[str, Any]]]]:
    """Yield (state, new results) as the job moves, until it has finished.

    The state is None while no runner has taken the job; after ``pickup_s`` seconds of that the
    request is withdrawn and TimeoutError raised (unless a runner claimed it meanwhile).
    """
    files = JobFiles(data_dir)
    offset, started = 0, time.monotonic()
    while True:
        job = files.load(user, job_id)
        rows, offset = files.results(user, job_id, offset)
        if job is None and time.monotonic() - started > pickup_s and withdraw_request(data_dir, job_id):
            raise TimeoutError(f"no running app took the job within {pickup_s:g} s")
        if job is not None and not job.active:
            more, offset = files.results(user, job_id, offset)  # written before the final state
            yield job, rows + more
            return
        yield job, rows
        time.sleep(poll_s)
