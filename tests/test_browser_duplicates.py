"""The Duplicates page's review in headless Debian Chromium against a real ``streamlit run``: a
click in a cluster reruns only the review (a fragment), and the counts above it follow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from apptest_helpers import jpeg_variant
from helpers import ingest_files, png, running_app, tiny_services
from test_browser import CHROMIUM, CHROMIUM_ARGS
from test_browser_session import sign_in
from test_browser_viewer import go

from core.auth import UserStore

PASSWORD = "Dupes-pass-1"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason="Debian chromium is not installed (make test installs it)",
    ),
]


def test_not_duplicates_and_keep_all_update_the_counts_with_the_list(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    data = tmp_path / "data"
    pictures = {name: png(seed, (200 + 10 * seed, 150)) for seed, name in enumerate(("a", "b", "c"), 1)}
    with tiny_services(data) as services:
        ingest_files(
            services,
            "dora",
            {
                **{f"{name}.png": picture for name, picture in pictures.items()},
                **{f"{name}-copy.jpg": jpeg_variant(picture, 0.9, 80) for name, picture in pictures.items()},
            },
        )
    UserStore(data).add("dora", PASSWORD)
    env = {**os.environ, "VAD_DATA_DIR": str(data), "VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu"}
    for name in ("VAD_QDRANT_URL", "VAD_S3_ENDPOINT", "VAD_ADMIN_USER", "VAD_ADMIN_PASSWORD"):
        env.pop(name, None)
    with running_app(tmp_path / "streamlit.log", env) as url, sync_playwright() as playwright:
        expect.set_options(timeout=60_000)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1440, "height": 900})
        tab.goto(url)
        sign_in(tab, "dora", PASSWORD)
        go(tab, "Duplicates")

        def metric(label: str):
            labelled = tab.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
            return tab.get_by_test_id("stMetric").filter(has=labelled).get_by_test_id("stMetricValue")

        clusters, doomed = metric("Clusters"), metric("Would be deleted")
        expect(clusters).to_have_text("3")
        expect(doomed).to_have_text("3")
        expect(tab.get_by_role("button", name="Delete 3 duplicate(s)")).to_be_visible()

        tab.get_by_role("button", name="Not duplicates").first.click()
        expect(tab.get_by_text("1 cluster(s) marked as not duplicates")).to_be_visible()
        expect(clusters).to_have_text("2")
        expect(doomed).to_have_text("2")
        expect(tab.get_by_role("button", name="Delete 2 duplicate(s)")).to_be_visible()

        tab.get_by_role("button", name="Keep all").first.click()
        expect(tab.get_by_text("1 cluster(s) kept as they are and hidden for now.")).to_be_visible()
        expect(clusters).to_have_text("1")
        expect(tab.get_by_role("button", name="Delete 1 duplicate(s)")).to_be_visible()
        browser.close()
