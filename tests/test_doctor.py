"""core.doctor: the health checks behind ``python -m core doctor`` and the admin Status page.

Every check runs for real: the tiny model (the default ``auto`` model once), the embedded index and
the local disk under a temporary data folder, qdrant-client's ``:memory:`` mode for the server code
path, and the session's SeaweedFS for S3 (right and wrong credentials, closed and silent ports).
"""

from __future__ import annotations

import http.server
import json
import re
import time
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from subprocess import CompletedProcess

import pytest
from helpers import S3Server, free_port, ingest_files, list_keys, png, serve_http, tiny_services
from test_cli import run_cli

from core import doctor
from core.doctor import CHECKS, CheckResult, DoctorContext, failed, results_frame, run_checks
from core.embed import resolve_device
from core.index import collection_name
from core.journal import repair_orphans, scan_orphans
from core.storage import LocalStore

CHECK_NAMES = ["settings", "model", "store", "index", "disk", "orphans"]
#: What the tiny model (random weights: a warning) on working parts gives.
HEALTHY = {"settings": "ok", "model": "warn", "store": "ok", "index": "ok", "disk": "ok", "orphans": "ok"}
TINY_ENV = {"VAD_MODEL": "tiny:random", "VAD_DEVICE": "cpu"}


def embedded_env(data_dir: Path, **extra: str) -> dict[str, str]:
    return {"VAD_DATA_DIR": str(data_dir), **TINY_ENV, **extra}


def check(env: dict[str, str]) -> dict[str, CheckResult]:
    results = run_checks(DoctorContext(env=env))
    assert [r.name for r in results] == CHECK_NAMES
    return {r.name: r for r in results}


def statuses(results: dict[str, CheckResult]) -> dict[str, str]:
    return {name: r.status for name, r in results.items()}


def closed_port() -> int:
    """A loopback port nothing listens on."""
    return free_port()


def s3_env(server: S3Server, data_dir: Path, bucket: str, **overrides: str) -> dict[str, str]:
    env = embedded_env(
        data_dir,
        VAD_S3_ENDPOINT=f"http://{server.endpoint}",
        VAD_S3_ACCESS_KEY=server.access_key,
        VAD_S3_SECRET_KEY=server.secret_key,
        VAD_S3_BUCKET=bucket,
    )
    return {**env, **overrides}


# --- embedded defaults --------------------------------------------------------------------------


def test_embedded_defaults_pass_and_leave_nothing_behind(tmp_path: Path) -> None:
    data = tmp_path / "data"
    results = check(embedded_env(data))
    # the tiny model has random weights: the one warning
    assert statuses(results) == HEALTHY
    assert "random weights" in results["model"].summary
    assert results["model"].details["dimension"] == "64"
    assert str(data / "index") in results["settings"].summary
    assert "write, read and delete work" in results["store"].summary
    assert results["index"].summary.endswith(": 0 images")
    assert results["index"].details["images"] == "0"
    assert results["index"].details["users"] == "0"
    assert "server version" not in results["index"].details  # embedded: no server to ask
    assert str(data) in results["disk"].details["data"] and "GiB free" in results["disk"].details["data"]
    assert all(r.seconds >= 0 for r in results.values())
    assert failed(list(results.values())) == []
    # the store probe and the disk probe are deleted again
    assert list_keys(LocalStore(data / "objects")) == set()
    assert [p.name for p in data.iterdir() if p.name.startswith(".doctor-")] == []
    # the index the checks opened is closed (its directory lock released): services open it again
    with tiny_services(data) as services:
        assert services.index.count("anyone") == 0


