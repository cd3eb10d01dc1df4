"""All pairs of 64-bit hashes within a Hamming radius, without comparing every pair.

Multi-index hashing (Norouzi et al., "Fast Search in Hamming Space with Multi-Index Hashing"):
split the 64 bits into ``m`` substrings with radii ``r_1..r_m`` such that sum(r_t + 1) > radius.
By the pigeonhole principle two hashes within ``radius`` bits are within ``r_t`` bits on at least
one substring, so probing each hash's substring buckets at every flip of up to ``r_t`` bits finds
every such pair; each candidate is then checked on all 64 bits. Exact, and the work grows with
n times the probes plus the candidates instead of with n². Small inputs, or radii where probing
would cost more than comparing everything, go to faiss's brute-force binary search.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb

import faiss
import numpy as np

BRUTE_FORCE_LIMIT = 20_000
_BRUTE_FORCE_SPEEDUP = 40  # faiss compares ~40 pairs in the time of one numpy probe
_DENSE_BITS = 24  # substrings up to this long use a dense bucket table, longer ones a sorted array


@dataclass(frozen=True)
class Substring:
    shift: int
    bits: int
    radius: int

    def probes(self) -> int:
        return sum(comb(self.bits, r) for r in range(self.radius + 1))


def plan(n: int, radius: int) -> list[Substring] | None:
    """The cheapest exact split for ``n`` hashes, or None when brute force is cheaper."""
    best, best_cost = None, n * n / 2 / _BRUTE_FORCE_SPEEDUP
    for m in range(1, min(radius + 1, 16) + 1):
        substrings = split(m, radius)
        cost = sum(n * s.probes() * (1 + n / 2.0**s.bits) for s in substrings)
        if cost < best_cost:
            best, best_cost = substrings, cost
    return best


def split(m: int, radius: int) -> list[Substring]:
    """``m`` substrings covering the 64 bits whose radii make any pair within ``radius`` collide."""
    widths = [64 // m + (1 if t < 64 % m else 0) for t in range(m)]
    spare = radius + 1 - m  # the radii must add up to at least this
    radii = [spare // m + (1 if t >= m - spare % m else 0) for t in range(m)]  # extra on narrower ones
    shifts = np.concatenate([[0], np.cumsum(widths)[:-1]])
    return [Substring(int(s), w, max(0, r)) for s, w, r in zip(shifts, widths, radii, strict=True)]


def hamming_pairs(
    hashes: np.ndarray, max_distance: int, method: str = "auto"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) of 64-bit hashes within ``max_distance`` bits: (i, j, distance), sorted.

    ``method``: ``auto`` (multi-index hashing above ``BRUTE_FORCE_LIMIT`` when it is cheaper),
    ``brute`` or ``multi-index``.
    """
    hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
    n = len(hashes)
    empty = np.zeros(0, dtype=np.int64)
    if n < 2 or max_distance < 0:
        return empty, empty, empty
    substrings = plan(n, max_distance) if method != "brute" else None
    if method == "multi-index" and substrings is None:
        substrings = split(min(max_distance + 1, 8), max_distance)
    if substrings is None or (method == "auto" and n < BRUTE_FORCE_LIMIT):
        return _brute_force(hashes, max_distance)
    return _multi_index(hashes, max_distance, substrings)


def _brute_force(hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    codes = np.ascontiguousarray(hashes.astype(">u8").view(np.uint8).reshape(-1, 8))
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    limits, distances, neighbours = index.range_search(codes, max_distance + 1)  # radius is exclusive
    rows = np.repeat(np.arange(len(hashes)), np.diff(limits).astype(np.int64))
    upper = rows < neighbours
    return _sorted(rows[upper], neighbours[upper].astype(np.int64), distances[upper].astype(np.int64))


def _multi_index(
    hashes: np.ndarray, max_distance: int, substrings: list[Substring]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(hashes)
    found_i, found_j = [], []
    for substring in substrings:
        keys = (hashes >> np.uint64(substring.shift)) & np.uint64((1 << substring.bits) - 1)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        dense = substring.bits <= _DENSE_BITS
        if dense:
            starts = np.zeros((1 << substring.bits) + 1, dtype=np.int64)
            np.cumsum(np.bincount(keys.astype(np.int64), minlength=1 << substring.bits), out=starts[1:])
        for mask in _masks(substring.bits, substring.radius):
            # Two buckets ``mask`` apart differ in the mask's top bit: probe only from the one
            # where it is 0, so each pair of buckets is visited once.
            rows = np.arange(n) if mask == 0 else np.flatnonzero(keys & np.uint64(1 << (mask.bit_length() - 1)) == 0)
            probe = keys[rows] ^ np.uint64(mask)
            if dense:
                low, high = starts[probe.astype(np.int64)], starts[probe.astype(np.int64) + 1]
            else:
                low = np.searchsorted(sorted_keys, probe, side="left")
                high = np.searchsorted(sorted_keys, probe, side="right")
            sizes = high - low
            total = int(sizes.sum())
            if total == 0:
                continue
            queries = np.repeat(rows, sizes)
            offsets = np.arange(total) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            others = order[np.repeat(low, sizes) + offsets]
            if mask == 0:  # the same bucket: each pair once
                queries, others = queries[queries < others], others[queries < others]
            close = np.bitwise_count(hashes[queries] ^ hashes[others]) <= max_distance
            found_i.append(queries[close])
            found_j.append(others[close])
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    first, second = np.concatenate(found_i).astype(np.int64), np.concatenate(found_j).astype(np.int64)
    pairs = np.unique(np.minimum(first, second) * n + np.maximum(first, second))
    i, j = pairs // n, pairs % n
    return i, j, np.bitwise_count(hashes[i] ^ hashes[j]).astype(np.int64)


def _masks(bits: int, radius: int) -> list[int]:
    """Every mask of ``bits`` bits with at most ``radius`` bits set."""
    return [sum(1 << b for b in flipped) for r in range(radius + 1) for flipped in combinations(range(bits), r)]


def _sorted(i: np.ndarray, j: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.lexsort((j, i))
    return i[order], j[order], d[order]
