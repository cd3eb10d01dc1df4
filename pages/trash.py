"""Trash page: deleted images, restorable until the trash is emptied or their retention ends."""

from __future__ import annotations

from datetime import UTC, datetime

import streamlit as st

from app import ui
from core.trash import TrashedImage, open_trash

services = ui.services()
user = ui.scope_user()
trash = open_trash(services)
PICKED = "trash_picked"
SHOWN = 240


def _days_left(item: TrashedImage) -> str:
    left = item.expires_at(trash.days) - datetime.now(UTC)
    days = left.total_seconds() / 86400
    return "removed at the next clean-up" if days <= 0 else f"{days:.0f} day(s) left" if days >= 1 else "< 1 day left"


def _restore(ids: list[str] | None) -> None:
    with ui.track("restore", page="trash", images=len(ids) if ids else trash.count(user)):
        done = trash.restore(user, ids)
    ui.bump_data_version(user)
    st.session_state.pop(PICKED, None)
    st.toast(f"Restored {len(done.restored):,} image(s)", icon=":material/restore_from_trash:")
    for image_id, why in done.skipped.items():
        st.warning(f"{image_id} not restored: {why}", icon=":material/warning:")


def _pick(image_id: str, key: str) -> None:
    """Checkbox callback: runs before the rerun, so the Restore button counts it."""
    picked: set[str] = st.session_state.setdefault(PICKED, set())
    (picked.add if st.session_state[key] else picked.discard)(image_id)


def _empty() -> None:
    with ui.track("empty_trash", page="trash"):
        removed = trash.purge(user)
    st.session_state.pop(PICKED, None)
    st.session_state.pop("trash_empty_confirm", None)
    st.toast(f"Removed {removed:,} image(s) for good")


@st.fragment
def view() -> None:
    """The trash listing, its selection and actions: a click reruns only this part."""
    items = trash.items(user)
    if not items:
        ui.empty_state(
            "The trash is empty",
            f"Deleted images wait here for {trash.days:g} day(s) before they are removed for good.",
            icon=":material/delete:",
            link=("gallery.py", "Go to the Gallery"),
        )
        return
    picked: set[str] = st.session_state.setdefault(PICKED, set())
    picked &= {item.id for item in items}
    total = sum(int(item.payload.get("bytes") or 0) for item in items)
    st.markdown(
        f"**{len(items):,}** image(s) · {ui.human_bytes(total)} · each is removed for good "
        f"{trash.days:g} day(s) after it was deleted"
    )
    bar = st.columns([2, 2, 2], gap="small")
    label = f"Restore {len(picked):,} selected" if picked else "Restore all"
    if bar[0].button(label, key="trash_restore", icon=":material/restore_from_trash:", type="primary", width="stretch"):
        _restore(sorted(picked) if picked else None)
        st.rerun()  # the whole app: the sidebar's image count
    with bar[1].popover("Empty trash", icon=":material/delete_forever:", width="stretch"):
        st.markdown(f"Remove these **{len(items):,}** image(s) for good? This cannot be undone.")
        sure = st.checkbox("Yes, remove them for good", key="trash_empty_confirm")
        st.button("Empty trash", key="trash_empty", type="primary", disabled=not sure, on_click=_empty)

    def render(row: dict, _: int) -> None:
        ui.thumb_card(row, f"{ui.card_name(row['filename'])}{row['when']}")
        key = f"trash_pick_{row['id']}"
        picked_now = row["id"] in picked
        st.checkbox("Select", picked_now, key=key, on_change=_pick, args=(row["id"], key), label_visibility="collapsed")

    rows = [
        {
            "id": item.id,
            "filename": item.filename,
            "thumbnail_key": item.payload.get("thumbnail_key", ""),
            "when": f"deleted {item.deleted_at:%Y-%m-%d %H:%M}<br>{_days_left(item)}",
        }
        for item in items[:SHOWN]
    ]
    with st.container(key="gallery-grid"):  # the Gallery's grid style
        ui.card_grid(rows, render)
    if len(items) > SHOWN:
        st.caption(f"The {SHOWN} most recently deleted of {len(items):,} are shown; Restore all brings back every one.")


st.title("Trash")
st.markdown(
    "<style>.st-key-gallery-grid { margin-top: 0.75rem; } "
    ".st-key-gallery-grid .vad-caption { white-space: normal; overflow-wrap: anywhere; } "
    ".st-key-gallery-grid [data-testid='stElementToolbar'] { display: none; }</style>",
    unsafe_allow_html=True,
)
trash.purge_expired(user)
view()
