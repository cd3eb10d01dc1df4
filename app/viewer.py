"""The full-resolution image viewer: a wide dialog over the page, stepping through the page's list.

A page (or a shared card of ``app/ui.py``) calls ``open_viewer(rows, position, actions, store)``:
``rows`` are the listing rows the page shows (``id``, ``filename``, ``original_key``, size, and any
page fields such as ``reasons``, ``review`` or ``score``), ``actions`` the page's review actions on
keys. The image is the stored original (or a display copy for huge or non-browser formats,
``core.display``), served by Streamlit's media endpoint and shown by a small component with zoom
and pan. Arrows step through the list, the action keys run the page's callbacks, Esc closes.
Everything inside the dialog reruns only the dialog, reading from caches; the page behind reruns
once, when the viewer closes.
"""

from __future__ import annotations

import base64
import contextlib
import html
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from core.diskspace import describe_bytes
from core.display import DisplayImage, display_image
from core.names import display_name
from core.storage.base import ObjectStore

VIEWER_KEY = "vad_viewer"
#: Session key of the image shown in the details dialog (app/detail.py).
DETAIL_KEY = "detail_id"
ASSETS = Path(__file__).resolve().parent / "components" / "viewer"
#: Flags a page may put on its rows, shown under the image in this order.
_FLAG_FIELDS = ("reasons", "review", "anomaly_score", "score", "tags")

_image_view = st.components.v2.component(
    "vad_image_view",
    html=(ASSETS / "viewer.html").read_text(),
    css=(ASSETS / "viewer.css").read_text(),
    js=(ASSETS / "viewer.js").read_text(),
)
_in_dialog: ContextVar[bool] = ContextVar("vad_in_dialog", default=False)


@dataclass(frozen=True)
class ViewerAction:
    """A page's review action in the viewer: ``run(image_id)`` on the key ``key`` (a letter but C or
    R, which Streamlit reserves). ``confirm`` asks first (a delete); ``removes`` drops the image
    from the list afterwards; ``advance`` moves on to the next image afterwards."""

    key: str
    label: str
    run: Callable[[str], Any]
    icon: str | None = None
    confirm: str | None = None
    removes: bool = False
    advance: bool = True


@dataclass
class _Viewer:
    rows: list[dict[str, Any]]
    position: int
    actions: tuple[ViewerAction, ...]
    store: ObjectStore
    pending: str | None = None  # the key of an action waiting for its confirmation
    done: dict[str, str] = field(default_factory=dict)  # image id -> label of the last action run on it

    @property
    def row(self) -> dict[str, Any]:
        return self.rows[self.position]

    def step(self, offset: int) -> None:
        self.position = min(max(self.position + offset, 0), len(self.rows) - 1)
        self.pending = None


def open_viewer(
    rows: Sequence[Mapping[str, Any]],
    position: int = 0,
    actions: Sequence[ViewerAction] = (),
    *,
    store: ObjectStore,
) -> None:
    """Show ``rows[position]`` in the viewer, with previous/next through ``rows``.

    Call it once per user gesture (a click): the dialog opens in this run, also when only a
    fragment reruns; from inside a dialog, the app reruns to swap dialogs.
    """
    if not rows:
        return
    st.session_state.pop(DETAIL_KEY, None)
    st.session_state[VIEWER_KEY] = _Viewer(
        [dict(r) for r in rows], min(max(position, 0), len(rows) - 1), tuple(actions), store
    )
    if _in_dialog.get():
        st.rerun()
    if not _dialog_shown():
        _viewer_dialog()


def is_open() -> bool:
    return isinstance(st.session_state.get(VIEWER_KEY), _Viewer)


def close_viewer() -> None:
    st.session_state.pop(VIEWER_KEY, None)


def forget(image_ids: Sequence[str]) -> None:
    """Drop images (deleted elsewhere) from the open viewer's list."""
    viewer = st.session_state.get(VIEWER_KEY)
    if not isinstance(viewer, _Viewer):
        return
    current = viewer.row["id"] if viewer.rows else None
    viewer.rows = [r for r in viewer.rows if r["id"] not in set(image_ids)]
    ids = [r["id"] for r in viewer.rows]
    viewer.position = ids.index(current) if current in ids else min(viewer.position, max(len(ids) - 1, 0))


def render_if_open() -> None:
    """Show the viewer when it is open and no dialog is shown yet in this run; for the end of a
    page's script."""
    if is_open() and not _dialog_shown():
        _viewer_dialog()


@contextlib.contextmanager
def dialog_scope() -> Iterator[None]:
    """Mark code that runs inside a dialog, where opening the viewer must swap dialogs."""
    token = _in_dialog.set(True)
    try:
        yield
    finally:
        _in_dialog.reset(token)


