"""A small on-disk cache for analysis results (DataFrames), keyed by what they depend on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from core.files import replace_file

KEEP_PER_KIND = 8


class ResultCache:
    """Pickled DataFrames under ``root/{user}/{kind}-{digest}.pkl``; old entries are pruned."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def get_or_compute(
        self, kind: str, user: str, key: dict[str, Any], compute: Callable[[], pd.DataFrame]
    ) -> pd.DataFrame:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
        path = self.root / user / f"{kind}-{digest}.pkl"
        if path.is_file():
            try:
                return pd.read_pickle(path)
            except Exception:  # a damaged entry: recompute it
                path.unlink(missing_ok=True)
        result = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, result.to_pickle, private=True, durable=False)  # recomputed if lost
        self._prune(path.parent, kind)
        return result

    def clear(self, user: str) -> None:
        for path in (self.root / user).glob("*.pkl"):
            path.unlink(missing_ok=True)

    @staticmethod
    def _prune(folder: Path, kind: str) -> None:
        entries = sorted(folder.glob(f"{kind}-*.pkl"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[KEEP_PER_KIND:]:
            old.unlink(missing_ok=True)
