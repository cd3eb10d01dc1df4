"""Entry point: ``streamlit run app/main.py``. Sign-in gate, sidebar, and navigation over pages/."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import jobs_panel, record_filters, signin, trash_ui, ui  # noqa: E402
from core import metrics  # noqa: E402
from core.auth import is_valid_username  # noqa: E402

st.set_page_config(page_title="Visual Anomaly Dashboard", page_icon=str(ui.ASSETS / "logo.svg"), layout="wide")
ui.inject_css()

settings = ui.settings()
signin.require_login(settings)
services = ui.services()
store = ui.user_store(str(settings.data_dir))
user = ui.signed_in_user()
st.session_state["roles"] = store.users.get(user, {}).get("roles") or ["user"]


def sidebar() -> st.delta_generator.DeltaGenerator:
    with st.sidebar:
        st.logo(str(ui.ASSETS / "logo.svg"), size="large")
        role = "admin" if ui.is_admin() else "user"
        st.markdown(f"**{ui.escape(user)}** · {role}")
        if ui.is_admin():
            users = sorted(filter(is_valid_username, set(store.users) | set(services.index.counts_by_user())))
            current = st.session_state.get("scope_user") or user
            st.selectbox(
                "Viewing images of",
                users,
                index=users.index(current) if current in users else 0,
                key="scope_user",
                help="Admins can open any user's collection.",
            )
        count = services.index.count(ui.scope_user())
        st.metric("Images", f"{count:,}")
        jobs_slot = st.container()  # filled once the pages are known (its links need them)
        record_filters.sidebar_filters(ui.scope_user())
        embedder = services.embedder
        with st.expander("Model and storage", icon=":material/memory:"):
            st.markdown(f"**Model** {ui.escape(embedder.describe())}")
            st.markdown("Text search: " + ("available" if embedder.supports_text else "**off** (needs CLIP)"))
            st.markdown(f"**Images** {ui.escape(services.store.describe())}")
            st.markdown(f"**Index** {ui.escape(services.index.describe())}")
            if embedder.notice:
                st.caption(embedder.notice)
        if embedder.notice:
            st.warning(
                f"Fallback model {embedder.name}: text search is off. Details under “Model and storage”.",
                icon=":material/info:",
            )
        if embedder.random_weights:
            st.error("This model has random weights: results are meaningless (tests and timing only).")
        trash_ui.undo_notice()
        if st.button("Sign out", key="sign_out", icon=":material/logout:"):
            signin.sign_out(store)
    return jobs_slot


jobs_slot = sidebar()
pages = {
    "Collection": [
        st.Page(ui.PAGES / "upload.py", title="Upload", icon=":material/upload:"),
        st.Page(
            ui.PAGES / "gallery.py", title="Gallery", icon=":material/photo_library:", default=True, url_path="home"
        ),
        st.Page(ui.PAGES / "search.py", title="Search", icon=":material/search:"),
    ],
    "Review": [
        st.Page(ui.PAGES / "duplicates.py", title="Duplicates", icon=":material/content_copy:"),
        st.Page(ui.PAGES / "anomalies.py", title="Anomalies", icon=":material/troubleshoot:"),
        st.Page(ui.PAGES / "explorer.py", title="Explorer", icon=":material/scatter_plot:"),
        st.Page(ui.PAGES / "dataset_qa.py", title="Dataset QA", icon=":material/fact_check:"),
    ],
    "Account": [
        st.Page(ui.PAGES / "account.py", title="Account", icon=":material/person:"),
        st.Page(ui.PAGES / "trash.py", title="Trash", icon=":material/delete:"),
        # The Gallery is also at /gallery, so that links like /gallery?flag=dark open it.
        st.Page(ui.PAGES / "gallery.py", title="Gallery", url_path="gallery", visibility="hidden"),
    ],
}
if ui.is_admin():
    pages["Account"].append(st.Page(ui.PAGES / "users.py", title="Users", icon=":material/group:"))
    pages["Account"].append(st.Page(ui.PAGES / "status.py", title="Status", icon=":material/monitor_heart:"))
page = st.navigation(pages)
with jobs_slot:
    jobs_panel.sidebar_panel(ui.scope_user())
metrics.PAGE_RUNS.labels(page=page.title).inc()
page.run()
