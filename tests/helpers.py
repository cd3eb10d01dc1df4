"""Test images and small utilities, all generated with Pillow/numpy (no binary fixtures)."""

from __future__ import annotations

import contextlib
import ctypes
import glob
import http.server
import io
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

import core.images  # noqa: F401  (registers the HEIF opener/saver with Pillow)
from core.storage import LocalStore, ObjectStore, S3Store

if TYPE_CHECKING:
    from core.services import Services

REAL_PHOTOS = Path("/work/shared/datasets/imagenet-sample/images")


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # host:port
    access_key: str
    secret_key: str

    def store(self, bucket: str | None = None, secret_key: str | None = None) -> S3Store:
        """A store on a fresh bucket (created by S3Store) unless one is named."""
        return S3Store(
            f"http://{self.endpoint}",
            self.access_key,
            self.secret_key if secret_key is None else secret_key,
            bucket or f"t-{uuid.uuid4().hex[:16]}",
        )


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
        # Each bucket takes a volume of its own, and left to itself weed allows free disk / 1 GB
        # of them: with under 20 GB free the suite's buckets ran out ("no free volumes left").
        # Small volumes, a fixed count: test objects are a few MB in all.
        "-master.volumeSizeLimitMB=64", "-volume.max=500",
    ]  # fmt: skip


def terminate(proc: subprocess.Popen, grace: float) -> None:
    """SIGTERM, then SIGKILL if the process is still running after ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stop(proc: subprocess.Popen, ports: list[int]) -> None:
    """SIGTERM, then SIGKILL after 10 s; then remove the gRPC sockets weed leaves in /tmp."""
    terminate(proc, grace=10)
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


@dataclass
class Weed:
    """A running `weed mini`: its S3 endpoint, process, ports and data folder."""

    server: S3Server
    process: subprocess.Popen
    ports: list[int]
    data: Path


@contextlib.contextmanager
def running_weed(data: Path, ports: list[int] | None = None) -> Iterator[Weed]:
    """`weed mini` on loopback over ``data`` (a restart: the same ``ports``), stopped afterwards.

    One identity is configured, so that request signatures are checked.
    """
    access_key, secret_key = "test-access-key", "test-secret-key-123"
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
            chosen = ports or _pick_ports()
            with open(data / "weed.log", "ab") as log:
                proc = subprocess.Popen(
                    _weed_command(data, config, sock_dir, chosen),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            endpoint = f"127.0.0.1:{chosen[6]}"
            try:
                if _wait_ready(proc, endpoint):
                    yield Weed(S3Server(endpoint, access_key, secret_key), proc, chosen, data)
                    return
            finally:
                _stop(proc, chosen)
            if attempt == 2 or ports:
                raise RuntimeError(f"weed mini exited with rc={proc.returncode}; see {data}/weed.log")
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)


# --- test images ------------------------------------------------------------------------------


def pattern(seed: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A smooth random RGB image: a coarse random grid upscaled, so that its structure (and
    pHash) survives resizing, while two seeds give unrelated images."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB")
    return coarse.resize(size, Image.Resampling.BICUBIC)


def gradient(size: tuple[int, int]) -> Image.Image:
    """A smooth colour gradient (compresses well even at large sizes)."""
    width, height = size
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), (x + y) / 2], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (32, 32)) -> Image.Image:
    return Image.new("RGB", size, colour)


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png(seed: int = 0, size: tuple[int, int] = (96, 64)) -> bytes:
    return encode(pattern(seed, size), "PNG")


def jpeg(seed: int = 0, size: tuple[int, int] = (96, 64), **options: object) -> bytes:
    return encode(pattern(seed, size), "JPEG", **options)


def truncated_jpeg(seed: int = 0) -> bytes:
    """A real JPEG cut in the middle of its entropy-coded data."""
    rng = np.random.default_rng(seed)
    noisy = Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), "RGB")
    data = encode(noisy, "JPEG", quality=90)
    return data[: len(data) // 2]


def exif_jpeg(size: tuple[int, int], orientation: int) -> bytes:
    """Left half red, right half blue, with an EXIF orientation tag."""
    width, height = size
    image = Image.new("RGB", size, (255, 0, 0))
    image.paste((0, 0, 255), (width // 2, 0, width, height))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif.tobytes(), quality=95)


def two_frame_gif(first: tuple[int, int, int], second: tuple[int, int, int]) -> bytes:
    return encode(solid(first), "GIF", save_all=True, append_images=[solid(second)], duration=100)


def png_claiming_size(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR chunk is patched (with a valid CRC) to claim ``width`` x ``height``."""
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    assert data[12:16] == b"IHDR"
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def bmp_claiming_size(width: int, height: int) -> bytes:
    """A real 2x2 BMP whose header claims ``width`` x ``height``."""
    data = bytearray(encode(Image.new("RGB", (2, 2)), "BMP"))
    struct.pack_into("<ii", data, 18, width, height)
    return bytes(data)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def list_keys(store: ObjectStore) -> set[str]:
    """Every object key in a store (files under a LocalStore root, objects in an S3Store bucket)."""
    if isinstance(store, LocalStore):
        return {p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file()}
    if isinstance(store, S3Store):
        return {o.object_name for o in store.client.list_objects(store.bucket, recursive=True)}
    raise TypeError(f"cannot list {type(store).__name__}")


