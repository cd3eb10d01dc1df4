"""Shared Streamlit glue: cached services, the signed-in scope, thumbnails, grids and empty states."""

from __future__ import annotations

import hashlib
import html
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from app import viewer
from core import gallery, telemetry
from core.auth import UserStore
from core.collection import graph_job, graph_status
from core.display import card_thumbnail
from core.logs import adopt_loggers, configure_logging
from core.metrics import MetricsServerError, start_metrics_server
from core.names import display_name
from core.services import Services, open_services
from core.settings import Settings, SettingsError, load_settings, mask_url_credentials

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
PAGES = ROOT / "pages"
GRID_COLUMNS = 6


def _secrets_env() -> dict[str, str]:
    """``VAD_*`` keys from .streamlit/secrets.toml, overridden by the environment."""
    try:
        secrets = {k: str(v) for k, v in st.secrets.items() if k.startswith("VAD_") and not isinstance(v, dict)}
    except (FileNotFoundError, st.errors.StreamlitSecretNotFoundError):
        secrets = {}
    return {**secrets, **os.environ}


@st.cache_resource(show_spinner="Loading the model and opening the index…")
def _services(env_items: tuple[tuple[str, str], ...]) -> Services:
    return open_services(load_settings(dict(env_items)))


def settings() -> Settings:
    try:
        loaded = load_settings(_secrets_env())
    except SettingsError as exc:
        st.error(str(exc), icon=":material/error:")
        st.stop()
    _observability(loaded, loaded.log_format, loaded.log_level, loaded.metrics_port, loaded.metrics_address)
    return loaded


@st.cache_resource(show_spinner=False)
def _observability(
    _settings: Settings, log_format: str, log_level: str, metrics_port: int | None, metrics_address: str
) -> str | None:
    """Once per process: JSON logs, and the metrics endpoint when VAD_METRICS_PORT is set."""
    configure_logging(_settings)
    adopt_loggers("streamlit")  # Streamlit's own lines (e.g. uncaught page errors) as JSON, masked
    if metrics_port is None:
        return None
    try:
        start_metrics_server(metrics_port, metrics_address)
    except MetricsServerError as exc:
        logging.getLogger(__name__).error("%s", exc)
        return str(exc)
    return None


@contextmanager
def track(action: str, page: str, expected: tuple[type[Exception], ...] = (), **fields: Any) -> Iterator[dict]:
    """Log and count one user action of ``page`` (see core.telemetry.track)."""
    user = st.session_state.get("username")
    scope = scope_user() if user else None
    if scope and scope != user:
        fields["scope_user"] = scope
    with telemetry.track(action, page=page, user=user, expected=expected, **fields) as info:
        yield info


def services() -> Services:
    """The process-wide services (model, store, index), built once; stops the page on bad settings."""
    env = tuple(sorted((k, v) for k, v in _secrets_env().items() if k.startswith("VAD_")))
    try:
        return _services(env)
    except Exception as exc:  # configuration or backend errors: say what is wrong, don't crash
        st.error(f"The dashboard could not start: {mask_url_credentials(str(exc))}", icon=":material/error:")
        st.stop()


@st.cache_resource
def user_store(data_dir: str) -> UserStore:
    return UserStore(Path(data_dir))


def signed_in_user() -> str:
    return st.session_state["username"]


def is_admin() -> bool:
    return "admin" in (st.session_state.get("roles") or [])


def require_admin(what: str) -> None:
    """Stop the page with a clear message unless the signed-in user is an admin."""
    if not is_admin():
        st.error(f"Only admins can {what}.", icon=":material/lock:")
        st.stop()


def scope_user() -> str:
    """Whose images the pages show: the signed-in user, or for an admin the user they picked."""
    if is_admin():
        return st.session_state.get("scope_user") or signed_in_user()
    return signed_in_user()


@st.cache_resource
def _versions() -> dict[str, int]:
    """Per-user change counters shared by every session of this process."""
    return {}


def data_version(user: str) -> int:
    return _versions().get(user, 0)


def bump_data_version(user: str | None = None) -> None:
    """Call after changing a user's images (default: the user in scope) so listings refresh."""
    user = user or scope_user()
    _versions()[user] = data_version(user) + 1


@st.cache_resource
def _review_state() -> tuple[dict[str, int], dict[tuple[str, int], dict[str, str]]]:
    """Per-user review counters, and the reviews written since each collection version was read."""
    return {}, {}