def test_index_counts_match_the_ingested_images(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with tiny_services(data) as services:
        ingest_files(services, "alice", {"a.png": png(1), "b.png": png(2)})
        ingest_files(services, "bob", {"c.png": png(3)})
    objects_before = list_keys(LocalStore(data / "objects"))
    assert len(objects_before) == 6  # original + thumbnail each

    results = check(embedded_env(data))
    index = results["index"]
    assert index.status == "ok"
    assert index.summary.endswith(": 3 images")
    assert (index.details["images"], index.details["users"]) == ("3", "2")
    assert list_keys(LocalStore(data / "objects")) == objects_before  # the probe touched nothing else


def test_live_services_are_checked_and_left_open(tmp_path: Path) -> None:
    """What the Status page does: the checks reuse the app's model, store and index."""
    data = tmp_path / "data"
    with tiny_services(data) as services:
        ingest_files(services, "alice", {"a.png": png(4), "b.png": png(5)})
        before = list_keys(services.store)
        results = {r.name: r for r in run_checks(DoctorContext(services=services))}
        assert statuses(results) == HEALTHY
        assert results["index"].details["images"] == "2"
        assert results["model"].details["model"] == services.embedder.name
        # still usable: the checks close only what they opened themselves
        assert services.index.count("alice") == 2
        assert list_keys(services.store) == before


def test_orphans_are_reported_until_repaired(tmp_path: Path) -> None:
    with tiny_services(tmp_path / "data") as services:
        ingest_files(services, "alice", {"a.png": png(seed=1)})
        services.store.put("images/alice/stray.png", b"left by a killed ingest")
        orphans = run_checks(DoctorContext(services=services), names=["orphans"])[-1]
        assert orphans.status == "warn"
        assert orphans.summary.startswith("1 objects without a point and 0 points with a missing object")
        assert orphans.summary.endswith("run python -m core repair")
        assert orphans.details["objects"] == "3" and orphans.details["points"] == "1"
        repair_orphans(services.store, services.index, scan_orphans(services.store, services.index, tmp_path))
        orphans = run_checks(DoctorContext(services=services), names=["orphans"])[-1]
        assert (orphans.status, orphans.summary) == ("ok", "2 objects and 1 points match")


def test_index_held_by_another_process_is_a_warning(tmp_path: Path) -> None:
    """While the app holds the embedded index, doctor says so instead of failing."""
    data = tmp_path / "data"
    with tiny_services(data):  # holds the data directory's lock, as the running app does
        results = check(embedded_env(data))
    assert results["index"].status == "warn"
    assert "in use by another process" in results["index"].summary
    assert str(data / "index") in results["index"].summary
    assert failed(list(results.values())) == []


def test_default_auto_model(tmp_path: Path) -> None:
    """VAD_MODEL unset (``auto``): CLIP when its weights can be had, else EfficientNet-Lite0 with a notice."""
    results = check({"VAD_DATA_DIR": str(tmp_path / "data")})
    model = results["model"]
    assert results["settings"].details["model"] == "auto"
    assert model.details["device"] == resolve_device("auto")  # the device used, not the setting
    if model.details["model"] == "efficientnet-lite0":  # offline, nothing cached: this sandbox
        assert model.status == "warn"
        assert "CLIP is not available" in model.summary and "EfficientNet-Lite0" in model.summary
        assert (model.details["dimension"], model.details["text search"]) == ("1280", "False")
    else:  # CLIP weights in the cache or downloadable
        assert model.status == "ok"
        assert model.details["text search"] == "True"
    others = {name: r.status for name, r in results.items() if name != "model"}
    assert others == {"settings": "ok", "store": "ok", "index": "ok", "disk": "ok", "orphans": "ok"}
    # the index opened is the collection of the model actually loaded
    assert collection_name(model.details["model"], int(model.details["dimension"])) in results["index"].summary


# --- the Qdrant server code path ----------------------------------------------------------------


def test_qdrant_server_code_path_in_memory(tmp_path: Path) -> None:
    results = check(embedded_env(tmp_path / "data", VAD_QDRANT_URL=":memory:"))
    assert statuses(results) == HEALTHY
    assert "Qdrant server :memory:" in results["settings"].summary
    assert "in-memory" in results["index"].summary and results["index"].summary.endswith(": 0 images")
    assert "server version" not in results["index"].details
    assert not (tmp_path / "data" / "index").exists()  # nothing embedded was opened


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_wrong_qdrant_url_fails_the_index_naming_the_variable(tmp_path: Path) -> None:
    port = closed_port()
    api_key = "qdrant-key-that-must-stay-secret"
    started = time.monotonic()
    results = check(
        embedded_env(tmp_path / "data", VAD_QDRANT_URL=f"http://127.0.0.1:{port}", VAD_QDRANT_API_KEY=api_key)
    )
    assert time.monotonic() - started < 20
    assert statuses(results) == {**HEALTHY, "index": "fail", "orphans": "skip"}
    summary = results["index"].summary
    assert summary.startswith(f"VAD_QDRANT_URL=http://127.0.0.1:{port}: ")
    assert "Connection refused" in summary
    assert failed(list(results.values())) == ["index"]
    everything = json.dumps([vars(r) for r in results.values()])
    assert api_key not in everything


def test_qdrant_url_without_api_key_warns(tmp_path: Path) -> None:
    results = check(embedded_env(tmp_path / "data", VAD_QDRANT_URL=f"http://127.0.0.1:{closed_port()}"))
    assert results["settings"].status == "warn"
    assert "no VAD_QDRANT_API_KEY" in results["settings"].summary
    assert results["index"].status == "fail"  # a warning does not skip the checks after it


def test_silent_qdrant_server_times_out_in_seconds(tmp_path: Path, silent_port: int) -> None:
    started = time.monotonic()
    results = check(embedded_env(tmp_path / "data", VAD_QDRANT_URL=f"http://127.0.0.1:{silent_port}"))
    assert time.monotonic() - started < 30
    assert results["index"].status == "fail"
    assert results["index"].summary.startswith(f"VAD_QDRANT_URL=http://127.0.0.1:{silent_port}: ")
    assert "timed out" in results["index"].summary
    assert results["index"].seconds < 20


@pytest.fixture
def refusing_server() -> Iterator[int]:
    """A loopback HTTP server that answers every request 401, as Qdrant does for a wrong API key."""

    class Refuse(http.server.BaseHTTPRequestHandler):
        def _refuse(self) -> None:
            body = b'{"status":{"error":"Must provide an API key or an Authorization bearer token"}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _refuse

        def log_message(self, *args: object) -> None:  # keep the test output clean
            pass

    with serve_http(Refuse) as port:
        yield port


def test_refused_qdrant_api_key_names_the_key_variable(tmp_path: Path, refusing_server: int) -> None:
    api_key = "wrong-qdrant-key-1234"
    url = f"http://127.0.0.1:{refusing_server}"
    results = check(embedded_env(tmp_path / "data", VAD_QDRANT_URL=url, VAD_QDRANT_API_KEY=api_key))
    assert results["index"].status == "fail"
    summary = results["index"].summary
    assert summary.startswith(f"VAD_QDRANT_URL={url}: the server refused the API key (check VAD_QDRANT_API_KEY)")
    assert "401" in summary
    assert api_key not in json.dumps([vars(r) for r in results.values()])


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "extra"),
    [
        (
            "VAD_QDRANT_API_KEY",
            {"VAD_QDRANT_URL": "http://qdrant:6333", "VAD_QDRANT_API_KEY": "change-me-qdrant-api-key"},
        ),
        ("VAD_ADMIN_PASSWORD", {"VAD_ADMIN_USER": "admin", "VAD_ADMIN_PASSWORD": "change-me-admin-password"}),
        (
            "VAD_S3_SECRET_KEY",
            {"VAD_S3_ENDPOINT": "minio:9000", "VAD_S3_ACCESS_KEY": "vad", "VAD_S3_SECRET_KEY": "minioadmin"},
        ),
    ],
)
def test_placeholder_secrets_fail_settings_and_skip_the_rest(
    tmp_path: Path, variable: str, extra: dict[str, str]
) -> None:
    results = check(embedded_env(tmp_path / "data", **extra))
    assert statuses(results) == {**dict.fromkeys(CHECK_NAMES, "skip"), "settings": "fail"}
    summary = results["settings"].summary
    assert variable in summary and "placeholder" in summary
    assert extra[variable] not in summary  # the value itself is not repeated
    assert all(results[name].summary == "skipped: settings failed" for name in CHECK_NAMES[1:])
    assert failed(list(results.values())) == ["settings"]
    assert not (tmp_path / "data").exists()  # nothing was created on the way


