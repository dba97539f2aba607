from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

import curate.dedup.semantic as semantic
from curate.dedup.semantic import default_n_clusters, semantic_duplicates, semantic_pairs


def _unit(x: NDArray[np.float64]) -> NDArray[np.float64]:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _planted(
    n: int, d: int, n_copies: int, sigma: float, seed: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """n random unit rows plus n_copies noisy copies of distinct rows; returns (x, sources)."""
    rng = np.random.default_rng(seed)
    base = _unit(rng.standard_normal((n, d)))
    src = rng.choice(n, n_copies, replace=False).astype(np.int64)
    copies = _unit(base[src] + sigma * rng.standard_normal((n_copies, d)))
    assert (base[src] * copies).sum(axis=1).min() >= 0.97
    return np.vstack([base, copies]).astype(np.float32), src


def _brute_force(x: NDArray[np.float32], threshold: float) -> set[tuple[int, int]]:
    u = _unit(x.astype(np.float64))
    i, j = np.nonzero(np.triu(u @ u.T, k=1) >= threshold)
    return set(zip(i.tolist(), j.tolist(), strict=True))


def test_planted_copies_found_exactly() -> None:
    x, src = _planted(2000, 64, 100, sigma=0.01, seed=3)
    i, j, sims = semantic_pairs(x, 0.95)
    want = {(int(s), 2000 + t) for t, s in enumerate(src)}
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == want  # precision and recall 1.0
    assert len(i) == len(want) and sims.dtype == np.float32 and (sims >= 0.97).all()
    ids = semantic_duplicates(x)
    expected = np.arange(len(x))
    expected[2000:] = src
    assert ids.tolist() == expected.tolist()


def test_matches_brute_force_with_groups() -> None:
    rng = np.random.default_rng(7)
    base = _unit(rng.standard_normal((400, 32)))
    heads = rng.choice(400, 40, replace=False)
    # Groups of three (head + two tight copies) give chains and several pairs per group.
    copies = _unit(np.repeat(base[heads], 2, axis=0) + 0.003 * rng.standard_normal((80, 32)))
    x = np.vstack([base, copies]).astype(np.float32)[rng.permutation(480)]
    truth = _brute_force(x, 0.9)
    assert len(truth) == 120
    i, j, sims = semantic_pairs(x, 0.9, n_clusters=8)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == truth
    u = _unit(x.astype(np.float64))
    np.testing.assert_allclose(sims, (u[i] * u[j]).sum(axis=1), atol=1e-5)
    assert (i < j).all() and np.lexsort((j, i)).tolist() == list(range(len(i)))


def test_single_cluster_blocks_match_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((300, 16)) * rng.uniform(0.1, 10, (300, 1))).astype(np.float32)
    monkeypatch.setattr(semantic, "_BLOCK_ELEMENTS", 7 * 300)  # blocks of 7 rows
    i, j, _ = semantic_pairs(x, 0.4, n_clusters=1)
    truth = _brute_force(x, 0.4)
    assert len(truth) > 100
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == truth and len(i) == len(truth)


def test_zero_rows_never_duplicates() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    zero = [0, 3, 49]
    x[zero] = 0.0
    i, j, _ = semantic_pairs(x, -1.0, n_clusters=1)  # every other pair qualifies
    assert not set(zero) & (set(i.tolist()) | set(j.tolist()))
    assert len(i) == 47 * 46 // 2
    ids = semantic_duplicates(x, threshold=-1.0, n_clusters=1)
    assert ids[zero].tolist() == zero and set(ids.tolist()) == {*zero, 1}
    assert semantic_duplicates(np.zeros((4, 8))).tolist() == [0, 1, 2, 3]
    assert semantic_duplicates(np.zeros((3, 0))).tolist() == [0, 1, 2]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_names_row(bad: float) -> None:
    x = np.ones((10, 4))
    x[7, 2] = bad
    with pytest.raises(ValueError, match=r"row 7\b"):
        semantic_duplicates(x)


def test_small_and_invalid_inputs() -> None:
    assert semantic_duplicates(np.zeros((0, 8), dtype=np.float32)).size == 0
    i, j, s = semantic_pairs(np.zeros((0, 8)), 0.5)
    assert i.dtype == j.dtype == np.int64 and s.dtype == np.float32 and i.size == s.size == 0
    assert semantic_duplicates(np.ones((1, 8))).tolist() == [0]
    x = np.array([[1, 0], [2, 0.01], [0, 1], [1, 0]], dtype=np.float32)
    clipped = semantic_duplicates(x, n_clusters=100)  # more clusters than rows: k = n
    assert clipped.tolist() == semantic_duplicates(x, n_clusters=4).tolist()
    assert semantic_duplicates(x, n_clusters=1).tolist() == [0, 0, 2, 0]
    for kwargs in ({"threshold": 1.5}, {"threshold": float("nan")}, {"n_clusters": 0}):
        with pytest.raises(ValueError):
            semantic_duplicates(x, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2-D"):
        semantic_duplicates(np.ones(5))


def test_deterministic_and_threads_restored() -> None:
    import faiss

    threads = faiss.omp_get_max_threads()
    x, _ = _planted(3000, 32, 200, sigma=0.01, seed=5)
    assert default_n_clusters(len(x)) > 1
    a = semantic_pairs(x, 0.8, seed=11)
    b = semantic_pairs(x.copy(), 0.8, seed=11)
    for p, q in zip(a, b, strict=True):
        assert np.array_equal(p, q)
    assert faiss.omp_get_max_threads() == threads


def test_default_n_clusters() -> None:
    assert [default_n_clusters(n) for n in (0, 1, 38, 1000, 100_000)] == [1, 1, 1, 25, 316]
    assert default_n_clusters(10**8) == 1024


def test_second_probe_recovers_copies_split_by_a_cluster_boundary() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    src = rng.choice(3000, size=1000, replace=False)
    noisy = x[src] + rng.standard_normal((1000, 32)).astype(np.float32) * 0.04
    x[3000:] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    sims = x @ x.T
    bi, bj = np.nonzero(np.triu(sims >= 0.95, 1))
    brute = set(zip(bi.tolist(), bj.tolist(), strict=True))
    one = set(zip(*semantic_pairs(x, 0.95, n_clusters=64, probes=1)[:2], strict=True))
    two = set(zip(*semantic_pairs(x, 0.95, n_clusters=64, probes=2)[:2], strict=True))
    assert one <= two <= brute
    assert len(brute - one) >= 10  # plain SemDeDup misses boundary-split copies here...
    assert len(brute - two) <= len(brute - one) // 3  # ...and the second probe finds most
    with pytest.raises(ValueError, match="probes"):
        semantic_pairs(x, 0.95, probes=0)
