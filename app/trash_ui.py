"""Deleting the undoable way from any page: images go to the trash and an "Undo" stays in the
sidebar until the next delete or until it is dismissed (``core.trash`` does the work)."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from app import ui, viewer
from core import gallery
from core.trash import open_trash

UNDO_KEY = "trash_undo"


def delete(user: str, ids: Sequence[str]) -> int:
    """Move the user's images among ``ids`` to the trash, offer an Undo; returns how many."""
    count = _move(user, ids)
    if count:
        st.toast(f"Moved {count:,} image(s) to the trash", icon=":material/delete:")
    return count


def _move(user: str, ids: Sequence[str]) -> int:
    """The move itself and the sidebar's Undo, showing nothing (safe inside a fragment's callback)."""
    batch = gallery.move_to_trash(ui.services(), user, ids)
    ui.bump_data_version(user)
    if batch is None:
        return 0
    st.session_state[UNDO_KEY] = batch
    return batch.count


def undo_notice() -> None:
    """The sidebar's Undo of the last delete of this session (call it inside the sidebar)."""
    batch = st.session_state.get(UNDO_KEY)
    if batch is None:
        return
    with st.container(border=True, key="vad-undo"):
        st.markdown(f"{batch.count:,} image(s) moved to the trash")
        left, right = st.columns(2, gap="small")
        if left.button("Undo", key="trash_undo_button", icon=":material/undo:", type="primary", width="stretch"):
            with ui.track("undo_delete", page="trash", images=batch.count):
                done = open_trash(ui.services()).restore(batch.user, batch=batch.id)
            del st.session_state[UNDO_KEY]
            ui.bump_data_version(batch.user)
            st.toast(f"Restored {len(done.restored):,} image(s)", icon=":material/restore_from_trash:")
            st.rerun()
        if right.button("Dismiss", key="trash_undo_dismiss", width="stretch"):
            del st.session_state[UNDO_KEY]
            st.rerun()


def delete_action(page: str) -> viewer.ViewerAction:
    """The viewer's D key: move the image to the trash (asked first; Undo in the sidebar after)."""

    def move(image_id: str) -> None:
        with ui.track("delete", page=page, images=1, source="viewer"):
            _move(ui.scope_user(), [image_id])

    return viewer.ViewerAction(
        "D",
        "Move to trash",
        move,
        icon=":material/delete:",
        confirm="Move this image to the trash? You can undo it from the sidebar.",
        removes=True,
    )