def test_s3_endpoint_without_keys_fails_settings(tmp_path: Path) -> None:
    results = check(embedded_env(tmp_path / "data", VAD_S3_ENDPOINT="minio:9000"))
    assert results["settings"].status == "fail"
    assert "VAD_S3_ACCESS_KEY is required when VAD_S3_ENDPOINT is set" in results["settings"].summary
    assert results["store"].status == "skip"


# --- disk ---------------------------------------------------------------------------------------


def test_data_dir_under_a_regular_file_fails_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    data = blocker / "data"
    results = check(embedded_env(data))
    assert statuses(results) == {**HEALTHY, "store": "fail", "index": "fail", "disk": "fail", "orphans": "skip"}
    disk = results["disk"].summary
    assert disk.startswith(f"VAD_DATA_DIR={data} is not writable: ")
    assert "Not a directory" in disk
    assert results["store"].summary.startswith(f"VAD_DATA_DIR={data}: ")
    assert results["index"].summary.startswith(f"VAD_DATA_DIR={data}: ")
    assert failed(list(results.values())) == ["store", "index", "disk"]
    assert blocker.read_text() == "not a folder"


def test_low_disk_space_names_every_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Thresholds raised above any real disk: both the data folder and the model cache are reported."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(doctor, "DISK_WARN_BELOW", 2**62)
    results = check(embedded_env(tmp_path / "data"))
    disk = results["disk"]
    assert disk.status == "warn"
    assert f"data ({tmp_path / 'data'}) has" in disk.summary
    assert f"model cache ({tmp_path / 'hf-cache'}) has" in disk.summary
    assert disk.details["model cache"].startswith(str(tmp_path / "hf-cache"))

    monkeypatch.setattr(doctor, "DISK_FAIL_BELOW", 2**62)
    results = check(embedded_env(tmp_path / "data"))
    assert results["disk"].status == "fail"
    assert "data (" in results["disk"].summary and "model cache (" in results["disk"].summary
    assert failed(list(results.values())) == ["disk"]


