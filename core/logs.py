"""Structured logs: one JSON object per line on stderr, with secrets masked before anything is written.

``configure_logging(settings)`` installs the handler once per process (CLI, app, benchmarks);
``log_event`` writes one event with the fields operators filter on: user, action, duration, outcome.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

from pydantic import SecretStr
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from core.settings import Settings, mask_url_credentials

MASK = "********"
EVENTS = logging.getLogger("vad.events")

_SENSITIVE_KEY = re.compile(r"pass(word|wd)?|secret|api[_-]?key|token|cookie|credential|authorization", re.I)
_SENSITIVE_PAIR = re.compile(
    r"(?P<key>\b[\w-]*(?:pass(?:word|wd)?|secret|api[_-]?key|token|authorization)[\w-]*\b)"
    r"(?P<sep>['\"]?\s*[=:]\s*['\"]?(?:(?:bearer|basic|token)\s+)?)(?P<value>[^\s'\",;&]+)",
    re.I,
)
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_NOISY_LIBRARIES = ("httpx", "httpcore", "urllib3", "PIL", "matplotlib", "numba", "h5py")

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secrets(values: Iterable[str | SecretStr | None]) -> None:
    """Values that must never appear in a log line (masked wherever they show up)."""
    with _lock:
        for value in values:
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if text and len(text) >= 4:
                _secrets.add(text)


def mask(text: str) -> str:
    """``text`` with registered secrets, passwords inside URLs and ``password=...``-style values masked."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    text = mask_url_credentials(text)
    return _SENSITIVE_PAIR.sub(lambda m: f"{m['key']}{m['sep']}{MASK}", text)


def _masked_field(key: str | None, value: Any, depth: int = 0) -> Any:
    """An extra field's value with secrets masked, also inside dicts, lists and objects' text."""
    if value is None:
        return value
    if key is not None and _SENSITIVE_KEY.search(key):
        return MASK
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return mask(value)
    if depth < 8 and isinstance(value, dict):
        return {k: _masked_field(str(k), v, depth + 1) for k, v in value.items()}
    if depth < 8 and isinstance(value, list | tuple | set | frozenset):
        return [_masked_field(None, v, depth + 1) for v in value]
    # Other objects (exceptions, paths...) are written through str(): mask that text if it needs it.
    text = f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else str(value)
    masked = mask(text)
    return value if masked == text else masked


class RedactSecrets(logging.Filter):
    """Masks secrets in the message, in extra fields and in tracebacks of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # wrong %-arguments: keep the line rather than raise into the caller
            message = f"{record.msg} (could not apply the log arguments {record.args!r})"
        record.msg = mask(message)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _RECORD_FIELDS:
                setattr(record, key, _masked_field(key, value))
        if record.exc_info:
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = mask(record.exc_text)
        return True


class _TimeFirst(JsonFormatter):
    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {"time": log_data.pop("time", None), **log_data}


def json_formatter() -> logging.Formatter:
    """JSON lines: time (ISO 8601, UTC), level, logger, message, then the event's fields."""
    return _TimeFirst(
        "{levelname}{name}{message}",
        style="{",
        timestamp="time",
        reserved_attrs=[*RESERVED_ATTRS, "asctime"],
        rename_fields={"levelname": "level", "name": "logger", "exc_info": "traceback"},
        json_ensure_ascii=False,
    )


def configure_logging(settings: Settings, stream: Any = None) -> logging.Handler:
    """Route every logger through one handler (JSON or text, per ``VAD_LOG_FORMAT``); idempotent."""
    url_password = urlparse(settings.qdrant_url).password if settings.qdrant_url else None
    register_secrets(
        [settings.qdrant_api_key, settings.s3_secret_key, settings.admin_password, settings.cookie_key, url_password]
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name("vad")
    handler.addFilter(RedactSecrets())
    if settings.log_format == "json":
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    with _lock:
        for old in [h for h in root.handlers if h.get_name() == "vad"]:
            root.removeHandler(old)
        root.addHandler(handler)
        root.setLevel(settings.log_level)
    logging.captureWarnings(True)  # Python warnings become log lines too (JSON, masked)
    quiet = logging.WARNING if settings.log_level != "DEBUG" else logging.DEBUG
    for name in _NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(quiet)
    return handler


def adopt_loggers(prefix: str) -> int:
    """Send existing loggers under ``prefix`` (e.g. Streamlit's, which print on their own) through
    the root handler, so their lines are JSON and masked too. Returns how many were adopted."""
    adopted = 0
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (name == prefix or name.startswith(prefix + ".")):
            logger.handlers = [h for h in logger.handlers if not isinstance(h, logging.StreamHandler)]
            logger.propagate = True
            adopted += 1
    return adopted


def log_event(
    action: str,
    *,
    user: str | None = None,
    outcome: str = "ok",
    duration_s: float | None = None,
    level: int = logging.INFO,
    **fields: Any,
) -> None:
    """One event line: ``{"message": action, "action", "user", "outcome", "duration_ms", ...fields}``."""
    extra: dict[str, Any] = {"action": action, "user": user, "outcome": outcome}
    if duration_s is not None:
        extra["duration_ms"] = round(duration_s * 1000, 1)
    for key, value in fields.items():
        extra[f"{key}_" if key in _RECORD_FIELDS else key] = value
    EVENTS.log(level, action, extra=extra)
