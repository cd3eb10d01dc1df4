"""core.logs: one JSON object per line, event fields, and secrets masked before anything is written.

In-process tests install the real handler (``configure_logging``) on a StringIO; the end-to-end
tests run the CLI as a subprocess at DEBUG level (against the real SeaweedFS with a wrong secret
key, so that errors are logged) and drive the app's sign-in and registration through AppTest.
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from apptest_helpers import button, new_app, sign_in
from helpers import S3Server, png

from core import telemetry
from core.logs import MASK, adopt_loggers, configure_logging, log_event
from core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]
STANDARD_FIELDS = {"time", "level", "logger", "message"}
#: ``key=value`` pairs with values nobody registered: only the pattern masks them.
PAIR_VALUES = ("hunter2-xyz", "tok-abc123", "k-999-qq", "bearer-777zz")
PAIRS = "password=hunter2-xyz token=tok-abc123 api_key: 'k-999-qq' Authorization: Bearer bearer-777zz"


def _random_secrets() -> dict[str, str]:
    """Real-looking random values for every secret setting (a fresh set per test)."""
    return {
        "s3_secret_key": secrets.token_urlsafe(30),
        "qdrant_api_key": secrets.token_hex(24),
        "admin_password": "Adm1n-" + secrets.token_urlsafe(12),
        "cookie_key": secrets.token_urlsafe(32),
    }


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging changes the root logger: put its handlers and levels back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    libraries = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "urllib3", "PIL")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, lib_level in libraries.items():
        logging.getLogger(name).setLevel(lib_level)


@pytest.fixture
def secret_settings(tmp_path: Path) -> tuple[Settings, dict[str, str]]:
    values = _random_secrets()
    settings = load_settings(
        {},
        data_dir=tmp_path / "data",
        s3_endpoint="127.0.0.1:9",
        s3_access_key="vad-access",
        log_level="DEBUG",
        **values,
    )
    return settings, values


def capture(settings: Settings, log_format: str = "json") -> io.StringIO:
    """Install the real handler (filter and formatter as configure_logging builds them) on a buffer;
    use with the ``root_logging`` fixture, which puts the root logger back."""
    stream = io.StringIO()
    handler = configure_logging(settings.model_copy(update={"log_format": log_format}), stream=stream)
    logging.getLogger().handlers[:] = [handler]  # as in production: pytest's capture handlers step aside
    return stream


def json_lines(text: str) -> list[dict]:
    """Every line parsed as one JSON object (a line that does not parse fails the test)."""
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError as exc:
            pytest.fail(f"not a JSON line ({exc}): {line!r}")
    return parsed


def events(lines: list[dict], action: str) -> list[dict]:
    return [line for line in lines if line.get("logger") == "vad.events" and line.get("action") == action]


# --- format ---------------------------------------------------------------------------------------


def test_every_line_is_one_json_object_with_the_standard_fields(root_logging, secret_settings) -> None:
    stream = capture(secret_settings[0])
    logging.getLogger("core.ingest").info("stored %d of %d", 3, 4)
    logging.getLogger("some.library").debug("a debug line")
    logging.getLogger("core.search").warning('first line\nsecond line with "quotes" and unicode: café ✓')
    logging.getLogger("core.cli").error({"not": "a string"})
    try:
        {}["missing"]
    except KeyError:
        logging.getLogger("core.doctor").exception("a check crashed")
    log_event("ingest", user="alice", duration_s=0.5)

    lines = json_lines(stream.getvalue())
    assert len(lines) == 6  # the multi-line message and the traceback stay inside their line
    for line in lines:
        assert set(line) >= STANDARD_FIELDS, line
        assert datetime.fromisoformat(line["time"]).utcoffset() == timedelta(0)  # ISO 8601, UTC
    assert [(line["level"], line["logger"]) for line in lines] == [
        ("INFO", "core.ingest"),
        ("DEBUG", "some.library"),
        ("WARNING", "core.search"),
        ("ERROR", "core.cli"),
        ("ERROR", "core.doctor"),
        ("INFO", "vad.events"),
    ]
    assert lines[0]["message"] == "stored 3 of 4"
    assert lines[2]["message"] == 'first line\nsecond line with "quotes" and unicode: café ✓'
    assert "KeyError: 'missing'" in lines[4]["traceback"]


def test_text_format_is_one_readable_line(root_logging, secret_settings) -> None:
    stream = capture(secret_settings[0], "text")
    logging.getLogger("core.ingest").warning("disk almost full")
    assert stream.getvalue().rstrip().endswith("WARNING core.ingest: disk almost full")


def test_adopted_loggers_write_json_through_the_one_handler(root_logging, secret_settings) -> None:
    settings, values = secret_settings
    stream = capture(settings)
    own = logging.getLogger("thirdparty.web")  # like Streamlit's loggers: own console handler, no propagation
    printed = io.StringIO()
    own.addHandler(logging.StreamHandler(printed))
    own.propagate = False
    other = logging.getLogger("thirdpartyweb.other")  # same prefix text, different package: left alone
    other.propagate = False
    try:
        assert adopt_loggers("thirdparty") >= 1
        own.error("uncaught error with key %s", values["qdrant_api_key"])
        other.error("not adopted")
    finally:
        own.handlers.clear()
        other.propagate = True
    lines = json_lines(stream.getvalue())
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("thirdparty.web", "uncaught error with key ********")
    ]
    assert printed.getvalue() == ""


def test_log_event_carries_action_user_outcome_and_duration(root_logging, secret_settings) -> None:
    stream = capture(secret_settings[0])
    log_event("ingest", user="alice", outcome="partial", duration_s=1.23456, page="cli", files=3)
    log_event("sign_in", user="bob", outcome="refused", level=logging.WARNING)

    ingest, sign_in_event = json_lines(stream.getvalue())
    assert ingest["logger"] == "vad.events"
    assert ingest["level"] == "INFO"
    assert ingest["message"] == ingest["action"] == "ingest"
    assert (ingest["user"], ingest["outcome"], ingest["duration_ms"]) == ("alice", "partial", 1234.6)
    assert (ingest["page"], ingest["files"]) == ("cli", 3)
    assert sign_in_event["level"] == "WARNING"
    assert (sign_in_event["action"], sign_in_event["user"], sign_in_event["outcome"]) == ("sign_in", "bob", "refused")
    assert "duration_ms" not in sign_in_event  # no duration given, none invented


def test_event_fields_named_like_log_record_attributes_do_not_crash(root_logging, secret_settings) -> None:
    stream = capture(secret_settings[0])
    colliding = {
        "filename": "cat.png",
        "name": "a name",
        "message": "not the message",
        "msg": "m",
        "args": [1, 2],
        "levelname": "FAKE",
        "exc_info": "no",
        "created": "yesterday",
        "module": "mod",
        "lineno": -1,
        "asctime": "never",
    }
    log_event("upload", user="bob", **colliding)

    (line,) = json_lines(stream.getvalue())
    assert (line["level"], line["logger"], line["message"], line["action"]) == (
        "INFO",
        "vad.events",
        "upload",
        "upload",
    )
    assert "traceback" not in line
    for key, value in colliding.items():
        assert line[f"{key}_"] == value, key


def test_track_writes_one_event_per_block(root_logging, secret_settings) -> None:
    stream = capture(secret_settings[0])
    with telemetry.track("tag", page="gallery", user="carol", images=2) as info:
        info["tagged"] = 2
    with pytest.raises(ValueError), telemetry.track("search_text", page="search", user="carol", expected=(ValueError,)):
        raise ValueError("type a few words")
    with pytest.raises(RuntimeError), telemetry.track("delete", page="gallery", user="carol"):
        raise RuntimeError("the index went away")

    tag, search, delete = json_lines(stream.getvalue())
    assert (tag["action"], tag["page"], tag["user"], tag["outcome"], tag["level"]) == (
        "tag",
        "gallery",
        "carol",
        "ok",
        "INFO",
    )
    assert (tag["images"], tag["tagged"]) == (2, 2)
    assert tag["duration_ms"] >= 0
    assert (search["outcome"], search["level"], search["error"]) == ("rejected", "INFO", "ValueError: type a few words")
    assert (delete["outcome"], delete["level"]) == ("error", "ERROR")
    assert delete["error"] == "RuntimeError: the index went away"


def test_fields_a_block_adds_under_the_events_own_names_neither_crash_nor_hide_its_error(
    root_logging, secret_settings
) -> None:
    stream = capture(secret_settings[0])
    with telemetry.track("find_duplicates", page="duplicates", user="carol") as event:
        event.update(level="near", user="someone", page=2, action="other", duration_s=5)
    with pytest.raises(ValueError, match="the real error"), telemetry.track("tag", page="gallery") as event:
        event["page"] = 3
        raise ValueError("the real error")

    found, failed = json_lines(stream.getvalue())
    assert (found["level"], found["user"], found["page"], found["action"]) == (
        "INFO",
        "carol",
        "duplicates",
        "find_duplicates",
    )
    assert (found["level_"], found["user_"], found["page_"], found["action_"], found["duration_s_"]) == (
        "near",
        "someone",
        2,
        "other",
        5,
    )
    assert (failed["outcome"], failed["page"], failed["page_"]) == ("error", "gallery", 3)


# --- redaction ------------------------------------------------------------------------------------

Emit = Callable[[logging.Logger, dict[str, str]], None]


def _raise_and_log(log: logging.Logger, s: dict[str, str]) -> None:
    try:
        raise PermissionError(f"S3 refused the signature made with {s['s3_secret_key']} ({PAIRS})")
    except PermissionError:
        log.exception("upload failed")


def _chained(log: logging.Logger, s: dict[str, str]) -> None:
    try:
        try:
            raise ConnectionError(f"qdrant answered 401 to api-key {s['qdrant_api_key']}")
        except ConnectionError as inner:
            raise RuntimeError(f"could not open the index (cookie {s['cookie_key']})") from inner
    except RuntimeError:
        log.error("startup failed", exc_info=True)


def _track_error(log: logging.Logger, s: dict[str, str]) -> None:
    with pytest.raises(ValueError), telemetry.track("add_user", page="users", user="root"):
        raise ValueError(f"password {s['admin_password']} rejected; {PAIRS}")


REDACTION_CASES: dict[str, Emit] = {
    "message": lambda log, s: log.warning(f"connecting with secret key {s['s3_secret_key']} and {PAIRS}"),
    "%-args": lambda log, s: log.warning("api key %s, cookie %r, %s", s["qdrant_api_key"], s["cookie_key"], PAIRS),
    "mapping %-args": lambda log, s: log.warning("admin %(pw)s", {"pw": s["admin_password"]}),
    "wrong %-args": lambda log, s: log.warning("%s and %s and %s", s["admin_password"], PAIRS),
    "non-string message": lambda log, s: log.info({"password": "hunter2-xyz", "key": s["cookie_key"]}),
    "extra fields": lambda log, s: log.info(
        "request", extra={"url": f"http://s3/?sig={s['s3_secret_key']}", "note": PAIRS, "api_key": "k-999-qq"}
    ),
    "extra keys named like secrets": lambda log, s: log.info(
        "config", extra={"password": "hunter2-xyz", "auth_token": "tok-abc123", "cookie": "bearer-777zz"}
    ),
    "nested extra fields": lambda log, s: log_event(
        "doctor",
        details={"store": {"endpoint": "s3", "credentials": s["s3_secret_key"]}, "tried": [s["admin_password"]]},
        notes=(PAIRS, s["cookie_key"]),
    ),
    "exception as a field": lambda log, s: log_event(
        "search", error=ConnectionRefusedError(f"api-key {s['qdrant_api_key']} refused; {PAIRS}")
    ),
    "event fields": lambda log, s: log_event("users add", user="root", note=f"{PAIRS} {s['admin_password']}"),
    "traceback": _raise_and_log,
    "chained traceback": _chained,
    "track error": _track_error,
}


#: The text format writes the message and the traceback only (no extra fields).
TEXT_CASES = (
    "message",
    "%-args",
    "mapping %-args",
    "wrong %-args",
    "non-string message",
    "traceback",
    "chained traceback",
)


@pytest.mark.parametrize(
    ("case", "log_format"),
    [(case, "json") for case in REDACTION_CASES] + [(case, "text") for case in TEXT_CASES],
)
def test_secrets_and_password_pairs_never_reach_the_output(
    root_logging, secret_settings, case: str, log_format: str
) -> None:
    settings, values = secret_settings
    stream = capture(settings, log_format)
    REDACTION_CASES[case](logging.getLogger("core.test"), values)

    out = stream.getvalue()
    assert MASK in out, out  # the line was written, masked
    for name, value in values.items():
        assert value not in out, f"{name} leaked: {out}"
    for value in PAIR_VALUES:
        assert value not in out, f"{value} leaked: {out}"
    if log_format == "json":
        assert json_lines(out)


def test_masking_keeps_the_rest_of_the_line(root_logging, secret_settings) -> None:
    settings, values = secret_settings
    stream = capture(settings)
    logging.getLogger("core.storage").warning(
        "put images/alice/1.png failed with %s; password=hunter2-xyz, retries=3", values["s3_secret_key"]
    )
    (line,) = json_lines(stream.getvalue())
    assert line["message"] == f"put images/alice/1.png failed with {MASK}; password={MASK}, retries=3"


# --- end to end: the CLI at DEBUG level --------------------------------------------------------------


def _run_cli(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _event_line(result: subprocess.CompletedProcess[str], action: str) -> dict:
    """The command's event among the JSON lines of stderr (other stderr lines are messages, tqdm)."""
    lines = json_lines("\n".join(line for line in result.stderr.splitlines() if line.startswith("{")))
    assert all(set(line) >= STANDARD_FIELDS for line in lines)
    found = events(lines, action)
    assert len(found) == 1, result.stderr
    return found[0]


