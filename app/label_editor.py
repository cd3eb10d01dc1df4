"""Bulk label, split and dataset edits of a selection (Gallery, Explorer), and an image's
occurrences with their removal (the detail dialog). Logic in ``core.record_edits``."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from app import ui
from core import record_edits
from core.record_filters import filter_choices
from core.records import InvalidName, occurrences
from core.trash import open_trash

NEW = "New…"
EDITS = {"Label": record_edits.set_label, "Split": record_edits.set_split, "Dataset": record_edits.set_dataset}


def label_actions(user: str, ids: Sequence[str], key: str = "labels") -> None:
    """Set the label, split or dataset of ``ids`` (the caller's selection) for ``user``."""
    services = ui.services()
    choices = filter_choices(ui.image_listing(user))
    field = st.radio("Set the selection's", list(EDITS), horizontal=True, key=f"{key}_field") or "Label"
    noun = field.lower()
    known = {"Label": choices.labels, "Split": choices.splits, "Dataset": choices.datasets}[field]
    picked = st.selectbox(field, [*known, NEW], key=f"{key}_pick_{noun}") if known else NEW
    value = st.text_input(f"New {noun}", key=f"{key}_new_{noun}") if picked == NEW else picked
    left, right = st.columns(2)
    clear = right.button(f"Clear {noun}", key=f"{key}_clear_{noun}", disabled=field == "Dataset")
    if left.button("Apply", type="primary", key=f"{key}_apply_{noun}", disabled=not value.strip()) or clear:
        try:
            with ui.track(f"set_{noun}", page="labels", images=len(ids)):
                changed = EDITS[field](services.index, user, list(ids), None if clear else value)
        except InvalidName as exc:
            st.error(str(exc), icon=":material/error:")
            return
        ui.bump_data_version(user)
        st.toast(f"{field} {'cleared' if clear else 'set'} on {changed} image(s)")
        st.rerun()


def occurrence_list(user: str, image_id: str, payload: dict) -> None:
    """Every file the image was stored under, each (when there are several) with a remove button."""
    entries = occurrences(payload)
    st.markdown(f"**Stored as {len(entries)} file(s)**")
    removable = len(entries) > 1  # the last one goes with "Delete image"
    for number, entry in enumerate(entries):
        where = " · ".join(f"{field} {entry[field]}" for field in ("dataset", "split", "label") if entry.get(field))
        text, button = st.columns([5, 1], vertical_alignment="center")
        text.markdown(f"`{ui.escape(entry.get('path') or '')}`  \n{ui.escape(where)}")
        if removable and button.button(
            "",
            icon=":material/delete:",
            key=f"occurrence_{image_id}_{number}",
            help="Forget this file; the image and its other files stay",
        ):
            key = (entry.get("path") or "", entry.get("dataset"), entry.get("split"))
            services = ui.services()
            with ui.track("remove_occurrence", page="detail", image_id=image_id):
                record_edits.remove_occurrences(open_trash(services), user, image_id, [key])
            ui.bump_data_version(user)
            st.rerun()
