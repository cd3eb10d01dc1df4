"""Sparse neighbour search with faiss: k nearest by cosine, and pHash pairs within a Hamming radius.

Never an n x n matrix: memory grows with n * k (or with the number of close pairs).
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
    columns = min(k + 1, n)
    similarities, indices = index.search(vectors, columns)
    # Drop each row's own entry (normally first, but exact duplicates may tie with it; if the
    # tie pushed it out of the list, drop the farthest neighbour instead).
    keep = indices != np.arange(n)[:, None]
    keep[keep.all(axis=1), -1] = False
    found = columns - 1
    out_idx = np.full((n, k), -1, dtype=np.int64)
    out_sim = np.full((n, k), -np.inf, dtype=np.float32)
    out_idx[:, :found] = indices[keep].reshape(n, found)
    out_sim[:, :found] = similarities[keep].reshape(n, found)
    return out_idx, out_sim


def hamming_pairs(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) of 64-bit hashes within ``max_distance`` bits: (i, j, distance)."""
    hashes = np.asarray(hashes, dtype=np.uint64)
    if len(hashes) < 2:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    codes = np.ascontiguousarray(hashes.astype(">u8").view(np.uint8).reshape(-1, 8))
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    limits, distances, neighbours = index.range_search(codes, max_distance + 1)  # radius is exclusive
    rows = np.repeat(np.arange(len(hashes)), np.diff(limits).astype(np.int64))
    upper = rows < neighbours
    return rows[upper], neighbours[upper].astype(np.int64), distances[upper].astype(np.int64)
