"""The leak review in headless Debian Chromium against a real ``streamlit run``: the matrix, the
CSV export, removing the leaks from the test split. Screenshots (1440x900) go to ``test-artifacts/``."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from apptest_helpers import PASSWORD, add_user
from helpers import running_app
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from test_dataset_qa_page import store_dataset

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason="Debian chromium is not installed (make test installs it)",
    ),
]


THUMBNAILS_LOADED = (
    "() => [...document.querySelectorAll('[data-testid=stImage] img')].every(i => i.complete && i.naturalWidth > 0)"
)


@pytest.fixture
def app_url(tmp_path: Path):
    data = tmp_path / "data"
    store_dataset(data, "lena")
    add_user(data, "lena")
    env = {**os.environ, "VAD_DATA_DIR": str(data), "VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu"}
    env.pop("VAD_QDRANT_URL", None)
    env.pop("VAD_S3_ENDPOINT", None)
    with running_app(tmp_path / "streamlit.log", env) as url:
        yield url


def test_leak_matrix_export_and_removal_from_the_test_split(app_url):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900}, accept_downloads=True)
        page.set_default_timeout(90_000)
        expect.set_options(timeout=90_000)
        page.goto(app_url)
        page.get_by_label("User name", exact=True).fill("lena")
        page.get_by_label("Password", exact=True).first.fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Dataset QA").click()

        expect(page.get_by_role("heading", name="Dataset QA")).to_be_visible()
        expect(page.get_by_text("Leaked pairs per split pair")).to_be_visible()
        leaked = page.get_by_test_id("stMetric").filter(has_text="Leaked pairs")
        expect(leaked.get_by_test_id("stMetricValue")).to_have_text("2")
        matrix = page.get_by_test_id("stDataFrame").first
        expect(matrix).to_be_visible()
        expect(page.get_by_text("Group 1")).to_be_visible()
        page.wait_for_load_state("networkidle")
        page.wait_for_function(THUMBNAILS_LOADED)
        page.screenshot(path=ARTIFACTS / "dataset_qa.png")
        page.screenshot(path=ARTIFACTS / "dataset_qa-leaks-full.png", full_page=True)

        with page.expect_download() as download:
            page.get_by_role("button", name="CSV", exact=True).first.click()
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        assert len(rows) == 2 and {r["level"] for r in rows} == {"exact"}
        assert {(r["split_a"], r["split_b"]) for r in rows} == {("test", "train")}

        page.get_by_role("tab", name="Mislabels").click()
        expect(page.get_by_text("suggested").first).to_be_visible()
        page.wait_for_function(THUMBNAILS_LOADED)
        page.screenshot(path=ARTIFACTS / "dataset_qa-mislabels.png", full_page=True)
        page.get_by_role("tab", name="Balance").click()
        expect(page.get_by_text("Images per label and split")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "dataset_qa-balance.png", full_page=True)
        page.get_by_role("tab", name="Leaks").click()

        page.get_by_role("button", name="Remove 2 leaked image(s) from test").click()
        page.get_by_text("Yes, remove them from test").click()
        page.get_by_role("button", name="Remove from the evaluation split").click()
        expect(page.get_by_text("Only one split (train)")).to_be_visible()
        page.screenshot(path=ARTIFACTS / "dataset_qa-leaks-removed.png", full_page=True)
        browser.close()
