"""Thumbnails and embeddings read where they are stored, by the workers that need them.

The dedup task holds only what the searches need (hashes, sizes, scores, cluster ids): a
thumbnail is 1.7 kB and an embedding 2 kB per sample, 170 GB and 200 GB at 100M. Candidate
pairs are verified in blocks by tasks that read the `thumb` column of the partitions the
block touches; semantic dedup assigns clusters partition by partition and compares each
k-means cluster in a task that reads its members' embeddings. Rows are the dedup table's:
partition p's rows are `offsets[p]:offsets[p+1]`, in the order of its feature file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from curate.dedup.clusters import components
from curate.features.hashes import THUMB_SIZE, thumb_distance
from curate.io.store import load_npy, read_parquet
from curate.rundir import RunDir, RunRoot

__all__ = ["Locator", "StoredThumbs", "stored_semantic"]

PAIRS_PER_TASK = 8192
POINTS_PER_CENTROID = 256  # k-means trains on at most this many rows per centre (faiss's cap)
ROWS_PER_TASK = 16384  # embeddings a cluster or assignment task holds, at most about


@dataclass(frozen=True)
class Locator:
    """Which partition and which of its rows each table row is."""

    parts: tuple[str, ...]
    offsets: NDArray[np.int64]  # len(parts) + 1 cumulative row counts

    @classmethod
    def from_heights(cls, parts: Sequence[str], heights: Sequence[int]) -> Locator:
        offsets = np.zeros(len(heights) + 1, dtype=np.int64)
        np.cumsum(np.asarray(heights, dtype=np.int64), out=offsets[1:])
        return cls(tuple(parts), offsets)

    def locate(self, rows: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
        """(partition index, row within that partition) of each table row."""
        part = np.searchsorted(self.offsets, rows, side="right") - 1
        return part.astype(np.int64), (rows - self.offsets[part]).astype(np.int64)

    def groups(self, rows: NDArray[np.int64]) -> dict[int, NDArray[np.int64]]:
        """Sorted unique rows by partition index (table rows, not local ones)."""
        rows = np.unique(rows)
        part, _ = self.locate(rows)
        starts = np.flatnonzero(np.diff(part, prepend=-1))
        stops = [*starts[1:].tolist(), rows.size]
        return {int(part[a]): rows[a:b] for a, b in zip(starts.tolist(), stops, strict=True)}


def _run_all(client: Any, fn: Callable[..., Any], calls: list[tuple[Any, ...]]) -> list[Any]:
    """fn(*args) for each call: on the cluster through `client`, else here, in order."""
    if client is None:
        return [fn(*args) for args in calls]
    futures = [client.submit(fn, *args, pure=False) for args in calls]
    return list(client.gather(futures))


def _thumbs_of(run: RunDir, part: str, local: NDArray[np.int64]) -> NDArray[np.uint8]:
    column = read_parquet(run.features(part), columns=["thumb"])["thumb"]
    data = b"".join(column.gather(local).to_list())
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, THUMB_SIZE, THUMB_SIZE, 3)


def _thumbs_task(
    root: RunRoot, parts: list[str], locals_: list[NDArray[np.int64]]
) -> list[NDArray[np.uint8]]:
    run = RunDir(root)
    return [_thumbs_of(run, p, rows) for p, rows in zip(parts, locals_, strict=True)]


def _pair_task(
    root: RunRoot,
    parts: list[str],
    pa: NDArray[np.int64],
    ra: NDArray[np.int64],
    pb: NDArray[np.int64],
    rb: NDArray[np.int64],
) -> NDArray[np.float32]:
    """Distances of a block of pairs given as (partition index into `parts`, local row)."""
    run = RunDir(root)
    index: dict[tuple[int, int], int] = {}
    pieces = []
    for p in np.unique(np.concatenate([pa, pb])).tolist():
        wanted = np.unique(np.concatenate([ra[pa == p], rb[pb == p]]))
        base = len(index)
        index.update({(p, int(r)): base + k for k, r in enumerate(wanted.tolist())})
        pieces.append(_thumbs_of(run, parts[p], wanted))
    held = np.concatenate(pieces)
    a = np.array([index[(int(p), int(r))] for p, r in zip(pa, ra, strict=True)], np.int64)
    b = np.array([index[(int(p), int(r))] for p, r in zip(pb, rb, strict=True)], np.int64)
    return thumb_distance(held[a], held[b])


@dataclass(frozen=True)
class StoredThumbs:
    """`curate.dedup.find.Thumbs` over a run's feature files, read by worker tasks."""

    root: RunRoot
    loc: Locator
    client: Any = None

    def gather(self, rows: NDArray[np.int64]) -> NDArray[np.uint8]:
        out = np.zeros((rows.size, THUMB_SIZE, THUMB_SIZE, 3), dtype=np.uint8)
        if not rows.size:
            return out
        chunks = list(_chunks(list(self.loc.groups(rows).items()), 64))
        calls = [
            (self.root, [self.loc.parts[p] for p, _ in c], [g - self.loc.offsets[p] for p, g in c])
            for c in chunks
        ]
        found: dict[int, NDArray[np.uint8]] = {}
        for chunk, result in zip(chunks, _run_all(self.client, _thumbs_task, calls), strict=True):
            for (_, g), thumbs in zip(chunk, result, strict=True):
                found.update(zip(g.tolist(), thumbs, strict=True))
        for k, r in enumerate(rows.tolist()):
            out[k] = found[r]
        return out

    def pair_distance(self, i: NDArray[np.int64], j: NDArray[np.int64]) -> NDArray[np.float32]:
        out = np.zeros(i.size, dtype=np.float32)
        if not i.size:
            return out
        pa, ra = self.loc.locate(i)
        pb, rb = self.loc.locate(j)
        order = np.lexsort((pb, pa))  # a block then touches few partitions
        parts = list(self.loc.parts)
        blocks = [order[lo : lo + PAIRS_PER_TASK] for lo in range(0, order.size, PAIRS_PER_TASK)]
        calls = [(self.root, parts, pa[b], ra[b], pb[b], rb[b]) for b in blocks]
        for b, dist in zip(blocks, _run_all(self.client, _pair_task, calls), strict=True):
            out[b] = dist
        return out


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for lo in range(0, len(items), size):
        yield items[lo : lo + size]


