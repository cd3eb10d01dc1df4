"""core.hashing: sha256 for exact duplicates, pHash and the pHash inside borders for near duplicates."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from helpers import REAL_PHOTOS, encode, pattern, textured
from PIL import Image, ImageOps

from bench.duplicates_quality import TRANSFORMS
from core.duplicates import DEFAULT_NEAR_THRESHOLD
from core.hashing import PHASH_BITS, content_box, content_of, content_phash_hex, phash_distance, phash_hex, sha256_hex
from core.images import decode

BORDER_TRANSFORMS = ["border", "blurred border", "letterbox", "frame"]


def test_sha256_known_value() -> None:
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_hex(b"") == hashlib.sha256(b"").hexdigest()


def test_phash_is_16_hex_characters() -> None:
    value = phash_hex(pattern(0))
    assert len(value) == PHASH_BITS // 4 == 16
    int(value, 16)


def test_phash_distance() -> None:
    assert phash_distance("0" * 16, "0" * 16) == 0
    assert phash_distance("0" * 16, "f" * 16) == 64
    assert phash_distance("8000000000000001", "0000000000000000") == 2
    assert phash_distance("00000000000000ff", "000000000000000f") == 4


def test_phash_survives_resizing() -> None:
    image = pattern(7, (240, 160))
    resized = image.resize((120, 80), Image.Resampling.LANCZOS)
    assert phash_distance(phash_hex(image), phash_hex(resized)) <= 4


def test_phash_separates_unrelated_images() -> None:
    hashes = [phash_hex(pattern(seed, (160, 120))) for seed in range(6)]
    distances = [phash_distance(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(distances) > 10
    assert sum(distances) / len(distances) > 20  # about 32 expected for independent hashes


def test_phash_of_real_photos() -> None:
    photos = sorted(REAL_PHOTOS.glob("*.JPEG"))[:2] if REAL_PHOTOS.is_dir() else []
    if len(photos) < 2:
        pytest.skip(f"no sample photos in {REAL_PHOTOS}")
    first, second = (decode(p.read_bytes()).image for p in photos)
    half = first.resize((first.width // 2, first.height // 2), Image.Resampling.LANCZOS)
    assert phash_distance(phash_hex(first), phash_hex(half)) <= 6
    assert phash_distance(phash_hex(first), phash_hex(second)) > 12


# --- the picture inside borders, letterbox bars and frames ---------------------------------------


def test_content_box_of_a_picture_without_borders_is_the_whole_picture() -> None:
    image = pattern(4, (200, 150))
    assert content_box(image) == (0, 0, 200, 150)
    assert content_phash_hex(image) == phash_hex(image)


@pytest.mark.parametrize("fill", [(255, 255, 255), (0, 0, 0), (40, 160, 90)])
def test_content_box_finds_the_picture_inside_a_solid_border(fill: tuple[int, int, int]) -> None:
    inner = textured(5, (200, 150))
    framed = ImageOps.expand(inner, border=(30, 20, 50, 10), fill=fill)
    left, top, right, bottom = content_box(framed)
    assert abs(left - 30) <= 4 and abs(top - 20) <= 4 and abs(right - 230) <= 4 and abs(bottom - 170) <= 4
    assert phash_distance(content_phash_hex(framed), phash_hex(inner)) <= 4
    assert phash_distance(phash_hex(framed), phash_hex(inner)) > 8  # what the whole-picture hash misses
    # the whole picture's pHash, handed in to save a second one, is not the content's pHash here
    assert content_of(framed, phash=phash_hex(framed)).phash == content_phash_hex(framed)


def test_content_box_ignores_a_mostly_flat_picture() -> None:
    flat = Image.new("RGB", (200, 200), (90, 90, 90))
    flat.paste(pattern(6, (30, 30)), (10, 10))  # a small mark: not a picture in a border
    assert content_box(flat) == (0, 0, 200, 200)


def real_photos(count: int) -> list[Image.Image]:
    photos = sorted(REAL_PHOTOS.glob("*.JPEG"))[:count] if REAL_PHOTOS.is_dir() else []
    if len(photos) < count:
        pytest.skip(f"no sample photos in {REAL_PHOTOS}")
    return [decode(p.read_bytes()).image for p in photos]


@pytest.mark.parametrize("name", BORDER_TRANSFORMS)
def test_content_phash_finds_real_photos_inside_borders_and_frames(name: str) -> None:
    """The benchmark's transforms on real photos: the whole-picture pHash moves past the near
    threshold, the content pHash stays within it."""
    rng = np.random.default_rng(0)
    whole, inner = [], []
    for photo in real_photos(4):
        copy, quality = TRANSFORMS[name](photo, rng)
        copy = decode(encode(copy, "JPEG", quality=quality)).image
        whole.append(phash_distance(phash_hex(photo), phash_hex(copy)))
        inner.append(phash_distance(content_phash_hex(photo), content_phash_hex(copy)))
    assert max(inner) <= DEFAULT_NEAR_THRESHOLD, inner
    assert min(whole) > DEFAULT_NEAR_THRESHOLD or name == "blurred border", whole


def test_content_phashes_of_different_real_photos_stay_apart() -> None:
    hashes = [content_phash_hex(photo) for photo in real_photos(12)]
    assert min(phash_distance(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]) > DEFAULT_NEAR_THRESHOLD
