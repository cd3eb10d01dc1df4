"""The Streamlit app through AppTest: sign-in gate, registration, upload, gallery, search, isolation."""

from __future__ import annotations

import pytest
from apptest_helpers import (
    PASSWORD,
    button,
    jpeg_variant,
    new_app,
    open_page,
    png,
    sign_in,
    signed_in_app,
    texts,
    upload,
)

from core.auth import UserStore

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_every_page_requires_sign_in(app_env):
    at = new_app()
    assert not at.exception
    assert [t.label for t in at.tabs] == ["Sign in", "Create account"]
    assert "Gallery" not in [t.value for t in at.title]
    for page in ("upload", "gallery", "search", "account", "users"):
        open_page(at, page)
        assert at.session_state["authentication_status"] is not True
        assert not [t.value for t in at.title], f"{page} rendered without sign-in"


def test_wrong_password_is_refused(app_env):
    UserStore(app_env).add("alice", PASSWORD)
    at = sign_in(new_app(), "alice", "not-the-password")
    assert at.session_state["authentication_status"] is False
    assert "Wrong user name or password" in texts(at)


def test_registration_then_sign_in(app_env):
    at = new_app()
    fields = {t.label: t for t in at.text_input[2:]}
    fields["First name"].input("Carol")
    fields["Last name"].input("Jones")
    fields["Email"].input("carol@example.com")
    fields["Username"].input("carol")
    at.text_input[6].input("Secret-pass-1")
    at.text_input[7].input("Secret-pass-1")
    button(at, "Create account").click()
    at.run()
    assert "Account carol created" in texts(at)
    stored = UserStore(app_env)
    assert stored.exists("carol") and stored.users["carol"]["password"].startswith("$2")
    assert stored.path.stat().st_mode & 0o777 == 0o600
    sign_in(at, "carol", "Secret-pass-1")
    assert at.session_state["authentication_status"] is True
    assert "Gallery" in [t.value for t in at.title]


def test_registration_can_be_switched_off(app_env, monkeypatch):
    monkeypatch.setenv("VAD_ALLOW_REGISTRATION", "false")
    at = new_app()
    assert [t.label for t in at.tabs] == ["Sign in"]


def test_new_user_sees_empty_states(app_env):
    at = signed_in_app(app_env, "dora")
    assert "No images yet" in texts(at)
    assert "Start by adding images" in texts(open_page(at, "upload"))
    assert "Nothing to search yet" in texts(open_page(at, "search"))


def test_upload_reports_each_file_and_warns_about_near_duplicates(app_env):
    at = open_page(signed_in_app(app_env, "erin"), "upload")
    original = png(1, (160, 120))
    upload(at, [("one.png", original), ("two.png", png(2)), ("notes.png", b"not an image at all"), ("empty.jpg", b"")])
    assert not at.exception
    table = at.dataframe[0].value
    status = dict(zip(table["path"], table["status"], strict=True))
    assert status == {"one.png": "stored", "two.png": "stored", "notes.png": "rejected", "empty.jpg": "rejected"}
    reasons = dict(zip(table["path"], table["reason"], strict=True))
    assert "not an image" in reasons["notes.png"] and "zero bytes" in reasons["empty.jpg"]
    metrics = {m.label: m.value for m in at.main.metric}
    assert (metrics["Stored"], metrics["Already present"], metrics["Rejected"]) == ("2", "0", "2")

    upload(at, [("one-again.png", original), ("one-small.jpg", jpeg_variant(original))])
    table = at.dataframe[0].value
    assert list(table["status"]) == ["present", "stored"]
    warning = " ".join(w.value for w in at.warning)
    assert "look like images you already had" in warning
    assert "new: one-small.jpg" in texts(at) and "stored: one.png" in texts(at)


def test_gallery_pages_and_deletes(app_env):
    at = open_page(signed_in_app(app_env, "fred"), "upload")
    upload(at, [(f"img{i:02d}.png", png(100 + i)) for i in range(30)])
    open_page(at, "gallery")
    assert "**30** image(s) · page 1 of 2" in texts(at)
    assert len([b for b in at.button if b.label == "Open"]) == 24
    button(at, "Next").click()
    at.run()
    assert "page 2 of 2" in texts(at)
    assert len([b for b in at.button if b.label == "Open"]) == 6

    # Filter, then select two images and move them to the trash; Undo brings them back.
    # (Since issue 15.8 a delete is undoable instead of confirmed: see tests/test_trash.py.)
    at.text_input(key="gallery_text").input("img0")
    at.run()
    assert "**10** image(s) of 30" in texts(at)
    assert at.query_params["text"] == "img0", "the filter is kept in the URL"
    checks = [c for c in at.checkbox if c.key and c.key.startswith("select_")]
    checks[0].check()
    checks[1].check()
    at.run()
    assert "**2 selected**" in texts(at)
    assert button(at, "Move 2 to the trash", key="bulk_delete")
    button(at, "Move 2 to the trash", key="bulk_delete").click()
    at.run()
    assert "**8** image(s) of 28" in texts(at)
    assert "2 image(s) moved to the trash" in [m.value for m in at.sidebar.markdown]
    button(at, "Undo", key="trash_undo_button").click()
    at.run()
    assert "**10** image(s) of 30" in texts(at)
    at.text_input(key="gallery_text").input("")
    at.run()
    assert "**30** image(s) · page 1 of 2" in texts(at)
    assert "text" not in at.query_params


