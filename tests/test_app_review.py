"""The Duplicates and Anomalies pages through AppTest."""

from __future__ import annotations

import pytest
from apptest_helpers import jpeg_variant, new_app, open_page, png, sign_in, signed_in_app, texts, upload

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _metric(at, label: str) -> str:
    return next(m.value for m in at.main.metric if m.label == label)


def _with_near_duplicates(app_env, user: str):
    at = open_page(signed_in_app(app_env, user), "upload")
    original = png(1, (200, 150))
    upload(
        at,
        [
            ("original.png", original),
            ("copy.jpg", jpeg_variant(original, 0.9, 80)),
            ("other.png", png(2)),
            ("third.png", png(3)),
        ],
    )
    return open_page(at, "duplicates")


def test_new_user_sees_empty_states(app_env):
    at = signed_in_app(app_env, "newbie")
    assert "No images yet" in texts(open_page(at, "duplicates"))
    assert "Not enough images yet" in texts(open_page(at, "anomalies"))


def test_duplicates_page_shows_a_cluster_with_its_keeper_and_deletes_the_rest(app_env):
    at = _with_near_duplicates(app_env, "dana")
    assert not at.exception
    assert _metric(at, "Clusters") == "1" and _metric(at, "Would be deleted") == "1"
    assert "**Cluster 1** · near · 2 images" in texts(at)
    assert "KEEP</b> · original.png" in texts(at), "the larger original is the keeper"
    assert "Keeper: most pixels (200×150)" in texts(at)
    assert at.button(key="dup_bulk").disabled, "bulk delete needs the confirmation"
    at.button(key="dup_del_1").click()
    at.run()
    assert "No duplicates at these settings" in texts(at)
    assert "**3** image(s)" in texts(open_page(at, "gallery"))


def test_not_duplicates_is_remembered(app_env):
    at = _with_near_duplicates(app_env, "eric")
    at.button(key="dup_not_1").click()
    at.run()
    assert "No duplicates at these settings" in texts(at)
    again = sign_in(new_app(), "eric")  # a new session: the decision comes from the index
    assert "No duplicates at these settings" in texts(open_page(again, "duplicates"))


def test_not_duplicates_leaves_the_other_clusters_in_place(app_env):
    """With two clusters, "Not duplicates" on one takes it out of the list; the other stays, and
    the decision holds in a new session. (In a browser only the list reruns; AppTest runs the
    whole page, so this checks what is shown, not how.)"""
    at = open_page(signed_in_app(app_env, "gina"), "upload")
    first, second = png(1, (200, 150)), png(2, (180, 120))
    upload(
        at,
        [
            ("first.png", first),
            ("first-copy.jpg", jpeg_variant(first, 0.9, 80)),
            ("second.png", second),
            ("second-copy.jpg", jpeg_variant(second, 0.9, 80)),
            ("other.png", png(3)),
        ],
    )
    at = open_page(at, "duplicates")
    assert {"**Cluster 1**", "**Cluster 2**"} <= {t.split(" · ")[0] for t in texts(at).splitlines()}
    marked = "first" if "KEEP</b> · first.png" in texts(at).split("**Cluster 2**")[0] else "second"
    at.button(key="dup_not_1").click()
    at.run()
    shown = texts(at)
    kept = "second" if marked == "first" else "first"
    assert f"KEEP</b> · {kept}.png" in shown and f"KEEP</b> · {marked}.png" not in shown
    again = texts(open_page(sign_in(new_app(), "gina"), "duplicates"))
    assert f"{kept}.png" in again and f"{marked}.png" not in again


def test_bulk_delete_after_confirmation_and_thresholds(app_env):
    at = _with_near_duplicates(app_env, "fay")
    at.pills(key="dup_levels").set_value(["exact", "near"])
    at.slider(key="dup_near").set_value(0)
    at.run()
    assert "No duplicates at these settings" in texts(at), "distance 0 only matches identical hashes"
    at.slider(key="dup_near").set_value(8)
    at.run()
    at.checkbox(key="dup_bulk_confirm").check()
    at.run()
    at.button(key="dup_bulk").click()
    at.run()
    assert "No duplicates at these settings" in texts(at)
    assert "copy.jpg" not in texts(open_page(at, "gallery"))


def test_anomalies_page_ranks_reviews_and_filters(app_env):
    at = open_page(signed_in_app(app_env, "gus"), "upload")
    upload(at, [(f"p{i}.png", png(40 + i)) for i in range(12)])
    open_page(at, "anomalies")
    assert not at.exception
    assert at.get("plotly_chart"), "the score histogram is shown"
    flagged = next(m.value for m in at.markdown if "image(s) unlike the rest" in m.value)
    assert flagged.startswith("**")
    prefixes = ("anom_confirm_", "anomq_confirm_")  # unlike the rest / quality problems
    cards = [b.key for b in at.button if b.key and b.key.startswith(prefixes)]
    assert cards, "images with flags are listed"
    at.button(key=cards[0]).click()
    at.run()
    assert "confirmed" in texts(at)
    at.toggle(key="anom_reviewed").set_value(False)
    at.run()
    remaining = [b.key for b in at.button if b.key and b.key.startswith(prefixes)]
    assert cards[0] not in remaining, "reviewed images can be hidden"
    at.selectbox(key="anom_method").set_value("iforest")
    at.run()
    assert not at.exception
    assert any("Isolation Forest ranked real outliers" in w.value for w in at.warning), "offered with a warning"


def test_pages_show_the_graph_version_and_recompute_it(app_env):
    at = _with_near_duplicates(app_env, "hana")
    captions = [c.value for c in at.caption]
    assert "Neighbour graph v1 · 4 images · exact" in captions, captions
    at.button(key="duplicates_recompute_graph").click()
    at.run()
    assert not at.exception
    assert "Neighbour graph v2 · 4 images · exact" in [c.value for c in at.caption]
    assert _metric(at, "Clusters") == "1", "the same answer from the rebuilt graph"
    open_page(at, "anomalies")
    assert "Neighbour graph v2 · 4 images · exact" in [c.value for c in at.caption], "one graph for every page"


def test_a_review_shows_in_the_gallery_and_survives_a_new_version(app_env):
    """A review does not reload the collection (the page overlays it on its cached report), yet
    the Gallery's review filter sees it at once, and so does the report read after a change."""
    at = open_page(signed_in_app(app_env, "ivy"), "upload")
    upload(at, [(f"p{i}.png", png(40 + i)) for i in range(12)])
    open_page(at, "anomalies")
    cards = [b.key for b in at.button if b.key and b.key.startswith(("anom_confirm_", "anomq_confirm_"))]
    assert cards
    image_id = cards[0].split("_confirm_", 1)[1]
    at.button(key=cards[0]).click()
    at.run()
    open_page(at, "gallery")
    at.multiselect(key="gallery_review").set_value(["confirmed"])
    at.run()
    assert "**1** image(s) of 12" in texts(at)
    assert [b.key for b in at.button if b.key and b.key.startswith("open_")] == [f"open_{image_id}"]
    at.multiselect(key="gallery_review").set_value([])
    at.run()
    upload(open_page(at, "upload"), [("late.png", png(99))])  # a new version of the collection
    open_page(at, "anomalies")
    at.toggle(key="anom_reviewed").set_value(False)
    at.run()
    remaining = [b.key for b in at.button if b.key and b.key.startswith(("anom_confirm_", "anomq_confirm_"))]
    assert cards[0] not in remaining, "the review was written to the index, not only overlaid"
