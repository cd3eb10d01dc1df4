"""Duplicates page: clusters around a keeper at three levels, side-by-side compare, review, export."""

from __future__ import annotations

import io
import json

import streamlit as st

from app import detail, record_filters, trash_ui, ui
from core.duplicates import (
    LEVELS,
    Cluster,
    DuplicateReport,
    clusters_frame,
    comparison,
    default_semantic_threshold,
    find_duplicates,
    same_scale,
)
from core.images import open_rgb
from core.reviews import mark_not_duplicates

services = ui.services()
user = ui.scope_user()
PER_PAGE = 10
#: Clusters marked "Not duplicates" since the page last ran whole, and the collection version the
#: cluster list is right for (its own marks included).
DISMISSED, LIST_VERSION = "dup_dismissed", "dup_list_version"
MEMBERS_SHOWN = 12  # cards per cluster before "Show all": two rows of the grid
COMPARE_PER_ROW = 4
COMPARE_PER_TABLE = 3
LEVEL_HELP = {
    "exact": "same bytes or identical pixels",
    "near": "perceptual hash within the distance, of the whole picture or of the picture inside any border",
    "semantic": "embeddings at or above the cosine similarity",
}


@st.cache_resource(max_entries=32, show_spinner="Looking for duplicates…")
def _report(
    _services_id: int, user: str, version: int, count: int, levels: tuple[str, ...], near: int, semantic: float
) -> DuplicateReport:
    with ui.track("find_duplicates", page="duplicates", images=count, levels=",".join(levels)) as event:
        report = find_duplicates(services, user, levels, near, semantic)
        event["clusters"] = len(report.clusters)
    return report


@st.cache_data(max_entries=256, show_spinner=False)
def _originals(_services_id: int, keys: tuple[str, ...], sizes: tuple[tuple[int, int], ...]) -> list[bytes]:
    """The cluster's originals at one scale, as JPEG (from the store, not the square thumbnails)."""
    pictures = [open_rgb(services.store.get(key), max_side=1024) for key in keys]
    shown = []
    for canvas in same_scale(pictures, list(sizes)):
        out = io.BytesIO()
        canvas.save(out, format="JPEG", quality=90)
        shown.append(out.getvalue())
    return shown


def _delete(ids: list[str], what: str) -> None:
    """Move ``ids`` to the trash (Undo in the sidebar) and rerun the whole page (counts and clusters change)."""
    with st.spinner("Deleting…"), ui.track("delete_duplicates", page="duplicates", images=len(ids), what=what):
        trash_ui.delete(user, ids)
    st.rerun()


def _not_duplicates(members: list[str]) -> None:
    """Remember the decision, and leave the cluster out of the counts and the list drawn now. The
    collection's version changes (other pages refresh); the review does not need the page's whole
    rerun for it, unless something else changed since it was drawn."""
    before = ui.data_version(user)
    with ui.track("not_duplicates", page="duplicates", images=len(members)):
        mark_not_duplicates(services.index, user, members)
    ui.bump_data_version()
    st.session_state.setdefault(DISMISSED, set()).add(frozenset(members))
    if st.session_state.get(LIST_VERSION) == before:
        st.session_state[LIST_VERSION] = ui.data_version(user)


def _confirmed_delete(label: str, ids: list[str], key: str, names: list[str]) -> None:
    """A popover that lists what goes and deletes only on its own button."""
    with st.popover(label, icon=":material/delete:", width="stretch"):
        st.markdown(f"Moves **{len(ids)}** image(s) to the trash (Undo in the sidebar):")
        st.markdown("\n".join(f"- {ui.escape(name)}" for name in names[:12]) + ("\n- …" if len(names) > 12 else ""))
        if st.button(f"Delete {len(ids)} image(s)", type="primary", key=key, icon=":material/delete_forever:"):
            _delete(ids, key)


def _compare(cluster: Cluster, details, rows: dict) -> None:
    """The cluster's originals side by side at the same scale, keep/delete per image, metadata diff."""
    members = [m for m in cluster.members if m in rows]
    sizes = tuple((int(rows[m]["width"]), int(rows[m]["height"])) for m in members)
    try:
        shown = _originals(id(services), tuple(rows[m]["original_key"] for m in members), sizes)
    except Exception as exc:  # an original is gone: say so, keep the table
        st.warning(f"The originals could not all be read ({exc}); showing the metadata only.")
        shown = []
    choices = {}
    for start in range(0, len(members), COMPARE_PER_ROW):
        cells = st.columns(COMPARE_PER_ROW, gap="small")
        for offset, member in enumerate(members[start : start + COMPARE_PER_ROW]):
            number = start + offset
            with cells[offset]:
                if shown:
                    st.image(shown[number], width="stretch")
                row = rows[member]
                badge = "keeper · " if member == cluster.keeper else ""
                st.caption(
                    f"{number + 1}. {badge}{int(row['width'])}×{int(row['height'])} · {ui.human_bytes(row['bytes'])}"
                )
                choices[member] = st.segmented_control(
                    f"Image {number + 1}",
                    ["Keep", "Delete"],
                    default="Keep" if member == cluster.keeper else "Delete",
                    key=f"dup_choice_{cluster.id}_{member}",
                    label_visibility="collapsed",
                    width="stretch",
                )
    table = comparison(cluster, details)
    differs = table.pop("differs")
    # Static tables of three images each: long names and links wrap instead of being cut off.
    for start in range(0, table.shape[1], COMPARE_PER_TABLE):
        part = table.iloc[:, start : start + COMPARE_PER_TABLE]
        st.table(part.style.apply(lambda row: ["font-weight: bold" if differs[row.name] else "" for _ in row], axis=1))
    st.caption("Bold rows differ between the images. Sizes are of the originals.")
    doomed = [m for m, choice in choices.items() if choice == "Delete"]
    if not doomed:
        st.caption("Every image is marked Keep: nothing to delete.")
    elif len(doomed) == len(members):
        st.warning("Every image is marked Delete; keep at least one.", icon=":material/warning:")
    else:
        _confirmed_delete(
            f"Delete the {len(doomed)} marked", doomed, f"dup_apply_{cluster.id}", [rows[m]["filename"] for m in doomed]
        )


