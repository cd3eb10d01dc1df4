"""The sidebar filter by dataset, split and label (``core.record_filters``); pages read it with
``current_filter()`` and narrow their image lists with ``core.record_filters.apply_filter``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from app import ui
from core.record_filters import NONE_TEXT, RecordFilter, filter_choices, filter_mask

if TYPE_CHECKING:
    from core.duplicates import Cluster

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


def allowed_ids(user: str) -> set[str] | None:
    """The ids of ``user``'s images that match the sidebar's filter; None when nothing is chosen."""
    record_filter = current_filter()
    if not record_filter.active:
        return None
    images = ui.image_listing(user)
    return set(images.loc[filter_mask(images, record_filter), "id"])


def keep_rows(frame: pd.DataFrame, user: str, column: str = "id") -> pd.DataFrame:
    """The rows of ``frame`` (one image each, its id in ``column``) that match the sidebar's filter."""
    allowed = allowed_ids(user)
    return frame if allowed is None else frame[frame[column].isin(allowed)]


def keep_clusters(clusters: list[Cluster], user: str) -> list[Cluster]:
    """The duplicate clusters with at least one image that matches the sidebar's filter."""
    allowed = allowed_ids(user)
    return clusters if allowed is None else [c for c in clusters if allowed.intersection(c.members)]
