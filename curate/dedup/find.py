"""All configured duplicate finders over one feature table, in order, with the keep policy.

Each method sees only the samples earlier methods kept, so every dropped sample has exactly
one method and one uid (or eval item) it duplicates. Order: eval sets, exact (bytes,
url+caption, caption), perceptual (images), near clips (by their frames), semantic, caption
MinHash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import polars as pl
from numpy.typing import NDArray

from curate.config import DedupConfig
from curate.dedup.captions import caption_duplicates
from curate.dedup.clusters import components
from curate.dedup.lsh import hamming_pairs
from curate.dedup.policy import keepers, rank
from curate.features.hashes import THUMB_SIZE, thumb_distance
from curate.tables import DEDUP_SCHEMA

__all__ = [
    "EvalData",
    "MemoryThumbs",
    "Semantic",
    "Thumbs",
    "find_duplicates",
    "near_clips",
]

_VERIFY_BLOCK = 8192


@dataclass(frozen=True)
class EvalData:
    """An evaluation set, as features: pHashes and thumbnails of images, and captions."""

    name: str
    phash: NDArray[np.uint64] = field(default_factory=lambda: np.zeros(0, np.uint64))
    thumbs: NDArray[np.uint8] = field(
        default_factory=lambda: np.zeros((0, THUMB_SIZE, THUMB_SIZE, 3), np.uint8)
    )
    captions: list[str] = field(default_factory=list)


def _thumbs(column: pl.Series) -> NDArray[np.uint8]:
    data = b"".join(column.to_list())
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, THUMB_SIZE, THUMB_SIZE, 3)


class Thumbs(Protocol):
    """Where the table's thumbnails are: in memory, or in the run's feature files, read by
    the workers that verify a block of candidate pairs (so no process holds them all)."""

    def gather(self, rows: NDArray[np.int64]) -> NDArray[np.uint8]:
        """Thumbnails of table rows `rows`, (len(rows), 24, 24, 3)."""
        ...

    def pair_distance(self, i: NDArray[np.int64], j: NDArray[np.int64]) -> NDArray[np.float32]:
        """`thumb_distance` of rows i[k] and j[k] for every k."""
        ...


# `semantic(rows, threshold, n_clusters, probes)`: cluster label per listed table row.
Semantic = Callable[[NDArray[np.int64], float, int | None], NDArray[np.int64]]


@dataclass(frozen=True)
class MemoryThumbs:
    """Thumbnails held in memory, row-aligned with the table (the Python API's case)."""

    array: NDArray[np.uint8]

    def gather(self, rows: NDArray[np.int64]) -> NDArray[np.uint8]:
        return self.array[rows]

    def pair_distance(self, i: NDArray[np.int64], j: NDArray[np.int64]) -> NDArray[np.float32]:
        out = np.zeros(i.size, dtype=np.float32)
        for lo in range(0, i.size, _VERIFY_BLOCK):
            a, b = i[lo : lo + _VERIFY_BLOCK], j[lo : lo + _VERIFY_BLOCK]
            out[lo : lo + a.size] = thumb_distance(self.array[a], self.array[b])
        return out


class _State:
    """Survivors so far and, for the dropped, their method and whom they duplicate."""

    def __init__(self, table: pl.DataFrame) -> None:
        self.uids = table["uid"].to_list()
        self.ranks = rank(table)
        self.alive = np.ones(table.height, dtype=bool)
        self.method: list[str | None] = [None] * table.height
        self.dup_of: list[str | None] = [None] * table.height

    def survivors(self) -> NDArray[np.int64]:
        return np.flatnonzero(self.alive).astype(np.int64)

    def apply(self, idx: NDArray[np.int64], labels: NDArray[np.int64], method: str) -> None:
        """`labels` cluster the rows `idx`; all but each cluster's keeper are dropped."""
        keep = idx[keepers(labels, self.ranks[idx])]
        for row, k in zip(idx[keep != idx].tolist(), keep[keep != idx].tolist(), strict=True):
            self.alive[row] = False
            self.method[row], self.dup_of[row] = method, self.uids[k]

    def drop(self, rows: NDArray[np.int64], method: str, of: list[str]) -> None:
        for row, target in zip(rows.tolist(), of, strict=True):
            if self.alive[row]:
                self.alive[row] = False
                self.method[row], self.dup_of[row] = method, target


def _equal_labels(values: pl.Series) -> NDArray[np.int64]:
    """Cluster by equal non-empty value: id = first index holding that value."""
    df = pl.DataFrame({"v": values}).with_row_index("i")
    first = df.group_by("v").agg(pl.col("i").min().alias("f"))
    joined = df.join(first, on="v", how="left", maintain_order="left")
    labels = joined["f"].to_numpy().astype(np.int64)
    empty = (values.is_null() | (values == "")).fill_null(True).to_numpy()
    labels[empty] = np.flatnonzero(empty)
    return labels


def _eval_images(
    st: _State,
    table: pl.DataFrame,
    ev: EvalData,
    cfg: DedupConfig,
    thumbs: Thumbs,
    client: Any,
) -> None:
    idx = st.survivors()
    if not ev.phash.size or not idx.size:
        return
    hashes = np.concatenate([table["phash"].to_numpy()[idx], ev.phash])
    k = cfg.perceptual.max_distance
    i, j = hamming_pairs(hashes, k, client=client)
    cross = (i < idx.size) & (j >= idx.size)  # i < j, so a train row pairs an eval row
    i, j = i[cross], j[cross] - idx.size
    threshold = cfg.perceptual.verify_threshold
    if threshold is not None and i.size:
        blocks = [slice(lo, lo + _VERIFY_BLOCK) for lo in range(0, i.size, _VERIFY_BLOCK)]
        dist = np.concatenate(
            [thumb_distance(thumbs.gather(idx[i[b]]), ev.thumbs[j[b]]) for b in blocks]
        )
        i, j = i[dist < threshold], j[dist < threshold]
    rows, first = np.unique(i, return_index=True)
    st.drop(idx[rows], "eval_image", [f"eval:{ev.name}/{int(x)}" for x in j[first]])


def _eval_captions(st: _State, captions: list[str | None], ev: EvalData, cfg: DedupConfig) -> None:
    idx = st.survivors()
    if not ev.captions or not idx.size:
        return
    c = cfg.captions
    both = [captions[r] for r in idx.tolist()] + list(ev.captions)
    labels = caption_duplicates(both, c.threshold, c.num_perm, c.shingle)
    first_eval: dict[int, int] = {}
    for e, lab in enumerate(labels[idx.size :].tolist()):
        first_eval.setdefault(lab, e)
    train = zip(idx.tolist(), labels[: idx.size].tolist(), strict=True)
    hit = [(r, first_eval[lab]) for r, lab in train if lab in first_eval]
    if hit:
        rows = np.array([r for r, _ in hit], dtype=np.int64)
        st.drop(rows, "eval_caption", [f"eval:{ev.name}/{e}" for _, e in hit])


def _clip_rows(table: pl.DataFrame) -> NDArray[np.bool_]:
    """Which rows are clips (they have sampled frames' hashes); images are not."""
    if "frame_phash" not in table.columns or not table.height:
        return np.zeros(table.height, dtype=bool)
    return (table["frame_phash"].list.len().fill_null(0) > 0).to_numpy()


def near_clips(
    frames: list[list[int]], max_distance: int, min_matched: float, client: Any = None
) -> NDArray[np.int64]:
    """Cluster labels over clips given as lists of frame pHashes: two clips are linked when
    at least `min_matched` of the frames of the one with fewer have a frame of the other
    within `max_distance` bits (frames of one clip never match each other)."""
    n = len(frames)
    counts = np.array([len(f) for f in frames], dtype=np.int64)
    owner = np.repeat(np.arange(n, dtype=np.int64), counts)
    flat = np.array([h for f in frames for h in f], dtype=np.uint64)
    fi, fj = hamming_pairs(flat, max_distance, client=client)
    a, b = owner[fi], owner[fj]
    cross = a != b
    fi, fj, a, b = fi[cross], fj[cross], a[cross], b[cross]
    if not a.size:
        return np.arange(n, dtype=np.int64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # For each clip pair, the distinct frames of each side that found a partner.
    pair = lo * n + hi
    frame_lo = np.where(a == lo, fi, fj)
    frame_hi = np.where(a == lo, fj, fi)
    uniq_lo = np.unique(np.stack([pair, frame_lo]), axis=1)[0]
    uniq_hi = np.unique(np.stack([pair, frame_hi]), axis=1)[0]
    pairs, n_lo = np.unique(uniq_lo, return_counts=True)
    _, n_hi = np.unique(uniq_hi, return_counts=True)
    p_lo, p_hi = pairs // n, pairs % n
    lo_fewer = counts[p_lo] <= counts[p_hi]
    fewer = np.where(lo_fewer, counts[p_lo], counts[p_hi])
    matched = np.where(lo_fewer, n_lo, n_hi)  # frames of the clip with fewer that match
    linked = matched >= np.ceil(min_matched * fewer - 1e-9)
    return components(n, p_lo[linked], p_hi[linked])


def find_duplicates(
    table: pl.DataFrame,
    cfg: DedupConfig,
    embeddings: NDArray[np.floating] | None = None,
    evals: tuple[EvalData, ...] = (),
    client: Any = None,
    thumbs: Thumbs | None = None,
    semantic: Semantic | None = None,
) -> pl.DataFrame:
    """One row per dropped sample: uid, dedup_method, dup_of.

    `table` holds the features columns plus `caption` (and `clip_score` when scored);
    `embeddings` are row-aligned CLIP image embeddings for semantic dedup; a Dask `client`
    runs the Hamming searches on its cluster. The dedup stage passes `thumbs` and `semantic`
    that read thumbnails and embeddings on the workers instead, and a table without them;
    `caption` is needed only by the caption methods.
    """
    st = _State(table)
    needs_captions = cfg.captions.enabled or any(ev.captions for ev in evals)
    captions: list[str | None] = table["caption"].to_list() if needs_captions else []
    if thumbs is None:
        thumbs = MemoryThumbs(
            _thumbs(table["thumb"])
            if table.height
            else np.zeros((0, THUMB_SIZE, THUMB_SIZE, 3), np.uint8)
        )
    for ev in evals:
        _eval_images(st, table, ev, cfg, thumbs, client)
        _eval_captions(st, captions, ev, cfg)
    columns = {"bytes": "sha256", "url_caption": "url_caption_hash", "caption": "caption_hash"}
    for method in cfg.exact:
        idx = st.survivors()
        st.apply(idx, _equal_labels(table[columns[method]].gather(idx)), f"exact_{method}")
    clips = _clip_rows(table)
    if cfg.perceptual.enabled:
        idx = st.survivors()
        idx = idx[~clips[idx]]
        p = cfg.perceptual
        i, j = hamming_pairs(table["phash"].to_numpy()[idx], p.max_distance, client=client)
        if p.verify_threshold is not None and i.size:
            ok = thumbs.pair_distance(idx[i], idx[j]) < p.verify_threshold
            i, j = i[ok], j[ok]
        st.apply(idx, components(idx.size, i, j), "perceptual")
    if cfg.clips.enabled and clips.any():
        idx = st.survivors()
        idx = idx[clips[idx]]
        frames = table["frame_phash"].gather(idx).to_list()
        st.apply(
            idx,
            near_clips(frames, cfg.clips.max_distance, cfg.clips.min_matched, client),
            "near_clip",
        )
    if cfg.semantic.enabled:
        from curate.dedup.semantic import semantic_duplicates

        idx = st.survivors()
        s = cfg.semantic
        if semantic is not None:
            labels = semantic(idx, s.threshold, s.n_clusters)
        else:
            if embeddings is None or len(embeddings) != table.height:
                raise ValueError("semantic dedup needs one stored embedding per sample")
            labels = semantic_duplicates(embeddings[idx], s.threshold, s.n_clusters)
        st.apply(idx, labels, "semantic")
    if cfg.captions.enabled:
        idx = st.survivors()
        c = cfg.captions
        kept = [captions[r] for r in idx.tolist()]
        st.apply(idx, caption_duplicates(kept, c.threshold, c.num_perm, c.shingle), "caption")
    dropped = np.flatnonzero(~st.alive).tolist()
    return pl.DataFrame(
        {
            "uid": [st.uids[r] for r in dropped],
            "dedup_method": [st.method[r] for r in dropped],
            "dup_of": [st.dup_of[r] for r in dropped],
        },
        schema=DEDUP_SCHEMA,
    )