# --- selection and the report frame -------------------------------------------------------------


def test_selected_checks_run_with_their_prerequisites(tmp_path: Path) -> None:
    results = run_checks(DoctorContext(env=embedded_env(tmp_path / "data")), names=["index"])
    assert [r.name for r in results] == ["settings", "model", "index"]
    assert [r.status for r in results] == ["ok", "warn", "ok"]
    results = run_checks(DoctorContext(env=embedded_env(tmp_path / "data")), names=["disk"])
    assert [(r.name, r.status) for r in results] == [("settings", "ok"), ("disk", "ok")]
    with pytest.raises(ValueError, match="unknown check: nope"):
        run_checks(DoctorContext(env=embedded_env(tmp_path / "data")), names=["nope"])


def test_results_frame_has_one_row_per_check(tmp_path: Path) -> None:
    results = run_checks(DoctorContext(env=embedded_env(tmp_path / "data", VAD_QDRANT_URL=":memory:")))
    frame = results_frame(results)
    assert list(frame.columns) == ["check", "title", "status", "summary", "seconds"]
    assert list(frame["check"]) == CHECK_NAMES
    assert list(frame["title"]) == [CHECKS[name].title for name in CHECK_NAMES]
    assert list(frame["status"]) == ["ok", "warn", "ok", "ok", "ok", "ok"]


