"""Anomalies page in two parts: images unlike the rest (outlier methods, rare groups) and image-quality
problems (each check worst first). Review clicks, filters and paging rerun only their part
(``st.fragment``) and read the cached report."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import detail, record_filters, trash_ui, ui
from app.viewer import ViewerAction
from core import gallery
from core.anomalies import DEFAULT_K, DEFAULT_METHOD, METHODS, anomaly_report, check_counts, quality_problems
from core.anomaly_groups import rare_groups
from core.cache import ResultCache
from core.quality import CHECKS
from core.reviews import set_anomaly_review

services = ui.services()
user = ui.scope_user()
PER_PAGE = 24
GROUPS_PER_PAGE = 4
GROUP_THUMBS = 6


@st.cache_resource(max_entries=32, show_spinner="Scoring your images…")
def _report(_services_id: int, user: str, version: int, count: int, method: str, k: int):
    cache = ResultCache(services.settings.data_dir / "cache")
    with ui.track("score_anomalies", page="anomalies", images=count, method=method, k=k):
        return anomaly_report(services, user, method, k, checks=True, cache=cache)


def current_report(method: str = DEFAULT_METHOD, k: int = DEFAULT_K):
    """The cached report of this method, with the reviews written since it was read."""
    report = _report(id(services), user, ui.data_version(user), services.index.count(user), method, k)
    return ui.with_recent_reviews(user, report)


def review(ids: list[str], status: str | None) -> None:
    with ui.track("review", page="anomalies", images=len(ids), review=status or "cleared"):
        set_anomaly_review(services.index, user, ids, status)
    ui.note_reviews(user, ids, status)


def review_buttons(image_id: str, prefix: str) -> None:
    # One horizontal container, not three columns: every element of a card costs the browser time
    # on each rerun. Its buttons share the row however narrow the card (cards.css).
    row = st.container(horizontal=True, gap="small", key=f"vad_review_{prefix}_{image_id}")
    row.button(
        "",
        icon=":material/check:",
        key=f"{prefix}_confirm_{image_id}",
        help="Confirm: a real problem",
        width="stretch",
        on_click=review,
        args=([image_id], "confirmed"),
    )
    row.button(
        "",
        icon=":material/close:",
        key=f"{prefix}_normal_{image_id}",
        help="Mark as normal",
        width="stretch",
        on_click=review,
        args=([image_id], "normal"),
    )
    if row.button("", icon=":material/zoom_in:", key=f"{prefix}_open_{image_id}", help="Open", width="stretch"):
        detail.open_detail(image_id)
        st.rerun()  # the dialog is drawn by the whole page, not by this part


#: Review keys in the full-resolution viewer opened from a card.
VIEWER_ACTIONS = [
    ViewerAction("A", "Anomaly", lambda image_id: review([image_id], "confirmed"), icon=":material/check:"),
    ViewerAction("N", "Normal", lambda image_id: review([image_id], "normal"), icon=":material/close:"),
]


def wrapped(caption: str) -> str:
    """A card caption that wraps instead of being cut off."""
    return f"<span class='vad-wrap'>{caption}</span>"


def review_note(status: str) -> str:
    return {"confirmed": " · ✔ confirmed", "normal": " · marked normal"}.get(status, "")


def pager(total: int, per_page: int, key: str, label: str) -> int:
    """A page number input (1-based) when there is more than one page."""
    pages = max(1, -(-total // per_page))
    if pages == 1:
        return 1
    return int(st.number_input(f"{label} page (of {pages})", 1, pages, 1, key=key))


def histogram(report, label: str) -> None:
    threshold = float(report["anomaly_threshold"].iloc[0])
    figure = go.Figure(
        go.Histogram(
            x=report["anomaly_score"], nbinsx=40, marker_color="#818CF8", hovertemplate="%{x:.2f}: %{y} images"
        )
    )
    if threshold != float("inf"):
        figure.add_vline(
            x=threshold,
            line_dash="dash",
            line_color="#DC2626",
            annotation_text=f"threshold {threshold:.2f}",
            annotation_position="top right",
        )
    figure.update_layout(
        height=200,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        bargap=0.05,
        xaxis_title=f"{label} score (higher = more unusual)",
        yaxis_title="images",
    )
    st.plotly_chart(figure, width="stretch", config={"displayModeBar": False})


# --- part 1: unlike the rest ------------------------------------------------------------------------


def group_card(group: dict) -> None:
    """One rare group: its thumbnails, size, label, distance to the rest, and actions on all of it."""
    number, ids = group["group"], group["ids"]
    reviewed = {r for r in group["reviews"] if r}
    status = f" · {', '.join(sorted(reviewed))}" if reviewed else ""
    with st.container(border=True):
        st.markdown(
            f"**Group {number}** · {group['size']} images · {ui.escape(group['label'])} · "
            f"distance to the rest {group['distance']:.2f} · score {group['score']:.2f}{status}"
        )
        shown = list(zip(ids, group["filenames"], group["thumbnail_keys"], group["reviews"], strict=True))
        cells = st.columns(GROUP_THUMBS, gap="small")
        for cell, (image_id, name, key, note) in zip(cells, shown[:GROUP_THUMBS], strict=False):
            with cell:
                card = {"id": image_id, "filename": name, "thumbnail_key": key}
                ui.thumb_card(card, wrapped(ui.escape(name) + review_note(note)))
        if len(ids) > GROUP_THUMBS:
            st.caption(f"and {len(ids) - GROUP_THUMBS} more: " + ", ".join(group["filenames"][GROUP_THUMBS:]))
        actions = st.columns([1, 1, 1, 1], gap="small")
        actions[0].button(
            "Confirm group",
            icon=":material/check:",
            key=f"anom_group_confirm_{number}",
            width="stretch",
            on_click=review,
            args=(ids, "confirmed"),
        )
        actions[1].button(
            "Mark normal",
            icon=":material/close:",
            key=f"anom_group_normal_{number}",
            width="stretch",
            on_click=review,
            args=(ids, "normal"),
        )
        with actions[2].popover("Tag group", icon=":material/sell:", width="stretch"):
            text = st.text_input("Tags", placeholder="logos, wrong camera", key=f"anom_group_tags_{number}")
            if st.button("Add tags", key=f"anom_group_tag_{number}") and text.strip():
                with ui.track("tag", page="anomalies", images=len(ids)):
                    gallery.add_tags(services, user, ids, gallery.normalise_tags(text))
                ui.bump_data_version()
                st.toast(f"Tagged {len(ids)} image(s)")
                st.rerun()  # the label may change: the tag is the most common one
        with actions[3].popover("Delete group", icon=":material/delete:", width="stretch"):
            st.markdown(f"Move these **{len(ids)}** images to the trash? You can undo it from the sidebar.")
            if st.button("Move to trash", type="primary", key=f"anom_group_delete_{number}", width="stretch"):
                with ui.track("delete", page="anomalies", images=len(ids)):
                    trash_ui.delete(user, ids)
                st.rerun()


@st.fragment
def unlike_the_rest(include_reviewed: bool) -> None:
    controls = st.columns([3, 1], vertical_alignment="bottom")
    method = controls[0].selectbox(
        "Method",
        list(METHODS),
        format_func=lambda m: METHODS[m].label + (" (not recommended)" if METHODS[m].warning else ""),
        key="anom_method",
        help="; ".join(f"{m.label}: {m.description}" for m in METHODS.values()),
    )
    chosen = METHODS[method]
    k = controls[1].number_input(
        "k neighbours", 2, 50, DEFAULT_K, key="anom_k", disabled=not chosen.uses_k, help="for k-NN distance and LOF"
    )
    if chosen.warning:
        st.warning(chosen.warning, icon=":material/warning:")

    report = current_report(method, int(k))
    flagged = report[report["is_anomaly"]]
    groups = rare_groups(report)
    allowed = record_filters.allowed_ids(user)
    if allowed is not None:
        groups = groups[[bool(allowed.intersection(ids)) for ids in groups["ids"]]]
    flagged = record_filters.keep_rows(flagged, user)  # the sidebar's dataset / split / label filter
    singles = flagged[flagged["group"] == 0]
    if not include_reviewed:
        singles = singles[singles["review"] == ""]
        groups = groups[[not all(r for r in reviews) for reviews in groups["reviews"]]]
    histogram(report, chosen.label.removesuffix(" (default)"))
    st.markdown(
        f"**{len(flagged):,}** image(s) unlike the rest: **{len(groups):,}** rare group(s) "
        f"and **{len(singles):,}** single image(s)"
    )

    st.subheader("Rare groups", anchor=False)
    st.caption(
        "Flagged images that resemble each other more than the rest: a batch from another camera, a "
        "mis-sorted folder. Review, tag or delete each group as a whole."
    )
    if groups.empty:
        st.markdown("No group of similar unusual images.")
    else:
        number = pager(len(groups), GROUPS_PER_PAGE, "anom_group_page", "Groups")
        for group in groups.iloc[(number - 1) * GROUPS_PER_PAGE : number * GROUPS_PER_PAGE].to_dict("records"):
            group_card(group)

    st.subheader("Single images", anchor=False)
    if singles.empty:
        st.markdown("No single image unlike the rest.")
        return
    flagged_grid(singles, "anomaly_score", "anom", "anom_page")


def flagged_grid(rows: pd.DataFrame, score: str, prefix: str, page_key: str) -> None:
    """One page of flagged images as cards (score, name, reasons, review buttons); the viewer steps
    through all of ``rows``."""
    number = pager(len(rows), PER_PAGE, page_key, "Images")

    def render(row: dict, _: int) -> None:
        ui.thumb_card(
            row,
            wrapped(
                f"<span class='vad-score'>{row[score]:.2f}</span> {ui.escape(row['filename'])}"
                f"<br>{ui.escape(row['reasons'])}{review_note(row['review'])}"
            ),
        )
        review_buttons(row["id"], prefix)

    ui.card_grid(
        rows.iloc[(number - 1) * PER_PAGE : number * PER_PAGE].to_dict("records"),
        render,
        actions=VIEWER_ACTIONS,
        viewer_rows=rows.to_dict("records"),
        key=prefix,
    )


# --- part 2: quality problems -----------------------------------------------------------------------


@st.fragment
def quality_part(include_reviewed: bool) -> None:
    report = current_report()
    counts = check_counts(report)
    check = st.pills(
        "Check",
        list(CHECKS),
        format_func=lambda name: f"{CHECKS[name].label} · {counts.get(name, 0)}",
        default=max(CHECKS, key=lambda name: counts.get(name, 0)),
        key="anom_check",
    )
    if check is None:
        st.markdown("Choose a check to see the images it flags, worst first.")
        return
    rows = record_filters.keep_rows(quality_problems(report, check), user)
    if not include_reviewed:
        rows = rows[rows["review"] == ""]
    spec = CHECKS[check]
    st.caption(
        f"{spec.label}: flagged under a score of {spec.threshold:g} (0 = worst, 1 = fine) · "
        f"{len(rows):,} image(s), worst first"
    )
    if rows.empty:
        st.markdown(f"No image is flagged as {spec.label.lower()}.")
        return
    flagged_grid(rows, f"{check}_score", "anomq", "anom_quality_page")


# --- the page ---------------------------------------------------------------------------------------

st.title("Anomalies")
count = services.index.count(user)
if count < 3:
    ui.empty_state(
        "Not enough images yet",
        "Anomalies are images unlike the rest of a collection: upload at least "
        "three images (a few dozen make the scores meaningful).",
        icon=":material/troubleshoot:",
        link=("upload.py", "Go to Upload"),
    )
    st.stop()

ui.graph_panel(user, "anomalies")
head = st.columns([4, 1, 1], vertical_alignment="center")
include_reviewed = head[0].toggle("Show reviewed images", value=True, key="anom_reviewed")
report_now = current_report()  # the cached frame: the callbacks below copy it only when clicked
head[1].download_button(
    "CSV",
    lambda: report_now.drop(columns=["thumbnail_key"]).to_csv(index=False),
    "anomalies.csv",
    "text/csv",
    icon=":material/download:",
    width="stretch",
)
head[2].download_button(
    "JSON",
    lambda: report_now.drop(columns=["thumbnail_key"]).to_json(orient="records", indent=2),
    "anomalies.json",
    "application/json",
    icon=":material/download:",
    width="stretch",
)

unusual, quality = st.tabs([":material/scatter_plot: Unlike the rest", ":material/tune: Quality problems"])
with unusual:
    unlike_the_rest(include_reviewed)
with quality:
    quality_part(include_reviewed)
detail.render_if_open()
