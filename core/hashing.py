"""Content hashes: sha256 of the bytes (exact duplicates) and a 64-bit pHash (near duplicates)."""

from __future__ import annotations

import hashlib

import imagehash
from PIL import Image

PHASH_BITS = 64


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of the file's bytes."""
    return hashlib.sha256(data).hexdigest()


def phash_hex(image: Image.Image) -> str:
    """64-bit perceptual hash as 16 hex characters."""
    return str(imagehash.phash(image, hash_size=8))


def pixel_sha256(image: Image.Image) -> str:
    """sha256 of the decoded (working-copy) pixels: equal for files that differ only in
    container, metadata or lossless re-encoding."""
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def phash_distance(a: str, b: str) -> int:
    """Hamming distance between two hex pHashes (0 = same, 64 = opposite)."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