@pytest.mark.s3
def test_cli_at_debug_level_logs_no_password_or_secret_key(s3_server: S3Server, tmp_path: Path) -> None:
    values = _random_secrets()
    user_password, new_password = "Carol-" + secrets.token_urlsafe(12), "Carol2-" + secrets.token_urlsafe(12)
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(png(seed=1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAD_")}
    env.update(
        {
            "VAD_DATA_DIR": str(tmp_path / "data"),
            "VAD_MODEL": "tiny:random",
            "VAD_DEVICE": "cpu",
            "VAD_LOG_LEVEL": "DEBUG",
            "VAD_LOG_FORMAT": "json",
            "VAD_S3_ENDPOINT": f"http://{s3_server.endpoint}",
            "VAD_S3_ACCESS_KEY": s3_server.access_key,
            "VAD_S3_SECRET_KEY": values["s3_secret_key"],  # wrong: SeaweedFS refuses the signatures
            "VAD_ADMIN_USER": "root",
            "VAD_ADMIN_PASSWORD": values["admin_password"],
            "VAD_COOKIE_KEY": values["cookie_key"],
        }
    )

    added = _run_cli(["users", "add", "carol", "--password-stdin"], env, stdin=user_password + "\n")
    changed = _run_cli(["users", "passwd", "carol", "--password-stdin"], env, stdin=new_password + "\n")
    ingested = _run_cli(["ingest", str(photos), "--user", "carol"], env)
    doctor = _run_cli(["doctor", "--format", "json"], env)

    assert added.returncode == 0, added.stderr
    assert changed.returncode == 0, changed.stderr
    assert ingested.returncode == 2, ingested.stderr  # the store cannot be opened with that key
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["store"]["status"] == "fail"

    expected = [
        (added, "users add", "ok"),
        (changed, "users passwd", "ok"),
        (ingested, "ingest", "refused"),
        (doctor, "doctor", "partial"),
    ]
    for result, action, outcome in expected:
        event = _event_line(result, action)
        assert (event["outcome"], event["page"]) == (outcome, "cli"), event
        assert event["duration_ms"] >= 0
    assert _event_line(added, "users add")["user"] == "carol"
    assert _event_line(ingested, "ingest")["exit_code"] == 2

    everything = "".join(r.stdout + r.stderr for r, _, _ in expected)
    assert '"level": "DEBUG"' in everything  # DEBUG lines were written, so they were checked too
    for secret in (user_password, new_password, *values.values()):
        assert secret not in everything, f"a secret leaked into the CLI output: {everything}"


# --- end to end: the app's sign-in and registration ---------------------------------------------------


def _register(at, username: str, password: str) -> None:
    fields = {t.label: t for t in at.text_input[2:]}
    fields["First name"].input("Dana")
    fields["Last name"].input("Logs")
    fields["Email"].input(f"{username}@example.com")
    fields["Username"].input(username)
    at.text_input[6].input(password)
    at.text_input[7].input(password)
    button(at, "Create account").click()
    at.run()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_app_sign_in_and_registration_log_no_password(root_logging, tmp_path: Path, monkeypatch) -> None:
    values = _random_secrets()
    admin = f"logadmin{secrets.token_hex(3)}"  # fresh names: the sign-in throttle is per name and process
    newcomer = f"dana{secrets.token_hex(3)}"
    wrong_password = "Wrong-" + secrets.token_urlsafe(12)
    new_password = "Dana-9x" + secrets.token_hex(4)  # the sign-up form wants 8-20 characters
    for name, value in {
        "VAD_DATA_DIR": str(tmp_path / "data"),
        "VAD_MODEL": "tiny:random",
        "VAD_LOG_LEVEL": "DEBUG",
        "VAD_ADMIN_USER": admin,
        "VAD_ADMIN_PASSWORD": values["admin_password"],
        "VAD_COOKIE_KEY": values["cookie_key"],
    }.items():
        monkeypatch.setenv(name, value)

    at = new_app()  # the first run sets up logging once per process (or finds it done)
    stream = capture(load_settings())  # now route the root logger, as installed, into a buffer

    sign_in(at, admin, wrong_password)
    assert at.session_state["authentication_status"] is False
    _register(at, newcomer, new_password)
    assert any(f"Account {newcomer} created" in s.value for s in at.success), [e.value for e in at.error]
    sign_in(at, newcomer, new_password)
    assert at.session_state["authentication_status"] is True
    admin_app = sign_in(new_app(), admin, values["admin_password"])
    assert admin_app.session_state["authentication_status"] is True

    out = stream.getvalue()
    lines = json_lines(out)
    sign_ins = [(e["user"], e["outcome"]) for e in events(lines, "sign_in")]
    assert sign_ins == [(admin, "refused"), (newcomer, "ok"), (admin, "ok")]
    assert [e["user"] for e in events(lines, "register")] == [newcomer]
    for secret in (wrong_password, new_password, values["admin_password"], values["cookie_key"]):
        assert secret not in out, f"a password leaked into the app's log: {out}"
