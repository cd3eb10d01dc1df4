"""Decode untrusted image bytes into a small RGB working copy, or reject them with a reason.

The file's content decides its type (never its extension). JPEGs are decoded at reduced scale
(Pillow's draft mode) because hashing, thumbnails and embeddings never need more than a few
hundred pixels.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

register_heif_opener()
# The pixel limit is enforced by `decode` from the header, with a clear message, instead of
# Pillow's process-wide DecompressionBombError.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

#: Pillow format name -> (file extension, MIME type) for the formats we accept.
FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "MPO": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tiff", "image/tiff"),
    "HEIF": ("heic", "image/heif"),
    "AVIF": ("avif", "image/avif"),
}

#: Shortest side of the working copy; enough for a 256 px thumbnail and 224 px model inputs.
WORKING_SIDE = 256
THUMBNAIL_SIDE = 256


class ImageRejected(ValueError):
    """The bytes are not an image we can accept; ``str(exc)`` is the reason shown to the user."""


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 100_000_000
    max_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class DecodedImage:
    """A validated image: its true size and format, and a reduced RGB copy to work on."""

    image: Image.Image
    width: int
    height: int
    format: str

    @property
    def extension(self) -> str:
        return FORMATS[self.format][0]

    @property
    def mime_type(self) -> str:
        return FORMATS[self.format][1]


def decode(data: bytes, limits: ImageLimits = ImageLimits()) -> DecodedImage:
    """Validate and decode ``data``; raise ImageRejected with a user-facing reason."""
    check_size(len(data), limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageRejected("not an image: the content is not a recognised image format") from None
    except Exception as exc:  # Pillow raises many types for malformed headers
        raise ImageRejected(f"corrupt image header ({_short(exc)})") from None
    fmt = image.format or "unknown"
    if fmt not in FORMATS:
        raise ImageRejected(f"unsupported image format {fmt}; accepted: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageRejected(f"invalid dimensions {width}x{height}")
    if width * height > limits.max_pixels:
        raise ImageRejected(
            f"too large: {width}x{height} is {width * height / 1e6:.0f} MP, over the "
            f"{limits.max_pixels / 1e6:.0f} MP limit (possible decompression bomb)"
        )
    if fmt in ("JPEG", "MPO"):
        image.draft("RGB", (WORKING_SIDE, WORKING_SIDE))
    try:
        image.load()
    except Exception as exc:
        raise ImageRejected(f"truncated or corrupt image data ({_short(exc)})") from None
    loaded = image.size
    transposed = ImageOps.exif_transpose(image)
    if transposed.size != loaded:  # rotated by 90 degrees (some plugins, e.g. TIFF, do it on load)
        width, height = height, width
    working = _reduce(_to_rgb(transposed), WORKING_SIDE)
    return DecodedImage(image=working, width=width, height=height, format=fmt)


def check_size(size: int, limits: ImageLimits = ImageLimits()) -> None:
    """Reject empty or oversized files before reading or decoding them."""
    if size == 0:
        raise ImageRejected("empty file (zero bytes)")
    if size > limits.max_bytes:
        raise ImageRejected(f"file is {_mb(size)}, over the {_mb(limits.max_bytes)} limit")


def thumbnail_bytes(decoded: DecodedImage, side: int = THUMBNAIL_SIDE, quality: int = 80) -> bytes:
    """A WebP thumbnail whose longest side is ``side`` (never upscaled)."""
    thumb = decoded.image.copy()
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=quality, method=4)
    return out.getvalue()


def open_rgb(data: bytes) -> Image.Image:
    """Decode already-validated stored bytes (e.g. a thumbnail) to RGB."""
    return _to_rgb(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))


def _reduce(image: Image.Image, shortest_side: int) -> Image.Image:
    """Downscale so that the shortest side is about ``shortest_side`` (never upscale)."""
    width, height = image.size
    scale = shortest_side / min(width, height)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: alpha composited on white, high bit depths rescaled."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        if mode.startswith("I;16"):
            low, high = 0.0, 65535.0
        scaled = np.zeros_like(array) if high <= low else (array - low) * (255.0 / (high - low))
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("LA", "PA", "La", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def _mb(size: int) -> str:
    return f"{size / 2**20:.3g} MB"


def _short(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
