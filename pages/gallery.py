"""Gallery page: a QA view of the collection. Filter and sort by any field (kept in the URL, so a
view can be bookmarked), select all that match, act on the selection; deletes go to the trash."""

from __future__ import annotations

from datetime import date

import pandas as pd
import streamlit as st

from app import detail, label_editor, record_filters, trash_ui, ui
from core import gallery
from core.gallery import DUPLICATE_STATUS, FLAGS, REVIEWS, SORTS, GalleryQuery
from core.record_filters import apply_filter

services = ui.services()
user = ui.scope_user()
SELECTION, GENERATION, APPLIED = "gallery_selection", "gallery_selection_gen", "gallery_applied"
PER_PAGE = (24, 48, 96)
CSS = """
.vad-chips { display: flex; flex-wrap: wrap; gap: 0.2rem; min-height: 1.25rem; margin: 0.15rem 0 0.1rem; }
.vad-chip { font-size: 0.68rem; line-height: 1.1rem; padding: 0 0.4rem; border-radius: 0.6rem; white-space: nowrap;
  background: #EEF2FF; color: #3730A3; }
.vad-chip.flag { background: #FEF3C7; color: #92400E; }
.vad-chip.dup { background: #E0F2FE; color: #075985; }
.st-key-gallery-grid { margin-top: 0.75rem; }
.st-key-gallery-grid .vad-caption { white-space: normal; overflow-wrap: anywhere; }
/* The thumbnails' fullscreen button only blows up a 256 px thumbnail (and covers the bar above). */
.st-key-gallery-grid [data-testid="stElementToolbar"] { display: none; }
"""


@st.cache_resource(max_entries=16, show_spinner="Loading your images…")
def _table(
    _services_id: int, user: str, version: int, reviews: int, count: int, stamp: int
) -> tuple[pd.DataFrame, gallery.Analyses]:
    return gallery.qa_table(services, user)


def table() -> tuple[pd.DataFrame, gallery.Analyses]:
    """The QA table, cached until the images, their reviews or the cached analyses change."""
    count = services.index.count(user)
    stamp = gallery.analyses_stamp(services, user)
    return _table(id(services), user, ui.data_version(user), ui.review_version(user), count, stamp)


# --- the query: widgets <-> URL -------------------------------------------------------------------

WIDGETS = {  # GalleryQuery field -> widget key
    "text": "gallery_text",
    "flag": "gallery_flag",
    "duplicate": "gallery_duplicate",
    "review": "gallery_review",
    "sort": "gallery_sort",
    "tag": "gallery_tag",
    "format": "gallery_format",
    "dataset": "gallery_dataset",
    "split": "gallery_split",
    "label": "gallery_label",
    "min_kb": "gallery_min_kb",
    "max_kb": "gallery_max_kb",
    "min_score": "gallery_min_score",
}
DATES = "gallery_dates"


def sync_from_url() -> None:
    """Put the URL's query into the widgets when it differs from what they last showed (a link
    was opened); with no query in the URL (back from another page, where Streamlit dropped the
    widgets' state), restore the last query into the widgets and the URL."""
    params = {k: v for k, v in st.query_params.to_dict().items() if k in GalleryQuery.__dataclass_fields__}
    if not params and APPLIED in st.session_state:
        params = st.session_state[APPLIED]
    query = GalleryQuery.from_params(params)
    if st.session_state.get(APPLIED) == query.to_params() and WIDGETS["text"] in st.session_state:
        return
    for name, key in WIDGETS.items():
        value = getattr(query, name)
        st.session_state[key] = list(value) if isinstance(value, tuple) else value
    st.session_state[DATES] = tuple(d for d in (query.since, query.until) if d)
    write_url(query)


def write_url(query: GalleryQuery) -> None:
    """Keep the URL's query in step with ``query`` (other parameters are left alone)."""
    params = query.to_params()
    for name in GalleryQuery.__dataclass_fields__:
        if name not in params and name in st.query_params:
            del st.query_params[name]
    for name, value in params.items():
        if st.query_params.get(name) != value:
            st.query_params[name] = value
    st.session_state[APPLIED] = params


