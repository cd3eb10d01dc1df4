"""Explorer (UMAP projection) at 10k and 100k points: core projection time and memory, and the
Explorer page's time to first render in headless Chromium.

    python -m bench.projection [--sizes 10000 100000] [--skip-core] [--skip-page] [--no-stages]
                               [--screenshots DIR]

Synthetic 512-d L2-normalised float32 vectors around 100 gaussian centres (cosine to the centre
about 0.85, no near-duplicates).

Core: ``core.explorer.project`` on all points (no sampling), 2D then 3D, each size in a fresh
subprocess so its peak RSS (VmHWM) is its own. The first call in a process compiles (or loads from
numba's cache) UMAP's kernels: it is measured apart, on 500 points, before the timed calls.
Target (issue): 100k x 512 projected in 3 minutes or less.

Page: one user's collection in a temporary data dir (embedded index, model ``ViT-B-32:random``),
a real ``streamlit run app/main.py`` and Debian Chromium through Playwright: sign in, open the
Explorer from the sidebar and time until the plot is drawn, first cold (projection computed),
then warm (navigate away and back: cached), then a rerun after moving the point-size slider.
Before the app starts, the stages of one cold Explorer run (load, sample, project, colour
columns) are timed in-process (``--no-stages`` skips them).
Above 20,000 points the page projects a stratified sample (its default ``max_points``).
Each line also gives the load average: other work on the machine inflates every figure.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.common import synthetic_payload, timer

ROOT = Path(__file__).resolve().parents[1]
MODEL = "ViT-B-32:random"
USER = "explorer"
PASSWORD = "bench-password-1"
DIM = 512
CENTRES = 100
SPREAD = 0.6  # noise per dimension around unit-variance centres: cosine to the centre about 0.85
WARMUP_POINTS = 500
TARGET_S = 180.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGE_TIMEOUT_MS = 30 * 60 * 1000
PLOT = ".js-plotly-plot .scatterlayer .point, .js-plotly-plot canvas"  # SVG points, or WebGL canvas
PLOT_POINTS_JS = "() => { const el = document.querySelector('.js-plotly-plot'); return el && el._fullData ? el._fullData.reduce((s, t) => s + (t._length || 0), 0) : 0 }"  # noqa: E501
MARKER_SIZE_JS = "() => { const el = document.querySelector('.js-plotly-plot'); return el && el._fullData && el._fullData.length ? el._fullData[0].marker.size : null }"  # noqa: E501


# --- shared ---------------------------------------------------------------------------------


def clustered_vectors(n: int, dim: int = DIM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit float32 vectors around ``CENTRES`` gaussian centres, and each one's centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CENTRES, dim)).astype(np.float32)
    labels = rng.integers(0, CENTRES, size=n)
    vectors = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 10_000):  # in chunks: no float64 copy of the whole matrix
        part = labels[start : start + 10_000]
        block = centres[part] + SPREAD * rng.standard_normal(size=(len(part), dim), dtype=np.float32)
        vectors[start : start + len(part)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors, labels


def proc_status_mb(field: str, pid: int | str = "self") -> float:
    """A ``Vm*`` line of /proc/PID/status (VmHWM: peak RSS, VmRSS: current RSS) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


# --- core: project() in a subprocess per size -------------------------------------------------


