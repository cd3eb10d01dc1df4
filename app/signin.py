"""Sign-in gate with streamlit-authenticator: login, registration, logout, password change."""

from __future__ import annotations

import streamlit as st
import streamlit_authenticator as stauth

from app import ui
from core import metrics
from core.auth import LoginThrottle, UserStore, cookie_key, ensure_admin
from core.logs import log_event
from core.settings import Settings

COOKIE_NAME = "vad_session"


@st.cache_resource
def _throttle() -> LoginThrottle:
    return LoginThrottle()


def _authenticator(settings: Settings, store: UserStore) -> stauth.Authenticate:
    key = cookie_key(settings.data_dir, settings.cookie_key.get_secret_value() if settings.cookie_key else None)
    authenticator = stauth.Authenticate(store.credentials, COOKIE_NAME, key, cookie_expiry_days=7, auto_hash=False)
    controller = authenticator.authentication_controller
    check = controller.login

    def throttled_login(username: str | None = None, password: str | None = None, *args, **kwargs) -> bool:
        # Slow down repeated failures for one name; cookie logins (no password) pass straight through.
        if username is None or password is None:
            return check(username, password, *args, **kwargs)
        _throttle().wait(username)
        ok = bool(check(username, password, *args, **kwargs))
        _throttle().record(username, ok)
        store.save()
        # An unknown name is not logged: it may be a password typed into the wrong field.
        known = username in store.users
        outcome = "ok" if ok else "refused"
        log_event("sign_in", user=username if known else None, known_user=known, outcome=outcome, page="sign_in")
        metrics.REQUESTS.labels(page="sign_in", action="sign_in", outcome=outcome).inc()
        return ok

    controller.login = throttled_login
    return authenticator


def require_login(settings: Settings) -> stauth.Authenticate:
    """Render the sign-in page and stop unless a user is signed in."""
    store = ui.user_store(str(settings.data_dir))
    store.refresh()
    admin_password = settings.admin_password.get_secret_value() if settings.admin_password else None
    ensure_admin(store, settings.admin_user, admin_password)
    authenticator = _authenticator(settings, store)
    if st.session_state.get("authentication_status"):
        return authenticator

    _, middle, _ = st.columns([1, 1.4, 1])
    with middle:
        st.image(str(ui.ASSETS / "logo.svg"), width=72)
        st.markdown("## Visual Anomaly Dashboard")
        st.caption("Find duplicates, outliers and quality problems in your image collections.")
        tabs = ["Sign in", "Create account"] if settings.allow_registration else ["Sign in"]
        sign_in, *register = st.tabs(tabs)
        with sign_in:
            try:
                authenticator.login(
                    location="main",
                    key="vad_login",
                    fields={"Form name": "Sign in", "Username": "User name", "Login": "Sign in"},
                )
            except Exception as exc:
                st.error(f"Sign-in failed: {exc}")
            if st.session_state.get("authentication_status") is False:
                st.error("Wrong user name or password.", icon=":material/lock:")
            if not store.users:
                st.info(
                    "No accounts yet: create one in the next tab, or set VAD_ADMIN_USER and "
                    "VAD_ADMIN_PASSWORD, or run `python -m core users add NAME --admin`."
                )
        if register:
            with register[0]:
                _register(authenticator, store)
    if st.session_state.get("authentication_status"):
        st.rerun()
    st.stop()


def _register(authenticator: stauth.Authenticate, store: UserStore) -> None:
    try:
        _email, username, _ = authenticator.register_user(
            location="main",
            key="vad_register",
            captcha=False,
            roles=["user"],
            password_hint=False,
            fields={"Form name": "Create an account", "Register": "Create account"},
        )
    except Exception as exc:  # the library raises RegisterError with a readable message
        st.error(str(exc), icon=":material/error:")
        return
    if username:
        store.save()
        log_event("register", user=username, page="sign_in")
        metrics.REQUESTS.labels(page="sign_in", action="register", outcome="ok").inc()
        st.success(f"Account {username} created. Sign in with it in the first tab.", icon=":material/check:")


def account_section(authenticator: stauth.Authenticate, store: UserStore) -> None:
    """Password change for the signed-in user."""
    try:
        if authenticator.reset_password(
            ui.signed_in_user(),
            location="main",
            key="change_password",
            fields={"Form name": "Change password", "Reset": "Change password"},
        ):
            store.save()
            log_event("change_password", user=ui.signed_in_user(), page="account")
            st.success("Password changed.", icon=":material/check:")
    except Exception as exc:  # the library's messages say what is wrong with the new password
        log_event("change_password", user=ui.signed_in_user(), outcome="refused", page="account")
        st.error(str(exc), icon=":material/error:")
