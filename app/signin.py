"""Sign-in gate: the sign-in, registration and password forms, and a revocable session cookie.

The session cookie is the app's own (core.sessions): a signed token written into the browser by a
script in the page, read back from the request on a reload or a new tab, and checked against
users.yaml on every rerun, so sign-out, a password change, an admin reset or a removal ends the
session everywhere. Passwords are checked by core.auth (bcrypt), behind the sign-in throttle.
"""

from __future__ import annotations

import json
import time

import streamlit as st

from app import ui
from core import metrics, sessions
from core.auth import LoginThrottle, UserError, UserStore, cookie_key, ensure_admin, sign_in_key, validate_username
from core.logs import log_event
from core.settings import Settings

_SESSION = "vad_session"  # st.session_state key: the live sessions.Session
_PENDING_COOKIE = "vad_pending_cookie"  # a token to write, or "" to delete the cookie
_REFUSED_COOKIE = "vad_refused_cookie"  # the request's cookie, once found invalid
_NOTICE = "vad_sign_in_notice"  # why the last session ended, shown above the form
_IDENTITY = ("authentication_status", "username")  # what the pages read: True / False / None, and who


@st.cache_resource
def _throttle() -> LoginThrottle:
    return LoginThrottle()


def _key(settings: Settings) -> str:
    return cookie_key(settings.data_dir, settings.cookie_key.get_secret_value() if settings.cookie_key else None)


def _attempt_sign_in(settings: Settings, store: UserStore, username: str, password: str) -> None:
    """Check a submitted name and password, slowed down by the throttle, and start a session."""
    name = sign_in_key(username)  # one throttle bucket per account, whatever the case or padding
    _throttle().wait(name)
    padded = username != username.strip()  # "alice " is not a way in as alice
    ok = not padded and bool(password) and store.verify(name, password)
    _throttle().record(name, ok)
    # An unknown name is not logged: it may be a password typed into the wrong field.
    known = name in store.users
    outcome = "ok" if ok else "refused"
    log_event("sign_in", user=name if known else None, known_user=known, outcome=outcome, page="sign_in")
    metrics.REQUESTS.labels(page="sign_in", action="sign_in", outcome=outcome).inc()
    st.session_state["authentication_status"] = ok
    if ok:
        st.session_state["username"] = name
        _begin_session(settings, store, name)


def _begin_session(settings: Settings, store: UserStore, user: str) -> None:
    """Start a session for ``user`` in this browser tab and queue its cookie."""
    session = sessions.start(store, user, settings.session_hours * 3600)
    st.session_state[_SESSION] = session
    st.session_state[_PENDING_COOKIE] = sessions.encode(session, _key(settings))


def _resume_from_cookie(settings: Settings, store: UserStore) -> None:
    """Sign in from the browser's session cookie (a reload, a new tab) when it is still valid."""
    token = st.context.cookies.get(sessions.COOKIE_NAME)
    if not token or token == st.session_state.get(_REFUSED_COOKIE):
        return
    session = sessions.decode(token, _key(settings), store)
    if session is None:  # forged, expired or revoked: drop it (the request keeps it until a reload)
        st.session_state[_REFUSED_COOKIE] = token
        st.session_state[_PENDING_COOKIE] = ""
        return
    st.session_state.update({"authentication_status": True, "username": session.user, _SESSION: session})
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


def _end_session(notice: str | None) -> None:
    """Sign this tab out and queue the cookie's deletion."""
    st.session_state.update(dict.fromkeys(_IDENTITY))
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


def require_login(settings: Settings) -> None:
    """Render the sign-in page and stop unless a user is signed in with a current session."""
    for key in _IDENTITY:
        st.session_state.setdefault(key, None)
    store = ui.user_store(str(settings.data_dir))
    store.refresh()
    admin_password = settings.admin_password.get_secret_value() if settings.admin_password else None
    ensure_admin(store, settings.admin_user, admin_password)
    if not st.session_state["authentication_status"]:
        _resume_from_cookie(settings, store)
    if st.session_state["authentication_status"]:
        problem = _session_problem(store)
        if problem is None:
            _flush_cookie()
            return
        log_event("session_ended", user=st.session_state["username"], page="sign_in")
        _end_session(problem)

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
            _sign_in_form(settings, store)
        if register:
            with register[0]:
                _register_form(store)
    if st.session_state["authentication_status"]:
        st.rerun()
    st.stop()


