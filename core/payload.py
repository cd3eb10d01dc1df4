"""The finite-payload guard: no payload value written to the index is ever NaN or infinite.

Qdrant refuses NaN ("failed to convert NaN into payload number type") and JSON has no spelling
for it, so one bad statistic would reject a valid image. Every payload passes through
``finite_payload`` on its way into the index; a non-finite number becomes null (shown as missing,
like a statistic an image never had) and is logged with its place in the payload.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def finite_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``payload`` with every NaN or infinite number, at any depth, replaced by None
    (and numpy scalars turned into Python numbers)."""
    return {key: _finite(value, key) for key, value in payload.items()}


def _finite(value: Any, where: str) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        log.warning("payload value %s is %s; stored as null", where, value)
        return None
    if isinstance(value, Mapping):
        return {key: _finite(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item, f"{where}[{i}]") for i, item in enumerate(value)]
    return value
