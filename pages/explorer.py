"""Explorer page: the embedding map in Plotly (WebGL); click a point to see it, select a group to
tag, label, delete or search. Above the point budget the other images are drawn as density."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app import detail, label_editor, trash_ui, ui
from core import gallery
from core.cache import ResultCache
from core.explorer import (
    COLOR_OPTIONS,
    DEFAULT_DRAW_POINTS,
    DEFAULT_MAX_POINTS,
    NO_VALUE,
    ProjectionParams,
    density,
    drawn_rows,
    explorer_data,
    ids_at_points,
)

services = ui.services()
user = ui.scope_user()
MIN_IMAGES = 5
MAX_STARS = 1_000
HIGHLIGHT_KEY = "explorer_highlight"  # other pages may set {"ids": [...], "what": "search results"}
GREY = "#CBD5E1"


@st.cache_resource(max_entries=16, show_spinner=False)
def _data(_services_id: int, user: str, version: int, count: int, params: ProjectionParams, colour: str):
    """Cached per colour: duplicate clusters are only computed when they colour the map."""
    with ui.track("project", page="explorer", images=count, dims=params.dims, colour=colour):
        return explorer_data(services, user, params, ResultCache(services.settings.data_dir / "cache"), colour)


@st.cache_resource(max_entries=16, show_spinner=False)
def _drawn(_data_id: int, _data: pd.DataFrame, budget: int, seed: int) -> np.ndarray:
    """Which rows are drawn as points (cached with the data it was drawn from)."""
    return drawn_rows(_data, budget, seed)


st.title("Explorer")
count = services.index.count(user)
if count < MIN_IMAGES:
    ui.empty_state(
        "Not enough images to map",
        f"The map places similar images together; it needs at least "
        f"{MIN_IMAGES} images (hundreds show real structure).",
        icon=":material/scatter_plot:",
        link=("upload.py", "Go to Upload"),
    )
    st.stop()

top = st.columns([1, 2, 2], vertical_alignment="bottom")
dims = 3 if top[0].segmented_control("View", ["2D", "3D"], default="2D", key="exp_dims", required=True) == "3D" else 2
color = top[1].selectbox("Colour by", COLOR_OPTIONS, key="exp_color")
with top[2].popover("Map settings", icon=":material/tune:", width="stretch"):
    size = st.slider("Point size", 2, 14, 6, key="exp_size")
    opacity = st.slider("Opacity", 0.1, 1.0, 0.8, 0.05, key="exp_opacity")
    n_neighbors = st.slider(
        "Neighbours (n_neighbors)", 2, 100, 15, key="exp_neighbors", help="Small: fine local detail; large: the shape."
    )
    min_dist = st.slider(
        "Minimum distance (min_dist)", 0.0, 0.99, 0.1, 0.01, key="exp_min_dist", help="How tightly UMAP packs images."
    )
    seed = st.number_input("Random seed", 0, 10_000, 42, key="exp_seed")
    max_points = st.number_input(
        "UMAP fitted on at most",
        1_000,
        200_000,
        DEFAULT_MAX_POINTS,
        1_000,
        key="exp_max",
        help="Above this, UMAP is fitted on a stratified sample and every other image is placed from its "
        "nearest neighbours, so each image still has a position.",
    )
    budget = st.number_input(
        "Most points to draw",
        1_000,
        200_000,
        DEFAULT_DRAW_POINTS,
        1_000,
        key="exp_budget",
        help="Above this, the other images are drawn as density (grey cells) so the browser stays fast.",
    )

params = ProjectionParams(
    dims=dims, n_neighbors=n_neighbors, min_dist=min_dist, seed=int(seed), max_points=int(max_points)
)
ui.graph_panel(user, "explorer")  # before the projection: the graph is brought up to date in a background job
version = ui.data_version(user)
with st.spinner(f"Projecting {count:,} images and scoring them (once; then cached)…"):
    data = _data(id(services), user, version, count, params, color)
drawn = _drawn(id(data), data, int(budget), int(seed))


def describe(data: pd.DataFrame, drawn: np.ndarray) -> str | None:
    """What the map shows, when it is not simply every image as a point."""
    total, shown, fitted = len(data), int(drawn.sum()), int(data["fitted"].sum())
    parts = []
    if shown < total:
        parts.append(f"{shown:,} of {total:,} images drawn as points; the other {total - shown:,} as density.")
    if fitted < total:
        parts.append(
            f"UMAP fitted on a stratified sample of {fitted:,}; the rest placed from their nearest neighbours."
        )
    return " ".join(parts) or None


if note := describe(data, drawn):
    st.info(note + " Change the limits in Map settings.", icon=":material/info:")


def highlighted(data: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Rows to star: images whose name matches the "Locate" text, or ids another page handed over."""
    wanted = st.text_input(
        "Locate images",
        placeholder="file name or part of it, e.g. IMG_0042",
        key="exp_locate",
        help="Stars the matching images: every image has a position, drawn as a point or not.",
    ).strip()
    if wanted:
        names = data["filename"].astype(str)
        hits = data[names == wanted]
        if hits.empty:
            hits = data[names.str.contains(wanted, case=False, regex=False)]
        if hits.empty:
            st.warning(f"No image named {wanted!r} (or with it in its name) here.", icon=":material/search_off:")
            return hits, None
        what = f"{wanted}" if len(hits) == 1 and hits["filename"].iloc[0] == wanted else f"{len(hits):,} images"
        return hits, what
    handed = st.session_state.get(HIGHLIGHT_KEY)
    if handed:
        hits = data[data["id"].isin(handed.get("ids", []))]
        if st.button("Clear", key="exp_clear_highlight", icon=":material/close:"):
            st.session_state.pop(HIGHLIGHT_KEY, None)
            st.rerun(scope="fragment")
        return hits, f"{len(hits):,} {handed.get('what', 'images')}"
    return data.iloc[0:0], None


