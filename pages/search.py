"""Search page: by a stored image, by an uploaded image (not stored), or by text."""

from __future__ import annotations

import streamlit as st

from app import detail, record_filters, ui
from core import gallery, search
from core.embed import TextSearchUnavailable

services = ui.services()
user = ui.scope_user()
MODES = ["Text", "Stored image", "Upload an image"]
MAX_PICKS = 100

st.title("Search")
if services.index.count(user) == 0:
    ui.empty_state(
        "Nothing to search yet",
        "Upload images first; then search them by example or by description.",
        icon=":material/search:",
        link=("upload.py", "Go to Upload"),
    )
    st.stop()

if "search_mode" not in st.session_state:
    st.session_state["search_mode"] = "Text" if services.embedder.supports_text else "Stored image"
mode = st.segmented_control("Search by", MODES, key="search_mode", required=True)
options = st.columns([1, 1, 2])
limit = options[0].slider("Results", 1, 100, 24, key="search_limit")
min_score = options[1].slider(
    "Minimum similarity",
    0.0,
    1.0,
    0.0,
    0.01,
    key="search_min_score",
    help="Cosine similarity between the query and an image (1 = identical).",
)

allowed = record_filters.allowed_ids(user)  # the sidebar's dataset / split / label filter
only_ids = sorted(allowed) if allowed is not None else None
if only_ids is not None:
    described = record_filters.current_filter().describe()
    st.caption(f"Searching the {len(only_ids):,} image(s) that match the filter: {described}")

hits = None
try:
    if mode == "Text":
        if not services.embedder.supports_text:
            try:
                services.embedder.embed_texts(["probe"])
            except TextSearchUnavailable as exc:
                st.info(str(exc), icon=":material/info:")
            st.text_input("Describe what you are looking for", disabled=True, key="search_text_disabled")
        else:
            text = st.text_input(
                "Describe what you are looking for", placeholder="a red car in the snow", key="search_text"
            )
            if text.strip():
                with st.spinner("Searching…"), ui.track("search_text", page="search", expected=(ValueError,)):
                    hits = search.by_text(services, user, text, limit, min_score or None, only_ids)
    elif mode == "Stored image":
        images = ui.image_listing(user)
        chosen = st.session_state.get("search_image_id")
        if chosen not in set(images["id"]):
            chosen = images.sort_values("created_ts").iloc[-1]["id"]  # the newest image
        query_col, pick_col = st.columns([1, 5], vertical_alignment="bottom")
        name_filter = pick_col.text_input(
            "Find another image by file name",
            key="search_pick_filter",
            help="Or open an image in the Gallery and choose “Search similar”.",
        )
        if name_filter.strip():
            matches = gallery.sort(gallery.filter_by_name(images, name_filter), "name").head(MAX_PICKS)
            if matches.empty:
                pick_col.caption("No file name matches.")
            else:
                names = dict(zip(matches["id"], matches["filename"], strict=True))
                picked = pick_col.selectbox(
                    f"{len(names)} match(es)", list(names), format_func=names.get, key="search_pick"
                )
                if picked and st.session_state.get("search_pick_used") != picked:
                    st.session_state["search_pick_used"] = picked
                    chosen = picked
        st.session_state["search_image_id"] = chosen
        row = images[images["id"] == chosen].iloc[0].to_dict()
        with query_col:
            ui.thumb_card(row, f"query: {ui.escape(row['filename'])}")
        with ui.track("search_image", page="search", expected=(ValueError,)):
            hits = search.by_image_id(services, user, chosen, limit, min_score or None, only_ids)
    else:
        upload = st.file_uploader("An image to search with (it is not stored)", key="search_upload")
        if upload is not None:
            with (
                st.spinner("Embedding the image and searching…"),
                ui.track("search_upload", page="search", expected=(ValueError,)),
            ):
                hits = search.by_upload(services, user, upload.getvalue(), limit, min_score or None, only_ids)
except ValueError as exc:  # a rejected upload, an empty query, an unknown image
    st.error(str(exc), icon=":material/error:")

if hits is not None:
    if not hits:
        st.info(
            "No image reaches that similarity. Lower the minimum similarity to see more.", icon=":material/search_off:"
        )
    else:
        st.markdown(f"**{len(hits)}** result(s), most similar first")
        rows = [{"id": h.id, "score": h.score, **h.payload} for h in hits]

        def render(row: dict, _: int) -> None:
            ui.thumb_card(row, f"<span class='vad-score'>{row['score']:.3f}</span>{ui.card_name(row['filename'])}")
            if st.button("Open", key=f"result_{row['id']}", width="stretch"):
                detail.open_detail(row["id"])

        ui.card_grid(rows, render)
detail.render_if_open()
