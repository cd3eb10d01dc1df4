"""core.images: decoding untrusted bytes into an RGB working copy, or a rejection with a reason."""

from __future__ import annotations

import io

import numpy as np
import pytest
from helpers import (
    REAL_PHOTOS,
    bmp_claiming_size,
    encode,
    exif_jpeg,
    gradient,
    pattern,
    png,
    png_claiming_size,
    solid,
    truncated_jpeg,
    two_frame_gif,
)
from PIL import Image

from core.images import (
    THUMBNAIL_SIDE,
    WORKING_SIDE,
    ImageLimits,
    ImageRejected,
    check_size,
    decode,
    open_rgb,
    thumbnail_bytes,
)


def close(pixel: tuple[int, ...], expected: tuple[int, int, int], tolerance: int = 12) -> bool:
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


# --- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "expected_format", "extension", "mime"),
    [
        ("JPEG", "JPEG", "jpg", "image/jpeg"),
        ("PNG", "PNG", "png", "image/png"),
        ("WEBP", "WEBP", "webp", "image/webp"),
        ("GIF", "GIF", "gif", "image/gif"),
        ("BMP", "BMP", "bmp", "image/bmp"),
        ("TIFF", "TIFF", "tiff", "image/tiff"),
        ("HEIF", "HEIF", "heic", "image/heif"),
    ],
)
def test_accepted_formats(fmt: str, expected_format: str, extension: str, mime: str) -> None:
    colour = (200, 40, 30)
    decoded = decode(encode(solid(colour, (48, 36)), fmt))
    assert decoded.format == expected_format
    assert decoded.extension == extension
    assert decoded.mime_type == mime
    assert (decoded.width, decoded.height) == (48, 36)
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (48, 36)  # small images are not resized
    assert close(decoded.image.getpixel((24, 18)), colour, tolerance=20)


def test_gif_uses_the_first_frame() -> None:
    data = two_frame_gif((255, 0, 0), (0, 0, 255))
    assert Image.open(io.BytesIO(data)).n_frames == 2
    decoded = decode(data)
    assert decoded.format == "GIF"
    assert close(decoded.image.getpixel((5, 5)), (255, 0, 0))


def test_content_decides_the_type_not_the_name(tmp_path) -> None:
    path = tmp_path / "holiday.jpg"  # a PNG under a .jpg name
    path.write_bytes(png(seed=3))
    decoded = decode(path.read_bytes())
    assert decoded.format == "PNG"
    assert decoded.extension == "png"
    assert decoded.mime_type == "image/png"


# --- orientation and modes ----------------------------------------------------------------------


