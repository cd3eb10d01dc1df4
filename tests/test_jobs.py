"""core.jobs: the background job runner (progress, cancel, restart, isolation, one job per key,
requests from other processes), and the upload/import jobs of core.upload on real Services."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import png, tiny_services, zip_bytes

from core.jobs import JobContext, JobFiles, JobRunner, follow, request_cancel, request_job, runner_pids
from core.sources import IngestItem
from core.upload import (
    import_source_problem,
    ingest_job,
    ingest_request_handler,
    items_from_saved,
    save_uploads,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[JobRunner]:
    runner = JobRunner(tmp_path, workers=2, poll_s=0.05)
    try:
        yield runner
    finally:
        runner.close()


def gated(gate: threading.Event, steps: int = 3):
    """A job that reports ``steps`` results, then waits for ``gate`` (checking for a cancel)."""

    def run(job: JobContext) -> dict:
        for step in range(steps):
            job.result({"step": step}, "ok")
            job.progress(step + 1, steps + 1, f"step {step + 1}")
        job.flush()
        while not gate.wait(0.01):
            job.check()
        job.progress(steps + 1)
        return {"answer": 42}

    return run


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_progress_and_results_are_on_disk_while_the_job_runs(runner: JobRunner, tmp_path: Path) -> None:
    gate = threading.Event()
    job = runner.submit("alice", "test", "A test job", gated(gate))
    files = JobFiles(tmp_path)
    wait_until(lambda: (s := files.load("alice", job.id)) is not None and s.done == 3)
    stored = files.load("alice", job.id)
    assert (stored.status, stored.total, stored.detail, stored.counts) == ("running", 4, "step 3", {"ok": 3})
    assert runner.active("alice").id == job.id
    gate.set()
    finished = runner.wait("alice", job.id, timeout=10)
    assert (finished.status, finished.done, finished.summary) == ("done", 4, {"answer": 42})
    assert files.load("alice", job.id).status == "done"  # what another process reads
    assert runner.results("alice", job.id) == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert runner.active("alice") is None
    assert [j.id for j in runner.jobs("alice")] == [job.id]


def test_cancel_stops_the_job_and_keeps_what_it_did(runner: JobRunner) -> None:
    gate = threading.Event()
    job = runner.submit("alice", "test", "A test job", gated(gate))
    wait_until(lambda: len(runner.results("alice", job.id)) == 3)
    assert runner.cancel("alice", job.id)
    cancelled = runner.wait("alice", job.id, timeout=10)
    assert cancelled.status == "cancelled"
    assert cancelled.summary == {}
    assert len(runner.results("alice", job.id)) == 3
    assert not runner.cancel("alice", job.id)  # over: nothing left to cancel


def test_a_cancel_file_from_another_process_stops_the_job(runner: JobRunner, tmp_path: Path) -> None:
    gate = threading.Event()
    job = runner.submit("alice", "test", "A test job", gated(gate))
    request_cancel(tmp_path, "alice", job.id)
    assert runner.wait("alice", job.id, timeout=10).status == "cancelled"
    assert not JobFiles(tmp_path).cancel_path("alice", job.id).exists()


def test_a_failing_job_is_failed_with_its_error(runner: JobRunner) -> None:
    def boom(job: JobContext) -> None:
        raise RuntimeError("the disk caught fire")

    job = runner.submit("alice", "test", "Doomed", boom)
    failed = runner.wait("alice", job.id, timeout=10)
    assert (failed.status, failed.error) == ("failed", "RuntimeError: the disk caught fire")


def test_users_see_and_cancel_only_their_own_jobs(runner: JobRunner) -> None:
    gate = threading.Event()
    alice = runner.submit("alice", "test", "Alice's", gated(gate))
    bob = runner.submit("bob", "test", "Bob's", gated(gate))
    assert [j.id for j in runner.jobs("alice")] == [alice.id]
    assert runner.get("alice", bob.id) is None
    assert not runner.cancel("alice", bob.id)
    assert runner.active("alice").id == alice.id and runner.active("bob").id == bob.id
    gate.set()
    assert runner.wait("bob", bob.id, timeout=10).status == "done"
    with pytest.raises(ValueError):
        runner.submit("../bob", "test", "Escape", gated(gate))


def test_jobs_are_listed_newest_first_when_many_start_within_a_second(runner: JobRunner, tmp_path: Path) -> None:
    submitted = [runner.submit("alice", "test", f"Job {n}", lambda job: None).id for n in range(20)]
    for job_id in submitted:
        assert runner.wait("alice", job_id, timeout=10).status == "done"
    assert [job.id for job in JobFiles(tmp_path).list("alice")] == submitted[::-1]


def test_one_active_job_per_user_and_key(runner: JobRunner) -> None:
    gate = threading.Event()
    first = runner.submit("alice", "graph", "Graph", gated(gate), key="graph")
    again = runner.submit("alice", "graph", "Graph", gated(gate), key="graph")
    other = runner.submit("bob", "graph", "Graph", gated(gate), key="graph")
    assert again.id == first.id and other.id != first.id
    gate.set()
    runner.wait("alice", first.id, timeout=10)
    later = runner.submit("alice", "graph", "Graph", gated(gate), key="graph")
    assert later.id != first.id  # the first one is over: a new one may start
    assert runner.wait("alice", later.id, timeout=10).status == "done"


KILLED_RUNNER = """
import sys, threading, time
from pathlib import Path
from core.jobs import JobRunner

