"""core.gallery: listing, filtering, sorting and paging a user's images; tags, delete, similar,
re-embed, re-thumbnail and original bytes, always scoped to the owner.

Real Services everywhere (LocalStore, embedded Qdrant, the tiny random CLIP).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import encode, ingest_files, jpeg, list_keys, pattern, png, solid, textured, tiny_services
from PIL import Image

from core import gallery
from core.gallery import GalleryQuery
from core.hashing import phash_hex
from core.images import decode, open_rgb, thumbnail_bytes
from core.reviews import mark_not_duplicates
from core.services import Services
from core.trash import open_trash

ALICE, BOB = "alice", "bob"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    with tiny_services(tmp_path / "data") as services:
        yield services


@pytest.fixture
def stored(services: Services) -> dict[str, str]:
    """Alice: three images (one a pixel-identical copy of another, as lossless WebP); Bob: one."""
    ids = ingest_files(
        services,
        ALICE,
        {
            "beach.png": png(seed=1),
            "beach-copy.webp": encode(pattern(1), "WEBP", lossless=True),
            "forest.jpg": jpeg(seed=2),
        },
    )
    ids |= {f"bob:{k}": v for k, v in ingest_files(services, BOB, {"bob.png": png(seed=3)}).items()}
    return ids


def payload(services: Services, user: str, image_id: str) -> dict:
    (record,) = services.index.retrieve(user, [image_id])
    return record.payload


def tags_of(services: Services, user: str) -> dict[str, list[str]]:
    frame = gallery.list_images(services, user)
    return dict(zip(frame["filename"], frame["tags"], strict=True))


# --- listing ------------------------------------------------------------------------------------


def test_list_images_one_row_per_image_with_payload_columns(services: Services, stored: dict[str, str]) -> None:
    frame = gallery.list_images(services, ALICE)
    assert list(frame.columns) == gallery.COLUMNS
    assert len(frame) == 3
    rows = {row["filename"]: row for row in frame.to_dict("records")}
    assert set(rows) == {"beach.png", "beach-copy.webp", "forest.jpg"}
    for name, row in rows.items():
        assert row["id"] == stored[name]
        record_payload = payload(services, ALICE, row["id"])
        for column in gallery.COLUMNS[1:]:
            assert row[column] == record_payload[column], column
        assert row["tags"] == []
    assert rows["beach.png"]["format"] == "PNG"
    assert rows["beach-copy.webp"]["format"] == "WEBP"
    assert (rows["forest.jpg"]["width"], rows["forest.jpg"]["height"]) == (96, 64)
    assert rows["beach.png"]["bytes"] == len(png(seed=1))
    assert stored["bob:bob.png"] not in set(frame["id"])

    bob = gallery.list_images(services, BOB)
    assert list(bob["filename"]) == ["bob.png"]


def test_list_images_of_a_user_without_images(services: Services, stored: dict[str, str]) -> None:
    frame = gallery.list_images(services, "carol")
    assert list(frame.columns) == gallery.COLUMNS
    assert frame.empty
    assert gallery.all_tags(frame) == []
    assert gallery.select(gallery.annotate(frame, gallery.Analyses(None, None)), GalleryQuery(text="x")).empty
    page = gallery.paginate(frame, 3, 10)
    assert (page.number, page.count, page.total) == (1, 1, 0)


# --- filter, sort, page -------------------------------------------------------------------------

# Name -> seed; sizes differ, so every sort has one right answer.
SORT_FILES = {
    "delta.png": (4, (40, 30)),
    "alpha.png": (5, (120, 80)),
    "charlie.png": (6, (64, 64)),
    "bravo.png": (7, (90, 20)),
}


@pytest.fixture
def sortable(services: Services) -> tuple[pd.DataFrame, list[str]]:
    """Four images ingested one call at a time (so created_ts follows the order), and the order."""
    order = list(SORT_FILES)
    for name in order:
        seed, size = SORT_FILES[name]
        ingest_files(services, ALICE, {name: png(seed=seed, size=size)})
    return gallery.list_images(services, ALICE), order


def test_every_sort(services: Services, sortable: tuple[pd.DataFrame, list[str]]) -> None:
    frame, order = sortable
    table = gallery.qa_table(services, ALICE)[0]
    quality = dict(zip(table["filename"], table["quality_score"], strict=True))
    assert not any(np.isnan(q) for q in quality.values())
    sizes = dict(zip(frame["filename"], frame["bytes"], strict=True))
    pixels = {n: SORT_FILES[n][1][0] * SORT_FILES[n][1][1] for n in order}
    assert len(set(sizes.values())) == len(sizes)
    expected = {
        "newest": order[::-1],
        "oldest": order,
        "name": sorted(order),
        "name-desc": sorted(order, reverse=True),
        "largest": sorted(order, key=lambda n: -sizes[n]),
        "smallest": sorted(order, key=lambda n: sizes[n]),
        "pixels": sorted(order, key=lambda n: -pixels[n]),
        "unusual": sorted(order),  # no scores yet: all tie, by name
        "quality": sorted(order, key=lambda n: (quality[n], n)),  # worst (lowest) first
    }
    assert set(expected) == set(gallery.SORTS)
    for key, names_in_order in expected.items():
        assert list(gallery.sort(table, key)["filename"]) == names_in_order, key
    assert list(gallery.sort(table, "no such sort")["filename"]) == expected["newest"]
    assert len(frame) == 4  # the input is not changed


def test_sort_breaks_ties_by_file_name_and_puts_missing_values_last() -> None:
    frame = pd.DataFrame(
        {
            "filename": ["b.png", "c.png", "a.png", "d.png"],
            "bytes": [5, 5, 5, 5],
            "created_ts": [1.0, 1.0, 1.0, 1.0],
            "pixels": [4, 4, 4, 4],
            "anomaly_score": [0.5, 0.5, 0.5, None],
            "quality_score": [0.2, 0.2, 0.2, None],
        }
    )
    for key, (_, column, _) in gallery.SORTS.items():
        if column != "filename":
            assert list(gallery.sort(frame, key)["filename"]) == ["a.png", "b.png", "c.png", "d.png"], key


@pytest.fixture
def named(services: Services) -> pd.DataFrame:
    ids = ingest_files(
        services,
        ALICE,
        {
            "Holiday-Beach.png": png(seed=10),
            "a+b.png": png(seed=11),
            "aab.png": png(seed=12),
            "notes (1).png": png(seed=13),
            "forest.jpg": jpeg(seed=14),
        },
    )
    gallery.set_tags(services, ALICE, ids["Holiday-Beach.png"], ["holiday", "sea"])
    gallery.set_tags(services, ALICE, ids["forest.jpg"], ["holiday"])
    gallery.set_tags(services, ALICE, ids["aab.png"], ["sea"])
    return gallery.qa_table(services, ALICE)[0]


def names(frame: pd.DataFrame) -> set[str]:
    return set(frame["filename"])


def test_filter_by_file_name(named: pd.DataFrame) -> None:
    def matching(text: str) -> set[str]:
        return names(gallery.select(named, GalleryQuery(text=text)))

    assert matching("beach") == {"Holiday-Beach.png"}
    assert matching("  HOLIDAY-b ") == {"Holiday-Beach.png"}
    assert matching("a+b") == {"a+b.png"}  # literal, not a regex
    assert matching("(1)") == {"notes (1).png"}
    assert matching(".*") == set()
    assert matching("[") == set()
    assert matching(".png") == names(named) - {"forest.jpg"}
    assert matching("   ") == names(named)
    assert names(gallery.filter_by_name(named, " a+B ")) == {"a+b.png"}  # the Search page's picker
    assert gallery.filter_by_name(named, "  ") is named


def test_filter_by_tag_format_and_size(named: pd.DataFrame) -> None:
    assert gallery.all_tags(named) == ["holiday", "sea"]

    def matching(**fields: object) -> set[str]:
        return names(gallery.select(named, GalleryQuery(**fields)))

    assert matching(tag=("holiday",)) == {"Holiday-Beach.png", "forest.jpg"}
    assert matching(tag=("sea",)) == {"Holiday-Beach.png", "aab.png"}
    assert matching(tag=("sea", "holiday")) == {"Holiday-Beach.png", "aab.png", "forest.jpg"}  # any of them
    assert matching(tag=("Sea",)) == set()  # tags are stored normalised
    assert matching(text="beach", tag=("sea",)) == {"Holiday-Beach.png"}  # and across fields
    assert matching(text="aab", tag=("holiday",)) == set()
    assert matching(format=("JPEG",)) == {"forest.jpg"}
    assert matching(format=("PNG", "JPEG")) == names(named)
    assert {int(b) // 1024 for b in named["bytes"]} == {1, 8, 9}  # the JPEG ~1.5 KB, the PNGs ~9 KB
    assert matching(max_kb=2) == {"forest.jpg"}
    assert matching(min_kb=2) == names(named) - {"forest.jpg"}
    assert matching(min_kb=2, max_kb=2) == set()
    assert matching(min_kb=100) == set()


def test_filter_by_date(named: pd.DataFrame) -> None:
    today = named["day"].iloc[0]
    assert isinstance(today, date)
    assert names(gallery.select(named, GalleryQuery(since=today, until=today))) == names(named)
    assert gallery.select(named, GalleryQuery(since=today + timedelta(days=1))).empty
    assert gallery.select(named, GalleryQuery(until=today - timedelta(days=1))).empty


def test_dataset_fields_default_for_older_images_and_filter(named: pd.DataFrame) -> None:
    assert all(d == ["default"] for d in named["datasets"])
    assert all(s == [] for s in named["splits"])
    assert named["label"].isna().all()
    assert names(gallery.select(named, GalleryQuery(dataset=("default",)))) == names(named)
    assert gallery.select(named, GalleryQuery(split=("train",))).empty
    rows = pd.DataFrame(
        {
            "id": ["1", "2", "3"],
            "filename": ["x.png", "y.png", "z.png"],
            "width": [10, 10, 10],
            "height": [10, 10, 10],
            "bytes": [1, 2, 3],
            "format": ["png"] * 3,
            "created_at": ["2026-01-01T00:00:00+00:00"] * 3,
            "created_ts": [1.0, 2.0, 3.0],
            "datasets": [["cats"], ["cats", "dogs"], None],
            "splits": [["train"], ["train", "val"], []],
            "label": ["cat", None, "dog"],
        }
    )
    table = gallery.annotate(rows, gallery.Analyses(None, None))
    assert list(table["format"]) == ["PNG"] * 3
    assert names(gallery.select(table, GalleryQuery(dataset=("dogs",)))) == {"y.png"}
    assert names(gallery.select(table, GalleryQuery(dataset=("default",)))) == {"z.png"}
    assert names(gallery.select(table, GalleryQuery(split=("val",)))) == {"y.png"}
    assert names(gallery.select(table, GalleryQuery(split=("train",), label=("cat",)))) == {"x.png"}
    assert names(gallery.select(table, GalleryQuery(label=("dog", "cat")))) == {"x.png", "z.png"}


def test_query_round_trips_through_url_parameters() -> None:
    query = GalleryQuery(
        text="beach",
        flag=("dark", "unusual"),
        duplicate=("keeper",),
        review=("unreviewed",),
        tag=("sea",),
        format=("PNG",),
        since=date(2026, 1, 2),
        min_kb=10,
        min_score=0.25,
        sort="unusual",
    )
    params = query.to_params()
    assert params["flag"] == "dark,unusual" and params["since"] == "2026-01-02" and "until" not in params
    assert GalleryQuery.from_params(params) == query
    assert GalleryQuery().to_params() == {}
    assert GalleryQuery().active == 0 and query.active == 9


def test_a_hand_edited_url_still_opens() -> None:
    query = GalleryQuery.from_params(
        {"flag": "dark,nonsense,,dark", "sort": "sideways", "since": "yesterday", "min_kb": "-5", "format": "png"}
    )
    assert query == GalleryQuery(flag=("dark",), min_kb=0, format=("PNG",))
    assert GalleryQuery.from_params({"duplicate": ["keeper", "none"]}).duplicate == ("keeper", "none")
    assert GalleryQuery.from_params({"min_score": "high"}) == GalleryQuery()


def test_paginate() -> None:
    frame = pd.DataFrame({"filename": [f"{i}.png" for i in range(7)]})
    page = gallery.paginate(frame, 2, 3)
    assert (page.number, page.count, page.total) == (2, 3, 7)
    assert list(page.rows["filename"]) == ["3.png", "4.png", "5.png"]
    last = gallery.paginate(frame, 3, 3)
    assert list(last.rows["filename"]) == ["6.png"]
    assert gallery.paginate(frame, 99, 3).number == 3
    assert list(gallery.paginate(frame, 99, 3).rows["filename"]) == ["6.png"]
    assert gallery.paginate(frame, 0, 3).number == 1
    assert gallery.paginate(frame, -5, 3).number == 1
    assert list(gallery.paginate(frame, -5, 3).rows["filename"]) == ["0.png", "1.png", "2.png"]
    assert gallery.paginate(frame, 1, 7).count == 1
    assert gallery.paginate(frame, 1, 6).count == 2
    assert gallery.paginate(frame, 1, 100).count == 1


def test_normalise_tags() -> None:
    assert gallery.normalise_tags(" Cats, dogs ,CATS,, big   Dog ,\tbig dog, ") == ["cats", "dogs", "big dog"]
    assert gallery.normalise_tags("") == []
    assert gallery.normalise_tags(" , ,, ") == []
    assert gallery.normalise_tags("x" * 50) == ["x" * 40]
    assert gallery.normalise_tags(f"{'x' * 50},{'x' * 45}") == ["x" * 40]  # the same after truncation


def test_normalised_tags_are_trimmed_after_truncation() -> None:
    (tag,) = gallery.normalise_tags("a" * 39 + " b")
    assert tag == tag.strip()


# --- QA: quality flags, review, cached analyses, duplicate status -------------------------------


@pytest.fixture
def qa(services: Services) -> dict[str, str]:
    """A dark image, a pixel-identical pair (one duplicate cluster) and two ordinary photos."""
    return ingest_files(
        services,
        ALICE,
        {
            "night.png": encode(solid((6, 6, 8), (96, 64)), "PNG"),
            "beach.png": encode(textured(1), "PNG"),
            "beach-copy.webp": encode(textured(1), "WEBP", lossless=True),
            "forest.jpg": encode(textured(2), "JPEG", quality=92),
            "field.png": encode(textured(5), "PNG"),
        },
    )


def test_quality_flags_come_from_the_payload_without_any_analysis(services: Services, qa: dict) -> None:
    table, analyses = gallery.qa_table(services, ALICE)
    assert analyses == gallery.Analyses(None, None)
    flags = dict(zip(table["filename"], table["quality_flags"], strict=True))
    assert "dark" in flags["night.png"]
    assert "dark" not in flags["beach.png"]
    assert names(gallery.select(table, GalleryQuery(flag=("dark",)))) == {"night.png"}
    assert names(gallery.select(table, GalleryQuery(flag=("none",)))) == names(table) - {"night.png"}
    assert names(gallery.select(table, GalleryQuery(flag=("blurry", "grayscale")))) == {"night.png"}
    worst = gallery.sort(table, "quality").iloc[0]
    assert worst["filename"] == "night.png" and worst["quality_score"] < 0.5
    # without cached analyses, anomaly and duplicate filters match nothing (the page says why)
    assert gallery.select(table, GalleryQuery(duplicate=("none",))).empty
    assert gallery.select(table, GalleryQuery(flag=("unusual",))).empty
    assert table["anomaly_score"].isna().all()


def test_analyses_are_read_from_the_cache_once_computed(services: Services, qa: dict) -> None:
    stamp = gallery.analyses_stamp(services, ALICE)
    computed = gallery.compute_analyses(services, ALICE)
    assert gallery.analyses_stamp(services, ALICE) != stamp
    table, analyses = gallery.qa_table(services, ALICE)
    assert analyses.anomalies is not None and analyses.duplicates is not None
    assert sorted(analyses.anomalies["id"]) == sorted(computed.anomalies["id"]) == sorted(qa.values())
    assert table["anomaly_score"].notna().all()

    def matching(*status: str) -> set[str]:
        return names(gallery.select(table, GalleryQuery(duplicate=status)))

    assert matching("in_cluster") == {"beach.png", "beach-copy.webp"}
    assert len(matching("keeper")) == 1 and len(matching("extra")) == 1
    assert matching("keeper") | matching("extra") == matching("in_cluster")
    assert matching("none") == {"night.png", "forest.jpg", "field.png"}
    assert matching("keeper", "none") == names(table) - matching("extra")
    by_score = gallery.sort(table, "unusual")
    assert list(by_score["anomaly_score"]) == sorted(by_score["anomaly_score"], reverse=True)
    top = float(by_score["anomaly_score"].iloc[0])
    assert names(gallery.select(table, GalleryQuery(min_score=top))) == {by_score["filename"].iloc[0]}

    # a review decision changes the clusters: the cached status no longer applies
    mark_not_duplicates(services.index, ALICE, [qa["beach.png"], qa["beach-copy.webp"]])
    assert gallery.cached_analyses(services, ALICE).duplicates is None
    # a delete changes the images: neither analysis applies any more
    gallery.delete(services, ALICE, [qa["field.png"]])
    assert gallery.cached_analyses(services, ALICE) == gallery.Analyses(None, None)


def test_review_and_untag_in_bulk(services: Services, qa: dict) -> None:
    night, beach, forest = qa["night.png"], qa["beach.png"], qa["forest.jpg"]
    assert gallery.set_review(services, ALICE, [night, beach, "00000000-0000-0000-0000-000000000000"], "confirmed") == 2
    assert gallery.set_review(services, BOB, [forest], "normal") == 0
    assert gallery.set_review(services, ALICE, [forest], "normal") == 1
    table = gallery.qa_table(services, ALICE)[0]
    assert names(gallery.select(table, GalleryQuery(review=("confirmed",)))) == {"night.png", "beach.png"}
    assert names(gallery.select(table, GalleryQuery(review=("normal",)))) == {"forest.jpg"}
    assert names(gallery.select(table, GalleryQuery(review=("unreviewed",)))) == {"beach-copy.webp", "field.png"}
    gallery.set_review(services, ALICE, [beach], None)
    table = gallery.qa_table(services, ALICE)[0]
    assert "beach.png" in names(gallery.select(table, GalleryQuery(review=("unreviewed",))))

    gallery.add_tags(services, ALICE, [night, beach], ["sea", "dark", "keep"])
    assert gallery.remove_tags(services, ALICE, [night, beach, forest], ["dark", "sea"]) == 2
    assert gallery.remove_tags(services, BOB, [night], ["keep"]) == 0
    tags = tags_of(services, ALICE)
    assert tags["night.png"] == tags["beach.png"] == ["keep"]
    assert tags["forest.jpg"] == []


# --- tags ---------------------------------------------------------------------------------------


def test_set_and_add_tags(services: Services, stored: dict[str, str]) -> None:
    beach, forest = stored["beach.png"], stored["forest.jpg"]
    gallery.set_tags(services, ALICE, beach, ["sea", "holiday"])
    assert tags_of(services, ALICE)["beach.png"] == ["sea", "holiday"]

    changed = gallery.add_tags(services, ALICE, [beach, forest], ["holiday", "2024"])
    assert changed == 2
    tags = tags_of(services, ALICE)
    assert tags["beach.png"] == ["sea", "holiday", "2024"]  # merged, no duplicates, order kept
    assert tags["forest.jpg"] == ["holiday", "2024"]
    assert tags["beach-copy.webp"] == []

    gallery.set_tags(services, ALICE, beach, [])
    assert tags_of(services, ALICE)["beach.png"] == []
    assert gallery.add_tags(services, ALICE, ["00000000-0000-0000-0000-000000000000"], ["x"]) == 0


def test_tags_never_touch_another_users_images(services: Services, stored: dict[str, str]) -> None:
    beach, forest, bobs = stored["beach.png"], stored["forest.jpg"], stored["bob:bob.png"]
    gallery.set_tags(services, ALICE, beach, ["mine"])
    before = gallery.list_images(services, ALICE)

    assert gallery.add_tags(services, BOB, [beach, forest], ["stolen"]) == 0
    gallery.set_tags(services, BOB, beach, ["stolen"])
    pd.testing.assert_frame_equal(gallery.list_images(services, ALICE), before)

    assert gallery.add_tags(services, BOB, [beach, bobs], ["bobs"]) == 1  # only his own image
    assert tags_of(services, BOB) == {"bob.png": ["bobs"]}
    pd.testing.assert_frame_equal(gallery.list_images(services, ALICE), before)


# --- delete -------------------------------------------------------------------------------------


def test_delete_moves_to_the_trash_and_keeps_the_objects(services: Services, stored: dict[str, str]) -> None:
    # Deletes are undoable since issue 15.8: the point goes, its objects wait in the store until
    # the trash is purged (tests/test_trash.py covers restore and purge).
    beach = stored["beach.png"]
    all_keys = list_keys(services.store)

    assert gallery.delete(services, ALICE, [beach]) == 1
    assert services.index.retrieve(ALICE, [beach]) == []
    assert list_keys(services.store) == all_keys
    assert set(gallery.list_images(services, ALICE)["filename"]) == {"beach-copy.webp", "forest.jpg"}
    assert gallery.delete(services, ALICE, [beach]) == 0  # already gone
    assert [item.id for item in open_trash(services).items(ALICE)] == [beach]


def test_delete_of_another_users_ids_does_nothing(services: Services, stored: dict[str, str]) -> None:
    all_keys = list_keys(services.store)
    counts = services.index.counts_by_user()
    assert gallery.delete(services, BOB, [stored["beach.png"], stored["forest.jpg"]]) == 0
    assert gallery.delete(services, ALICE, [stored["bob:bob.png"]]) == 0
    assert gallery.delete(services, ALICE, []) == 0
    assert list_keys(services.store) == all_keys
    assert services.index.counts_by_user() == counts == {ALICE: 3, BOB: 1}

    assert gallery.delete(services, BOB, [stored["beach.png"], stored["bob:bob.png"]]) == 1  # his only
    assert services.index.count(BOB) == 0
    assert services.index.count(ALICE) == 3


# --- similar, re-embed, thumbnails, originals ----------------------------------------------------


def test_similar_excludes_the_image_itself(services: Services, stored: dict[str, str]) -> None:
    beach = stored["beach.png"]
    hits = gallery.similar(services, ALICE, beach)
    ids = [h.id for h in hits]
    assert beach not in ids
    assert sorted(ids) == sorted([stored["beach-copy.webp"], stored["forest.jpg"]])  # never Bob's
    assert ids[0] == stored["beach-copy.webp"]  # same pixels
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[0].score > hits[1].score
    assert all(h.payload["user"] == ALICE for h in hits)
    assert len(gallery.similar(services, ALICE, beach, limit=1)) == 1

    assert gallery.similar(services, ALICE, stored["bob:bob.png"]) == []
    assert gallery.similar(services, BOB, beach) == []


def test_re_embed_restores_the_vector_and_phash(services: Services, stored: dict[str, str]) -> None:
    forest = stored["forest.jpg"]
    decoded = decode(jpeg(seed=2))
    expected = services.embedder.embed_images([decoded.image])[0]
    wrong = services.embedder.embed_images([pattern(99)])[0]
    assert not np.allclose(expected, wrong, atol=1e-2)

    (record,) = services.index.retrieve(ALICE, [forest], with_vectors=True)
    np.testing.assert_allclose(record.vector, expected, atol=1e-5)
    record.vector = wrong
    record.payload["phash"] = "0" * 16
    services.index.upsert([record])
    (broken,) = services.index.retrieve(ALICE, [forest], with_vectors=True)
    np.testing.assert_allclose(broken.vector, wrong, atol=1e-5)

    assert gallery.re_embed(services, BOB, forest) is False  # not his
    (still,) = services.index.retrieve(ALICE, [forest], with_vectors=True)
    np.testing.assert_allclose(still.vector, wrong, atol=1e-5)

    assert gallery.re_embed(services, ALICE, forest) is True
    (fixed,) = services.index.retrieve(ALICE, [forest], with_vectors=True)
    np.testing.assert_allclose(fixed.vector, expected, atol=1e-5)
    assert fixed.payload["phash"] == phash_hex(decoded.image)
    assert {k: v for k, v in fixed.payload.items() if k != "phash"} == {
        k: v for k, v in record.payload.items() if k != "phash"
    }
    assert services.index.count(ALICE) == 3


@pytest.mark.parametrize("damage", ["deleted", "corrupted"])
def test_regenerate_thumbnail(services: Services, stored: dict[str, str], damage: str) -> None:
    beach = stored["beach.png"]
    key = payload(services, ALICE, beach)["thumbnail_key"]
    expected = thumbnail_bytes(decode(png(seed=1)))
    if damage == "deleted":
        services.store.delete(key)
    else:
        services.store.put(key, b"not a webp", "image/webp")

    assert gallery.regenerate_thumbnail(services, BOB, beach) is False
    assert services.store.exists(key) == (damage == "corrupted")

    assert gallery.regenerate_thumbnail(services, ALICE, beach) is True
    data = services.store.get(key)
    assert data == expected
    with Image.open(io.BytesIO(data)) as thumb:
        assert thumb.format == "JPEG"
    assert open_rgb(data).size == (96, 64)  # small originals are never upscaled


def test_regenerate_thumbnail_of_an_older_collection_keeps_webp(services: Services, stored: dict[str, str]) -> None:
    """Collections made before JPEG thumbnails have ``.webp`` keys: theirs are made again as WebP."""
    beach = stored["beach.png"]
    key = payload(services, ALICE, beach)["thumbnail_key"].removesuffix(".jpg") + ".webp"
    services.index.set_payload(ALICE, [beach], {"thumbnail_key": key})

    assert gallery.regenerate_thumbnail(services, ALICE, beach) is True
    with Image.open(io.BytesIO(services.store.get(key))) as thumb:
        assert thumb.format == "WEBP"
        assert thumb.size == (96, 64)


def test_original_bytes(services: Services, stored: dict[str, str]) -> None:
    assert gallery.original_bytes(services, ALICE, stored["beach.png"]) == png(seed=1)
    assert gallery.original_bytes(services, ALICE, stored["forest.jpg"]) == jpeg(seed=2)
    assert gallery.original_bytes(services, BOB, stored["beach.png"]) is None
    assert gallery.original_bytes(services, ALICE, stored["bob:bob.png"]) is None
    assert gallery.original_bytes(services, ALICE, "00000000-0000-0000-0000-000000000000") is None
