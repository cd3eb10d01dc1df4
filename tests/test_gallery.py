"""core.gallery: listing, filtering, sorting and paging a user's images; tags, delete, similar,
re-embed, re-thumbnail and original bytes, always scoped to the owner.

Real Services everywhere (LocalStore, embedded Qdrant, the tiny random CLIP).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import encode, ingest_files, jpeg, list_keys, pattern, png, tiny_services
from PIL import Image

from core import gallery
from core.hashing import phash_hex
from core.images import decode, open_rgb, thumbnail_bytes
from core.services import Services

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
    assert gallery.filter_and_sort(frame, "x").empty
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


def test_every_sort(sortable: tuple[pd.DataFrame, list[str]]) -> None:
    frame, order = sortable
    sizes = dict(zip(frame["filename"], frame["bytes"], strict=True))
    assert len(set(sizes.values())) == len(sizes)
    expected = {
        "Newest first": order[::-1],
        "Oldest first": order,
        "Name A-Z": sorted(order),
        "Name Z-A": sorted(order, reverse=True),
        "Largest file": sorted(order, key=lambda n: -sizes[n]),
        "Smallest file": sorted(order, key=lambda n: sizes[n]),
    }
    assert set(expected) == set(gallery.SORTS)
    for sort, names in expected.items():
        assert list(gallery.filter_and_sort(frame, sort=sort)["filename"]) == names, sort
    assert list(gallery.filter_and_sort(frame, sort="no such sort")["filename"]) == expected["Newest first"]
    assert len(frame) == 4  # the input is not changed


def test_sort_breaks_ties_by_file_name() -> None:
    frame = pd.DataFrame(
        {"filename": ["b.png", "c.png", "a.png"], "bytes": [5, 5, 5], "created_ts": [1.0, 1.0, 1.0], "tags": [[]] * 3}
    )
    for sort, (column, _) in gallery.SORTS.items():
        if column != "filename":
            assert list(gallery.filter_and_sort(frame, sort=sort)["filename"]) == ["a.png", "b.png", "c.png"], sort


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
            "forest.png": png(seed=14),
        },
    )
    gallery.set_tags(services, ALICE, ids["Holiday-Beach.png"], ["holiday", "sea"])
    gallery.set_tags(services, ALICE, ids["forest.png"], ["holiday"])
    gallery.set_tags(services, ALICE, ids["aab.png"], ["sea"])
    return gallery.list_images(services, ALICE)


def names(frame: pd.DataFrame) -> set[str]:
    return set(frame["filename"])


def test_filter_by_file_name(named: pd.DataFrame) -> None:
    assert names(gallery.filter_and_sort(named, "beach")) == {"Holiday-Beach.png"}
    assert names(gallery.filter_and_sort(named, "  HOLIDAY-b ")) == {"Holiday-Beach.png"}
    assert names(gallery.filter_and_sort(named, "a+b")) == {"a+b.png"}  # literal, not a regex
    assert names(gallery.filter_and_sort(named, "(1)")) == {"notes (1).png"}
    assert names(gallery.filter_and_sort(named, ".*")) == set()
    assert names(gallery.filter_and_sort(named, "[")) == set()
    assert names(gallery.filter_and_sort(named, ".png")) == names(named)
    assert names(gallery.filter_and_sort(named, "   ")) == names(named)


def test_filter_by_tag(named: pd.DataFrame) -> None:
    assert gallery.all_tags(named) == ["holiday", "sea"]
    assert names(gallery.filter_and_sort(named, tag="holiday")) == {"Holiday-Beach.png", "forest.png"}
    assert names(gallery.filter_and_sort(named, tag="sea")) == {"Holiday-Beach.png", "aab.png"}
    assert names(gallery.filter_and_sort(named, tag="Sea")) == set()  # tags are stored normalised
    assert names(gallery.filter_and_sort(named, "beach", tag="sea")) == {"Holiday-Beach.png"}
    assert names(gallery.filter_and_sort(named, "aab", tag="holiday")) == set()
    assert names(gallery.filter_and_sort(named, tag=None)) == names(named)


def test_filter_by_tag_when_the_name_filter_matches_nothing(named: pd.DataFrame) -> None:
    assert gallery.filter_and_sort(named, "no such name", tag="holiday").empty
    assert gallery.filter_and_sort(named.iloc[0:0], tag="holiday").empty


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


def test_delete_removes_the_point_and_both_objects(services: Services, stored: dict[str, str]) -> None:
    beach = stored["beach.png"]
    keys = payload(services, ALICE, beach)
    objects = {keys["original_key"], keys["thumbnail_key"]}
    all_keys = list_keys(services.store)
    assert objects <= all_keys

    assert gallery.delete(services, ALICE, [beach]) == 1
    assert services.index.retrieve(ALICE, [beach]) == []
    assert list_keys(services.store) == all_keys - objects
    assert set(gallery.list_images(services, ALICE)["filename"]) == {"beach-copy.webp", "forest.jpg"}
    assert gallery.delete(services, ALICE, [beach]) == 0  # already gone


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
        assert thumb.format == "WEBP"
    assert open_rgb(data).size == (96, 64)  # small originals are never upscaled


def test_original_bytes(services: Services, stored: dict[str, str]) -> None:
    assert gallery.original_bytes(services, ALICE, stored["beach.png"]) == png(seed=1)
    assert gallery.original_bytes(services, ALICE, stored["forest.jpg"]) == jpeg(seed=2)
    assert gallery.original_bytes(services, BOB, stored["beach.png"]) is None
    assert gallery.original_bytes(services, ALICE, stored["bob:bob.png"]) is None
    assert gallery.original_bytes(services, ALICE, "00000000-0000-0000-0000-000000000000") is None