def _cluster_card(cluster: Cluster, details, rows: dict, hidden: set[frozenset[str]]) -> None:
    with st.container(border=True):
        st.markdown(
            f"**Cluster {cluster.id}** · {cluster.level} · {len(cluster.members)} images · "
            f"lowest cosine to the keeper {cluster.min_similarity:.2f}  \nKeeper: {ui.escape(cluster.keeper_reason)}"
        )
        buttons = st.columns(4)
        comparing = f"dup_compare_{cluster.id}"
        buttons[0].toggle("Compare", key=comparing, help="The originals side by side at the same scale")
        with buttons[1]:
            _confirmed_delete(
                "Delete others",
                cluster.to_delete,
                f"dup_del_{cluster.id}",
                [rows[m]["filename"] for m in cluster.to_delete if m in rows],
            )
        buttons[2].button(  # the callback runs before the fragment reruns, which then leaves the cluster out
            "Keep all",
            key=f"dup_keep_{cluster.id}",
            width="stretch",
            help="Hide this cluster for now",
            on_click=hidden.add,
            args=(frozenset(cluster.members),),
        )
        buttons[3].button(  # the callback takes the cluster out of the list; only the list reruns
            "Not duplicates",
            key=f"dup_not_{cluster.id}",
            width="stretch",
            help="Remember that these are different images; they won't be proposed again",
            on_click=_not_duplicates,
            args=(cluster.members,),
        )
        if st.session_state.get(comparing):
            _compare(cluster, details, rows)
            return
        members = [{"id": m, **rows[m]} for m in cluster.members if m in rows]
        shown = members
        if len(members) > MEMBERS_SHOWN:
            everyone = st.toggle(
                f"Show all {len(members):,} images of this cluster",
                key=f"dup_all_{cluster.id}",
                help="The viewer steps through all of them either way",
            )
            shown = members if everyone else members[:MEMBERS_SHOWN]

        def render(row: dict, _: int, keeper: str = cluster.keeper, cluster_id: int = cluster.id) -> None:
            badge = "<b>KEEP</b> · " if row["id"] == keeper else ""
            ui.thumb_card(
                row,
                f"{ui.card_name(row['filename'], badge)}{int(row['width'])}×{int(row['height'])} · "
                f"{ui.human_bytes(row['bytes'])}",
            )
            if st.button("Open", key=f"dup_open_{cluster_id}_{row['id']}", width="stretch"):
                detail.open_detail(row["id"])
                st.rerun()

        ui.card_grid(shown, render, actions=[trash_ui.delete_action("duplicates")], viewer_rows=members)
        if len(shown) < len(members):
            st.caption(f"The keeper and the next {len(shown) - 1} of {len(members):,} images.")


def _summary(shown: list[Cluster], rows: dict, images, report: DuplicateReport, chosen: tuple[str, ...]) -> None:
    """The counts of what is shown, why, and the bulk actions on it."""
    redundant = [m for c in shown for m in c.to_delete if m in rows]
    metrics = st.columns(4)
    metrics[0].metric("Clusters", f"{len(shown):,}")
    metrics[1].metric("Images in clusters", f"{sum(len(c.members) for c in shown):,}")
    metrics[2].metric("Would be deleted", f"{len(redundant):,}", help="All but the keeper of every cluster")
    metrics[3].metric("Saved space", ui.human_bytes(sum(rows[m]["bytes"] for m in redundant)))
    why = [f"Near: pHash within {report.near_threshold} bits"] if "near" in chosen else []
    if "semantic" in chosen:
        why.append(report.thresholds.describe())
    if why:
        st.caption(" · ".join(why) + ".")
    if not shown:
        return
    frame = clusters_frame(shown, images)
    actions = st.columns([2, 1, 1, 3], vertical_alignment="center")
    with actions[0].popover(f"Delete {len(redundant):,} duplicate(s)", icon=":material/delete_sweep:", width="stretch"):
        st.markdown(f"Keeps one image per cluster and deletes these **{len(redundant):,}**:")
        st.dataframe(frame[~frame["is_keeper"]][["cluster", "filename", "level"]], hide_index=True, height=220)
        confirm = st.checkbox("Yes, move them to the trash", key="dup_bulk_confirm")
        if st.button("Delete all but the keepers", type="primary", disabled=not confirm, key="dup_bulk"):
            _delete(redundant, "bulk")
    actions[1].download_button(
        "CSV",
        lambda: frame.to_csv(index=False),
        "duplicates.csv",
        "text/csv",
        icon=":material/download:",
        width="stretch",
    )
    actions[2].download_button(
        "JSON",
        lambda: json.dumps([c.to_dict() for c in shown], indent=2),
        "duplicates.json",
        "application/json",
        icon=":material/download:",
        width="stretch",
    )


