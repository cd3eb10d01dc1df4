"""Files replaced whole: a reader sees the old content or the new one, never a part of either."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

Content = bytes | str | Callable[[BinaryIO], object]


def replace_file(path: Path, content: Content, *, private: bool = False, durable: bool = True) -> None:
    """Write ``content`` (bytes, text as UTF-8, or a function that writes to a binary handle) to a
    new file beside ``path`` and rename it over ``path``.

    ``private``: readable and writable by the owner only (else the umask decides, as for any new
    file). ``durable``: synced to disk before the rename, so a crash leaves the old file or the new
    one; files rewritten often and cheap to lose (progress, caches) skip it. A failed write leaves
    nothing behind: the partial file is removed and ``path`` is untouched."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode() if isinstance(content, str) else content)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
