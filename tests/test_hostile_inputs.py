"""Hostile and unusual input files, all generated here (no committed corpus).

Each class is fed through the real ingest path (sources -> Ingestor with a local store, the
embedded index and the tiny random CLIP) and must give exactly one result with the exact outcome
and reason: degenerate shapes, the pixel limit at and over its edge, animations counted frame by
frame, AVIF, damaged PNGs, bombs, truncations, disguised and unsupported files, zip members that
lie about their size, traversal and control-character names, hidden files, empty archives and
folders. Peak memory of the extreme shapes is measured in a subprocess (bench/input_memory.py).
"""

from __future__ import annotations

import bz2
import math
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers import bmp_claiming_size, encode, gradient, jpeg, pattern, png, png_claiming_size, zip_bytes
from PIL import Image, features

from bench.input_memory import BUDGET_MB, TEST_CLASSES, measure, write_inputs
from core.embed import Embedder
from core.images import (
    ACCEPTED_FORMATS,
    DISPLAY_SIDE,
    MODEL_MAX_ASPECT,
    WORKING_MAX_SIDE,
    ImageLimits,
    decode,
    model_input,
    open_rgb,
)
from core.index import ImageRecord, collection_name
from core.index.edge import EdgeIndex
from core.ingest import Ingestor, IngestResult
from core.names import display_name, name_problem
from core.payload import finite_payload
from core.quality import STAT_NAMES, image_stats
from core.sources import IngestItem, items_from_paths, items_from_upload
from core.storage import LocalStore

USER = "mallory"
#: Small limits so that "at the limit" and "one over" are cheap to build.
LIMITS = ImageLimits(max_pixels=10_000, max_bytes=2**18)
BOMB = "possible decompression bomb"


@pytest.fixture
def index(tmp_path: Path, tiny: Embedder) -> Iterator[EdgeIndex]:
    idx = EdgeIndex(tmp_path / "index", collection_name(tiny.name, tiny.dimension), tiny.dimension)
    yield idx
    idx.close()


@pytest.fixture
def ingestor(tmp_path: Path, index: EdgeIndex, tiny: Embedder) -> Ingestor:
    return Ingestor(LocalStore(tmp_path / "objects"), index, tiny, limits=LIMITS, batch_size=8)


def file_items(files: dict[str, bytes]) -> list[IngestItem]:
    return [IngestItem(path=name, read=lambda data=data: data, size=len(data)) for name, data in files.items()]


def outcomes(results: list[IngestResult]) -> dict[str, tuple[str, str | None]]:
    return {r.path: (r.status, r.reason) for r in results}


def ingest_exactly(ingestor: Ingestor, items: list[IngestItem], expected: dict[str, tuple[str, str | None]]) -> None:
    """One result per item, in order, each with exactly the expected status and reason."""
    results = ingestor.ingest(items, USER)
    assert [r.path for r in results] == [item.path for item in items]
    assert outcomes(results) == expected


# --- builders: PNG chunks by hand, zip archives with raw headers ---------------------------------


def chunk(kind: bytes, body: bytes, crc: int | None = None) -> bytes:
    crc = zlib.crc32(kind + body) if crc is None else crc
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def raw_png(
    size: tuple[int, int] = (8, 8),
    colour: int = 2,
    methods: tuple[int, int, int] = (0, 0, 0),
    idat: bytes | None = None,
    palette: bool = True,
    idat_crc: int | None = None,
) -> bytes:
    """An 8-bit PNG built chunk by chunk; each argument breaks one thing."""
    width, height = size
    channels = {0: 1, 2: 3, 3: 1}[colour]
    rows = b"".join(b"\0" + bytes((x * 37 + y * 11) % 256 for x in range(width * channels)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, colour, *methods)
    plte = chunk(b"PLTE", bytes(range(48))) if colour == 3 and palette else b""
    image_data = zlib.compress(rows) if idat is None else idat
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + plte
        + chunk(b"IDAT", image_data, idat_crc)
        + chunk(b"IEND", b"")
    )


