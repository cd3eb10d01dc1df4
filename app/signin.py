"""Sign-in gate: streamlit-authenticator's forms, the app's own revocable session cookie.

The library draws the sign-in, registration and password forms and checks passwords; it never
writes a cookie here (``cookie_expiry_days=0``). The session cookie is ours (core.sessions): a
signed token written into the browser by a script in the page, read back from the request on a
reload or a new tab, and checked against users.yaml on every rerun, so sign-out, a password
change, an admin reset or a removal ends the session everywhere.
"""

from __future__ import annotations

import json
import time

import streamlit as st
import streamlit_authenticator as stauth

from app import ui
from core import metrics, sessions
from core.auth import LoginThrottle, UserError, UserStore, cookie_key, ensure_admin, sign_in_key, validate_username
from core.logs import log_event
from core.settings import Settings

_LIBRARY_COOKIE = "vad_library_cookie"  # never written (cookie_expiry_days=0): our own cookie is sessions.COOKIE_NAME
_SESSION = "vad_session"  # st.session_state key: the live sessions.Session
_PENDING_COOKIE = "vad_pending_cookie"  # a token to write, or "" to delete the cookie
_REFUSED_COOKIE = "vad_refused_cookie"  # the request's cookie, once found invalid
_NOTICE = "vad_sign_in_notice"  # why the last session ended, shown above the form


@st.cache_resource
def _throttle() -> LoginThrottle:
    return LoginThrottle()


def _key(settings: Settings) -> str:
    return cookie_key(settings.data_dir, settings.cookie_key.get_secret_value() if settings.cookie_key else None)


def _authenticator(settings: Settings, store: UserStore) -> stauth.Authenticate:
    # login_sleep_time=0: the library waits 0.7 s on every run for its own cookie, which is not used.
    authenticator = stauth.Authenticate(
        store.credentials, _LIBRARY_COOKIE, _key(settings), cookie_expiry_days=0, auto_hash=False, login_sleep_time=0
    )
    controller = authenticator.authentication_controller
    check, register = controller.login, controller.register_user

    def throttled_login(username: str | None = None, password: str | None = None, *args, **kwargs) -> bool:
        # Session resumes (a token, no password) pass straight through.
        if username is None or password is None:
            return check(username, password, *args, **kwargs)
        name = sign_in_key(username)  # exactly what the library looks up: one throttle bucket per account
        _throttle().wait(name)
        padded = username != username.strip()  # "alice " is not a way in as alice
        ok = not padded and bool(check(username, password, *args, **kwargs))
        if padded:
            st.session_state["authentication_status"] = False
        _throttle().record(name, ok)
        if ok:
            _begin_session(settings, store, name)
        store.save()
        # An unknown name is not logged: it may be a password typed into the wrong field.
        known = name in store.users
        outcome = "ok" if ok else "refused"
        log_event("sign_in", user=name if known else None, known_user=known, outcome=outcome, page="sign_in")
        metrics.REQUESTS.labels(page="sign_in", action="sign_in", outcome=outcome).inc()
        return ok

    def validated_register(first_name: str, last_name: str, email: str, username: str, *args, **kwargs):
        validate_username(username)  # the one rule for names (raises UserError with the reason)
        return register(first_name, last_name, email, username, *args, **kwargs)

    controller.login = throttled_login
    controller.register_user = validated_register
    return authenticator


def _begin_session(settings: Settings, store: UserStore, user: str) -> None:
    """Start a session for ``user`` in this browser tab and queue its cookie."""
    session = sessions.start(store, user, settings.session_hours * 3600)
    st.session_state[_SESSION] = session
    st.session_state[_PENDING_COOKIE] = sessions.encode(session, _key(settings))


def _resume_from_cookie(settings: Settings, store: UserStore, authenticator: stauth.Authenticate) -> None:
    """Sign in from the browser's session cookie (a reload, a new tab) when it is still valid."""
    token = st.context.cookies.get(sessions.COOKIE_NAME)
    if not token or token == st.session_state.get(_REFUSED_COOKIE):
        return
    session = sessions.decode(token, _key(settings), store)
    if session is None:  # forged, expired or revoked: drop it (the request keeps it until a reload)
        st.session_state[_REFUSED_COOKIE] = token
        st.session_state[_PENDING_COOKIE] = ""
        return
    authenticator.authentication_controller.login(token={"username": session.user})
    st.session_state[_SESSION] = session
    log_event("resume_session", user=session.user, page="sign_in")


