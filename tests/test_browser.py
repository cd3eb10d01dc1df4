"""End to end in headless Debian Chromium against a real ``streamlit run``.

Register, sign in, upload a few images, search, open a result, sign out. Screenshots of each step
go to ``test-artifacts/`` (not committed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from apptest_helpers import ROOT, jpeg_variant, png
from helpers import running_app

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.browser,
    # In CI (CI=true) a missing browser is a failure, not a skip.
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason="Debian chromium is not installed (make test installs it)",
    ),
]


@pytest.fixture
def app_url(tmp_path):
    """A real `streamlit run` of the app on a free port, stopped afterwards."""
    env = {**os.environ, "VAD_DATA_DIR": str(tmp_path / "data"), "VAD_MODEL": "tiny:random"}
    env.pop("VAD_QDRANT_URL", None)
    env.pop("VAD_S3_ENDPOINT", None)
    with running_app(tmp_path / "streamlit.log", env) as url:
        yield url


def test_register_upload_search_open_sign_out(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    files = []
    for i in range(4):
        path = tmp_path / f"photo{i}.png"
        path.write_bytes(png(500 + i, (320, 240)))
        files.append(path)
    near = tmp_path / "photo0-copy.jpg"
    near.write_bytes(jpeg_variant(files[0].read_bytes()))

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 950})
        page.set_default_timeout(90_000)
        expect.set_options(timeout=90_000)
        page.goto(app_url)

        # Register.
        page.get_by_role("tab", name="Create account").click()
        page.get_by_label("First name").fill("Eve")
        page.get_by_label("Last name").fill("Tester")
        page.get_by_label("Email").fill("eve@example.com")
        page.get_by_label("Username", exact=True).fill("eve")
        page.get_by_label("Password", exact=True).nth(1).fill("Browser-pass-1")
        page.get_by_label("Repeat password").fill("Browser-pass-1")
        page.get_by_role("button", name="Create account").click()
        expect(page.get_by_text("Account eve created")).to_be_visible()

        # Sign in.
        page.get_by_role("tab", name="Sign in").click()
        page.get_by_label("User name", exact=True).fill("eve")
        page.get_by_label("Password", exact=True).first.fill("Browser-pass-1")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Gallery")).to_be_visible()
        expect(page.get_by_text("No images yet")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "01-empty-gallery.png", full_page=True)

        # Upload four photos, then a near-duplicate of the first.
        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Upload").click()
        page.locator("input[type=file]").set_input_files([str(p) for p in files])
        expect(page.get_by_text("photo3.png")).to_be_visible()
        page.get_by_role("button", name="Add to collection").click()
        expect(page.get_by_text("Already present")).to_be_visible()
        page.locator("input[type=file]").set_input_files([str(near)])
        expect(page.get_by_text("photo0-copy.jpg").first).to_be_visible()
        page.get_by_role("button", name="Add to collection").click()
        expect(page.get_by_text("look like images you already had")).to_be_visible()
        expect(page.get_by_text("stored: photo0.png")).to_be_visible()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=ARTIFACTS / "02-upload-near-duplicate.png", full_page=True)

        # Search by text and open a result.
        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Search").click()
        page.get_by_label("Describe what you are looking for").fill("a colourful pattern")
        page.keyboard.press("Enter")
        expect(page.get_by_text("result(s), most similar first")).to_be_visible()
        expect(page.get_by_role("button").filter(has_text="Open")).to_have_count(5)
        page.screenshot(path=ARTIFACTS / "03-search.png", full_page=True)
        expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)  # no run in flight to swallow the click
        page.get_by_role("button").filter(has_text="Open").first.click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_text("Most similar images")).to_be_visible()
        expect(dialog.get_by_text("sha256")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "04-detail.png", full_page=True)
        page.keyboard.press("Escape")

        # Sign out.
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "05-signed-out.png", full_page=True)
        browser.close()


SAMPLE_PHOTOS = ROOT.parent / "shared" / "datasets" / "imagenet-sample" / "images"


@pytest.mark.skipif(not SAMPLE_PHOTOS.is_dir(), reason="the shared sample photos are not next to the repository")
def test_explorer_with_real_photos(app_url, tmp_path):
    """A few hundred real photos on the map, drawn with the click panel beside it."""
    from playwright.sync_api import expect, sync_playwright

    from core.auth import UserStore

    photos = tmp_path / "photos"
    photos.mkdir()
    for source in sorted(SAMPLE_PHOTOS.iterdir())[::4]:  # 250 photos across all classes
        (photos / source.name).symlink_to(source)
    env = {**os.environ, "VAD_DATA_DIR": str(tmp_path / "data"), "VAD_MODEL": "tiny:random"}
    done = subprocess.run(
        [sys.executable, "-m", "core", "ingest", str(photos), "--user", "maya"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    UserStore(tmp_path / "data").add("maya", "Browser-pass-2")

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(180_000)
        expect.set_options(timeout=180_000)
        page.goto(app_url)
        page.get_by_label("User name", exact=True).fill("maya")
        page.get_by_label("Password", exact=True).first.fill("Browser-pass-2")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Gallery")).to_be_visible()
        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Explorer").click()
        expect(page.get_by_text("Click a point to see its image here")).to_be_visible()  # the map is drawn
        plot = page.locator(".js-plotly-plot").first
        expect(plot).to_be_visible()
        page.wait_for_timeout(1500)
        page.screenshot(path=ARTIFACTS / "06-explorer.png", full_page=True)
        # A drag on the WebGL canvas selects nothing reliably in headless Chromium; the selection's
        # ids and actions are tested in tests/test_explorer.py (ids_at_points, the page in AppTest).
        browser.close()