def query_from_widgets() -> GalleryQuery:
    state = st.session_state
    dates = state.get(DATES) or ()
    dates = (dates,) if isinstance(dates, date) else tuple(dates)
    values = {name: state.get(key) for name, key in WIDGETS.items()}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if v not in (None, "", [])}
    return GalleryQuery(
        **values, since=dates[0] if len(dates) > 0 else None, until=dates[1] if len(dates) > 1 else None
    )


def filter_bar(images: pd.DataFrame) -> None:
    """The filters; their values live in session state under WIDGETS' keys."""
    row = st.columns([2, 3, 3, 3], vertical_alignment="bottom")
    row[0].text_input("File name", placeholder="e.g. beach, IMG_20", key=WIDGETS["text"])
    for column, (name, label, choices) in zip(
        row[1:],
        (("flag", "Quality flag", FLAGS), ("duplicate", "Duplicates", DUPLICATE_STATUS), ("review", "Review", REVIEWS)),
        strict=True,
    ):
        column.multiselect(label, list(choices), format_func=choices.get, key=WIDGETS[name], placeholder="Any")
    more_column, sort_column = st.columns([4, 1])
    sort_column.selectbox(
        "Sort by",
        list(SORTS),
        format_func=lambda key: f"Sort: {SORTS[key][0]}",
        key=WIDGETS["sort"],
        label_visibility="collapsed",
    )
    with more_column.expander("More filters: tag, format, dataset, date, size, anomaly score", icon=":material/tune:"):
        more = st.columns(5, vertical_alignment="bottom")
        options = {
            "tag": gallery.all_tags(images),
            "format": sorted(f for f in images["format"].unique() if f),
            "dataset": _values(images["datasets"]),
            "split": _values(images["splits"]),
            "label": sorted({v for v in images["label"] if v}),
        }
        for column, (name, values) in zip(more, options.items(), strict=True):
            key = WIDGETS[name]
            st.session_state[key] = [v for v in st.session_state.get(key) or [] if v in values]  # e.g. from a link
            column.multiselect(name.capitalize(), values, key=key, placeholder="Any")
        last = st.columns(5, vertical_alignment="bottom")
        last[0].date_input("Added between", key=DATES, format="YYYY-MM-DD", max_value=date.today())
        last[1].number_input("Min size (KB)", min_value=0, step=10, key=WIDGETS["min_kb"])
        last[2].number_input("Max size (KB)", min_value=0, step=10, key=WIDGETS["max_kb"])
        last[3].number_input(
            "Min anomaly score",
            min_value=0.0,
            step=0.01,
            format="%.2f",
            key=WIDGETS["min_score"],
            help="k-NN distance, as on the Anomalies page (higher = more unusual)",
        )


def _values(lists: pd.Series) -> list[str]:
    return sorted({value for values in lists for value in values})


# --- selection ------------------------------------------------------------------------------------


def selection() -> set[str]:
    return st.session_state.setdefault(SELECTION, set())


def set_selection(ids: set[str] | None = None) -> None:
    """Replace the selection; the checkboxes are made again with the new state."""
    st.session_state[SELECTION] = set(ids or ())
    st.session_state[GENERATION] = st.session_state.get(GENERATION, 0) + 1


def _toggle(image_id: str, key: str) -> None:
    (selection().add if st.session_state[key] else selection().discard)(image_id)


# --- the view -------------------------------------------------------------------------------------


def analyses_notice(analyses: gallery.Analyses) -> None:
    missing = [
        what
        for what, frame in (("anomaly scores", analyses.anomalies), ("duplicate status", analyses.duplicates))
        if frame is None
    ]
    if not missing:
        return
    left, right = st.columns([4, 1.3], vertical_alignment="center")
    left.info(
        f"The {' and '.join(missing)} of your current images are not computed yet: filters and sorts on "
        "them match nothing until they are.",
        icon=":material/info:",
    )
    right.button("Compute now", key="gallery_compute", icon=":material/play_arrow:", width="stretch", on_click=_compute)