# --- services over a temporary data folder (gallery, search and upload tests) -------------------


@contextlib.contextmanager
def tiny_services(data_dir: Path, **overrides: object) -> Iterator[Services]:
    """Real Services (local store, embedded index, tiny random CLIP on the CPU) under ``data_dir``."""
    from core.services import open_services
    from core.settings import load_settings

    settings = load_settings(data_dir=data_dir, model="tiny:random", device="cpu", **overrides)
    services = open_services(settings)
    try:
        yield services
    finally:
        services.close()


def ingest_files(services: Services, user: str, files: dict[str, bytes]) -> dict[str, str]:
    """Ingest ``files`` (name -> bytes) for ``user``; every one must be stored. Returns name -> image id."""
    from core.sources import IngestItem

    items = [IngestItem(path=name, read=lambda data=data: data, size=len(data)) for name, data in files.items()]
    results = services.ingestor().ingest(items, user)
    assert [(r.path, r.status) for r in results] == [(name, "stored") for name in files], results
    return {r.path: r.image_id for r in results if r.image_id}


def without_times(payload: dict) -> dict:
    """A payload without the times set at ingest (``created_at``, ``created_ts``, each occurrence's
    ``added_at``), to compare two ingests of the same files."""
    kept = {k: v for k, v in payload.items() if k not in ("created_at", "created_ts")}
    if "occurrences" in kept:
        kept["occurrences"] = [{k: v for k, v in o.items() if k != "added_at"} for o in kept["occurrences"]]
    return kept


# --- analysis inputs built directly (duplicates, anomalies, quality) ----------------------------

if TYPE_CHECKING:
    from core.collection import Collection


def textured(seed: int, size: tuple[int, int] = (256, 192)) -> Image.Image:
    """A photo-like test image: random mid-tone colour blocks with per-pixel grain (sharp,
    colourful, many grey levels, mid brightness)."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(30, 226, (6, 8, 3), dtype=np.uint8), "RGB")
    blocks = np.asarray(coarse.resize(size, Image.Resampling.NEAREST), dtype=np.int16)
    grain = rng.integers(-25, 26, (size[1], size[0], 1))
    return Image.fromarray(np.clip(blocks + grain, 0, 255).astype(np.uint8), "RGB")


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def far_phashes(n: int, seed: int = 0, min_distance: int = 24) -> list[str]:
    """``n`` random 64-bit pHashes (hex) pairwise more than ``min_distance`` bits apart."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    while len(chosen) < n:
        candidate = int(rng.integers(0, 2**63, dtype=np.uint64)) | (int(rng.integers(0, 2)) << 63)
        if all((candidate ^ c).bit_count() > min_distance for c in chosen):
            chosen.append(candidate)
    return [f"{h:016x}" for h in chosen]


#: image_stats of an ordinary photo (what ``textured`` gives), for synthetic payloads.
NORMAL_STATS = {
    "brightness": 0.5,
    "brightness_p10": 0.27,
    "brightness_p90": 0.72,
    "contrast": 0.17,
    "sharpness": 4000.0,
    "edge_sharpness": 0.9,
    "entropy": 7.4,
    "colorfulness": 0.42,
}


def synthetic_collection(vectors: np.ndarray, user: str = "alice", **columns: list) -> Collection:
    """A core.collection.Collection built directly: row i is ``img-{i:03d}`` with the (normalised)
    vector ``vectors[i]``, far-apart pHashes, distinct sha256 / pixel_sha256, 640x480, 100 kB,
    one second apart, ordinary quality stats. Keyword lists replace any column."""
    import pandas as pd

    from core.collection import Collection
    from core.quality import stats_frame

    n = len(vectors)
    frame = pd.DataFrame(
        {
            "id": [f"img-{i:03d}" for i in range(n)],
            "user": [user] * n,
            "filename": [f"img-{i:03d}.png" for i in range(n)],
            "sha256": [f"{i:064x}" for i in range(n)],
            "pixel_sha256": [f"{i + 10**6:064x}" for i in range(n)],
            "phash": far_phashes(n),
            "width": [640] * n,
            "height": [480] * n,
            "bytes": [100_000] * n,
            "created_ts": [1_700_000_000.0 + i for i in range(n)],
            "created_at": [f"2023-11-14T22:{i // 60 % 60:02d}:{i % 60:02d}+00:00" for i in range(n)],
            "thumbnail_key": [f"thumbnails/{user}/img-{i:03d}.webp" for i in range(n)],
            "quality": [dict(NORMAL_STATS) for _ in range(n)],
        }
    )
    for name, values in columns.items():
        assert len(values) == n, name
        frame[name] = list(values)
    frame = pd.concat([frame, stats_frame(frame["quality"])], axis=1)
    return Collection(user, frame, unit_rows(vectors) if n else np.zeros((0, 8), np.float32))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: Logs of the apps ``running_app`` has up (True), or stopped by a test's failure (False, until
