"""What a browser is sent to show a stored image at full resolution: the original bytes when a
browser can show them and they are of a reasonable size, else an upright JPEG copy whose longest side
is at most ``DISPLAY_MAX_SIDE`` (transparency composited on white, as in thumbnails)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from core.images import open_rgb

#: Longest side sent to the browser; larger originals are shown as a reduced copy.
DISPLAY_MAX_SIDE = 4096
#: Largest original sent as it is (a bigger file is re-encoded, even under DISPLAY_MAX_SIDE).
DISPLAY_MAX_BYTES = 16 * 1024 * 1024
#: Pillow formats every current browser decodes, with their MIME types (TIFF and HEIC are not).
BROWSER_FORMATS = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}


@dataclass(frozen=True)
class DisplayImage:
    """Bytes for the browser, their MIME type and pixel size, and whether they are the original."""

    data: bytes
    mime_type: str
    width: int
    height: int
    original: bool


def display_image(data: bytes, max_side: int = DISPLAY_MAX_SIDE, max_bytes: int = DISPLAY_MAX_BYTES) -> DisplayImage:
    """The original ``data`` when a browser shows it as is (format, size and bytes within the
    limits), else a JPEG copy (quality 92) reduced to ``max_side``."""
    with Image.open(io.BytesIO(data)) as probe:
        kind, (width, height) = probe.format, probe.size
    if kind in BROWSER_FORMATS and max(width, height) <= max_side and len(data) <= max_bytes:
        return DisplayImage(data, BROWSER_FORMATS[kind], width, height, original=True)
    copy = open_rgb(data, max_side)
    out = io.BytesIO()
    copy.save(out, format="JPEG", quality=92, subsampling=0)
    return DisplayImage(out.getvalue(), "image/jpeg", copy.width, copy.height, original=False)


def card_thumbnail(data: bytes) -> bytes | None:
    """What a card is sent for a stored thumbnail: JPEG bytes (Streamlit passes JPEG through but
    re-encodes WebP on every run). A JPEG thumbnail, as ingest makes them, goes as it is; an older
    WebP one is converted once; bytes that are no image give None."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            if probe.format == "JPEG":
                return data
        image = open_rgb(data)
    except Exception:
        return None
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()
