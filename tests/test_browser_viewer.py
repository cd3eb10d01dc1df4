"""The full-resolution viewer in headless Debian Chromium against a real ``streamlit run``.

Real photos are uploaded once; the viewer is opened by a click on a thumbnail of the Gallery,
Search, Anomalies and Duplicates pages, steps with the arrow keys, zooms to 1:1 on the original's
pixels, runs a page's review action on its key (A on Anomalies, D then Enter on Duplicates) and
closes on Esc. Screenshots at 1280, 1440 and 1920 px go to ``test-artifacts/``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import pytest
from apptest_helpers import jpeg_variant
from helpers import REAL_PHOTOS, running_app
from PIL import Image, ImageEnhance
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

from core.auth import UserStore

PASSWORD = "Viewer-pass-1"
TIMEOUT_MS = 120_000
LARGE = "n02091032_Italian_greyhound.JPEG"  # 2400 x 1600 px

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() and not os.environ.get("CI"),
        reason="Debian chromium is not installed (make test installs it)",
    ),
    pytest.mark.skipif(not REAL_PHOTOS.is_dir(), reason="the shared sample photos are not next to the repository"),
]


def _photos(folder: Path) -> list[Path]:
    """Nine real photos, a near duplicate of the first, a very dark copy and one too big to send as is."""
    folder.mkdir()
    sources = sorted(REAL_PHOTOS.iterdir())[:400:50]
    if (REAL_PHOTOS / LARGE).exists():
        sources.append(REAL_PHOTOS / LARGE)
    files = []
    for source in sources:
        files.append(folder / source.name)
        files[-1].write_bytes(source.read_bytes())
    (folder / "copy-of-first.jpg").write_bytes(jpeg_variant(files[0].read_bytes(), scale=0.9, quality=90))
    dark = ImageEnhance.Brightness(Image.open(files[1]).convert("RGB")).enhance(0.04)
    big = Image.open(files[2]).convert("RGB")
    big = big.resize((5200, round(5200 * big.height / big.width)), Image.Resampling.BICUBIC)
    for name, image in (("dark.jpg", dark), ("huge.jpg", big)):
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=90)
        (folder / name).write_bytes(out.getvalue())
        files.append(folder / name)
    return [*files, folder / "copy-of-first.jpg"]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("viewer")
    UserStore(root / "data").add("vera", PASSWORD)
    env = {**os.environ, "VAD_DATA_DIR": str(root / "data"), "VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu"}
    for name in ("VAD_QDRANT_URL", "VAD_S3_ENDPOINT", "VAD_ADMIN_USER", "VAD_ADMIN_PASSWORD"):
        env.pop(name, None)
    with running_app(root / "streamlit.log", env) as url:
        yield url, _photos(root / "photos")


@pytest.fixture(scope="module")
def page(app):
    from playwright.sync_api import expect, sync_playwright

    url, photos = app
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        tab = browser.new_page(viewport={"width": 1440, "height": 900})
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(url)
        tab.get_by_label("User name", exact=True).fill("vera")
        tab.get_by_label("Password", exact=True).first.fill(PASSWORD)
        tab.get_by_role("button", name="Sign in").click()
        expect(tab.get_by_role("heading", name="Gallery")).to_be_visible()
        go(tab, "Upload")
        tab.locator("input[type=file]").set_input_files([str(p) for p in photos])
        tab.get_by_role("button", name="Add to collection").click()
        expect(tab.get_by_text("Already present")).to_be_visible()
        yield tab
        browser.close()


def go(page, name: str) -> None:
    from playwright.sync_api import expect

    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=name, exact=True, level=1)).to_be_visible()
    page.wait_for_load_state("networkidle")
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0)  # the page's run is over


def open_viewer(page, nth: int = 0):
    """Click the nth thumbnail; wait until the viewer shows its image. Returns the image's stage."""
    from playwright.sync_api import expect

    page.get_by_role("button", name="View image").filter(visible=True).nth(nth).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Image viewer")).to_be_visible()
    stage = dialog.locator(".stage")
    shown_id(stage)
    return stage


def shown_id(stage) -> str:
    """The id of the image the viewer shows, once its pixels are on screen."""
    from playwright.sync_api import expect

    expect(stage).to_have_attribute("data-loaded", re.compile(".+"))
    image_id = stage.get_attribute("data-image-id")
    expect(stage).to_have_attribute("data-loaded", image_id)
    return image_id


def step_to(page, name: str) -> None:
    """Step with the arrow keys to the first image, then forward to the one called ``name``."""
    from playwright.sync_api import expect

    dialog = page.get_by_role("dialog")
    count, names = dialog.locator(".vad-viewer-count"), dialog.locator(".vad-viewer-name")
    total = int(count.inner_text().split("/")[1])
    for key, done in (("ArrowLeft", lambda: count.inner_text().startswith("1 /")), ("ArrowRight", None)):
        for _ in range(total):
            if (done or (lambda: names.inner_text() == name))():
                break
            before = count.inner_text()
            page.keyboard.press(key)
            expect(count).not_to_have_text(before)
    expect(names).to_have_text(name)