def _session_problem(store: UserStore) -> str | None:
    """Why the signed-in session of this tab may not go on, or None."""
    session = st.session_state.get(_SESSION)
    if session is None or not session.is_current(store):
        return "Your session has ended (signed out, password changed or expired). Sign in again."
    try:
        validate_username(session.user)
    except UserError as exc:
        return f"This account cannot be used: {exc}. Ask an admin to create it again under a valid name."
    return None


def _end_session(authenticator: stauth.Authenticate, notice: str | None) -> None:
    """Sign this tab out and queue the cookie's deletion (the library's state, then ours)."""
    if st.session_state.get("authentication_status"):
        authenticator.authentication_controller.logout()
    st.session_state.pop(_SESSION, None)
    st.session_state[_PENDING_COOKIE] = ""
    if notice:
        st.session_state[_NOTICE] = notice


def _flush_cookie() -> None:
    """Write (or delete) the session cookie in the browser, if a change is queued."""
    token = st.session_state.pop(_PENDING_COOKIE, None)
    if token is None:
        return
    session = st.session_state.get(_SESSION)
    max_age = max(0, int(session.expires - time.time())) if token and session else 0
    # Not HttpOnly: Streamlit offers no response headers, so the cookie is set from the page.
    # What guards it is the signature, the expiry and the per-user stamp checked on every rerun.
    st.html(
        "<script>(() => {"
        "const secure = location.protocol === 'https:' ? '; Secure' : '';"
        f"document.cookie = {json.dumps(f'{sessions.COOKIE_NAME}={token}')} + "
        f"'; Path=/; Max-Age={max_age}; SameSite=Strict' + secure;"
        "})();</script>",
        unsafe_allow_javascript=True,
    )


def require_login(settings: Settings) -> stauth.Authenticate:
    """Render the sign-in page and stop unless a user is signed in with a current session."""
    store = ui.user_store(str(settings.data_dir))
    store.refresh()
    admin_password = settings.admin_password.get_secret_value() if settings.admin_password else None
    ensure_admin(store, settings.admin_user, admin_password)
    authenticator = _authenticator(settings, store)
    if not st.session_state.get("authentication_status"):
        _resume_from_cookie(settings, store, authenticator)
    if st.session_state.get("authentication_status"):
        problem = _session_problem(store)
        if problem is None:
            _flush_cookie()
            return authenticator
        log_event("session_ended", user=st.session_state.get("username"), page="sign_in")
        _end_session(authenticator, problem)

    _flush_cookie()
    _, middle, _ = st.columns([1, 1.4, 1])
    with middle:
        st.image(str(ui.ASSETS / "logo.svg"), width=72)
        st.markdown("## Visual Anomaly Dashboard")
        st.caption("Find duplicates, outliers and quality problems in your image collections.")
        if notice := st.session_state.pop(_NOTICE, None):
            st.info(notice, icon=":material/logout:")
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


def sign_out(authenticator: stauth.Authenticate, store: UserStore) -> None:
    """End every session of the signed-in user (this tab, other tabs, a copied cookie) and rerun."""
    user = st.session_state.get("username")
    if user:
        store.refresh()
        store.revoke_sessions(user)
    _end_session(authenticator, None)
    log_event("sign_out", user=user, page="sign_in")
    st.rerun()


def renew_session(settings: Settings, store: UserStore) -> None:
    """After the signed-in user's own password change: a fresh session here, the others end."""
    _begin_session(settings, store, ui.signed_in_user())
    _flush_cookie()


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
    except Exception as exc:  # the library raises RegisterError, our name rule UserError: both readable
        st.error(str(exc), icon=":material/error:")
        return
    if username:
        store.save()
        log_event("register", user=username, page="sign_in")
        metrics.REQUESTS.labels(page="sign_in", action="register", outcome="ok").inc()
        st.success(f"Account {username} created. Sign in with it in the first tab.", icon=":material/check:")


def account_section(authenticator: stauth.Authenticate, settings: Settings, store: UserStore) -> None:
    """Password change for the signed-in user; it ends the user's other sessions."""
    user = ui.signed_in_user()
    try:
        if authenticator.reset_password(
            user,
            location="main",
            key="change_password",
            fields={"Form name": "Change password", "Reset": "Change password"},
        ):
            store.save()
            store.revoke_sessions(user)
            renew_session(settings, store)
            log_event("change_password", user=user, page="account")
            st.success("Password changed. Other sessions of this account are signed out.", icon=":material/check:")
    except Exception as exc:  # the library's messages say what is wrong with the new password
        log_event("change_password", user=user, outcome="refused", page="account")
        st.error(str(exc), icon=":material/error:")
