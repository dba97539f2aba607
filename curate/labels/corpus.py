"""The corpus as ITM and VSM negatives see it, and the one function that picks an anchor's
negatives from it. The labelset stage runs it over every sample; `curate validate` runs it
over a sample of anchors, from the shards (and the run's text embeddings where it has
them), so what validate recomputes is by construction what the stage wrote.

Samples are indexed in uid order, not input order: the shards alone then name the index
every random draw refers to, so without embeddings a corpus's negatives can be recomputed
from its shards.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from curate.config import LabelsConfig
from curate.io.store import load_npy, read_parquet
from curate.labels.mlm import token_length
from curate.labels.negatives import Negative, pick_negatives, quantise
from curate.labels.seed import rng_for
from curate.rundir import RunDir

__all__ = [
    "Corpus",
    "build_corpus",
    "near_clips",
    "negatives_for",
    "task_counts",
    "text_embeddings",
]

_BLOCK = 1024  # anchors per similarity block: n x 1024 float64 at a time


@dataclass(frozen=True)
class Corpus:
    """Every sample in uid order: its text, the text's length in CLIP tokens, its source
    video and clip index (for VSM's neighbours) and, when the CLIP stage ran, its text
    embedding quantised to 2**-12 (None: random negatives only)."""

    uids: tuple[str, ...]
    texts: tuple[str, ...]
    lengths: NDArray[np.int64]
    video: NDArray[np.int64]
    clip: NDArray[np.int64]
    q: NDArray[np.float64] | None

    def index(self) -> dict[str, int]:
        return {u: i for i, u in enumerate(self.uids)}


def build_corpus(
    texts: Mapping[str, str],
    text_length: int,
    embeddings: Mapping[str, NDArray[np.floating]] | None = None,
) -> Corpus:
    """The corpus of `texts` (uid → caption or subtitle); `embeddings` (uid → CLIP text
    embedding) must then cover every uid, else None."""
    uids = tuple(sorted(texts))
    parents = [u.split("_")[0] for u in uids]
    ids = {p: i for i, p in enumerate(sorted(set(parents)))}
    q = None
    if embeddings is not None and uids:
        q = quantise(np.stack([embeddings[u] for u in uids]))
    return Corpus(
        uids=uids,
        texts=tuple(texts[u] for u in uids),
        lengths=np.array([token_length(texts[u], text_length) for u in uids], np.int64),
        video=np.array([ids[p] for p in parents], np.int64),
        clip=np.array([int(u.split("_")[1]) if "_" in u else 0 for u in uids], np.int64),
        q=q,
    )


def near_clips(corpus: Corpus, i: int, neighbours: int) -> NDArray[np.bool_]:
    """Clips of sample i's own video within `neighbours` clips of it (i included)."""
    return (corpus.video == corpus.video[i]) & (np.abs(corpus.clip - corpus.clip[i]) <= neighbours)


def task_counts(task: str, spec: LabelsConfig) -> tuple[int, int]:
    """(hard, random) negatives the spec asks for in task "itm" or "vsm"."""
    if task == "vsm":
        return spec.vsm_hard, spec.vsm_random
    return spec.itm_hard, spec.itm_random


def _pick(
    corpus: Corpus, i: int, task: str, spec: LabelsConfig, row: NDArray[np.float64] | None
) -> list[Negative]:
    n = len(corpus.uids)
    k_hard, k_random = task_counts(task, spec)
    excluded = near_clips(corpus, i, spec.vsm_neighbours) if task == "vsm" else None
    rng = rng_for(spec.seed, task, corpus.uids[i])
    cluster = np.arange(n)  # kept samples are one per dedup cluster
    return pick_negatives(
        i, n, cluster, rng, k_hard, k_random, spec.itm_ceiling, row, excluded, corpus.lengths
    )


def negatives_for(
    corpus: Corpus, anchors: Sequence[int], task: str, spec: LabelsConfig
) -> Iterator[tuple[int, list[Negative]]]:
    """(anchor, its negatives) for each anchor index, in order. Similarities come in blocks
    of anchors (never the whole n x n matrix) and are exact, so a row is the same whichever
    block computed it: O(len(anchors) · n · d)."""
    for lo in range(0, len(anchors), _BLOCK):
        block = list(anchors[lo : lo + _BLOCK])
        sims = corpus.q[block] @ corpus.q.T if corpus.q is not None else None
        for j, i in enumerate(block):
            yield i, _pick(corpus, i, task, spec, sims[j] if sims is not None else None)


def text_embeddings(run: RunDir, uids: Sequence[str]) -> dict[str, NDArray[np.floating]] | None:
    """The CLIP stage's text embedding of each uid, or None unless every uid has one."""
    wanted = set(uids)
    rows: dict[str, NDArray[np.floating]] = {}
    for part in run.partitions():
        path, table = run.text_embeddings(part), run.features(part)
        if not path.exists() or not table.exists():
            continue
        keys = read_parquet(table, columns=["uid"])["uid"].to_list()
        emb = load_npy(path)
        rows.update((u, e) for u, e in zip(keys, emb, strict=True) if u in wanted)
    return rows if wanted <= rows.keys() else None
