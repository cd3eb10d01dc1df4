"""The app's background jobs: the one runner of the process, the sidebar's jobs panel, and the
wait-with-progress that pages show while a job they need (e.g. the neighbour graph) runs.

Jobs belong to the user whose collection they change (the user in scope). The panel and the
waiting pages refresh themselves every second (``st.fragment(run_every=...)``) only while a job
runs; when a job ends, the whole page reruns once, so the sidebar's count and the page's data
follow.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import streamlit as st

from app import ui
from core.jobs import Job, JobFunction, JobRunner
from core.upload import ingest_request_handler

#: Seconds between two refreshes of a running job's progress.
REFRESH_S = 1.0
#: Seconds a page waits for a job it needs before showing its progress instead (small
#: collections finish within it, and the page goes on as if it had computed inline).
GRACE_S = 3.0
#: Jobs listed in the sidebar.
SHOWN = 4
STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/progress_activity:",
    "done": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
    "interrupted": ":material/warning:",
}
INGEST_KINDS = ("upload", "import", "ingest")
#: Seconds the panel stays open after a job ended, so its outcome is seen.
RECENT_S = 120


@st.cache_resource(show_spinner=False)
def _runner(_services_id: int, data_dir: str) -> JobRunner:
    services = ui.services()
    return JobRunner(Path(data_dir), handlers={"ingest": ingest_request_handler(services)})


def runner() -> JobRunner:
    """The process's job runner (built with the services; takes requests from the CLI too)."""
    services = ui.services()
    return _runner(id(services), str(services.settings.data_dir))


def submit(user: str, kind: str, title: str, fn: JobFunction, key: str | None = None, job_id: str | None = None) -> Job:
    """Start a job for ``user`` (with a ``key``: unless one of that key is already running)."""
    job = runner().submit(user, kind, title, fn, key=key, job_id=job_id)
    st.session_state.setdefault("jobs_watched", set()).add(job.id)
    return job


def forget(job: Job) -> None:
    """Stop watching ``job`` for its end (the caller has dealt with it)."""
    st.session_state.setdefault("jobs_watched", set()).discard(job.id)


def elapsed(job: Job) -> str:
    """How long the job has run (or ran), in words."""
    if not job.started_at:
        return ""
    end = datetime.fromisoformat(job.finished_at) if job.finished_at else datetime.now(UTC)
    seconds = max(0, int((end - datetime.fromisoformat(job.started_at)).total_seconds()))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _seconds_since_end(job: Job) -> float:
    if not job.finished_at:
        return float("inf")
    return (datetime.now(UTC) - datetime.fromisoformat(job.finished_at)).total_seconds()


def outcome(job: Job) -> str:
    """The counts of a job's per-item results, e.g. "12 stored · 1 rejected"."""
    return " · ".join(f"{count:,} {name}" for name, count in sorted(job.counts.items()))


def show_job(job: Job, cancel_key: str) -> None:
    """One job: title, status, progress bar while it runs, and a cancel button."""
    st.markdown(f"{STATUS_ICONS.get(job.status, '')} **{ui.escape(job.title)}**")
    if job.active:
        text = ui.escape(job.describe())
        if job.started_at:
            text += f" · {elapsed(job)}"
        fraction = job.fraction
        st.progress(fraction if fraction is not None else 0.0, text=text)
        if job.counts:
            st.caption(outcome(job))
        if st.button("Cancel", key=cancel_key, icon=":material/stop_circle:", help="Stop after the current batch"):
            runner().cancel(job.user, job.id)
            st.rerun()
    else:
        parts = [job.status, outcome(job), elapsed(job)]
        if job.error:
            parts.append(job.error)
        st.caption(ui.escape(" · ".join(p for p in parts if p)))


def _notice_finished(jobs: list[Job]) -> None:
    """Rerun the whole page once when a job this session saw running has ended."""
    watched: set[str] = st.session_state.setdefault("jobs_watched", set())
    ended = [job for job in jobs if job.id in watched and not job.active]
    watched.update(job.id for job in jobs if job.active)
    if ended:
        watched.difference_update(job.id for job in ended)
        for user in {job.user for job in ended}:
            ui.bump_data_version(user)  # new images, or a new graph: the pages' caches refresh
        st.rerun(scope="app")


def sidebar_panel(user: str) -> None:
    """The user's latest jobs in the sidebar; refreshes itself while one runs."""
    jobs = runner().jobs(user, limit=SHOWN)
    if not jobs:
        return
    interval = REFRESH_S if any(job.active for job in jobs) else None
    st.fragment(run_every=interval)(_sidebar_jobs)(user)


def _sidebar_jobs(user: str) -> None:
    jobs = runner().jobs(user, limit=SHOWN)
    _notice_finished(jobs)
    active = sum(job.active for job in jobs)
    label = f"Jobs · {active} running" if active else "Jobs"
    recent = any(job.active or _seconds_since_end(job) < RECENT_S for job in jobs)
    with st.expander(label, expanded=recent, icon=":material/work_history:"):
        for job in jobs:
            show_job(job, cancel_key=f"sidebar_cancel_{job.id}")
        if any(job.kind in INGEST_KINDS and not job.active for job in jobs):
            st.page_link(str(ui.PAGES / "upload.py"), label="Upload reports", icon=":material/list_alt:")


def wait_for(job: Job, what: str, grace_s: float = GRACE_S) -> None:
    """Let the page go on once ``job`` has finished; meanwhile show its progress and stop the page.

    Waits ``grace_s`` seconds first, so that a quick job looks like an inline computation. The
    progress refreshes itself, and the page reruns when the job is over (also after a page switch:
    the job does not belong to the page)."""
    finished = runner().wait(job.user, job.id, timeout=grace_s)
    if finished is None or not finished.active:
        forget(job)
        if finished is not None and finished.status == "failed":
            st.error(f"Computing {what} failed: {finished.error}", icon=":material/error:")
            st.stop()
        return
    st.session_state.setdefault("jobs_watched", set()).add(job.id)
    st.fragment(run_every=REFRESH_S)(_waiting)(job.user, job.id, what)
    st.stop()


def _waiting(user: str, job_id: str, what: str) -> None:
    job = runner().get(user, job_id)
    if job is None or not job.active:
        st.rerun(scope="app")
    with st.container(border=True):
        st.markdown(f"#### :material/hourglass_top: Computing {what}")
        st.caption(
            "This runs in the background: you can open other pages meanwhile, and this page "
            "shows the results once it is done."
        )
        show_job(job, cancel_key=f"wait_cancel_{job.id}")
