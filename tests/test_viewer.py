"""The full-resolution viewer (app/viewer.py) in AppTest, and what it sends the browser (core/display.py).

A click on a shared thumbnail card opens the viewer on the page's list; previous/next, the page's
review actions (a delete asked first), the details dialog and an unreadable original, each driven
through the app's real widgets on a real data folder.
"""

from __future__ import annotations

import io
import json

from apptest_helpers import open_page, png, signed_in_app, texts, upload
from PIL import Image

from app import ui
from core.display import DISPLAY_MAX_SIDE, card_thumbnail, display_image


def _encoded(size: tuple[int, int], kind: str, mode: str = "RGB") -> bytes:
    image = Image.open(io.BytesIO(png(5, size))).convert(mode)
    out = io.BytesIO()
    image.save(out, format=kind)
    return out.getvalue()


def _view_buttons(at) -> list:
    return [b for b in at.button if b.key and b.key.startswith("vad_view_")]


def _shown(at) -> dict:
    """What the image component was given on the last run."""
    (component,) = at.get("bidi_component")
    return json.loads(component.proto.json)


def _position(at) -> str:
    return next(m.value for m in at.markdown if "vad-viewer-count" in m.value)


def test_originals_a_browser_shows_are_sent_as_they_are():
    for kind, mime in (("JPEG", "image/jpeg"), ("PNG", "image/png"), ("WEBP", "image/webp")):
        data = _encoded((640, 480), kind)
        shown = display_image(data)
        assert (shown.data, shown.mime_type, shown.width, shown.height, shown.original) == (data, mime, 640, 480, True)


def test_huge_or_foreign_originals_get_a_bounded_jpeg_copy():
    huge = display_image(_encoded((DISPLAY_MAX_SIDE + 904, 3000), "JPEG"))
    assert not huge.original and huge.mime_type == "image/jpeg"
    assert (huge.width, huge.height) == (DISPLAY_MAX_SIDE, round(3000 * DISPLAY_MAX_SIDE / (DISPLAY_MAX_SIDE + 904)))
    tiff = display_image(_encoded((300, 200), "TIFF", "RGBA"))
    assert (tiff.original, tiff.mime_type, tiff.width, tiff.height) == (False, "image/jpeg", 300, 200)
    assert Image.open(io.BytesIO(tiff.data)).format == "JPEG"
    heavy = display_image(_encoded((400, 300), "PNG"), max_bytes=1000)
    assert not heavy.original, "an original over the byte limit is re-encoded"


def test_cards_get_jpeg_thumbnails_as_stored_and_older_webp_ones_converted():
    stored = _encoded((256, 192), "JPEG")
    assert card_thumbnail(stored) is stored  # what ingest stores goes as it is
    older = card_thumbnail(_encoded((256, 192), "WEBP"))
    assert older is not None
    with Image.open(io.BytesIO(older)) as converted:
        assert (converted.format, converted.size) == ("JPEG", (256, 192))
    assert card_thumbnail(b"not an image") is None


def test_a_thumbnail_click_opens_the_viewer_on_the_pages_list(app_env):
    at = open_page(signed_in_app(app_env, "vic"), "upload")
    upload(at, [(f"p{i}.png", png(10 + i, (640, 480))) for i in range(4)])
    open_page(at, "gallery")
    views = _view_buttons(at)
    assert len(views) == 4
    views[1].click()
    at.run()
    assert not at.exception
    assert ">2 / 4<" in _position(at)
    first = _shown(at)
    assert first["src"] and not first["problem"]
    assert "640 × 480 px · PNG" in texts(at)

    at.button(key="vad_viewer_next").click()
    at.run()
    assert ">3 / 4<" in _position(at)
    assert _shown(at)["id"] != first["id"]
    assert _shown(at)["preload"], "the image before it was read already: the browser loads it ahead"
    at.button(key="vad_viewer_prev").click()
    at.run()
    at.button(key="vad_viewer_prev").click()
    at.run()
    assert ">1 / 4<" in _position(at)
    assert at.button(key="vad_viewer_prev").disabled

    # Details swap the dialogs; closing the details would come back to the same image.
    at.button(key="vad_viewer_details").click()
    at.run()
    assert "Most similar images" in texts(at)
    assert at.session_state["vad_viewer"].position == 0


