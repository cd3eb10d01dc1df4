"""Anomalies page: images unlike the rest and image-quality problems, ranked, reviewed, exported."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from app import detail, record_filters, ui
from app.viewer import ViewerAction
from core.anomalies import METHODS, UNUSUAL, anomaly_report, filter_report
from core.cache import ResultCache
from core.quality import CHECKS
from core.reviews import set_anomaly_review

services = ui.services()
user = ui.scope_user()
PER_PAGE = 24
FILTERS = {UNUSUAL: "Unlike the rest", **{name: check.label for name, check in CHECKS.items()}}


@st.cache_resource(max_entries=32, show_spinner="Scoring your images…")
def _report(_services_id: int, user: str, version: int, count: int, method: str, k: int):
    cache = ResultCache(services.settings.data_dir / "cache")
    with ui.track("score_anomalies", page="anomalies", images=count, method=method, k=k):
        return anomaly_report(services, user, method, k, checks=True, cache=cache)


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

controls = st.columns([2, 1, 2], vertical_alignment="bottom")
method = controls[0].selectbox(
    "Method",
    list(METHODS),
    format_func=lambda m: METHODS[m].label,
    key="anom_method",
    help="; ".join(f"{m.label}: {m.description}" for m in METHODS.values()),
)
k = controls[1].number_input("k neighbours", 2, 50, 10, key="anom_k", disabled=method == "iforest")
include_reviewed = controls[2].toggle("Include reviewed images", value=True, key="anom_reviewed")
show = st.pills(
    "Show images flagged as",
    list(FILTERS),
    format_func=FILTERS.get,
    selection_mode="multi",
    default=list(FILTERS),
    key="anom_show",
)

ui.graph_panel(user, "anomalies")  # before the analysis: the graph is brought up to date in a background job
report = _report(id(services), user, ui.data_version(user), count, method, int(k))
threshold = float(report["anomaly_threshold"].iloc[0])

left, right = st.columns([3, 2], gap="large")
with left:
    figure = go.Figure(go.Histogram(x=report["anomaly_score"], nbinsx=40, marker_color="#818CF8"))
    if threshold != float("inf"):
        figure.add_vline(
            x=threshold,
            line_dash="dash",
            line_color="#DC2626",
            annotation_text="threshold",
            annotation_position="top right",
        )
    figure.update_layout(
        height=230,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        bargap=0.05,
        xaxis_title=f"{METHODS[method].label} score (higher = more unusual)",
        yaxis_title="images",
    )
    st.plotly_chart(figure, width="stretch", config={"displayModeBar": False})
with right:
    counts = {UNUSUAL: int(report["is_anomaly"].sum())}
    counts |= {name: int(report[f"is_{name}_issue"].sum()) for name in CHECKS}
    st.markdown("**Flagged images**")
    st.dataframe(
        [{"check": FILTERS[name], "images": value} for name, value in counts.items()],
        hide_index=True,
        width="stretch",
        height=230,
    )

selected = filter_report(report, show or [], include_reviewed)
selected = record_filters.keep_rows(selected, user)
export = selected.drop(columns=["thumbnail_key"])
pages = max(1, -(-len(selected) // PER_PAGE))
bar = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
bar[0].markdown(f"**{len(selected):,}** flagged image(s), most unusual first")
number = bar[1].number_input(f"Page (of {pages})", 1, pages, 1, key="anom_page", disabled=pages == 1)
bar[2].download_button(
    "CSV", export.to_csv(index=False), "anomalies.csv", "text/csv", icon=":material/download:", width="stretch"
)
bar[3].download_button(
    "JSON",
    export.to_json(orient="records", indent=2),
    "anomalies.json",
    "application/json",
    icon=":material/download:",
    width="stretch",
)
if selected.empty:
    ui.empty_state(
        "Nothing flagged",
        "No image is flagged by the chosen checks. Choose more checks above, or include reviewed images.",
        icon=":material/verified:",
    )
    st.stop()


def review(image_id: str, status: str | None) -> None:
    with ui.track("review", page="anomalies", image_id=image_id, review=status or "cleared"):
        set_anomaly_review(services.index, user, [image_id], status)
    ui.bump_data_version()


def render(row: dict, _: int) -> None:
    status = {"confirmed": " · ✔ confirmed", "normal": " · marked normal"}.get(row["review"], "")
    ui.thumb_card(
        row,
        f"<span class='vad-score'>{row['anomaly_score']:.3f}</span> {ui.escape(row['filename'])}"
        f"<br>{ui.escape(row['reasons'] or 'not flagged')}{status}",
    )
    cols = st.columns(3, gap="small")
    cols[0].button(
        "",
        icon=":material/check:",
        key=f"anom_confirm_{row['id']}",
        help="Confirm: a real anomaly",
        width="stretch",
        on_click=review,
        args=(row["id"], "confirmed"),
    )
    cols[1].button(
        "",
        icon=":material/close:",
        key=f"anom_normal_{row['id']}",
        help="Mark as normal",
        width="stretch",
        on_click=review,
        args=(row["id"], "normal"),
    )
    if cols[2].button(
        "", icon=":material/zoom_in:", key=f"anom_open_{row['id']}", help="Open the image", width="stretch"
    ):
        detail.open_detail(row["id"])


VIEWER_ACTIONS = [
    ViewerAction("A", "Anomaly", lambda image_id: review(image_id, "confirmed"), icon=":material/check:"),
    ViewerAction("N", "Normal", lambda image_id: review(image_id, "normal"), icon=":material/close:"),
]
ui.card_grid(
    selected.iloc[(number - 1) * PER_PAGE : number * PER_PAGE].to_dict("records"),
    render,
    actions=VIEWER_ACTIONS,
    viewer_rows=selected.to_dict("records"),
)
detail.render_if_open()