def _dialog_shown() -> bool:
    """Whether a dialog was opened in this run already (Streamlit allows one per run)."""
    ctx = get_script_run_ctx()
    return bool(ctx and ctx.has_dialog_opened)


@st.dialog("Image viewer", width="large", on_dismiss=close_viewer)
def _viewer_dialog() -> None:
    viewer = st.session_state.get(VIEWER_KEY)
    if not isinstance(viewer, _Viewer):
        return
    if st.session_state.get(DETAIL_KEY):  # "Details" was pressed: swap dialogs on a full run
        st.rerun()
    with dialog_scope(), st.container(key="vad_viewer"):
        st.html(f"<style>{(ASSETS / 'dialog.css').read_text()}</style>")
        if not viewer.rows:
            st.info("No image left in this list. Press Esc to close.", icon=":material/done_all:")
            return
        _toolbar(viewer)
        _confirmation(viewer)
        _facts(viewer, _picture(viewer))


def _toolbar(viewer: _Viewer) -> None:
    row = viewer.row
    with st.container(horizontal=True, vertical_alignment="center", key="vad_viewer_bar"):
        st.markdown(
            f"<span class='vad-viewer-count'>{viewer.position + 1} / {len(viewer.rows)}</span> "
            f"<b class='vad-viewer-name'>{_escape(row.get('filename', ''))}</b>",
            unsafe_allow_html=True,
            width="stretch",
        )
        st.button(
            "Previous",
            icon=":material/chevron_left:",
            key="vad_viewer_prev",
            shortcut="Left",
            disabled=viewer.position == 0,
            on_click=viewer.step,
            args=(-1,),
        )
        st.button(
            "Next",
            icon=":material/chevron_right:",
            key="vad_viewer_next",
            shortcut="Right",
            disabled=viewer.position >= len(viewer.rows) - 1,
            on_click=viewer.step,
            args=(1,),
        )
        for action in viewer.actions:
            st.button(
                action.label,
                icon=action.icon,
                key=f"vad_viewer_action_{action.key}",
                shortcut=action.key,
                type="primary" if viewer.pending == action.key else "secondary",
                on_click=_press,
                args=(viewer, action),
            )
        st.button(
            "Details",
            icon=":material/info:",
            key="vad_viewer_details",
            shortcut="I",
            help="Hashes, tags, similar images, re-embed",
            on_click=_details,
            args=(viewer,),
        )


def _confirmation(viewer: _Viewer) -> None:
    action = next((a for a in viewer.actions if a.key == viewer.pending), None)
    if action is None:
        return
    with st.container(horizontal=True, vertical_alignment="center", key="vad_viewer_confirm"):
        st.warning(
            f"{action.confirm} Press {action.key} or Enter to confirm.", icon=":material/warning:", width="stretch"
        )
        st.button(
            action.label,
            key="vad_viewer_confirm_yes",
            type="primary",
            shortcut="Enter",
            on_click=_run,
            args=(viewer, action),
        )
        st.button("Cancel", key="vad_viewer_confirm_no", on_click=setattr, args=(viewer, "pending", None))


def _press(viewer: _Viewer, action: ViewerAction) -> None:
    """An action's button or key: ask first when it needs a confirmation, else run it."""
    if action.confirm and viewer.pending != action.key:
        viewer.pending = action.key
    else:
        _run(viewer, action)


def _run(viewer: _Viewer, action: ViewerAction) -> None:
    row = viewer.row
    viewer.pending = None
    try:
        action.run(row["id"])
    except Exception as exc:  # the page's callback failed: say so, keep the viewer usable
        st.toast(f"{action.label} failed for {display_name(str(row.get('filename', '')))}: {exc}", icon="⚠️")
        return
    viewer.done[row["id"]] = action.label
    if action.removes:
        viewer.rows.pop(viewer.position)
        viewer.position = min(viewer.position, max(len(viewer.rows) - 1, 0))
    elif action.advance:
        viewer.step(1)


def _details(viewer: _Viewer) -> None:
    """Swap the viewer for the details dialog; closing the details comes back to the viewer."""
    st.session_state[DETAIL_KEY] = viewer.row["id"]


