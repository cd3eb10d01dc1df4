"""core.sources: command-line paths and uploads (files, folders, .zip archives) as ingest items."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import png, zip_bytes

from core.images import ImageRejected
from core.sources import IngestItem, InputSkipped, items_from_paths, items_from_upload


def as_dict(items: list[IngestItem]) -> dict[str, bytes]:
    return {item.path: item.read() for item in items}


def outcomes(items: list[IngestItem]) -> dict[str, bytes | str]:
    """path -> the bytes read, or the reason the item is refused."""
    found: dict[str, bytes | str] = {}
    for item in items:
        try:
            found[item.path] = item.read()
        except InputSkipped as exc:
            assert item.size is None
            found[item.path] = f"skipped: {exc}"
        except ImageRejected as exc:
            assert item.size is None  # a refused item is never size-checked first
            found[item.path] = str(exc)
    return found


def test_a_file_is_one_item(tmp_path: Path) -> None:
    path = tmp_path / "cat.png"
    path.write_bytes(png(1))
    [item] = items_from_paths([path])
    assert item.path == str(path)
    assert item.size == path.stat().st_size
    assert item.read() == png(1)


def test_folders_are_read_recursively_and_hidden_files_get_a_line(tmp_path: Path) -> None:
    (tmp_path / "b.png").write_bytes(b"b")
    (tmp_path / "a.png").write_bytes(b"a")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "c.jpg").write_bytes(b"c")
    (tmp_path / "sub" / "deeper" / "d.gif").write_bytes(b"d")
    (tmp_path / ".hidden.png").write_bytes(b"hidden")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "e.png").write_bytes(b"in a hidden folder")
    (tmp_path / "sub" / "Thumbs.db").write_bytes(b"windows")
    items = list(items_from_paths([tmp_path]))
    assert outcomes(items) == {
        str(tmp_path / ".git"): "skipped: folder not entered: hidden (name starts with a dot)",
        str(tmp_path / ".hidden.png"): "skipped: hidden (name starts with a dot)",
        str(tmp_path / "a.png"): b"a",
        str(tmp_path / "b.png"): b"b",
        str(tmp_path / "sub" / "Thumbs.db"): "skipped: system file",
        str(tmp_path / "sub" / "c.jpg"): b"c",
        str(tmp_path / "sub" / "deeper" / "d.gif"): b"d",
    }
    assert [item.path for item in items] == sorted(item.path for item in items)
    assert [item.size for item in items if item.size is not None] == [1, 1, 1, 1]


def test_a_folder_inside_a_hidden_parent_is_still_read(tmp_path: Path) -> None:
    folder = tmp_path / ".cache" / "photos"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"a")
    assert [item.path for item in items_from_paths([folder])] == [str(folder / "a.png")]


def test_zip_members_are_items(tmp_path: Path) -> None:
    archive = tmp_path / "holiday.zip"
    archive.write_bytes(
        zip_bytes(
            {
                "b.png": b"bbb",
                "dir/a.png": b"aa",
                "__MACOSX/dir/._a.png": b"resource fork",
                "__MACOSX/b.png": b"macOS metadata",
                ".DS_Store": b"finder",
            }
        )
    )
    items = list(items_from_paths([archive]))
    assert outcomes(items) == {
        f"{archive}/.DS_Store": "skipped: hidden (name starts with a dot)",
        f"{archive}/__MACOSX/b.png": "skipped: macOS metadata (__MACOSX)",
        f"{archive}/__MACOSX/dir/._a.png": "skipped: macOS metadata (__MACOSX)",
        f"{archive}/b.png": b"bbb",
        f"{archive}/dir/a.png": b"aa",
    }
    assert [item.size for item in items if item.size is not None] == [3, 2]


def test_zip_inside_a_folder(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_bytes(b"x")
    (tmp_path / "more.ZIP").write_bytes(zip_bytes({"y.png": b"y"}))
    assert as_dict(list(items_from_paths([tmp_path]))) == {
        str(tmp_path / "more.ZIP/y.png"): b"y",
        str(tmp_path / "x.png"): b"x",
    }


def test_corrupt_zip_is_one_item_whose_read_raises(tmp_path: Path) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04 this is not really a zip archive")
    [item] = items_from_paths([archive])
    assert item.path == str(archive)
    with pytest.raises(ValueError, match="zip"):
        item.read()


def test_missing_path_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such"):
        list(items_from_paths([tmp_path / "no-such"]))


def test_upload_of_a_plain_file() -> None:
    [item] = items_from_upload("photo.png", b"data")
    assert (item.path, item.size, item.read()) == ("photo.png", 4, b"data")


def test_upload_of_a_zip() -> None:
    data = zip_bytes({"a.png": b"A", "__MACOSX/a.png": b"junk", "folder/": b"", "folder/b.png": b"B"})
    items = list(items_from_upload("Batch.Zip", data))
    assert outcomes(items) == {
        "Batch.Zip/__MACOSX/a.png": "skipped: macOS metadata (__MACOSX)",
        "Batch.Zip/a.png": b"A",
        "Batch.Zip/folder/b.png": b"B",
    }  # the folder entry is not a file: no item


def test_upload_of_a_corrupt_zip() -> None:
    [item] = items_from_upload("bad.zip", b"garbage")
    assert item.path == "bad.zip"
    with pytest.raises(ValueError, match=r"not a readable \.zip archive"):
        item.read()
