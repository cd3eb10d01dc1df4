"""Search page: by a stored image, by an uploaded image (not stored), or by text."""

from __future__ import annotations

import streamlit as st

from app import detail, ui
from core import gallery, search
from core.embed import TextSearchUnavailable

services = ui.services()
user = ui.scope_user()
MODES = ["Text", "Stored image", "Upload an image"]

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
                with st.spinner("Searching…"):
                    hits = search.by_text(services, user, text, limit, min_score or None)
    elif mode == "Stored image":
        images = gallery.list_images(services, user).sort_values("filename")
        names = dict(zip(images["id"], images["filename"], strict=True))
        ids = list(names)
        chosen = st.session_state.get("search_image_id")
        index = ids.index(chosen) if chosen in names else 0
        picked = st.selectbox(
            "Image from your collection",
            ids,
            index=index,
            format_func=names.get,
            help="Or open an image in the Gallery and choose “Search similar”.",
        )
        st.session_state["search_image_id"] = picked
        row = images[images["id"] == picked].iloc[0].to_dict()
        with st.columns(6)[0]:
            ui.thumb_card(row, "query")
        hits = search.by_image_id(services, user, picked, limit, min_score or None)
    else:
        upload = st.file_uploader("An image to search with (it is not stored)", key="search_upload")
        if upload is not None:
            with st.spinner("Embedding the image and searching…"):
                hits = search.by_upload(services, user, upload.getvalue(), limit, min_score or None)
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
            ui.thumb_card(row, f"<span class='vad-score'>{row['score']:.3f}</span> {ui.escape(row['filename'])}")
            if st.button("Open", key=f"result_{row['id']}", width="stretch"):
                detail.open_detail(row["id"])

        ui.card_grid(rows, render)
detail.render_if_open()
