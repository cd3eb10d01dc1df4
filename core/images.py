"""Decode untrusted image bytes into a small RGB working copy, or reject them with a reason.

The file's content decides its type (never its extension), and only the formats of ``FORMATS``
are accepted. Memory is bounded by the limits, not by the shape of the image: the pixel limit
counts every frame of an animation, JPEGs are decoded at reduced scale (Pillow's draft mode),
other formats are reduced before any colour conversion, the working copy is capped on both sides,
and ``model_input`` letterboxes extreme aspect ratios before a model's resize can blow them up.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from core.png_check import BrokenPng, verify_png

register_heif_opener()
# The pixel limit is enforced by `decode` from the header, with a clear message, instead of
# Pillow's process-wide DecompressionBombError.
Image.MAX_IMAGE_PIXELS = None
ImageFile.LOAD_TRUNCATED_IMAGES = False

#: Pillow format name -> (file extension, MIME type) for the formats we accept. AVIF is refused:
#: it is not part of the documented list (README, Upload page) and adds an AV1 decoder to the
#: attack surface.
FORMATS: dict[str, tuple[str, str]] = {
    "JPEG": ("jpg", "image/jpeg"),
    "MPO": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "GIF": ("gif", "image/gif"),
    "BMP": ("bmp", "image/bmp"),
    "TIFF": ("tiff", "image/tiff"),
    "HEIF": ("heic", "image/heif"),
}
#: The accepted formats as users know them (messages, the Upload page, the README).
ACCEPTED_FORMATS = "JPEG, PNG, WebP, GIF, BMP, TIFF and HEIC"

#: Shortest side of the working copy; enough for a 256 px thumbnail and 224 px model inputs.
WORKING_SIDE = 256
#: Longest side of the working copy, whatever the aspect ratio (a 1 x 65535 strip stays small).
WORKING_MAX_SIDE = 16 * WORKING_SIDE
THUMBNAIL_SIDE = 256
#: Longest side of an image opened for display (``open_rgb``).
DISPLAY_SIDE = 2048
#: Most elongated shape handed to a model (long side / short side); beyond it, ``model_input``
#: pads the short side. A model resizes the short side to its input size, so this bounds its work.
MODEL_MAX_ASPECT = 4

_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_SIDES = {
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_270,
}


class ImageRejected(ValueError):
    """The bytes are not an image we can accept; ``str(exc)`` is the reason shown to the user."""


@dataclass(frozen=True)
class ImageLimits:
    """An image is accepted up to and including ``max_pixels`` (all frames together) and ``max_bytes``."""

    max_pixels: int = 100_000_000
    max_bytes: int = 64 * 1024 * 1024


class FormatInfo:
    """File extension and MIME type of an accepted format, for classes with a ``format`` field."""

    format: str

    @property
    def extension(self) -> str:
        return FORMATS[self.format][0]

    @property
    def mime_type(self) -> str:
        return FORMATS[self.format][1]


@dataclass(frozen=True)
class DecodedImage(FormatInfo):
    """A validated image: its true size and format, and a reduced RGB copy to work on."""

    image: Image.Image
    width: int
    height: int
    format: str


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
        raise ImageRejected(f"unsupported image format {fmt}; accepted: {ACCEPTED_FORMATS}")
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageRejected(f"invalid dimensions {width}x{height}")
    check_pixels(width, height, _frame_count(image), limits)
    if fmt == "PNG":
        try:
            verify_png(data)
        except BrokenPng as exc:
            raise ImageRejected(f"corrupt PNG: {exc}") from None
    if fmt in ("JPEG", "MPO"):
        image.draft("RGB", (WORKING_SIDE, WORKING_SIDE))
    try:
        image.load()
    except Exception as exc:
        raise ImageRejected(f"truncated or corrupt image data ({_short(exc)})") from None
    working, turned = _working_copy(image, WORKING_SIDE, WORKING_MAX_SIDE)
    if turned:
        width, height = height, width
    return DecodedImage(image=working, width=width, height=height, format=fmt)


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """(width, height) times ``scale``, rounded, never under one pixel a side."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def check_pixels(width: int, height: int, frames: int = 1, limits: ImageLimits = ImageLimits()) -> None:
    """Reject images whose pixels, counted over all frames, exceed the limit; an image of exactly
    ``limits.max_pixels`` is accepted."""
    pixels = width * height * frames
    if pixels > limits.max_pixels:
        shape = f"{frames:,} frames of {width}x{height}" if frames > 1 else f"{width}x{height}"
        raise ImageRejected(
            f"too large: {shape} is {pixels:,} pixels, over the limit of {limits.max_pixels:,} "
            f"({limits.max_pixels / 1e6:g} MP; possible decompression bomb)"
        )


def check_size(size: int, limits: ImageLimits = ImageLimits()) -> None:
    """Reject empty or oversized files before reading or decoding them."""
    if size == 0:
        raise ImageRejected("empty file (zero bytes)")
    if size > limits.max_bytes:
        raise ImageRejected(f"file is {_mb(size)}, over the {_mb(limits.max_bytes)} limit")


#: Thumbnail encodings by key suffix, as (Pillow format, MIME type). New thumbnails are JPEG:
#: 0.2 ms to encode against 1.5 ms for WebP at the same size (docs/benchmarks.md, "The per-image
#: CPU work"). Collections made before hold WebP ones, made again as WebP under their own keys.
THUMBNAIL_FORMATS: dict[str, tuple[str, str]] = {".jpg": ("JPEG", "image/jpeg"), ".webp": ("WEBP", "image/webp")}