def neighbour_purity(coordinates: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """Share of each point's ``k`` nearest neighbours in the projection that come from its centre."""
    import faiss

    points = np.ascontiguousarray(coordinates, dtype=np.float32)
    index = faiss.IndexFlatL2(points.shape[1])
    index.add(points)
    _, neighbours = index.search(points, k + 1)
    return float((labels[neighbours[:, 1:]] == labels[:, None]).mean())


def prepare_seconds(vectors: np.ndarray) -> float:
    """The steps project() runs before UMAP (PCA to 50-d, normalise, exact 15-NN with faiss), timed."""
    import faiss
    from sklearn.decomposition import PCA

    from core.embed import normalise
    from core.explorer import PCA_DIMENSIONS

    with timer() as t:
        reduced = np.ascontiguousarray(
            normalise(PCA(n_components=PCA_DIMENSIONS, random_state=42).fit_transform(vectors))
        )
        index = faiss.IndexFlatIP(reduced.shape[1])
        index.add(reduced)
        index.search(reduced, 15)
    return t[0]


def core_child(n: int) -> dict[str, float]:
    """Everything measured for one size, in this (fresh) process."""
    import warnings

    warnings.filterwarnings("ignore", module="umap")  # "n_jobs overridden by random_state", "no NNDescent"
    from core.explorer import ProjectionParams, project

    vectors, labels = clustered_vectors(n)
    result: dict[str, float] = {"points": n, "data_mb": proc_status_mb("VmRSS")}
    with timer() as t:
        import umap  # noqa: F401  (numba and pynndescent come with it)
    result["import_s"] = t[0]
    for dims in (2, 3):
        with timer() as t:
            project(vectors[:WARMUP_POINTS], ProjectionParams(dims=dims))
        result[f"warmup{dims}_s"] = t[0]
    result["warmup_peak_mb"] = proc_status_mb("VmHWM")
    result["prepare_s"] = prepare_seconds(vectors)
    for dims in (2, 3):
        with timer() as t:
            coordinates = project(vectors, ProjectionParams(dims=dims, max_points=n))
        result[f"dims{dims}_s"] = t[0]
        result[f"dims{dims}_peak_mb"] = proc_status_mb("VmHWM")
        result[f"dims{dims}_purity"] = neighbour_purity(coordinates, labels)
    return result


def core_run(n: int) -> dict[str, float]:
    """core_child(n) in a fresh interpreter; its JSON result."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.projection", "--child-core", str(n)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"projection of {n:,} points failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def print_core(result: dict[str, float]) -> None:
    n = int(result["points"])
    print(
        f"core {n:,} pts: import umap {result['import_s']:.1f} s, first calls on {WARMUP_POINTS} pts "
        f"(JIT / numba cache) 2D {result['warmup2_s']:.1f} s, 3D {result['warmup3_s']:.1f} s; "
        f"PCA + exact kNN alone {result['prepare_s']:.1f} s"
    )
    for dims in (2, 3):
        verdict = f" (target <= {TARGET_S:.0f} s)" if n >= 100_000 else ""
        print(
            f"  project {dims}D: {result[f'dims{dims}_s']:.1f} s{verdict}, peak RSS so far "
            f"{result[f'dims{dims}_peak_mb']:.0f} MB, 10-NN centre purity {result[f'dims{dims}_purity']:.3f}"
        )
    print(f"  RSS after imports + vectors {result['data_mb']:.0f} MB, after warm-up {result['warmup_peak_mb']:.0f} MB")


# --- page: a real streamlit run driven by Chromium ---------------------------------------------


def quality_samples(count: int = 16) -> list[dict[str, float]]:
    """Quality stats of small synthetic images (so the app need not backfill them from thumbnails)."""
    from core.quality import image_stats

    rng = np.random.default_rng(1)
    stats = []
    for _ in range(count):
        image = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((256, 192))
        buffer = io.BytesIO()
        image.save(buffer, format="WEBP", quality=80)
        stats.append(image_stats(Image.open(buffer)))
    return stats


def populate(services: Any, user: str, vectors: np.ndarray) -> None:
    """One record per vector (no thumbnails: the page only shows them for a selection)."""
    from core.index import ImageRecord

    rng = np.random.default_rng(0)
    stats = quality_samples()
    for start in range(0, len(vectors), 1000):
        records = []
        for i in range(start, min(start + 1000, len(vectors))):
            point = str(uuid.uuid4())
            records.append(
                ImageRecord(point, synthetic_payload(user, i, point, rng, quality=stats[i % len(stats)]), vectors[i])
            )
        services.index.upsert(records)


def stage_timings(services: Any, user: str) -> dict[str, float]:
    """What one cold Explorer run computes, stage by stage, in this process (UMAP warmed up)."""
    from core.anomalies import DEFAULT_K, detect_anomalies
    from core.collection import load_collection
    from core.duplicates import duplicate_report
    from core.explorer import DEFAULT_MAX_POINTS, ProjectionParams, project, stratified_sample

    project(clustered_vectors(WARMUP_POINTS, seed=1)[0])  # JIT outside the timings
    out: dict[str, float] = {}
    with timer() as t:
        collection = load_collection(services, user)
    out["load_collection"] = t[0]
    with timer() as t:
        rows = stratified_sample(collection.vectors, DEFAULT_MAX_POINTS)
    out["stratified_sample"] = t[0]
    with timer() as t:
        project(collection.vectors[rows], ProjectionParams())
    out[f"project {len(rows):,} pts"] = t[0]
    with timer() as t:
        detect_anomalies(collection, "knn", DEFAULT_K, checks=True)
    out["colours: anomalies (all pts)"] = t[0]
    with timer() as t:
        duplicate_report(services, user)
    out["colours: duplicates (all pts, reloads)"] = t[0]
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def streamlit_app(data_dir: Path, log_path: Path, model: str = MODEL) -> Iterator[tuple[str, int]]:
    """``streamlit run app/main.py`` on a free port; yields (url, pid); kills its process group."""
    port = free_port()
    env = {**os.environ, "VAD_DATA_DIR": str(data_dir), "VAD_MODEL": model, "VAD_DEVICE": "cpu"}
    for name in ("VAD_QDRANT_URL", "VAD_S3_ENDPOINT", "VAD_ADMIN_USER", "VAD_ADMIN_PASSWORD"):
        env.pop(name, None)
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"), "--server.port", str(port)]
    command += ["--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, log_path)
            yield url, process.pid
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_healthy(url: str, log_path: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"streamlit did not start:\n{log_path.read_text()[-3000:]}")


def sign_in(page: Any, url: str) -> float:
    """Open the app, sign in; seconds from pressing Sign in to the Gallery heading."""
    page.goto(url)
    page.get_by_label("User name", exact=True).fill(USER)
    page.get_by_label("Password", exact=True).first.fill(PASSWORD)
    with timer() as t:
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Gallery").wait_for()
    return t[0]


def open_explorer(page: Any) -> tuple[float, float]:
    """Click Explorer in the sidebar; seconds to its title, and to the drawn plot."""
    link = page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Explorer")
    start = time.perf_counter()
    link.click()
    page.get_by_role("heading", name="Explorer").wait_for()
    title_s = time.perf_counter() - start
    page.locator(PLOT).first.wait_for(state="visible")
    page.get_by_text("Projected").first.wait_for()
    page.wait_for_function(f"({PLOT_POINTS_JS})() > 0")
    return title_s, time.perf_counter() - start


def leave_explorer(page: Any) -> None:
    """Back to the Gallery, with the plot gone from the page."""
    page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Gallery").click()
    page.get_by_role("heading", name="Gallery").wait_for()
    page.wait_for_function("() => !document.querySelector('.js-plotly-plot')")


def change_point_size(page: Any) -> float:
    """Seconds from one ArrowRight on the point-size slider (6 -> 7) to the redrawn plot."""
    slider = page.get_by_test_id("stSlider").filter(has_text="Point size")
    if not slider.count() or not slider.first.is_visible():  # it lives in the "Map settings" popover
        page.get_by_test_id("stPopover").get_by_role("button").filter(has_text="Map settings").click()
    thumb = slider.get_by_role("slider")
    thumb.focus()
    before = page.evaluate(MARKER_SIZE_JS)
    with timer() as t:
        thumb.press("ArrowRight")
        page.wait_for_function(f"({MARKER_SIZE_JS})() === {before + 1}")
    return t[0]


@dataclass
class PageResult:
    """What one size's browser session measured."""

    points: int
    populate_s: float = 0.0
    sign_in_s: float = 0.0
    cold_title_s: float = 0.0
    cold_s: float = 0.0
    warm_title_s: float = 0.0
    warm_s: float = 0.0
    slider_s: float = 0.0
    plotted: int = 0
    sample_note: bool = False
    server_peak_mb: float = 0.0


def drive_browser(url: str, pid: int, result: PageResult, screenshots: Path | None) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 950})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        result.sign_in_s = sign_in(page, url)
        result.cold_title_s, result.cold_s = open_explorer(page)
        result.plotted = int(page.evaluate(PLOT_POINTS_JS))
        result.sample_note = page.get_by_text("Showing a stratified sample").count() > 0
        shoot(page, screenshots, f"explorer-{result.points}-cold.png")
        leave_explorer(page)
        result.warm_title_s, result.warm_s = open_explorer(page)
        result.slider_s = change_point_size(page)
        shoot(page, screenshots, f"explorer-{result.points}-slider.png")
        result.server_peak_mb = proc_status_mb("VmHWM", pid)
        browser.close()


