"""Explorer page: 2D/3D UMAP of the embeddings in Plotly; select a group, then tag, delete or search."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from app import detail, trash_ui, ui
from core import gallery
from core.cache import ResultCache
from core.collection import load_collection
from core.explorer import (
    COLOR_OPTIONS,
    DEFAULT_MAX_POINTS,
    Location,
    ProjectionParams,
    explorer_data,
    ids_at_points,
    locate,
)

services = ui.services()
user = ui.scope_user()
MIN_IMAGES = 5


@st.cache_resource(max_entries=16, show_spinner=False)
def _data(_services_id: int, user: str, version: int, count: int, params: ProjectionParams, colour: str):
    """Cached per colour: duplicate clusters are only computed when they colour the map."""
    with ui.track("project", page="explorer", images=count, dims=params.dims, colour=colour):
        return explorer_data(services, user, params, ResultCache(services.settings.data_dir / "cache"), colour)


@st.cache_resource(max_entries=64, show_spinner=False)
def _locate(
    _services_id: int, user: str, version: int, count: int, params: ProjectionParams, colour: str, image_id: str
) -> Location | None:
    """Where an image is on the map (cached like the map itself)."""
    frame = _data(_services_id, user, version, count, params, colour)
    return locate(frame, load_collection(services, user), image_id)


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

top = st.columns([1, 2, 2, 1, 2], vertical_alignment="bottom")
dims = 3 if top[0].segmented_control("View", ["2D", "3D"], default="2D", key="exp_dims", required=True) == "3D" else 2
color = top[1].selectbox("Colour by", COLOR_OPTIONS, key="exp_color")
with top[4].popover("Projection settings", icon=":material/tune:", width="stretch"):
    n_neighbors = st.slider(
        "Neighbours (n_neighbors)",
        2,
        100,
        15,
        key="exp_neighbors",
        help="Small: fine local detail; large: the global shape.",
    )
    min_dist = st.slider(
        "Minimum distance (min_dist)",
        0.0,
        0.99,
        0.1,
        0.01,
        key="exp_min_dist",
        help="How tightly UMAP packs similar images.",
    )
    seed = st.number_input("Random seed", 0, 10_000, 42, key="exp_seed")
    max_points = st.number_input(
        "Most points to show",
        1_000,
        200_000,
        DEFAULT_MAX_POINTS,
        1_000,
        key="exp_max",
        help="Above this, a stratified sample is projected so the browser stays fast.",
    )
size = top[2].slider("Point size", 2, 14, 6, key="exp_size")
opacity = top[3].slider("Opacity", 0.1, 1.0, 0.8, 0.05, key="exp_opacity")

params = ProjectionParams(
    dims=dims, n_neighbors=n_neighbors, min_dist=min_dist, seed=int(seed), max_points=int(max_points)
)
ui.graph_panel(user, "explorer")  # before the projection: the graph is brought up to date in a background job
version = ui.data_version(user)
shown = min(count, params.max_points)
with st.status(f"Projecting {shown:,} images and scoring them (once; then cached)…", expanded=False) as status:
    data = _data(id(services), user, version, count, params, color)
    status.update(label=f"Projected {len(data):,} images", state="complete")
if data.attrs.get("total", len(data)) > len(data):
    st.info(
        f"Showing a stratified sample of {len(data):,} of {data.attrs['total']:,} images (set the limit in "
        "Projection settings).",
        icon=":material/info:",
    )

wanted = st.text_input(
    "Locate an image",
    placeholder="file name, e.g. IMG_0042.jpg",
    key="exp_locate",
    help="Marks the image with a star; an image left out of the sample is shown at its nearest shown neighbour.",
).strip()
located = None
if wanted:
    listing = ui.image_listing(user)
    matches = listing.loc[listing["filename"] == wanted, "id"]
    located = _locate(id(services), user, version, count, params, color, matches.iloc[0]) if len(matches) else None
    if located is None:
        st.warning(f"No image named {wanted!r} in this collection.", icon=":material/search_off:")
    elif located.on_map:
        st.caption(f"★ marks {wanted}.")
    else:
        stand_in = listing.set_index("id").loc[located.shown_as, "filename"]
        st.caption(f"★ {wanted} is not in the sample: the star marks its nearest shown image, {stand_in}.")

axes = "xyz"[:dims]
plot_kwargs = {"color": color, "hover_name": "filename", "hover_data": {**dict.fromkeys(axes, False), "id": False}}
if color == "anomaly score":
    plot_kwargs["color_continuous_scale"] = "Plasma"
else:  # images without a value stay in the background
    plot_kwargs["color_discrete_map"] = {"(no tag)": "#CBD5E1", "none": "#CBD5E1"}
if dims == 2:
    figure = px.scatter(data, x="x", y="y", render_mode="webgl", **plot_kwargs)
else:
    figure = px.scatter_3d(data, x="x", y="y", z="z", **plot_kwargs)
figure.update_traces(marker={"size": size, "opacity": opacity})
if located is not None:
    star = {"mode": "markers", "name": "located", "hoverinfo": "skip", "showlegend": False}
    star["marker"] = {"symbol": "star" if dims == 2 else "diamond", "size": 22, "color": "#DC2626"}
    if dims == 2:
        figure.add_trace(go.Scattergl(x=[located.x], y=[located.y], **star))
    else:
        figure.add_trace(go.Scatter3d(x=[located.x], y=[located.y], z=[located.z], **star))
figure.update_layout(
    height=620,
    margin={"l": 0, "r": 0, "t": 10, "b": 0},
    legend={"itemsizing": "constant"},
    dragmode="lasso" if dims == 2 else "orbit",
)
figure.update_xaxes(visible=False)
figure.update_yaxes(visible=False)
if dims == 2:
    event = st.plotly_chart(
        figure, width="stretch", key="exp_plot", on_select="rerun", selection_mode=("points", "box", "lasso")
    )
    selected = ids_at_points(data, event.selection.get("points", []))
else:
    st.plotly_chart(figure, width="stretch", key="exp_plot3d")
    selected = []
    st.caption("Selection works in the 2D view (box or lasso).")

if not selected:
    st.caption("Drag a box or a lasso around points (2D) to see, tag or delete those images here.")
else:
    st.markdown(f"**{len(selected):,}** image(s) selected")
    rows = ui.image_listing(user).set_index("id")
    chosen = [{"id": i, **rows.loc[i].to_dict()} for i in selected if i in rows.index]
    actions = st.columns([3, 1, 2, 2], vertical_alignment="bottom")
    tags = actions[0].text_input("Tags to add", placeholder="e.g. dogs, outdoor", key="exp_tags")
    if actions[1].button("Tag", icon=":material/sell:", width="stretch", disabled=not tags.strip()):
        with ui.track("tag", page="explorer", images=len(chosen)):
            changed = gallery.add_tags(services, user, [c["id"] for c in chosen], gallery.normalise_tags(tags))
        ui.bump_data_version()
        st.toast(f"Tagged {changed} image(s)")
    with actions[2].popover(f"Delete {len(chosen)}", icon=":material/delete:", width="stretch"):
        st.markdown(f"Moves **{len(chosen)}** image(s) to the trash (Undo in the sidebar).")
        if st.checkbox("Yes, delete them", key="exp_confirm") and st.button("Delete", type="primary", key="exp_delete"):
            with ui.track("delete", page="explorer", images=len(chosen)):
                trash_ui.delete(user, [c["id"] for c in chosen])
            st.rerun()
    if actions[3].button("Search similar to the first", icon=":material/image_search:", width="stretch"):
        st.session_state["search_image_id"] = chosen[0]["id"]
        st.session_state["search_mode"] = "Stored image"
        st.switch_page(str(ui.PAGES / "search.py"))

    def render(row: dict, _: int) -> None:
        ui.thumb_card(row, ui.escape(row["filename"]))
        if st.button("Open", key=f"exp_open_{row['id']}", width="stretch"):
            detail.open_detail(row["id"])

    ui.card_grid(chosen[:48], render)
    if len(chosen) > 48:
        st.caption(f"Showing 48 of {len(chosen)}; the actions above apply to all of them.")
detail.render_if_open()