# --- S3 (SeaweedFS) -----------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_store_passes_and_the_probe_leaves_no_object(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = f"doc-{uuid.uuid4().hex[:12]}"
    results = check(s3_env(s3_server, tmp_path / "data", bucket))
    assert statuses(results) == HEALTHY
    assert results["store"].summary == f"S3 http://{s3_server.endpoint}, bucket {bucket}: write, read and delete work"
    assert list_keys(s3_server.store(bucket)) == set()  # the bucket was created, the probe removed
    assert not (tmp_path / "data" / "objects").exists()  # nothing went to local disk


@pytest.mark.s3
@pytest.mark.parametrize("wrong", ["secret", "access"])
def test_s3_wrong_credentials_fail_the_store(s3_server: S3Server, tmp_path: Path, wrong: str) -> None:
    secret = "wrong-secret-key-0123456789" if wrong == "secret" else s3_server.secret_key
    access = "wrong-access-key" if wrong == "access" else s3_server.access_key
    env = s3_env(s3_server, tmp_path / "data", "doc-wrong", VAD_S3_SECRET_KEY=secret, VAD_S3_ACCESS_KEY=access)
    results = check(env)
    assert statuses(results) == {**HEALTHY, "store": "fail", "orphans": "skip"}
    summary = results["store"].summary
    assert summary.startswith(
        f"VAD_S3_ENDPOINT=http://{s3_server.endpoint}: the server refused the credentials "
        "(check VAD_S3_ACCESS_KEY and VAD_S3_SECRET_KEY): "
    )
    # and the server's own word for which part was wrong
    expected = "SignatureDoesNotMatch" if wrong == "secret" else "InvalidAccessKeyId"
    assert expected in summary, summary
    everything = json.dumps([vars(r) for r in results.values()])
    assert secret not in everything and s3_server.secret_key not in everything


@pytest.mark.s3
def test_s3_closed_port_fails_in_seconds(s3_server: S3Server, tmp_path: Path) -> None:
    port = closed_port()
    env = s3_env(s3_server, tmp_path / "data", "doc-closed", VAD_S3_ENDPOINT=f"127.0.0.1:{port}")
    started = time.monotonic()
    results = check(env)
    assert time.monotonic() - started < 20
    store = results["store"]
    assert store.status == "fail"
    assert store.summary.startswith(f"VAD_S3_ENDPOINT=127.0.0.1:{port}: ")
    assert "cannot connect" in store.summary and "Connection refused" in store.summary
    assert store.seconds < 10


def test_silent_s3_server_times_out_in_seconds(tmp_path: Path, silent_port: int) -> None:
    env = embedded_env(
        tmp_path / "data",
        VAD_S3_ENDPOINT=f"127.0.0.1:{silent_port}",
        VAD_S3_ACCESS_KEY="some-access-key",
        VAD_S3_SECRET_KEY="some-secret-key-42",
    )
    started = time.monotonic()
    results = check(env)
    assert time.monotonic() - started < 30
    store = results["store"]
    assert store.status == "fail"
    assert store.summary.startswith(f"VAD_S3_ENDPOINT=127.0.0.1:{silent_port}: ")
    assert "timed out" in store.summary
    assert doctor.PROBE_TIMEOUT_S - 1 < store.seconds < 3 * doctor.PROBE_TIMEOUT_S
    assert "some-secret-key-42" not in json.dumps([vars(r) for r in results.values()])


# --- the command line ---------------------------------------------------------------------------

LINE = re.compile(r"^(OK|WARN|FAIL|SKIP) +(settings|model|store|index|disk|orphans) +\S")


