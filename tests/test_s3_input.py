"""``s3://bucket/prefix`` inputs: listed and read through the configured S3 settings (real SeaweedFS)."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from helpers import S3Server, jpeg, png, zip_bytes
from test_cli import json_lines, run_cli

from core.inputs import S3InputError, items_from_inputs
from core.s3_source import S3Location, input_client
from core.settings import load_settings

pytestmark = pytest.mark.s3


def _settings(server: S3Server, tmp_path: Path):
    return load_settings(
        data_dir=tmp_path,
        s3_endpoint=f"http://{server.endpoint}",
        s3_access_key=server.access_key,
        s3_secret_key=server.secret_key,
    )


@pytest.fixture
def bucket(s3_server: S3Server, tmp_path: Path) -> str:
    """A bucket holding images, a zip, hidden and system objects, and an object past the size limit."""
    name = f"in-{uuid.uuid4().hex[:12]}"
    client = input_client(_settings(s3_server, tmp_path))
    client.make_bucket(name)
    objects = {
        "photos/a.jpg": jpeg(seed=1),
        "photos/sub/b.png": png(seed=2),
        "photos/.hidden.jpg": jpeg(seed=3),
        "photos/sub/Thumbs.db": b"windows",
        "photos/pack.zip": zip_bytes({"c.png": png(seed=4), "__MACOSX/._c.png": b"mac"}),
        "photos/big.png": png(seed=5, size=(400, 400)),
        "other/d.jpg": jpeg(seed=6),
    }
    for key, data in objects.items():
        client.put_object(name, key, io.BytesIO(data), len(data))
    return name


def test_location_parsing() -> None:
    assert S3Location.parse("s3://bucket/a/b") == S3Location("bucket", "a/b")
    assert S3Location.parse("s3://bucket") == S3Location("bucket", "")
    with pytest.raises(S3InputError, match="no bucket"):
        S3Location.parse("s3:///key")


def test_prefix_lists_like_a_folder(s3_server: S3Server, tmp_path: Path, bucket: str) -> None:
    items = list(items_from_inputs([f"s3://{bucket}/photos/"], _settings(s3_server, tmp_path)))
    outcomes = {}
    for item in items:
        try:
            outcomes[item.path.removeprefix(f"s3://{bucket}/")] = len(item.read())
        except Exception as exc:
            outcomes[item.path.removeprefix(f"s3://{bucket}/")] = type(exc).__name__
    assert outcomes == {
        "photos/.hidden.jpg": "InputSkipped",
        "photos/a.jpg": len(jpeg(seed=1)),
        "photos/big.png": len(png(seed=5, size=(400, 400))),
        "photos/pack.zip/__MACOSX/._c.png": "InputSkipped",
        "photos/pack.zip/c.png": len(png(seed=4)),
        "photos/sub/Thumbs.db": "InputSkipped",
        "photos/sub/b.png": len(png(seed=2)),
    }
    assert all(
        item.size == size
        for item in items
        if isinstance(size := outcomes[item.path.removeprefix(f"s3://{bucket}/")], int)
    )


def test_unlistable_inputs_fail_with_a_reason(s3_server: S3Server, tmp_path: Path, bucket: str) -> None:
    settings = _settings(s3_server, tmp_path)
    with pytest.raises(S3InputError, match="no bucket 'missing-bucket'"):
        list(items_from_inputs(["s3://missing-bucket/x"], settings))
    empty = list(items_from_inputs([f"s3://{bucket}/nothing-here/"], settings))
    assert len(empty) == 1 and empty[0].path.endswith("nothing-here/")
    with pytest.raises(Exception, match="no objects under this prefix"):
        empty[0].read()
    with pytest.raises(S3InputError, match="VAD_S3_ENDPOINT"):
        list(items_from_inputs([f"s3://{bucket}/photos/"], load_settings(data_dir=tmp_path)))


def test_cli_ingests_a_prefix(s3_server: S3Server, tmp_path: Path, bucket: str) -> None:
    """The whole path: listed, read, limits applied per object, stored in the configured store."""
    result = run_cli(
        "ingest",
        f"s3://{bucket}/photos/",
        "--user",
        "alice",
        "--json",
        data_dir=tmp_path,
        VAD_S3_ENDPOINT=f"http://{s3_server.endpoint}",
        VAD_S3_ACCESS_KEY=s3_server.access_key,
        VAD_S3_SECRET_KEY=s3_server.secret_key,
        VAD_S3_BUCKET=f"store-{uuid.uuid4().hex[:12]}",
        VAD_MAX_FILE_MB="0.05",
    )
    report = {entry["path"].removeprefix(f"s3://{bucket}/"): entry for entry in json_lines(result.stdout)}
    assert {k: v["status"] for k, v in report.items()} == {
        "photos/.hidden.jpg": "skipped",
        "photos/a.jpg": "stored",
        "photos/big.png": "rejected",
        "photos/pack.zip/__MACOSX/._c.png": "skipped",
        "photos/pack.zip/c.png": "stored",
        "photos/sub/Thumbs.db": "skipped",
        "photos/sub/b.png": "stored",
    }, result.stderr
    assert "limit" in report["photos/big.png"]["reason"]
    assert result.returncode == 1  # one rejected file