def adam7_png(size: tuple[int, int]) -> bytes:
    """A valid interlaced greyscale PNG (Pillow cannot write one)."""
    width, height = size
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    raw = b""
    for x0, y0, dx, dy in passes:
        columns, rows = math.ceil(max(width - x0, 0) / dx), math.ceil(max(height - y0, 0) / dy)
        if columns and rows:
            raw += (b"\0" + bytes(range(columns))) * rows
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def raw_zip(name: bytes, stream: bytes, declared: int, crc: int, method: int = 8, flags: int = 0) -> bytes:
    """A one-member archive whose headers say whatever they are told."""
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, method, 0, 0, crc, len(stream), declared, len(name), 0)
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50, 20, 20, flags, method, 0, 0, crc, len(stream), declared, len(name), 0, 0, 0, 0, 0, 0,
    )  # fmt: skip
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central + name), len(local + name + stream), 0)
    return local + name + stream + central + name + end


def deflated(data: bytes) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


def zero_bomb(megabytes: int) -> bytes:
    """A raw deflate stream of ``megabytes`` MiB of zeros (about 1 KB per MiB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = bytes(2**20)
    return b"".join(packer.compress(block) for _ in range(megabytes)) + packer.flush()


def animation(frames: int, size: tuple[int, int], fmt: str = "GIF") -> bytes:
    """An animation (GIF, APNG, WebP) or a multi-page file (TIFF) of distinct frames."""
    images = [Image.new("RGB", size, (255 * (i % 2), 40, 90)) for i in range(frames)]
    return encode(images[0], fmt, save_all=True, append_images=images[1:], duration=50)


def over(shape: str, pixels: int) -> str:
    return f"too large: {shape} is {pixels:,} pixels, over the limit of 10,000 (0.01 MP; {BOMB})"


# --- image files ----------------------------------------------------------------------------------


def test_degenerate_and_limit_edge_images(ingestor: Ingestor, index: EdgeIndex) -> None:
    files = {
        "1x1.png": encode(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "2x2.png": encode(Image.new("L", (2, 2), 7), "PNG"),
        "1x300.png": encode(gradient((1, 300)), "PNG"),
        "300x1.jpg": encode(gradient((300, 1)), "JPEG"),
        "constant.png": encode(Image.new("RGB", (64, 64), (128, 128, 128)), "PNG"),
        "at-the-limit.png": encode(gradient((100, 100)), "PNG"),  # exactly 10,000 pixels
        "one-over.png": encode(gradient((10_001, 1)), "PNG"),
        "interlaced.png": adam7_png((13, 7)),
        "animation-at-the-limit.gif": animation(2, (100, 50)),
        "animation-over.gif": animation(3, (100, 50)),
        "animation-at-the-limit.png": animation(2, (100, 50), "PNG"),
        "animation-over.webp": animation(3, (100, 50), "WEBP"),
        "pages-over.tiff": animation(2, (100, 60), "TIFF"),
    }
    ingest_exactly(
        ingestor,
        file_items(files),
        {
            "1x1.png": ("stored", None),
            "2x2.png": ("stored", None),
            "1x300.png": ("stored", None),
            "300x1.jpg": ("stored", None),
            "constant.png": ("stored", None),
            "at-the-limit.png": ("stored", None),
            "one-over.png": ("rejected", over("10001x1", 10_001)),
            "interlaced.png": ("stored", None),
            "animation-at-the-limit.gif": ("stored", None),
            "animation-over.gif": ("rejected", over("3 frames of 100x50", 15_000)),
            "animation-at-the-limit.png": ("stored", None),
            "animation-over.webp": ("rejected", over("3 frames of 100x50", 15_000)),
            "pages-over.tiff": ("rejected", over("2 frames of 100x60", 12_000)),
        },
    )
    for record in index.scroll(USER):  # every statistic of every degenerate image is a real number
        assert set(record.payload["quality"]) == set(STAT_NAMES)
        assert all(math.isfinite(value) for value in record.payload["quality"].values()), record.payload


@pytest.mark.parametrize(
    "size", [(1, 1), (2, 2), (1, 2), (2, 1), (1, 500), (500, 1), (3, 3)], ids=lambda s: f"{s[0]}x{s[1]}"
)
@pytest.mark.parametrize("content", ["constant", "noise"])
def test_every_statistic_is_finite(size: tuple[int, int], content: str) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels if content == "noise" else np.full_like(pixels, 77), "RGB")
    stats = image_stats(image)
    assert all(math.isfinite(value) for value in stats.values()), stats
    if min(size) < 3 or content == "constant":
        assert stats["sharpness"] == 0.0  # no interior for the 3x3 kernel, or nothing to see
        assert stats["edge_sharpness"] == 0.0


def test_broken_pngs_are_refused(ingestor: Ingestor) -> None:
    files = {
        "sound.png": raw_png(),
        "bad-crc.png": raw_png(idat_crc=12345),
        "truncated-zlib.png": raw_png(idat=zlib.compress(bytes(8 * 25))[:-10]),
        "corrupt-zlib.png": raw_png(idat=b"\x78\x9c" + b"\xff" * 40),
        "short-image-data.png": raw_png(idat=zlib.compress(bytes(3 * 25))),
        "long-image-data.png": raw_png(idat=zlib.compress(bytes(400))),
        "no-plte.png": raw_png(colour=3, palette=False),
        "bad-compression-method.png": raw_png(methods=(1, 0, 0)),
        "bad-interlace-method.png": raw_png(methods=(0, 0, 2)),
        "truncated-file.png": raw_png()[:-12],
    }
    ingest_exactly(
        ingestor,
        file_items(files),
        {
            "sound.png": ("stored", None),
            "bad-crc.png": ("rejected", "corrupt PNG: bad CRC in the 'IDAT' chunk"),
            "truncated-zlib.png": ("rejected", "corrupt PNG: the image data stream is truncated"),
            "corrupt-zlib.png": (
                "rejected",
                "corrupt PNG: corrupt image data (Error -3 while decompressing data: invalid block type)",
            ),
            "short-image-data.png": (
                "rejected",
                "corrupt PNG: the image data holds 75 of the 200 bytes its size needs",
            ),
            "long-image-data.png": ("rejected", "corrupt PNG: the image data is longer than its size needs"),
            "no-plte.png": ("rejected", "corrupt PNG: palette image without a PLTE chunk before its image data"),
            "bad-compression-method.png": (
                "rejected",
                "corrupt PNG: invalid IHDR method (compression 1, filter 0, interlace 0)",
            ),
            "bad-interlace-method.png": (
                "rejected",
                "corrupt PNG: invalid IHDR method (compression 0, filter 0, interlace 2)",
            ),
            "truncated-file.png": ("rejected", "corrupt PNG: the file is truncated (no IEND chunk)"),
        },
    )


def test_known_hostile_files_keep_their_exact_reasons(ingestor: Ingestor) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    noisy_jpeg = encode(Image.fromarray(noise, "RGB"), "JPEG", quality=90)
    files = {
        "bomb.png": png_claiming_size(50_000, 50_000),
        "bomb.bmp": bmp_claiming_size(100_000, 100_000),
        "truncated.jpg": noisy_jpeg[: len(noisy_jpeg) // 2],
        "script.jpg": b"<?php system($_GET['c']); ?>\n",
        "page.png": b"<!doctype html><html><script>alert(1)</script></html>",
        "empty.gif": b"",
        "image.ppm": encode(pattern(1, (8, 8)), "PPM"),
        "icon.ico": encode(pattern(2, (16, 16)), "ICO"),
        "too-many-bytes.bmp": encode(pattern(3, (300, 300)), "BMP"),
    }
    if features.check("avif"):
        files["photo.avif"] = encode(pattern(4, (32, 32)), "AVIF")
    accepted = f"accepted: {ACCEPTED_FORMATS}"
    expected = {
        "bomb.png": ("rejected", over("50000x50000", 2_500_000_000)),
        "bomb.bmp": ("rejected", over("100000x100000", 10_000_000_000)),
        "truncated.jpg": (
            "rejected",
            "truncated or corrupt image data (image file is truncated (143 bytes not processed))",
        ),
        "script.jpg": ("rejected", "not an image: the content is not a recognised image format"),
        "page.png": ("rejected", "not an image: the content is not a recognised image format"),
        "empty.gif": ("rejected", "empty file (zero bytes)"),
        "image.ppm": ("rejected", f"unsupported image format PPM; {accepted}"),
        "icon.ico": ("rejected", f"unsupported image format ICO; {accepted}"),
        "too-many-bytes.bmp": ("rejected", "file is 0.258 MB, over the 0.25 MB limit"),
        "photo.avif": ("rejected", f"unsupported image format AVIF; {accepted}"),
    }
    ingest_exactly(ingestor, file_items(files), {path: expected[path] for path in files})


# --- archives -------------------------------------------------------------------------------------


def test_archive_members_each_get_one_line(ingestor: Ingestor) -> None:
    member = png(seed=5)
    archive = zip_bytes(
        {
            "good.png": member,
            "../escape.png": png(seed=6),
            "/etc/absolute.png": png(seed=7),
            "a/../../climb.png": png(seed=8),
            "evil.php#.jpg": png(seed=9),
            "ansi-\x1b[31m.png": png(seed=10),
            "bidi-\u202egnp.exe": png(seed=11),
            ".hidden.png": png(seed=12),
            "__MACOSX/._good.png": b"resource fork",
            "sub/Thumbs.db": b"cache",
            "notes.txt": b"plain text",
        }
    ).replace(b"evil.php#.jpg", b"evil.php\x00.jpg")  # zipfile cannot write a NUL; the bytes can hold one
    bzip2 = raw_zip(b"packed.png", bz2.compress(member), len(member), zlib.crc32(member), method=12)
    encrypted = raw_zip(b"locked.png", deflated(member), len(member), zlib.crc32(member), flags=1)
    bad_crc = raw_zip(b"flipped.png", deflated(member), len(member), zlib.crc32(member) ^ 1)
    short = raw_zip(b"short.png", deflated(member), len(member) + 10, zlib.crc32(member))
    uploads = [
        ("mixed.zip", archive),
        ("empty.zip", zip_bytes({})),
        ("folders-only.zip", zip_bytes({"a/": b"", "a/b/": b""})),
        ("corrupt.zip", b"PK\x03\x04 not really an archive"),
        ("bzip2.zip", bzip2),
        ("encrypted.zip", encrypted),
        ("bad-crc.zip", bad_crc),
        ("short.zip", short),
        ("upload-\x07bell.png", png(seed=13)),
    ]
    items = [item for name, data in uploads for item in items_from_upload(name, data)]
    unsafe = "unsafe path in the archive (absolute, or climbing out with '..')"
    ingest_exactly(
        ingestor,
        items,
        {
            "mixed.zip/../escape.png": ("rejected", unsafe),
            "mixed.zip/.hidden.png": ("skipped", "hidden (name starts with a dot)"),
            "mixed.zip//etc/absolute.png": ("rejected", unsafe),
            "mixed.zip/__MACOSX/._good.png": ("skipped", "macOS metadata (__MACOSX)"),
            "mixed.zip/a/../../climb.png": ("rejected", unsafe),
            "mixed.zip/ansi-\x1b[31m.png": ("rejected", "file name contains control characters: ansi-\\x1b[31m.png"),
            "mixed.zip/bidi-\u202egnp.exe": ("stored", None),  # allowed, but always shown escaped
            "mixed.zip/evil.php\x00.jpg": ("rejected", "file name contains control characters: evil.php\\x00.jpg"),
            "mixed.zip/good.png": ("stored", None),
            "mixed.zip/notes.txt": ("rejected", "not an image: the content is not a recognised image format"),
            "mixed.zip/sub/Thumbs.db": ("skipped", "system file"),
            "empty.zip": ("rejected", "empty archive: no files in it"),
            "folders-only.zip": ("rejected", "empty archive: no files in it"),
            "corrupt.zip": (
                "rejected",
                "could not read the file: not a readable .zip archive (File is not a zip file)",
            ),
            "bzip2.zip/packed.png": (
                "rejected",
                "archive member compressed with bzip2: only stored and deflate members are read",
            ),
            "encrypted.zip/locked.png": ("rejected", "encrypted archive member"),
            "bad-crc.zip/flipped.png": ("rejected", "corrupt archive member (bad CRC-32)"),
            "short.zip/short.png": (
                "rejected",
                f"archive member is shorter than its declared size of {len(member) + 10:,} bytes",
            ),
            "upload-\x07bell.png": ("rejected", "file name contains control characters: upload-\\x07bell.png"),
        },
    )


def test_a_member_that_lies_about_its_size_is_not_inflated(ingestor: Ingestor) -> None:
    """1,000 bytes declared, 512 MiB inside (with the CRC of the whole stream or of its first
    1,000 bytes): refused after reading 1,001 bytes, so in far less time than inflating it takes."""
    stream = zero_bomb(512)
    full_crc = 0
    for _ in range(512):
        full_crc = zlib.crc32(bytes(2**20), full_crc)
    archives = [
        ("full-crc.zip", raw_zip(b"bomb.png", stream, 1000, full_crc)),
        ("prefix-crc.zip", raw_zip(b"bomb.png", stream, 1000, zlib.crc32(bytes(1000)))),
        ("over-the-byte-limit.zip", raw_zip(b"big.png", stream, 512 * 2**20, zlib.crc32(b""))),
    ]
    items = [item for name, data in archives for item in items_from_upload(name, data)]
    expands = "archive member expands past its declared size of 1,000 bytes"
    ingest_exactly(
        ingestor,
        items,
        {
            "full-crc.zip/bomb.png": ("rejected", expands),
            "prefix-crc.zip/bomb.png": ("rejected", expands),
            "over-the-byte-limit.zip/big.png": ("rejected", "file is 512 MB, over the 0.25 MB limit"),
        },
    )


# --- folders --------------------------------------------------------------------------------------


def test_folder_entries_each_get_one_line(ingestor: Ingestor, tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "objects.png").write_bytes(png(seed=1))
    (root / "sub").mkdir()
    (root / "sub" / "a.png").write_bytes(png(seed=2))
    (root / ".hidden.png").write_bytes(png(seed=3))
    (root / "esc-\x1b]0;pwned\x07.png").write_bytes(png(seed=4))
    (root / "Thumbs.db").write_bytes(b"cache")
    os.mkfifo(root / "pipe.png")  # reading it would block for ever
    (root / "dangling.png").symlink_to(root / "nowhere.png")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (tmp_path / "empty").mkdir()
    items = list(items_from_paths([root, tmp_path / "empty"]))
    expected = {
        ".git": ("skipped", "folder not entered: hidden (name starts with a dot)"),
        ".hidden.png": ("skipped", "hidden (name starts with a dot)"),
        "Thumbs.db": ("skipped", "system file"),
        "dangling.png": ("rejected", "broken link: its target does not exist"),
        "esc-\x1b]0;pwned\x07.png": (
            "rejected",
            "file name contains control characters: esc-\\x1b]0;pwned\\x07.png",
        ),
        "loop": ("skipped", "folder not entered: link to a folder"),
        "pipe.png": ("rejected", "not a regular file (a pipe)"),
        "sub/a.png": ("stored", None),
    }
    ingest_exactly(
        ingestor,
        items,
        {str(root / name): outcome for name, outcome in expected.items()}
        | {str(tmp_path / "empty"): ("rejected", "empty folder: no files in it")},
    )


# --- memory and model inputs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [(1, 65535), (65535, 1), (1, 10_000), (300, 200), (256, 1024), (1025, 256), (5000, 10)],
    ids=lambda s: f"{s[0]}x{s[1]}",
)
def test_model_input_is_bounded_in_both_dimensions(size: tuple[int, int]) -> None:
    image = Image.new("RGB", size, (10, 200, 30))
    bounded = model_input(image)
    width, height = bounded.size
    assert max(width, height) <= MODEL_MAX_ASPECT * min(width, height)
    assert max(width, height) <= MODEL_MAX_ASPECT * 256
    if max(size) <= MODEL_MAX_ASPECT * min(size) and max(size) <= 1024:
        assert bounded is image  # ordinary shapes reach the model unchanged


def test_the_working_copy_is_bounded_in_both_dimensions() -> None:
    decoded = decode(encode(Image.new("L", (1, 65535), 40), "PNG"))
    assert (decoded.width, decoded.height) == (1, 65535)
    assert decoded.image.size == (1, WORKING_MAX_SIDE)


def test_an_original_opened_for_display_is_bounded() -> None:
    image = open_rgb(encode(gradient((5000, 300)), "PNG"))
    assert image.size == (DISPLAY_SIDE, 123)


def test_an_extreme_strip_embeds_quickly(tiny: Embedder) -> None:
    """Without the bound, the model's resize would upsample 1 x 65535 to 64 x 4.2 million."""
    vectors = tiny.embed_images([Image.new("RGB", (1, 65535), (90, 90, 90)), pattern(1)])
    assert vectors.shape == (2, tiny.dimension)
    assert np.all(np.isfinite(vectors))