def test_cli_doctor_on_embedded_defaults_exits_0(tmp_path: Path) -> None:
    result = run_cli("doctor", data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    checks = [line for line in lines if LINE.match(line)]
    assert [LINE.match(line).group(2) for line in checks] == CHECK_NAMES
    assert checks[1].startswith("WARN  model ") and "random weights" in checks[1]
    assert all(line.startswith("OK ") for i, line in enumerate(checks) if i != 1)
    assert lines[-1] == "doctor: all checks passed"
    assert "torch" not in result.stdout  # versions only on request


WRONG_SECRET = "cli-wrong-secret-key-987654"


@pytest.fixture(scope="module")
def s3_cli_runs(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, CompletedProcess[str]]:
    """``doctor`` against SeaweedFS three ways (module-scoped: each run spends seconds importing torch)."""
    root = tmp_path_factory.mktemp("doctor-cli")
    right = s3_env(s3_server, root / "right", f"doc-{uuid.uuid4().hex[:12]}")
    wrong = {**s3_env(s3_server, root / "wrong", "doc-cli-wrong"), "VAD_S3_SECRET_KEY": WRONG_SECRET}
    runs = {
        "wrong text": (["doctor", "--versions"], wrong),
        "wrong json": (["doctor", "--format", "json", "--versions"], wrong),
        "right json": (["doctor", "--format", "json"], right),
    }
    return {
        name: run_cli(*args, **{**env, "data_dir": Path(env["VAD_DATA_DIR"])}) for name, (args, env) in runs.items()
    }


@pytest.mark.s3
def test_cli_doctor_with_a_wrong_s3_key_exits_1(s3_cli_runs: dict[str, CompletedProcess[str]]) -> None:
    text = s3_cli_runs["wrong text"]
    assert text.returncode == 1, text.stdout + text.stderr
    lines = text.stdout.splitlines()
    assert lines[-1] == "doctor: 1 failed: store"
    assert [LINE.match(line).group(2) for line in lines if LINE.match(line)] == CHECK_NAMES
    store_line = next(line for line in lines if line.startswith("FAIL  store "))
    assert "VAD_S3_ENDPOINT=" in store_line and "refused the credentials" in store_line
    assert "SignatureDoesNotMatch" in store_line
    # --versions
    assert re.search(rf"^  torch +{re.escape(metadata.version('torch'))}$", text.stdout, re.M)
    assert re.search(rf"^  qdrant-client +{re.escape(metadata.version('qdrant-client'))}$", text.stdout, re.M)


@pytest.mark.s3
def test_cli_doctor_json_lists_the_failed_checks(s3_cli_runs: dict[str, CompletedProcess[str]]) -> None:
    as_json = s3_cli_runs["wrong json"]
    assert as_json.returncode == 1, as_json.stdout + as_json.stderr
    report = json.loads(as_json.stdout)  # stdout holds the JSON only
    assert report["ok"] is False
    assert report["failed"] == ["store"]
    assert [c["name"] for c in report["checks"]] == CHECK_NAMES
    assert {c["name"]: c["status"] for c in report["checks"]}["store"] == "fail"
    assert set(report["checks"][0]) == {"name", "status", "summary", "details", "seconds"}
    assert report["versions"]["torch"] == metadata.version("torch")
    assert report["versions"]["qdrant-client"] == metadata.version("qdrant-client")

    right = s3_cli_runs["right json"]
    assert right.returncode == 0, right.stdout + right.stderr
    report = json.loads(right.stdout)
    assert (report["ok"], report["failed"]) == (True, [])
    assert "versions" not in report
    assert {c["name"]: c["status"] for c in report["checks"]}["store"] == "ok"


@pytest.mark.s3
def test_cli_doctor_never_prints_the_s3_secret(
    s3_server: S3Server, s3_cli_runs: dict[str, CompletedProcess[str]]
) -> None:
    for name, run in s3_cli_runs.items():
        output = run.stdout + run.stderr
        assert WRONG_SECRET not in output, name
        assert s3_server.secret_key not in output, name


def test_cli_doctor_with_a_placeholder_secret_exits_1(tmp_path: Path) -> None:
    result = run_cli("doctor", data_dir=tmp_path / "data", VAD_QDRANT_URL="http://qdrant:6333",
                     VAD_QDRANT_API_KEY="change-me-qdrant-api-key")  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL  settings " in result.stdout and "VAD_QDRANT_API_KEY" in result.stdout
    assert result.stdout.count("SKIP ") == 5
    assert result.stdout.splitlines()[-1] == "doctor: 1 failed: settings"
