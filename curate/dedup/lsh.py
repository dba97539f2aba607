"""Exact Hamming-radius search over 64-bit hashes by multi-index hashing, never all pairs.

Split the 64 bits into m bands. If two hashes differ in at most k bits, some band differs in at
most r = k // m bits (pigeonhole), so probing each band's table at every value within radius r
finds every pair, and each candidate is then checked on all 64 bits. m and r are chosen per call
from the expected work; bands interleave bits so correlated neighbouring bits spread out. Work
splits into independent (band, query block) tasks that run on threads or a Dask cluster.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from curate.dedup.clusters import components

__all__ = ["MAX_TABLE_BITS", "hamming_pairs", "near_duplicates", "plan_search"]

MAX_TABLE_BITS = 24  # a band's direct-address table has 2**bits + 1 offsets
_BLOCK_PROBES = 1 << 22  # probes per task, bounding each task's memory
_BRUTE_BLOCK = 2048

Pairs = tuple[NDArray[np.int64], NDArray[np.int64]]
BandIndex = tuple[NDArray[np.int64], NDArray[Any], NDArray[Any], NDArray[np.int64]]


@dataclass(frozen=True)
class SearchPlan:
    """m bands probed at radius r, or brute force when that is cheaper (small inputs)."""

    bands: int
    radius: int
    cost: float

    @property
    def brute(self) -> bool:
        return self.bands == 0


def _ball(bits: int, r: int) -> int:
    return sum(math.comb(bits, i) for i in range(r + 1))


def _band_bits(m: int) -> list[int]:
    return [64 // m + (1 if b < 64 % m else 0) for b in range(m)]


def plan_search(n: int, max_distance: int) -> SearchPlan:
    """The cheapest exact plan: probes plus candidate checks, against n²/2 brute force."""
    if not 0 <= max_distance < 64:
        raise ValueError(f"max_distance must be in [0, 63], got {max_distance}")
    best = SearchPlan(0, 0, n * n / 2.0)
    for m in range(max(3, -(-64 // MAX_TABLE_BITS)), 17):
        r = max_distance // m
        sizes = _band_bits(m)
        probes = sum(_ball(b, r) for b in sizes)
        candidates = (n * n / 2.0) * sum(_ball(b, r) / 2.0**b for b in sizes)
        cost = 4.0 * n * probes + candidates + 2.0 * n * m  # a probe costs ~4 checks
        if cost < best.cost:
            best = SearchPlan(m, r, cost)
    return best


def _band_values(h: NDArray[np.uint64], band: int, m: int) -> NDArray[np.int64]:
    """Bits band, band+m, band+2m, ... of each hash, packed into an integer."""
    out = np.zeros(h.size, dtype=np.uint64)
    for t, bit in enumerate(range(band, 64, m)):
        out |= ((h >> np.uint64(bit)) & np.uint64(1)) << np.uint64(t)
    return out.astype(np.int64)


def _masks(bits: int, r: int) -> NDArray[np.int64]:
    out = [0]
    for k in range(1, r + 1):
        out += [sum(1 << i for i in c) for c in itertools.combinations(range(bits), k)]
    return np.array(out, dtype=np.int64)


def _probe_block(
    h: NDArray[np.uint64],
    vals: NDArray[np.int64],
    order: NDArray[Any],
    starts: NDArray[Any],
    masks: NDArray[np.int64],
    lo: int,
    hi: int,
    k: int,
) -> Pairs:
    """Pairs (i, j), lo <= i < hi, i < j, within distance k, found through one band."""
    q = np.arange(lo, hi, dtype=np.int64)
    probes = (vals[lo:hi, None] ^ masks[None, :]).ravel()
    first = starts[probes].astype(np.int64)
    counts = starts[probes + 1] - first
    keep = counts > 0
    first, counts = first[keep], counts[keep]
    qi = np.repeat(np.repeat(q, masks.size)[keep], counts)
    offsets = np.arange(qi.size, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    j = order[np.repeat(first, counts) + offsets].astype(np.int64)
    upper = j > qi
    qi, j = qi[upper], j[upper]
    close = np.bitwise_count(h[qi] ^ h[j]) <= k
    return qi[close], j[close]


def _brute_block(h: NDArray[np.uint64], lo: int, hi: int, k: int) -> Pairs:
    d = np.bitwise_count(h[lo:hi, None] ^ h[None, :])
    i, j = np.nonzero(d <= k)
    i = i.astype(np.int64) + lo
    j = j.astype(np.int64)
    upper = j > i
    return i[upper], j[upper]


def _band_index(h: NDArray[np.uint64], band: int, m: int, radius: int) -> BandIndex:
    """One band's direct-address table: values, row order by value, offsets, probe masks."""
    bits = _band_bits(m)[band]
    vals = _band_values(h, band, m)
    index = np.int32 if h.size < 2**31 else np.int64  # half the cache misses of int64
    order = np.argsort(vals, kind="stable").astype(index)
    starts = np.zeros((1 << bits) + 1, dtype=index)
    np.cumsum(np.bincount(vals, minlength=1 << bits), out=starts[1:])
    return vals, order, starts, _masks(bits, radius)


