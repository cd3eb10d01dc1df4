"""Free-space guard for the data folder.

The embedded index memory-maps its files: writing to them on a full disk kills the process with
SIGBUS, without a message. So nothing opens or writes the index, or stores objects on local disk,
while the data folder's disk has less than ``VAD_MIN_FREE_MB`` free; it says so instead.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from core.storage.base import StorageError

MIB = 1024 * 1024


class DiskFull(StorageError):
    """The data folder's disk has less free space than the configured minimum."""


def free_bytes(path: Path) -> int:
    """Free bytes (for unprivileged writers) on the disk holding ``path`` or its nearest parent."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def describe_bytes(count: float) -> str:
    """``12.3 MB``, ``4.1 GB``: free space as people read it."""
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(count) < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class DiskGuard:
    """Raises DiskFull when ``folder``'s disk has less than ``min_free`` bytes free."""

    folder: Path
    min_free: int

    def check(self, need: int = 0) -> None:
        """Raise DiskFull unless ``need`` more bytes leave the minimum free (a minimum of 0: no check)."""
        if self.min_free <= 0:
            return
        try:
            free = free_bytes(self.folder)
        except OSError as exc:
            raise DiskFull(f"cannot check the free space of the data folder {self.folder}: {exc}") from exc
        if free - need < self.min_free:
            extra = f" plus the {describe_bytes(need)} to write next" if need else ""
            raise DiskFull(
                f"the data folder {self.folder} has {describe_bytes(free)} free, less than the "
                f"{describe_bytes(self.min_free)} kept free (VAD_MIN_FREE_MB){extra}: free some space and run again"
            )