def _sign_in_form(settings: Settings, store: UserStore) -> None:
    with st.form("vad_login"):
        st.subheader("Sign in")
        username = st.text_input("User name", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        if st.form_submit_button("Sign in"):
            _attempt_sign_in(settings, store, username, password)
    if st.session_state["authentication_status"] is False:
        st.error("Wrong user name or password.", icon=":material/lock:")
    if not store.users:
        st.info(
            "No accounts yet: create one in the next tab, or set VAD_ADMIN_USER and "
            "VAD_ADMIN_PASSWORD, or run `python -m core users add NAME --admin`."
        )


def _register_form(store: UserStore) -> None:
    with st.form("vad_register"):
        st.subheader("Create an account")
        first_name = st.text_input("First name", autocomplete="given-name")
        last_name = st.text_input("Last name", autocomplete="family-name")
        email = st.text_input("Email", autocomplete="email")
        username = st.text_input("Username", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="new-password")
        repeat = st.text_input("Repeat password", type="password", autocomplete="new-password")
        if not st.form_submit_button("Create account"):
            return
    try:
        if password != repeat:
            raise UserError("the passwords do not match")
        full_name = " ".join(part for part in (first_name.strip(), last_name.strip()) if part)
        store.add(username, password, name=full_name, email=email.strip())  # the one rule for names
    except UserError as exc:
        metrics.REQUESTS.labels(page="sign_in", action="register", outcome="refused").inc()
        st.error(f"Account not created: {exc}", icon=":material/error:")
        return
    created = validate_username(username)
    log_event("register", user=created, page="sign_in")
    metrics.REQUESTS.labels(page="sign_in", action="register", outcome="ok").inc()
    st.success(f"Account {created} created. Sign in with it in the first tab.", icon=":material/check:")


def sign_out(store: UserStore) -> None:
    """End every session of the signed-in user (this tab, other tabs, a copied cookie) and rerun."""
    user = st.session_state.get("username")
    if user:
        store.refresh()
        store.revoke_sessions(user)
    _end_session(None)
    log_event("sign_out", user=user, page="sign_in")
    st.rerun()


def renew_session(settings: Settings, store: UserStore) -> None:
    """After the signed-in user's own password change: a fresh session here, the others end."""
    _begin_session(settings, store, ui.signed_in_user())
    _flush_cookie()


def account_section(settings: Settings, store: UserStore) -> None:
    """Password change for the signed-in user (throttled like sign-in); it ends the user's other sessions."""
    user = ui.signed_in_user()
    with st.form("change_password", clear_on_submit=True):
        st.subheader("Change password")
        current = st.text_input("Current password", type="password", autocomplete="current-password")
        new = st.text_input("New password", type="password", autocomplete="new-password")
        repeat = st.text_input("Repeat password", type="password", autocomplete="new-password")
        if not st.form_submit_button("Change password"):
            return
    _throttle().wait(user)
    try:
        right = store.verify(user, current)
        _throttle().record(user, right)
        if not right:
            raise UserError("the current password is wrong")
        if new != repeat:
            raise UserError("the new passwords do not match")
        store.set_password(user, new)  # a new session stamp: every session of the user ends ...
    except UserError as exc:
        log_event("change_password", user=user, outcome="refused", page="account")
        st.error(f"Password not changed: {exc}", icon=":material/error:")
        return
    renew_session(settings, store)  # ... but this one, which gets a fresh cookie
    log_event("change_password", user=user, page="account")
    st.success("Password changed. Other sessions of this account are signed out.", icon=":material/check:")
