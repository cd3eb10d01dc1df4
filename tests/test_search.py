"""core.search: by a stored image, by an uploaded image (validated, embedded, never stored) and by
text; min_score; results only ever from the searching user's collection.

Real Services (LocalStore, embedded Qdrant, the tiny random CLIP). "Matching" images are files
whose decoded pixels are identical (PNG vs lossless WebP/BMP), so the expected score is ~1
whatever the random weights are.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import encode, ingest_files, jpeg, list_keys, pattern, png, tiny_services, truncated_jpeg

from core import search
from core.embed import TextSearchUnavailable, load_embedder
from core.images import ImageRejected, decode
from core.index import SearchHit, collection_name
from core.index.edge import EdgeIndex
from core.services import Services
from core.settings import load_settings
from core.storage import LocalStore

ALICE, BOB = "alice", "bob"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    with tiny_services(tmp_path / "data") as services:
        yield services


@pytest.fixture
def stored(services: Services) -> dict[str, str]:
    """Alice: a PNG and a pixel-identical lossless WebP of it, and three unrelated images.
    Bob: a file with exactly the bytes of Alice's PNG, and one of his own."""
    alice = ingest_files(
        services,
        ALICE,
        {
            "cat.png": png(seed=1),
            "cat.webp": encode(pattern(1), "WEBP", lossless=True),
            "dog.png": png(seed=2),
            "fox.jpg": jpeg(seed=3),
            "owl.png": png(seed=4, size=(64, 96)),
        },
    )
    bob = ingest_files(services, BOB, {"bobcat.png": png(seed=1), "bobdog.png": png(seed=5)})
    assert np.array_equal(np.asarray(decode(png(seed=1)).image), np.asarray(decode(alice_webp()).image))
    return alice | {f"bob:{name}": image_id for name, image_id in bob.items()}


def alice_webp() -> bytes:
    return encode(pattern(1), "WEBP", lossless=True)


def alice_ids(stored: dict[str, str]) -> set[str]:
    return {image_id for name, image_id in stored.items() if not name.startswith("bob:")}


def assert_only_users(hits: list[SearchHit], user: str, ids: set[str]) -> None:
    assert hits, "no results"
    assert {h.id for h in hits} <= ids
    assert all(h.payload["user"] == user for h in hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def cut(hits: list[SearchHit], at_least: int = 1) -> tuple[set[str], float]:
    """A min_score halfway across the first clear gap in the scores after ``at_least`` hits (images
    with identical pixels tie), and the ids of the hits it keeps."""
    for keep in range(at_least, len(hits)):
        if hits[keep - 1].score - hits[keep].score > 1e-4:
            return {h.id for h in hits[:keep]}, (hits[keep - 1].score + hits[keep].score) / 2
    raise AssertionError(f"no gap in the scores {[h.score for h in hits]}")


# --- by a stored image --------------------------------------------------------------------------


def test_by_image_id_ranks_identical_content_first_and_excludes_the_query(
    services: Services, stored: dict[str, str]
) -> None:
    hits = search.by_image_id(services, ALICE, stored["cat.png"])
    assert hits[0].id == stored["cat.webp"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert hits[1].score < 0.9999
    assert stored["cat.png"] not in {h.id for h in hits}
    assert {h.id for h in hits} == alice_ids(stored) - {stored["cat.png"]}  # and none of Bob's
    assert_only_users(hits, ALICE, alice_ids(stored))
    assert hits[0].payload["filename"] == "cat.webp"

    back = search.by_image_id(services, ALICE, stored["cat.webp"])
    assert back[0].id == stored["cat.png"]
    assert len(search.by_image_id(services, ALICE, stored["cat.png"], limit=2)) == 2


def test_by_image_id_of_another_users_image_is_refused(services: Services, stored: dict[str, str]) -> None:
    with pytest.raises(search.SearchError, match="not in your collection"):
        search.by_image_id(services, ALICE, stored["bob:bobcat.png"])
    with pytest.raises(search.SearchError):
        search.by_image_id(services, BOB, stored["cat.png"])
    with pytest.raises(search.SearchError):
        search.by_image_id(services, ALICE, "00000000-0000-0000-0000-000000000000")


def test_by_image_id_for_bob_never_returns_alices_images(services: Services, stored: dict[str, str]) -> None:
    hits = search.by_image_id(services, BOB, stored["bob:bobcat.png"])
    assert [h.id for h in hits] == [stored["bob:bobdog.png"]]
    assert hits[0].payload["user"] == BOB


def test_by_image_id_min_score(services: Services, stored: dict[str, str]) -> None:
    every = search.by_image_id(services, ALICE, stored["dog.png"])
    assert len(every) == 4
    expected, min_score = cut(every, 2)
    kept = search.by_image_id(services, ALICE, stored["dog.png"], min_score=min_score)
    assert {h.id for h in kept} == expected
    assert all(h.score >= min_score for h in kept)
    assert search.by_image_id(services, ALICE, stored["dog.png"], min_score=min(h.score for h in every)) != []
    assert search.by_image_id(services, ALICE, stored["dog.png"], min_score=every[0].score + 1e-3) == []


# --- by an uploaded image -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("upload", "expected"),
    [
        (lambda: encode(pattern(2), "BMP"), "dog.png"),  # same pixels as dog.png, other bytes
        (lambda: encode(pattern(1), "PNG", compress_level=1), {"cat.png", "cat.webp"}),
        (lambda: png(seed=2), "dog.png"),  # the very same bytes: still searched, not "present"
    ],
    ids=["bmp-of-dog", "png-of-cat", "same-bytes"],
)
def test_by_upload_ranks_the_matching_image_first_and_stores_nothing(
    services: Services, stored: dict[str, str], upload, expected
) -> None:
    keys, count, counts = list_keys(services.store), services.index.count(), services.index.counts_by_user()
    files = {p.relative_to(services.settings.data_dir) for p in services.settings.data_dir.rglob("*")}

    hits = search.by_upload(services, ALICE, upload())

    assert_only_users(hits, ALICE, alice_ids(stored))
    assert len(hits) == 5
    top = {expected} if isinstance(expected, str) else expected
    assert {h.payload["filename"] for h in hits[: len(top)]} == top
    assert all(h.score == pytest.approx(1.0, abs=1e-4) for h in hits[: len(top)])
    assert hits[len(top)].score < 0.9999
    assert list_keys(services.store) == keys
    assert services.index.count() == count
    assert services.index.counts_by_user() == counts
    assert {p.relative_to(services.settings.data_dir) for p in services.settings.data_dir.rglob("*")} == files


def test_by_upload_only_searches_the_users_own_images(services: Services, stored: dict[str, str]) -> None:
    hits = search.by_upload(services, BOB, png(seed=2))  # Alice's dog: Bob has no copy
    assert {h.id for h in hits} == {stored["bob:bobcat.png"], stored["bob:bobdog.png"]}
    assert search.by_upload(services, "carol", png(seed=2)) == []


def test_by_upload_min_score_and_limit(services: Services, stored: dict[str, str]) -> None:
    every = search.by_upload(services, ALICE, jpeg(seed=3))
    expected, min_score = cut(every)
    assert {h.id for h in search.by_upload(services, ALICE, jpeg(seed=3), min_score=min_score)} == expected
    assert expected == {stored["fox.jpg"]}  # the same file
    first3 = search.by_upload(services, ALICE, jpeg(seed=3), limit=3)
    assert len(first3) == 3
    assert [h.score for h in first3] == pytest.approx([h.score for h in every[:3]], abs=1e-6)  # ties may swap


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"just some text, not an image", "not an image"),
        (b"", "empty file"),
        (truncated_jpeg(), "truncated"),
    ],
    ids=["text", "empty", "truncated-jpeg"],
)
def test_by_upload_with_bad_bytes_says_why(services: Services, stored: dict[str, str], data: bytes, reason) -> None:
    keys, count = list_keys(services.store), services.index.count()
    with pytest.raises(ValueError, match=reason) as caught:
        search.by_upload(services, ALICE, data)
    assert isinstance(caught.value, ImageRejected)
    assert list_keys(services.store) == keys
    assert services.index.count() == count