def close(page) -> None:
    from playwright.sync_api import expect

    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)


def test_gallery_viewer_steps_zooms_and_closes(page):
    from playwright.sync_api import expect

    go(page, "Gallery")
    stage = open_viewer(page, 0)
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("1 / ")).to_be_visible()
    first = shown_id(stage)
    page.keyboard.press("ArrowRight")
    expect(dialog.get_by_text("2 / ")).to_be_visible()
    expect(stage).not_to_have_attribute("data-image-id", first)
    second = shown_id(stage)
    page.keyboard.press("ArrowLeft")
    expect(stage).to_have_attribute("data-loaded", first)
    assert second != first

    # Step to the large photo: the browser gets its original pixels, and 1 shows them at 1:1.
    step_to(page, LARGE)
    expect(stage).to_have_attribute("data-natural", "2400x1600")
    assert float(stage.get_attribute("data-scale")) < 1, "a 2400 px photo is fitted to the window first"
    ARTIFACTS.mkdir(exist_ok=True)
    for width, height in ((1440, 900), (1280, 800), (1920, 1080)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(500)
        page.screenshot(path=ARTIFACTS / f"viewer-{width}.png")
    page.keyboard.press("1")
    expect(stage).to_have_attribute("data-scale", "1.0000")
    page.screenshot(path=ARTIFACTS / "viewer-1to1.png")
    page.keyboard.press("0")
    expect(stage).not_to_have_attribute("data-scale", "1.0000")
    page.set_viewport_size({"width": 1440, "height": 900})

    # The huge one comes as a display copy, said so under the image.
    step_to(page, "huge.jpg")
    expect(dialog.get_by_text("shown as a 4096 ×")).to_be_visible()
    close(page)


def test_search_result_opens_the_viewer(page):
    from playwright.sync_api import expect

    go(page, "Search")
    page.get_by_label("Describe what you are looking for").fill("a fish")
    page.keyboard.press("Enter")
    expect(page.get_by_text("result(s), most similar first")).to_be_visible()
    stage = open_viewer(page, 1)
    shown_id(stage)
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("dialog").get_by_text("3 / ")).to_be_visible()
    close(page)


def test_anomalies_review_on_a_key(page):
    from playwright.sync_api import expect

    go(page, "Anomalies")
    expect(page.get_by_text("image(s) unlike the rest").first).to_be_visible()
    stage = open_viewer(page, 0)
    dialog = page.get_by_role("dialog")
    name = dialog.locator(".vad-viewer-name").inner_text()
    shown_id(stage)
    page.keyboard.press("a")
    expect(dialog.get_by_text("2 / ").or_(dialog.get_by_text("just now: Anomaly"))).to_be_visible()
    page.keyboard.press("ArrowLeft")
    expect(dialog.get_by_text("just now: Anomaly")).to_be_visible()
    close(page)
    card = page.locator(".vad-caption").filter(has_text=name).first
    expect(card).to_contain_text("confirmed")


def test_anomaly_and_duplicate_exports_download_on_click(page):
    """The exports are built when their button is clicked: every image's scores without internal
    keys, and each duplicate cluster with its keeper among its members."""
    from playwright.sync_api import expect

    go(page, "Anomalies")
    with page.expect_download() as download:
        page.get_by_role("button", name="CSV", exact=True).first.click()
    assert download.value.suggested_filename == "anomalies.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert "dark.jpg" in {row["filename"] for row in rows}
    assert "is_anomaly" in rows[0] and "thumbnail_key" not in rows[0]
    go(page, "Duplicates")
    expect(page.get_by_text("Cluster 1")).to_be_visible()
    with page.expect_download() as download:
        page.get_by_role("button", name="JSON", exact=True).first.click()
    clusters = json.loads(Path(download.value.path()).read_text())
    assert clusters and all(cluster["keeper"] in cluster["members"] for cluster in clusters)


def test_duplicates_delete_on_a_key_is_confirmed(page):
    from playwright.sync_api import expect

    go(page, "Duplicates")
    expect(page.get_by_text("Cluster 1")).to_be_visible()
    before = page.get_by_role("button", name="View image").count()
    stage = open_viewer(page, 1)
    dialog = page.get_by_role("dialog")
    doomed = dialog.locator(".vad-viewer-name").inner_text()
    shown_id(stage)
    page.keyboard.press("d")
    expect(dialog.get_by_text("Move this image to the trash?")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "viewer-confirm-delete.png")
    page.keyboard.press("Enter")
    expect(dialog.get_by_text("Move this image to the trash?")).to_have_count(0)
    expect(dialog.locator(".vad-viewer-name")).not_to_have_text(doomed)
    close(page)
    expect(page.get_by_role("button", name="View image")).not_to_have_count(before)
    expect(page.get_by_text(doomed)).to_have_count(0, timeout=15_000)  # the run after closing has ended
