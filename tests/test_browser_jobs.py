"""A long upload in headless Chromium keeps going while the user visits other pages, its progress
visible in the sidebar's jobs panel there, and its report is on the Upload page afterwards.

Real ``streamlit run``, real browser, the tiny random-weight model; the upload is long because
of its size (a few hundred 640x480 photos-like JPEGs, small batches), not because of a stub.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from apptest_helpers import PASSWORD, add_user
from helpers import encode, running_app, textured
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

PHOTOS = 240

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="chromium is not installed"),
]


def done_count(text: str) -> int:
    return int(re.search(rf"([\d,]+) of {PHOTOS}", text)[1].replace(",", ""))


def test_a_long_upload_goes_on_while_the_user_visits_other_pages(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    data = tmp_path / "data"
    add_user(data, "lena")
    photos = []
    for i in range(PHOTOS):
        path = tmp_path / "photos" / f"photo{i:03d}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(encode(textured(i, (640, 480)), "JPEG", quality=90))
        photos.append(str(path))
    env = {**os.environ, "VAD_DATA_DIR": str(data), "VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu"}
    env |= {"VAD_BATCH_SIZE": "8", "VAD_INGEST_WORKERS": "1"}  # many small steps: a long, steady upload
    for name in ("VAD_QDRANT_URL", "VAD_S3_ENDPOINT"):
        env.pop(name, None)

    with running_app(tmp_path / "streamlit.log", env) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(120_000)
        expect.set_options(timeout=120_000)
        page.goto(url)
        page.get_by_label("User name", exact=True).fill("lena")
        page.get_by_label("Password", exact=True).first.fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Gallery")).to_be_visible()

        nav = page.get_by_test_id("stSidebarNavItems")
        sidebar = page.get_by_test_id("stSidebar")
        nav.get_by_role("link", name="Upload").click()
        page.locator("input[type=file]").set_input_files(photos)
        expect(page.get_by_text("photo239.jpg")).to_be_visible()
        page.get_by_role("button", name="Add to collection").click()
        expect(sidebar.get_by_text("Jobs · 1 running")).to_be_visible()

        # Other pages while it runs: the job goes on, and its progress is shown there.
        progress = sidebar.get_by_text(re.compile(rf"[\d,]+ of {PHOTOS} ·"))
        expect(sidebar.get_by_text(re.compile(rf"[1-9][\d,]* of {PHOTOS} ·"))).to_be_visible()  # under way
        seen = []
        for name in ("Gallery", "Search", "Duplicates"):
            nav.get_by_role("link", name=name).click()
            expect(page.get_by_role("heading", name=name, exact=True, level=1)).to_be_visible()
            expect(sidebar.get_by_text("Jobs · 1 running")).to_be_visible()
            expect(progress).to_be_visible()
            seen.append(done_count(progress.inner_text()))
            if name == "Gallery":
                page.screenshot(path=ARTIFACTS / "jobs-sidebar-while-uploading.png")
        assert seen == sorted(seen) and seen[0] < PHOTOS, seen
        for _ in range(120):  # the panel refreshes itself: the count moves on this page too
            if not progress.count() or done_count(progress.inner_text()) > seen[-1]:
                break
            page.wait_for_timeout(1_000)
        assert not progress.count() or done_count(progress.inner_text()) > seen[-1], f"progress stuck at {seen}"

        # It ends on its own, on whatever page the user is; the page's data follows.
        expect(sidebar.get_by_text("Jobs · 1 running")).to_have_count(0, timeout=300_000)
        expect(sidebar.get_by_text(f"done · {PHOTOS} stored")).to_be_visible()
        expect(sidebar.get_by_test_id("stMetricValue")).to_have_text(f"{PHOTOS:,}")

        # The report stays readable on the Upload page.
        nav.get_by_role("link", name="Upload").click()
        expect(page.get_by_test_id("stMetric").filter(has_text="Stored")).to_contain_text(str(PHOTOS))
        page.wait_for_load_state("networkidle")
        page.screenshot(path=ARTIFACTS / "upload.png", full_page=True)
        browser.close()