def test_detail_view_tags_and_deletes(app_env):
    at = open_page(signed_in_app(app_env, "gina"), "upload")
    upload(at, [("a.png", png(7)), ("b.png", png(8))])
    open_page(at, "gallery")
    at.button(key=next(b.key for b in at.button if b.label == "Open")).click()
    at.run()
    assert "Most similar images" in texts(at)
    tag_box = next(t for t in at.text_input if t.key and t.key.startswith("tags_"))
    tag_box.input("Beach,  sunset , beach")
    button(at, "Save tags").click()
    at.run()
    assert at.multiselect(key="gallery_tag").options == ["beach", "sunset"]
    next(b for b in at.button if b.key and b.key.startswith("delete_")).click()
    at.run()
    assert "**1** image(s)" in texts(at)


def test_search_by_stored_image_upload_and_text(app_env):
    at = open_page(signed_in_app(app_env, "hank"), "upload")
    upload(at, [(f"p{i}.png", png(200 + i)) for i in range(5)])
    open_page(at, "search")
    assert at.segmented_control(key="search_mode").value == "Text"
    at.text_input(key="search_text").input("a red car")
    at.run()
    assert "**5** result(s)" in texts(at)

    at.segmented_control(key="search_mode").set_value("Stored image")
    at.run()
    assert "**4** result(s)" in texts(at), "the query image itself must be excluded"
    at.text_input(key="search_pick_filter").input("p3")
    at.run()
    assert "query: p3.png" in texts(at)
    assert "p3.png" not in next(m.value for m in at.markdown if "class='vad-score'" in m.value)

    at.segmented_control(key="search_mode").set_value("Upload an image")
    at.run()
    at.file_uploader(key="search_upload").set_value(("q.png", png(200), "image/png"))
    at.run()
    assert "**5** result(s)" in texts(at)
    scores = [m.value for m in at.markdown if "class='vad-score'" in m.value]
    assert "1.000" in scores[0], "the same image must come first with similarity 1"

    at.file_uploader(key="search_upload").set_value(("bad.jpg", b"\xff\xd8 broken", "image/jpeg"))
    at.run()
    assert not at.exception
    assert any("not an image" in e.value for e in at.main.error)


def test_users_cannot_see_each_other(app_env):
    alice = open_page(signed_in_app(app_env, "alice"), "upload")
    upload(alice, [("alice-private.png", png(300))])
    alice_id = alice.dataframe[0].value  # stored
    assert list(alice_id["status"]) == ["stored"]

    bob = signed_in_app(app_env, "bob")
    assert "No images yet" in texts(bob)
    assert "Nothing to search yet" in texts(open_page(bob, "search"))
    # Even knowing the id of alice's image, bob's detail view finds nothing.
    upload(open_page(bob, "upload"), [("bob-own.png", png(301))])
    open_page(bob, "gallery")
    assert "**1** image(s)" in texts(bob) and "alice-private" not in texts(bob)
    alice_image = _ids_of(alice)[0]
    bob.session_state["detail_id"] = alice_image
    bob.run()
    assert "no longer in the collection" in texts(bob)
    assert "alice-private" not in texts(bob)
    assert "**1** image(s)" in texts(open_page(alice, "gallery"))


def _ids_of(at) -> list[str]:
    open_page(at, "gallery")
    return [b.key.removeprefix("open_") for b in at.button if b.key and b.key.startswith("open_")]


def test_users_page_is_for_admins_only(app_env):
    at = signed_in_app(app_env, "ivan")
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        open_page(at, "users")  # not even in the navigation for a plain user
    admin = signed_in_app(app_env, "root", admin=True)
    open_page(admin, "users")
    assert "Users" in [t.value for t in admin.title]
    assert set(admin.dataframe[0].value["username"]) == {"ivan", "root"}