def test_by_upload_respects_the_size_limits(tmp_path: Path) -> None:
    with tiny_services(tmp_path / "data", max_pixels=1000) as services, pytest.raises(ValueError, match="too large"):
        search.by_upload(services, ALICE, png(seed=1))  # 96 x 64 = 6144 pixels


# --- by text ------------------------------------------------------------------------------------


def test_by_text_with_the_tiny_clip(services: Services, stored: dict[str, str]) -> None:
    hits = search.by_text(services, ALICE, "a cat on a sofa")
    assert len(hits) == 5
    assert_only_users(hits, ALICE, alice_ids(stored))
    assert [h.id for h in search.by_text(services, ALICE, "  a cat\n on   a sofa ")] == [h.id for h in hits]
    assert len(search.by_text(services, ALICE, "a cat on a sofa", limit=2)) == 2

    expected, min_score = cut(hits, 2)
    kept = search.by_text(services, ALICE, "a cat on a sofa", min_score=min_score)
    assert {h.id for h in kept} == expected
    assert all(h.score >= min_score for h in kept)

    bobs = search.by_text(services, BOB, "a cat on a sofa")
    assert {h.id for h in bobs} == {stored["bob:bobcat.png"], stored["bob:bobdog.png"]}
    assert search.by_text(services, ALICE, "x" * 5000)  # long queries are cut, not refused


@pytest.mark.parametrize("text", ["", " ", "\n\t  "])
def test_by_text_refuses_blank_text(services: Services, text: str) -> None:
    with pytest.raises(search.SearchError, match="type a few words"):
        search.by_text(services, ALICE, text)


def test_by_text_without_a_text_encoder(tmp_path: Path) -> None:
    embedder = load_embedder("efficientnet-lite0", device="cpu")
    settings = load_settings(data_dir=tmp_path, model="efficientnet-lite0", device="cpu")
    index = EdgeIndex(tmp_path / "index", collection_name(embedder.name, embedder.dimension), embedder.dimension)
    services = Services(settings, embedder, LocalStore(tmp_path / "objects"), index)
    try:
        ingest_files(services, ALICE, {"cat.png": png(seed=1)})
        with pytest.raises(TextSearchUnavailable, match="CLIP"):
            search.by_text(services, ALICE, "a cat")
        with pytest.raises(search.SearchError):
            search.by_text(services, ALICE, "   ")
        # Image search still works with this model.
        hits = search.by_upload(services, ALICE, encode(pattern(1), "BMP"))
        assert [h.payload["filename"] for h in hits] == ["cat.png"]
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    finally:
        services.close()
