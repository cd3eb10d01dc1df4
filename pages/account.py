"""Account page: who is signed in, and password change."""

from __future__ import annotations

import streamlit as st

from app import signin, ui

settings = ui.settings()
store = ui.user_store(str(settings.data_dir))
user = ui.signed_in_user()

st.title("Account")
info = store.users.get(user, {})
st.markdown(
    f"Signed in as **{ui.escape(user)}** ({', '.join(info.get('roles') or ['user'])})"
    + (f" · {ui.escape(info['email'])}" if info.get("email") else "")
)
signin.account_section(settings, store)  # a form: it draws its own frame
