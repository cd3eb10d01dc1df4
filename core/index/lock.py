"""An exclusive, advisory lock on a data directory that names the process holding it."""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

from core.index.base import IndexLocked


class DirectoryLock:
    """Held for the lifetime of an embedded index; a second holder gets IndexLocked at once."""

    def __init__(self, directory: Path, purpose: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / ".lock"
        self._handle = self.path.open("a+")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder()
            self._handle.close()
            raise IndexLocked(
                f"the {purpose} in {directory} is in use by {holder}. Stop that process, or run "
                "against a Qdrant server (VAD_QDRANT_URL) so that several processes can share the index."
            ) from None
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.write(json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv)[:300]}))
        self._handle.flush()

    def _holder(self) -> str:
        try:
            self._handle.seek(0)
            info = json.loads(self._handle.read() or "{}")
            return f"process {info.get('pid', '?')} ({info.get('command') or 'unknown command'})"
        except (OSError, ValueError):
            return "another process"

    def release(self) -> None:
        if not self._handle.closed:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()


def lock_holder(directory: Path) -> dict | None:
    """Who holds the lock on ``directory`` ({"pid", "command"}), or None when nobody does.

    Reads what the last holder wrote: a process that is gone holds nothing. Only when it names a
    live process is the lock tried, shared and without waiting (and let go at once), so the
    holder is never disturbed.
    """
    path = directory / ".lock"
    try:
        info = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        info = {}
    if pid_alive(info.get("pid")) and info.get("pid") != os.getpid():
        try:
            with path.open("a+") as handle:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return info
        except OSError:
            return None
    return None


def pid_alive(pid: object) -> bool:
    """Whether a process with this id runs (on this machine)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
