"""core.files.replace_file: whole-file replacement, its modes, and nothing left after a failure."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from core.files import replace_file


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("durable", [True, False])
def test_text_bytes_and_writers_replace_the_whole_file(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "state.json"
    path.write_text("an old and much longer content")
    replace_file(path, "néw", durable=durable)
    assert path.read_bytes() == "néw".encode()
    replace_file(path, b"\x00\x01", durable=durable)
    assert path.read_bytes() == b"\x00\x01"
    replace_file(path, lambda handle: handle.write(b"from a writer"), durable=durable)
    assert path.read_bytes() == b"from a writer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_private_files_are_the_owners_only_and_others_follow_the_umask(tmp_path: Path) -> None:
    replace_file(tmp_path / "secret", "key", private=True)
    assert mode(tmp_path / "secret") == 0o600
    previous = os.umask(0o022)
    try:
        replace_file(tmp_path / "shared", "data")
    finally:
        os.umask(previous)
    assert mode(tmp_path / "shared") == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial_one(tmp_path: Path) -> None:
    path = tmp_path / "batch.npy"
    path.write_bytes(b"old")

    def fails_halfway(handle) -> None:
        handle.write(b"half of it")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        replace_file(path, fails_halfway)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch.npy"]


def test_a_missing_folder_is_an_error_not_created(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        replace_file(tmp_path / "gone" / "file", "x")
    assert not (tmp_path / "gone").exists()
