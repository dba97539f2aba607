"""Image–text matching negatives: for each sample, captions of other samples that do not
describe it. Hard ones are its caption's nearest neighbours by CLIP text embedding, never
from its own dedup cluster (a near copy is a positive) and never above a similarity ceiling
(likely false negatives: another photo of the same thing); random ones fill the rest, and
are all there is without embeddings. Every negative, hard or random, has a caption within
`LENGTH_TOLERANCE` CLIP tokens of the anchor's, so a matching score is about the picture,
not about which text is shorter; where fewer such captions exist, the anchor gets fewer
negatives.

Embeddings are quantised to multiples of 2**-12 before the dot products, so every partial
sum is exact in float64 and the ranking is the same whatever BLAS or SIMD path runs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "LENGTH_TOLERANCE",
    "Negative",
    "pick_negatives",
    "quantise",
    "quantised_similarity",
]

_Q = 4096.0
LENGTH_TOLERANCE = 2  # tokens a negative's caption may differ from the anchor's


@dataclass(frozen=True)
class Negative:
    """Index of the negative sample, its similarity to the anchor (None when random
    without embeddings), and how it was picked: "hard" or "random"."""

    index: int
    similarity: float | None
    kind: str


def quantise(a: NDArray[np.floating]) -> NDArray[np.float64]:
    """Embeddings rounded to multiples of 2**-12 (once per corpus, then reused)."""
    return np.round(np.asarray(a, np.float64) * _Q) / _Q


def quantised_similarity(a: NDArray[np.floating], b: NDArray[np.floating]) -> NDArray[np.float64]:
    """a @ b.T on embeddings rounded to 2**-12: exact (every partial sum is a multiple of
    2**-24 far below 2**53), so identical on every machine. Inputs already quantised pass
    through unchanged."""
    return quantise(a) @ quantise(b).T


def pick_negatives(
    anchor: int,
    n: int,
    cluster: NDArray[np.integer],
    rng: np.random.Generator,
    k_hard: int = 3,
    k_random: int = 1,
    ceiling: float = 0.9,
    similarity: NDArray[np.floating] | None = None,
    excluded: NDArray[np.bool_] | None = None,
    lengths: NDArray[np.integer] | None = None,
) -> list[Negative]:
    """Negatives of sample `anchor` among n samples. `cluster[i]` is sample i's dedup
    cluster (a unique id when it has none); `similarity` is the anchor's row of
    `quantised_similarity` (None: random negatives only, k_hard + k_random of them);
    `excluded` marks other samples this anchor must not get (e.g. neighbouring clips);
    `lengths[i]` is sample i's caption length in tokens (None: any length). Fewer than
    asked come back only when fewer samples are allowed."""
    allowed = np.asarray(cluster) != cluster[anchor]
    allowed[anchor] = False
    if excluded is not None:
        allowed &= ~np.asarray(excluded, bool)
    if lengths is not None:
        span = np.abs(np.asarray(lengths, np.int64) - int(lengths[anchor]))
        allowed &= span <= LENGTH_TOLERANCE
    hard: list[Negative] = []
    if similarity is not None and k_hard > 0:
        sim = np.asarray(similarity, np.float64)
        ok = allowed & (sim <= ceiling)
        idx = np.flatnonzero(ok)
        if idx.size > k_hard:  # the k most similar, then an exact order among them
            cut = np.partition(-sim[idx], k_hard - 1)[k_hard - 1]
            idx = idx[-sim[idx] <= cut]
        order = idx[np.lexsort((idx, -sim[idx]))][:k_hard]  # most similar, lower index first
        hard = [Negative(int(i), round(float(sim[i]), 6), "hard") for i in order]
    want = k_random if similarity is not None else k_hard + k_random
    eligible = allowed.copy()
    if similarity is not None:  # random ones obey the ceiling too
        eligible &= np.asarray(similarity, np.float64) <= ceiling
    eligible[[h.index for h in hard]] = False
    pool = np.flatnonzero(eligible).astype(np.int64)
    picks: list[int] = []
    if pool.size:
        picks = [int(i) for i in rng.choice(pool, size=min(want, pool.size), replace=False)]
    rand = [
        Negative(
            int(i),
            round(float(similarity[i]), 6) if similarity is not None else None,
            "random",
        )
        for i in sorted(picks)
    ]
    return hard + rand
