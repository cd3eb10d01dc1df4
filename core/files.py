"""Files replaced whole: a reader sees the old content or the new one, never a part of either."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from typing import BinaryIO

Content = bytes | str | Callable[[BinaryIO], object]


def replace_file(
    path: str | os.PathLike[str], content: Content, *, private: bool = False, durable: bool = True
) -> None:
    """Write ``content`` (bytes, text as UTF-8, or a function that writes to a binary handle) to a
    new file beside ``path`` and rename it over ``path``.

    ``private``: readable and writable by the owner only (else the umask decides, as for any new
    file). ``durable``: synced to disk before the rename, so a crash leaves the old file or the new
    one; files rewritten often and cheap to lose (objects of the local store, progress, caches) skip
    it. A failed write leaves nothing behind: the partial file is removed and ``path`` is untouched.
    A missing folder is a FileNotFoundError (callers that may create it do)."""
    folder, name = os.path.split(os.fspath(path))  # str, not Path: this runs for every stored file
    temporary = os.path.join(folder, f".{name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    descriptor = os.open(temporary, flags, 0o600 if private else 0o666)
    try:
        try:
            if callable(content):
                with os.fdopen(descriptor, "wb", closefd=False) as handle:
                    content(handle)
            else:  # straight to the descriptor: no buffer copy of a large object
                view = memoryview(content.encode() if isinstance(content, str) else content)
                while view:
                    view = view[os.write(descriptor, view) :]
            if durable:
                os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
