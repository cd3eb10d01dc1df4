"""Exact k nearest neighbours by cosine with faiss (pHash pairs: ``core.hamming``).

Never an n x n matrix: memory grows with n * k.
"""

from __future__ import annotations

import faiss
import numpy as np


def knn(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row, its ``k`` nearest other rows: (indices (n, k), cosine similarities (n, k)).

    Rows are L2-normalised vectors; exact inner-product search. Missing neighbours (n <= k) are
    -1 with similarity -inf.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    if n == 0:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    similarities, indices = index.search(vectors, min(k + 1, n))
    return drop_self(indices, similarities, np.arange(n), k)


def drop_self(indices: np.ndarray, similarities: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Search results of ``rows`` (k + 1 columns, or fewer) without each row itself, as (n, k).

    The row itself normally comes first, but exact duplicates may tie with it; if the tie pushed it
    out of the list, the farthest neighbour is dropped instead. Missing entries: -1 and -inf.
    """
    n, columns = indices.shape
    keep = indices != np.asarray(rows)[:, None]
    keep[keep.sum(axis=1) == columns, -1] = False
    found = min(columns - 1, k)
    kept_idx = indices[keep].reshape(n, columns - 1)[:, :found]
    kept_sim = similarities[keep].reshape(n, columns - 1)[:, :found]
    out_idx = np.full((n, k), -1, dtype=np.int64)
    out_sim = np.full((n, k), -np.inf, dtype=np.float32)
    out_idx[:, :found] = kept_idx
    out_sim[:, :found] = np.where(kept_idx >= 0, kept_sim, -np.inf)
    return out_idx, out_sim