@st.fragment
def _review(
    clusters: list[Cluster],
    report: DuplicateReport,
    chosen: tuple[str, ...],
    images,
    rows: dict,
    hidden: set[frozenset[str]],
    version: int,
) -> None:
    """The counts, the bulk actions and each cluster's review: a click in a cluster ("Not
    duplicates", "Keep all", paging) reruns only this part, from the cached report, and the counts
    follow it."""
    current = max(version, st.session_state.get(LIST_VERSION, version))  # + its own "Not duplicates"
    ui.rerun_page_if_changed(user, current)
    st.session_state[LIST_VERSION] = current
    dismissed = st.session_state.get(DISMISSED, set())
    live = [c for c in clusters if frozenset(c.members) not in dismissed]
    if clusters and not live:
        st.rerun(scope="app")  # the last cluster is gone: the page says so
    visible = [c for c in live if frozenset(c.members) not in hidden]
    _summary(visible, rows, images, report, chosen)
    if not clusters:
        ui.empty_state(
            "No duplicates at these settings",
            "Nothing in your collection is a duplicate at the chosen levels and thresholds. Loosen the "
            "thresholds to see more candidates.",
            icon=":material/done_all:",
        )
        return
    if len(live) < len(clusters):
        st.caption(f"{len(clusters) - len(live):,} cluster(s) marked as not duplicates: they won't be proposed again.")
    if len(visible) < len(live):
        left, right = st.columns([4, 1], vertical_alignment="center")
        left.caption(f"{len(live) - len(visible):,} cluster(s) kept as they are and hidden for now.")
        right.button("Show them again", key="dup_unhide", width="stretch", on_click=hidden.clear)
    pages = max(1, -(-len(visible) // PER_PAGE))
    number = st.number_input(f"Page (of {pages})", 1, pages, 1, key="dup_page") if pages > 1 else 1
    for cluster in visible[(number - 1) * PER_PAGE : number * PER_PAGE]:
        _cluster_card(cluster, report.details, rows, hidden)


st.title("Duplicates")
count = services.index.count(user)
if count == 0:
    ui.empty_state(
        "No images yet",
        "Upload images first; duplicates are found across your whole collection.",
        link=("upload.py", "Go to Upload"),
    )
    st.stop()

controls = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
levels = controls[0].pills(
    "Levels",
    LEVELS,
    selection_mode="multi",
    default=list(LEVELS),
    key="dup_levels",
    help="; ".join(f"{k}: {v}" for k, v in LEVEL_HELP.items()),
)
near = controls[1].slider(
    "Near: max pHash distance",
    0,
    20,
    services.settings.phash_threshold,
    key="dup_near",
    help="Bits out of 64 that may differ, for the whole picture or the picture inside any border. 0 = identical.",
)
semantic = controls[2].slider(
    "Semantic: min cosine similarity",
    0.70,
    0.999,
    default_semantic_threshold(services.embedder.name),
    0.01,
    format="%.2f",
    key="dup_semantic",
    help="For images at least 112 px on the shorter side; smaller ones need more (see below the metrics).",
)
sort = controls[3].selectbox("Sort by", ["Size", "Similarity"], key="dup_sort")
if not levels:
    st.info("Choose at least one level.", icon=":material/info:")
    st.stop()

chosen = tuple(sorted(levels, key=LEVELS.index))
ui.graph_panel(user, "duplicates")  # before the analysis: the graph is brought up to date in a background job
version = ui.data_version(user)
report = _report(id(services), user, version, count, chosen, near, round(semantic, 3))
clusters = record_filters.keep_clusters(list(report.clusters), user)  # the sidebar's dataset/split/label filter
if sort == "Similarity":
    clusters.sort(key=lambda c: (-c.min_similarity, -len(c.members)))

images = ui.image_listing(user)
# Only the cluster members' rows: a dict of every image's row took 1 s per run at 100k images.
in_clusters = {m for c in clusters for m in c.members}
rows = images[images["id"].isin(in_clusters)].set_index("id").to_dict("index")
hidden: set[frozenset[str]] = st.session_state.setdefault("dup_kept", set())
st.session_state[DISMISSED] = set()  # this run's report already leaves out what was marked
st.session_state[LIST_VERSION] = version
_review(clusters, report, chosen, images, rows, hidden, version)
detail.render_if_open()
