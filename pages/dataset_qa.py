"""Dataset QA page: leaks between splits, likely mislabels and class balance, for labelled datasets."""

from __future__ import annotations

from collections.abc import Callable

import plotly.express as px
import streamlit as st

from app import detail, ui
from core.balance import balance_rows, flags
from core.collection import Collection, load_collection
from core.dataset_qa import DatasetQA, cached_anomalies, clusters_of, duplicate_key
from core.duplicates import LEVELS, Cluster
from core.leaks import LeakReport, remove_leaks_from
from core.mislabels import DEFAULT_K, MislabelReport, keep_label, relabel
from core.services import Services

services = ui.services()
user = ui.scope_user()
GROUPS_PER_PAGE = 8
REVIEWS_PER_PAGE = 10
LAYOUT_HINT = (
    "Upload a zip laid out as `train/<label>/…` and `test/<label>/…` (Upload page), or from the command "
    "line: `python -m core ingest PATH --user NAME --layout split/label`. Splits and labels can also be "
    "set in bulk on the Gallery or with `python -m core labels set`."
)
FLAG_COLOURS = {"near empty": "background-color: #FEF3C7", "over-represented": "background-color: #DBEAFE"}


@st.cache_resource(max_entries=8, show_spinner="Reading your collection…")
def _collection(_services_id: int, user: str, version: int, count: int) -> Collection:
    return load_collection(services, user)


@st.cache_resource(max_entries=8, show_spinner="Looking for duplicates across your collection…")
def _clusters(_services_id: int, user: str, key: tuple[str, int], _collection: Collection) -> list[Cluster]:
    with ui.track("find_duplicates", page="dataset_qa", images=len(_collection)):
        return clusters_of(services, _collection)


@st.cache_resource(max_entries=8, show_spinner="Scoring anomalies (once, then read from the cache)…")
def _anomalies(_services_id: int, user: str, key: tuple[str, int], _collection: Collection):
    return cached_anomalies(services, _collection)


def current_qa() -> DatasetQA:
    """The collection and its clusters, from the caches (clusters only change with the images)."""
    collection = _collection(id(services), user, ui.data_version(user), services.index.count(user))
    return DatasetQA(collection, _clusters(id(services), user, duplicate_key(collection), collection))


def images_by_id() -> dict[str, dict]:
    return ui.image_listing(user).set_index("id").to_dict("index")


# --- Leaks ---------------------------------------------------------------------------------------


def leaks_view(qa: DatasetQA, dataset: str | None) -> None:
    splits = qa.splits(dataset)
    if len(splits) < 2:
        ui.empty_state(
            "No splits yet" if not splits else f"Only one split ({splits[0]})",
            "Leaks are copies of an image in two splits (train and test, say). " + LAYOUT_HINT,
            icon=":material/call_split:",
            link=("upload.py", "Go to Upload"),
        )
        return
    chosen = st.multiselect(
        "Compare splits", splits, default=splits, key="qa_leak_splits", help="Leaks between any two of these"
    )
    if len(chosen) < 2:
        st.info("Choose at least two splits.", icon=":material/info:")
        return
    report = qa.leaks(dataset, chosen)
    counts = report.level_counts()
    metrics = st.columns(4)
    metrics[0].metric("Leaked pairs", f"{len(report.pairs):,}")
    for column, level in zip(metrics[1:], LEVELS, strict=True):
        column.metric(level.capitalize(), f"{counts[level]:,}")

    left, right = st.columns([3, 2], gap="large")
    with left:
        st.markdown("**Leaked pairs per split pair**")
        st.dataframe(report.matrix(), width="stretch", key="qa_leak_matrix")
    with right:
        leak_actions(report, chosen, dataset)
    if report.pairs.empty:
        ui.empty_state(
            "No leaks between these splits",
            "No image of one split is an exact, near or semantic copy of an image of another.",
            icon=":material/done_all:",
        )
        return
    leak_groups(report)


def leak_actions(report: LeakReport, splits: list[str], dataset: str | None) -> None:
    default = splits.index("test") if "test" in splits else len(splits) - 1
    evaluation = st.selectbox(
        "Evaluation split", splits, index=default, key="qa_eval_split", help="The split whose copies are removed"
    )
    doomed = report.images_in(evaluation)
    with st.popover(
        f"Remove {len(doomed)} leaked image(s) from {evaluation}",
        icon=":material/remove_circle:",
        disabled=not doomed,
        width="stretch",
    ):
        st.markdown(
            f"Takes these **{len(doomed)}** image(s) out of **{ui.escape(evaluation)}**. Images that were only "
            f"in {ui.escape(evaluation)} are deleted; the others keep their other splits."
        )
        confirm = st.checkbox(f"Yes, remove them from {evaluation}", key="qa_remove_confirm")
        if st.button("Remove from the evaluation split", type="primary", disabled=not confirm, key="qa_remove"):
            with st.spinner("Removing…"), ui.track("remove_leaks", page="dataset_qa", images=len(doomed)):
                moved, deleted = remove_leaks_from(services, user, report, evaluation, dataset)
            ui.bump_data_version()
            st.toast(f"Removed {moved} image(s) from {evaluation} ({deleted} deleted)")
            st.rerun()
    exports = st.columns(2)
    exports[0].download_button(
        "CSV", report.to_csv, "leaks.csv", "text/csv", icon=":material/download:", width="stretch", key="qa_leak_csv"
    )
    exports[1].download_button(
        "JSON",
        report.to_json,
        "leaks.json",
        "application/json",
        icon=":material/download:",
        width="stretch",
        key="qa_leak_json",
    )


