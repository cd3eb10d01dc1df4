"""core.upload: ingesting uploaded files and .zip archives, and the near-duplicate warning that
compares newly stored images with the user's earlier ones by pHash.

Real Services (LocalStore, embedded Qdrant, the tiny random CLIP); the near-duplicate is a real
edit of a stored image (a grey patch, resized, recompressed as JPEG) whose pHash distance is
measured, not assumed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import encode, jpeg, list_keys, pattern, png, tiny_services, zip_bytes
from PIL import Image, ImageDraw

from core.hashing import phash_distance, phash_hex
from core.images import decode
from core.ingest import IngestResult, StageProgress
from core.services import Services
from core.upload import NearDuplicate, ingest_uploads, near_duplicates_of_new, phash_matrix

ALICE, BOB = "alice", "bob"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    with tiny_services(tmp_path / "data") as services:
        yield services


def by_path(results: list[IngestResult]) -> dict[str, IngestResult]:
    return {r.path: r for r in results}


def upload(services: Services, user: str, files: dict[str, bytes]) -> dict[str, str]:
    """Upload loose files that must all be stored; returns file name -> image id."""
    results = ingest_uploads(services, user, files.items())
    assert [r.status for r in results] == ["stored"] * len(files), results
    return {r.path: r.image_id for r in results if r.image_id}


def edited_copy(seed: int) -> bytes:
    """``pattern(seed)`` with a grey patch in a corner, enlarged and saved as JPEG."""
    image = pattern(seed).copy()
    ImageDraw.Draw(image).rectangle((0, 0, 16, 16), fill=(128, 128, 128))
    return encode(image.resize((144, 96), Image.Resampling.BICUBIC), "JPEG", quality=85)


def phash_of(data: bytes) -> str:
    return phash_hex(decode(data).image)


# --- ingest_uploads -----------------------------------------------------------------------------


def test_zip_loose_file_and_bad_file_each_get_a_result(services: Services) -> None:
    archive = zip_bytes(
        {
            "a.png": png(seed=1),
            "more/b.gif": encode(pattern(2), "GIF"),
            "__MACOSX/._a.png": b"resource fork junk",
            ".hidden.png": png(seed=3),
            "notes.txt": b"a text file in the archive",
        }
    )
    calls: list[tuple[int, int]] = []
    stages: list[StageProgress] = []
    results = ingest_uploads(
        services,
        ALICE,
        [("photos.zip", archive), ("loose.jpg", jpeg(seed=4)), ("bad.png", b"not an image at all")],
        progress=lambda done, total: calls.append((done, total)),
        stages=stages.append,
    )

    assert [r.path for r in results] == [  # every input gets a line, the skipped ones too
        "photos.zip/.hidden.png",
        "photos.zip/__MACOSX/._a.png",
        "photos.zip/a.png",
        "photos.zip/more/b.gif",
        "photos.zip/notes.txt",
        "loose.jpg",
        "bad.png",
    ]
    assert [r.status for r in results] == ["skipped", "skipped", "stored", "stored", "rejected", "stored", "rejected"]
    found = by_path(results)
    assert "not an image" in found["bad.png"].reason
    assert "not an image" in found["photos.zip/notes.txt"].reason
    assert found["photos.zip/.hidden.png"].reason == "hidden (name starts with a dot)"
    assert found["photos.zip/__MACOSX/._a.png"].reason == "macOS metadata (__MACOSX)"
    assert calls[-1] == (7, 7)
    assert stages[-1] == StageProgress(total=7, read=7, prepared=7, done=7)

    records = {r.id: r.payload for r in services.index.scroll(ALICE)}
    assert set(records) == {r.image_id for r in results if r.status == "stored"}
    member = records[found["photos.zip/more/b.gif"].image_id]
    assert (member["filename"], member["source_path"], member["format"]) == ("b.gif", "photos.zip/more/b.gif", "GIF")
    assert records[found["loose.jpg"].image_id]["source_path"] == "loose.jpg"
    assert services.index.count(BOB) == 0

    again = ingest_uploads(services, ALICE, [("photos.zip", archive), ("copy-of-a.png", png(seed=1))])
    assert [(r.path, r.status) for r in again] == [
        ("photos.zip/.hidden.png", "skipped"),
        ("photos.zip/__MACOSX/._a.png", "skipped"),
        ("photos.zip/a.png", "present"),
        ("photos.zip/more/b.gif", "present"),
        ("photos.zip/notes.txt", "rejected"),
        ("copy-of-a.png", "present"),
    ]
    assert services.index.count(ALICE) == 3


def test_an_unreadable_archive_is_one_rejected_result(services: Services) -> None:
    keys = list_keys(services.store)
    files = [("broken.zip", b"PK\x03\x04 this is not really a zip"), ("ok.png", png(seed=1))]
    results = ingest_uploads(services, ALICE, files)
    assert [(r.path, r.status) for r in results] == [("broken.zip", "rejected"), ("ok.png", "stored")]
    assert "not a readable .zip archive" in results[0].reason
    assert len(list_keys(services.store)) == len(keys) + 2  # the PNG's original and thumbnail only


def test_ingest_uploads_of_nothing(services: Services) -> None:
    assert ingest_uploads(services, ALICE, []) == []
    [empty] = ingest_uploads(services, ALICE, [("empty.zip", zip_bytes({}))])  # an empty archive gets its line
    assert (empty.path, empty.status, empty.reason) == ("empty.zip", "rejected", "empty archive: no files in it")


def test_ingest_uploads_refuses_an_invalid_user(services: Services) -> None:
    with pytest.raises(ValueError, match="invalid user name"):
        ingest_uploads(services, "../bob", [("a.png", png(seed=1))])
    assert list_keys(services.store) == set()


# --- near duplicates ----------------------------------------------------------------------------


@pytest.fixture
def earlier(services: Services) -> dict[str, str]:
    """Alice's earlier uploads: the original of the near-duplicate, and an unrelated image."""
    return upload(services, ALICE, {"original.png": png(seed=6), "other.png": png(seed=2)})


