"""The image detail dialog: full image, metadata, hashes, similar images and actions; and the one
call every page makes last, ``render_if_open``, which shows this dialog or the viewer."""

from __future__ import annotations

import contextlib
from datetime import datetime

import streamlit as st

from app import label_editor, trash_ui, ui, viewer
from core import gallery
from core.images import open_rgb

DETAIL_KEY = viewer.DETAIL_KEY


def open_detail(image_id: str) -> None:
    """Show ``image_id`` in the detail dialog on the next run."""
    st.session_state[DETAIL_KEY] = image_id


def _close() -> None:
    st.session_state.pop(DETAIL_KEY, None)


def render_if_open() -> None:
    """Call once per page, after the page's content: shows the details dialog when an image was
    opened, else the viewer when it is open (closing the details returns to the viewer)."""
    image_id = st.session_state.get(DETAIL_KEY)
    if image_id:
        _dialog(image_id)
    else:
        viewer.render_if_open()


@st.dialog("Image details", width="large", on_dismiss=_close)
def _dialog(image_id: str) -> None:
    with viewer.dialog_scope():
        _details(image_id)


def _details(image_id: str) -> None:
    services = ui.services()
    user = ui.scope_user()
    records = services.index.retrieve(user, [image_id])
    if not records:
        st.info("This image is no longer in the collection.")
        _close()
        return
    payload = records[0].payload
    left, right = st.columns([3, 2], gap="medium")
    with left, st.container(key="vad-detail"):
        try:
            image = open_rgb(services.store.get(payload["original_key"]))
            image.thumbnail((1600, 1600))
            st.image(image, width="stretch")
        except Exception as exc:
            st.error(f"The original could not be read: {exc}")
    with right:
        st.markdown(f"#### {ui.escape(payload.get('filename', ''))}")
        created = payload.get("created_at", "")
        with contextlib.suppress(ValueError):
            created = datetime.fromisoformat(created).strftime("%Y-%m-%d %H:%M UTC")
        st.markdown(
            f"{payload.get('width')} × {payload.get('height')} px · {payload.get('format')} · "
            f"{ui.human_bytes(payload.get('bytes', 0))}  \nAdded {created}"
        )
        st.code(
            f"sha256 {payload.get('sha256')}\npHash  {payload.get('phash')}\nid     {image_id}",
            language=None,
            wrap_lines=True,
        )
        label_editor.occurrence_list(user, image_id, payload)
        tags = st.text_input("Tags (comma-separated)", ", ".join(payload.get("tags", [])), key=f"tags_{image_id}")
        actions = st.columns(2)
        if actions[0].button("Save tags", icon=":material/sell:", width="stretch"):
            gallery.set_tags(services, user, image_id, gallery.normalise_tags(tags))
            ui.bump_data_version()
            st.toast("Tags saved")
            st.rerun()  # refresh the page behind the dialog (tag filter, listing)
        if actions[1].button("Search similar", icon=":material/image_search:", width="stretch"):
            st.session_state["search_image_id"] = image_id
            st.session_state["search_mode"] = "Stored image"
            _close()
            viewer.close_viewer()
            st.switch_page(str(ui.PAGES / "search.py"))
        if actions[0].button(
            "Re-embed", icon=":material/refresh:", width="stretch", help="Recompute the vector from the original"
        ):
            with st.spinner("Embedding…"), ui.track("re_embed", page="detail", image_id=image_id):
                gallery.re_embed(services, user, image_id)
            st.toast("Vector recomputed")
        if actions[1].button("New thumbnail", icon=":material/image:", width="stretch"):
            gallery.regenerate_thumbnail(services, user, image_id)
            ui.clear_thumbnails()
            st.toast("Thumbnail regenerated")
        with st.popover("Delete image", icon=":material/delete:", width="stretch"):
            st.markdown("The image goes to the trash: Undo in the sidebar, or restore it from the Trash page.")
            if st.button("Move to trash", type="primary", key=f"delete_{image_id}"):
                with ui.track("delete", page="detail", image_id=image_id):
                    trash_ui.delete(user, [image_id])
                viewer.forget([image_id])
                _close()
                st.rerun()
    st.markdown("##### Most similar images")
    hits = gallery.similar(services, user, image_id, limit=6)
    if not hits:
        st.caption("No other images yet.")
    rows = [{"id": h.id, "score": h.score, **h.payload} for h in hits]

    def render(row: dict, _: int) -> None:
        ui.thumb_card(row, f"<span class='vad-score'>{row['score']:.3f}</span>{ui.card_name(row['filename'])}")
        if st.button("Open", key=f"similar_{row['id']}", width="stretch"):
            open_detail(row["id"])
            st.rerun()

    ui.card_grid(rows, render, columns=6)
