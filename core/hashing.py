"""Content hashes: sha256 of the bytes (exact duplicates), a 64-bit pHash (near duplicates) and
the pHash of the picture inside any flat or blurred border (near duplicates with borders, letterbox
bars or a screenshot-like frame around them)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import imagehash
import numpy as np
from PIL import Image

from core.images import scaled_size

PHASH_BITS = 64
#: Side of the grey copy the content box is looked for on.
_BOX_SIDE = 128
#: Mean absolute second difference (grey levels) under which a line has no fine detail: a solid
#: or blurred border.
_FINE_DETAIL = 1.5
#: A line with this share of its pixels within ``_SHADE_TOLERANCE`` of its median is a flat bar.
_BAR_SHARE = 0.75
_SHADE_TOLERANCE = 6
#: A content box smaller than this share of either side is not trusted (a mostly flat picture).
_MIN_BOX_SHARE = 0.3


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of the file's bytes."""
    return hashlib.sha256(data).hexdigest()


def phash_hex(image: Image.Image) -> str:
    """64-bit perceptual hash as 16 hex characters."""
    return str(imagehash.phash(image, hash_size=8))


def content_box(image: Image.Image) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the picture inside flat or blurred borders, letterbox bars or a
    screenshot-like frame; the whole image when there is nothing around it. ``image`` may be the
    grey ("L") copy: the box is the same.

    On a small grey copy, rows and columns are trimmed from each edge while they are nearly all one
    shade (a solid border, letterbox bars, a flat UI bar with a few buttons on it), measured again
    over the part kept until nothing more comes off; then once while they hold no fine detail (a
    blurred border). A box smaller than ``_MIN_BOX_SHARE`` of either side is not trusted (a mostly
    flat picture)."""
    scale = min(1.0, _BOX_SIDE / max(image.size))
    size = scaled_size(*image.size, scale)
    levels = image if image.mode == "L" else image.convert("L")
    grey = np.asarray(levels.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    h, w = grey.shape
    box = (0, h, 0, w)
    for _ in range(8):
        trimmed = _trim(grey, box, blurred=False)
        if trimmed == box:
            break
        box = trimmed
    top, bottom, left, right = _trim(grey, box, blurred=True)
    if (bottom - top) < _MIN_BOX_SHARE * h or (right - left) < _MIN_BOX_SHARE * w:
        return 0, 0, image.width, image.height
    fx, fy = image.width / w, image.height / h
    return round(left * fx), round(top * fy), round(right * fx), round(bottom * fy)


def _trim(grey: np.ndarray, box: tuple[int, int, int, int], blurred: bool) -> tuple[int, int, int, int]:
    """``box`` (top, bottom, left, right) less its empty edge rows, then its empty edge columns."""
    top, bottom, left, right = box
    if bottom - top < 8 or right - left < 8:
        return box
    first, last = _empty_edges(grey[top:bottom, left:right], blurred)
    top, bottom = top + first, bottom - last
    begin, end = _empty_edges(grey[top:bottom, left:right].T, blurred)
    return top, bottom, left + begin, right - end


def _empty_edges(grey: np.ndarray, blurred: bool) -> tuple[int, int]:
    """How many of the first and of the last rows of ``grey`` hold no picture: nearly all one
    shade, or also (``blurred``) without fine detail. None when every row would go.

    Rows are looked at from each end inward, up to the first that holds picture: a photo without
    borders costs two rows, not the whole image (this runs for every ingested file)."""
    rows = grey.shape[0]
    if rows == 0 or grey.shape[1] < 3:
        return 0, 0
    first = next((row for row in range(rows) if not _empty_line(grey[row], blurred)), rows)
    if first == rows:
        return 0, 0
    last = next(row for row in range(rows - 1, first - 1, -1) if not _empty_line(grey[row], blurred))
    return first, rows - 1 - last


def _empty_line(line: np.ndarray, blurred: bool) -> bool:
    """Whether one row of grey levels is nearly all one shade, or also (``blurred``) has no fine detail."""
    if np.mean(np.abs(line - _median(line)) <= _SHADE_TOLERANCE) >= _BAR_SHARE:
        return True
    return blurred and float(np.mean(np.abs(np.diff(line, n=2)))) < _FINE_DETAIL


def _median(line: np.ndarray) -> np.floating:
    """``np.median`` of a 1-D array, without its general-case overhead (this runs for every edge
    line of every ingested file): the mean of the two middle values."""
    middle = ((line.size - 1) // 2, line.size // 2)
    low, high = np.partition(line, middle)[list(middle)]
    return (low + high) / 2


@dataclass(frozen=True)
class Content:
    """The picture inside any border: its pHash, and its size in the original's pixels."""

    phash: str
    width: int
    height: int


def content_of(
    image: Image.Image, width: int | None = None, height: int | None = None, phash: str | None = None
) -> Content:
    """``content_box`` of a working copy ``image`` (or of its grey copy: the same result) of a
    ``width`` x ``height`` original. ``phash`` is ``phash_hex(image)`` where the caller has it: a
    picture without borders then costs no second pHash."""
    box = content_box(image)
    whole = box == (0, 0, *image.size)
    width, height = width or image.width, height or image.height
    return Content(
        phash=(phash or phash_hex(image)) if whole else phash_hex(image.crop(box)),
        width=round((box[2] - box[0]) * width / image.width),
        height=round((box[3] - box[1]) * height / image.height),
    )


def content_phash_hex(image: Image.Image) -> str:
    """The pHash of ``content_box(image)``: equal to ``phash_hex`` for a picture without borders."""
    return content_of(image).phash


def pixel_sha256(image: Image.Image) -> str:
    """sha256 of the decoded (working-copy) pixels: equal for files that differ only in
    container, metadata or lossless re-encoding."""
    digest = hashlib.sha256(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def phash_distance(a: str, b: str) -> int:
    """Hamming distance between two hex pHashes (0 = same, 64 = opposite)."""
    return (int(a, 16) ^ int(b, 16)).bit_count()
