"""Users page (admins only): list accounts, add, remove, change role, reset password."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import signin, ui
from core.auth import UserError

ui.require_admin("manage users")

settings = ui.settings()
services = ui.services()
store = ui.user_store(str(settings.data_dir))
counts = services.index.counts_by_user()

st.title("Users")
users = store.list_users()
frame = pd.DataFrame(users)
frame["images"] = frame["username"].map(counts).fillna(0).astype(int)
frame["roles"] = frame["roles"].apply(", ".join)
st.dataframe(frame[["username", "name", "email", "roles", "images"]], hide_index=True, width="stretch")

left, right = st.columns(2, gap="large")
with left, st.form("add_user", clear_on_submit=True):
    st.markdown("##### Add a user")
    name = st.text_input("User name")
    email = st.text_input("E-mail (optional)")
    password = st.text_input("Password", type="password")
    admin = st.checkbox("Admin")
    if st.form_submit_button("Add user", icon=":material/person_add:"):
        try:
            with ui.track("add_user", page="users", target=name.strip(), expected=(UserError, ValueError)):
                store.add(name.strip(), password, admin=admin, email=email.strip())
            st.success(f"User {name} added.")
            st.rerun()
        except (UserError, ValueError) as exc:
            st.error(str(exc))
with right:
    st.markdown("##### Change a user")
    target = st.selectbox("User", [u["username"] for u in users], key="users_target")
    new_password = st.text_input("New password", type="password", key="users_password")
    cols = st.columns(3)
    try:
        if cols[0].button("Set password", disabled=not new_password):
            with ui.track("set_password", page="users", target=target, expected=(UserError,)):
                store.set_password(target, new_password)  # ends the target's sessions
            if target == ui.signed_in_user():
                signin.renew_session(settings, store)  # ... but not the admin's own, here
            st.success("Password changed; that user's sessions are signed out.")
        if cols[1].button("Toggle admin"):
            with ui.track("toggle_admin", page="users", target=target, expected=(UserError,)):
                store.set_admin(target, not store.is_admin(target))
            st.rerun()
        if cols[2].button(
            "Remove",
            type="primary",
            disabled=target == ui.signed_in_user(),
            help="The account goes; its images stay until deleted.",
        ):
            with ui.track("remove_user", page="users", target=target, expected=(UserError,)):
                store.remove(target)
            st.rerun()
    except UserError as exc:
        st.error(str(exc))
