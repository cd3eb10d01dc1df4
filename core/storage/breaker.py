"""A circuit breaker for a batch of store calls: stop after a few consecutive unanswered ones."""

from __future__ import annotations

import time
from collections.abc import Callable

from core.storage.base import StorageError, StoreUnreachable

#: Consecutive StoreUnreachable errors that open the breaker...
FAILURE_THRESHOLD = 3
#: ...or this long since the first of them, whichever comes first.
OUTAGE_DEADLINE_S = 20.0


class Breaker:
    """Counts consecutive StoreUnreachable errors; ``open`` once there were ``threshold`` of them or
    the first is ``deadline_s`` old. Any answer from the store (success or refusal) closes it."""

    def __init__(
        self,
        threshold: int = FAILURE_THRESHOLD,
        deadline_s: float = OUTAGE_DEADLINE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.deadline_s = deadline_s
        self.clock = clock
        self.failures = 0
        self.first_failure_at: float | None = None
        self.last_error: StorageError | None = None

    def success(self) -> None:
        self.failures = 0
        self.first_failure_at = None

    def failure(self, exc: BaseException) -> None:
        """Count ``exc`` if the store did not answer; an error the store answered with closes the breaker."""
        if not isinstance(exc, StoreUnreachable):
            self.success()
            return
        self.failures += 1
        self.last_error = exc
        if self.first_failure_at is None:
            self.first_failure_at = self.clock()

    @property
    def open(self) -> bool:
        if not self.failures:
            return False
        assert self.first_failure_at is not None
        return self.failures >= self.threshold or self.clock() - self.first_failure_at >= self.deadline_s
