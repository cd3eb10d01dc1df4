"""Upload page: drop images or .zip archives (or, for admins, import a configured folder or S3
prefix); each runs as a background job with per-file results and near-duplicate warnings."""

from __future__ import annotations

import shutil

import pandas as pd
import streamlit as st

from app import ingest_options, jobs_panel, ui
from core import telemetry
from core.diskspace import DiskFull
from core.images import ACCEPTED_FORMATS
from core.jobs import Job, JobContext, JobFunction, new_job_id
from core.names import display_name
from core.upload import (
    NearDuplicate,
    import_items,
    import_source_problem,
    ingest_job,
    items_from_saved,
    save_uploads,
)

services = ui.services()
user = ui.scope_user()
runner = jobs_panel.runner()
limit_mb = st.get_option("server.maxUploadSize")


def tracked(action: str, files: int, run: JobFunction) -> JobFunction:
    """``run``, logged and counted as the page's ``action`` with its per-file outcome."""

    def job(context: JobContext) -> dict | None:
        with telemetry.track(action, page="upload", user=context.user, files=files) as event:
            summary = run(context)
            counts = context.job.counts
            for status in ("stored", "present", "rejected", "skipped"):
                event[status] = counts.get(status, 0)
            event["outcome"] = "partial" if counts.get("rejected") else "ok"
        return summary

    return job


def start(job: Job) -> None:
    """Remember the job as this page's latest; small jobs finish within the grace time."""
    st.session_state["upload_job"] = job.id
    if (finished := runner.wait(user, job.id, timeout=jobs_panel.GRACE_S)) is not None and not finished.active:
        jobs_panel.forget(job)
        ui.bump_data_version(user)
    st.rerun()  # redraw the sidebar's image count and jobs too


st.title("Upload")
st.caption(
    f"{ACCEPTED_FORMATS} images, or .zip archives of them: up to {limit_mb:,} MB per file, "
    f"{services.settings.max_file_mb:g} MB and {services.settings.max_pixels / 1e6:g} megapixels per image "
    "(all frames of an animation together). "
    "The content decides the type, not the extension. A file whose content you already have is not "
    "stored twice: the report names the image it matches. "
    "Uploads go on in the background: you can open other pages meanwhile."
)

options = ingest_options.ingest_options()
with st.form("upload_form", clear_on_submit=True, border=True):
    files = st.file_uploader("Drop images or .zip archives here", accept_multiple_files=True, key="uploads")
    submitted = st.form_submit_button("Add to collection", type="primary", icon=":material/add_photo_alternate:")

