"""Semantic duplicates (SemDeDup): k-means on embeddings, exact cosine pairs within clusters.

Comparing every pair is quadratic, so rows are first clustered with spherical k-means and
only rows sharing a cluster are compared. Plain SemDeDup misses copies split across a
cluster boundary (~3 % of planted copies on random 512-d data); comparing each cluster also
with the rows that have it as their second-nearest centroid recovers them for about twice
the pair-finding cost.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from numpy.typing import NDArray

from curate.dedup.clusters import components

__all__ = [
    "block_pairs",
    "cluster_members",
    "default_n_clusters",
    "nearest_centroids",
    "normalised",
    "semantic_duplicates",
    "semantic_pairs",
    "train_centroids",
]

_BLOCK_ELEMENTS = 1 << 24  # similarity block cap: 64 MiB of float32 per block
_MAX_BLOCK_ROWS = 4096
_MIN_POINTS_PER_CENTROID = 39  # below this faiss warns that k-means is poorly trained


def default_n_clusters(n: int) -> int:
    """About sqrt(n) clusters, in [1, 1024], and at least 39 points per centroid.

    sqrt(n) balances k-means cost (grows with k) against the within-cluster comparisons
    (about n**2 / k); 100k rows -> 316 clusters.
    """
    return max(1, min(math.isqrt(n), 1024, n // _MIN_POINTS_PER_CENTROID))


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextmanager
def _faiss_threads() -> Iterator[None]:
    """Cap faiss's OpenMP threads at the CPUs this process may use, restoring them after."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, min(before, _usable_cpus())))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def normalised(embeddings: NDArray[np.floating]) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Unit rows (float32 copy) and a mask of rows that had any non-zero value."""
    x = np.array(embeddings, dtype=np.float32, order="C", copy=True)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (rows, dim), got shape {x.shape}")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise ValueError(f"embeddings row {row} has a non-finite value (as float32)")
    # Scale by the largest |value| first so squaring cannot overflow or underflow float32.
    scale = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(len(x), np.float32)
    valid = scale > 0
    x /= np.where(valid, scale, 1)[:, None]
    x /= np.where(valid, np.linalg.norm(x, axis=1), 1)[:, None]
    return x, valid


def train_centroids(x: NDArray[np.float32], k: int, seed: int, niter: int) -> NDArray[np.float32]:
    """Spherical k-means centres of unit rows `x` (faiss subsamples past 256 rows per centre);
    one cluster needs no training: its centre is never searched."""
    if k == 1:
        return np.zeros((1, x.shape[1]), dtype=np.float32)
    import faiss

    with _faiss_threads():
        km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, spherical=True)
        km.train(x)
    return np.asarray(km.centroids, dtype=np.float32)


def nearest_centroids(
    x: NDArray[np.float32], centroids: NDArray[np.float32], probes: int
) -> NDArray[np.int64]:
    """(n, probes) nearest centres per unit row by inner product, nearest first: what a
    spherical `faiss.Kmeans` index answers, so rows can be assigned partition by partition."""
    k = len(centroids)
    if k == 1:
        return np.zeros((len(x), 1), dtype=np.int64)
    import faiss

    with _faiss_threads():
        index = faiss.IndexFlatIP(centroids.shape[1])
        index.add(np.ascontiguousarray(centroids, dtype=np.float32))
        _, labels = index.search(np.ascontiguousarray(x, dtype=np.float32), min(probes, k))
    return np.asarray(labels, dtype=np.int64)


def _cluster_labels(
    x: NDArray[np.float32], k: int, seed: int, niter: int, probes: int
) -> NDArray[np.int64]:
    """(n, probes) nearest centroids per row, nearest first."""
    return nearest_centroids(x, train_centroids(x, k, seed, niter), probes)