def _probe_indexed(h: NDArray[np.uint64], idx: BandIndex, lo: int, hi: int, k: int) -> Pairs:
    return _probe_block(h, *idx, lo, hi, k)


def _blocks(n: int, m: int, radius: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """(band, [(lo, hi), ...]): query blocks sized so each holds ~_BLOCK_PROBES of work."""
    out = []
    for band, bits in enumerate(_band_bits(m)):
        n_masks = _ball(bits, radius)
        expected = n_masks * (1 + n / 2.0**bits)  # probes + candidates per query
        step = max(1, int(_BLOCK_PROBES // expected))
        out.append((band, [(lo, min(n, lo + step)) for lo in range(0, n, step)]))
    return out


def _tasks(h: NDArray[np.uint64], k: int, plan: SearchPlan) -> list[Callable[[], Pairs]]:
    n = h.size
    if plan.brute:
        return [
            partial(_brute_block, h, lo, min(n, lo + _BRUTE_BLOCK), k)
            for lo in range(0, n, _BRUTE_BLOCK)
        ]
    tasks: list[Callable[[], Pairs]] = []
    for band, ranges in _blocks(n, plan.bands, plan.radius):
        idx = _band_index(h, band, plan.bands, plan.radius)
        tasks += [partial(_probe_indexed, h, idx, lo, hi, k) for lo, hi in ranges]
    return tasks


def _on_dask(client: Any, h: NDArray[np.uint64], k: int, plan: SearchPlan) -> list[Pairs]:
    """The same tasks on a Dask cluster, through the engine's runner (retries, stall
    reports): hashes broadcast once, each band's table built on a worker and shipped to the
    workers probing it."""
    from curate.engine.runner import run_calls

    n = h.size
    hf = client.scatter(h, broadcast=True, hash=False)
    calls: list[tuple[str, Callable[..., Pairs], tuple[Any, ...]]] = []
    if plan.brute:
        for lo in range(0, n, _BRUTE_BLOCK):
            calls.append((f"brute-{lo}", _brute_block, (hf, lo, min(n, lo + _BRUTE_BLOCK), k)))
    else:
        for band, ranges in _blocks(n, plan.bands, plan.radius):
            idx = client.submit(_band_index, hf, band, plan.bands, plan.radius, pure=False)
            for lo, hi in ranges:
                calls.append((f"band{band}-{lo}", _probe_indexed, (hf, idx, lo, hi, k)))
    found: list[Pairs] = run_calls(client, "hamming", calls)
    return found


def hamming_pairs(
    hashes: NDArray[Any], max_distance: int, workers: int | None = None, client: Any = None
) -> Pairs:
    """Every pair (i < j) of hashes within `max_distance` bits, sorted, each pair once.

    Runs on `workers` threads here, or on a Dask `client`'s cluster when one is given.
    """
    h = np.ascontiguousarray(hashes, dtype=np.uint64).ravel()
    plan = plan_search(h.size, max_distance)
    if client is not None and h.size:
        found = _on_dask(client, h, max_distance, plan)
    else:
        tasks = _tasks(h, max_distance, plan)
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            found = list(pool.map(lambda task: task(), tasks))
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    i = np.concatenate([f[0] for f in found])
    j = np.concatenate([f[1] for f in found])
    code = np.unique(i * h.size + j)  # a pair can surface in several bands
    return code // max(h.size, 1), code % max(h.size, 1)


def near_duplicates(
    hashes: NDArray[Any],
    max_distance: int = 8,
    verify: Callable[[NDArray[np.int64], NDArray[np.int64]], NDArray[np.bool_]] | None = None,
    workers: int | None = None,
    client: Any = None,
) -> NDArray[np.int64]:
    """Cluster id per hash (smallest member index); hashes within `max_distance` bits join.

    `verify(i, j)` may veto candidate pairs (e.g. a colour check) before they are joined;
    with a Dask `client` the search runs on its cluster.
    """
    h = np.asarray(hashes, dtype=np.uint64).ravel()
    i, j = hamming_pairs(h, max_distance, workers, client)
    if verify is not None and i.size:
        ok = np.asarray(verify(i, j), dtype=bool)
        i, j = i[ok], j[ok]
    return components(h.size, i, j)
