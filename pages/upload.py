"""Upload page: drop images or .zip archives; per-file results and near-duplicate warnings."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import ingest_options, ui
from core.images import ACCEPTED_FORMATS
from core.ingest import StageProgress
from core.names import display_name
from core.upload import ingest_uploads, near_duplicates_of_new

services = ui.services()
user = ui.scope_user()
limit_mb = st.get_option("server.maxUploadSize")

st.title("Upload")
st.caption(
    f"{ACCEPTED_FORMATS} images, or .zip archives of them: up to {limit_mb:,} MB per file, "
    f"{services.settings.max_file_mb:g} MB and {services.settings.max_pixels / 1e6:g} megapixels per image "
    "(all frames of an animation together). "
    "The content decides the type, not the extension. Files you already have are recognised and skipped."
)

options = ingest_options.ingest_options()
with st.form("upload_form", clear_on_submit=True, border=True):
    files = st.file_uploader("Drop images or .zip archives here", accept_multiple_files=True, key="uploads")
    submitted = st.form_submit_button("Add to collection", type="primary", icon=":material/add_photo_alternate:")

if submitted:
    if not files:
        st.warning("Choose at least one file first.", icon=":material/warning:")
    elif ingest_options.accepts(options, files):
        bar = st.progress(0.0, text=f"Reading {len(files)} file(s)…")

        def progress(stage: StageProgress) -> None:
            bar.progress(
                stage.done / max(stage.total, 1),
                text=f"Of {stage.total:,} images: {stage.read:,} read, {stage.prepared:,} decoded and "
                f"thumbnailed, {stage.done:,} finished",
            )

        with ui.track("upload", page="upload", files=len(files)) as event:
            files_in = [(f.name, f.getvalue()) for f in files]
            results = ingest_uploads(services, user, files_in, stages=progress, options=options)
            bar.empty()
            new_ids = [r.image_id for r in results if r.status == "stored" and r.image_id]
            with st.spinner("Looking for near-duplicates of your earlier images…"):
                near = near_duplicates_of_new(services, user, new_ids)
            for status in ("stored", "present", "rejected", "skipped"):
                event[status] = sum(r.status == status for r in results)
            event["outcome"] = "partial" if event["rejected"] else "ok"
        st.session_state["upload_report"] = {"results": [r.to_dict() for r in results], "near": near}
        ui.bump_data_version()
        st.rerun()  # redraw the sidebar's image count too

report = st.session_state.get("upload_report")
if report:
    frame = pd.DataFrame(report["results"])
    counts = frame["status"].value_counts() if not frame.empty else {}
    stored, present, rejected, skipped = (int(counts.get(s, 0)) for s in ("stored", "present", "rejected", "skipped"))
    cols = st.columns(3)
    cols[0].metric("Stored", stored)
    cols[1].metric("Already present", present)
    cols[2].metric("Rejected", rejected)
    if skipped:
        st.caption(f"{skipped} hidden or system file(s) skipped (e.g. macOS `__MACOSX` entries); listed below.")
    if rejected:
        st.error(
            f"{rejected} file(s) were rejected; the reasons are in the table. The others are in your collection.",
            icon=":material/error:",
        )
    near = report["near"]
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
        st.session_state.pop("upload_report", None)
        st.rerun()
elif services.index.count(user) == 0:
    ui.empty_state(
        "Start by adding images",
        "Drop a few photos or a .zip archive above. Each image is checked, hashed, thumbnailed and embedded; "
        "then you can search it, find duplicates and spot anomalies.",
        icon=":material/cloud_upload:",
    )