# -- semantic dedup, cluster by cluster ------------------------------------------------------
def _unit_rows(run: RunDir, part: str, local: NDArray[np.int64]) -> tuple[Any, Any]:
    """Unit-normalised float32 embeddings of a partition's rows and their non-zero mask."""
    from curate.dedup.semantic import normalised

    emb = load_npy(run.image_embeddings(part), mmap=True)
    return normalised(np.asarray(emb[local]))


def _valid_task(
    root: RunRoot, parts: list[str], locals_: list[NDArray[np.int64]]
) -> list[NDArray[np.bool_]]:
    """Per partition: which rows have a direction (an all-zero embedding has none)."""
    run = RunDir(root)
    return [_unit_rows(run, part, local)[1] for part, local in zip(parts, locals_, strict=True)]


def _gather_task(
    root: RunRoot, parts: list[str], locals_: list[NDArray[np.int64]]
) -> list[NDArray[np.float32]]:
    """Per partition: the unit rows asked for."""
    run = RunDir(root)
    return [_unit_rows(run, part, local)[0] for part, local in zip(parts, locals_, strict=True)]


def _assign_task(
    root: RunRoot,
    parts: list[str],
    locals_: list[NDArray[np.int64]],
    centroids: NDArray[np.float32],
    probes: int = 2,
) -> list[NDArray[np.int64]]:
    """Per partition: the `probes` nearest centroids of each row, nearest first."""
    from curate.dedup.semantic import nearest_centroids

    run = RunDir(root)
    return [
        nearest_centroids(_unit_rows(run, part, local)[0], centroids, probes)
        for part, local in zip(parts, locals_, strict=True)
    ]


