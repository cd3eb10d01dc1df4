"""Structural check of a PNG file before it is accepted.

Pillow decodes some broken PNGs without complaint: a wrong chunk CRC, a zlib stream that ends
before the image does (the missing rows come out black), a palette image without its PLTE chunk,
an IHDR with an unknown compression or filter method. This check walks every chunk, verifies
each CRC and the IHDR fields, and inflates the image data (in bounded pieces, nothing is kept)
to make sure it is one complete zlib stream of exactly the size the header implies.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: colour type -> (channels, allowed bit depths), from the PNG specification.
_COLOUR_TYPES = {
    0: (1, {1, 2, 4, 8, 16}),
    2: (3, {8, 16}),
    3: (1, {1, 2, 4, 8}),
    4: (2, {8, 16}),
    6: (4, {8, 16}),
}
#: Adam7 passes: (first column, first row, column step, row step).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PIECE = 1 << 20  # inflate at most this many bytes at a time


class BrokenPng(ValueError):
    """The PNG is damaged; ``str(exc)`` says how."""


def verify_png(data: bytes) -> None:
    """Raise BrokenPng unless ``data`` is a structurally sound PNG (CRCs, IHDR, PLTE, image data)."""
    if not data.startswith(SIGNATURE):
        raise BrokenPng("not a PNG signature")
    header: tuple[int, ...] | None = None
    has_palette = False
    inflater = zlib.decompressobj()
    inflated = 0
    expected = 0
    for kind, body in _chunks(memoryview(data)):
        if header is None:
            if kind != b"IHDR" or len(body) != 13:
                raise BrokenPng("the first chunk is not a valid IHDR")
            header = struct.unpack(">IIBBBBB", body)
            expected = _check_header(*header)
        elif kind == b"PLTE":
            has_palette = True
        elif kind == b"IDAT":
            if header[3] == 3 and not has_palette:
                raise BrokenPng("palette image without a PLTE chunk before its image data")
            inflated += _inflate(inflater, body, expected - inflated)
    if not inflater.eof:
        raise BrokenPng("the image data stream is truncated")
    if inflated != expected:
        raise BrokenPng(f"the image data holds {inflated:,} of the {expected:,} bytes its size needs")


def _chunks(data: memoryview) -> Iterator[tuple[bytes, memoryview]]:
    """(type, body) of each chunk up to IEND, with every length and CRC checked."""
    position = len(SIGNATURE)
    while position + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        end = position + 12 + length
        if end > len(data):
            break
        (crc,) = struct.unpack_from(">I", data, end - 4)
        if zlib.crc32(data[position + 4 : end - 4]) != crc:
            raise BrokenPng(f"bad CRC in the {kind.decode('latin-1')!r} chunk")
        yield kind, data[position + 8 : end - 4]
        if kind == b"IEND":
            return
        position = end
    raise BrokenPng("the file is truncated (no IEND chunk)")


def _check_header(
    width: int, height: int, depth: int, colour: int, compression: int, filtering: int, interlace: int
) -> int:
    """The size of the inflated image data the header implies, or BrokenPng for invalid fields."""
    if width == 0 or height == 0 or width > 2**31 - 1 or height > 2**31 - 1:
        raise BrokenPng(f"invalid IHDR size {width}x{height}")
    if colour not in _COLOUR_TYPES or depth not in _COLOUR_TYPES[colour][1]:
        raise BrokenPng(f"invalid IHDR colour type {colour} with bit depth {depth}")
    if compression != 0 or filtering != 0 or interlace not in (0, 1):
        raise BrokenPng(f"invalid IHDR method (compression {compression}, filter {filtering}, interlace {interlace})")
    bits = _COLOUR_TYPES[colour][0] * depth
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    total = 0
    for x0, y0, dx, dy in passes:
        columns, rows = math.ceil(max(width - x0, 0) / dx), math.ceil(max(height - y0, 0) / dy)
        if columns and rows:
            total += rows * (1 + math.ceil(columns * bits / 8))  # a filter byte starts every row
    return total


def _inflate(inflater: zlib._Decompress, body: memoryview, room: int) -> int:
    """Inflate ``body`` in bounded pieces; the number of bytes it gave (at most ``room`` + 1)."""
    produced = 0
    pending: bytes | memoryview = body
    try:
        while not inflater.eof:
            piece = inflater.decompress(pending, _PIECE)
            pending = inflater.unconsumed_tail
            produced += len(piece)
            if produced > room:
                raise BrokenPng("the image data is longer than its size needs")
            if not piece and not pending:  # this chunk is used up
                break
    except zlib.error as exc:
        raise BrokenPng(f"corrupt image data ({exc})") from None
    return produced