if submitted:
    if not files:
        st.warning("Choose at least one file first.", icon=":material/warning:")
    elif ingest_options.accepts(options, files):
        job_id = new_job_id()
        folder = runner.files.inputs(user, job_id)
        try:
            if guard := services.disk_guard():
                guard.check(need=sum(f.size for f in files))
            saved = save_uploads(folder, [(f.name, f) for f in files])
        except (DiskFull, OSError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            st.error(f"The upload could not be saved: {exc}", icon=":material/error:")
            st.stop()
        title = f"Upload of {len(files):,} file(s)"
        ingest = ingest_job(services, user, lambda: items_from_saved(saved), options)
        run = tracked("upload", len(files), ingest)
        start(jobs_panel.submit(user, "upload", title, run, job_id=job_id))

if ui.is_admin():
    roots = services.settings.import_roots
    with st.expander("Import a folder or S3 prefix", icon=":material/drive_folder_upload:"):
        if not roots:
            st.caption("Imports are off: an operator lists the allowed folders and s3:// prefixes in VAD_IMPORT_ROOTS.")
        else:
            st.caption("Allowed locations (and everything under them): " + ", ".join(f"`{r}`" for r in roots))
            with st.form("import_form", border=False):
                source = st.text_input("Folder or S3 prefix", placeholder=roots[0], key="import_source")
                go = st.form_submit_button("Import", icon=":material/download:")
            if go:
                problem = import_source_problem(source, roots)
                if problem:
                    st.error(problem, icon=":material/block:")
                else:
                    chosen = source.strip()
                    listing = ingest_job(services, user, lambda: import_items(chosen, services.settings), options)
                    run = tracked("import", 1, listing)
                    start(jobs_panel.submit(user, "import", f"Import of {chosen}", run))


def ingest_jobs() -> list[Job]:
    return [job for job in runner.jobs(user) if job.kind in jobs_panel.INGEST_KINDS]


running = [job for job in ingest_jobs() if job.active]
if running:

    @st.fragment(run_every=jobs_panel.REFRESH_S)
    def progress() -> None:
        live = [job for job in ingest_jobs() if job.active]
        if len(live) < len(running):
            st.rerun(scope="app")  # one ended: show its report
        for job in live:
            with st.container(border=True):
                jobs_panel.show_job(job, cancel_key=f"upload_cancel_{job.id}")

    progress()

finished = [job for job in ingest_jobs() if not job.active]
chosen_id = st.session_state.get("upload_job")
report_job = next((j for j in finished if j.id == chosen_id), finished[0] if finished else None)
if report_job is not None and st.session_state.get("upload_hidden") == report_job.id:
    report_job = None

if report_job is not None:
    if len(finished) > 1:
        names = {job.id: f"{job.title} · {job.created_at.replace('T', ' ')[:16]} · {job.status}" for job in finished}
        picked = st.selectbox("Report of", list(names), index=list(names).index(report_job.id), format_func=names.get)
        if picked != report_job.id:
            st.session_state["upload_job"] = picked
            st.rerun()
    results = runner.results(user, report_job.id)
    frame = pd.DataFrame(results, columns=["path", "status", "reason", "image_id"])
    counts = frame["status"].value_counts()
    stored, present, rejected, skipped = (int(counts.get(s, 0)) for s in ("stored", "present", "rejected", "skipped"))
    cols = st.columns(3)
    cols[0].metric("Stored", stored)
    cols[1].metric("Already present", present)
    cols[2].metric("Rejected", rejected)
    if report_job.status == "cancelled":
        st.warning(
            "This job was cancelled: what was stored before stays; the files not attempted are listed.",
            icon=":material/cancel:",
        )
    elif report_job.status == "interrupted":
        st.warning(
            f"This job was interrupted when the app stopped ({report_job.done:,} of {report_job.total or '?'} files "
            "done). Upload the rest again: files already stored are recognised.",
            icon=":material/warning:",
        )
    elif report_job.status == "failed":
        st.error(f"This job failed: {report_job.error}", icon=":material/error:")
    if skipped:
        st.caption(f"{skipped} hidden or system file(s) skipped (e.g. macOS `__MACOSX` entries); listed below.")
    if rejected:
        st.error(
            f"{rejected} file(s) were rejected; the reasons are in the table. The others are in your collection.",
            icon=":material/error:",
        )
    near = [NearDuplicate(**pair) for pair in report_job.summary.get("near", [])]
    if near:
        st.warning(
            f"{len(near)} new image(s) look like images you already had (pHash distance ≤ "
            f"{services.settings.phash_threshold}).",
            icon=":material/content_copy:",
        )
        records = {
            r.id: r.payload
            for r in services.index.retrieve(user, [n.new_id for n in near] + [n.existing_id for n in near])
        }
        for pair in near[:30]:
            with st.container(border=True):
                left, right, info = st.columns([1, 1, 2], vertical_alignment="center")
                with left:
                    ui.thumb_card(
                        {"id": pair.new_id, **records.get(pair.new_id, {})}, f"new: {ui.escape(pair.new_filename)}"
                    )
                with right:
                    ui.thumb_card(
                        {"id": pair.existing_id, **records.get(pair.existing_id, {})},
                        f"stored: {ui.escape(pair.existing_filename)}",
                    )
                info.markdown(f"**Distance {pair.distance}** of 64 bits  \nReview them on the Gallery page.")
    shown = frame[["path", "status", "reason"]].fillna("")
    for column in ("path", "reason"):  # names may carry ANSI, bidi or other invisible characters
        shown[column] = shown[column].map(display_name)
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        column_config={"path": "File", "status": "Result", "reason": "Reason"},
    )
    if st.button("Clear results", icon=":material/close:"):
        st.session_state["upload_hidden"] = report_job.id
        st.rerun()
elif not running and services.index.count(user) == 0:
    ui.empty_state(
        "Start by adding images",
        "Drop a few photos or a .zip archive above. Each image is checked, hashed, thumbnailed and embedded; "
        "then you can search it, find duplicates and spot anomalies.",
        icon=":material/cloud_upload:",
    )
