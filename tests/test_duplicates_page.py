"""The Duplicates page through AppTest: the side-by-side compare with keep/delete per image and
the metadata diff, the confirmed "Delete others", and the thresholds shown with their reason."""

from __future__ import annotations

import io

import pytest
from apptest_helpers import button, jpeg_variant, open_page, png, signed_in_app, texts, upload
from PIL import Image
from PIL.PngImagePlugin import PngInfo

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def duplicates_page(app_env, user: str):
    """An original, a smaller recompressed copy and two other pictures, on the Duplicates page at
    the exact and near levels (the tiny random model makes every pair a semantic duplicate)."""
    at = open_page(signed_in_app(app_env, user), "upload")
    original = png(1, (200, 150))
    upload(at, [("original.png", original), ("copy.jpg", jpeg_variant(original, 0.5, 70)), ("other.png", png(2))])
    at = open_page(at, "duplicates")
    at.pills(key="dup_levels").set_value(["exact", "near"])
    at.run()
    return at


def gallery_names(at) -> str:
    return texts(open_page(at, "gallery"))


def test_delete_others_asks_first(app_env):
    at = duplicates_page(app_env, "ida")
    assert not at.exception
    assert "**Cluster 1** · near · 2 images" in texts(at)
    assert not [b for b in at.button if b.label == "Delete others"], "a popover, not a button that deletes"
    assert "Moves **1** image(s) to the trash (Undo in the sidebar):" in texts(at) and "- copy.jpg" in texts(at)
    at.button(key="dup_del_1").click()  # the popover's own confirmation button
    at.run()
    assert "No duplicates at these settings" in texts(at)
    names = gallery_names(at)
    assert "original.png" in names and "copy.jpg" not in names


def test_compare_shows_originals_at_one_scale_a_metadata_diff_and_deletes_what_is_marked(app_env):
    at = duplicates_page(app_env, "jon")
    at.toggle(key="dup_compare_1").set_value(True)
    at.run()
    assert not at.exception
    assert len(at.image) >= 2, "both originals side by side"
    assert "1. keeper · 200×150 · 779 B" in texts(at) and "2. 100×75" in texts(at)
    (table,) = [t for t in at.table if "Size" in t.value.index]
    diff = table.value
    assert list(diff.loc["Size"]) == ["200 × 150 px", "100 × 75 px"]
    assert list(diff.loc["Format"]) == ["PNG", "JPEG"]
    assert list(diff.loc["File"]) == ["original.png", "copy.jpg"]
    assert list(diff.loc["Found by"]) == ["—", "near: pHash"]
    assert "Bold rows differ between the images." in texts(at)
    choices = [c for c in at.segmented_control if c.key and c.key.startswith("dup_choice_1_")]
    assert [c.value for c in choices] == ["Keep", "Delete"], "the keeper is kept, the copy marked"

    choices[1].set_value("Keep")
    at.run()
    assert "Every image is marked Keep: nothing to delete." in texts(at)
    assert not [b for b in at.button if b.key == "dup_apply_1"]

    at.segmented_control(key=choices[1].key).set_value("Delete")
    at.segmented_control(key=choices[0].key).set_value("Delete")
    at.run()
    assert "Every image is marked Delete; keep at least one." in texts(at)

    at.segmented_control(key=choices[0].key).set_value("Keep")
    at.run()
    button(at, "Delete 1 image(s)", key="dup_apply_1").click()
    at.run()
    assert "No duplicates at these settings" in texts(at)
    names = gallery_names(at)
    assert "original.png" in names and "copy.jpg" not in names


def test_page_says_which_thresholds_are_in_use(app_env):
    at = duplicates_page(app_env, "kim")
    assert "Near: pHash within 8 bits." in texts(at)
    at.pills(key="dup_levels").set_value(["near", "semantic"])
    at.run()
    # tiny:random's default, stricter for the two pictures under 112 px (100 x 75 and 96 x 72)
    assert "Near: pHash within 8 bits · Semantic threshold 0.999; up to 0.9993 for the 2 image(s) under 112 px" in (
        texts(at)
    )
    at.button(key="dup_keep_1").click()
    at.run()
    assert "1 cluster(s) kept as they are and hidden for now." in texts(at)


def test_a_large_cluster_shows_its_first_cards_until_asked_for_all(app_env):
    """A cluster of 14 pixel-identical files (each with its own PNG text chunk, so the bytes
    differ) draws the keeper and 11 more, then every card once "Show all" is on."""
    picture = Image.open(io.BytesIO(png(7, (120, 90))))
    files = []
    for number in range(14):
        info = PngInfo()
        info.add_text("copy", str(number))
        out = io.BytesIO()
        picture.save(out, format="PNG", pnginfo=info)
        files.append((f"same-{number:02d}.png", out.getvalue()))
    at = open_page(signed_in_app(app_env, "kai"), "upload")
    upload(at, files)
    at = open_page(at, "duplicates")
    at.pills(key="dup_levels").set_value(["exact"])
    at.run()
    assert not at.exception
    assert "**Cluster 1** · exact · 14 images" in texts(at)
    assert len([b for b in at.button if b.key and b.key.startswith("dup_open_1_")]) == 12
    assert "The keeper and the next 11 of 14 images." in texts(at)
    at.toggle(key="dup_all_1").set_value(True)
    at.run()
    assert len([b for b in at.button if b.key and b.key.startswith("dup_open_1_")]) == 14