def figure_of(points: pd.DataFrame, rest: pd.DataFrame, stars: pd.DataFrame) -> go.Figure:
    """The map: points coloured by ``color``, the other images as density, stars on top."""
    axes = "xyz"[:dims]
    hover = {**dict.fromkeys(axes, False), "anomaly score": ":.2f"}
    for field in ("split", "label"):
        if field != color and (points[field] != NO_VALUE[field]).any():
            hover[field] = True
    kwargs = {"color": color, "hover_name": "filename", "hover_data": hover, "custom_data": ["id"]}
    if color == "anomaly score":
        kwargs["color_continuous_scale"] = "Plasma"
    else:  # images without a value stay in the background
        kwargs["color_discrete_map"] = dict.fromkeys(NO_VALUE.values(), GREY)
        kwargs["color_discrete_sequence"] = px.colors.qualitative.Bold
    if dims == 2:
        figure = px.scatter(points, x="x", y="y", render_mode="webgl", **kwargs)
    else:
        figure = px.scatter_3d(points, x="x", y="y", z="z", **kwargs)
    figure.update_traces(marker={"size": size, "opacity": opacity})
    for trace in figure.data:  # numbers rounded for people
        if trace.hovertemplate:
            trace.hovertemplate = trace.hovertemplate.replace("%{marker.color}", "%{marker.color:.2f}")
    if dims == 2 and len(rest):
        xs, ys, grid = density(rest["x"].to_numpy(), rest["y"].to_numpy())
        layer = go.Heatmap(x=xs, y=ys, z=grid, colorscale=[[0, "#F1F5F9"], [1, "#64748B"]], showscale=False)
        layer.update(name="density", hovertemplate="%{z:,.0f} images not drawn<extra></extra>", opacity=0.6)
        figure.add_trace(layer)
        figure.data = (figure.data[-1], *figure.data[:-1])  # under the points
    if len(stars):
        star = {"mode": "markers", "name": "located", "showlegend": False, "hovertext": stars["filename"]}
        star["marker"] = {"symbol": "star" if dims == 2 else "diamond", "size": 20, "color": "#DC2626"}
        star["hovertemplate"] = "★ %{hovertext}<extra></extra>"
        star["customdata"] = stars[["id"]].to_numpy()
        if dims == 2:
            figure.add_trace(go.Scattergl(x=stars["x"], y=stars["y"], **star))
        else:
            figure.add_trace(go.Scatter3d(x=stars["x"], y=stars["y"], z=stars["z"], **star))
    figure.update_layout(
        height=620,
        margin={"l": 0, "r": 0, "t": 36, "b": 0},  # the tool bar above the legend, not on it
        legend={"itemsizing": "constant"},
        # 2D: no drag mode set, so Streamlit keeps "click selects a point" (it turns clicks off in
        # lasso / box mode); lasso and box are one click away in the tool bar.
        dragmode=None if dims == 2 else "orbit",
    )
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