def block_pairs(
    xa: NDArray[np.float32], xb: NDArray[np.float32] | None, threshold: float
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
    """(a, b) with cosine >= threshold, a from `xa`, b from `xb`, a bounded block of rows at
    a time; with `xb` None, pairs a < b within `xa` (only the upper triangle is computed)."""
    within = xb is None
    other = xa if xb is None else xb
    step = max(1, min(_MAX_BLOCK_ROWS, _BLOCK_ELEMENTS // max(1, len(other))))
    out_a, out_b, out_s = [], [], []
    for start in range(0, len(xa), step):
        first = start if within else 0  # within: only columns at or right of the block
        sims = xa[start : start + step] @ other[first:].T
        r, c = np.nonzero(sims >= threshold)
        if within:
            keep = c > r  # the block's diagonal starts at column 0
            r, c = r[keep], c[keep]
        out_a.append(r + start)
        out_b.append(c + first)
        out_s.append(sims[r, c])
    return (
        np.concatenate(out_a).astype(np.int64),
        np.concatenate(out_b).astype(np.int64),
        np.concatenate(out_s).astype(np.float32),
    )


def semantic_pairs(
    embeddings: NDArray[np.floating],
    threshold: float,
    n_clusters: int | None = None,
    seed: int = 0,
    niter: int = 20,
    probes: int = 2,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
    """Pairs (i < j, sorted by (i, j)) whose cosine is >= threshold and who share a cluster.

    With `probes` > 1 each row's own cluster is also compared with the rows that have it
    among their `probes` nearest centroids, so copies split by a cluster boundary are
    still found (probes=1 is plain SemDeDup). Rows that are all zero have no direction and
    are never paired. The same inputs and seed give the same output. `n_clusters` defaults
    to `default_n_clusters(n)`.
    """
    if probes < 1:
        raise ValueError(f"probes must be >= 1, got {probes}")
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [-1, 1], got {threshold}")
    if n_clusters is not None and n_clusters < 1:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    x, valid = normalised(embeddings)
    rows = np.flatnonzero(valid)
    empty = np.zeros(0, dtype=np.int64)
    if rows.size < 2:
        return empty, empty.copy(), np.zeros(0, dtype=np.float32)
    if rows.size < len(x):
        x = x[rows]
    k = min(n_clusters or default_n_clusters(rows.size), rows.size)
    labels = _cluster_labels(x, k, seed, niter, probes)
    out_i, out_j, out_s = [empty], [empty], [np.zeros(0, dtype=np.float32)]
    for members, extra in cluster_members(labels, k):
        if members.size > 1:
            a, b, s = block_pairs(x[members], None, threshold)
            out_i.append(rows[members[a]])
            out_j.append(rows[members[b]])
            out_s.append(s)
        if members.size and extra.size:
            a, b, s = block_pairs(x[members], x[extra], threshold)
            lo, hi = np.minimum(members[a], extra[b]), np.maximum(members[a], extra[b])
            out_i.append(rows[lo])
            out_j.append(rows[hi])
            out_s.append(s)
    i, j, s = np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s)
    n = len(x)
    _, first = np.unique(i * n + j, return_index=True)  # a pair may meet in two clusters
    i, j, s = i[first], j[first], s[first]
    by = np.lexsort((j, i))
    return i[by], j[by], s[by]


def cluster_members(
    labels: NDArray[np.int64], k: int
) -> Iterator[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """Per cluster: rows whose nearest centroid it is, and rows for which it is a later one."""
    rows = np.arange(len(labels), dtype=np.int64)
    own = np.argsort(labels[:, 0], kind="stable")
    own_bounds = np.searchsorted(labels[own, 0], np.arange(k + 1))
    rest_rows = np.repeat(rows, labels.shape[1] - 1)
    rest_labels = labels[:, 1:].ravel()
    rest = np.argsort(rest_labels, kind="stable")
    rest_bounds = np.searchsorted(rest_labels[rest], np.arange(k + 1))
    for c in range(k):
        members = own[own_bounds[c] : own_bounds[c + 1]]
        extra = rest_rows[rest[rest_bounds[c] : rest_bounds[c + 1]]]
        yield members, extra


def semantic_duplicates(
    embeddings: NDArray[np.floating],
    threshold: float = 0.95,
    n_clusters: int | None = None,
    seed: int = 0,
    probes: int = 2,
) -> NDArray[np.int64]:
    """Cluster id per row: the smallest row index among its transitive semantic duplicates."""
    i, j, _ = semantic_pairs(embeddings, threshold, n_clusters, seed, probes=probes)
    return components(np.shape(embeddings)[0], i, j)
