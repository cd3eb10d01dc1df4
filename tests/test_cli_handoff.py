"""``python -m core ingest`` next to a running app on the embedded defaults.

The app (a real ``streamlit run``, signed into with Chromium so that it opens the index) holds
the embedded index; the CLI hands the ingest to the app's job runner through the data folder and
prints the same per-file report with the same exit code. A holder that takes no jobs is refused
at once, before the model loads.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from apptest_helpers import PASSWORD, add_user
from helpers import jpeg, png, running_app
from test_browser import CHROMIUM, CHROMIUM_ARGS
from test_cli import COLLECTION, run_cli

from core.index.edge import EdgeIndex
from core.jobs import JobFiles

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def photo_folder(root: Path) -> Path:
    folder = root / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "red.png").write_bytes(png(seed=1))
    (folder / "sub" / "blue.jpg").write_bytes(jpeg(seed=2))
    (folder / "notes.png").write_bytes(b"a text file renamed to .png\n")
    (folder / ".hidden.png").write_bytes(png(seed=3))
    return folder


def sign_in_with_chromium(url: str, user: str) -> None:
    """A browser session signs in, so that the app opens its services (model, store, index)."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(120_000)
        page.goto(url)
        page.get_by_label("User name", exact=True).fill(user)
        page.get_by_label("Password", exact=True).first.fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Gallery")).to_be_visible(timeout=120_000)
        browser.close()


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"), reason="chromium is not installed")
def test_ingest_is_handed_to_the_running_app(tmp_path: Path) -> None:
    data = tmp_path / "data"
    add_user(data, "alice")
    folder = photo_folder(tmp_path)
    env = {**os.environ, "VAD_DATA_DIR": str(data), "VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu"}
    for name in ("VAD_QDRANT_URL", "VAD_S3_ENDPOINT"):
        env.pop(name, None)
    with running_app(tmp_path / "streamlit.log", env) as url:
        sign_in_with_chromium(url, "alice")
        first = run_cli("ingest", str(folder), "--user", "alice", "--json", data_dir=data)
        again = run_cli("ingest", str(folder / "red.png"), "--user", "alice", data_dir=data)
        app_log = (tmp_path / "streamlit.log").read_text()

    assert "the ingest runs there" in first.stderr, (first.stderr, app_log[-3000:])
    assert first.returncode == 1, first.stderr  # one file was rejected; the others are stored
    report = {Path(row["path"]).name: row for row in map(json.loads, first.stdout.splitlines())}
    assert {name: row["status"] for name, row in report.items()} == {
        "red.png": "stored",
        "blue.jpg": "stored",
        "notes.png": "rejected",
        ".hidden.png": "skipped",
    }
    assert report["red.png"]["path"] == f"{folder}/red.png"  # named as given, as a local run names it
    assert "not an image" in report["notes.png"]["reason"]
    assert "4 files: 2 stored, 0 already present, 1 rejected, 1 skipped" in first.stderr

    assert again.returncode == 0, again.stderr
    assert "1 files: 0 stored, 1 already present, 0 rejected" in again.stdout
    [job, earlier] = JobFiles(data).list("alice")[:2]
    assert (earlier.kind, earlier.status, earlier.counts) == (
        "ingest",
        "done",
        {"stored": 2, "rejected": 1, "skipped": 1},
    )
    assert job.counts == {"present": 1}

    index = EdgeIndex(data / "index", COLLECTION, 64)  # the app is gone: the index is free again
    try:
        assert index.count("alice") == 2
    finally:
        index.close()


def test_a_holder_that_takes_no_jobs_is_refused_at_once_without_loading_the_model(tmp_path: Path) -> None:
    folder = photo_folder(tmp_path)
    holder = EdgeIndex(tmp_path / "index", COLLECTION, 64)  # this test process holds it and runs no jobs
    try:
        started = time.monotonic()
        # A model that cannot load: had the CLI tried, it would say so instead.
        result = run_cli("ingest", str(folder), "--user", "alice", data_dir=tmp_path, VAD_MODEL="no-such-model:x")
        seconds = time.monotonic() - started
    finally:
        holder.close()
    assert result.returncode == 2, result.stderr
    assert f"in use by process {os.getpid()}" in result.stderr and "which takes no jobs" in result.stderr
    assert "no-such-model" not in result.stderr
    assert seconds < 3, f"refused after {seconds:.1f} s (a busy machine is slower; quiet: about 1 s)"
    assert not (tmp_path / "jobs" / "inbox").exists()