def _cluster_task(
    root: RunRoot,
    loc: Locator,
    clusters: list[tuple[NDArray[np.int64], NDArray[np.int64]]],
    threshold: float,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Pairs (table rows) at cosine >= threshold within each cluster and against its extras."""
    from curate.dedup.semantic import block_pairs

    run = RunDir(root)
    need = np.unique(np.concatenate([np.concatenate([m, e]) for m, e in clusters]))
    held = {}
    for p, rows in loc.groups(need).items():
        x, _ = _unit_rows(run, loc.parts[p], rows - loc.offsets[p])
        held.update(dict(zip(rows.tolist(), x, strict=True)))
    out_i, out_j = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for members, extra in clusters:
        xm = np.stack([held[r] for r in members.tolist()]) if members.size else None
        if xm is None:
            continue
        if members.size > 1:
            a, b, _ = block_pairs(xm, None, threshold)
            out_i.append(members[a])
            out_j.append(members[b])
        if extra.size:
            xe = np.stack([held[r] for r in extra.tolist()])
            a, b, _ = block_pairs(xm, xe, threshold)
            out_i.append(np.minimum(members[a], extra[b]))
            out_j.append(np.maximum(members[a], extra[b]))
    return np.concatenate(out_i), np.concatenate(out_j)


def stored_semantic(
    root: RunRoot, loc: Locator, client: Any = None, seed: int = 0, niter: int = 20, probes: int = 2
) -> Callable[[NDArray[np.int64], float, int | None], NDArray[np.int64]]:
    """`find_duplicates`'s semantic step over stored embeddings, without gathering them: the
    same clusters and pairs as `semantic_duplicates` on the gathered rows while the valid
    rows number at most 256 per centre (faiss then trains on all of them, as here); beyond
    that, k-means trains on a seeded sample of 256 rows per centre (at most 1,024 centres'
    worth, so the sample stays bounded) where faiss would draw its own."""

    def semantic(rows: NDArray[np.int64], threshold: float, n_clusters: int | None) -> Any:
        from curate.dedup.semantic import default_n_clusters, train_centroids

        rows = np.asarray(rows, dtype=np.int64)

        def calls_for(
            subset: NDArray[np.int64],
        ) -> tuple[list[list[Any]], list[tuple[Any, ...]]]:
            chunks = list(_chunks(list(loc.groups(subset).items()), 64))
            calls = [
                (root, [loc.parts[p] for p, _ in c], [g - loc.offsets[p] for p, g in c])
                for c in chunks
            ]
            return chunks, calls

        chunks, calls = calls_for(rows)
        valid = np.zeros(rows.size, dtype=bool)
        for chunk, result in zip(chunks, _run_all(client, _valid_task, calls), strict=True):
            for (_, g), ok in zip(chunk, result, strict=True):
                valid[np.searchsorted(rows, g)] = ok
        good = rows[valid]
        labels = np.arange(rows.size, dtype=np.int64)
        if good.size < 2:
            return labels
        k = min(n_clusters or default_n_clusters(good.size), good.size)
        cap = POINTS_PER_CENTROID * min(k, 1024)
        train_rows = good
        if good.size > cap:
            pick = np.random.default_rng(seed).choice(good.size, cap, replace=False)
            train_rows = good[np.sort(pick)]
        _, gather = calls_for(train_rows)
        sample = [x for result in _run_all(client, _gather_task, gather) for x in result]
        train = np.concatenate(sample)
        centroids = train_centroids(train, k, seed, niter)
        good_groups = list(loc.groups(good).items())
        assign = [
            (
                root,
                [loc.parts[p] for p, _ in c],
                [g - loc.offsets[p] for p, g in c],
                centroids,
                probes,
            )
            for c in _chunks(good_groups, 64)
        ]
        near = np.concatenate(
            [a for result in _run_all(client, _assign_task, assign) for a in result]
        )
        tasks = _cluster_plan(good, near, k)
        calls2 = [(root, loc, clusters, threshold) for clusters in tasks]
        found = _run_all(client, _cluster_task, calls2)
        i = np.concatenate([np.zeros(0, np.int64), *(f[0] for f in found)])
        j = np.concatenate([np.zeros(0, np.int64), *(f[1] for f in found)])
        pos_i, pos_j = np.searchsorted(rows, i), np.searchsorted(rows, j)
        return components(rows.size, pos_i, pos_j)

    return semantic


def _cluster_plan(
    good: NDArray[np.int64], near: NDArray[np.int64], k: int
) -> list[list[tuple[NDArray[np.int64], NDArray[np.int64]]]]:
    """Clusters as (members, extras) in table rows, grouped into tasks of bounded size."""
    from curate.dedup.semantic import cluster_members

    tasks: list[list[tuple[NDArray[np.int64], NDArray[np.int64]]]] = [[]]
    size = 0
    for members, extra in cluster_members(near, k):
        m, e = good[members], good[extra]
        if not m.size:
            continue
        if size and size + m.size + e.size > ROWS_PER_TASK:
            tasks.append([])
            size = 0
        tasks[-1].append((m, e))
        size += m.size + e.size
    return [t for t in tasks if t]
