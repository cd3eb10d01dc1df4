"""core.metrics and core.telemetry: what the pipeline and the pages count, read back over HTTP.

The metrics live in the process-wide registry and other tests count too, so every assertion is on
the change between two scrapes of the real endpoint. The last test runs the app under
``streamlit run`` with ``VAD_METRICS_PORT`` and drives it in headless Chromium.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port, jpeg, png, running_app, tiny_services
from prometheus_client.parser import text_string_to_metric_families

from core import search, telemetry
from core.images import ImageRejected
from core.metrics import start_metrics_server
from core.sources import IngestItem

ROOT = Path(__file__).resolve().parents[1]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    """Every sample the endpoint serves, parsed with prometheus_client's own parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist yet (labels never used)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


@pytest.fixture(scope="module")
def metrics_port() -> int:
    """The endpoint of this process (started here, or the port an earlier start chose)."""
    return start_metrics_server(free_port(), "127.0.0.1")


# --- the ingest pipeline and search --------------------------------------------------------------


def test_ingest_and_search_are_counted_on_the_endpoint(metrics_port: int, tmp_path: Path) -> None:
    files = {
        "a.png": png(seed=1),
        "b.png": png(seed=2),
        "c.jpg": jpeg(seed=3),
        "x.png": b"not an image",
        "a-again.png": png(seed=1),  # same bytes as a.png within the call
    }
    items = [IngestItem(path=name, read=lambda data=data: data, size=len(data)) for name, data in files.items()]
    before = scrape(metrics_port)
    with tiny_services(tmp_path / "data") as services:
        results = services.ingestor().ingest(items, "alice")
        statuses = {r.path: r.status for r in results}
        assert statuses == {
            "a.png": "stored",
            "b.png": "stored",
            "c.jpg": "stored",
            "x.png": "rejected",
            "a-again.png": "present",
        }
        ids = {r.path: r.image_id for r in results}
        assert search.by_text(services, "alice", "a colourful pattern")
        assert search.by_image_id(services, "alice", ids["a.png"])
        assert search.by_upload(services, "alice", png(seed=9))
        with pytest.raises(ImageRejected):  # a bad query image is refused before any search
            search.by_upload(services, "alice", b"not an image either")
    after = scrape(metrics_port)

    assert delta(before, after, "images_ingested_total", outcome="stored") == 3
    assert delta(before, after, "images_ingested_total", outcome="rejected") == 1
    assert delta(before, after, "images_ingested_total", outcome="present") == 1
    assert delta(before, after, "ingest_duration_seconds_count") == 1
    assert delta(before, after, "ingest_duration_seconds_sum") > 0
    # Every stored image went through each stage once; x.png's failed decode may count as a decode.
    assert 3 <= delta(before, after, "image_processing_duration_seconds_count", stage="decode") <= 4
    assert delta(before, after, "image_processing_duration_seconds_count", stage="embed") == 3
    assert delta(before, after, "image_processing_duration_seconds_count", stage="store") == 3
    for stage in ("decode", "embed", "store"):
        inf = delta(before, after, "image_processing_duration_seconds_bucket", stage=stage, le="+Inf")
        assert inf == delta(before, after, "image_processing_duration_seconds_count", stage=stage)
        assert delta(before, after, "image_processing_duration_seconds_sum", stage=stage) > 0
    for kind in ("text", "image", "upload"):
        assert delta(before, after, "vector_search_duration_seconds_count", kind=kind) == 1, kind
        assert delta(before, after, "vector_search_duration_seconds_sum", kind=kind) > 0, kind
    assert delta(before, after, "query_embedding_duration_seconds_count", kind="text") == 1
    # the good upload was embedded (the refused one may count its decode attempt); a stored image needs none
    assert 1 <= delta(before, after, "query_embedding_duration_seconds_count", kind="upload") <= 2
    assert delta(before, after, "query_embedding_duration_seconds_count", kind="image") == 0


def test_starting_the_server_again_returns_the_first_port(metrics_port: int) -> None:
    other = free_port()
    assert start_metrics_server(other, "127.0.0.1") == metrics_port
    assert start_metrics_server(metrics_port, "127.0.0.1") == metrics_port
    assert scrape(metrics_port)  # still serving
    with pytest.raises(OSError):  # nothing was started on the other port
        urllib.request.urlopen(f"http://127.0.0.1:{other}/metrics", timeout=2)


_TAKEN_PORT_SCRIPT = """
import sys, urllib.request
from core.metrics import MetricsServerError, start_metrics_server

taken, free = int(sys.argv[1]), int(sys.argv[2])
try:
    start_metrics_server(taken)
except MetricsServerError as exc:
    print("refused:", exc)
else:
    print("started on a taken port")
print("then:", start_metrics_server(free, "127.0.0.1"))
with urllib.request.urlopen(f"http://127.0.0.1:{free}/metrics", timeout=10) as response:
    print("served:", response.status, b"images_ingested_total" in response.read())
"""


