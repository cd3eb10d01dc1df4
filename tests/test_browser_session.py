"""The session cookie in headless Debian Chromium against a real ``streamlit run`` (one app for the file).

Sign-in persists across a reload and a new tab; sign-out ends it, also for a replayed copy of the
old cookie; a password change ends the user's other sessions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import running_app
from test_browser import CHROMIUM, CHROMIUM_ARGS

from core.auth import UserStore
from core.sessions import COOKIE_NAME

PASSWORD = "Session-pass-1"
NEW_PASSWORD = "Session-pass-2!"
TIMEOUT_MS = 90_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason="Debian chromium is not installed (make test installs it)",
    ),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("session")
    data = root / "data"
    store = UserStore(data)
    for name in ("sam", "tess", "uma"):
        store.add(name, PASSWORD)
    env = {**os.environ, "VAD_DATA_DIR": str(data), "VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu"}
    for name in ("VAD_QDRANT_URL", "VAD_S3_ENDPOINT", "VAD_COOKIE_KEY", "VAD_ADMIN_USER", "VAD_ADMIN_PASSWORD"):
        env.pop(name, None)
    with running_app(root / "streamlit.log", env) as url:
        yield url, data


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_page(context, url: str):
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    return page


def sign_in(page, name: str, password: str = PASSWORD) -> None:
    page.get_by_label("User name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).first.fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect_signed_in(page)


def expect_signed_in(page) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def expect_signed_out(page) -> None:
    from playwright.sync_api import expect

    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def session_cookie(context) -> dict:
    """The session cookie as the browser keeps it (waits for the page's script to write it)."""
    for _ in range(100):
        found = [c for c in context.cookies() if c["name"] == COOKIE_NAME and c["value"]]
        if found:
            return found[0]
        context.pages[0].wait_for_timeout(100)
    raise AssertionError(f"no {COOKIE_NAME} cookie in the browser: {context.cookies()}")


def test_sign_in_survives_reload_and_new_tab_and_sign_out_ends_it(app, browser) -> None:
    url, _ = app
    context = browser.new_context()
    page = new_page(context, url)
    sign_in(page, "sam")
    cookie = session_cookie(context)
    assert cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["expires"] > 0  # a persistent cookie, not one that dies with the browser

    page.reload()
    expect_signed_in(page)
    other_tab = new_page(context, url)
    expect_signed_in(other_tab)

    page.get_by_role("button", name="Sign out").click()
    expect_signed_out(page)
    page.reload()
    expect_signed_out(page)
    other_tab.reload()
    expect_signed_out(other_tab)
    context.close()


def test_a_replayed_cookie_is_refused_after_sign_out(app, browser) -> None:
    url, _ = app
    first = browser.new_context()
    page = new_page(first, url)
    sign_in(page, "tess")
    stolen = session_cookie(first)
    page.get_by_role("button", name="Sign out").click()
    expect_signed_out(page)

    # Control: a cookie from a session that is still open does sign a fresh browser in.
    page.reload()
    sign_in(page, "tess")
    live = session_cookie(first)
    control = browser.new_context()
    control.add_cookies([live])
    expect_signed_in(new_page(control, url))
    control.close()
    page.get_by_role("button", name="Sign out").click()
    expect_signed_out(page)

    for replayed in (stolen, live):
        replay = browser.new_context()
        replay.add_cookies([replayed])
        expect_signed_out(new_page(replay, url))
        replay.close()
    first.close()


def test_a_password_change_ends_the_other_sessions(app, browser) -> None:
    url, data = app
    laptop, phone = browser.new_context(), browser.new_context()
    on_laptop, on_phone = new_page(laptop, url), new_page(phone, url)
    sign_in(on_laptop, "uma")
    sign_in(on_phone, "uma")

    on_laptop.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Account").click()
    on_laptop.get_by_label("Current password").fill(PASSWORD)
    on_laptop.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    on_laptop.get_by_label("Repeat password").fill(NEW_PASSWORD)
    on_laptop.get_by_role("button", name="Change password").click()
    from playwright.sync_api import expect

    expect(on_laptop.get_by_text("Password changed")).to_be_visible()
    assert UserStore(data).verify("uma", NEW_PASSWORD)

    on_phone.reload()  # the phone's cookie names the old stamp
    expect_signed_out(on_phone)
    on_laptop.reload()  # the laptop got a fresh cookie with the change
    expect_signed_in(on_laptop)
    laptop.close()
    phone.close()