def test_peak_memory_of_extreme_images_is_bounded(tmp_path: Path) -> None:
    """One fresh process ingests each memory class in turn (1 x 65535, 65535 x 1,
    100,000,000 x 1, a 16-bit grey image of exactly 100 MP): its peak RSS stays under the budget
    above its idle size. The figures are printed (pytest -s)."""
    rows = measure(write_inputs(tmp_path, TEST_CLASSES), timeout=300)
    for row in rows:
        print(f"{row['file']}: {row['status']}, peak {row['above_idle_mb']} MB above idle ({row['idle_mb']} MB)")
    assert [(row["file"], row["status"]) for row in rows] == [(name, "stored") for name in TEST_CLASSES]
    assert max(row["above_idle_mb"] for row in rows) < BUDGET_MB


# --- payloads and names -----------------------------------------------------------------------------


def test_no_payload_value_is_ever_nan_or_infinite(index: EdgeIndex, tiny: Embedder) -> None:
    payload = {
        "user": USER,
        "quality": {"sharpness": float("nan"), "brightness": np.float32(0.5), "entropy": float("inf")},
        "scores": [1.0, float("-inf"), np.float64("nan")],
        "width": 3,
        "filename": "x.png",
    }
    cleaned = finite_payload(payload)
    assert cleaned == {
        "user": USER,
        "quality": {"sharpness": None, "brightness": 0.5, "entropy": None},
        "scores": [1.0, None, None],
        "width": 3,
        "filename": "x.png",
    }
    # the index applies the guard on every write: upsert and set_payload
    record = ImageRecord("00000000-0000-0000-0000-000000000001", payload, np.ones(tiny.dimension, np.float32))
    index.upsert([record])
    index.set_payload(USER, [record.id], {"quality": {"contrast": float("nan")}})
    [stored] = index.retrieve(USER, [record.id])
    assert stored.payload["quality"] == {"contrast": None}
    assert stored.payload["scores"] == [1.0, None, None]


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("holiday.png", "holiday.png"),
        ("élodie 東京 🐈.png", "élodie 東京 🐈.png"),
        ("red\x1b[31m.png", "red\\x1b[31m.png"),
        ("csi-\x9b31m.png", "csi-\\x9b31m.png"),
        ("evil.php\x00.jpg", "evil.php\\x00.jpg"),
        ("line\nbreak.png", "line\\x0abreak.png"),
        ("invoice-\u202efdp.exe", "invoice-\\u202efdp.exe"),
        ("isolate-\u2066x\u2069.png", "isolate-\\u2066x\\u2069.png"),
        ("zero\u200bwidth.png", "zero\\u200bwidth.png"),
        ("sep\u2028line.png", "sep\\u2028line.png"),
        ("bytes-\udcff.png", "bytes-\\udcff.png"),
    ],
)
def test_display_name_escapes_what_could_hide_or_reorder_text(name: str, shown: str) -> None:
    assert display_name(name) == shown