def _compute() -> None:
    with st.spinner("Scoring anomalies and looking for duplicates…"), ui.track("compute_analyses", page="gallery"):
        gallery.compute_analyses(services, user)


def bulk_actions(chosen: list[str], images: pd.DataFrame) -> None:
    """Tag, untag, review, label and delete the selected images (callbacks: done before the rerun)."""
    count = len(chosen)
    row = st.columns(5, gap="small")
    with row[0].popover("Add tags", icon=":material/sell:", width="stretch"):
        st.text_input("Tags (comma-separated)", placeholder="cats, outdoor", key="bulk_tags")
        st.button("Add", key="bulk_tag_add", type="primary", on_click=_add_tags, args=(chosen,))
    with row[1].popover("Remove tags", icon=":material/label_off:", width="stretch"):
        present = gallery.all_tags(images[images["id"].isin(chosen)])
        doomed = st.multiselect("Tags to remove", present, key="bulk_untag", placeholder="Pick tags")
        st.button(
            "Remove", key="bulk_untag_go", type="primary", disabled=not doomed, on_click=_remove_tags, args=(chosen,)
        )
    with row[2].popover("Mark reviewed", icon=":material/fact_check:", width="stretch"):
        for status, label in (("normal", "Normal"), ("confirmed", "Confirmed anomaly"), (None, "Not reviewed")):
            st.button(
                label, key=f"bulk_review_{status}", width="stretch", on_click=_review, args=(chosen, status, label)
            )
    with row[3].popover("Split / label", icon=":material/label:", width="stretch"):
        label_editor.label_actions(user, chosen, key="gallery_labels")
    with row[4].popover("Delete", icon=":material/delete:", width="stretch"):
        st.markdown(f"Move **{count:,}** image(s) to the trash? You can undo it, or restore them from the Trash page.")
        if st.button(f"Move {count:,} to the trash", key="bulk_delete", type="primary", icon=":material/delete:"):
            with ui.track("delete", page="gallery", images=count):
                trash_ui.delete(user, chosen)
            set_selection(set())
            st.rerun()  # the whole app: the sidebar's count and its Undo


def _add_tags(chosen: list[str]) -> None:
    tags = gallery.normalise_tags(st.session_state.get("bulk_tags", ""))
    if tags:
        with ui.track("tag", page="gallery", images=len(chosen)):
            changed = gallery.add_tags(services, user, chosen, tags)
        _changed(f"Tagged {changed:,} image(s)")


def _remove_tags(chosen: list[str]) -> None:
    with ui.track("untag", page="gallery", images=len(chosen)):
        changed = gallery.remove_tags(services, user, chosen, st.session_state.get("bulk_untag") or [])
    _changed(f"Removed tags from {changed:,} image(s)")


def _review(chosen: list[str], status: str | None, label: str) -> None:
    with ui.track("review", page="gallery", images=len(chosen), review=status or "none"):
        changed = gallery.set_review(services, user, chosen, status)
    _changed(f"Marked {changed:,} image(s) {label.lower()}")


def _changed(message: str) -> None:
    ui.bump_data_version(user)
    st.toast(message)


def _go_to(number: int) -> None:
    st.session_state["gallery_page"] = number