@st.fragment
def leak_groups(report: LeakReport) -> None:
    groups = list(report.pairs.groupby("group", sort=True))
    pages = max(1, -(-len(groups) // GROUPS_PER_PAGE))
    number = st.number_input(f"Page (of {pages})", 1, pages, 1, key="qa_leak_page") if pages > 1 else 1
    rows = images_by_id()
    for group, pairs in groups[(number - 1) * GROUPS_PER_PAGE : number * GROUPS_PER_PAGE]:
        level = min(pairs["level"], key=LEVELS.index)
        with st.container(border=True):
            where = " · ".join(sorted({f"{a} ↔ {b}" for a, b in zip(pairs["split_a"], pairs["split_b"], strict=True)}))
            if (pairs["a_id"] == pairs["b_id"]).all():
                how = "the same file in both splits"
            else:
                how = f"cosine {pairs['similarity'].min():.3f}"
                how += f" · pHash distance {pairs['phash_distance'].max()}" if level == "near" else ""
            st.markdown(f"**Group {group}** · {level} · {where} · {how}")
            members: dict[str, list[str]] = {}
            for pair in pairs.itertuples():
                members.setdefault(pair.a_id, []).append(pair.split_a)
                members.setdefault(pair.b_id, []).append(pair.split_b)
            cards = [{"id": i, **rows[i], "qa_splits": sorted(set(s))} for i, s in members.items() if i in rows]

            def render(row: dict, _: int, group: int = group) -> None:
                ui.thumb_card(row, ui.escape(", ".join(row["qa_splits"])))
                st.caption(ui.escape(row["filename"]))  # wraps: long dataset file names stay whole
                if st.button("Open", key=f"qa_leak_open_{group}_{row['id']}", width="stretch"):
                    detail.open_detail(row["id"])
                    st.rerun()  # the whole page: the detail dialog is drawn outside this fragment

            ui.card_grid(cards, render)


# --- Mislabels -----------------------------------------------------------------------------------


@st.fragment
def mislabels_view(dataset: str | None) -> None:
    qa = current_qa()
    labels = qa.labels(dataset)
    if len(labels) < 2:
        ui.empty_state(
            "No labels yet" if not labels else f"Only one label ({labels[0]})",
            "Likely mislabels are images whose nearest neighbours carry another label; that needs at least "
            "two labels. " + LAYOUT_HINT,
            icon=":material/label:",
            link=("upload.py", "Go to Upload"),
        )
        return
    controls = st.columns([2, 3, 1, 1], vertical_alignment="bottom")
    k = int(controls[0].number_input("Neighbours that vote", 3, 50, DEFAULT_K, key="qa_mis_k"))
    show_reviewed = controls[1].toggle("Include reviewed images", value=False, key="qa_mis_reviewed")
    report = qa.mislabels(dataset, k)
    for note in report.notes:
        st.warning(note, icon=":material/warning:")
    flagged = report.to_review(reviewed=True)
    metrics = st.columns(3)
    metrics[0].metric("Labelled images", f"{len(report.frame):,}")
    metrics[1].metric("Likely mislabelled", f"{len(flagged):,}")
    metrics[2].metric("Reviewed", f"{int((flagged['review'] != '').sum()):,}")
    controls[2].download_button(
        "CSV",
        report.to_csv,
        "mislabels.csv",
        "text/csv",
        icon=":material/download:",
        width="stretch",
        key="qa_mis_csv",
        help="The flagged images, reviewed or not",
    )
    controls[3].download_button(
        "JSON",
        report.to_json,
        "mislabels.json",
        "application/json",
        icon=":material/download:",
        width="stretch",
        key="qa_mis_json",
    )
    queue = report.to_review(reviewed=show_reviewed)
    if queue.empty:
        ui.empty_state(
            "Nothing to review",
            "No labelled image has neighbours that mostly carry another label"
            + (" (reviewed images are hidden)." if len(flagged) else "."),
            icon=":material/done_all:",
        )
        return
    pages = max(1, -(-len(queue) // REVIEWS_PER_PAGE))
    number = st.number_input(f"Page (of {pages})", 1, pages, 1, key="qa_mis_page") if pages > 1 else 1
    rows = images_by_id()
    for item in queue.iloc[(number - 1) * REVIEWS_PER_PAGE : number * REVIEWS_PER_PAGE].itertuples():
        review_row(item, rows.get(item.id, {}), labels, report)


def review_row(item, row: dict, labels: list[str], report: MislabelReport) -> None:
    with st.container(border=True):
        thumb, text, actions = st.columns([1, 4, 3], vertical_alignment="center")
        with thumb:
            ui.thumb_card({"id": item.id, **row}, "")
        review = f" · reviewed: {item.review}" if item.review else ""
        text.markdown(
            f"**{ui.escape(item.filename)}**  \n"
            f"Label **{ui.escape(item.label)}** → suggested **{ui.escape(item.suggested_label)}**  \n"
            f"{item.suggested_probability:.0%} of the neighbour vote for the suggestion, "
            f"{item.label_probability:.0%} for the label · {item.neighbours} labelled neighbours"
            f"{' · unreliable' if not item.reliable else ''}{review}  \n"
            f"Split: {ui.escape(item.splits or '(none)')}"
        )
        with actions:
            buttons = st.columns(2)
            buttons[0].button(
                "Keep label",
                key=f"qa_keep_{item.id}",
                width="stretch",
                on_click=decide,
                args=(keep_label, item.id, item.label, "Label kept"),
            )
            buttons[1].button(
                f"Relabel to {item.suggested_label}",
                key=f"qa_suggest_{item.id}",
                type="primary",
                width="stretch",
                on_click=decide,
                args=(relabel, item.id, item.suggested_label, f"Relabelled to {item.suggested_label}"),
            )
            other = st.columns([3, 1], vertical_alignment="bottom")
            choice = other[0].selectbox(
                "Relabel to…",
                [lab for lab in labels if lab != item.label],
                index=None,
                placeholder="another label",
                key=f"qa_to_{item.id}",
            )
            other[1].button(
                "Apply",
                key=f"qa_apply_{item.id}",
                width="stretch",
                disabled=choice is None,
                on_click=decide,
                args=(relabel, item.id, choice, f"Relabelled to {choice}"),
            )


def decide(action: Callable[[Services, str, list[str], str], object], image_id: str, label: str, done: str) -> None:
    """A review button's callback: runs before the fragment reruns, which then reads the new state."""
    with ui.track("review_label", page="dataset_qa", images=1, decision=action.__name__):
        action(services, user, [image_id], label)
    ui.bump_data_version()
    st.toast(done)


# --- Balance -------------------------------------------------------------------------------------


def balance_view(qa: DatasetQA, dataset: str | None) -> None:
    counts = qa.balance(dataset)
    if counts.empty:
        st.info("No images in this dataset.", icon=":material/info:")
        return
    if not qa.splits(dataset) and not qa.labels(dataset):
        ui.empty_state("No splits or labels yet", LAYOUT_HINT, icon=":material/balance:", link=("upload.py", "Upload"))
        return
    marks = flags(counts)
    st.markdown("**Images per label and split** (an image in two splits counts in both)")
    styled = counts.style.apply(lambda _: marks.map(lambda f: FLAG_COLOURS.get(f, "")), axis=None)
    st.dataframe(styled, width="stretch", key="qa_balance_table")
    flagged = [(label, split, flag) for (label, split), flag in marks.stack().items() if flag]
    if flagged:
        st.caption(
            "Highlighted: "
            + "; ".join(f"{ui.escape(label)} in {ui.escape(split)}: {flag}" for label, split, flag in flagged[:12])
            + (f"; and {len(flagged) - 12} more" if len(flagged) > 12 else "")
        )
    long = balance_rows(counts)
    figure = px.bar(long, x="label", y="images", color="split", barmode="group", text_auto=True)
    figure.update_layout(
        height=360, margin={"l": 10, "r": 10, "t": 10, "b": 10}, xaxis_title=None, legend_title_text="split"
    )
    st.plotly_chart(figure, width="stretch", config={"displayModeBar": False}, key="qa_balance_chart")
    collection = qa.collection
    anomalies = _anomalies(id(services), user, duplicate_key(collection), collection)
    st.markdown("**Anomalies and duplicates per label**")
    issues = qa.label_issues(anomalies, dataset)
    st.dataframe(
        issues,
        width="stretch",
        column_config={
            "anomaly_share": st.column_config.NumberColumn("anomalies %", format="percent"),
            "duplicate_share": st.column_config.NumberColumn("in a duplicate cluster %", format="percent"),
        },
        key="qa_label_issues",
    )


# --- page ----------------------------------------------------------------------------------------

st.title("Dataset QA")
if services.index.count(user) == 0:
    ui.empty_state(
        "No images yet",
        "Dataset QA checks datasets for training models: leaks between splits, likely mislabels and "
        "class balance. " + LAYOUT_HINT,
        link=("upload.py", "Go to Upload"),
    )
    st.stop()

qa = current_qa()
datasets = qa.datasets()
dataset = (
    st.selectbox("Dataset", datasets, key="qa_dataset", help="Images belong to a named dataset")
    if len(datasets) > 1
    else None
)
ui.graph_panel(user, "dataset_qa")
leaks_tab, mislabels_tab, balance_tab = st.tabs(["Leaks", "Mislabels", "Balance"])
with leaks_tab:
    leaks_view(qa, dataset)
with mislabels_tab:
    mislabels_view(dataset)
with balance_tab:
    balance_view(qa, dataset)
detail.render_if_open()