def test_names_with_control_characters_or_undecodable_bytes_are_refused() -> None:
    assert name_problem("fine name (1).png") is None
    assert name_problem("bidi-\u202e.png") is None  # shown escaped, not refused
    assert name_problem("tab\there.png") == "file name contains control characters: tab\\x09here.png"
    assert name_problem("raw-\udcff.png") == "file name is not valid UTF-8: raw-\\udcff.png"


def test_a_jpeg_from_a_camera_is_unaffected(ingestor: Ingestor) -> None:
    """The guards leave ordinary files alone."""
    ingest_exactly(ingestor, file_items({"photo.jpg": jpeg(seed=3, size=(90, 60))}), {"photo.jpg": ("stored", None)})


def test_the_upload_page_shows_names_escaped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from apptest_helpers import open_page, signed_in_app, upload

    monkeypatch.setenv("VAD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VAD_MODEL", "tiny:random")
    at = open_page(signed_in_app(tmp_path / "data", "mallory"), "upload")
    archive = zip_bytes({"invoice-\u202efdp.exe": png(seed=1), "red-\x1b[31m.png": png(seed=2)})
    upload(at, [("batch.zip", archive)])
    assert not at.exception
    table = at.dataframe[0].value
    assert sorted(zip(table["path"], table["status"], table["reason"], strict=True)) == [
        ("batch.zip/invoice-\\u202efdp.exe", "stored", ""),
        ("batch.zip/red-\\x1b[31m.png", "rejected", "file name contains control characters: red-\\x1b[31m.png"),
    ]