def test_a_taken_port_raises_an_error_naming_the_variable() -> None:
    """Once per process: so the refusal is tried in a fresh interpreter, which then still starts."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        free = free_port()
        done = subprocess.run(
            [sys.executable, "-c", _TAKEN_PORT_SCRIPT, str(taken), str(free)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"refused: VAD_METRICS_PORT: cannot serve metrics on 0.0.0.0:{taken}"), done.stdout
    assert lines[1:] == [f"then: {free}", "served: 200 True"]


# --- page actions (core.telemetry.track) ---------------------------------------------------------


class _Refused(ValueError):
    pass


@pytest.mark.parametrize(
    ("raised", "outcome", "errors"),
    [(None, "ok", 0), (_Refused, "rejected", 0), (RuntimeError, "error", 1), (KeyError, "error", 1)],
)
def test_track_counts_each_outcome(
    metrics_port: int, raised: type[Exception] | None, outcome: str, errors: int
) -> None:
    page, action = "metrics_test", f"act_{outcome}"
    before = scrape(metrics_port)
    if raised is None:
        with telemetry.track(action, page=page, user="alice", expected=(ValueError,)):
            pass
    else:
        with pytest.raises(raised), telemetry.track(action, page=page, user="alice", expected=(ValueError,)):
            raise raised("boom")
    after = scrape(metrics_port)

    for counted in ("ok", "rejected", "error"):
        expected = 1 if counted == outcome else 0
        assert delta(before, after, "app_requests_total", page=page, action=action, outcome=counted) == expected
    assert delta(before, after, "app_errors_total", page=page, action=action) == errors
    assert delta(before, after, "app_request_duration_seconds_count", page=page, action=action) == 1


def test_track_counts_the_outcome_the_block_chose(metrics_port: int) -> None:
    page, action = "metrics_test", "partial_upload"
    before = scrape(metrics_port)
    with telemetry.track(action, page=page) as event:
        event["outcome"] = "partial"
    with pytest.raises(RuntimeError), telemetry.track(action, page=page) as event:
        event["outcome"] = "partial"
        raise RuntimeError("failed after choosing an outcome")  # a failure wins over the choice
    after = scrape(metrics_port)
    assert delta(before, after, "app_requests_total", page=page, action=action, outcome="partial") == 1
    assert delta(before, after, "app_requests_total", page=page, action=action, outcome="error") == 1
    assert delta(before, after, "app_requests_total", page=page, action=action, outcome="ok") == 0
    assert delta(before, after, "app_errors_total", page=page, action=action) == 1


# --- the running app ------------------------------------------------------------------------------


@pytest.fixture
def app_with_metrics(tmp_path: Path) -> Iterator[tuple[str, int, str, str]]:
    """`streamlit run` with VAD_METRICS_PORT (as tests/test_browser.py starts it); stopped afterwards."""
    from test_browser import CHROMIUM

    if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
        pytest.skip("Debian chromium is not installed (make test installs it)")
    metrics = free_port()
    admin, password = "metricsadmin", "Metrics-" + secrets.token_urlsafe(10)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAD_")}
    env.update(
        {
            "VAD_DATA_DIR": str(tmp_path / "data"),
            "VAD_MODEL": "tiny:random",
            "VAD_DEVICE": "cpu",
            "VAD_METRICS_PORT": str(metrics),
            "VAD_METRICS_ADDRESS": "127.0.0.1",
            "VAD_ADMIN_USER": admin,
            "VAD_ADMIN_PASSWORD": password,
        }
    )
    with running_app(tmp_path / "streamlit.log", env) as url:
        yield url, metrics, admin, password


def _scrape_when_up(port: int, timeout: float = 60) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return scrape(port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


@pytest.mark.browser
def test_the_running_app_serves_its_metrics(app_with_metrics, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright
    from test_browser import CHROMIUM, CHROMIUM_ARGS

    url, metrics, admin, password = app_with_metrics
    photo = tmp_path / "photo.png"
    photo.write_bytes(png(seed=11, size=(320, 240)))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 950})
        page.set_default_timeout(90_000)
        expect.set_options(timeout=90_000)
        page.goto(url)
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()

        # The first script run started the endpoint; nothing has been done yet.
        first = _scrape_when_up(metrics)
        assert value(first, "app_requests_total", page="upload", action="upload", outcome="ok") == 0
        assert value(first, "images_ingested_total", outcome="stored") == 0

        page.get_by_label("User name", exact=True).fill(admin)
        page.get_by_label("Password", exact=True).first.fill(password)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Gallery")).to_be_visible()

        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Upload").click()
        page.locator("input[type=file]").set_input_files([str(photo)])
        expect(page.get_by_text("photo.png")).to_be_visible()
        page.get_by_role("button", name="Add to collection").click()
        expect(page.get_by_text("Already present")).to_be_visible()

        page.get_by_test_id("stSidebarNavItems").get_by_role("link", name="Search").click()
        page.get_by_label("Describe what you are looking for").fill("a colourful pattern")
        page.keyboard.press("Enter")
        expect(page.get_by_text("result(s), most similar first")).to_be_visible()
        browser.close()

    after = scrape(metrics)
    assert value(after, "app_requests_total", page="sign_in", action="sign_in", outcome="ok") == 1
    assert value(after, "app_requests_total", page="upload", action="upload", outcome="ok") == 1
    assert value(after, "app_requests_total", page="search", action="search_text", outcome="ok") == 1
    assert value(after, "app_request_duration_seconds_count", page="search", action="search_text") == 1
    assert value(after, "app_errors_total", page="upload", action="upload") == 0
    assert value(after, "images_ingested_total", outcome="stored") == 1
    assert value(after, "ingest_duration_seconds_count") == 1
    assert value(after, "image_processing_duration_seconds_count", stage="embed") == 1
    assert value(after, "vector_search_duration_seconds_count", kind="text") == 1
    assert value(after, "query_embedding_duration_seconds_count", kind="text") == 1
    assert value(after, "app_page_runs_total", page="Upload") >= 1  # the pages the browser visited
    assert value(after, "app_page_runs_total", page="Search") >= 1
    assert value(after, "app_page_runs_total", page="Status") == 0