def thumbnail_format(key: str) -> tuple[str, str]:
    """The (Pillow format, MIME type) of the thumbnail stored under ``key``."""
    return THUMBNAIL_FORMATS[".webp" if key.endswith(".webp") else ".jpg"]


def thumbnail_bytes(decoded: DecodedImage, side: int = THUMBNAIL_SIDE, encoding: str = "JPEG") -> bytes:
    """A thumbnail (JPEG, or the Pillow format ``encoding``) whose longest side is ``side`` (never
    upscaled)."""
    from core.tensor_images import InterpolationMode, shrink  # torch, only where thumbnails are made

    image = decoded.image
    size = scaled_size(*image.size, min(1.0, side / max(image.size)))
    # Bilinear: the working copy is at most a third larger than the thumbnail, where it looks as
    # bicubic does. On a tensor: 0.25 ms against Pillow's 0.6 (this runs for every ingested file).
    thumb = shrink(image, size, InterpolationMode.BILINEAR)
    out = io.BytesIO()
    options = {"quality": 80} if encoding == "JPEG" else {"quality": 80, "method": 0}
    thumb.save(out, format=encoding, **options)
    return out.getvalue()


def thumbnail_for_key(decoded: DecodedImage, key: str) -> tuple[bytes, str]:
    """A thumbnail made again for an existing ``key``, in that key's encoding, and its MIME type."""
    encoding, mime = thumbnail_format(key)
    return thumbnail_bytes(decoded, encoding=encoding), mime


def open_rgb(data: bytes, max_side: int = DISPLAY_SIDE) -> Image.Image:
    """Decode already-validated stored bytes (a thumbnail, an original for display) to RGB, with
    the longest side reduced to at most ``max_side``."""
    image = Image.open(io.BytesIO(data))
    if image.format in ("JPEG", "MPO"):
        image.draft("RGB", (max_side, max_side))
    image.load()
    return _working_copy(image, max_side, max_side)[0]


def model_input(image: Image.Image) -> Image.Image:
    """``image`` bounded for a model's transform: the longest side at most
    ``MODEL_MAX_ASPECT * WORKING_SIDE``, and a shape no more elongated than ``MODEL_MAX_ASPECT``
    (the short side padded with grey, the image centred). Ordinary RGB images pass unchanged."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    image = _reduce(image, WORKING_SIDE, MODEL_MAX_ASPECT * WORKING_SIDE)
    width, height = image.size
    if max(width, height) <= MODEL_MAX_ASPECT * min(width, height):
        return image
    canvas = (max(width, math.ceil(height / MODEL_MAX_ASPECT)), max(height, math.ceil(width / MODEL_MAX_ASPECT)))
    return ImageOps.pad(image, canvas, color=(128, 128, 128))


def _frame_count(image: Image.Image) -> int:
    """Frames of an animation or pages of a multi-page file (read from the headers, not decoded)."""
    try:
        return max(1, int(getattr(image, "n_frames", 1)))
    except Exception as exc:  # a broken frame chain
        raise ImageRejected(f"corrupt image: its frames cannot be counted ({_short(exc)})") from None


def _working_copy(image: Image.Image, shortest_side: int, longest_side: int) -> tuple[Image.Image, bool]:
    """A reduced, upright RGB copy of a loaded image, and whether turning it upright swapped its
    sides. Reducing comes first, so colour conversion and rotation only touch the small copy."""
    turn = _ORIENTATION.get(image.getexif().get(ExifTags.Base.Orientation, 1))
    value_range = _value_range(image)
    reduced = _reduce(_resizable(image), shortest_side, longest_side)
    if turn is not None:
        reduced = reduced.transpose(turn)
    return _to_rgb(reduced, value_range), turn in _SWAPS_SIDES


def _reduce(image: Image.Image, shortest_side: int, longest_side: int) -> Image.Image:
    """Downscale so that the shortest side is about ``shortest_side`` and the longest at most
    ``longest_side`` (never upscale; a side never drops below one pixel)."""
    width, height = image.size
    scale = min(shortest_side / min(width, height), longest_side / max(width, height))
    if scale >= 1:
        return image
    return image.resize(scaled_size(width, height, scale), Image.Resampling.BICUBIC, reducing_gap=2.0)


def _resizable(image: Image.Image) -> Image.Image:
    """``image`` in a mode Pillow resizes smoothly: palettes and bilevel expanded, 16-bit widened."""
    mode = image.mode
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode == "PA":
        return image.convert("RGBA")
    if mode == "1":
        return image.convert("L")
    if mode.startswith("I;16"):
        return image.convert("I")
    return image


def _value_range(image: Image.Image) -> tuple[float, float] | None:
    """The range that maps to 0-255 for high bit depth images (None for 8-bit modes)."""
    if image.mode.startswith("I;16"):
        return 0.0, 65535.0
    if image.mode in ("I", "F"):
        low, high = image.getextrema()
        return float(low), float(high)
    return None


def _to_rgb(image: Image.Image, value_range: tuple[float, float] | None = None) -> Image.Image:
    """Any Pillow mode to RGB: alpha composited on white, high bit depths rescaled from ``value_range``."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        array = np.asarray(image, dtype=np.float64)
        low, high = value_range or (float(array.min()), float(array.max()))
        scaled = np.zeros_like(array) if high <= low else (array - low) * (255.0 / (high - low))
        scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)  # float images may hold NaN or inf
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