halfway = threading.Event()

def run(job):
    job.progress(0, 10, "working")
    for i in range(10):
        job.result({"n": i}, "ok")
        job.progress(i + 1)
        if i == 3:
            job.flush()
            halfway.set()
            threading.Event().wait()

runner = JobRunner(Path(sys.argv[1]), poll_s=0.05)
job = runner.submit("alice", "test", "Killed midway", run)
(Path(sys.argv[1]) / "inputs-of").write_text(job.id)
runner.files.inputs("alice", job.id).mkdir()
halfway.wait()  # "ready" once the job is halfway and its files are written, whichever comes last
print("ready", flush=True)
threading.Event().wait()
"""


def test_a_job_of_a_killed_process_is_interrupted_with_what_it_did(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUNNER, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "ready"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    job_id = (tmp_path / "inputs-of").read_text()
    files = JobFiles(tmp_path)
    assert files.load("alice", job_id).status == "running"
    assert files.inputs("alice", job_id).is_dir()

    runner = JobRunner(tmp_path, poll_s=0.05)
    try:
        [interrupted] = runner.interrupted
        stored = files.load("alice", job_id)
        assert (interrupted.id, stored.status, stored.done, stored.total) == (job_id, "interrupted", 4, 10)
        assert "stopped after 4 of 10" in stored.detail
        assert runner.results("alice", job_id) == [{"n": i} for i in range(4)]
        assert not files.inputs("alice", job_id).exists()
    finally:
        runner.close()


def test_a_request_from_another_process_is_run_and_followed(tmp_path: Path) -> None:
    def echo(request):
        words = request["words"]

        def run(job: JobContext) -> dict:
            job.progress(0, len(words))
            for i, word in enumerate(words):
                job.result({"word": word}, "ok")
                job.progress(i + 1)
            return {"count": len(words)}

        return f"Echo of {len(words)} words", run

    assert runner_pids(tmp_path) == set()
    runner = JobRunner(tmp_path, poll_s=0.05, handlers={"echo": echo})
    try:
        assert runner_pids(tmp_path) == {os.getpid()}
        job_id = request_job(tmp_path, "echo", "alice", words=["a", "b", "c"])
        seen, last = [], None
        for state, rows in follow(tmp_path, "alice", job_id, poll_s=0.02):
            seen += rows
            last = state
        assert [r["word"] for r in seen] == ["a", "b", "c"]
        assert (last.status, last.title, last.summary) == ("done", "Echo of 3 words", {"count": 3})

        unknown = request_job(tmp_path, "format-disk", "alice")
        *_, (state, _) = follow(tmp_path, "alice", unknown, poll_s=0.02)
        assert state.status == "failed" and "does not run 'format-disk' jobs" in state.error
    finally:
        runner.close()
    assert runner_pids(tmp_path) == set()
    lonely = request_job(tmp_path, "echo", "alice", words=[])
    with pytest.raises(TimeoutError):
        list(follow(tmp_path, "alice", lonely, poll_s=0.02, pickup_s=0.2))
    assert not list((tmp_path / "jobs" / "inbox").glob("*.json"))  # withdrawn


# --- core.upload's jobs on real Services ---------------------------------------------------------


def test_saved_uploads_keep_their_names_and_archive_members(tmp_path: Path) -> None:
    archive = zip_bytes({"a.png": png(seed=1), "sub/b.png": png(seed=2)})
    files = [("photos.zip", io.BytesIO(archive)), ("loose.png", io.BytesIO(png(seed=3))), ("bad\x1b.png", io.BytesIO())]
    saved = save_uploads(tmp_path / "inputs", files)
    assert [s.path.name for s in saved] == ["000000.zip", "000001.upload", "000002.upload"]
    items = items_from_saved(saved)
    assert [i.path for i in items] == ["photos.zip/a.png", "photos.zip/sub/b.png", "loose.png", "bad\x1b.png"]
    assert items[2].read() == png(seed=3)
    with pytest.raises(ValueError, match="control characters"):
        items[3].read()


def test_an_upload_job_reports_each_file_and_a_cancel_leaves_the_rest_unattempted(tmp_path: Path) -> None:
    with tiny_services(tmp_path / "data", batch_size=2) as services:
        runner = JobRunner(services.settings.data_dir, poll_s=0.05)
        try:
            folder = runner.files.inputs("alice", "job-1")
            saved = save_uploads(folder, [(f"p{i}.png", io.BytesIO(png(seed=10 + i))) for i in range(3)])
            upload = ingest_job(services, "alice", lambda: items_from_saved(saved))
            job = runner.submit("alice", "upload", "Upload", upload)
            done = runner.wait("alice", job.id, timeout=120)
            assert (done.status, done.counts, done.done, done.total) == ("done", {"stored": 3}, 3, 3)
            assert [r["path"] for r in runner.results("alice", job.id)] == ["p0.png", "p1.png", "p2.png"]
            assert services.index.count("alice") == 3

            items = [IngestItem(f"q{i}.png", lambda i=i: png(seed=50 + i)) for i in range(8)]
            gate = threading.Event()

            def slow_items() -> list[IngestItem]:
                gate.wait(10)
                return items

            job = runner.submit("alice", "upload", "Upload", ingest_job(services, "alice", slow_items))
            wait_until(lambda: runner.get("alice", job.id).status == "running")
            runner.cancel("alice", job.id)  # asked before the first batch is over: it stops after it
            gate.set()
            cancelled = runner.wait("alice", job.id, timeout=120)
            rows = runner.results("alice", job.id)
            assert cancelled.status == "cancelled"
            assert [r["status"] for r in rows[:2]] == ["stored", "stored"]
            assert {r["reason"] for r in rows[2:]} == {"not attempted: cancelled"}
            assert len(rows) == 8 and services.index.count("alice") == 5
        finally:
            runner.close()


def test_a_command_line_request_ingests_paths(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.png").write_bytes(png(seed=1))
    (folder / "notes.png").write_bytes(b"not an image")
    with tiny_services(tmp_path / "data") as services:
        handle = ingest_request_handler(services)
        with pytest.raises(ValueError, match="no such file or folder"):
            handle({"user": "alice", "paths": [str(tmp_path / "nowhere")]})
        runner = JobRunner(services.settings.data_dir, poll_s=0.05, handlers={"ingest": handle})
        try:
            job_id = request_job(services.settings.data_dir, "ingest", "alice", paths=[str(folder)])
            *_, (state, _) = follow(services.settings.data_dir, "alice", job_id, poll_s=0.05)
            rows = runner.results("alice", job_id)
        finally:
            runner.close()
    assert state.status == "done" and state.counts == {"stored": 1, "rejected": 1}
    assert {Path(r["path"]).name: r["status"] for r in rows} == {"a.png": "stored", "notes.png": "rejected"}


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{root}/photos", None),
        ("{root}/photos/../photos", None),
        ("{root}", None),
        ("{root}/../elsewhere", "not inside an allowed import location"),
        ("{root}/photos/link-out", "not inside an allowed import location"),
        ("relative/path", "full path"),
        ("{root}/missing", "no such file or folder"),
        ("s3://bucket/data/2024", None),
        ("s3://bucket/data", None),
        ("s3://bucket/database", "not inside an allowed import location"),
        ("s3://bucket/data/../secret", "'..'"),
        ("s3://other/data", "not inside an allowed import location"),
        ("", "enter a folder"),
    ],
)
def test_imports_are_limited_to_the_configured_roots(tmp_path: Path, source: str, problem: str | None) -> None:
    root = tmp_path / "imports"
    (root / "photos").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "photos" / "link-out").symlink_to(tmp_path / "elsewhere")
    found = import_source_problem(source.format(root=root), [str(root), "s3://bucket/data/"])
    assert found is None if problem is None else problem in found, found
    assert "imports are off" in import_source_problem(str(root), [])