def review_version(user: str) -> int:
    """Changes with every anomaly review: a key for listings that show reviews (the Gallery's)."""
    return _review_state()[0].get(user, 0)


def note_reviews(user: str, ids: Sequence[str], status: str | None) -> None:
    """Call after writing anomaly reviews to the index. They do not change the collection's
    version: pages overlay them on their cached reports (``with_recent_reviews``) instead of
    reloading the collection, which keeps a review click to one index write and a fragment."""
    counters, recent = _review_state()
    version = data_version(user)
    for stale in [key for key in recent if key[0] == user and key[1] != version]:
        del recent[stale]
    recent.setdefault((user, version), {}).update(dict.fromkeys(ids, status or ""))
    counters[user] = review_version(user) + 1


def with_recent_reviews(user: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (``id`` and ``review`` columns, read at the current version) with the reviews
    written since (a copy when there are any)."""
    recent = _review_state()[1].get((user, data_version(user)))
    if not recent or frame.empty:
        return frame
    frame = frame.copy()
    frame["review"] = [
        recent.get(image_id, review) for image_id, review in zip(frame["id"], frame["review"], strict=True)
    ]
    return frame


def rerun_page_if_changed(user: str, drawn_from: int) -> None:
    """For a fragment drawn from data the page computed at ``data_version`` ``drawn_from``: rerun the
    whole page once the collection has changed since (e.g. a delete in the viewer, which reruns only
    the fragment it was opened from), so the page's analyses and listings are current."""
    if data_version(user) != drawn_from:
        st.rerun(scope="app")


@st.cache_resource(show_spinner="Loading your images…", max_entries=16)
def _listing(_services_id: int, user: str, version: int, count: int) -> pd.DataFrame:
    return gallery.list_images(services(), user)


def image_listing(user: str) -> pd.DataFrame:
    """The user's images (payloads), cached until the collection changes. Shared: do not mutate."""
    # The count also catches changes made by other processes (the CLI, other app replicas).
    return _listing(id(services()), user, data_version(user), services().index.count(user))


def graph_panel(user: str, page: str) -> None:
    """The neighbour graph the page reads, brought up to date first, then its version and a button
    to rebuild it. Building or patching it runs as a background job (one per user): the page
    shows its progress and stops until it is done (call this before the page's analysis)."""
    from app import jobs_panel  # imported here: jobs_panel builds on this module

    status = graph_status(services(), user)
    if status is None or status.pending:
        job = jobs_panel.submit(user, "graph", "Neighbour graph", graph_job(services(), user), key="graph")
        jobs_panel.wait_for(job, "the neighbour graph")
        status = graph_status(services(), user)
        if status is None:
            return
    left, right = st.columns([5, 1], vertical_alignment="center")
    left.caption(status.describe())
    if right.button(
        "Recompute",
        key=f"{page}_recompute_graph",
        icon=":material/refresh:",
        help="Build the neighbour graph again from scratch (it is otherwise patched as images come and go)",
    ):
        with track("rebuild_graph", page=page, images=status.count):
            rebuild = graph_job(services(), user, rebuild=True)
            job = jobs_panel.submit(user, "graph", "Neighbour graph (full rebuild)", rebuild, key="graph")
        jobs_panel.wait_for(job, "the neighbour graph")
        bump_data_version(user)
        st.rerun()


@st.cache_data(max_entries=5000, show_spinner=False)
def _thumbnail(_services_id: int, key: str) -> bytes | None:
    """A stored thumbnail as a card shows it (``core.display.card_thumbnail``); None if unreadable."""
    try:
        return card_thumbnail(services().store.get(key))
    except Exception:
        return None


def thumbnail(key: str) -> bytes | None:
    return _thumbnail(id(services()), key)


def missing_image() -> str:
    return str(ASSETS / "missing.svg")


def human_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def empty_state(
    title: str, body: str, icon: str = ":material/photo_library:", link: tuple[str, str] | None = None
) -> None:
    """A friendly panel that says what to do next."""
    with st.container(border=True):
        st.markdown(f"#### {icon} {title}")
        st.markdown(body)
        if link:
            st.page_link(str(PAGES / link[0]), label=link[1], icon=":material/arrow_forward:")


@dataclass(frozen=True)
class _Grid:
    """The cards being laid out, so a thumbnail click opens the viewer on the grid's list."""

    rows: list[dict[str, Any]]
    actions: tuple[viewer.ViewerAction, ...]
    token: str
    position: int = 0


_grid: ContextVar[_Grid | None] = ContextVar("vad_grid", default=None)


def card_grid(
    rows: Sequence[dict[str, Any]],
    render: Callable[[dict[str, Any], int], None],
    columns: int = GRID_COLUMNS,
    actions: Sequence[viewer.ViewerAction] = (),
    viewer_rows: Sequence[dict[str, Any]] | None = None,
    key: str = "",
) -> None:
    """Lay out cards in rows of ``columns`` so thumbnails line up. A click on a card's thumbnail
    (``thumb_card``) opens the viewer on ``viewer_rows`` (default ``rows``; e.g. every filtered
    image while ``rows`` is one page of them), with the page's review ``actions`` on keys.
    ``key`` tells apart two grids of one page drawn by the same card function."""
    rows = list(rows)
    listed = rows if viewer_rows is None else list(viewer_rows)
    positions = {r.get("id"): i for i, r in enumerate(listed)}
    # The same images may show in two grids of one page (e.g. two tabs): the card function and
    # the key tell them apart.
    seed = "\n".join([getattr(render, "__qualname__", ""), key, *(str(r.get("id")) for r in listed)])
    token = hashlib.blake2b(seed.encode(), digest_size=4).hexdigest()
    for start in range(0, len(rows), columns):
        cells = st.columns(columns, gap="small")
        for offset, row in enumerate(rows[start : start + columns]):
            with cells[offset]:
                position = positions.get(row.get("id"))
                grid = _Grid(listed, tuple(actions), token, position) if position is not None else None
                context = _grid.set(grid)
                try:
                    render(row, start + offset)
                finally:
                    _grid.reset(context)


def view_images(ids: Sequence[str], position: int = 0, actions: Sequence[viewer.ViewerAction] = ()) -> None:
    """Open the viewer on the user's images ``ids`` at ``ids[position]`` (e.g. the Explorer's points;
    unknown ids are skipped). Call once per click, as ``viewer.open_viewer``."""
    wanted = list(ids)
    current = wanted[position] if 0 <= position < len(wanted) else None
    rows = [row for row in _with_listing([{"id": i} for i in wanted]) if "original_key" in row]
    known = [row["id"] for row in rows]
    start = known.index(current) if current in known else 0
    viewer.open_viewer(rows, start, actions, store=services().store)


def _with_listing(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The page's rows with the listing's fields they lack (original key, size, date): the page's win."""
    if all("original_key" in row for row in rows):
        return rows
    listing = image_listing(scope_user())
    known = listing[listing["id"].isin([row.get("id") for row in rows])].set_index("id", drop=False)
    return [{**(known.loc[row["id"]].to_dict() if row.get("id") in known.index else {}), **row} for row in rows]


def thumb_card(row: dict[str, Any], caption: str) -> None:
    """The thumbnail in a fixed square frame, with a caption under it; a click on the thumbnail
    opens the viewer (on the grid's images inside ``card_grid``, else on this one)."""
    grid = _grid.get()
    if grid is None or grid.rows[grid.position].get("id") != row.get("id"):
        grid = _Grid([row], (), "one")
    with st.container(key=f"vad_thumb_{grid.token}_{grid.position}_{row.get('id')}", gap=None):
        data = thumbnail(row.get("thumbnail_key", ""))
        if data:
            st.image(data, width="stretch", output_format="JPEG")
        else:
            st.image(missing_image(), width="stretch")
        if st.button("View image", key=f"vad_view_{grid.token}_{grid.position}_{row.get('id')}"):
            viewer.open_viewer(_with_listing(grid.rows), grid.position, grid.actions, store=services().store)
    st.markdown(
        f"<div class='vad-caption' title='{escape(row.get('filename', ''))}'>{caption}</div>", unsafe_allow_html=True
    )


def card_name(name: str, badge: str = "") -> str:
    """A card caption's file name (escaped, after an HTML ``badge``), kept to two lines so the
    cards of a row line up."""
    return f"<span class='vad-name'>{badge}{escape(name)}</span>"


def escape(text: str) -> str:
    """Text made safe to put inside HTML, with control and bidi characters shown as escapes."""
    return html.escape(display_name(str(text)), quote=True)


def inject_css() -> None:
    css = (ASSETS / "style.css").read_text() + (viewer.ASSETS / "cards.css").read_text()
    st.markdown(f"<style>{css}</style>", unsafe_allow_html=True)


def clear_thumbnails() -> None:
    _thumbnail.clear()
