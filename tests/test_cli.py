"""core.cli: ``python -m core`` run as a subprocess, as users run it.

Each run costs several seconds of imports, so the runs are few and shared through module-scoped
fixtures: ingest a mixed folder, ingest it again, ingest a clean folder with a zip, then `info`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import encode, free_port, jpeg, list_keys, pattern, png, silent_server, truncated_jpeg, zip_bytes

from core.index import collection_name
from core.index.edge import EdgeIndex
from core.storage import LocalStore

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = collection_name("tiny:random", 64)


def run_cli(*args: str, data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("VAD_")}
    environment.update({"VAD_DATA_DIR": str(data_dir), "VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu", **env})
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )


def by_name(report: list[dict]) -> dict[str, dict]:
    return {Path(entry["path"]).name: entry for entry in report}


def json_lines(stdout: str) -> list[dict]:
    """``ingest --json`` prints one JSON object per line (JSON Lines), each as its file is done."""
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    mixed = root / "mixed"
    (mixed / "sub").mkdir(parents=True)
    (mixed / "red.png").write_bytes(png(seed=1))
    (mixed / "sub" / "blue.jpg").write_bytes(jpeg(seed=2))
    (mixed / "broken.jpg").write_bytes(truncated_jpeg())
    (mixed / "notes.png").write_bytes(b"a text file renamed to .png\n")
    (mixed / ".hidden.png").write_bytes(png(seed=3))
    good = root / "good"
    good.mkdir()
    (good / "green.webp").write_bytes(encode(pattern(4), "WEBP"))
    (good / "photos.zip").write_bytes(
        # a zip made on a Mac: its metadata entry is skipped, which is no failure
        zip_bytes({"a.png": png(seed=5), "more/b.gif": encode(pattern(6), "GIF"), "__MACOSX/._a.png": b"mac"})
    )
    return root


@pytest.fixture(scope="module")
def first_ingest(workspace: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("ingest", str(workspace / "mixed"), "--user", "alice", "--json", data_dir=workspace / "data")


@pytest.fixture(scope="module")
def second_ingest(workspace: Path, first_ingest) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    objects_before = list_keys(LocalStore(workspace / "data" / "objects"))
    result = run_cli("ingest", str(workspace / "mixed"), "--user", "alice", "--json", data_dir=workspace / "data")
    return result, objects_before


@pytest.fixture(scope="module")
def clean_ingest(workspace: Path, first_ingest) -> subprocess.CompletedProcess[str]:
    return run_cli("ingest", str(workspace / "good"), "--user", "bob", data_dir=workspace / "data")


def test_ingest_reports_every_file_and_exits_1_on_rejections(workspace: Path, first_ingest) -> None:
    assert first_ingest.returncode == 1, first_ingest.stderr
    report = json_lines(first_ingest.stdout)  # stdout holds the JSON Lines only
    assert all(isinstance(entry, dict) for entry in report)
    assert all(set(entry) == {"path", "status", "reason", "image_id"} for entry in report)
    entries = by_name(report)
    assert set(entries) == {"red.png", "blue.jpg", "broken.jpg", "notes.png", ".hidden.png"}  # one line each
    for name in ("red.png", "blue.jpg"):
        assert entries[name]["status"] == "stored"
        assert entries[name]["reason"] is None
        assert re.fullmatch(r"[0-9a-f-]{36}", entries[name]["image_id"])
    assert entries["broken.jpg"]["status"] == "rejected"
    assert "truncated" in entries["broken.jpg"]["reason"]
    assert entries["notes.png"]["status"] == "rejected"
    assert "not an image" in entries["notes.png"]["reason"]
    assert entries["notes.png"]["image_id"] is None
    assert (entries[".hidden.png"]["status"], entries[".hidden.png"]["reason"]) == (
        "skipped",
        "hidden (name starts with a dot)",
    )
    assert entries["blue.jpg"]["path"] == str(workspace / "mixed" / "sub" / "blue.jpg")
    assert "5 files: 2 stored, 0 already present, 2 rejected, 1 skipped (hidden or system files)" in first_ingest.stderr
    assert "random weights" in first_ingest.stderr
    # what the report says is on disk
    assert len(list_keys(LocalStore(workspace / "data" / "objects"))) == 4


def test_ingest_again_finds_everything_present(workspace: Path, first_ingest, second_ingest) -> None:
    result, objects_before = second_ingest
    assert result.returncode == 1, result.stderr  # the bad files are still bad
    first, second = by_name(json_lines(first_ingest.stdout)), by_name(json_lines(result.stdout))
    for name in ("red.png", "blue.jpg"):
        assert second[name]["status"] == "present"
        assert second[name]["image_id"] == first[name]["image_id"]
    assert second["broken.jpg"]["status"] == second["notes.png"]["status"] == "rejected"
    assert "2 already present" in result.stderr
    assert list_keys(LocalStore(workspace / "data" / "objects")) == objects_before


def test_ingest_of_good_images_and_a_zip_exits_0(workspace: Path, clean_ingest) -> None:
    assert clean_ingest.returncode == 0, clean_ingest.stderr
    assert "4 files: 3 stored, 0 already present, 0 rejected, 1 skipped (hidden or system files)" in clean_ingest.stdout
    assert "rejected " not in clean_ingest.stdout  # no per-file rejection lines
    index = EdgeIndex(workspace / "data" / "index", COLLECTION, 64)
    try:
        sources = sorted(record.payload["source_path"] for record in index.scroll("bob"))
    finally:
        index.close()
    good = workspace / "good"
    assert sources == sorted([str(good / "green.webp"), f"{good}/photos.zip/a.png", f"{good}/photos.zip/more/b.gif"])


def test_info_prints_the_model_and_counts_per_user(workspace: Path, second_ingest, clean_ingest) -> None:
    result = run_cli("info", data_dir=workspace / "data")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "tiny:random" in out
    assert "64-d" in out
    assert str(workspace / "data") in out
    assert re.search(r"^\s+alice\s+2$", out, re.MULTILINE), out
    assert re.search(r"^\s+bob\s+3$", out, re.MULTILINE), out
    assert "5 in all" in out


def test_a_held_index_is_reported_with_its_process(tmp_path: Path) -> None:
    holder = EdgeIndex(tmp_path / "index", COLLECTION, 64)  # this test process holds the embedded index
    try:
        result = run_cli("info", data_dir=tmp_path)
    finally:
        holder.close()
    assert result.returncode == 2
    assert f"process {os.getpid()}" in result.stderr
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr


def test_nonexistent_path_exits_2(tmp_path: Path) -> None:
    result = run_cli("ingest", str(tmp_path / "nowhere"), "--user", "alice", data_dir=tmp_path)
    assert result.returncode == 2
    assert "no such file or folder" in result.stderr
    assert "nowhere" in result.stderr
    assert not (tmp_path / "objects").exists()


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"VAD_DEVICE": "tpu"}, "VAD_DEVICE"),
        (
            {
                "VAD_S3_ENDPOINT": "127.0.0.1:9",
                "VAD_S3_ACCESS_KEY": "a",
                "VAD_S3_SECRET_KEY": "b",
                "VAD_S3_SECURE": "maybe",
            },
            "VAD_S3_SECURE",
        ),
    ],
)
def test_invalid_configuration_exits_2_naming_the_variable(tmp_path: Path, env: dict[str, str], variable: str) -> None:
    result = run_cli("info", data_dir=tmp_path, **env)
    assert result.returncode == 2
    assert variable in result.stderr
    assert "Traceback" not in result.stderr


def test_unusable_data_dir_is_a_configuration_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("a file where the data folder should be")
    result = run_cli("info", data_dir=not_a_folder)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "VAD_DATA_DIR" in result.stderr or str(not_a_folder) in result.stderr


# --- configuration errors: exit 2 naming the variable, in seconds, before the model loads -------

#: A model that fails to load (test_a_model_that_cannot_load_is_named checks it): an error naming
#: VAD_S3_ENDPOINT or VAD_QDRANT_URL instead proves the servers were checked before the model.
UNLOADABLE_MODEL = "tiny:not-a-tag"


def assert_config_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), result.stderr
    for needle in needles:
        assert needle in line, line


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu_is_a_configuration_error(tmp_path: Path) -> None:
    result = run_cli("info", data_dir=tmp_path, VAD_DEVICE="cuda")
    assert_config_error(result, "VAD_DEVICE=cuda: no CUDA device is available")


def test_a_read_only_data_dir_is_a_configuration_error(tmp_path: Path) -> None:
    data = Path(tempfile.mkdtemp(prefix="vad-ro-"))  # outside pytest's 0700 root: the other user can enter
    try:
        data.chmod(0o555)
        command = []
        if os.geteuid() == 0:  # root writes anywhere: run the CLI as nobody
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("VAD_")}
        environment.update({"VAD_DATA_DIR": str(data), "VAD_MODEL": "tiny:random", "HOME": str(data)})
        result = subprocess.run(
            [*command, sys.executable, "-B", "-m", "core", "info"],
            cwd=ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert_config_error(result, "VAD_DATA_DIR", str(data), "Permission denied")
        assert list(data.iterdir()) == []
    finally:
        data.chmod(0o755)
        data.rmdir()


S3_KEYS = {"VAD_S3_ACCESS_KEY": "probe-access", "VAD_S3_SECRET_KEY": "probe-secret-key-123"}


@pytest.mark.parametrize("server", ["closed", "silent"])
def test_unreachable_s3_is_found_before_the_model_loads(tmp_path: Path, server: str) -> None:
    with contextlib.ExitStack() as stack:
        port = free_port() if server == "closed" else stack.enter_context(silent_server())
        started = time.monotonic()
        result = run_cli(
            "info", data_dir=tmp_path, VAD_MODEL=UNLOADABLE_MODEL, VAD_S3_ENDPOINT=f"127.0.0.1:{port}", **S3_KEYS
        )
        elapsed = time.monotonic() - started
    assert_config_error(result, f"VAD_S3_ENDPOINT=127.0.0.1:{port}")
    assert elapsed < 60, f"took {elapsed:.0f} s"  # the probe waits 3 s; the rest is Python's start-up


@pytest.mark.parametrize("server", ["closed", "silent"])
def test_unreachable_qdrant_is_found_before_the_model_loads_and_its_password_stays_hidden(
    tmp_path: Path, server: str
) -> None:
    with contextlib.ExitStack() as stack:
        port = free_port() if server == "closed" else stack.enter_context(silent_server())
        url = f"http://ops:url-pass-4f7Qx@127.0.0.1:{port}"
        started = time.monotonic()
        result = run_cli("info", data_dir=tmp_path, VAD_MODEL=UNLOADABLE_MODEL, VAD_QDRANT_URL=url)
        elapsed = time.monotonic() - started
    assert_config_error(result, f"VAD_QDRANT_URL=http://ops:***@127.0.0.1:{port}", "could not reach Qdrant")
    assert "url-pass-4f7Qx" not in result.stderr + result.stdout
    assert elapsed < 60, f"took {elapsed:.0f} s"
    assert not (tmp_path / "index").exists()  # nothing was opened


def test_a_model_that_cannot_load_is_named(tmp_path: Path) -> None:
    assert_config_error(run_cli("info", data_dir=tmp_path, VAD_MODEL=UNLOADABLE_MODEL), "tiny:random")
