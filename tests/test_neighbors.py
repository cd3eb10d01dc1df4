"""core.neighbors (exact k-NN by cosine) and core.hamming (pHash pairs within a Hamming radius, by
faiss brute force or multi-index hashing), each checked against a brute-force numpy answer."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import unit_rows

from core.hamming import hamming_pairs, plan, split
from core.neighbors import knn

# --- knn ----------------------------------------------------------------------------------------


def brute_force_knn(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    similarity = vectors.astype(np.float64) @ vectors.astype(np.float64).T
    np.fill_diagonal(similarity, -np.inf)
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(similarity, order, axis=1)


@pytest.mark.parametrize(("n", "dim", "k"), [(200, 16, 7), (300, 64, 10), (50, 3, 1)])
def test_knn_matches_brute_force_on_random_data(n: int, dim: int, k: int) -> None:
    vectors = unit_rows(np.random.default_rng(n + dim).normal(size=(n, dim)))
    indices, similarities = knn(vectors, k)
    expected_idx, expected_sim = brute_force_knn(vectors, k)
    assert indices.shape == similarities.shape == (n, k)
    assert indices.dtype == np.int64
    np.testing.assert_array_equal(indices, expected_idx)
    np.testing.assert_allclose(similarities, expected_sim, atol=1e-5)


def test_knn_never_returns_the_row_itself_and_sorts_descending() -> None:
    vectors = unit_rows(np.random.default_rng(1).normal(size=(120, 8)))
    indices, similarities = knn(vectors, 12)
    rows = np.arange(len(vectors))[:, None]
    assert not (indices == rows).any()
    assert (np.diff(similarities, axis=1) <= 1e-7).all()
    assert all(len(set(row)) == 12 for row in indices)  # k distinct neighbours


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_knn_with_exact_duplicate_rows_never_returns_itself(k: int) -> None:
    rng = np.random.default_rng(7)
    base = unit_rows(rng.normal(size=(1, 16)))
    others = unit_rows(rng.normal(size=(20, 16)))
    vectors = np.vstack([np.repeat(base, 6, axis=0), others, np.repeat(base, 3, axis=0)])  # 9 copies
    copies = [*range(6), 26, 27, 28]
    indices, similarities = knn(vectors, k)
    rows = np.arange(len(vectors))[:, None]
    assert not (indices == rows).any()
    assert all(len(set(row)) == k for row in indices)
    for row in copies:  # the other copies (similarity 1) come first
        wanted = min(k, len(copies) - 1)
        assert set(indices[row, :wanted]) <= set(copies) - {row}
        np.testing.assert_allclose(similarities[row, :wanted], 1.0, atol=1e-5)
    assert (np.diff(similarities, axis=1) <= 1e-6).all()


def test_knn_when_every_row_is_the_same() -> None:
    vectors = np.repeat(unit_rows(np.ones((1, 4))), 5, axis=0)
    for k in (1, 2, 4):
        indices, similarities = knn(vectors, k)
        for row in range(5):
            assert row not in indices[row]
            assert len(set(indices[row])) == k
        np.testing.assert_allclose(similarities, 1.0, atol=1e-6)


@pytest.mark.parametrize(("n", "k"), [(1, 3), (3, 5), (4, 4), (5, 4)])
def test_knn_pads_with_minus_one_and_minus_inf_when_n_is_at_most_k(n: int, k: int) -> None:
    vectors = unit_rows(np.random.default_rng(n).normal(size=(n, 6)))
    indices, similarities = knn(vectors, k)
    assert indices.shape == similarities.shape == (n, k)
    found = min(k, n - 1)
    expected_idx, expected_sim = brute_force_knn(vectors, found)
    np.testing.assert_array_equal(indices[:, :found], expected_idx)
    np.testing.assert_allclose(similarities[:, :found], expected_sim, atol=1e-5)
    assert (indices[:, found:] == -1).all()
    assert np.isneginf(similarities[:, found:]).all()


def test_knn_of_nothing() -> None:
    indices, similarities = knn(np.zeros((0, 8), np.float32), 3)
    assert indices.shape == similarities.shape == (0, 3)


# --- hamming_pairs ------------------------------------------------------------------------------


def brute_force_pairs(hashes: np.ndarray, radius: int) -> set[tuple[int, int, int]]:
    distance = np.bitwise_count(hashes[:, None] ^ hashes[None, :]).astype(np.int64)
    i, j = np.nonzero(np.triu(distance <= radius, k=1))
    return {(int(a), int(b), int(distance[a, b])) for a, b in zip(i, j, strict=True)}


def flip(value: int, bits: list[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


def planted_hashes(seed: int = 0) -> np.ndarray:
    """~500 random 64-bit hashes (top bit included), with close copies planted at 0..12 bits."""
    rng = np.random.default_rng(seed)
    values = [int(v) for v in rng.integers(0, 2**64, size=440, dtype=np.uint64)]
    for n_bits in [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 9, 10, 12] * 4:
        source = values[int(rng.integers(0, len(values)))]
        values.append(flip(source, [int(b) for b in rng.choice(64, size=n_bits, replace=False)]))
    order = rng.permutation(len(values))
    return np.array([values[i] for i in order], dtype=np.uint64)


METHODS = ["brute", "multi-index"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("radius", [0, 3, 8, 12])
def test_hamming_pairs_match_brute_force_on_planted_hashes(radius: int, method: str) -> None:
    hashes = planted_hashes()
    assert len(hashes) == 500
    i, j, distance = hamming_pairs(hashes, radius, method)
    found = list(zip(i.tolist(), j.tolist(), distance.tolist(), strict=True))
    expected = brute_force_pairs(hashes, radius)
    assert len(found) == len(set(found))  # each pair once
    assert set(found) == expected
    assert all(a < b for a, b, _ in found)
    if radius >= 8:
        assert len(expected) >= 40  # the planted pairs are in there


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("radius", [0, 1, 6, 8, 20, 63])
def test_hamming_pairs_radius_is_inclusive(radius: int, method: str) -> None:
    base = 0x8000_0000_0000_0001  # high bit set: still one unsigned 64-bit value
    at_radius = flip(base, list(range(1, 1 + radius)))
    beyond = flip(base, list(range(64 - radius - 1, 64)))  # radius + 1 bits
    hashes = np.array([base, at_radius, beyond], dtype=np.uint64)
    assert (base ^ at_radius).bit_count() == radius and (base ^ beyond).bit_count() == radius + 1
    i, j, distance = hamming_pairs(hashes, radius, method)
    found = set(zip(i.tolist(), j.tolist(), distance.tolist(), strict=True))
    assert (0, 1, radius) in found
    assert not any({a, b} == {0, 2} for a, b, _ in found)
    assert found == brute_force_pairs(hashes, radius)


@pytest.mark.parametrize("method", METHODS)
def test_hamming_pairs_of_fewer_than_two_hashes(method: str) -> None:
    for hashes in (np.zeros(0, np.uint64), np.array([5], np.uint64)):
        i, j, distance = hamming_pairs(hashes, 8, method)
        assert len(i) == len(j) == len(distance) == 0


@pytest.mark.parametrize("method", METHODS)
def test_hamming_pairs_of_identical_hashes_are_all_pairs_at_distance_zero(method: str) -> None:
    hashes = np.array([0xDEADBEEF] * 4 + [0xFFFF_FFFF_FFFF_FFFF], dtype=np.uint64)
    i, j, distance = hamming_pairs(hashes, 0, method)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == {(a, b) for a in range(4) for b in range(a + 1, 4)}
    assert (distance == 0).all()


@pytest.mark.parametrize("radius", [2, 8, 12])
def test_multi_index_equals_brute_force_on_clustered_hashes(radius: int) -> None:
    """Many hashes sharing substrings (real pHashes are not uniform): buckets are crowded."""
    rng = np.random.default_rng(radius)
    centres = rng.integers(0, 2**64, size=30, dtype=np.uint64)
    noise = np.zeros(3000, dtype=np.uint64)
    for _ in range(3):  # up to 3 random bit flips per hash
        noise ^= np.uint64(1) << rng.integers(0, 64, size=3000).astype(np.uint64)
    hashes = centres[rng.integers(0, 30, size=3000)] ^ noise
    fast = hamming_pairs(hashes, radius, "multi-index")
    slow = hamming_pairs(hashes, radius, "brute")
    assert len(slow[0]) > (1000 if radius >= 8 else 100)
    for got, expected in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("radius", range(21))
def test_every_split_is_exact_by_the_pigeonhole_principle(radius: int) -> None:
    for substrings in (plan(1_000_000, radius), split(min(radius + 1, 8), radius)):
        if substrings is None:  # brute force is cheaper at this radius
            continue
        assert sum(s.bits for s in substrings) == 64
        assert [s.shift for s in substrings] == list(np.cumsum([0] + [s.bits for s in substrings[:-1]]))
        assert sum(s.radius + 1 for s in substrings) > radius


def test_a_million_hashes_at_the_default_radius_use_multi_index_hashing() -> None:
    substrings = plan(1_000_000, 8)
    assert substrings is not None and len(substrings) >= 2
