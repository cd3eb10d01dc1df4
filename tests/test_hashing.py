"""core.hashing: sha256 for exact duplicates, pHash for near duplicates."""

from __future__ import annotations

import hashlib

import pytest
from helpers import REAL_PHOTOS, pattern
from PIL import Image

from core.hashing import PHASH_BITS, phash_distance, phash_hex, sha256_hex
from core.images import decode


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
