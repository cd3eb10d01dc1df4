"""The sidebar filter by dataset, split and label (``core.record_filters``); pages read it with
``current_filter()`` and narrow their image lists with ``core.record_filters.apply_filter``."""

from __future__ import annotations

import streamlit as st

from app import ui
from core.record_filters import NONE_TEXT, RecordFilter, filter_choices

KEYS = {"datasets": "filter_datasets", "splits": "filter_splits", "labels": "filter_labels"}


def sidebar_filters(user: str) -> None:
    """Multiselects for the datasets, splits and labels of ``user``'s images (shown only when
    there is something to choose between)."""
    choices = filter_choices(ui.image_listing(user))
    options = {
        "datasets": choices.datasets,
        "splits": choices.splits + ([NONE_TEXT] if choices.has_no_split and choices.splits else []),
        "labels": choices.labels + ([NONE_TEXT] if choices.has_no_label and choices.labels else []),
    }
    for name, key in KEYS.items():  # a value another collection had is dropped
        st.session_state[key] = [v for v in st.session_state.get(key, []) if v in options[name]]
    if len(options["datasets"]) < 2 and not options["splits"] and not options["labels"]:
        return
    with st.expander("Filter images", icon=":material/filter_list:", expanded=current_filter().active):
        if len(options["datasets"]) > 1:
            st.multiselect("Dataset", options["datasets"], key=KEYS["datasets"], placeholder="All datasets")
        if options["splits"]:
            st.multiselect("Split", options["splits"], key=KEYS["splits"], placeholder="All splits")
        if options["labels"]:
            st.multiselect("Label", options["labels"], key=KEYS["labels"], placeholder="All labels")


def current_filter() -> RecordFilter:
    """The sidebar's filter (inactive until something is chosen)."""

    def chosen(name: str) -> tuple[str | None, ...]:
        return tuple(None if v == NONE_TEXT else v for v in st.session_state.get(KEYS[name], []))

    return RecordFilter(
        datasets=tuple(v for v in chosen("datasets") if v is not None), splits=chosen("splits"), labels=chosen("labels")
    )