def _picture(viewer: _Viewer) -> DisplayImage | None:
    """The current image in the zoom and pan component; its neighbours are read ahead on the
    server and, once read, loaded ahead by the browser. Returns what is shown."""
    displays = _displays()
    row = viewer.row
    shown, problem = None, ""
    try:
        shown = displays.get(viewer.store, row.get("original_key") or "")
    except Exception as exc:  # a missing or unreadable original: say so, the list goes on
        problem = str(exc) or type(exc).__name__
    neighbours = [
        viewer.rows[i].get("original_key") or ""
        for i in (viewer.position + 1, viewer.position - 1)
        if 0 <= i < len(viewer.rows)
    ]
    ready = {key: displays.peek(viewer.store, key) for key in neighbours}
    displays.read_ahead(viewer.store, [key for key, image in ready.items() if image is None and key])
    preload = [_media_url(image, f"ahead{i}") for i, image in enumerate(ready.values()) if image is not None]
    _image_view(
        key="vad_image_view",
        data={
            "id": row["id"],
            "src": _media_url(shown, "current") if shown else "",
            "preload": preload,
            "name": display_name(str(row.get("filename", ""))),
            "problem": f"The original could not be read: {problem}" if problem else "",
            "short": viewer.pending is not None,  # room for the confirmation above it
        },
        height="content",
    )
    return shown


def _facts(viewer: _Viewer, shown: DisplayImage | None) -> None:
    """Name, size, bytes, format, date and the page's flags, rounded for people."""
    row = viewer.row
    facts = [f"{_int(row.get('width'))} × {_int(row.get('height'))} px"]
    facts += [str(row.get("format") or "?"), describe_bytes(float(row.get("bytes") or 0))]
    facts.append(f"added {_date(row.get('created_at'))}")
    if shown is not None and not shown.original:
        facts.append(f"shown as a {shown.width} × {shown.height} copy")
    flags = [_flag(name, row[name]) for name in _FLAG_FIELDS if _present(row.get(name))]
    if row["id"] in viewer.done:
        flags.append(f"just now: {viewer.done[row['id']]}")
    st.markdown(
        f"<div class='vad-viewer-facts'>{_escape(' · '.join(facts))}"
        + (f"<br><span class='vad-viewer-flags'>{_escape(' · '.join(flags))}</span>" if flags else "")
        + "</div>",
        unsafe_allow_html=True,
    )
    keys = ", ".join(f"{a.key} {a.label.lower()}" for a in viewer.actions)
    st.caption(
        "← → previous / next · wheel or + − to zoom, 0 fit, 1 actual size, drag to pan · "
        + (f"{keys} · " if keys else "")
        + "I details · Esc close"
    )


class _Displays:
    """The browser's bytes of recently viewed originals (``core.display``), shared by every session:
    a few at a time, and the next ones read ahead in one background thread."""

    def __init__(self, size: int = 12) -> None:
        self._size = size
        self._items: OrderedDict[tuple[str, str], DisplayImage] = OrderedDict()
        self._lock = threading.Lock()
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="vad-viewer-read-ahead")

    def peek(self, store: ObjectStore, key: str) -> DisplayImage | None:
        with self._lock:
            return self._items.get((store.describe(), key))

    def get(self, store: ObjectStore, key: str) -> DisplayImage:
        if not key:
            raise KeyError("no original is recorded for this image")
        found = self.peek(store, key)
        if found is not None:
            return found
        image = display_image(store.get(key))
        with self._lock:
            self._items[(store.describe(), key)] = image
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return image

    def read_ahead(self, store: ObjectStore, keys: Sequence[str]) -> None:
        for key in keys:
            self._reader.submit(self._quietly, store, key)

    def _quietly(self, store: ObjectStore, key: str) -> None:
        with contextlib.suppress(Exception):  # the viewer says what is wrong when the image is shown
            self.get(store, key)


@st.cache_resource(show_spinner=False)
def _displays() -> _Displays:
    return _Displays()


def _media_url(image: DisplayImage, slot: str) -> str:
    """A URL for ``image``: Streamlit's media endpoint, the one ``st.image`` uses, which holds the
    bytes for this session until the slot is filled again or the viewer closes; a data: URL when
    no app server runs (bare script runs)."""
    if Runtime.exists():
        return Runtime.instance().media_file_mgr.add(image.data, image.mime_type, f"vad-viewer.{slot}")
    return f"data:{image.mime_type};base64,{base64.b64encode(image.data).decode()}"


def _flag(name: str, value: Any) -> str:
    if name in ("anomaly_score", "score"):
        label = "anomaly score" if name == "anomaly_score" else "similarity"
        return f"{label} {float(value):.3f}"
    if name == "tags":
        return "tags: " + ", ".join(str(t) for t in value)
    if name == "review":
        return {"confirmed": "confirmed anomaly", "normal": "marked normal"}.get(str(value), str(value))
    return str(value)


def _present(value: Any) -> bool:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return False
    if isinstance(value, str | list | tuple):
        return len(value) > 0
    return True


def _int(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "?"


def _date(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return "unknown date"


def _escape(text: str) -> str:
    return html.escape(display_name(text), quote=True)