def shoot(page: Any, folder: Path | None, name: str) -> None:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=folder / name)


def page_run(n: int, stages: bool, screenshots: Path | None) -> PageResult:
    from core.auth import UserStore
    from core.services import open_services
    from core.settings import load_settings

    result = PageResult(points=n)
    with tempfile.TemporaryDirectory(prefix="bench-projection-") as tmp:
        data_dir = Path(tmp) / "data"
        services = open_services(load_settings(data_dir=data_dir, model=MODEL, device="cpu"))
        with timer() as t:
            populate(services, USER, clustered_vectors(n)[0])
        result.populate_s = t[0]
        if stages:
            print_stages(n, stage_timings(services, USER))
        services.close()  # the app opens the same data dir
        UserStore(data_dir).add(USER, PASSWORD)
        log_path = Path(tmp) / "streamlit.log"
        with streamlit_app(data_dir, log_path) as (url, pid):
            drive_browser(url, pid, result, screenshots)
    return result


def print_stages(n: int, stages: dict[str, float]) -> None:
    parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in stages.items())
    print(f"explorer_data stages at {n:,} pts (in-process, after warm-up): {parts}")


def print_page(result: PageResult) -> None:
    sample = " (stratified sample, notice shown)" if result.sample_note else ""
    print(
        f"page {result.points:,} pts: populate {result.populate_s:.0f} s, sign-in to Gallery {result.sign_in_s:.1f} s; "
        f"Explorer plot drawn cold {result.cold_s:.1f} s (title {result.cold_title_s:.1f} s), "
        f"warm {result.warm_s:.1f} s (title {result.warm_title_s:.1f} s); "
        f"point-size rerun {result.slider_s:.2f} s; {result.plotted:,} points plotted{sample}; "
        f"server peak RSS {result.server_peak_mb:.0f} MB"
    )


def load_note() -> str:
    """The 1-minute load average: other work on the machine slows every figure."""
    return f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--skip-core", action="store_true", help="no project() timings")
    parser.add_argument("--skip-page", action="store_true", help="no browser timings")
    parser.add_argument("--no-stages", action="store_true", help="no in-process stage breakdown of the page")
    parser.add_argument("--screenshots", type=Path, help="save screenshots of the Explorer here")
    parser.add_argument("--child-core", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_core:
        print(json.dumps(core_child(args.child_core)))
        return
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    if not args.skip_core:
        for n in args.sizes:
            print(f"core {n:,} pts starts {load_note()}", flush=True)
            print_core(core_run(n))
    if not args.skip_page:
        for n in args.sizes:
            print(f"page {n:,} pts starts {load_note()}", flush=True)
            print_page(page_run(n, not args.no_stages, args.screenshots))


if __name__ == "__main__":
    main()
