"""core.storage: LocalStore and S3Store (on a real SeaweedFS) pass the same tests."""

from __future__ import annotations

import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from helpers import S3Server, free_port, list_keys, png

from core.settings import load_settings
from core.storage import (
    LocalStore,
    ObjectNotFound,
    ObjectStore,
    S3Store,
    StorageError,
    StoreUnreachable,
    check_user,
    image_key,
    open_store,
    thumbnail_key,
)

# --- both backends ------------------------------------------------------------------------------


def test_put_get_exists_delete(store: ObjectStore) -> None:
    key = "images/alice/0000.png"
    data = png(1)
    assert not store.exists(key)
    store.put(key, data, "image/png")
    assert store.exists(key)
    assert store.get(key) == data
    assert list_keys(store) == {key}
    store.delete(key)
    assert not store.exists(key)
    assert list_keys(store) == set()


def test_put_replaces(store: ObjectStore) -> None:
    store.put("thumbnails/bob/x.webp", b"first version")
    store.put("thumbnails/bob/x.webp", b"second")
    assert store.get("thumbnails/bob/x.webp") == b"second"


def test_empty_and_binary_objects(store: ObjectStore) -> None:
    blob = bytes(range(256)) * 64
    store.put("a/blob.bin", blob)
    store.put("a/empty.bin", b"")
    assert store.get("a/blob.bin") == blob
    assert store.get("a/empty.bin") == b""


def test_get_of_a_missing_key_raises_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        store.get("images/alice/missing.png")
    assert issubclass(ObjectNotFound, StorageError)
    assert issubclass(ObjectNotFound, KeyError)


def test_delete_of_a_missing_key_is_fine(store: ObjectStore) -> None:
    store.delete("images/alice/never-stored.png")
    store.put("k/one", b"1")
    store.delete("k/one")
    store.delete("k/one")
    assert not store.exists("k/one")


def test_url_reads_the_object(store: ObjectStore) -> None:
    data = png(2)
    store.put("images/carol/pic.png", data, "image/png")
    url = store.url("images/carol/pic.png")
    assert url.startswith("file://" if store.kind == "local" else "http://")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == data


def test_describe_names_the_backend(store: ObjectStore) -> None:
    text = store.describe()
    if isinstance(store, S3Store):
        assert store.bucket in text
    else:
        assert isinstance(store, LocalStore)
        assert str(store.root) in text


# --- local disk ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["../escape.png", "/etc/passwd", "images/../../escape.png", "a/../../../b", ""])
def test_local_store_rejects_keys_outside_its_root(tmp_path: Path, key: str) -> None:
    store = LocalStore(tmp_path / "objects")
    for call in (lambda: store.put(key, b"x"), lambda: store.get(key), lambda: store.exists(key)):
        with pytest.raises(StorageError, match="invalid object key"):
            call()
    with pytest.raises(StorageError):
        store.delete(key)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_local_store_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    for i in range(5):
        store.put(f"images/u/{i}.png", png(i))
    assert sorted(p.name for p in (tmp_path / "objects").rglob("*") if p.is_file()) == [f"{i}.png" for i in range(5)]


