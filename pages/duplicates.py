"""Duplicates page: clusters at three levels, keepers, per-cluster and bulk review, export."""

from __future__ import annotations

import json

import streamlit as st

from app import detail, record_filters, trash_ui, ui
from core.duplicates import LEVELS, Cluster, clusters_frame, default_semantic_threshold, duplicate_report
from core.reviews import mark_not_duplicates

services = ui.services()
user = ui.scope_user()
PER_PAGE = 10
LEVEL_HELP = {
    "exact": "same bytes or identical pixels",
    "near": "perceptual hash within the distance",
    "semantic": "embeddings at or above the cosine similarity",
}


@st.cache_resource(max_entries=32, show_spinner="Looking for duplicates…")
def _clusters(
    _services_id: int, user: str, version: int, count: int, levels: tuple[str, ...], near: int, semantic: float
) -> list[Cluster]:
    with ui.track("find_duplicates", page="duplicates", images=count, levels=",".join(levels)) as event:
        clusters = duplicate_report(services, user, levels, near, semantic)
        event["clusters"] = len(clusters)
    return clusters


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
    help="Bits out of 64 that may differ. 0 = identical hashes.",
)
semantic = controls[2].slider(
    "Semantic: min cosine similarity",
    0.70,
    0.999,
    default_semantic_threshold(services.embedder.name),
    0.001,
    format="%.3f",
    key="dup_semantic",
)
sort = controls[3].selectbox("Sort by", ["Size", "Similarity"], key="dup_sort")
if not levels:
    st.info("Choose at least one level.", icon=":material/info:")
    st.stop()

ui.graph_panel(user, "duplicates")  # before the analysis: the graph is brought up to date in a background job
clusters = _clusters(
    id(services), user, ui.data_version(user), count, tuple(sorted(levels, key=LEVELS.index)), near, round(semantic, 3)
)
hidden: set[frozenset[str]] = st.session_state.setdefault("dup_kept", set())
visible = [c for c in clusters if frozenset(c.members) not in hidden]
visible = record_filters.keep_clusters(visible, user)
if sort == "Similarity":
    visible.sort(key=lambda c: (-c.min_similarity, -len(c.members)))

images = ui.image_listing(user)
rows = images.set_index("id").to_dict("index")
redundant = sum(len(c.to_delete) for c in visible)
metrics = st.columns(4)
metrics[0].metric("Clusters", f"{len(visible):,}")
metrics[1].metric("Images in clusters", f"{sum(len(c.members) for c in visible):,}")
metrics[2].metric("Would be deleted", f"{redundant:,}", help="All but the keeper of every cluster")
metrics[3].metric("Saved space", ui.human_bytes(sum(rows[m]["bytes"] for c in visible for m in c.to_delete)))

if not visible:
    ui.empty_state(
        "No duplicates at these settings",
        "Nothing in your collection is a duplicate at the chosen levels and thresholds. Loosen the "
        "thresholds to see more candidates.",
        icon=":material/done_all:",
    )
    st.stop()

frame = clusters_frame(visible, images)
actions = st.columns([2, 1, 1, 3], vertical_alignment="center")
with actions[0].popover(f"Delete {redundant} duplicate(s)", icon=":material/delete_sweep:", width="stretch"):
    st.markdown(f"Keeps one image per cluster and deletes these **{redundant}**:")
    st.dataframe(frame[~frame["is_keeper"]][["cluster", "filename", "level"]], hide_index=True, height=220)
    confirm = st.checkbox("Yes, move them to the trash", key="dup_bulk_confirm")
    if st.button("Delete all but the keepers", type="primary", disabled=not confirm, key="dup_bulk"):
        doomed = [m for c in visible for m in c.to_delete]
        with st.spinner("Deleting…"), ui.track("delete_duplicates", page="duplicates", images=len(doomed)):
            trash_ui.delete(user, doomed)
        st.rerun()
actions[1].download_button(
    "CSV", frame.to_csv(index=False), "duplicates.csv", "text/csv", icon=":material/download:", width="stretch"
)
actions[2].download_button(
    "JSON",
    json.dumps([c.to_dict() for c in visible], indent=2),
    "duplicates.json",
    "application/json",
    icon=":material/download:",
    width="stretch",
)

pages = max(1, -(-len(visible) // PER_PAGE))
number = actions[3].number_input(f"Page (of {pages})", 1, pages, 1, key="dup_page") if pages > 1 else 1
for cluster in visible[(number - 1) * PER_PAGE : number * PER_PAGE]:
    with st.container(border=True):
        head = st.columns([4, 1, 1, 1], vertical_alignment="center")
        head[0].markdown(
            f"**Cluster {cluster.id}** · {cluster.level} · {len(cluster.members)} images · "
            f"min similarity {cluster.min_similarity:.3f}  \nKeeper: {ui.escape(cluster.keeper_reason)}"
        )
        if head[1].button("Delete others", key=f"dup_del_{cluster.id}", icon=":material/delete:", width="stretch"):
            with ui.track("delete_duplicates", page="duplicates", images=len(cluster.to_delete)):
                trash_ui.delete(user, cluster.to_delete)
            st.rerun()
        if head[2].button("Keep all", key=f"dup_keep_{cluster.id}", width="stretch", help="Hide this cluster for now"):
            hidden.add(frozenset(cluster.members))
            st.rerun()
        if head[3].button(
            "Not duplicates",
            key=f"dup_not_{cluster.id}",
            width="stretch",
            help="Remember that these are different images; they won't be proposed again",
        ):
            with ui.track("not_duplicates", page="duplicates", images=len(cluster.members)):
                mark_not_duplicates(services.index, user, cluster.members)
            ui.bump_data_version()
            st.rerun()
        members = [{"id": m, **rows[m]} for m in cluster.members if m in rows]

        def render(row: dict, _: int, keeper: str = cluster.keeper, cluster_id: int = cluster.id) -> None:
            badge = "<b>KEEP</b> · " if row["id"] == keeper else ""
            ui.thumb_card(
                row,
                f"{badge}{ui.escape(row['filename'])}<br>{row['width']}×{row['height']} · "
                f"{ui.human_bytes(row['bytes'])}",
            )
            if st.button("Open", key=f"dup_open_{cluster_id}_{row['id']}", width="stretch"):
                detail.open_detail(row["id"])

        ui.card_grid(members, render, actions=[trash_ui.delete_action("duplicates")])
        with st.expander("Pairwise scores"):
            names = {m["id"]: m["filename"] for m in members}
            st.dataframe(
                [
                    {
                        "a": names.get(link["a"]),
                        "b": names.get(link["b"]),
                        "level": link["level"],
                        "pHash distance": link["phash_distance"],
                        "cosine": link["similarity"],
                    }
                    for link in cluster.links
                ],
                hide_index=True,
            )
detail.render_if_open()