@pytest.fixture
def distance() -> int:
    """The measured pHash distance between the edited copy and its original: small but not 0."""
    measured = phash_distance(phash_of(png(seed=6)), phash_of(edited_copy(6)))
    assert 1 <= measured < 8, measured
    return measured


def test_finds_an_edited_copy_of_a_stored_image(services: Services, earlier: dict[str, str], distance: int) -> None:
    unrelated = png(seed=9)
    for old in (png(seed=6), png(seed=2)):
        assert phash_distance(phash_of(unrelated), phash_of(old)) > services.settings.phash_threshold
    new = upload(services, ALICE, {"copy.jpg": edited_copy(6), "unrelated.png": unrelated})

    found = near_duplicates_of_new(services, ALICE, list(new.values()))

    assert found == [NearDuplicate(new["copy.jpg"], "copy.jpg", earlier["original.png"], "original.png", distance)]
    assert found[0].distance <= services.settings.phash_threshold


def test_reports_the_closest_earlier_image_for_each_new_one_sorted_by_distance(
    services: Services, earlier: dict[str, str], distance: int
) -> None:
    new = upload(services, ALICE, {"copy.jpg": edited_copy(6), "exact.bmp": encode(pattern(2), "BMP")})
    found = near_duplicates_of_new(services, ALICE, list(new.values()))
    assert [(d.new_filename, d.existing_filename, d.distance) for d in found] == [
        ("exact.bmp", "other.png", 0),
        ("copy.jpg", "original.png", distance),
    ]


def test_new_images_are_not_compared_with_each_other(services: Services, earlier: dict[str, str]) -> None:
    first, second = png(seed=11), edited_copy(11)
    assert phash_distance(phash_of(first), phash_of(second)) <= services.settings.phash_threshold
    new = upload(services, ALICE, {"first.png": first, "second.jpg": second})
    assert near_duplicates_of_new(services, ALICE, list(new.values())) == []


def test_nothing_to_compare(services: Services, earlier: dict[str, str]) -> None:
    assert near_duplicates_of_new(services, ALICE, []) == []
    # Everything is "new": no earlier image to compare with.
    assert near_duplicates_of_new(services, ALICE, list(earlier.values())) == []
    # Unknown ids are not images of the user.
    assert near_duplicates_of_new(services, ALICE, ["00000000-0000-0000-0000-000000000000"]) == []


def test_threshold_argument(services: Services, earlier: dict[str, str], distance: int) -> None:
    new = list(upload(services, ALICE, {"copy.jpg": edited_copy(6)}).values())
    assert near_duplicates_of_new(services, ALICE, new, threshold=distance - 1) == []
    assert [d.distance for d in near_duplicates_of_new(services, ALICE, new, threshold=distance)] == [distance]
    assert near_duplicates_of_new(services, ALICE, new, threshold=0) == []
    assert len(near_duplicates_of_new(services, ALICE, new, threshold=64)) == 1


def test_threshold_from_settings(services: Services, earlier: dict[str, str], distance: int) -> None:
    new = list(upload(services, ALICE, {"copy.jpg": edited_copy(6)}).values())

    def with_threshold(bits: int) -> Services:
        settings = services.settings.model_copy(update={"phash_threshold": bits})
        return dataclasses.replace(services, settings=settings)

    assert near_duplicates_of_new(with_threshold(distance - 1), ALICE, new) == []
    assert len(near_duplicates_of_new(with_threshold(distance), ALICE, new)) == 1
    assert near_duplicates_of_new(with_threshold(0), ALICE, new, threshold=distance)  # the argument wins


def test_never_matches_another_users_images(services: Services, distance: int) -> None:
    bobs = upload(services, BOB, {"original.png": png(seed=6)})
    upload(services, ALICE, {"mine.png": png(seed=2)})
    new = upload(services, ALICE, {"copy.jpg": edited_copy(6), "same-as-bobs.png": png(seed=6)})

    assert near_duplicates_of_new(services, ALICE, list(new.values())) == []
    assert near_duplicates_of_new(services, ALICE, list(new.values()), threshold=64)[0].existing_filename == "mine.png"
    # Bob's ids passed as Alice's new images are ignored.
    assert near_duplicates_of_new(services, ALICE, list(bobs.values()), threshold=64) == []
    # And Bob is warned about his own original only.
    bob_new = upload(services, BOB, {"bob-copy.jpg": edited_copy(6)})
    (only,) = near_duplicates_of_new(services, BOB, list(bob_new.values()))
    assert (only.existing_id, only.distance) == (bobs["original.png"], distance)


def test_phash_matrix_handles_the_full_64_bits() -> None:
    hashes = ["0" * 16, "f" * 16, "8000000000000001"]
    matrix = phash_matrix(hashes)
    assert [int(v) for v in matrix] == [int(h, 16) for h in hashes]