def test_a_local_put_that_fails_leaves_no_temporary_file(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    (tmp_path / "objects" / "images" / "u" / "taken.png").mkdir(parents=True)  # a folder where the file would go
    with pytest.raises(StorageError, match=r"could not write images/u/taken\.png"):
        store.put("images/u/taken.png", png(1))
    assert [p for p in (tmp_path / "objects").rglob("*") if p.is_file()] == []
    store.put("images/u/new/deeper/x.png", png(2))  # folders that do not exist yet are made
    assert store.get("images/u/new/deeper/x.png") == png(2)


def test_local_store_write_failure_is_a_storage_error(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    store.put("images/file", b"a file where a folder is needed")
    with pytest.raises(StorageError, match="could not write"):
        store.put("images/file/child.png", b"x")


def test_list_keys_by_prefix(store: ObjectStore) -> None:
    keys = ["images/alice/1.png", "images/alice/2.jpg", "images/alicia/3.png", "thumbnails/alice/1.webp"]
    for key in keys:
        store.put(key, b"x")
    assert sorted(store.list_keys("images/alice/")) == keys[:2]
    assert sorted(store.list_keys("images/")) == keys[:3]
    assert sorted(store.list_keys("")) == sorted(keys)
    assert list(store.list_keys("images/nobody/")) == []


def test_local_store_lists_the_temp_file_of_an_interrupted_write(tmp_path: Path) -> None:
    """A write killed between the temp file and the rename leaves the temp file: repair must see it."""
    store = LocalStore(tmp_path / "objects")
    store.put("images/u/a.png", b"A")
    (tmp_path / "objects" / "images" / "u" / ".tmp-abc123").write_bytes(b"half")
    assert sorted(store.list_keys("images/u/")) == ["images/u/.tmp-abc123", "images/u/a.png"]


# --- S3 -----------------------------------------------------------------------------------------


def test_s3_dead_server_is_unreachable_in_seconds() -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnreachable, match="cannot connect"):
        S3Store(f"http://127.0.0.1:{free_port()}", "access-key", "secret-key-123", "bucket")
    assert time.monotonic() - started < 5  # 3 tries, 0.6 s of back-off


def test_s3_hung_server_costs_one_read_timeout(silent_port: int) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnreachable, match="no answer"):
        S3Store(f"http://127.0.0.1:{silent_port}", "access-key", "secret-key-123", "bucket", timeout=1.5)
    assert 1.5 <= time.monotonic() - started < 3.0  # a request that timed out is not sent again


@pytest.mark.s3
def test_s3_bucket_is_created_if_missing(s3_server: S3Server) -> None:
    bucket = f"new-{uuid.uuid4().hex[:12]}"
    first = s3_server.store(bucket)
    assert first.client.bucket_exists(bucket)
    first.put("images/u/a.png", b"A")
    again = s3_server.store(bucket)  # the bucket exists now: reused, not recreated
    assert again.get("images/u/a.png") == b"A"


@pytest.mark.s3
def test_s3_wrong_secret_key_raises_storage_error(s3_server: S3Server) -> None:
    with pytest.raises(StorageError) as excinfo:
        s3_server.store(secret_key="definitely-wrong-secret")
    message = str(excinfo.value)
    assert not isinstance(excinfo.value, StoreUnreachable)  # the server answered
    assert s3_server.endpoint in message
    assert "definitely-wrong-secret" not in message


@pytest.mark.s3
def test_open_store_follows_the_settings(s3_server: S3Server, tmp_path: Path) -> None:
    local = open_store(load_settings(env={"VAD_DATA_DIR": str(tmp_path)}))
    assert isinstance(local, LocalStore)
    assert local.root == (tmp_path / "objects").resolve()

    bucket = f"cfg-{uuid.uuid4().hex[:12]}"
    settings = load_settings(
        env={
            "VAD_S3_ENDPOINT": f"http://{s3_server.endpoint}",
            "VAD_S3_ACCESS_KEY": s3_server.access_key,
            "VAD_S3_SECRET_KEY": s3_server.secret_key,
            "VAD_S3_BUCKET": bucket,
        }
    )
    remote = open_store(settings)
    assert isinstance(remote, S3Store)
    assert remote.bucket == bucket
    assert remote.endpoint == f"http://{s3_server.endpoint}"
    remote.put("x/y", b"z")
    assert remote.client.bucket_exists(bucket)


# --- keys and user names ------------------------------------------------------------------------


def test_key_layout() -> None:
    assert image_key("alice", "1234", "png") == "images/alice/1234.png"
    assert thumbnail_key("alice", "1234") == "thumbnails/alice/1234.jpg"


@pytest.mark.parametrize("user", ["alice", "Bob_2", "carol.smith@example.com", "x", "a" * 64])
def test_valid_user_names(user: str) -> None:
    assert check_user(user) == user


@pytest.mark.parametrize("user", ["", "../alice", "a/b", ".hidden", "-dash", "a" * 65, "sp ace", None])
def test_invalid_user_names(user: str) -> None:
    with pytest.raises(ValueError, match="invalid user name"):
        check_user(user)
    with pytest.raises(ValueError):
        image_key(user, "id", "png")