def test_delete_key_asks_first_then_deletes_and_moves_on(app_env):
    at = open_page(signed_in_app(app_env, "wes"), "upload")
    upload(at, [(f"d{i}.png", png(40 + i)) for i in range(3)])
    open_page(at, "gallery")
    _view_buttons(at)[0].click()
    at.run()
    doomed = _shown(at)["id"]
    at.button(key="vad_viewer_action_D").click()
    at.run()
    assert "Move this image to the trash?" in texts(at)
    assert "**3** image(s)" in texts(at), "nothing is deleted before the confirmation"
    assert _shown(at)["short"], "the image makes room for the question"
    at.button(key="vad_viewer_confirm_no").click()
    at.run()
    assert "Move this image to the trash?" not in texts(at)

    at.button(key="vad_viewer_action_D").click()
    at.run()
    at.button(key="vad_viewer_confirm_yes").click()
    at.run()
    assert not at.exception
    assert ">1 / 2<" in _position(at)
    assert _shown(at)["id"] != doomed
    viewer = at.session_state["vad_viewer"]
    assert doomed not in [r["id"] for r in viewer.rows]
    assert at.session_state["trash_undo"].count == 1, "it went to the trash, with an Undo in the sidebar"


def test_anomaly_review_keys_store_the_review_and_advance(app_env):
    at = open_page(signed_in_app(app_env, "xia"), "upload")
    dark = Image.new("RGB", (200, 150), (3, 3, 3))
    out = io.BytesIO()
    dark.save(out, format="PNG")
    upload(at, [(f"a{i}.png", png(60 + i, (200, 150))) for i in range(5)] + [("dark.png", out.getvalue())])
    open_page(at, "anomalies")
    assert "image(s) unlike the rest" in texts(at)
    _view_buttons(at)[0].click()
    at.run()
    reviewed = _shown(at)["id"]
    at.button(key="vad_viewer_action_A").click()
    at.run()
    assert not at.exception
    assert _shown(at)["id"] != reviewed or ">1 / 1<" in _position(at), "a review moves on to the next image"
    assert at.session_state["vad_viewer"].done == {reviewed: "Anomaly"}
    services = ui.services()  # the app's own, cached in this process
    assert services.index.retrieve("xia", [reviewed])[0].payload["anomaly_review"] == "confirmed"


def test_an_unreadable_original_is_said_not_crashed(app_env):
    at = open_page(signed_in_app(app_env, "yan"), "upload")
    upload(at, [(f"r{i}.png", png(90 + i)) for i in range(3)])
    open_page(at, "gallery")
    _view_buttons(at)[0].click()
    at.run()
    viewer = at.session_state["vad_viewer"]
    viewer.store.delete(viewer.rows[2]["original_key"])  # not read yet: two steps away
    at.button(key="vad_viewer_next").click()
    at.run()
    at.button(key="vad_viewer_next").click()
    at.run()
    assert not at.exception
    shown = _shown(at)
    assert shown["src"] == "" and "could not be read" in shown["problem"]


def _explorer_like_page(ids: list[str]) -> None:
    """A page that opens the viewer on a list of ids, as the Explorer does for a clicked point."""
    import streamlit as st

    from app import detail, ui

    if st.button("Open the third"):
        ui.view_images(ids, 2)
    detail.render_if_open()


def test_view_images_opens_the_viewer_on_ids(app_env):
    from streamlit.testing.v1 import AppTest

    at = open_page(signed_in_app(app_env, "zed"), "upload")
    upload(at, [(f"z{i}.png", png(120 + i)) for i in range(3)])
    ids = list(ui.image_listing("zed")["id"])
    page = AppTest.from_function(_explorer_like_page, args=([ids[0], "not-an-image", ids[1], ids[2]],))
    page.session_state["username"] = "zed"
    page.run()
    page.button[0].click()
    page.run()
    assert not page.exception
    assert ">2 / 3<" in _position(page), "the unknown id is left out, the clicked image stays current"
    assert _shown(page)["id"] == ids[1] and _shown(page)["src"]


def test_a_card_name_is_escaped_after_its_badge_in_the_two_line_class():
    shown = ui.card_name("<img src=x onerror=alert(1)>.png", badge="<b>KEEP</b> · ")
    assert shown.startswith("<span class='vad-name'><b>KEEP</b> · &lt;img")
    assert "<img" not in shown.removeprefix("<span class='vad-name'><b>KEEP</b> · ")