def card(row: dict, _: int) -> None:
    size = f"{row['width']}×{row['height']} · {ui.human_bytes(row['bytes'])}"
    ui.thumb_card(row, f"{ui.card_name(row['filename'])}{size}")
    st.markdown(f"<div class='vad-chips'>{''.join(_chips(row))}</div>", unsafe_allow_html=True)
    actions = st.container(horizontal=True, gap="small", vertical_alignment="center")  # not columns: fewer elements
    key = f"select_{st.session_state.get(GENERATION, 0)}_{row['id']}"
    actions.checkbox(
        "Select",
        value=row["id"] in selection(),
        key=key,
        on_change=_toggle,
        args=(row["id"], key),
        label_visibility="collapsed",
    )
    if actions.button("Open", key=f"open_{row['id']}", width="stretch", help="Details, tags and similar images"):
        detail.open_detail(row["id"])


def _chips(row: dict) -> list[str]:
    chips = [f"<span class='vad-chip flag'>{ui.escape(FLAGS[f])}</span>" for f in row["quality_flags"]]
    if row.get("is_anomaly"):
        chips.insert(0, f"<span class='vad-chip flag'>{FLAGS[gallery.UNUSUAL]}</span>")
    if row.get("duplicate") in ("keeper", "extra"):
        chips.append(f"<span class='vad-chip dup'>{DUPLICATE_STATUS[row['duplicate']]}</span>")
    chips += [f"<span class='vad-chip'>{ui.escape(tag)}</span>" for tag in row["tags"]]
    return chips


@st.fragment
def view() -> None:
    """Filters, selection, paging and cards: a click here reruns only this part."""
    images, analyses = table()
    sync_from_url()
    filter_bar(images)
    query = query_from_widgets()
    if query.to_params() != st.session_state.get(APPLIED):
        write_url(query)
        st.session_state["gallery_page"] = 1
    analyses_notice(analyses)
    matching = apply_filter(gallery.select(images, query), record_filters.current_filter())  # and the sidebar's
    chosen = selection()
    chosen &= set(images["id"])

    per_page = int(st.session_state.get("gallery_per_page", PER_PAGE[0]))
    page = gallery.paginate(matching, int(st.session_state.get("gallery_page", 1)), per_page)
    st.session_state["gallery_page"] = page.number
    bar = st.columns([3, 2, 1, 1, 1.5], vertical_alignment="center")
    of_all = f" of {len(images):,}" if page.total != len(images) else ""
    summary = f"**{page.total:,}** image(s){of_all} · page {page.number} of {page.count}"
    bar[0].markdown(summary + (f" · **{len(chosen):,} selected**" if chosen else ""))
    if matching.empty or set(matching["id"]) <= chosen:
        bar[1].button(
            "Clear selection", key="gallery_clear", disabled=not chosen, width="stretch", on_click=set_selection
        )
    else:
        everything = chosen | set(matching["id"])
        label = f"Select all {page.total:,} matching"
        bar[1].button(label, key="gallery_select_all", width="stretch", on_click=set_selection, args=(everything,))
    first, last = page.number <= 1, page.number >= page.count
    bar[2].button(
        "Previous", key="gallery_prev", disabled=first, width="stretch", on_click=_go_to, args=(page.number - 1,)
    )
    bar[3].button("Next", key="gallery_next", disabled=last, width="stretch", on_click=_go_to, args=(page.number + 1,))
    bar[4].selectbox(
        "Per page", PER_PAGE, key="gallery_per_page", format_func="{} per page".format, label_visibility="collapsed"
    )
    if chosen:
        bulk_actions(sorted(chosen), images)
    if matching.empty:
        ui.empty_state(
            "Nothing matches",
            "No image matches these filters. Remove some, or compute the analyses they need.",
            icon=":material/filter_alt_off:",
        )
        return
    with st.container(key="gallery-grid"):
        ui.card_grid(page.rows.to_dict("records"), card, actions=[trash_ui.delete_action("gallery")])
    detail.render_if_open()


st.title("Gallery")
st.markdown(f"<style>{CSS}</style>", unsafe_allow_html=True)
if services.index.count(user) == 0:
    ui.empty_state(
        "No images yet",
        "Your collection is empty. Upload photos or a .zip archive to browse them here.",
        link=("upload.py", "Go to Upload"),
    )
    st.stop()
view()
