"""One call per user action that both logs the event and counts it in the metrics."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter
from typing import Any

from core import metrics
from core.logs import log_event

_EVENT_ARGUMENTS = frozenset({"action", "user", "outcome", "duration_s", "level", "page"})


@contextmanager
def track(
    action: str,
    *,
    page: str,
    user: str | None = None,
    expected: tuple[type[Exception], ...] = (),
    **fields: Any,
) -> Iterator[dict[str, Any]]:
    """Time the block, then log ``action`` and count it under ``page``.

    The block may add fields to the yielded dict (counts, sizes) and set ``"outcome"`` (e.g.
    ``"partial"``). An exception is re-raised; its outcome is ``"rejected"`` for the ``expected``
    kinds (bad input the page explains) and ``"error"`` otherwise (counted in ``app_errors_total``).
    """
    info: dict[str, Any] = dict(fields)
    start = perf_counter()
    outcome = "ok"
    try:
        yield info
    except Exception as exc:
        outcome = "rejected" if isinstance(exc, expected) else "error"
        info["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        duration = perf_counter() - start
        chosen = str(info.pop("outcome", outcome))
        outcome = chosen if outcome == "ok" else outcome
        metrics.REQUESTS.labels(page=page, action=action, outcome=outcome).inc()
        metrics.REQUEST_DURATION.labels(page=page, action=action).observe(duration)
        if outcome == "error":
            metrics.ERRORS.labels(page=page, action=action).inc()
        level = logging.ERROR if outcome == "error" else logging.INFO
        # A field the block added under one of log_event's own names must not crash the finally
        # (which would hide the block's exception): it is logged with a trailing underscore.
        extra = {f"{key}_" if key in _EVENT_ARGUMENTS else key: value for key, value in info.items()}
        log_event(action, user=user, outcome=outcome, duration_s=duration, level=level, page=page, **extra)
