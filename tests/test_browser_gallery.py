"""The QA gallery and the trash in headless Debian Chromium against a real ``streamlit run``.

A link with a filter (``/gallery?flag=dark``) opens filtered; filter by duplicate status, select
all that match, tag them in bulk (tags show on the cards); delete and Undo; delete, then restore
from the Trash page. Screenshots go to ``test-artifacts/`` (gallery and trash at 1280, 1440 and
1920 px wide).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from apptest_helpers import add_user
from helpers import encode, ingest_files, running_app, solid, textured, tiny_services
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, SAMPLE_PHOTOS

from core import gallery
from core.gallery import GalleryQuery

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason="Debian chromium is not installed (make test installs it)",
    ),
]
USER, PASSWORD = "quinn", "Browser-pass-3"
WIDTHS = (1280, 1440, 1920)
#: Where the shared sample photos are when the repository is a worktree under /work/wt.
SHARED_PHOTOS = Path("/work/shared/datasets/imagenet-sample/images")


def _photos() -> dict[str, bytes]:
    """Real photos when the shared sample is there (screenshots look like real use), else textures;
    plus a dark image and a pixel-identical pair."""
    sample = next((p for p in (SAMPLE_PHOTOS, SHARED_PHOTOS) if p.is_dir()), None)
    if sample is not None:
        files = {p.name: p.read_bytes() for p in sorted(sample.iterdir())[::40][:22]}
    else:
        files = {f"texture-{i:02d}.png": encode(textured(10 + i), "PNG") for i in range(22)}
    files["night.png"] = encode(solid((5, 6, 9), (320, 240)), "PNG")
    files["harbour.png"] = encode(textured(99), "PNG")
    files["harbour-copy.webp"] = encode(textured(99), "WEBP", lossless=True)
    return files


@pytest.fixture
def app_url(tmp_path: Path):
    """The app over a data folder with a user, their images and the analyses computed."""
    data = tmp_path / "data"
    with tiny_services(data) as services:
        ingest_files(services, USER, _photos())
        gallery.compute_analyses(services, USER)
        table = gallery.qa_table(services, USER)[0]
    add_user(data, USER)  # apptest_helpers' password
    env = {**os.environ, "VAD_DATA_DIR": str(data), "VAD_MODEL": "tiny:random"}
    env.pop("VAD_QDRANT_URL", None)
    env.pop("VAD_S3_ENDPOINT", None)
    with running_app(tmp_path / "streamlit.log", env) as url:
        yield url, table


def _open_popover(page, name: str, inside):
    """Open the popover button ``name`` until ``inside`` shows (a click during a run is undone
    when the run draws the popover again)."""
    from playwright.sync_api import expect

    for _ in range(5):
        page.get_by_role("button", name=name).click()
        try:
            expect(inside).to_be_visible(timeout=4000)
            return inside
        except AssertionError:
            continue
    expect(inside).to_be_visible()
    return inside


def _count(page, matching: int, total: int) -> None:
    from playwright.sync_api import expect

    shown = f"{matching} image(s)" + (f" of {total}" if matching != total else "")
    expect(page.get_by_text(re.compile(rf"^{re.escape(shown)} · page"))).to_be_visible()


def test_filter_select_tag_delete_undo_and_restore(app_url) -> None:
    from apptest_helpers import PASSWORD as password
    from playwright.sync_api import expect, sync_playwright

    url, table = app_url
    total = len(table)
    dark = len(gallery.select(table, GalleryQuery(flag=("dark",))))
    pair = gallery.select(table, GalleryQuery(duplicate=("in_cluster",)))
    assert dark >= 1 and set(pair["filename"]) == {"harbour.png", "harbour-copy.webp"}
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(90_000)
        expect.set_options(timeout=90_000)

        # A shared link opens the gallery filtered (sign-in first keeps the link).
        page.goto(f"{url}/gallery?flag=dark")
        page.get_by_label("User name", exact=True).fill(USER)
        page.get_by_label("Password", exact=True).first.fill(password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Gallery")).to_be_visible()
        _count(page, dark, total)
        expect(page.locator(".vad-caption", has_text="night.png")).to_be_visible()
        expect(page.locator(".vad-chip", has_text="Too dark").first).to_be_visible()
        assert "flag=dark" in page.url

        # Filter by duplicate status instead: the URL follows.
        flags = page.get_by_test_id("stMultiSelect").filter(has_text="Quality flag")
        flags.get_by_role("button", name=re.compile("Clear all", re.I)).click()
        _count(page, total, total)
        duplicates = page.get_by_test_id("stMultiSelect").filter(has_text="Duplicates")
        duplicates.click()
        page.get_by_role("option", name="In a cluster").click()
        page.keyboard.press("Escape")
        _count(page, 2, total)
        expect(page).to_have_url(re.compile(r"duplicate=in_cluster"))
        assert "flag=" not in page.url

        # Select all that match, tag them: the tag shows on both cards.
        page.get_by_role("button", name="Select all 2 matching").click()
        expect(page.get_by_text("2 selected")).to_be_visible()
        _open_popover(page, "Add tags", page.get_by_label("Tags (comma-separated)")).fill("harbour pair")
        page.get_by_label("Tags (comma-separated)").press("Enter")
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.locator(".vad-chip", has_text="harbour pair")).to_have_count(2)
        page.keyboard.press("Escape")

        # Delete them, then Undo from the sidebar.
        _open_popover(page, "Delete", page.get_by_role("button", name="Move 2 to the trash")).click()
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_text("2 image(s) moved to the trash")).to_be_visible()
        expect(page.get_by_text("Nothing matches")).to_be_visible()
        sidebar.get_by_role("button", name="Undo").click()
        _count(page, 2, total)
        expect(page.locator(".vad-chip", has_text="harbour pair")).to_have_count(2)  # exactly as before

        # Delete the copy alone, then restore it from the Trash page.
        caption = page.locator(".vad-caption", has_text="harbour-copy.webp")
        page.get_by_test_id("stColumn").filter(has=caption).get_by_test_id("stCheckbox").click()
        expect(page.get_by_text("1 selected")).to_be_visible()
        _open_popover(page, "Delete", page.get_by_role("button", name="Move 1 to the trash")).click()
        # The cached duplicate status was for the images before this delete: the page says so.
        expect(page.get_by_text(re.compile("duplicate status of your current images are not computed"))).to_be_visible()
        expect(page.get_by_text("Nothing matches")).to_be_visible()
        duplicates.get_by_role("button", name=re.compile("Clear all", re.I)).click()
        _count(page, total - 1, total - 1)
        page.wait_for_load_state("networkidle")
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_timeout(600)
            page.screenshot(path=ARTIFACTS / f"gallery-{width}.png")

        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Trash").click()
        expect(page.get_by_role("heading", name="Trash")).to_be_visible()
        expect(page.locator(".vad-caption", has_text="harbour-copy.webp")).to_be_visible()
        page.wait_for_load_state("networkidle")
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_timeout(600)
            page.screenshot(path=ARTIFACTS / f"trash-{width}.png")
        page.get_by_role("button", name="Restore all").click()
        expect(page.get_by_text("The trash is empty")).to_be_visible()
        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Gallery").click()
        _count(page, total, total)
        browser.close()
