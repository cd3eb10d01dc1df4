"""Gallery page: paginated thumbnails, sort and filter, detail view, bulk tag and delete."""

from __future__ import annotations

import streamlit as st

from app import detail, ui
from core import gallery

services = ui.services()
user = ui.scope_user()


images = ui.image_listing(user)
st.title("Gallery")

if images.empty:
    ui.empty_state(
        "No images yet",
        "Your collection is empty. Upload photos or a .zip archive to browse them here.",
        link=("upload.py", "Go to Upload"),
    )
    st.stop()

controls = st.columns([3, 2, 2, 1], vertical_alignment="bottom")
text = controls[0].text_input("Filter by file name", placeholder="e.g. beach, IMG_20", key="gallery_text")
tags = gallery.all_tags(images)
tag = controls[1].selectbox("Tag", ["All tags", *tags], key="gallery_tag")
sort = controls[2].selectbox("Sort by", list(gallery.SORTS), key="gallery_sort")
per_page = controls[3].selectbox("Per page", [24, 48, 96], key="gallery_per_page")

selected_frame = gallery.filter_and_sort(images, text, None if tag == "All tags" else tag, sort)
if selected_frame.empty:
    ui.empty_state(
        "Nothing matches",
        "No image matches this filter. Clear the file name or tag filter.",
        icon=":material/filter_alt_off:",
    )
    st.stop()

page_count = max(1, -(-len(selected_frame) // per_page))
number = int(st.session_state.get("gallery_page", 1))
page = gallery.paginate(selected_frame, number, per_page)
st.session_state["gallery_page"] = page.number
selection: set[str] = st.session_state.setdefault("gallery_selection", set())
selection &= set(images["id"])


def _toggle(image_id: str) -> None:
    """Checkbox callback: runs before the rerun, so the selection bar is up to date."""
    (selection.add if st.session_state[f"select_{image_id}"] else selection.discard)(image_id)


def _clear_selection() -> None:
    selection.clear()
    for key in [k for k in st.session_state if str(k).startswith("select_")]:
        del st.session_state[key]


bar = st.columns([2, 1, 1, 2], vertical_alignment="center")
bar[0].markdown(f"**{page.total:,}** image(s) · page {page.number} of {page.count}")
if bar[1].button("Previous", icon=":material/chevron_left:", disabled=page.number <= 1, width="stretch"):
    st.session_state["gallery_page"] = page.number - 1
    st.rerun()
if bar[2].button("Next", icon=":material/chevron_right:", disabled=page.number >= page.count, width="stretch"):
    st.session_state["gallery_page"] = page.number + 1
    st.rerun()
with bar[3]:
    if selection:
        with st.popover(f"{len(selection)} selected", icon=":material/checklist:", width="stretch"):
            new_tags = st.text_input("Add tags to the selection", placeholder="cats, outdoor", key="bulk_tags")
            if st.button("Add tags", icon=":material/sell:") and new_tags.strip():
                with ui.track("tag", page="gallery", images=len(selection)):
                    changed = gallery.add_tags(services, user, sorted(selection), gallery.normalise_tags(new_tags))
                ui.bump_data_version()
                st.toast(f"Tagged {changed} image(s)")
                st.rerun()
            st.divider()
            confirm = st.checkbox(f"Yes, delete these {len(selection)} image(s) for good", key="bulk_confirm")
            if st.button("Delete selected", type="primary", icon=":material/delete:", disabled=not confirm):
                with ui.track("delete", page="gallery", images=len(selection)):
                    deleted = gallery.delete(services, user, sorted(selection))
                _clear_selection()
                ui.bump_data_version()
                st.toast(f"Deleted {deleted} image(s)")
                st.rerun()
            st.button("Clear selection", on_click=_clear_selection)


def render(row: dict, _: int) -> None:
    ui.thumb_card(
        row, f"{ui.escape(row['filename'])}<br>{row['width']}×{row['height']} · {ui.human_bytes(row['bytes'])}"
    )
    left, right = st.columns([1, 1], gap="small")
    left.checkbox(
        "Select", key=f"select_{row['id']}", on_change=_toggle, args=(row["id"],), label_visibility="collapsed"
    )
    if right.button("Open", key=f"open_{row['id']}", width="stretch"):
        detail.open_detail(row["id"])


ui.card_grid(page.rows.to_dict("records"), render, actions=[ui.delete_action("gallery")])
detail.render_if_open()