#: that test is reported): a failing test's report ends with their last lines (conftest.py).
RUNNING_APP_LOGS: dict[Path, bool] = {}


@contextlib.contextmanager
def running_app(log_path: Path, env: dict[str, str], timeout: float = 90) -> Iterator[str]:
    """A real ``streamlit run app/main.py`` on a free loopback port; yields its URL, stops it after.

    ``env`` is the whole environment of the app process (start from ``os.environ``).
    """
    root = Path(__file__).resolve().parents[1]
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(root / "app" / "main.py"), "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError(f"streamlit did not start: {log_path.read_text()[-2000:]}")
        RUNNING_APP_LOGS[log_path] = True
        try:
            yield url
        except BaseException:
            RUNNING_APP_LOGS[log_path] = False
            raise
        RUNNING_APP_LOGS.pop(log_path, None)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def serve_http(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    """Run ``handler`` on a loopback HTTP server in a thread; yields the port, shuts down after."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hung server); yields the port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


# --- a Ray cluster of separate processes on loopback -----------------------------------------

#: Environment of the Ray nodes: offline, quiet, and the app's code importable by their workers.
RAY_NODE_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
    # Loopback only, so no token: else a token that another Ray left in ~/.ray decides who may join.
    "RAY_AUTH_MODE": "disabled",
    # Stop at once: a node waits up to 30 s for its actors to drain (Ray Data leaves some running).
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
}
#: Environment of a driver (``python -m core ingest --engine ray``) joining that cluster. Off, this
#: switch makes the driver take 127.0.0.1 as its own address, not this machine's network address
#: (where the loopback-only cluster would not answer); nodes refuse it, so only drivers get it.
RAY_DRIVER_ENV = {**RAY_NODE_ENV, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
#: What ``ray start --block`` prints once its node has joined the cluster.
_RAY_NODE_UP = b"will now block forever"


def _ray_node(*args: str, log: Path) -> subprocess.Popen:
    """``ray start --block`` on 127.0.0.1 with one CPU and free ports; stopping it stops the node."""
    ray = str(Path(sys.executable).with_name("ray"))
    ports = [
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]
    command = [ray, "start", *args, "--node-ip-address=127.0.0.1", *ports, "--num-cpus=1", "--num-gpus=0", "--block"]
    with log.open("wb") as out:
        return subprocess.Popen(
            command,
            env={**os.environ, **RAY_NODE_ENV},
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )


def _wait_for_node(proc: subprocess.Popen, log: Path, deadline: float) -> None:
    while _RAY_NODE_UP not in log.read_bytes():
        if proc.poll() is not None:
            raise RuntimeError(f"a Ray node exited while starting: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"a Ray node did not start in time: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def _stop_ray_node(proc: subprocess.Popen) -> None:
    """SIGTERM: ``ray start --block`` then stops the node's processes; SIGKILL after 40 s."""
    terminate(proc, grace=40)


@contextlib.contextmanager
def running_ray_cluster(log_dir: Path, timeout: float = 90) -> Iterator[str]:
    """A Ray head and one worker node, one CPU each, as separate processes on 127.0.0.1; yields
    the head's address. Both are stopped by PID at the end."""
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths live under it
    port = free_port()
    deadline = time.monotonic() + timeout
    nodes: list[subprocess.Popen] = []
    try:
        head_log = log_dir / "ray-head.log"
        head_args = [f"--port={port}", f"--ray-client-server-port={free_port()}", f"--temp-dir={temp_dir}"]
        nodes.append(
            _ray_node("--head", *head_args, "--include-dashboard=false", "--disable-usage-stats", log=head_log)
        )
        _wait_for_node(nodes[0], head_log, deadline)
        worker_log = log_dir / "ray-worker.log"
        nodes.append(_ray_node(f"--address=127.0.0.1:{port}", log=worker_log))
        _wait_for_node(nodes[1], worker_log, deadline)
        yield f"127.0.0.1:{port}"
    finally:
        for proc in reversed(nodes):
            _stop_ray_node(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)