def point_panel(data: pd.DataFrame, image_id: str | None) -> None:
    """The clicked image: thumbnail, rounded values and a button to open it at full size."""
    if image_id is None:
        st.caption("Click a point to see its image here and open it at full size.")
        return
    row = data.set_index("id").loc[image_id]
    listing = ui.image_listing(user).set_index("id")
    payload = listing.loc[image_id].to_dict() if image_id in listing.index else {}
    with st.container(border=True):
        ui.thumb_card({"id": image_id, **payload}, ui.escape(row["filename"]))
        facts = [f"anomaly score {row['anomaly score']:.2f}", f"quality: {row['quality flag']}"]
        facts += [
            f"{field}: {row[field]}" for field in ("split", "label", "dataset") if row[field] != NO_VALUE.get(field)
        ]
        st.caption(" · ".join(facts))
        if st.button("Open full size", key="exp_open_point", icon=":material/open_in_full:", width="stretch"):
            ui.view_images([image_id])


def selection_actions(chosen: list[dict]) -> None:
    """Tag, set split / label, delete or search from the selected images."""
    ids = [c["id"] for c in chosen]
    actions = st.columns([3, 1, 2, 2, 3], vertical_alignment="bottom")
    tags = actions[0].text_input("Tags to add", placeholder="e.g. dogs, outdoor", key="exp_tags")
    if actions[1].button("Tag", icon=":material/sell:", width="stretch", disabled=not tags.strip()):
        with ui.track("tag", page="explorer", images=len(ids)):
            changed = gallery.add_tags(services, user, ids, gallery.normalise_tags(tags))
        ui.bump_data_version()
        st.toast(f"Tagged {changed} image(s)")
        st.rerun()
    with actions[2].popover("Split / label", icon=":material/label:", width="stretch"):
        label_editor.label_actions(user, ids, key="explorer_labels")
    with actions[3].popover(f"Delete {len(ids):,}", icon=":material/delete:", width="stretch"):
        st.markdown(f"Moves **{len(ids):,}** image(s) to the trash (Undo in the sidebar).")
        if st.button("Move to trash", type="primary", key="exp_delete"):
            with ui.track("delete", page="explorer", images=len(ids)):
                trash_ui.delete(user, ids)
            st.rerun()
    if actions[4].button("Search similar to the first", icon=":material/image_search:", width="stretch"):
        st.session_state["search_image_id"] = ids[0]
        st.session_state["search_mode"] = "Stored image"
        st.switch_page(str(ui.PAGES / "search.py"))


@st.fragment
def explorer_map(data: pd.DataFrame, drawn: np.ndarray, version: int) -> None:
    """The map, the clicked point and the selection: a click or a selection reruns only this."""
    ui.rerun_page_if_changed(user, version)
    search, said = st.columns([3, 2], vertical_alignment="bottom")
    with search:
        stars, what = highlighted(data)
    if what:
        more = f" (the first {MAX_STARS:,})" if len(stars) > MAX_STARS else ""
        said.caption(f"★ marks {what}{more}.")
    points, rest = data[drawn], data[~drawn]
    figure = figure_of(points, rest, stars.head(MAX_STARS))
    if dims == 3:
        st.plotly_chart(figure, width="stretch", key="exp_plot3d")
        st.caption("Clicking and selecting work in the 2D view.")
        detail.render_if_open()
        return
    left, right = st.columns([4, 1], gap="small")
    with left:
        event = st.plotly_chart(
            figure, width="stretch", key="exp_plot", on_select="rerun", selection_mode=("points", "box", "lasso")
        )
    selection = event.selection
    selected = ids_at_points(points if stars.empty else pd.concat([points, stars]), selection.get("points", []))
    clicked = selected[0] if len(selected) == 1 and not selection.get("box") and not selection.get("lasso") else None
    with right:
        point_panel(data, clicked)
    if clicked != st.session_state.get("exp_opened"):  # a click opens the image once
        st.session_state["exp_opened"] = clicked
        if clicked:
            ui.view_images([clicked])
    if not selected:
        st.caption(
            "Drag a box or a lasso (tool bar, top right of the map) around points to see, tag, label or "
            "delete those images here."
        )
    else:
        st.markdown(f"**{len(selected):,}** image(s) selected")
        rows = ui.image_listing(user).set_index("id")
        chosen = [{"id": i, **rows.loc[i].to_dict()} for i in selected if i in rows.index]
        selection_actions(chosen)

        def render(row: dict, _: int) -> None:
            ui.thumb_card(row, ui.card_name(row["filename"]))
            if st.button("Open", key=f"exp_open_{row['id']}", width="stretch"):
                detail.open_detail(row["id"])

        ui.card_grid(chosen[:48], render)
        if len(chosen) > 48:
            st.caption(f"Showing 48 of {len(chosen):,}; the actions above apply to all of them.")
    detail.render_if_open()


explorer_map(data, drawn, version)