def rotated(fmt: str, orientation: int, size: tuple[int, int] = (40, 20)) -> bytes:
    """Left half red, right half blue, with an EXIF orientation tag."""
    if fmt == "JPEG":
        return exif_jpeg(size, orientation)
    image = Image.new("RGB", size, (255, 0, 0))
    image.paste((0, 0, 255), (size[0] // 2, 0, size[0], size[1]))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, fmt, exif=exif.tobytes())


@pytest.mark.parametrize(
    "fmt",
    [
        "JPEG",
        "PNG",
        "WEBP",
        "HEIF",
        pytest.param("TIFF"),
    ],
)
def test_exif_orientation_is_applied(fmt: str) -> None:
    decoded = decode(rotated(fmt, orientation=6))  # stored landscape, displayed rotated 90° clockwise
    assert decoded.image.size == (20, 40)
    # after a clockwise turn the left (red) half is on top and the right (blue) half at the bottom
    assert close(decoded.image.getpixel((10, 5)), (255, 0, 0), tolerance=40)
    assert close(decoded.image.getpixel((10, 35)), (0, 0, 255), tolerance=40)
    assert (decoded.width, decoded.height) == (20, 40)  # the displayed size is reported


def test_exif_orientation_without_rotation_keeps_the_size() -> None:
    decoded = decode(exif_jpeg((40, 20), orientation=3))  # upside down: same size
    assert (decoded.width, decoded.height) == (40, 20)
    assert close(decoded.image.getpixel((5, 10)), (0, 0, 255), tolerance=40)  # right half now on the left


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (16, 16), 0)
    image.putpalette([0, 255, 0] + [255, 0, 0] + [0] * (254 * 3))
    image.paste(1, (8, 0, 16, 16))  # right half opaque red, left half index 0 = transparent
    return encode(image, "PNG", transparency=0)


def _i16(value: int) -> bytes:
    return encode(Image.fromarray(np.full((16, 16), value, dtype=np.uint16)), "PNG")


@pytest.mark.parametrize(
    ("source_mode", "data", "pixel", "expected"),
    [
        ("P", _palette_with_transparency(), (2, 8), (255, 255, 255)),  # transparent -> white background
        ("P", _palette_with_transparency(), (12, 8), (255, 0, 0)),
        ("LA", encode(Image.new("LA", (16, 16), (90, 255)), "PNG"), (8, 8), (90, 90, 90)),
        ("LA", encode(Image.new("LA", (16, 16), (90, 0)), "PNG"), (8, 8), (255, 255, 255)),
        ("RGBA", encode(Image.new("RGBA", (16, 16), (10, 20, 200, 255)), "PNG"), (8, 8), (10, 20, 200)),
        ("RGBA", encode(Image.new("RGBA", (16, 16), (10, 20, 200, 0)), "PNG"), (8, 8), (255, 255, 255)),
        ("CMYK", encode(Image.new("RGB", (16, 16), (10, 120, 250)).convert("CMYK"), "TIFF"), (8, 8), (10, 120, 250)),
        ("CMYK", encode(Image.new("RGB", (16, 16), (10, 120, 250)).convert("CMYK"), "JPEG"), (8, 8), (10, 120, 250)),
        ("I;16", _i16(65535), (8, 8), (255, 255, 255)),
        ("I;16", _i16(0), (8, 8), (0, 0, 0)),
        ("I;16", _i16(32768), (8, 8), (128, 128, 128)),
        ("L", encode(Image.new("L", (16, 16), 77), "PNG"), (8, 8), (77, 77, 77)),
        ("1", encode(Image.new("1", (16, 16), 1), "PNG"), (8, 8), (255, 255, 255)),
        ("1", encode(Image.new("1", (16, 16), 0), "BMP"), (8, 8), (0, 0, 0)),
    ],
)
def test_modes_become_rgb(
    source_mode: str, data: bytes, pixel: tuple[int, int], expected: tuple[int, int, int]
) -> None:
    assert Image.open(io.BytesIO(data)).mode == source_mode  # the test really covers that mode
    decoded = decode(data)
    assert decoded.image.mode == "RGB"
    assert decoded.image.size == (16, 16)
    assert close(decoded.image.getpixel(pixel), expected, tolerance=6)


# --- rejections ---------------------------------------------------------------------------------


def test_text_is_not_an_image() -> None:
    with pytest.raises(ImageRejected, match="not an image"):
        decode(b"hello, I am a text file pretending to be a picture\n")


def test_truncated_jpeg_is_rejected() -> None:
    with pytest.raises(ImageRejected, match="truncated"):
        decode(truncated_jpeg())


def test_zero_bytes_are_rejected() -> None:
    with pytest.raises(ImageRejected, match="empty"):
        decode(b"")


def test_decompression_bomb_header_is_rejected() -> None:
    data = png_claiming_size(50_000, 50_000)  # 2.5 gigapixels in a 69-byte file
    assert Image.open(io.BytesIO(data)).size == (50_000, 50_000)
    with pytest.raises(ImageRejected, match="decompression bomb") as excinfo:
        decode(data)
    assert "50000x50000" in str(excinfo.value)


def test_real_image_over_the_pixel_limit_is_rejected() -> None:
    data = encode(Image.new("L", (1100, 1000)), "PNG")  # 1.1 MP, a few KB
    assert decode(data, ImageLimits(max_pixels=2_000_000)).width == 1100
    with pytest.raises(ImageRejected, match="too large: 1100x1000"):
        decode(data, ImageLimits(max_pixels=1_000_000))


def test_huge_dimensions_are_rejected() -> None:
    with pytest.raises(ImageRejected, match="too large: 100000x100000"):
        decode(bmp_claiming_size(100_000, 100_000))


def test_byte_limit() -> None:
    data = encode(pattern(1, (300, 200)), "PNG")
    assert decode(data, ImageLimits(max_bytes=len(data))).format == "PNG"
    with pytest.raises(ImageRejected, match=r"over the .* limit"):
        decode(data, ImageLimits(max_bytes=len(data) - 1))


def test_check_size_runs_before_reading() -> None:
    check_size(10, ImageLimits(max_bytes=10))
    with pytest.raises(ImageRejected, match="empty"):
        check_size(0)
    with pytest.raises(ImageRejected, match=r"file is 2 MB, over the 1 MB limit"):
        check_size(2 * 2**20, ImageLimits(max_bytes=2**20))


def test_byte_limit_message_shows_a_sub_megabyte_limit() -> None:
    with pytest.raises(ImageRejected) as excinfo:
        check_size(300_000, ImageLimits(max_bytes=2**18))  # 0.25 MB limit
    assert "over the 0.25 MB limit" in str(excinfo.value)


def test_unsupported_format_is_named() -> None:
    with pytest.raises(ImageRejected, match="unsupported image format PPM"):
        decode(encode(solid((1, 2, 3)), "PPM"))


# --- draft mode and thumbnails ------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    return encode(gradient((4000, 3000)), "JPEG", quality=90)


def test_big_jpeg_decodes_to_a_small_working_copy(big_jpeg: bytes) -> None:
    decoded = decode(big_jpeg)
    assert (decoded.width, decoded.height) == (4000, 3000)  # the true size is reported
    assert decoded.format == "JPEG"
    assert abs(min(decoded.image.size) - WORKING_SIDE) <= 2
    width, height = decoded.image.size
    assert width / height == pytest.approx(4 / 3, rel=0.02)


def test_rotated_big_jpeg_reports_the_displayed_size() -> None:
    exif = Image.Exif()
    exif[0x0112] = 8
    decoded = decode(encode(gradient((2400, 1600)), "JPEG", exif=exif.tobytes()))
    assert (decoded.width, decoded.height) == (1600, 2400)
    width, height = decoded.image.size
    assert width < height
    assert abs(width - WORKING_SIDE) <= 2


def test_thumbnail_is_jpeg_with_longest_side_256(big_jpeg: bytes) -> None:
    thumb = Image.open(io.BytesIO(thumbnail_bytes(decode(big_jpeg))))
    assert thumb.format == "JPEG"
    assert max(thumb.size) == THUMBNAIL_SIDE
    assert thumb.size[0] / thumb.size[1] == pytest.approx(4 / 3, rel=0.02)


def test_thumbnail_never_upscales() -> None:
    thumb = Image.open(io.BytesIO(thumbnail_bytes(decode(png(size=(60, 40))))))
    assert thumb.size == (60, 40)


def test_open_rgb_reads_a_thumbnail_back() -> None:
    image = open_rgb(thumbnail_bytes(decode(encode(solid((0, 200, 0), (80, 40)), "PNG"))))
    assert image.mode == "RGB"
    assert image.size == (80, 40)
    assert close(image.getpixel((40, 20)), (0, 200, 0), tolerance=15)


def test_real_photo_decodes() -> None:
    photos = sorted(REAL_PHOTOS.glob("*.JPEG"))[:2] if REAL_PHOTOS.is_dir() else []
    if not photos:
        pytest.skip(f"no sample photos in {REAL_PHOTOS}")
    for photo in photos:
        data = photo.read_bytes()
        decoded = decode(data)
        true_size = Image.open(io.BytesIO(data)).size
        assert decoded.format == "JPEG"
        assert (decoded.width, decoded.height) in (true_size, true_size[::-1])
        assert decoded.image.mode == "RGB"
        assert min(decoded.image.size) <= max(WORKING_SIDE, min(true_size))
