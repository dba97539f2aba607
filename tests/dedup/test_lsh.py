"""Exact Hamming search: multi-index hashing must find exactly what brute force finds."""

from __future__ import annotations

import numpy as np
import pytest

import curate
from curate.dedup import lsh
from curate.dedup.lsh import hamming_pairs, near_duplicates, plan_search


def _brute(h: np.ndarray, k: int) -> set[tuple[int, int]]:
    d = np.bitwise_count(h[:, None] ^ h[None, :])
    i, j = np.nonzero(np.triu(d <= k, 1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


def _planted(n: int, k: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    src = rng.integers(0, n // 2, size=n // 4)
    for t, s in enumerate(src):  # copies at every distance up to k + 2, some past the radius
        flips = rng.choice(64, size=t % (k + 3), replace=False)
        h[n // 2 + t] = h[s] ^ np.bitwise_or.reduce(np.uint64(1) << flips.astype(np.uint64))
    h[-3:] = h[0]  # identical hashes
    return h


@pytest.mark.parametrize(("k", "bands"), [(0, 3), (3, 4), (6, 3), (8, 3), (9, 5), (12, 4)])
def test_multi_index_search_equals_brute_force(
    k: int, bands: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = _planted(3000, k, seed=k)
    radius = k // bands
    monkeypatch.setattr(lsh, "plan_search", lambda n, d: lsh.SearchPlan(bands, radius, 0.0))
    monkeypatch.setattr(lsh, "_BLOCK_PROBES", 5000)  # many small blocks, as at scale
    i, j = hamming_pairs(h, k)
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == _brute(h, k)
    assert np.all(i < j) and len(set(zip(i.tolist(), j.tolist(), strict=True))) == i.size


def test_the_planner_picks_brute_force_small_and_bands_large() -> None:
    assert plan_search(50, 8).brute
    big = plan_search(1_000_000, 8)
    assert not big.brute and big.bands * (big.radius + 1) > 8  # pigeonhole holds
    with pytest.raises(ValueError, match="max_distance"):
        plan_search(10, 64)


def test_near_duplicates_clusters_and_verify_veto() -> None:
    h = np.array([0b0, 0b11, 0b1111 << 20, 0b111, 0b111 << 61], dtype=np.uint64)
    assert curate.near_duplicates(h, max_distance=2).tolist() == [0, 0, 2, 0, 4]
    assert near_duplicates(h, max_distance=0).tolist() == [0, 1, 2, 3, 4]
    veto = near_duplicates(h, 2, verify=lambda i, j: (i != 0) & (j != 0))
    assert veto.tolist() == [0, 1, 2, 1, 4]  # 0–1 vetoed, 1–3 kept
    assert near_duplicates(np.zeros(0, np.uint64)).size == 0


def test_the_search_runs_on_a_dask_cluster_with_the_same_result(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from distributed import Client, LocalCluster

    h = _planted(4000, 8, seed=5)
    local = hamming_pairs(h, 8)
    monkeypatch.setattr(lsh, "_BLOCK_PROBES", 20000)
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as lc,
        Client(lc) as client,
    ):
        remote = hamming_pairs(h, 8, client=client)
        small = hamming_pairs(h[:40], 8, client=client)  # brute-force plan
    assert np.array_equal(local[0], remote[0]) and np.array_equal(local[1], remote[1])
    assert set(zip(*small, strict=True)) == _brute(h[:40], 8)
