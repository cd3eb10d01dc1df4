"""What a user names to ingest (local files and folders, ``s3://bucket/prefix`` URLs) as items."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from core.s3_source import S3Access, S3InputError, is_s3_url, items_from_s3
from core.settings import Settings
from core.sources import IngestItem, items_from_paths

__all__ = ["S3InputError", "items_from_inputs", "missing_inputs"]


def missing_inputs(inputs: Sequence[str | Path]) -> list[str]:
    """The local inputs that do not exist (``s3://`` ones are checked when listed)."""
    return [str(i) for i in inputs if not is_s3_url(str(i)) and not Path(i).exists()]


def items_from_inputs(inputs: Sequence[str | Path], settings: Settings) -> Iterator[IngestItem]:
    """Items of every input in order; S3InputError when an ``s3://`` input cannot be listed."""
    access = None
    for text in map(str, inputs):
        if is_s3_url(text):
            access = access or S3Access.of(settings)
            yield from items_from_s3(text, access)
        else:
            yield from items_from_paths([Path(text)])
